-- tapeseal catalogue, migration 3: Local Key Manager organisations. A KEK records the
-- OAEP padding its DEKs are wrapped with (an LKM that predates the SHA-256 option
-- decrypts SHA-1 only); an organisation in LKM mode records where its LKM is, with
-- the Hawk key sealed under the master key.

ALTER TABLE keks ADD COLUMN wrap_algorithm TEXT NOT NULL DEFAULT 'rsa-oaep-sha256'
    CHECK (wrap_algorithm IN ('rsa-oaep-sha256', 'rsa-oaep-sha1'));

CREATE TABLE lkm_settings (
    org_id           TEXT PRIMARY KEY REFERENCES orgs (id),
    decrypt_url      TEXT NOT NULL,
    hawk_id          TEXT NOT NULL,
    sealed_hawk_key  BLOB NOT NULL,
    ca_pem           TEXT,
    fingerprint      TEXT,
    timeout_ms       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
