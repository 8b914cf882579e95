//! Export jobs' per-recording outcomes, and the recordings an export selects. An
//! outcome is recorded with the job's progress and the recording's audit entry in
//! one transaction, once the exported file is durable at its destination: a job
//! resumed after a crash redoes exactly the recordings without an outcome.

use crate::db::{Tx, params};
use serde::{Deserialize, Serialize};

use super::audit::append;
use super::recordings::{RECORDING_COLUMNS, recording_row};
use super::{AuditEvent, Catalogue, RecordingRecord, Result};
use crate::time::now_ms;

/// Which recordings an export job takes. Every set field narrows the selection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExportSelection {
    /// Recordings created at or after this time (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    /// Recordings created before this time (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
    /// Only these media kinds (`call`, `email`, `chat`, `message`, `transcript`,
    /// `other`, `screen`); empty for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media_kinds: Vec<String>,
    /// Only these conversations; empty for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conversation_ids: Vec<String>,
    /// Only these recordings; empty for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recording_ids: Vec<String>,
    /// Recordings created after this time are not taken, whatever the range says:
    /// the job's creation time, so that a resumed job selects what it first did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of_ms: Option<i64>,
}

/// What became of one recording in an export job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportItem {
    /// Recording id.
    pub recording_id: String,
    /// Written, or why not.
    pub outcome: ExportOutcome,
}

/// Written, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportOutcome {
    /// Written and durable at the destination.
    Done(ExportedFile),
    /// Not written; the message says why (no key material).
    Failed(String),
}

/// An exported recording as its manifest entry describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedFile {
    /// The recording's file, relative to the destination.
    pub path: String,
    /// Its metadata companion, relative to the destination.
    pub metadata_path: String,
    /// Bytes of the file written (the OpenPGP message, when encrypted).
    pub bytes: u64,
    /// Bytes of the recording.
    pub plaintext_len: u64,
    /// SHA-256 of the recording, hex.
    pub plaintext_sha256: String,
    /// SHA-256 of the file written, hex.
    pub file_sha256: String,
    /// The key that unwrapped the recording's DEK.
    pub kek_id: String,
}

/// A job's recorded outcomes, summed up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportTotals {
    /// Recordings written.
    pub exported: u64,
    /// Recordings that failed.
    pub failed: u64,
    /// Plaintext bytes of the recordings written.
    pub plaintext_bytes: u64,
    /// Bytes of their files.
    pub file_bytes: u64,
}

/// The SQL condition of a selection, on `recordings` with `?1` the organisation and
/// `?2`..`?7` the selection's fields (lists as JSON arrays).
fn selected(tx: &Tx<'_>) -> String {
    format!(
        "org_id = ?1
         AND (?2 IS NULL OR created_at >= ?2) AND (?3 IS NULL OR created_at < ?3)
         AND (?4 IS NULL OR created_at <= ?4)
         AND {} AND {} AND {}",
        tx.in_json_array_or_empty("media_kind", 5),
        tx.in_json_array_or_empty("conversation_id", 6),
        tx.in_json_array_or_empty("id", 7)
    )
}

fn list_json(list: &[String]) -> String {
    serde_json::Value::from(list.to_vec()).to_string()
}

impl Catalogue {
    /// How many recordings a selection takes, and their plaintext bytes.
    pub fn count_export_selection(
        &self,
        org_id: &str,
        selection: &ExportSelection,
    ) -> Result<(u64, u64)> {
        self.read(|tx| {
            let s = selection;
            let (count, bytes): (i64, i64) = tx.query_one(
                &format!(
                    "SELECT COUNT(*), CAST(COALESCE(SUM(plaintext_len), 0) AS BIGINT) FROM recordings
                     WHERE {}",
                    selected(tx)
                ),
                params![
                    org_id,
                    s.from_ms,
                    s.to_ms,
                    s.as_of_ms,
                    list_json(&s.media_kinds),
                    list_json(&s.conversation_ids),
                    list_json(&s.recording_ids)
                ],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            Ok((count.unsigned_abs(), bytes.unsigned_abs()))
        })
    }

    /// The selected recordings that `job_id` has no outcome for yet, in id order,
    /// after `after_id`, at most `limit` (capped at 1000).
    pub fn pending_exports(
        &self,
        org_id: &str,
        job_id: &str,
        selection: &ExportSelection,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RecordingRecord>> {
        self.read(|tx| {
            let s = selection;

            let rows = tx.query_map(
                &format!(
                    "SELECT {RECORDING_COLUMNS} FROM recordings WHERE {}
                   AND (?8 IS NULL OR id > ?8)
                   AND NOT EXISTS (SELECT 1 FROM export_items
                                   WHERE export_items.job_id = ?9
                                     AND export_items.recording_id = recordings.id)
                 ORDER BY id LIMIT ?10",
                    selected(tx)
                ),
                params![
                    org_id,
                    s.from_ms,
                    s.to_ms,
                    s.as_of_ms,
                    list_json(&s.media_kinds),
                    list_json(&s.conversation_ids),
                    list_json(&s.recording_ids),
                    after_id,
                    job_id,
                    limit.clamp(1, 1000)
                ],
                recording_row,
            )?;
            Ok(rows)
        })
    }

    /// Records what became of one recording, the job's progress, and (for a
    /// recording written) its audit entry, in one transaction. Replaces an earlier
    /// outcome of the same recording in the same job (a retried failure).
    pub fn record_export_item(
        &self,
        org_id: &str,
        job_id: &str,
        item: &ExportItem,
        progress: &serde_json::Value,
        actor: &str,
        event: Option<&AuditEvent<'_>>,
    ) -> Result<()> {
        self.write_for(org_id, |tx| {
            let now = now_ms();
            match &item.outcome {
                ExportOutcome::Done(f) => tx.execute(
                    "INSERT INTO export_items
                       (job_id, recording_id, state, path, metadata_path, bytes, plaintext_len,
                        plaintext_sha256, file_sha256, kek_id, error, finished_at)
                     VALUES (?1, ?2, 'done', ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10)
                     ON CONFLICT (job_id, recording_id) DO UPDATE SET
                       state = excluded.state, path = excluded.path,
                       metadata_path = excluded.metadata_path, bytes = excluded.bytes,
                       plaintext_len = excluded.plaintext_len,
                       plaintext_sha256 = excluded.plaintext_sha256,
                       file_sha256 = excluded.file_sha256, kek_id = excluded.kek_id,
                       error = NULL, finished_at = excluded.finished_at",
                    params![
                        job_id,
                        item.recording_id,
                        f.path,
                        f.metadata_path,
                        i64::try_from(f.bytes).unwrap_or(i64::MAX),
                        i64::try_from(f.plaintext_len).unwrap_or(i64::MAX),
                        f.plaintext_sha256,
                        f.file_sha256,
                        f.kek_id,
                        now
                    ],
                )?,
                ExportOutcome::Failed(error) => tx.execute(
                    "INSERT INTO export_items (job_id, recording_id, state, error, finished_at)
                     VALUES (?1, ?2, 'failed', ?3, ?4)
                     ON CONFLICT (job_id, recording_id) DO UPDATE SET
                       state = 'failed', path = NULL, metadata_path = NULL, bytes = NULL,
                       plaintext_len = NULL, plaintext_sha256 = NULL, file_sha256 = NULL,
                       kek_id = NULL, error = excluded.error, finished_at = excluded.finished_at",
                    params![job_id, item.recording_id, error, now],
                )?,
            };
            tx.execute(
                "UPDATE jobs SET progress = ?1, updated_at = ?2 WHERE org_id = ?3 AND id = ?4",
                params![progress.to_string(), now, org_id, job_id],
            )?;
            if let Some(event) = event {
                append(tx, org_id, actor, event)?;
            }
            Ok(())
        })
    }

    /// A job's outcomes in recording id order, after `after_id`, at most `limit`
    /// (capped at 1000).
    pub fn export_items(
        &self,
        job_id: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ExportItem>> {
        self.read(|tx| {
            let rows = tx.query_map(
                "SELECT recording_id, state, path, metadata_path, bytes, plaintext_len,
                        plaintext_sha256, file_sha256, kek_id, error
                 FROM export_items WHERE job_id = ?1 AND (?2 IS NULL OR recording_id > ?2)
                 ORDER BY recording_id LIMIT ?3",
                params![job_id, after_id, limit.clamp(1, 1000)],
                |row| {
                    let state: String = row.get(1)?;
                    let outcome = if state == "done" {
                        ExportOutcome::Done(ExportedFile {
                            path: row.get(2)?,
                            metadata_path: row.get(3)?,
                            bytes: row.get::<i64>(4)?.unsigned_abs(),
                            plaintext_len: row.get::<i64>(5)?.unsigned_abs(),
                            plaintext_sha256: row.get(6)?,
                            file_sha256: row.get(7)?,
                            kek_id: row.get(8)?,
                        })
                    } else {
                        ExportOutcome::Failed(row.get::<Option<String>>(9)?.unwrap_or_default())
                    };
                    Ok(ExportItem {
                        recording_id: row.get(0)?,
                        outcome,
                    })
                },
            )?;
            Ok(rows)
        })
    }

    /// A job's recorded outcomes summed up: recordings written, recordings failed,
    /// their plaintext bytes and the bytes of their files.
    pub fn export_totals(&self, job_id: &str) -> Result<ExportTotals> {
        self.read(|tx| {
            Ok(tx.query_one(
                "SELECT CAST(COALESCE(SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END), 0) AS BIGINT),
                        CAST(COALESCE(SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END), 0) AS BIGINT),
                        CAST(COALESCE(SUM(plaintext_len), 0) AS BIGINT),
                        CAST(COALESCE(SUM(bytes), 0) AS BIGINT)
                 FROM export_items WHERE job_id = ?1",
                params![job_id],
                |row| {
                    Ok(ExportTotals {
                        exported: row.get::<i64>(0)?.unsigned_abs(),
                        failed: row.get::<i64>(1)?.unsigned_abs(),
                        plaintext_bytes: row.get::<i64>(2)?.unsigned_abs(),
                        file_bytes: row.get::<i64>(3)?.unsigned_abs(),
                    })
                },
            )?)
        })
    }

    /// Forgets a job's failed outcomes, so that the job, queued again, retries those
    /// recordings. Returns how many it forgot.
    pub fn forget_failed_exports(&self, job_id: &str) -> Result<u64> {
        self.read(|tx| {
            let n = tx.execute(
                "DELETE FROM export_items WHERE job_id = ?1 AND state = 'failed'",
                params![job_id],
            )?;
            Ok(n)
        })
    }
}
