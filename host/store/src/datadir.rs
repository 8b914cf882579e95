//! The server's data directory and the names of what lives in it, so that the CLI's
//! admin commands and the server agree without building a server configuration.

use std::path::{Path, PathBuf};

use crate::catalogue::{Catalogue, CatalogueError};

/// A data directory: the catalogue, the master key file, the sealed storage key and,
/// by default, the recording repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root` (nothing is created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Its path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates it, owner-only, if it does not exist.
    pub fn create(&self) -> std::io::Result<()> {
        crate::durable::create_private_dir(&self.root)
    }

    /// The catalogue database file.
    pub fn catalogue_path(&self) -> PathBuf {
        self.root.join("catalogue.sqlite3")
    }

    /// The recording repository's default directory.
    pub fn repository_path(&self) -> PathBuf {
        self.root.join("recordings")
    }

    /// The server's storage key pair, sealed under the master key.
    pub fn storage_key_path(&self) -> PathBuf {
        self.root.join("storage-key.sealed")
    }

    /// The master key file's default path.
    pub fn master_key_path(&self) -> PathBuf {
        self.root.join("master.key")
    }

    /// Creates the directory if needed and opens (migrating) its catalogue.
    pub fn open_catalogue(&self) -> Result<Catalogue, DataDirError> {
        self.create().map_err(|e| DataDirError::Create {
            path: self.root.clone(),
            source: e,
        })?;
        Ok(Catalogue::open(&self.catalogue_path())?)
    }
}

/// Why a data directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// The directory could not be created.
    #[error("cannot create the data directory {}: {source}", path.display())]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The catalogue could not be opened.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
}
