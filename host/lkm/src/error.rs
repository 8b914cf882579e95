//! The crate's one error type. Messages are for operators and never hold key
//! material; the HTTP layer ([`crate::reply`]) decides how much of each a client sees.

use std::path::PathBuf;

use tapeseal_keys::{KeyError, ManagedKeyError};

/// What can go wrong in the LKM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LkmError {
    /// The SQLite store failed.
    #[error("LKM store: {0}")]
    Database(#[from] rusqlite::Error),
    /// The store was written by a newer tapeseal.
    #[error(
        "the LKM store is at schema version {found}, newer than this tapeseal knows ({known}); upgrade tapeseal"
    )]
    TooNew {
        /// Version in the database.
        found: u32,
        /// Highest version this build knows.
        known: u32,
    },
    /// A key could not be read, generated or used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The master key could not be read or created, or a sealed secret did not open.
    #[error(transparent)]
    Master(#[from] ManagedKeyError),
    /// A file or directory could not be read or written.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `create`, ...).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Input that breaks a rule (an id too short, a bad character).
    #[error("{0}")]
    Invalid(String),
    /// The id is already taken.
    #[error("{0} already exists")]
    Exists(String),
    /// No such key pair or credential.
    #[error("{0} not found")]
    NotFound(String),
    /// The data directory has no store yet (for commands that do not create one).
    #[error("no LKM store at {}; start `tapeseal lkm serve` or issue credentials with this --data first", .0.display())]
    NoStore(PathBuf),
    /// The key pair has decrypted a DEK, so it is never deleted.
    #[error(
        "key pair '{0}' has been used to decrypt and is never deleted: recordings may still need it"
    )]
    InUse(String),
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The TLS certificate or key could not be made or loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The OS random source failed.
    #[error("no secure random source")]
    Random,
}

impl LkmError {
    /// An I/O error on `path`.
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

impl From<tapeseal_store::ids::RandomUnavailable> for LkmError {
    fn from(_: tapeseal_store::ids::RandomUnavailable) -> Self {
        Self::Random
    }
}

/// The crate's result type.
pub type Result<T, E = LkmError> = std::result::Result<T, E>;
