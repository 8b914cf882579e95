//! KEKs and rotation schedules as the catalogue records them, and the deletion guard.

use rusqlite::{OptionalExtension, params};

use super::audit::append;
use super::{AuditEvent, Catalogue, CatalogueError, Result};
use crate::schedule::Period;
use crate::time::now_ms;

/// A KEK as the catalogue records it.
#[derive(Clone, PartialEq, Eq)]
pub struct KekRecord {
    /// KEK id.
    pub id: String,
    /// Owning organisation.
    pub org_id: String,
    /// Public key, DER SubjectPublicKeyInfo.
    pub public_spki: Vec<u8>,
    /// The private key sealed under the master key (managed), or the KMS
    /// ciphertext of it (`kms_key_arn` says under which KMS key); `None` when the
    /// private key lives elsewhere (a Local Key Manager).
    pub sealed_private: Option<Vec<u8>>,
    /// `active` or `retired`.
    pub state: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The OAEP padding DEKs are wrapped for it with (`rsa-oaep-sha256` or
    /// `rsa-oaep-sha1`).
    pub wrap_algorithm: String,
    /// The ARN of the AWS KMS key whose ciphertext `sealed_private` is.
    pub kms_key_arn: Option<String>,
}

/// Who holds a KEK's private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KekHolder {
    /// This server, sealed under its master key.
    Managed,
    /// The organisation's Local Key Manager.
    Lkm,
    /// This server, encrypted under the organisation's AWS KMS key.
    Kms,
}

impl KekHolder {
    /// The SQL condition on `keks` rows this holder holds.
    fn condition(self) -> &'static str {
        match self {
            Self::Managed => "sealed_private IS NOT NULL AND kms_key_arn IS NULL",
            Self::Lkm => "sealed_private IS NULL",
            Self::Kms => "sealed_private IS NOT NULL AND kms_key_arn IS NOT NULL",
        }
    }

    /// `managed`, `lkm`, `aws-kms` (as the organisation's key mode names it).
    pub fn name(self) -> &'static str {
        match self {
            Self::Managed => "managed",
            Self::Lkm => "lkm",
            Self::Kms => "aws-kms",
        }
    }

    /// The holder of a key mode's KEKs.
    pub fn of_mode(mode: &str) -> Option<Self> {
        [Self::Managed, Self::Lkm, Self::Kms]
            .into_iter()
            .find(|h| h.name() == mode)
    }
}

impl KekRecord {
    /// Who holds its private key.
    pub fn holder(&self) -> KekHolder {
        match (&self.sealed_private, &self.kms_key_arn) {
            (None, _) => KekHolder::Lkm,
            (Some(_), None) => KekHolder::Managed,
            (Some(_), Some(_)) => KekHolder::Kms,
        }
    }
}

impl std::fmt::Debug for KekRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KekRecord")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("state", &self.state)
            .field("created_at", &self.created_at)
            .field("kms_key_arn", &self.kms_key_arn)
            .finish_non_exhaustive()
    }
}

pub(super) fn kek_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<KekRecord> {
    Ok(KekRecord {
        id: row.get(0)?,
        org_id: row.get(1)?,
        public_spki: row.get(2)?,
        sealed_private: row.get(3)?,
        state: row.get(4)?,
        created_at: row.get(5)?,
        wrap_algorithm: row.get(6)?,
        kms_key_arn: row.get(7)?,
    })
}

pub(super) const KEK_COLUMNS: &str =
    "id, org_id, public_spki, sealed_private, state, created_at, wrap_algorithm, kms_key_arn";

impl Catalogue {
    /// Records a new active KEK and its audit entry in one transaction.
    pub fn insert_kek(&self, kek: &KekRecord, actor: &str, event: &AuditEvent<'_>) -> Result<()> {
        crate::blocking(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            insert_kek(&tx, kek)?;
            append(&tx, &kek.org_id, actor, event)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Whether any private key is sealed under a master key (so a missing master
    /// key file must not be replaced by a new one).
    pub fn has_sealed_keys(&self) -> Result<bool> {
        crate::blocking(|| {
            Ok(self.conn().query_row(
                "SELECT EXISTS (SELECT 1 FROM keks
                                WHERE sealed_private IS NOT NULL AND kms_key_arn IS NULL)
                     OR EXISTS (SELECT 1 FROM lkm_settings)
                     OR EXISTS (SELECT 1 FROM kms_settings WHERE sealed_secret_key IS NOT NULL)",
                [],
                |row| row.get(0),
            )?)
        })
    }

    /// The organisation's newest active KEK held by `holder`: the one new
    /// recordings use while the organisation's key mode is that holder's.
    pub fn current_kek(&self, org_id: &str, holder: KekHolder) -> Result<Option<KekRecord>> {
        crate::blocking(|| {
            Ok(self
                .conn()
                .query_row(
                    &format!(
                        "SELECT {KEK_COLUMNS} FROM keks
                         WHERE org_id = ?1 AND state = 'active' AND {}
                         ORDER BY created_at DESC, rowid DESC LIMIT 1",
                        holder.condition()
                    ),
                    params![org_id],
                    kek_row,
                )
                .optional()?)
        })
    }

    /// The KEK new recordings of the organisation use: the newest active one held
    /// by the holder of its key mode.
    pub fn current_kek_of_mode(&self, org_id: &str) -> Result<Option<KekRecord>> {
        let org = self.find_org(org_id)?;
        let holder = KekHolder::of_mode(&org.key_mode)
            .ok_or(CatalogueError::Invalid("unknown key mode in the catalogue"))?;
        self.current_kek(&org.id, holder)
    }

    /// One KEK of an organisation (never another organisation's).
    pub fn kek(&self, org_id: &str, kek_id: &str) -> Result<Option<KekRecord>> {
        crate::blocking(|| {
            // Asked on every unwrap: the parsed statement is kept.
            Ok(self
                .conn()
                .prepare_cached(&format!(
                    "SELECT {KEK_COLUMNS} FROM keks WHERE org_id = ?1 AND id = ?2"
                ))?
                .query_row(params![org_id, kek_id], kek_row)
                .optional()?)
        })
    }

    /// Every KEK of an organisation, newest first.
    pub fn list_keks(&self, org_id: &str) -> Result<Vec<KekRecord>> {
        crate::blocking(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare(&format!(
                "SELECT {KEK_COLUMNS} FROM keks WHERE org_id = ?1 ORDER BY created_at DESC, rowid DESC"
            ))?;
            let rows = stmt.query_map(params![org_id], kek_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Marks a KEK retired: it keeps unwrapping what it wraps but is never current
    /// again. Says whether it was active.
    pub fn retire_kek(&self, org_id: &str, kek_id: &str) -> Result<bool> {
        crate::blocking(|| {
            let n = self.conn().execute(
                "UPDATE keks SET state = 'retired', retired_at = ?1
                 WHERE org_id = ?2 AND id = ?3 AND state = 'active'",
                params![now_ms(), org_id, kek_id],
            )?;
            Ok(n == 1)
        })
    }

    /// How many stored recordings still reference a KEK.
    pub fn recordings_using_kek(&self, org_id: &str, kek_id: &str) -> Result<u64> {
        crate::blocking(|| {
            let n: i64 = self.conn().query_row(
                "SELECT COUNT(*) FROM recordings WHERE org_id = ?1 AND kek_id = ?2",
                params![org_id, kek_id],
                |row| row.get(0),
            )?;
            Ok(n.unsigned_abs())
        })
    }

    /// Deletes a KEK that no recording references and no queued or running job
    /// names, in one transaction with the check and its audit entry. Returns what
    /// still uses it when it cannot be deleted.
    pub fn delete_kek(
        &self,
        org_id: &str,
        kek_id: &str,
        actor: &str,
    ) -> Result<Result<(), KekUsers>> {
        crate::blocking(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let exists: Option<String> = tx
                .query_row(
                    "SELECT id FROM keks WHERE org_id = ?1 AND id = ?2",
                    params![org_id, kek_id],
                    |row| row.get(0),
                )
                .optional()?;
            if exists.is_none() {
                return Err(CatalogueError::NoSuchKek);
            }
            let recordings: i64 = tx.query_row(
                "SELECT COUNT(*) FROM recordings WHERE org_id = ?1 AND kek_id = ?2",
                params![org_id, kek_id],
                |row| row.get(0),
            )?;
            let jobs: i64 = tx.query_row(
                "SELECT COUNT(*) FROM jobs WHERE org_id = ?1 AND state IN ('queued', 'running')
                   AND (json_extract(params, '$.from_kek_id') = ?2
                        OR json_extract(params, '$.to_kek_id') = ?2)",
                params![org_id, kek_id],
                |row| row.get(0),
            )?;
            let users = KekUsers {
                recordings: recordings.unsigned_abs(),
                jobs: jobs.unsigned_abs(),
            };
            if users.recordings > 0 || users.jobs > 0 {
                return Ok(Err(users));
            }
            tx.execute(
                "DELETE FROM keks WHERE org_id = ?1 AND id = ?2",
                params![org_id, kek_id],
            )?;
            append(&tx, org_id, actor, &AuditEvent::KekDelete { kek_id })?;
            tx.commit()?;
            Ok(Ok(()))
        })
    }
}

/// Inserts a new active KEK, refusing an id that exists.
pub(super) fn insert_kek(tx: &rusqlite::Transaction<'_>, kek: &KekRecord) -> Result<()> {
    let inserted = tx.execute(
        "INSERT INTO keks (id, org_id, public_spki, sealed_private, state, created_at,
                           wrap_algorithm, kms_key_arn)
         VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
        params![
            kek.id,
            kek.org_id,
            kek.public_spki,
            kek.sealed_private,
            kek.created_at,
            kek.wrap_algorithm,
            kek.kms_key_arn
        ],
    )?;
    if inserted == 0 {
        return Err(CatalogueError::Exists(format!("KEK '{}'", kek.id)));
    }
    Ok(())
}

/// What still uses a KEK that cannot be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KekUsers {
    /// Catalogued recordings wrapped for it.
    pub recordings: u64,
    /// Queued or running jobs that name it.
    pub jobs: u64,
}

impl Catalogue {
    /// An organisation's rotation period and when its KEK last rotated by schedule.
    pub fn schedule(&self, org_id: &str) -> Result<(Period, Option<i64>)> {
        crate::blocking(|| {
            let (period, last): (String, Option<i64>) = self
                .conn()
                .query_row(
                    "SELECT period, last_rotated_at FROM rotation_schedules WHERE org_id = ?1",
                    params![org_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?
                .ok_or_else(|| CatalogueError::NoSuchOrg(org_id.to_string()))?;
            let period = Period::from_name(&period).ok_or(CatalogueError::Invalid(
                "unknown rotation period in the catalogue",
            ))?;
            Ok((period, last))
        })
    }

    /// Sets an organisation's rotation period, audited as done by `actor`; it is
    /// kept across restarts.
    pub fn set_schedule(&self, org_id: &str, period: Period, actor: &str) -> Result<()> {
        crate::blocking(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let n = tx.execute(
                "UPDATE rotation_schedules SET period = ?1 WHERE org_id = ?2",
                params![period.name(), org_id],
            )?;
            if n == 0 {
                return Err(CatalogueError::NoSuchOrg(org_id.to_string()));
            }
            append(&tx, org_id, actor, &AuditEvent::ScheduleSet { period })?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Records that a scheduled rotation happened.
    pub fn mark_rotated(&self, org_id: &str, at_ms: i64) -> Result<()> {
        crate::blocking(|| {
            self.conn().execute(
                "UPDATE rotation_schedules SET last_rotated_at = ?1 WHERE org_id = ?2",
                params![at_ms, org_id],
            )?;
            Ok(())
        })
    }
}
