//! The recording repository: objects behind `object_store` (a local directory by
//! default), written atomically and durably, and read by byte range. In a local
//! directory a write goes to a staging file of the repository's own naming
//! (`<object>.tmp-<16 hex digits>`), which is fsynced, renamed into place, and its
//! directory fsynced: once [`ObjectWriter::commit`] returns, the object survives a
//! power cut, and before that nothing is visible at its path. `object_store`'s own
//! local store does not fsync, which is why local writes do not go through it.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use crate::durable;
pub use crate::pinned::{Pinned, ReadError};

/// Bytes buffered before a remote write becomes a multipart upload (S3 needs 5 MiB
/// parts).
const PART: usize = 8 << 20;

/// What ends the staging name of a write in progress.
const STAGING_MARK: &str = ".tmp-";

/// Where recordings are stored.
#[derive(Debug, Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    /// The directory, for a local repository.
    local: Option<PathBuf>,
}

/// A write in progress. Nothing is visible at its path until [`ObjectWriter::commit`];
/// [`ObjectWriter::abort`] (or dropping it) leaves nothing behind.
pub struct ObjectWriter {
    inner: Inner,
    written: u64,
}

enum Inner {
    Local {
        file: tokio::fs::File,
        staging: PathBuf,
        target: PathBuf,
        committed: bool,
    },
    Remote(BufWriter),
}

impl std::fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWriter")
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl ObjectWriter {
    /// Appends bytes.
    pub async fn put(&mut self, bytes: Bytes) -> std::io::Result<()> {
        self.written += bytes.len() as u64;
        match &mut self.inner {
            Inner::Local { file, .. } => file.write_all(&bytes).await,
            Inner::Remote(w) => w.put(bytes).await.map_err(std::io::Error::other),
        }
    }

    /// Bytes appended so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Makes the object visible, replacing any object at its path in one step, and
    /// durable: it returns only once the object and its name are on disk.
    pub async fn commit(mut self) -> std::io::Result<()> {
        match &mut self.inner {
            Inner::Local {
                file,
                staging,
                target,
                committed,
            } => {
                file.flush().await?;
                file.sync_all().await?;
                crate::crash_point!("repo.commit.before_rename");
                let (from, to) = (staging.clone(), target.clone());
                tokio::task::spawn_blocking(move || durable::rename_synced(&from, &to))
                    .await
                    .map_err(std::io::Error::other)??;
                *committed = true;
                crate::crash_point!("repo.commit.after_rename");
                Ok(())
            }
            Inner::Remote(w) => w.shutdown().await,
        }
    }

    /// Discards everything written.
    pub async fn abort(mut self) -> std::io::Result<()> {
        match &mut self.inner {
            Inner::Local {
                staging, committed, ..
            } => {
                *committed = true;
                tokio::fs::remove_file(&*staging).await
            }
            Inner::Remote(w) => w.abort().await.map_err(std::io::Error::other),
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if let Inner::Local {
            staging,
            committed: false,
            ..
        } = &self.inner
        {
            let _ = std::fs::remove_file(staging);
        }
    }
}

/// Whether a file name is one of this repository's staging names: of an envelope
/// (`.tseal`) only, unless `any` object.
fn is_staging_name(name: &str, any: bool) -> bool {
    let ours = name
        .rsplit_once(STAGING_MARK)
        .is_some_and(|(object, suffix)| {
            (any || object.ends_with(".tseal"))
                && suffix.len() == 16
                && suffix.bytes().all(|b| b.is_ascii_hexdigit())
        });
    // What `object_store`'s local store staged for earlier versions: `<object>#<n>`.
    let legacy = name.rsplit_once('#').is_some_and(|(object, n)| {
        object.ends_with(".tseal") && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    });
    ours || legacy
}

impl Repository {
    /// A repository in a local directory (created if missing).
    pub fn local(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the repository directory {}: {e}",
                dir.display()
            )
        })?;
        let store = LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self {
            store: Arc::new(store),
            local: Some(dir.to_path_buf()),
        })
    }

    /// A repository in any object store (S3, for instance): its writes are atomic
    /// (a single PUT, or a multipart upload completed in one step).
    pub fn from_store(store: Arc<dyn ObjectStore>) -> Self {
        Self { store, local: None }
    }

    /// Removes what writes interrupted by a crash left staged in a local repository,
    /// and nothing else: only names of the repository's own staging pattern for
    /// envelopes. Returns how many it removed. Call before serving.
    pub fn sweep_staging(dir: &Path) -> std::io::Result<usize> {
        Self::sweep(dir, false)
    }

    /// Like [`Repository::sweep_staging`], for a directory whose every file comes
    /// from a repository writer (an export directory): any object's staging name.
    pub fn sweep_any_staging(dir: &Path) -> std::io::Result<usize> {
        Self::sweep(dir, true)
    }

    fn sweep(dir: &Path, any: bool) -> std::io::Result<usize> {
        let mut removed = 0;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(0);
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                removed += Self::sweep(&path, any)?;
            } else if is_staging_name(&entry.file_name().to_string_lossy(), any) {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Where a recording's object lives.
    pub fn object_path(org_id: &str, recording_id: &str) -> String {
        format!("orgs/{org_id}/{recording_id}.tseal")
    }

    /// Starts an atomic, durable write to `path`.
    pub async fn writer(&self, path: &str) -> std::io::Result<ObjectWriter> {
        let inner = match &self.local {
            Some(root) => {
                let target = root.join(path);
                let dir = target
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| root.clone());
                if !tokio::fs::try_exists(&dir).await? {
                    let (root, dir2) = (root.clone(), dir.clone());
                    tokio::task::spawn_blocking(move || create_dirs_synced(&root, &dir2))
                        .await
                        .map_err(std::io::Error::other)??;
                }
                let suffix = crate::ids::random_bytes::<8>().map_err(std::io::Error::other)?;
                let mut name = target.as_os_str().to_owned();
                name.push(format!("{STAGING_MARK}{}", hex::encode(suffix)));
                let staging = PathBuf::from(name);
                let file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&staging)
                    .await?;
                Inner::Local {
                    file,
                    staging,
                    target,
                    committed: false,
                }
            }
            None => Inner::Remote(BufWriter::with_capacity(
                self.store.clone(),
                ObjectPath::from(path),
                PART,
            )),
        };
        Ok(ObjectWriter { inner, written: 0 })
    }

    /// Bytes `range` of the object at `path`.
    pub async fn read(&self, path: &str, range: Range<u64>) -> object_store::Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        self.store.get_range(&ObjectPath::from(path), range).await
    }

    /// The object's size.
    pub async fn size(&self, path: &str) -> object_store::Result<u64> {
        Ok(self.store.head(&ObjectPath::from(path)).await?.size)
    }

    /// The object's bytes in `range` (or all of it), as a stream.
    pub async fn stream(
        &self,
        path: &str,
        range: Option<Range<u64>>,
    ) -> object_store::Result<BoxStream<'static, object_store::Result<Bytes>>> {
        let options = GetOptions::default().with_range(range);
        Ok(self
            .store
            .get_opts(&ObjectPath::from(path), options)
            .await?
            .into_stream())
    }

    /// Holds one version of the object at `path` for a whole read (see [`Pinned`]).
    pub async fn pin(&self, path: &str) -> Result<Pinned, ReadError> {
        match &self.local {
            Some(root) => Pinned::local(root.join(path)).await,
            None => Pinned::remote(self.store.clone(), path).await,
        }
    }

    /// Removes an object.
    pub async fn delete(&self, path: &str) -> object_store::Result<()> {
        self.store.delete(&ObjectPath::from(path)).await
    }
}

/// Creates `dir` and the directories above it up to `root`, fsyncing each parent so
/// the new names are durable.
fn create_dirs_synced(root: &Path, dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while at != root && !at.exists() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    for d in missing.iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(p) = d.parent() {
            durable::sync_dir(p)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_repository_s_own_staging_names_are_swept() {
        for name in [
            "rec-0011223344556677.tseal.tmp-0123456789abcdef",
            "rec-0011223344556677.tseal#3",
        ] {
            assert!(super::is_staging_name(name, false), "{name}");
            assert!(super::is_staging_name(name, true), "{name}");
        }
        for name in [
            "rec-0011223344556677.tseal",
            "notes#1",
            "rec.tseal.tmp-xyz",
            "backup.tar.tmp-0123456789abcdef",
            "rec-1.tseal#",
        ] {
            assert!(!super::is_staging_name(name, false), "{name}");
        }
        // In an export directory, every object's staging name (and only those).
        assert!(super::is_staging_name(
            "rec-1.wav.pgp.tmp-0123456789abcdef",
            true
        ));
        assert!(!super::is_staging_name("rec-1.wav.pgp", true));
        assert!(!super::is_staging_name("rec.wav.tmp-xyz", true));
    }
}
