-- tapeseal catalogue, migration 7: several server instances on one catalogue.
-- A job is run by the instance holding its lease, which it renews while it works;
-- when an instance dies its lease runs out and another instance claims the job.
-- Secrets every instance needs alike (the storage key pair, sealed under the
-- master key) live here rather than in one instance's data directory.

ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until BIGINT;

CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    sealed      BLOB NOT NULL,
    created_at  BIGINT NOT NULL
);
