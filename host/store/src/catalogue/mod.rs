//! The catalogue: organisations, API tokens, KEKs, recordings, rotation schedules, jobs
//! and the audit log, in SQLite with versioned migrations. Token secrets are never
//! stored, only their SHA-256.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;
use zeroize::Zeroizing;

mod audit;
mod committer;
mod exports;
mod jobs;
mod keks;
mod kms;
mod lkm;
mod orgs;
mod recordings;

pub use audit::{AuditEntry, AuditEvent, AuditFilter};
pub use exports::{ExportItem, ExportOutcome, ExportSelection, ExportTotals, ExportedFile};
pub use jobs::{Job, JobState};
pub use keks::{KekHolder, KekRecord, KekUsers};
pub use kms::{KmsRekey, KmsSettings};
pub use lkm::{GrantSettings, LkmSettings};
pub use orgs::MAX_LABEL_LEN;
pub use recordings::{RecordingFilter, RecordingRecord};

/// Migrations in order; a catalogue records the highest it has applied.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("schema.sql")),
    (2, include_str!("002_audit_per_org.sql")),
    (3, include_str!("003_lkm.sql")),
    (4, include_str!("004_grants.sql")),
    (5, include_str!("005_kms.sql")),
    (6, include_str!("006_export.sql")),
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
    /// No such KEK in the organisation.
    #[error("no such KEK in this organisation")]
    NoSuchKek,
    /// Invalid input.
    #[error("{0}")]
    Invalid(&'static str),
    /// The random source failed.
    #[error(transparent)]
    Random(#[from] crate::ids::RandomUnavailable),
    /// An audit entry could not be made durable, so the action it records must not
    /// go ahead.
    #[error("the audit entry could not be recorded: {0}")]
    AuditNotRecorded(String),
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
    committer: committer::Committer,
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
        let conn = crate::sqlite::open(path, MIGRATIONS).map_err(|e| match e {
            crate::sqlite::OpenError::Database(e) => CatalogueError::Database(e),
            crate::sqlite::OpenError::TooNew { found, known } => {
                CatalogueError::TooNew { found, known }
            }
        })?;
        // The audit writer has a connection of its own: while its commit waits
        // for the disk, requests keep reading through this one.
        let writer = crate::sqlite::connect(path)?;
        let conn = Mutex::new(conn);
        let committer = committer::Committer::start(writer)
            .map_err(|_| CatalogueError::Invalid("cannot start the audit writer thread"))?;
        Ok(Self { conn, committer })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The schema version the catalogue is at.
    pub fn schema_version(&self) -> Result<u32> {
        crate::blocking(|| Ok(crate::sqlite::version(&self.conn())?))
    }
}
