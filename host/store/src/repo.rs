//! The recording repository: objects behind `object_store` (a local directory by
//! default, or S3), written atomically and durably, and read by byte range. In a local
//! directory a write goes to a staging file of the repository's own naming
//! (`<object>.tmp-<16 hex digits>`), which is fsynced, renamed into place, and its
//! directory fsynced: once [`ObjectWriter::commit`] returns, the object survives a
//! power cut, and before that nothing is visible at its path. `object_store`'s own
//! local store does not fsync, which is why local writes do not go through it.
//!
//! In S3 (or any remote store) a write of up to one part (8 MiB) is a single PUT at
//! commit; a longer one becomes a multipart upload as soon as it passes one part,
//! its parts sent while the rest still arrives, and completed at commit, so nothing
//! is visible before. A write that is aborted, or dropped without a commit (a client
//! that disconnects mid-upload), aborts its multipart upload, leaving no parts; an
//! upload a crash interrupts is left to the bucket's `AbortIncompleteMultipartUpload`
//! lifecycle rule (`object_store` cannot list uploads to sweep them at start).

use std::collections::VecDeque;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use crate::durable;
pub use crate::pinned::{Pinned, ReadError};
use crate::s3::S3Settings;

/// Bytes buffered before a remote write becomes a multipart upload, and the size of
/// each of its parts but the last (S3 needs at least 5 MiB).
pub const PART: usize = 8 << 20;

/// Parts of one multipart upload sent at once: what a write holds in memory is at
/// most this many parts, plus one part and the bytes of one `put` not sent yet.
const PARTS_IN_FLIGHT: usize = 4;

/// What ends the staging name of a write in progress.
const STAGING_MARK: &str = ".tmp-";

/// Where recordings are stored.
#[derive(Debug, Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    /// The directory, for a local repository.
    local: Option<PathBuf>,
    /// What errors name it by: `s3://bucket/prefix`, or the store's own name.
    location: Arc<str>,
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
    Remote(Remote),
}

/// A write to a remote store: bytes held until they pass one part, then a multipart
/// upload whose parts are sent as they fill.
struct Remote {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    location: Arc<str>,
    pending: Pending,
    /// Once the write has passed one part; taken when it completes or is aborted.
    upload: Option<Upload>,
}

/// A multipart upload and its parts in flight.
struct Upload {
    parts: Box<dyn MultipartUpload>,
    in_flight: JoinSet<object_store::Result<()>>,
}

impl Upload {
    /// Stops the parts in flight, then aborts the upload: S3 deletes its parts.
    async fn abort(mut self) -> object_store::Result<()> {
        self.in_flight.shutdown().await;
        self.parts.abort().await
    }

    /// Waits until at most `max` parts are in flight; the first failed part fails it.
    async fn drain_to(&mut self, max: usize) -> std::io::Result<()> {
        while self.in_flight.len() > max {
            match self.in_flight.join_next().await {
                Some(Ok(Ok(()))) | None => {}
                Some(Ok(Err(e))) => return Err(std::io::Error::other(e)),
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        Ok(())
    }
}

/// Bytes not sent yet.
#[derive(Default)]
struct Pending {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Pending {
    fn push(&mut self, bytes: Bytes) {
        self.len += bytes.len();
        self.chunks.push_back(bytes);
    }

    /// The first `n` bytes (or all there are), without copying them.
    fn take(&mut self, n: usize) -> PutPayload {
        let mut out = Vec::new();
        let mut need = n.min(self.len);
        self.len -= need;
        while need > 0 {
            let Some(mut front) = self.chunks.pop_front() else {
                break;
            };
            if front.len() > need {
                out.push(front.split_to(need));
                self.chunks.push_front(front);
                need = 0;
            } else {
                need -= front.len();
                out.push(front);
            }
        }
        out.into_iter().collect()
    }
}

impl Remote {
    /// An error of the store, saying where and what was being done.
    fn error(&self, doing: &str, e: impl std::fmt::Display) -> std::io::Error {
        std::io::Error::other(format!("{doing} {} in {}: {e}", self.path, self.location))
    }

    /// An error of a request that creates the object: a 404 there can only mean
    /// that the bucket is missing, which `object_store` reports as the object's.
    fn write_error(&self, doing: &str, e: object_store::Error) -> std::io::Error {
        match e {
            object_store::Error::NotFound { .. } => self.error(
                doing,
                format_args!("the bucket does not exist or these credentials cannot see it: {e}"),
            ),
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => {
                self.error(doing, format_args!("the credentials were refused: {e}"))
            }
            e => self.error(doing, e),
        }
    }

    async fn put(&mut self, bytes: Bytes) -> std::io::Result<()> {
        self.pending.push(bytes);
        // Strictly more than one part: a write of exactly one part stays one PUT.
        while self.pending.len > PART {
            if self.upload.is_none() {
                let parts = self
                    .store
                    .put_multipart(&self.path)
                    .await
                    .map_err(|e| self.write_error("starting an upload of", e))?;
                self.upload = Some(Upload {
                    parts,
                    in_flight: JoinSet::new(),
                });
            }
            if let Some(upload) = self.upload.as_mut() {
                if let Err(e) = upload.drain_to(PARTS_IN_FLIGHT - 1).await {
                    return Err(self.error("uploading a part of", e));
                }
                let part = self.pending.take(PART);
                upload.in_flight.spawn(upload.parts.put_part(part));
            }
        }
        Ok(())
    }

    async fn commit(&mut self) -> std::io::Result<()> {
        let rest = self.pending.take(usize::MAX);
        let Some(upload) = self.upload.as_mut() else {
            return self
                .store
                .put(&self.path, rest)
                .await
                .map(drop)
                .map_err(|e| self.write_error("writing", e));
        };
        // Never empty: a part is sent only while more than one part is pending.
        upload.in_flight.spawn(upload.parts.put_part(rest));
        let done = match upload.drain_to(0).await {
            Ok(()) => upload
                .parts
                .complete()
                .await
                .map(drop)
                .map_err(std::io::Error::other),
            Err(e) => Err(e),
        };
        let upload = self.upload.take();
        if let Err(e) = done {
            if let Some(upload) = upload {
                let _ = upload.abort().await;
            }
            return Err(self.error("completing the upload of", e));
        }
        Ok(())
    }

    async fn abort(&mut self) -> std::io::Result<()> {
        self.pending = Pending::default();
        match self.upload.take() {
            Some(upload) => upload
                .abort()
                .await
                .map_err(|e| self.error("aborting the upload of", e)),
            None => Ok(()),
        }
    }
}

impl Drop for Remote {
    /// A write dropped without a commit or an abort (its client went away, or a
    /// commit was cancelled) aborts its upload on the current runtime, if any.
    fn drop(&mut self) {
        let Some(upload) = self.upload.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(path = %self.path, "a dropped upload cannot be aborted outside a runtime; the bucket's lifecycle rule will remove its parts");
            return;
        };
        let (path, location) = (self.path.clone(), self.location.clone());
        runtime.spawn(async move {
            if let Err(e) = upload.abort().await {
                tracing::warn!(%path, %location, error = %e, "could not abort an unfinished upload; the bucket's lifecycle rule will remove its parts");
            }
        });
    }
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
            Inner::Remote(w) => w.put(bytes).await,
        }
    }

    /// Bytes appended so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Makes the object visible, replacing any object at its path in one step, and
    /// durable: it returns only once the object and its name are on disk (or the
    /// remote store has acknowledged the PUT or the upload's completion). A remote
    /// write that fails here is aborted.
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
            Inner::Remote(w) => w.commit().await,
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
            Inner::Remote(w) => w.abort().await,
        }
    }
}

impl Drop for ObjectWriter {
    /// Removes a local staging file; a remote write aborts itself (see `Remote`).
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
            location: dir.display().to_string().into(),
        })
    }

    /// A repository in an S3 bucket (under its prefix, if any), with the
    /// server-side encryption `settings` ask for on every object. Nothing is
    /// contacted yet: a missing bucket or refused credentials show at first use,
    /// in an error naming the bucket.
    pub fn s3(settings: &S3Settings) -> anyhow::Result<Self> {
        let store = crate::s3::build(settings)?;
        Ok(Self {
            store,
            local: None,
            location: settings.describe().into(),
        })
    }

    /// A repository in any object store (S3, for instance): its writes are atomic
    /// (a single PUT, or a multipart upload completed in one step).
    pub fn from_store(store: Arc<dyn ObjectStore>) -> Self {
        let location = store.to_string().into();
        Self {
            store,
            local: None,
            location,
        }
    }

    /// Whether the repository is a local directory (which has staging files to
    /// sweep), not a remote store.
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// What messages call it: the directory, or `s3://bucket/prefix`.
    pub fn location(&self) -> &str {
        &self.location
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

    /// Where an upload of a recording whose id the uploader chose is written: a
    /// path of that upload's own (`nonce` is random), so that two uploads of one
    /// id never write to the same object, and the one the catalogue refuses
    /// removes only its own.
    pub fn upload_path(org_id: &str, recording_id: &str, nonce: &str) -> String {
        format!("orgs/{org_id}/{recording_id}.{nonce}.tseal")
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
            None => Inner::Remote(Remote {
                store: self.store.clone(),
                path: ObjectPath::from(path),
                location: self.location.clone(),
                pending: Pending::default(),
                upload: None,
            }),
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
