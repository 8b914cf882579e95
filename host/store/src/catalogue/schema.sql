-- tapeseal catalogue, migration 1, in SQLite's dialect. A PostgreSQL port maps BIGINT and TEXT
-- as they are, BLOB to BYTEA, and INTEGER PRIMARY KEY AUTOINCREMENT to an identity column.

CREATE TABLE orgs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    key_mode    TEXT NOT NULL DEFAULT 'managed' CHECK (key_mode IN ('managed', 'lkm', 'aws-kms')),
    created_at  BIGINT NOT NULL
);

CREATE TABLE tokens (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL REFERENCES orgs (id),
    role           TEXT NOT NULL CHECK (role IN ('admin', 'recorder', 'player')),
    secret_sha256  BLOB NOT NULL UNIQUE,
    label          TEXT NOT NULL DEFAULT '',
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT
);

CREATE TABLE keks (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL REFERENCES orgs (id),
    public_spki     BLOB NOT NULL,
    sealed_private  BLOB,
    state           TEXT NOT NULL CHECK (state IN ('active', 'retired')),
    created_at      BIGINT NOT NULL,
    retired_at      BIGINT
);
CREATE INDEX keks_by_org ON keks (org_id, created_at);

CREATE TABLE recordings (
    id               TEXT PRIMARY KEY,
    org_id           TEXT NOT NULL REFERENCES orgs (id),
    kek_id           TEXT REFERENCES keks (id),
    media_kind       TEXT NOT NULL,
    content_type     TEXT NOT NULL,
    conversation_id  TEXT,
    plaintext_len    BIGINT NOT NULL,
    stored_len       BIGINT NOT NULL,
    object_path      TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX recordings_by_kek ON recordings (org_id, kek_id);

CREATE TABLE rotation_schedules (
    org_id           TEXT PRIMARY KEY REFERENCES orgs (id),
    period           TEXT NOT NULL CHECK (period IN ('DISABLED', 'DAILY', 'WEEKLY', 'MONTHLY', 'YEARLY')),
    last_rotated_at  BIGINT
);

CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    params      TEXT NOT NULL,
    progress    TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE audit_log (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    at            BIGINT NOT NULL,
    org_id        TEXT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    recording_id  TEXT,
    kek_id        TEXT,
    detail        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_by_org_time ON audit_log (org_id, at);
