//! Local Key Manager settings: where an organisation's LKM is, and the switch of the
//! organisation into LKM mode (audited in the same transaction).

use crate::db::params;

use super::audit::append;
use super::keks::KekHolder;
use super::orgs::switch_mode;
use super::{AuditEvent, Catalogue, Result};
use crate::time::now_ms;

/// An organisation's LKM as the catalogue records it. The Hawk key is sealed (by
/// the key service, under the master key); the catalogue never sees it in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct LkmSettings {
    /// The organisation.
    pub org_id: String,
    /// `https://…/key-management/v1/decrypt`.
    pub decrypt_url: String,
    /// The Hawk id.
    pub hawk_id: String,
    /// The Hawk key, sealed under the master key.
    pub sealed_hawk_key: Vec<u8>,
    /// A CA certificate (PEM) to trust for the LKM, if any.
    pub ca_pem: Option<String>,
    /// The SHA-256 fingerprint (hex) of the LKM's certificate to pin, if any.
    pub fingerprint: Option<String>,
    /// How long one LKM request may take, in milliseconds.
    pub timeout_ms: i64,
    /// Unix milliseconds; also the settings' version (clients are rebuilt when it
    /// changes).
    pub updated_at: i64,
    /// Browser playback grants for this LKM.
    pub grants: GrantSettings,
}

/// How browsers reach the LKM, and the key that signs their playback grants.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GrantSettings {
    /// The LKM's browser-decrypt URL as browsers reach it.
    pub browser_url: Option<String>,
    /// The Ed25519 grant key (PKCS#8), sealed under the master key.
    pub sealed_key: Option<Vec<u8>>,
    /// The grant key's id.
    pub key_id: Option<String>,
    /// When the LKM accepted the grant key (Unix milliseconds); grants are issued
    /// only after it has.
    pub registered_at: Option<i64>,
    /// Why registering it failed, the last time it was tried.
    pub error: Option<String>,
}

impl std::fmt::Debug for GrantSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantSettings")
            .field("browser_url", &self.browser_url)
            .field("key_id", &self.key_id)
            .field("registered_at", &self.registered_at)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LkmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LkmSettings")
            .field("org_id", &self.org_id)
            .field("decrypt_url", &self.decrypt_url)
            .field("hawk_id", &self.hawk_id)
            .field("fingerprint", &self.fingerprint)
            .field("timeout_ms", &self.timeout_ms)
            .field("grants", &self.grants)
            .finish_non_exhaustive()
    }
}

fn settings_row(row: &crate::db::Row) -> std::result::Result<LkmSettings, crate::db::DbError> {
    Ok(LkmSettings {
        org_id: row.get(0)?,
        decrypt_url: row.get(1)?,
        hawk_id: row.get(2)?,
        sealed_hawk_key: row.get(3)?,
        ca_pem: row.get(4)?,
        fingerprint: row.get(5)?,
        timeout_ms: row.get(6)?,
        updated_at: row.get(7)?,
        grants: GrantSettings {
            browser_url: row.get(8)?,
            sealed_key: row.get(9)?,
            key_id: row.get(10)?,
            registered_at: row.get(11)?,
            error: row.get(12)?,
        },
    })
}

impl Catalogue {
    /// Records the organisation's LKM and puts it in LKM mode: new recordings are
    /// sealed for its registered key pairs from now on; KEKs it had keep working.
    /// `updated_at` is set here (and returned), later than any earlier version.
    pub fn set_lkm_settings(&self, settings: &LkmSettings, actor: &str) -> Result<i64> {
        self.write_for(&settings.org_id, |tx| {
            let updated_at = switch_mode(tx, KekHolder::Lkm, &settings.org_id)?;
            tx.execute(
                "INSERT INTO lkm_settings (org_id, decrypt_url, hawk_id, sealed_hawk_key, ca_pem,
                                           fingerprint, timeout_ms, updated_at, browser_url,
                                           sealed_grant_key, grant_key_id, grants_registered_at,
                                           grants_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (org_id) DO UPDATE SET
                     decrypt_url = excluded.decrypt_url, hawk_id = excluded.hawk_id,
                     sealed_hawk_key = excluded.sealed_hawk_key, ca_pem = excluded.ca_pem,
                     fingerprint = excluded.fingerprint, timeout_ms = excluded.timeout_ms,
                     updated_at = excluded.updated_at, browser_url = excluded.browser_url,
                     sealed_grant_key = excluded.sealed_grant_key,
                     grant_key_id = excluded.grant_key_id,
                     grants_registered_at = excluded.grants_registered_at,
                     grants_error = excluded.grants_error",
                params![
                    settings.org_id,
                    settings.decrypt_url,
                    settings.hawk_id,
                    settings.sealed_hawk_key,
                    settings.ca_pem,
                    settings.fingerprint,
                    settings.timeout_ms,
                    updated_at,
                    settings.grants.browser_url,
                    settings.grants.sealed_key,
                    settings.grants.key_id,
                    settings.grants.registered_at,
                    settings.grants.error
                ],
            )?;
            append(
                tx,
                &settings.org_id,
                actor,
                &AuditEvent::LkmConfigure {
                    url: &settings.decrypt_url,
                },
            )?;
            Ok(updated_at)
        })
    }

    /// The organisation's LKM, if it has one.
    pub fn lkm_settings(&self, org_id: &str) -> Result<Option<LkmSettings>> {
        self.read(|tx| {
            Ok(tx.query_opt(
                "SELECT org_id, decrypt_url, hawk_id, sealed_hawk_key, ca_pem, fingerprint,
                            timeout_ms, updated_at, browser_url, sealed_grant_key, grant_key_id,
                            grants_registered_at, grants_error
                     FROM lkm_settings WHERE org_id = ?1",
                params![org_id],
                settings_row,
            )?)
        })
    }

    /// Records whether the LKM accepted the grant key `key_id`: `Ok(())` marks it
    /// registered now (audited), `Err(reason)` keeps grants off and says why. Does
    /// nothing if the organisation's grant key has changed meanwhile.
    pub fn set_lkm_grants_registered(
        &self,
        org_id: &str,
        key_id: &str,
        outcome: std::result::Result<(), &str>,
        actor: &str,
    ) -> Result<()> {
        self.write_for(org_id, |tx| {
            let (registered_at, error) = match outcome {
                Ok(()) => (Some(now_ms()), None),
                Err(reason) => (None, Some(reason)),
            };
            let changed = tx.execute(
                "UPDATE lkm_settings SET grants_registered_at = ?3, grants_error = ?4
                 WHERE org_id = ?1 AND grant_key_id = ?2",
                params![org_id, key_id, registered_at, error],
            )?;
            if changed == 1 && registered_at.is_some() {
                append(tx, org_id, actor, &AuditEvent::LkmGrantKey { key_id })?;
            }
            Ok(())
        })
    }
}
