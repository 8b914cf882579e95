//! The audit log: an append-only record of who did what to which recording and KEK,
//! read back per organisation with filters.

use rusqlite::params;
use serde::Serialize;

use super::{Catalogue, Result, now_ms};

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Position in the organisation's log: 1, 2, 3, ... with every entry.
    pub seq: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// The organisation.
    pub org_id: String,
    /// Who: a token id, `scheduler`, `rewrap-job`, `operator` or `cli`.
    pub actor: String,
    /// What, e.g. `recording.decrypt`, `kek.create`, `kek.delete`.
    pub action: String,
    /// The recording concerned, if any.
    pub recording_id: Option<String>,
    /// The KEK concerned, if any.
    pub kek_id: Option<String>,
    /// Further detail (never key material or content).
    pub detail: String,
}

/// Which audit entries to read. Every set field narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Entries at or after this time (Unix milliseconds).
    pub from_ms: Option<i64>,
    /// Entries before this time (Unix milliseconds).
    pub to_ms: Option<i64>,
    /// Entries by this actor.
    pub actor: Option<String>,
    /// Entries about this recording.
    pub recording_id: Option<String>,
    /// Entries about this KEK.
    pub kek_id: Option<String>,
    /// Entries with this action.
    pub action: Option<String>,
    /// Entries after this sequence number (for paging).
    pub after_seq: Option<i64>,
    /// At most this many entries (capped at 1000).
    pub limit: Option<u32>,
}

impl Catalogue {
    /// Appends to the audit log.
    pub fn audit(
        &self,
        org_id: &str,
        actor: &str,
        action: &str,
        recording_id: Option<&str>,
        kek_id: Option<&str>,
        detail: &str,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO audit_log (at, org_id, org_seq, actor, action, recording_id, kek_id, detail)
             VALUES (?1, ?2, (SELECT COALESCE(MAX(org_seq), 0) + 1 FROM audit_log WHERE org_id = ?2),
                     ?3, ?4, ?5, ?6, ?7)",
            params![
                now_ms(),
                org_id,
                actor,
                action,
                recording_id,
                kek_id,
                detail
            ],
        )?;
        Ok(())
    }

    /// The organisation's audit entries that match `filter`, oldest first.
    pub fn audit_log(&self, org_id: &str, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT org_seq, at, org_id, actor, action, recording_id, kek_id, detail FROM audit_log
             WHERE org_id = ?1
               AND (?2 IS NULL OR at >= ?2) AND (?3 IS NULL OR at < ?3)
               AND (?4 IS NULL OR actor = ?4) AND (?5 IS NULL OR recording_id = ?5)
               AND (?6 IS NULL OR kek_id = ?6) AND (?7 IS NULL OR action = ?7)
               AND (?8 IS NULL OR org_seq > ?8)
             ORDER BY org_seq LIMIT ?9",
        )?;
        let rows = stmt.query_map(
            params![
                org_id,
                filter.from_ms,
                filter.to_ms,
                filter.actor,
                filter.recording_id,
                filter.kek_id,
                filter.action,
                filter.after_seq,
                limit
            ],
            |row| {
                Ok(AuditEntry {
                    seq: row.get(0)?,
                    at: row.get(1)?,
                    org_id: row.get(2)?,
                    actor: row.get(3)?,
                    action: row.get(4)?,
                    recording_id: row.get(5)?,
                    kek_id: row.get(6)?,
                    detail: row.get(7)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
