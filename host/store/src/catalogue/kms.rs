//! AWS KMS settings: which KMS key protects an organisation's private KEKs, the
//! switch into KMS mode, the KMS key change (every KEK's ciphertext replaced in one
//! transaction), and the switch of an organisation's key mode.

use crate::db::params;

use super::audit::append;
use super::keks::{KekHolder, KekRecord, insert_kek};
use super::orgs::switch_mode;
use super::{AuditEvent, Catalogue, CatalogueError, Result};

/// An organisation's KMS key as the catalogue records it.
#[derive(Clone, PartialEq, Eq)]
pub struct KmsSettings {
    /// The organisation.
    pub org_id: String,
    /// The key as the administrator named it (key id, key ARN, alias name or ARN).
    pub key_id: String,
    /// The key's ARN, as KMS answered it: what new KEKs are encrypted under.
    pub key_arn: String,
    /// The AWS region of the key.
    pub region: String,
    /// The organisation's own AWS access key id, if it gave one (otherwise the
    /// server's AWS credentials are used).
    pub access_key_id: Option<String>,
    /// The secret access key, sealed under the master key.
    pub sealed_secret_key: Option<Vec<u8>>,
    /// Unix milliseconds; also the settings' version (clients are rebuilt when it
    /// changes).
    pub updated_at: i64,
}

impl std::fmt::Debug for KmsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsSettings")
            .field("org_id", &self.org_id)
            .field("key_id", &self.key_id)
            .field("key_arn", &self.key_arn)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// One KEK's private key moved from one KMS key to another.
#[derive(Clone)]
pub struct KmsRekey {
    /// The KEK.
    pub kek_id: String,
    /// The KMS key it was under (the update applies only if it still is).
    pub from_arn: String,
    /// The KMS ciphertext of its private key under the new key.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for KmsRekey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsRekey")
            .field("kek_id", &self.kek_id)
            .field("from_arn", &self.from_arn)
            .finish_non_exhaustive()
    }
}

fn settings_row(row: &crate::db::Row) -> std::result::Result<KmsSettings, crate::db::DbError> {
    Ok(KmsSettings {
        org_id: row.get(0)?,
        key_id: row.get(1)?,
        key_arn: row.get(2)?,
        region: row.get(3)?,
        access_key_id: row.get(4)?,
        sealed_secret_key: row.get(5)?,
        updated_at: row.get(6)?,
    })
}

impl Catalogue {
    /// The organisation's KMS settings, if it has any.
    pub fn kms_settings(&self, org_id: &str) -> Result<Option<KmsSettings>> {
        self.read(|tx| {
            Ok(tx.query_opt(
                "SELECT org_id, key_id, key_arn, region, access_key_id, sealed_secret_key,
                            updated_at
                     FROM kms_settings WHERE org_id = ?1",
                params![org_id],
                settings_row,
            )?)
        })
    }

    /// The organisation's KEKs whose private keys are under a KMS key.
    pub fn kms_keks(&self, org_id: &str) -> Result<Vec<KekRecord>> {
        Ok(self
            .list_keks(org_id)?
            .into_iter()
            .filter(|k| k.holder() == KekHolder::Kms)
            .collect())
    }

    /// In one transaction: records the organisation's KMS settings (their
    /// `updated_at` is set here and returned), puts it in KMS mode, replaces the
    /// ciphertexts of `rekeyed` KEKs (each only if it is still under its
    /// `from_arn`), inserts `new_kek` if given, and audits `events`. Fails, changing
    /// nothing, if any KEK of the organisation would be left under another KMS key
    /// than the new one (one was created meanwhile: the caller tries again).
    pub fn set_kms_settings(
        &self,
        settings: &KmsSettings,
        rekeyed: &[KmsRekey],
        new_kek: Option<&KekRecord>,
        actor: &str,
        events: &[AuditEvent<'_>],
    ) -> Result<i64> {
        self.write_for(&settings.org_id, |tx| {
            let updated_at = switch_mode(tx, KekHolder::Kms, &settings.org_id)?;
            tx.execute(
                "INSERT INTO kms_settings (org_id, key_id, key_arn, region, access_key_id,
                                           sealed_secret_key, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (org_id) DO UPDATE SET
                     key_id = excluded.key_id, key_arn = excluded.key_arn,
                     region = excluded.region, access_key_id = excluded.access_key_id,
                     sealed_secret_key = excluded.sealed_secret_key,
                     updated_at = excluded.updated_at",
                params![
                    settings.org_id,
                    settings.key_id,
                    settings.key_arn,
                    settings.region,
                    settings.access_key_id,
                    settings.sealed_secret_key,
                    updated_at
                ],
            )?;
            for rekey in rekeyed {
                let n = tx.execute(
                    "UPDATE keks SET sealed_private = ?1, kms_key_arn = ?2
                     WHERE org_id = ?3 AND id = ?4 AND kms_key_arn = ?5",
                    params![
                        rekey.ciphertext,
                        settings.key_arn,
                        settings.org_id,
                        rekey.kek_id,
                        rekey.from_arn
                    ],
                )?;
                if n != 1 {
                    return Err(CatalogueError::Invalid(
                        "a KEK changed during the KMS key change; try again",
                    ));
                }
            }
            let left: i64 = tx.query_one(
                "SELECT COUNT(*) FROM keks WHERE org_id = ?1 AND kms_key_arn IS NOT NULL
                   AND kms_key_arn <> ?2",
                params![settings.org_id, settings.key_arn],
                |row| row.get(0),
            )?;
            if left > 0 {
                return Err(CatalogueError::Invalid(
                    "a KEK was created under the old KMS key during the KMS key change; try again",
                ));
            }
            if let Some(kek) = new_kek {
                insert_kek(tx, kek)?;
            }
            for event in events {
                append(tx, &settings.org_id, actor, event)?;
            }
            Ok(updated_at)
        })
    }

    /// Sets the organisation's key mode (`managed`, `lkm`, `aws-kms`), audited
    /// with `events` after the mode change itself; `new_kek`, if given, is inserted
    /// in the same transaction (the mode's new current KEK). LKM and KMS modes need
    /// their settings recorded first.
    pub fn set_key_mode(
        &self,
        org_id: &str,
        holder: KekHolder,
        new_kek: Option<&KekRecord>,
        actor: &str,
        events: &[AuditEvent<'_>],
    ) -> Result<()> {
        self.write_for(org_id, |tx| {
            let settings = match holder {
                KekHolder::Managed => None,
                KekHolder::Lkm => Some("SELECT COUNT(*) FROM lkm_settings WHERE org_id = ?1"),
                KekHolder::Kms => Some("SELECT COUNT(*) FROM kms_settings WHERE org_id = ?1"),
            };
            if let Some(sql) = settings {
                let n: i64 = tx.query_one(sql, params![org_id], |row| row.get(0))?;
                if n == 0 {
                    return Err(CatalogueError::Invalid(
                        "that key mode has no settings for this organisation yet",
                    ));
                }
            }
            let changed = tx.execute(
                "UPDATE orgs SET key_mode = ?1 WHERE id = ?2",
                params![holder.name(), org_id],
            )?;
            if changed == 0 {
                return Err(CatalogueError::NoSuchOrg(org_id.to_string()));
            }
            if let Some(kek) = new_kek {
                insert_kek(tx, kek)?;
            }
            append(
                tx,
                org_id,
                actor,
                &AuditEvent::KeyMode {
                    mode: holder.name(),
                },
            )?;
            for event in events {
                append(tx, org_id, actor, event)?;
            }
            Ok(())
        })
    }
}
