//! The catalogue: organisations, API tokens, KEKs, recordings, rotation schedules, jobs
//! and the audit log, in SQLite with versioned migrations. Token secrets are never
//! stored, only their SHA-256.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use rusqlite::{Connection, OptionalExtension, params};
use zeroize::Zeroizing;

mod audit;
mod jobs;
mod recordings;

pub use audit::{AuditEntry, AuditFilter};
pub use jobs::{Job, JobState};
pub use recordings::{RecordingFilter, RecordingRecord};

/// Migrations in order; a catalogue records the highest it has applied.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("schema.sql")),
    (2, include_str!("002_audit_per_org.sql")),
];

/// What can go wrong in the catalogue.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// The database itself failed.
    #[error("catalogue database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The catalogue was migrated by a newer tapeseal than this one.
    #[error(
        "the catalogue is at schema version {found}, newer than this tapeseal knows ({known}); upgrade tapeseal"
    )]
    TooNew {
        /// Version in the database.
        found: u32,
        /// Highest version this build knows.
        known: u32,
    },
    /// A name or id that is already taken.
    #[error("{0} already exists")]
    Exists(String),
    /// No such organisation.
    #[error("no organisation named or with id '{0}'")]
    NoSuchOrg(String),
    /// Invalid input.
    #[error("{0}")]
    Invalid(&'static str),
    /// The random source failed.
    #[error("no secure random source")]
    Random,
}

type Result<T, E = CatalogueError> = std::result::Result<T, E>;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Manages keys, schedules, tokens and jobs.
    Admin,
    /// Ingests recordings.
    Recorder,
    /// Plays back and downloads recordings.
    Player,
}

impl Role {
    /// The role's name: `admin`, `recorder`, `player`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Recorder => "recorder",
            Self::Player => "player",
        }
    }

    /// Parses [`Role::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Admin, Self::Recorder, Self::Player]
            .into_iter()
            .find(|r| r.name() == name)
    }
}

/// An organisation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Org {
    /// Stable id (`org-` and 16 hex digits).
    pub id: String,
    /// Unique human name.
    pub name: String,
    /// How its KEKs are held: `managed`, `lkm` or `aws-kms`.
    pub key_mode: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A token as created: the secret is shown once and never stored.
pub struct NewToken {
    /// Token id (not secret; for listing and revoking).
    pub id: String,
    /// The bearer secret.
    pub secret: Zeroizing<String>,
    /// The organisation it belongs to.
    pub org_id: String,
    /// What it may do.
    pub role: Role,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A token as listed: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Token id (`tok-...`).
    pub id: String,
    /// `admin`, `recorder` or `player`.
    pub role: String,
    /// The note given when it was created.
    pub label: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds, if revoked.
    pub revoked_at: Option<i64>,
}

/// Who a presented token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Token id, written to the audit log as the actor.
    pub token_id: String,
    /// The token's organisation: the only one it can see.
    pub org_id: String,
    /// What it may do.
    pub role: Role,
}

/// The catalogue database.
pub struct Catalogue {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalogue").finish_non_exhaustive()
    }
}

fn org_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Org> {
    Ok(Org {
        id: row.get(0)?,
        name: row.get(1)?,
        key_mode: row.get(2)?,
        created_at: row.get(3)?,
    })
}

/// The current time in Unix milliseconds, as the catalogue records times.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CatalogueError::Random)?;
    Ok(bytes)
}

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// Prefix of every token secret, so leaked tokens are easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "tsk_";

impl Catalogue {
    /// Opens (creating if needed) the catalogue at `path` and applies any pending
    /// migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let catalogue = Self {
            conn: Mutex::new(conn),
        };
        catalogue.migrate()?;
        Ok(catalogue)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.conn();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )?;
        let current: u32 = conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |row| row.get(0),
        )?;
        let known = MIGRATIONS.last().map(|(v, _)| *v).unwrap_or(0);
        if current > known {
            return Err(CatalogueError::TooNew {
                found: current,
                known,
            });
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, now_ms()],
            )?;
            tx.commit()?;
        }
        Ok(())
    }

    /// The schema version the catalogue is at.
    pub fn schema_version(&self) -> Result<u32> {
        Ok(self.conn().query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |row| row.get(0),
        )?)
    }

    /// Creates an organisation with managed keys and rotation disabled.
    pub fn create_org(&self, name: &str) -> Result<Org> {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(CatalogueError::Invalid(
                "an organisation name is 1 to 200 characters",
            ));
        }
        let org = Org {
            id: format!("org-{}", hex::encode(random_bytes::<8>()?)),
            name: name.to_string(),
            key_mode: "managed".into(),
            created_at: now_ms(),
        };
        let mut conn = self.conn();
        let tx = conn.transaction()?;
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
        tx.commit()?;
        Ok(org)
    }

    /// Finds an organisation by id or by name.
    pub fn find_org(&self, id_or_name: &str) -> Result<Org> {
        self.conn()
            .query_row(
                "SELECT id, name, key_mode, created_at FROM orgs WHERE id = ?1 OR name = ?1",
                params![id_or_name],
                org_row,
            )
            .optional()?
            .ok_or_else(|| CatalogueError::NoSuchOrg(id_or_name.to_string()))
    }

    /// Every organisation, by name.
    pub fn list_orgs(&self) -> Result<Vec<Org>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, name, key_mode, created_at FROM orgs ORDER BY name")?;
        let rows = stmt.query_map([], org_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Creates an API token for an organisation. The secret is returned once; only its
    /// SHA-256 is stored.
    pub fn create_token(&self, org: &str, role: Role, label: &str) -> Result<NewToken> {
        let org = self.find_org(org)?;
        let secret = Zeroizing::new(format!(
            "{TOKEN_PREFIX}{}",
            B64URL.encode(random_bytes::<32>()?)
        ));
        let token = NewToken {
            id: format!("tok-{}", hex::encode(random_bytes::<8>()?)),
            secret,
            org_id: org.id,
            role,
        };
        self.conn().execute(
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
        Ok(token)
    }

    /// Who a presented bearer secret belongs to; `None` for unknown or revoked tokens.
    pub fn authenticate(&self, secret: &str) -> Result<Option<Principal>> {
        if !secret.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let found = self
            .conn()
            .query_row(
                "SELECT id, org_id, role FROM tokens WHERE secret_sha256 = ?1 AND revoked_at IS NULL",
                params![sha256(secret.as_bytes())],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?)),
            )
            .optional()?;
        Ok(found.and_then(|(token_id, org_id, role)| {
            Role::from_name(&role).map(|role| Principal {
                token_id,
                org_id,
                role,
            })
        }))
    }

    /// The organisation's tokens (never their secrets), newest first.
    pub fn list_tokens(&self, org_id: &str) -> Result<Vec<TokenInfo>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, role, label, created_at, revoked_at FROM tokens WHERE org_id = ?1
             ORDER BY created_at DESC, rowid DESC",
        )?;
        let rows = stmt.query_map(params![org_id], |row| {
            Ok(TokenInfo {
                id: row.get(0)?,
                role: row.get(1)?,
                label: row.get(2)?,
                created_at: row.get(3)?,
                revoked_at: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes a token of an organisation; says whether one was revoked.
    pub fn revoke_token(&self, org_id: &str, token_id: &str) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE tokens SET revoked_at = ?1 WHERE id = ?2 AND org_id = ?3 AND revoked_at IS NULL",
            params![now_ms(), token_id, org_id],
        )?;
        Ok(n == 1)
    }
}

/// A KEK as the catalogue records it.
#[derive(Clone, PartialEq, Eq)]
pub struct KekRecord {
    /// KEK id.
    pub id: String,
    /// Owning organisation.
    pub org_id: String,
    /// Public key, DER SubjectPublicKeyInfo.
    pub public_spki: Vec<u8>,
    /// The private key sealed under the master key (managed mode); `None` when the
    /// private key lives elsewhere (a Local Key Manager).
    pub sealed_private: Option<Vec<u8>>,
    /// `active` or `retired`.
    pub state: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl std::fmt::Debug for KekRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KekRecord")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("state", &self.state)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

fn kek_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<KekRecord> {
    Ok(KekRecord {
        id: row.get(0)?,
        org_id: row.get(1)?,
        public_spki: row.get(2)?,
        sealed_private: row.get(3)?,
        state: row.get(4)?,
        created_at: row.get(5)?,
    })
}

const KEK_COLUMNS: &str = "id, org_id, public_spki, sealed_private, state, created_at";

impl Catalogue {
    /// Records a new active KEK.
    pub fn insert_kek(&self, kek: &KekRecord) -> Result<()> {
        let inserted = self.conn().execute(
            "INSERT INTO keks (id, org_id, public_spki, sealed_private, state, created_at)
             VALUES (?1, ?2, ?3, ?4, 'active', ?5) ON CONFLICT (id) DO NOTHING",
            params![
                kek.id,
                kek.org_id,
                kek.public_spki,
                kek.sealed_private,
                kek.created_at
            ],
        )?;
        if inserted == 0 {
            return Err(CatalogueError::Exists(format!("KEK '{}'", kek.id)));
        }
        Ok(())
    }

    /// The organisation's newest active KEK: the one new recordings use.
    pub fn current_kek(&self, org_id: &str) -> Result<Option<KekRecord>> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {KEK_COLUMNS} FROM keks WHERE org_id = ?1 AND state = 'active'
                     ORDER BY created_at DESC, rowid DESC LIMIT 1"
                ),
                params![org_id],
                kek_row,
            )
            .optional()?)
    }

    /// One KEK of an organisation (never another organisation's).
    pub fn kek(&self, org_id: &str, kek_id: &str) -> Result<Option<KekRecord>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {KEK_COLUMNS} FROM keks WHERE org_id = ?1 AND id = ?2"),
                params![org_id, kek_id],
                kek_row,
            )
            .optional()?)
    }

    /// Every KEK of an organisation, newest first.
    pub fn list_keks(&self, org_id: &str) -> Result<Vec<KekRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {KEK_COLUMNS} FROM keks WHERE org_id = ?1 ORDER BY created_at DESC, rowid DESC"
        ))?;
        let rows = stmt.query_map(params![org_id], kek_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks a KEK retired: it keeps unwrapping what it wraps but is never current
    /// again. Says whether it was active.
    pub fn retire_kek(&self, org_id: &str, kek_id: &str) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE keks SET state = 'retired', retired_at = ?1
             WHERE org_id = ?2 AND id = ?3 AND state = 'active'",
            params![now_ms(), org_id, kek_id],
        )?;
        Ok(n == 1)
    }

    /// How many stored recordings still reference a KEK.
    pub fn recordings_using_kek(&self, org_id: &str, kek_id: &str) -> Result<u64> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM recordings WHERE org_id = ?1 AND kek_id = ?2",
            params![org_id, kek_id],
            |row| row.get(0),
        )?;
        Ok(n.unsigned_abs())
    }

    /// Deletes a KEK that no recording references, in one transaction with the check.
    /// Returns the number of recordings still using it when it cannot be deleted.
    pub fn delete_kek(&self, org_id: &str, kek_id: &str) -> Result<Result<(), u64>> {
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
            return Err(CatalogueError::Invalid("no such KEK in this organisation"));
        }
        let users: i64 = tx.query_row(
            "SELECT COUNT(*) FROM recordings WHERE org_id = ?1 AND kek_id = ?2",
            params![org_id, kek_id],
            |row| row.get(0),
        )?;
        let users = users.unsigned_abs();
        if users > 0 {
            return Ok(Err(users));
        }
        tx.execute(
            "DELETE FROM keks WHERE org_id = ?1 AND id = ?2",
            params![org_id, kek_id],
        )?;
        tx.commit()?;
        Ok(Ok(()))
    }
}

impl Catalogue {
    /// An organisation's rotation period and when its KEK last rotated by schedule.
    pub fn schedule(&self, org_id: &str) -> Result<(crate::schedule::Period, Option<i64>)> {
        let (period, last): (String, Option<i64>) = self
            .conn()
            .query_row(
                "SELECT period, last_rotated_at FROM rotation_schedules WHERE org_id = ?1",
                params![org_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| CatalogueError::NoSuchOrg(org_id.to_string()))?;
        let period = crate::schedule::Period::from_name(&period).ok_or(CatalogueError::Invalid(
            "unknown rotation period in the catalogue",
        ))?;
        Ok((period, last))
    }

    /// Sets an organisation's rotation period; it is kept across restarts.
    pub fn set_schedule(&self, org_id: &str, period: crate::schedule::Period) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE rotation_schedules SET period = ?1 WHERE org_id = ?2",
            params![period.name(), org_id],
        )?;
        if n == 0 {
            return Err(CatalogueError::NoSuchOrg(org_id.to_string()));
        }
        Ok(())
    }

    /// Records that a scheduled rotation happened.
    pub fn mark_rotated(&self, org_id: &str, at_ms: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE rotation_schedules SET last_rotated_at = ?1 WHERE org_id = ?2",
            params![at_ms, org_id],
        )?;
        Ok(())
    }
}
