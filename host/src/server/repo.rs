//! The recording repository: objects behind `object_store` (a local directory by
//! default), written atomically (a staged object that becomes visible only when
//! committed) and read by byte range.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use crate::engine::Runtime;

/// Bytes buffered before a write becomes a multipart upload (S3 needs 5 MiB parts).
const PART: usize = 8 << 20;

/// Where recordings are stored.
#[derive(Debug, Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
}

/// A write in progress. Nothing is visible at its path until [`ObjectWriter::commit`];
/// [`ObjectWriter::abort`] (or dropping it) leaves nothing behind.
pub struct ObjectWriter {
    inner: BufWriter,
    written: u64,
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
    pub async fn put(&mut self, bytes: Bytes) -> object_store::Result<()> {
        self.written += bytes.len() as u64;
        self.inner.put(bytes).await
    }

    /// Bytes appended so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Makes the object visible, replacing any object at its path in one step.
    pub async fn commit(mut self) -> std::io::Result<()> {
        self.inner.shutdown().await
    }

    /// Discards everything written.
    pub async fn abort(mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
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
        })
    }

    /// Removes what writes interrupted by a crash left staged in a local repository
    /// (`<object>#<n>` files), so they neither linger nor count as recordings.
    /// Returns how many it removed. Call before serving.
    pub fn sweep_staging(dir: &Path) -> std::io::Result<usize> {
        let mut removed = 0;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(0);
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                removed += Self::sweep_staging(&path)?;
            } else if entry.file_name().to_string_lossy().contains('#') {
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

    /// Starts an atomic write to `path`.
    pub fn writer(&self, path: &str) -> ObjectWriter {
        ObjectWriter {
            inner: BufWriter::with_capacity(self.store.clone(), ObjectPath::from(path), PART),
            written: 0,
        }
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

    /// Removes an object.
    pub async fn delete(&self, path: &str) -> object_store::Result<()> {
        self.store.delete(&ObjectPath::from(path)).await
    }

    /// Reads an envelope's header: its 14-byte prefix says how long it is. Returns
    /// the header and the object's size.
    pub async fn read_header(
        &self,
        runtime: &Runtime,
        path: &str,
    ) -> anyhow::Result<(Vec<u8>, u64)> {
        let size = self.size(path).await?;
        let prefix = self.read(path, 0..size.min(14)).await?;
        let header_len = runtime.header_length(&prefix)?;
        anyhow::ensure!(
            header_len <= size,
            "the envelope is shorter than its header"
        );
        let header = self.read(path, 0..header_len).await?;
        Ok((header.to_vec(), size))
    }
}
