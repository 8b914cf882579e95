-- tapeseal catalogue, migration 6: export jobs. A job's selection and progress live in
-- jobs.params and jobs.progress; here is one row per recording the job has finished
-- with, written in the same transaction as the job's progress and the recording's
-- audit entry. A job resumed after a crash redoes exactly the recordings without a
-- row, and the final manifest is read from these rows.

CREATE TABLE export_items (
    job_id            TEXT NOT NULL REFERENCES jobs (id),
    recording_id      TEXT NOT NULL,
    state             TEXT NOT NULL,
    path              TEXT,
    metadata_path     TEXT,
    bytes             BIGINT,
    plaintext_len     BIGINT,
    plaintext_sha256  TEXT,
    file_sha256       TEXT,
    kek_id            TEXT,
    error             TEXT,
    finished_at       BIGINT NOT NULL,
    PRIMARY KEY (job_id, recording_id)
);

CREATE INDEX recordings_by_org_time ON recordings (org_id, created_at);
