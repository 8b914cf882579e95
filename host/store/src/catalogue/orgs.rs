//! Organisations and API tokens: creation with validation (one path for the CLI and
//! the API), lookup, authentication by the SHA-256 of a token's secret, revocation.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use zeroize::Zeroizing;

use super::audit::append;
use super::keks::KekHolder;
use super::{
    AuditEvent, Catalogue, CatalogueError, NewToken, Org, Principal, Result, Role, TOKEN_PREFIX,
    TokenInfo, org_row, sha256,
};
use crate::db::{Tx, params};
use crate::ids;
use crate::time::now_ms;

/// Puts the organisation in `holder`'s key mode, for settings recorded in the same
/// transaction; returns the settings' new version (`updated_at`): now, and later
/// than the version they had.
pub(super) fn switch_mode(tx: &Tx<'_>, holder: KekHolder, org_id: &str) -> Result<i64> {
    let table = match holder {
        KekHolder::Lkm => "lkm_settings",
        KekHolder::Kms => "kms_settings",
        KekHolder::Managed => {
            return Err(CatalogueError::Invalid("managed keys have no settings"));
        }
    };
    let previous: Option<i64> = tx.query_opt(
        &format!("SELECT updated_at FROM {table} WHERE org_id = ?1"),
        params![org_id],
        |row| row.get(0),
    )?;
    let changed = tx.execute(
        "UPDATE orgs SET key_mode = ?1 WHERE id = ?2",
        params![holder.name(), org_id],
    )?;
    if changed == 0 {
        return Err(CatalogueError::NoSuchOrg(org_id.to_string()));
    }
    Ok(now_ms().max(previous.map_or(0, |p| p + 1)))
}

/// The longest token label, in bytes.
pub const MAX_LABEL_LEN: usize = 200;

impl Catalogue {
    /// Creates an organisation with managed keys and rotation disabled, audited as
    /// done by `actor`. The one path for the CLI and the API.
    pub fn create_org(&self, name: &str, actor: &str) -> Result<Org> {
        {
            let name = name.trim();
            if name.is_empty() || name.len() > 200 {
                return Err(CatalogueError::Invalid(
                    "an organisation name is 1 to 200 characters",
                ));
            }
            let org = Org {
                id: ids::new_id("org")?,
                name: name.to_string(),
                key_mode: "managed".into(),
                created_at: now_ms(),
            };
            self.write_for(&org.id, |tx| {
                let inserted = tx.execute(
                    "INSERT INTO orgs (id, name, key_mode, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING",
                    params![org.id, org.name, org.key_mode, org.created_at],
                )?;
                if inserted == 0 {
                    return Err(CatalogueError::Exists(format!("organisation '{name}'")));
                }
                tx.execute(
                    "INSERT INTO rotation_schedules (org_id, period) VALUES (?1, 'DISABLED')",
                    params![org.id],
                )?;
                append(
                    tx,
                    &org.id,
                    actor,
                    &AuditEvent::OrgCreate { name: &org.name },
                )?;
                Ok(())
            })?;
            Ok(org)
        }
    }

    /// Finds an organisation by id or by name.
    pub fn find_org(&self, id_or_name: &str) -> Result<Org> {
        self.read(|tx| {
            tx.query_opt(
                "SELECT id, name, key_mode, created_at FROM orgs WHERE id = ?1 OR name = ?1",
                params![id_or_name],
                org_row,
            )?
            .ok_or_else(|| CatalogueError::NoSuchOrg(id_or_name.to_string()))
        })
    }

    /// Every organisation, by name.
    pub fn list_orgs(&self) -> Result<Vec<Org>> {
        self.read(|tx| {
            Ok(tx.query_map(
                "SELECT id, name, key_mode, created_at FROM orgs ORDER BY name",
                params![],
                org_row,
            )?)
        })
    }

    /// Creates an API token for an organisation (by id or name), audited as done by
    /// `actor`. The secret is returned once; only its SHA-256 is stored. The one path
    /// for the CLI and the API: a label is at most [`MAX_LABEL_LEN`] bytes.
    pub fn create_token(
        &self,
        org: &str,
        role: Role,
        label: &str,
        actor: &str,
    ) -> Result<NewToken> {
        {
            if label.len() > MAX_LABEL_LEN {
                return Err(CatalogueError::Invalid(
                    "a token label is at most 200 bytes",
                ));
            }
            let org = self.find_org(org)?;
            let secret = Zeroizing::new(format!(
                "{TOKEN_PREFIX}{}",
                B64URL.encode(ids::random_bytes::<32>()?)
            ));
            let token = NewToken {
                id: ids::new_id("tok")?,
                secret,
                org_id: org.id,
                role,
            };
            self.write_for(&token.org_id, |tx| {
                tx.execute(
                    "INSERT INTO tokens (id, org_id, role, secret_sha256, label, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        token.id,
                        token.org_id,
                        role.name(),
                        sha256(token.secret.as_bytes()),
                        label,
                        now_ms()
                    ],
                )?;
                let event = AuditEvent::TokenCreate {
                    token_id: &token.id,
                    role,
                };
                append(tx, &token.org_id, actor, &event)?;
                Ok(())
            })?;
            Ok(token)
        }
    }

    /// Who a presented bearer secret belongs to; `None` for unknown or revoked tokens.
    pub fn authenticate(&self, secret: &str) -> Result<Option<Principal>> {
        if !secret.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        self.read(|tx| {
            // Asked on every request, of the catalogue itself (no cache): a token
            // revoked through any instance is refused by all at once.
            let found = tx.query_opt(
                "SELECT id, org_id, role FROM tokens WHERE secret_sha256 = ?1 AND revoked_at IS NULL",
                params![sha256(secret.as_bytes())],
                |row| Ok((row.get::<String>(0)?, row.get::<String>(1)?, row.get::<String>(2)?)),
            )?;
            Ok(found.and_then(|(token_id, org_id, role)| {
                Role::from_name(&role).map(|role| Principal {
                    token_id,
                    org_id,
                    role,
                })
            }))
        })
    }

    /// The organisation's tokens (never their secrets), newest first.
    pub fn list_tokens(&self, org_id: &str) -> Result<Vec<TokenInfo>> {
        self.read(|tx| {
            Ok(tx.query_map(
                "SELECT id, role, label, created_at, revoked_at FROM tokens WHERE org_id = ?1
                 ORDER BY created_at DESC, id DESC",
                params![org_id],
                |row| {
                    Ok(TokenInfo {
                        id: row.get(0)?,
                        role: row.get(1)?,
                        label: row.get(2)?,
                        created_at: row.get(3)?,
                        revoked_at: row.get(4)?,
                    })
                },
            )?)
        })
    }

    /// Revokes a token of an organisation, audited as done by `actor`; says whether
    /// one was revoked.
    pub fn revoke_token(&self, org_id: &str, token_id: &str, actor: &str) -> Result<bool> {
        self.write_for(org_id, |tx| {
            let n = tx.execute(
                "UPDATE tokens SET revoked_at = ?1 WHERE id = ?2 AND org_id = ?3 AND revoked_at IS NULL",
                params![now_ms(), token_id, org_id],
            )?;
            if n == 1 {
                append(tx, org_id, actor, &AuditEvent::TokenRevoke { token_id })?;
            }
            Ok(n == 1)
        })
    }
}
