-- tapeseal catalogue, migration 4: browser playback grants. An organisation in LKM
-- mode has an Ed25519 key (sealed under the master key) that signs the short-lived
-- grants a browser presents to the LKM for one recording's DEK; the LKM trusts it
-- once the server has registered it there. `browser_url` is where browsers reach the
-- LKM, which may differ from the address the server uses.

ALTER TABLE lkm_settings ADD COLUMN browser_url TEXT;
ALTER TABLE lkm_settings ADD COLUMN sealed_grant_key BLOB;
ALTER TABLE lkm_settings ADD COLUMN grant_key_id TEXT;
ALTER TABLE lkm_settings ADD COLUMN grants_registered_at BIGINT;
ALTER TABLE lkm_settings ADD COLUMN grants_error TEXT;
