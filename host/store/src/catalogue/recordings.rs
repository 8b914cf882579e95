//! Stored recordings: what the repository holds, which KEK each envelope is wrapped
//! for, and the metadata that playback and rewrap need.

use crate::db::params;

use super::audit::append;
use super::{AuditEvent, Catalogue, CatalogueError, Result};

/// A stored recording as the catalogue records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRecord {
    /// Recording id.
    pub id: String,
    /// Owning organisation.
    pub org_id: String,
    /// The KEK its envelope is wrapped for; `None` for storage-encrypted kinds.
    pub kek_id: Option<String>,
    /// `call`, `email`, `chat`, `message`, `transcript`, `other` or `screen`.
    pub media_kind: String,
    /// MIME type.
    pub content_type: String,
    /// The conversation it belongs to.
    pub conversation_id: Option<String>,
    /// Plaintext bytes.
    pub plaintext_len: u64,
    /// Stored bytes (the envelope).
    pub stored_len: u64,
    /// Where the object is in the recording repository.
    pub object_path: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl Catalogue {
    /// Records a stored recording and its ingest by `actor`, in one transaction. Call
    /// only once the object is durable in the repository.
    pub fn insert_recording(&self, r: &RecordingRecord, actor: &str) -> Result<()> {
        self.write_for(&r.org_id, |tx| {
            let plaintext_len = i64::try_from(r.plaintext_len)
                .map_err(|_| CatalogueError::Invalid("recording too large"))?;
            let stored_len = i64::try_from(r.stored_len)
                .map_err(|_| CatalogueError::Invalid("recording too large"))?;
            let inserted = tx.execute(
                "INSERT INTO recordings (id, org_id, kek_id, media_kind, content_type, conversation_id,
                                         plaintext_len, stored_len, object_path, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (id) DO NOTHING",
                params![
                    r.id,
                    r.org_id,
                    r.kek_id,
                    r.media_kind,
                    r.content_type,
                    r.conversation_id,
                    plaintext_len,
                    stored_len,
                    r.object_path,
                    r.created_at
                ],
            )?;
            if inserted == 0 {
                return Err(CatalogueError::Exists(format!("recording '{}'", r.id)));
            }
            let event = AuditEvent::RecordingIngest {
                recording_id: &r.id,
                kek_id: r.kek_id.as_deref(),
                bytes: r.plaintext_len,
                kind: &r.media_kind,
            };
            append(tx, &r.org_id, actor, &event)?;
            Ok(())
        })
    }

    /// Points a recording at another KEK once its envelope holds a stanza for it
    /// (the new header may change the stored length), with the audit entry, in one
    /// transaction.
    pub fn set_recording_kek(
        &self,
        org_id: &str,
        recording_id: &str,
        kek_id: &str,
        stored_len: u64,
        actor: &str,
        event: &AuditEvent<'_>,
    ) -> Result<bool> {
        self.write_for(org_id, |tx| {
            let stored_len = i64::try_from(stored_len)
                .map_err(|_| CatalogueError::Invalid("recording too large"))?;
            let n = tx.execute(
                "UPDATE recordings SET kek_id = ?1, stored_len = ?2 WHERE org_id = ?3 AND id = ?4",
                params![kek_id, stored_len, org_id, recording_id],
            )?;
            if n == 1 {
                append(tx, org_id, actor, event)?;
            }
            Ok(n == 1)
        })
    }

    /// One recording of an organisation (never another organisation's).
    pub fn recording(&self, org_id: &str, recording_id: &str) -> Result<Option<RecordingRecord>> {
        self.read(|tx| {
            // Asked on every playback request: the parsed statement is kept.
            Ok(tx.query_opt(
                &format!(
                    "SELECT {RECORDING_COLUMNS} FROM recordings WHERE org_id = ?1 AND id = ?2"
                ),
                params![org_id, recording_id],
                recording_row,
            )?)
        })
    }

    /// The organisation's recordings that match `filter`, oldest first.
    pub fn list_recordings(
        &self,
        org_id: &str,
        filter: &RecordingFilter,
    ) -> Result<Vec<RecordingRecord>> {
        self.read(|tx| {
            let limit = filter.limit.unwrap_or(100).clamp(1, 1000);

            let rows = tx.query_map(
                &format!(
                    "SELECT {RECORDING_COLUMNS} FROM recordings
                 WHERE org_id = ?1
                   AND (?2 IS NULL OR conversation_id = ?2) AND (?3 IS NULL OR kek_id = ?3)
                   AND (?4 IS NULL OR media_kind = ?4) AND (?5 IS NULL OR id > ?5)
                 ORDER BY id LIMIT ?6"
                ),
                params![
                    org_id,
                    filter.conversation_id,
                    filter.kek_id,
                    filter.media_kind,
                    filter.after_id,
                    limit
                ],
                recording_row,
            )?;
            Ok(rows)
        })
    }
}

/// Which recordings to list. Every set field narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingFilter {
    /// Recordings of this conversation.
    pub conversation_id: Option<String>,
    /// Recordings wrapped for this KEK.
    pub kek_id: Option<String>,
    /// Recordings of this media kind.
    pub media_kind: Option<String>,
    /// Recordings whose id sorts after this one (for paging).
    pub after_id: Option<String>,
    /// At most this many (capped at 1000).
    pub limit: Option<u32>,
}

pub(super) const RECORDING_COLUMNS: &str = "id, org_id, kek_id, media_kind, content_type, conversation_id, \
     plaintext_len, stored_len, object_path, created_at";

pub(super) fn recording_row(
    row: &crate::db::Row,
) -> std::result::Result<RecordingRecord, crate::db::DbError> {
    Ok(RecordingRecord {
        id: row.get(0)?,
        org_id: row.get(1)?,
        kek_id: row.get(2)?,
        media_kind: row.get(3)?,
        content_type: row.get(4)?,
        conversation_id: row.get(5)?,
        plaintext_len: row.get::<i64>(6)?.unsigned_abs(),
        stored_len: row.get::<i64>(7)?.unsigned_abs(),
        object_path: row.get(8)?,
        created_at: row.get(9)?,
    })
}
