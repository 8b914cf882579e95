-- The reference LKM's store, version 1. Private keys and Hawk keys are sealed under
-- the LKM's master key (AES-256-GCM, bound to their id); nothing here is plaintext
-- key material.
CREATE TABLE keypairs (
    id             TEXT PRIMARY KEY,
    public_pkcs1   BLOB NOT NULL,
    sealed_private BLOB NOT NULL,
    created_at     BIGINT NOT NULL,
    -- Set, durably, by the first successful decrypt; a used key pair is never deleted.
    first_used_at  BIGINT
);

CREATE TABLE credentials (
    id              TEXT PRIMARY KEY,
    sealed_auth_key BLOB NOT NULL,
    created_at      BIGINT NOT NULL,
    revoked_at      BIGINT
);

CREATE TABLE request_log (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    time          BIGINT NOT NULL,
    method        TEXT NOT NULL,
    path          TEXT NOT NULL,
    credential_id TEXT,
    user_id       TEXT,
    keypair_id    TEXT,
    status        INTEGER NOT NULL
);

CREATE INDEX request_log_time ON request_log (time);
