//! KEKs and rotation schedules as the catalogue records them, and the deletion guard.

use crate::db::params;

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

pub(super) fn kek_row(row: &crate::db::Row) -> std::result::Result<KekRecord, crate::db::DbError> {
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

/// The newest active KEK of `holder`, read inside a transaction.
fn current_in(
    tx: &crate::db::Tx<'_>,
    org_id: &str,
    holder: KekHolder,
) -> Result<Option<KekRecord>> {
    Ok(tx.query_opt(
        &format!(
            "SELECT {KEK_COLUMNS} FROM keks
             WHERE org_id = ?1 AND state = 'active' AND {}
             ORDER BY created_at DESC, id DESC LIMIT 1",
            holder.condition()
        ),
        params![org_id],
        kek_row,
    )?)
}

impl Catalogue {
    /// Makes `kek` the organisation's current KEK of its holder, with its audit
    /// entry, only if the current one is still `replacing` (`None`: there is none
    /// yet); for a scheduled rotation, `scheduled_at` is recorded as the schedule's
    /// last rotation in the same transaction. Returns `false`, recording nothing,
    /// when another rotation got there first: however many instances or requests
    /// rotate from the same KEK at once, one new KEK results.
    pub fn insert_kek_replacing(
        &self,
        kek: &KekRecord,
        replacing: Option<&str>,
        scheduled_at: Option<i64>,
        actor: &str,
        event: &AuditEvent<'_>,
    ) -> Result<bool> {
        self.write_for(&kek.org_id, |tx| {
            let current = current_in(tx, &kek.org_id, kek.holder())?;
            if current.as_ref().map(|k| k.id.as_str()) != replacing {
                return Ok(false);
            }
            insert_kek(tx, kek)?;
            if let Some(at) = scheduled_at {
                tx.execute(
                    "UPDATE rotation_schedules SET last_rotated_at = ?1 WHERE org_id = ?2",
                    params![at, kek.org_id],
                )?;
            }
            append(tx, &kek.org_id, actor, event)?;
            Ok(true)
        })
    }

    /// Records a new active KEK and its audit entry in one transaction.
    pub fn insert_kek(&self, kek: &KekRecord, actor: &str, event: &AuditEvent<'_>) -> Result<()> {
        self.write_for(&kek.org_id, |tx| {
            insert_kek(tx, kek)?;
            append(tx, &kek.org_id, actor, event)?;
            Ok(())
        })
    }

    /// Whether any private key is sealed under a master key (so a missing master
    /// key file must not be replaced by a new one).
    pub fn has_sealed_keys(&self) -> Result<bool> {
        self.read(|tx| {
            Ok(tx.query_one(
                "SELECT EXISTS (SELECT 1 FROM keks
                                WHERE sealed_private IS NOT NULL AND kms_key_arn IS NULL)
                     OR EXISTS (SELECT 1 FROM lkm_settings)
                     OR EXISTS (SELECT 1 FROM kms_settings WHERE sealed_secret_key IS NOT NULL)
                     OR EXISTS (SELECT 1 FROM server_secrets)",
                params![],
                |row| row.get(0),
            )?)
        })
    }

    /// The organisation's newest active KEK held by `holder`: the one new
    /// recordings use while the organisation's key mode is that holder's.
    pub fn current_kek(&self, org_id: &str, holder: KekHolder) -> Result<Option<KekRecord>> {
        self.read(|tx| current_in(tx, org_id, holder))
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
        self.read(|tx| {
            // Asked on every unwrap: the parsed statement is kept.
            Ok(tx.query_opt(
                &format!("SELECT {KEK_COLUMNS} FROM keks WHERE org_id = ?1 AND id = ?2"),
                params![org_id, kek_id],
                kek_row,
            )?)
        })
    }

    /// Every KEK of an organisation, newest first.
    pub fn list_keks(&self, org_id: &str) -> Result<Vec<KekRecord>> {
        self.read(|tx| {
            let rows = tx.query_map(&format!(
                "SELECT {KEK_COLUMNS} FROM keks WHERE org_id = ?1 ORDER BY created_at DESC, id DESC"
            ), params![org_id], kek_row)?;
            Ok(rows)
        })
    }

    /// Marks a KEK retired: it keeps unwrapping what it wraps but is never current
    /// again. Says whether it was active.
    pub fn retire_kek(&self, org_id: &str, kek_id: &str) -> Result<bool> {
        self.read(|tx| {
            let n = tx.execute(
                "UPDATE keks SET state = 'retired', retired_at = ?1
                 WHERE org_id = ?2 AND id = ?3 AND state = 'active'",
                params![now_ms(), org_id, kek_id],
            )?;
            Ok(n == 1)
        })
    }

    /// How many stored recordings still reference a KEK.
    pub fn recordings_using_kek(&self, org_id: &str, kek_id: &str) -> Result<u64> {
        self.read(|tx| {
            let n: i64 = tx.query_one(
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
        self.write_for(org_id, |tx| {
            let exists: Option<String> = tx.query_opt(
                "SELECT id FROM keks WHERE org_id = ?1 AND id = ?2",
                params![org_id, kek_id],
                |row| row.get(0),
            )?;
            if exists.is_none() {
                return Err(CatalogueError::NoSuchKek);
            }
            let recordings: i64 = tx.query_one(
                "SELECT COUNT(*) FROM recordings WHERE org_id = ?1 AND kek_id = ?2",
                params![org_id, kek_id],
                |row| row.get(0),
            )?;
            let jobs: i64 = tx.query_one(
                &format!(
                    "SELECT COUNT(*) FROM jobs WHERE org_id = ?1 AND state IN ('queued', 'running')
                       AND ({} = ?2 OR {} = ?2)",
                    tx.json_text("params", "from_kek_id"),
                    tx.json_text("params", "to_kek_id")
                ),
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
            append(tx, org_id, actor, &AuditEvent::KekDelete { kek_id })?;
            Ok(Ok(()))
        })
    }
}

/// Inserts a new active KEK, refusing an id that exists. Its creation time is made
/// later than that of every other KEK of the organisation, so that "newest" is
/// always one KEK, however close together two were made.
pub(super) fn insert_kek(tx: &crate::db::Tx<'_>, kek: &KekRecord) -> Result<()> {
    let latest: Option<i64> = tx.query_one(
        "SELECT MAX(created_at) FROM keks WHERE org_id = ?1",
        params![kek.org_id],
        |row| row.get(0),
    )?;
    let created_at = kek.created_at.max(latest.map_or(i64::MIN, |t| t + 1));
    let inserted = tx.execute(
        "INSERT INTO keks (id, org_id, public_spki, sealed_private, state, created_at,
                           wrap_algorithm, kms_key_arn)
         VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
        params![
            kek.id,
            kek.org_id,
            kek.public_spki,
            kek.sealed_private,
            created_at,
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
        self.read(|tx| {
            let (period, last): (String, Option<i64>) = tx
                .query_opt(
                    "SELECT period, last_rotated_at FROM rotation_schedules WHERE org_id = ?1",
                    params![org_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?
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
        self.write_for(org_id, |tx| {
            let n = tx.execute(
                "UPDATE rotation_schedules SET period = ?1 WHERE org_id = ?2",
                params![period.name(), org_id],
            )?;
            if n == 0 {
                return Err(CatalogueError::NoSuchOrg(org_id.to_string()));
            }
            append(tx, org_id, actor, &AuditEvent::ScheduleSet { period })?;
            Ok(())
        })
    }
}
