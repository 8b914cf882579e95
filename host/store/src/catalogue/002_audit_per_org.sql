-- tapeseal catalogue, migration 2: audit entries are numbered per organisation, so
-- the numbers one organisation sees say nothing about another's activity. Existing
-- entries are numbered in the order they were written.

ALTER TABLE audit_log ADD COLUMN org_seq BIGINT;

UPDATE audit_log SET org_seq = (
    SELECT COUNT(*) FROM audit_log AS earlier
    WHERE earlier.org_id = audit_log.org_id AND earlier.seq <= audit_log.seq
);

CREATE UNIQUE INDEX audit_by_org_seq ON audit_log (org_id, org_seq);
