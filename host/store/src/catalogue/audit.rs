//! The audit log: an append-only record of who did what to which recording and KEK,
//! read back per organisation with filters.

use crate::db::params;
use serde::Serialize;

use super::{Catalogue, Result, Role, committer};
use crate::schedule::Period;
use crate::time::now_ms;

/// Something that happened, with the fields its kind of entry carries. Its
/// [`action`](AuditEvent::action) name, recording, KEK and detail text are derived
/// here, in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditEvent<'a> {
    /// An organisation was created.
    OrgCreate {
        /// Its name.
        name: &'a str,
    },
    /// An API token was created.
    TokenCreate {
        /// Token id.
        token_id: &'a str,
        /// Its role.
        role: Role,
    },
    /// An API token was revoked.
    TokenRevoke {
        /// Token id.
        token_id: &'a str,
    },
    /// A KEK was created.
    KekCreate {
        /// KEK id.
        kek_id: &'a str,
        /// How it is held, e.g. `managed RSA-3072`.
        detail: &'a str,
    },
    /// A KEK was deleted.
    KekDelete {
        /// KEK id.
        kek_id: &'a str,
    },
    /// The organisation's Local Key Manager was set (its KEKs are held there now).
    LkmConfigure {
        /// The LKM's decrypt URL.
        url: &'a str,
    },
    /// The organisation's AWS KMS key was set (new KEKs are encrypted under it).
    KmsConfigure {
        /// The KMS key's ARN.
        key_arn: &'a str,
    },
    /// The organisation's private KEKs moved from one KMS key to another.
    KmsKeyChange {
        /// The KMS key they were under.
        from_arn: &'a str,
        /// The KMS key they are under now.
        to_arn: &'a str,
        /// How many KEKs moved.
        keks: usize,
    },
    /// The organisation's key mode changed.
    KeyMode {
        /// `managed`, `lkm` or `aws-kms`.
        mode: &'a str,
    },
    /// The rotation schedule was set.
    ScheduleSet {
        /// The new period.
        period: Period,
    },
    /// A recording was stored.
    RecordingIngest {
        /// Recording id.
        recording_id: &'a str,
        /// The KEK it is sealed for (none for storage-key recordings).
        kek_id: Option<&'a str>,
        /// Plaintext bytes.
        bytes: u64,
        /// Media kind name.
        kind: &'a str,
    },
    /// A recording's content was decrypted for a caller.
    RecordingDecrypt {
        /// Recording id.
        recording_id: &'a str,
        /// The KEK that unwrapped its DEK.
        kek_id: &'a str,
        /// Plaintext bytes `[start, end)` released, of `len`.
        range: std::ops::Range<u64>,
        /// The plaintext length.
        len: u64,
    },
    /// A decrypt was attempted and failed.
    RecordingDecryptFailed {
        /// Recording id.
        recording_id: &'a str,
        /// The KEK the catalogue names.
        kek_id: Option<&'a str>,
    },
    /// A recording's sealed envelope was downloaded.
    RecordingEnvelope {
        /// Recording id.
        recording_id: &'a str,
        /// The KEK the catalogue names.
        kek_id: Option<&'a str>,
        /// Stored bytes.
        bytes: u64,
    },
    /// A browser was granted to ask the organisation's LKM for a recording's DEK.
    RecordingGrant {
        /// Recording id.
        recording_id: &'a str,
        /// The LKM key pair (KEK) the grant names.
        kek_id: &'a str,
        /// When the grant expires, Unix seconds.
        expires_at: u64,
    },
    /// The server's grant key was registered with the organisation's LKM.
    LkmGrantKey {
        /// The key's id.
        key_id: &'a str,
    },
    /// A recording was moved onto another KEK.
    RecordingRewrap {
        /// Recording id.
        recording_id: &'a str,
        /// The KEK it now uses.
        to_kek_id: &'a str,
        /// The KEK it used.
        from_kek_id: &'a str,
        /// The job.
        job_id: &'a str,
    },
    /// A rewrap job was created.
    RewrapJobCreate {
        /// The KEK recordings move off.
        from_kek_id: &'a str,
        /// The KEK they move onto.
        to_kek_id: &'a str,
        /// How many recordings.
        total: u64,
    },
    /// A rewrap job finished.
    RewrapJobFinish {
        /// The job.
        job_id: &'a str,
        /// The KEK recordings moved off.
        from_kek_id: &'a str,
        /// Recordings moved.
        moved: u64,
        /// Recordings that failed.
        failed: u64,
    },
    /// A rewrap job stopped on an error.
    RewrapJobFail {
        /// The job.
        job_id: &'a str,
        /// Why (no key material).
        cause: &'a str,
    },
    /// A caller cancelled a job.
    JobCancel {
        /// The job.
        job_id: &'a str,
    },
    /// A caller queued a stopped job again.
    JobResume {
        /// The job.
        job_id: &'a str,
    },
    /// An export job was created.
    ExportJobCreate {
        /// Where it writes, e.g. `s3://bucket/prefix (SSE aws:kms)`.
        destination: &'a str,
        /// How many recordings it selected.
        total: u64,
    },
    /// A recording was decrypted and written out by an export job.
    RecordingExport {
        /// Recording id.
        recording_id: &'a str,
        /// The key that unwrapped its DEK.
        kek_id: &'a str,
        /// The job.
        job_id: &'a str,
        /// Plaintext bytes.
        bytes: u64,
    },
    /// An export job finished, was cancelled, or stopped on an error.
    ExportJobEnd {
        /// The job.
        job_id: &'a str,
        /// `done`, `failed` or `cancelled`.
        state: &'a str,
        /// Recordings written.
        exported: u64,
        /// Recordings that failed.
        failed: u64,
        /// Why it stopped, when it stopped on an error (no key material).
        cause: Option<&'a str>,
    },
}

impl AuditEvent<'_> {
    /// The action name entries are filtered by, e.g. `recording.decrypt`.
    pub fn action(&self) -> &'static str {
        match self {
            Self::OrgCreate { .. } => "org.create",
            Self::TokenCreate { .. } => "token.create",
            Self::TokenRevoke { .. } => "token.revoke",
            Self::KekCreate { .. } => "kek.create",
            Self::KekDelete { .. } => "kek.delete",
            Self::LkmConfigure { .. } => "lkm.configure",
            Self::LkmGrantKey { .. } => "lkm.grant_key",
            Self::KmsConfigure { .. } => "kms.configure",
            Self::KmsKeyChange { .. } => "kms.key_change",
            Self::KeyMode { .. } => "org.key_mode",
            Self::RecordingGrant { .. } => "recording.grant",
            Self::ScheduleSet { .. } => "schedule.set",
            Self::RecordingIngest { .. } => "recording.ingest",
            Self::RecordingDecrypt { .. } => "recording.decrypt",
            Self::RecordingDecryptFailed { .. } => "recording.decrypt_failed",
            Self::RecordingEnvelope { .. } => "recording.envelope",
            Self::RecordingRewrap { .. } => "recording.rewrap",
            Self::RewrapJobCreate { .. } => "job.rewrap.create",
            Self::RewrapJobFinish { .. } => "job.rewrap.finish",
            Self::RewrapJobFail { .. } => "job.rewrap.fail",
            Self::JobCancel { .. } => "job.cancel",
            Self::JobResume { .. } => "job.resume",
            Self::ExportJobCreate { .. } => "job.export.create",
            Self::RecordingExport { .. } => "recording.export",
            Self::ExportJobEnd { .. } => "job.export.end",
        }
    }

    fn recording_id(&self) -> Option<&str> {
        match self {
            Self::RecordingIngest { recording_id, .. }
            | Self::RecordingDecrypt { recording_id, .. }
            | Self::RecordingDecryptFailed { recording_id, .. }
            | Self::RecordingEnvelope { recording_id, .. }
            | Self::RecordingGrant { recording_id, .. }
            | Self::RecordingRewrap { recording_id, .. }
            | Self::RecordingExport { recording_id, .. } => Some(recording_id),
            _ => None,
        }
    }

    fn kek_id(&self) -> Option<&str> {
        match self {
            Self::KekCreate { kek_id, .. }
            | Self::KekDelete { kek_id }
            | Self::RecordingDecrypt { kek_id, .. }
            | Self::RecordingGrant { kek_id, .. }
            | Self::RecordingExport { kek_id, .. } => Some(kek_id),
            Self::RecordingRewrap { to_kek_id, .. } => Some(to_kek_id),
            Self::RewrapJobCreate { from_kek_id, .. }
            | Self::RewrapJobFinish { from_kek_id, .. } => Some(from_kek_id),
            Self::RecordingIngest { kek_id, .. }
            | Self::RecordingDecryptFailed { kek_id, .. }
            | Self::RecordingEnvelope { kek_id, .. } => *kek_id,
            _ => None,
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::OrgCreate { name } => (*name).to_string(),
            Self::TokenCreate { token_id, role } => format!("{token_id} ({})", role.name()),
            Self::TokenRevoke { token_id } => (*token_id).to_string(),
            Self::KekCreate { detail, .. } => (*detail).to_string(),
            Self::KekDelete { .. } => String::new(),
            Self::LkmConfigure { url } => (*url).to_string(),
            Self::LkmGrantKey { key_id } => format!("grant key {key_id}"),
            Self::KmsConfigure { key_arn } => (*key_arn).to_string(),
            Self::KmsKeyChange {
                from_arn,
                to_arn,
                keks,
            } => format!("{keks} KEK(s) re-encrypted from {from_arn} to {to_arn}"),
            Self::KeyMode { mode } => (*mode).to_string(),
            Self::RecordingGrant { expires_at, .. } => {
                format!("browser grant, expires at {expires_at}")
            }
            Self::ScheduleSet { period } => period.name().to_string(),
            Self::RecordingIngest { bytes, kind, .. } => format!("{bytes} bytes of {kind}"),
            Self::RecordingDecrypt { range, len, .. } if range.is_empty() => {
                format!("0 of {len} bytes")
            }
            Self::RecordingDecrypt { range, len, .. } => {
                format!("bytes {}-{}/{len}", range.start, range.end - 1)
            }
            Self::RecordingDecryptFailed { .. } => "could not decrypt".into(),
            Self::RecordingEnvelope { bytes, .. } => format!("stored bytes, {bytes} in all"),
            Self::RecordingRewrap {
                from_kek_id,
                job_id,
                ..
            } => format!("from {from_kek_id}; job {job_id}"),
            Self::RewrapJobCreate {
                to_kek_id, total, ..
            } => format!("{total} recording(s) to {to_kek_id}"),
            Self::RewrapJobFinish {
                job_id,
                moved,
                failed,
                ..
            } => format!("job {job_id}: {moved} moved, {failed} failed"),
            Self::RewrapJobFail { job_id, cause } => format!("job {job_id} stopped: {cause}"),
            Self::JobCancel { job_id } | Self::JobResume { job_id } => format!("job {job_id}"),
            Self::ExportJobCreate { destination, total } => {
                format!("{total} recording(s) to {destination}")
            }
            Self::RecordingExport { job_id, bytes, .. } => {
                format!("{bytes} bytes exported; job {job_id}")
            }
            Self::ExportJobEnd {
                job_id,
                state,
                exported,
                failed,
                cause,
            } => {
                let mut text =
                    format!("job {job_id} {state}: {exported} exported, {failed} failed");
                if let Some(cause) = cause {
                    text.push_str(&format!("; {cause}"));
                }
                text
            }
        }
    }
}

/// Appends an entry inside a caller's transaction, so it commits with the change it
/// records.
pub(super) fn append(
    conn: &crate::db::Tx<'_>,
    org_id: &str,
    actor: &str,
    event: &AuditEvent<'_>,
) -> std::result::Result<(), crate::db::DbError> {
    Row::new(org_id, actor, event).insert(conn)
}

/// An entry as it is written, owned, so that it can wait for a group commit.
pub(super) struct Row {
    at: i64,
    org_id: String,
    actor: String,
    action: &'static str,
    recording_id: Option<String>,
    kek_id: Option<String>,
    detail: String,
}

impl Row {
    pub(super) fn new(org_id: &str, actor: &str, event: &AuditEvent<'_>) -> Self {
        Self {
            at: now_ms(),
            org_id: org_id.to_string(),
            actor: actor.to_string(),
            action: event.action(),
            recording_id: event.recording_id().map(str::to_string),
            kek_id: event.kek_id().map(str::to_string),
            detail: event.detail(),
        }
    }

    pub(super) fn org_id(&self) -> &str {
        &self.org_id
    }

    pub(super) fn insert(
        &self,
        tx: &crate::db::Tx<'_>,
    ) -> std::result::Result<(), crate::db::DbError> {
        tx.execute("INSERT INTO audit_log (at, org_id, org_seq, actor, action, recording_id, kek_id, detail)
             VALUES (?1, ?2, (SELECT COALESCE(MAX(org_seq), 0) + 1 FROM audit_log WHERE org_id = ?2),
                     ?3, ?4, ?5, ?6, ?7)", params![
                self.at,
                self.org_id,
                self.actor,
                self.action,
                self.recording_id,
                self.kek_id,
                self.detail
            ])?;
        Ok(())
    }
}

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
    /// Appends to the audit log, returning once the entry is durable. Entries from
    /// concurrent callers share one commit (see [`Catalogue::audit_async`]).
    pub fn audit(&self, org_id: &str, actor: &str, event: &AuditEvent<'_>) -> Result<()> {
        let answer = self.committer.submit(org_id, actor, event);
        crate::blocking(|| futures::executor::block_on(committer::durable(answer)))
    }

    /// Queues an entry for the audit log at once; the future resolves once it is
    /// durable, in a commit it shares with every entry queued meanwhile (one fsync
    /// for them all).
    pub fn audit_async(
        &self,
        org_id: &str,
        actor: &str,
        event: &AuditEvent<'_>,
    ) -> impl Future<Output = Result<()>> + Send + use<> {
        committer::durable(self.committer.submit(org_id, actor, event))
    }

    /// How many group commits of audit entries have been made since the catalogue
    /// was opened (with the entries recorded, the average batch size).
    pub fn audit_commits(&self) -> u64 {
        self.committer.commits()
    }

    /// The organisation's audit entries that match `filter`, oldest first.
    pub fn audit_log(&self, org_id: &str, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        self.read(|tx| {
            let limit = filter.limit.unwrap_or(100).clamp(1, 1000);

            let rows = tx.query_map("SELECT org_seq, at, org_id, actor, action, recording_id, kek_id, detail FROM audit_log
                 WHERE org_id = ?1
                   AND (?2 IS NULL OR at >= ?2) AND (?3 IS NULL OR at < ?3)
                   AND (?4 IS NULL OR actor = ?4) AND (?5 IS NULL OR recording_id = ?5)
                   AND (?6 IS NULL OR kek_id = ?6) AND (?7 IS NULL OR action = ?7)
                   AND (?8 IS NULL OR org_seq > ?8)
                 ORDER BY org_seq LIMIT ?9",
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
            Ok(rows)
        })
    }
}
