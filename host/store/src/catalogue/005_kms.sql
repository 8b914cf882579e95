-- tapeseal catalogue, migration 5: AWS KMS key mode. A KEK whose private key is
-- protected by an organisation's KMS key keeps the KMS ciphertext in sealed_private
-- and the ARN of that KMS key in kms_key_arn (NULL: sealed under the master key, or
-- no private key here at all, for an LKM key pair). An organisation in KMS mode
-- records which KMS key new KEKs are encrypted under, and optionally an AWS access
-- key of its own (the secret sealed under the master key).

ALTER TABLE keks ADD COLUMN kms_key_arn TEXT;

CREATE TABLE kms_settings (
    org_id             TEXT PRIMARY KEY REFERENCES orgs (id),
    key_id             TEXT NOT NULL,
    key_arn            TEXT NOT NULL,
    region             TEXT NOT NULL,
    access_key_id      TEXT,
    sealed_secret_key  BLOB,
    updated_at         BIGINT NOT NULL
);
