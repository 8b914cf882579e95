-- The reference LKM's store, version 3: playback grants.
--
-- A grant issuer is the Ed25519 public key (raw, 32 bytes) that verifies the grants
-- a Hawk credential's holder signs; one per credential, replaced by registering
-- another, removed when the credential is revoked.
CREATE TABLE grant_issuers (
    issuer        TEXT PRIMARY KEY REFERENCES credentials (id),
    public_key    BLOB NOT NULL,
    registered_at INTEGER NOT NULL
);

-- The request log records the recording a browser decrypt was for, and the id and
-- expiry (Unix ms) of each grant it accepted, so that a restarted LKM still refuses a
-- grant used before the restart (the remembered grant ids are seeded from here).
ALTER TABLE request_log ADD COLUMN recording_id TEXT;
ALTER TABLE request_log ADD COLUMN grant_id TEXT;
ALTER TABLE request_log ADD COLUMN grant_expires_at BIGINT;

CREATE INDEX request_log_grants ON request_log (grant_expires_at) WHERE grant_id IS NOT NULL;
