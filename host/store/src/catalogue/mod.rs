//! The catalogue: organisations, API tokens, KEKs, recordings, rotation schedules, jobs
//! and the audit log, in SQLite (embedded, the default) or PostgreSQL (several
//! server instances), with versioned migrations. Token secrets are never stored,
//! only their SHA-256.

use std::path::Path;
use std::sync::Mutex;

use zeroize::Zeroizing;

use crate::db::{Db, DbError, Dialect, Tx, params};

mod audit;
mod committer;
mod exports;
mod jobs;
mod keks;
mod kms;
mod lkm;
mod orgs;
mod recordings;
mod secrets;

pub use audit::{AuditEntry, AuditEvent, AuditFilter};
pub use exports::{ExportItem, ExportOutcome, ExportSelection, ExportTotals, ExportedFile};
pub use jobs::{Job, JobState};
pub use keks::{KekHolder, KekRecord, KekUsers};
pub use kms::{KmsRekey, KmsSettings};
pub use lkm::{GrantSettings, LkmSettings};
pub use orgs::MAX_LABEL_LEN;
pub use recordings::{RecordingFilter, RecordingRecord};

/// Migrations in order, in SQLite's dialect (PostgreSQL gets them through
/// [`postgres_ddl`]); a catalogue records the highest it has applied.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("schema.sql")),
    (2, include_str!("002_audit_per_org.sql")),
    (3, include_str!("003_lkm.sql")),
    (4, include_str!("004_grants.sql")),
    (5, include_str!("005_kms.sql")),
    (6, include_str!("006_export.sql")),
    (7, include_str!("007_cluster.sql")),
];

/// What can go wrong in the catalogue.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// The database itself failed.
    #[error("catalogue database error: {0}")]
    Database(#[from] DbError),
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

impl crate::db::AsDbError for CatalogueError {
    fn as_db_error(&self) -> Option<&DbError> {
        match self {
            Self::Database(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for CatalogueError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Database(e.into())
    }
}

/// The catalogue database.
pub struct Catalogue {
    db: Db,
    committer: committer::Committer,
    /// PostgreSQL writes run again after a conflict with another writer.
    retries: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalogue").finish_non_exhaustive()
    }
}

fn org_row(row: &crate::db::Row) -> Result<Org, DbError> {
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

/// Connections a server instance keeps to a PostgreSQL catalogue.
pub const POSTGRES_POOL_SIZE: usize = 16;

/// The lock a PostgreSQL catalogue's migrations hold, so that instances starting
/// together migrate one after the other.
const MIGRATION_LOCK: i64 = 0x7461_7065_7365_616c;

impl Catalogue {
    /// Opens (creating if needed) the SQLite catalogue at `path` and applies any
    /// pending migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Db::Sqlite(Mutex::new(crate::sqlite::connect(path)?));
        migrate(&db)?;
        // The audit writer has a connection of its own: while its commit waits
        // for the disk, requests keep reading through this one.
        let writer = Db::Sqlite(Mutex::new(crate::sqlite::connect(path)?));
        Self::with(db, writer, Default::default())
    }

    /// Connects to the PostgreSQL catalogue at `url` (`postgres://user@host:port/db`;
    /// `password`, when given, overrides one in the URL; TLS as its `sslmode` says,
    /// the server verified against `ca_file` or the system's roots) and applies any
    /// pending migrations, one instance at a time.
    pub fn connect_postgres(
        url: &str,
        password: Option<&str>,
        ca_file: Option<&Path>,
    ) -> Result<Self> {
        let retries = std::sync::Arc::default();
        let db = Db::Postgres(crate::db::Pg::connect(
            url,
            password,
            ca_file,
            POSTGRES_POOL_SIZE,
            std::sync::Arc::clone(&retries),
        )?);
        migrate(&db)?;
        // The audit writer holds a connection of its own too.
        let writer = Db::Postgres(crate::db::Pg::connect(
            url,
            password,
            ca_file,
            1,
            std::sync::Arc::clone(&retries),
        )?);
        Self::with(db, writer, retries)
    }

    /// Opens the catalogue a configuration names: a `postgres://` or
    /// `postgresql://` URL, or else the path of a SQLite file.
    pub fn open_location(location: &str, password: Option<&str>) -> Result<Self> {
        if is_postgres_url(location) {
            Self::connect_postgres(location, password, None)
        } else {
            Self::open(Path::new(location))
        }
    }

    fn with(
        db: Db,
        writer: Db,
        retries: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<Self> {
        let committer = committer::Committer::start(writer)
            .map_err(|_| CatalogueError::Invalid("cannot start the audit writer thread"))?;
        Ok(Self {
            db,
            committer,
            retries,
        })
    }

    /// How many writes have run again since the catalogue was opened, because
    /// PostgreSQL found them in conflict with another writer (another instance's,
    /// often); always 0 on SQLite, whose writers queue instead.
    pub fn write_retries(&self) -> u64 {
        self.retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Which database holds it.
    pub fn dialect(&self) -> Dialect {
        match self.db {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        self.db.read(f)
    }

    fn write<T>(&self, f: impl FnMut(&Tx<'_>) -> Result<T>) -> Result<T> {
        self.db.write(f)
    }

    /// A write to organisation `org_id`'s state: writers of one organisation queue
    /// for it across instances (its audit entries are numbered one after the
    /// other), so they do not collide and run again.
    fn write_for<T>(&self, org_id: &str, f: impl FnMut(&Tx<'_>) -> Result<T>) -> Result<T> {
        self.db.write_locked(&[org_lock(org_id)], f)
    }

    /// The schema version the catalogue is at.
    pub fn schema_version(&self) -> Result<u32> {
        self.read(|tx| Ok(version(tx)?))
    }
}

/// The advisory lock of an organisation's writes (PostgreSQL): 8 bytes of a hash of
/// its id.
pub(crate) fn org_lock(org_id: &str) -> i64 {
    let digest = sha256(format!("tapeseal org {org_id}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// Whether a catalogue location is a PostgreSQL URL.
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// Checks a PostgreSQL catalogue URL without connecting: it parses, and carries no
/// password (one in a configuration file or a command line would be read by
/// anyone who can read those; it goes in an environment variable instead).
pub fn check_postgres_url(url: &str) -> Result<(), String> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("the catalogue URL does not parse: {e}"))?;
    if config.get_password().is_some() {
        return Err(
            "the catalogue URL carries a password: give it through the environment instead".into(),
        );
    }
    Ok(())
}

fn version(tx: &Tx<'_>) -> Result<u32, DbError> {
    tx.query_one(
        "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_migrations",
        params![],
        |row| row.get(0),
    )
}

/// A migration in SQLite's dialect, as PostgreSQL takes it: bytes are `BYTEA`, and
/// an autoincrementing key is an identity column. The migrations use nothing else
/// that differs.
fn postgres_ddl(sql: &str) -> String {
    sql.replace(
        "INTEGER PRIMARY KEY AUTOINCREMENT",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    )
    .replace(" BLOB", " BYTEA")
}

/// Applies the pending migrations in one transaction, with its records. A catalogue
/// migrated by a newer tapeseal is refused.
fn migrate(db: &Db) -> Result<()> {
    db.exclusive(MIGRATION_LOCK, |tx| {
        let postgres = tx.dialect() == Dialect::Postgres;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )?;
        let current = version(tx)?;
        let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        if current > known {
            return Err(CatalogueError::TooNew {
                found: current,
                known,
            });
        }
        for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            if postgres {
                tx.execute_batch(&postgres_ddl(sql))?;
            } else {
                tx.execute_batch(sql)?;
            }
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![v, crate::time::now_ms()],
            )?;
        }
        Ok(())
    })
}
