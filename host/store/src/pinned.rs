//! One version of a stored object, held for a whole read. A rewrap replaces an
//! envelope with one whose header is longer; a reader that took the header from one
//! version and the chunks from the next would misread both. So a read pins what it
//! started on: a local file stays open (a rename that replaces it does not touch the
//! open file), and a remote object is read only as the version first seen. In S3 every
//! read of it is a ranged GET with `If-Match` on the ETag `HEAD` gave, and, in a
//! versioned bucket, for that `versionId`: the old version then stays readable after
//! it is replaced; elsewhere a replaced object fails the read (412) instead of mixing
//! versions. A store that reports neither an ETag nor a version cannot be pinned and
//! is not read.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt};

/// Bytes a stream yields at a time.
const PIECE: u64 = 1 << 20;

/// Why a stored object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The object is not there.
    #[error("no such object")]
    NotFound,
    /// Reading failed, or the remote object changed under the reader.
    #[error("cannot read the stored object: {0}")]
    Io(String),
    /// The object does not start with a well-formed envelope header.
    #[error("not an envelope header: {0}")]
    Malformed(#[from] tapeseal_core::Error),
    /// The object is shorter than the header it declares, or than a range asked of it.
    #[error("the stored object is shorter than {0}")]
    Truncated(&'static str),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::NotFound {
            Self::NotFound
        } else {
            Self::Io(e.to_string())
        }
    }
}

impl From<object_store::Error> for ReadError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Self::NotFound,
            object_store::Error::Precondition { .. } => {
                Self::Io("the stored object was replaced during the read; read it again".into())
            }
            other => Self::Io(other.to_string()),
        }
    }
}

/// One version of an object, for reading.
#[derive(Clone)]
pub struct Pinned {
    source: Source,
    size: u64,
}

#[derive(Clone)]
enum Source {
    Local(Arc<std::fs::File>),
    Remote {
        store: Arc<dyn ObjectStore>,
        path: ObjectPath,
        etag: Option<String>,
        version: Option<String>,
    },
}

impl std::fmt::Debug for Pinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinned")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Pinned {
    pub(crate) async fn local(path: PathBuf) -> Result<Self, ReadError> {
        let file = tokio::task::spawn_blocking(move || std::fs::File::open(path))
            .await
            .map_err(|e| ReadError::Io(e.to_string()))??;
        let size = file.metadata()?.len();
        Ok(Self {
            source: Source::Local(Arc::new(file)),
            size,
        })
    }

    pub(crate) async fn remote(store: Arc<dyn ObjectStore>, path: &str) -> Result<Self, ReadError> {
        let path = ObjectPath::from(path);
        let meta = match store.head(&path).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => return Err(missing(&*store, &path).await),
            Err(e) => return Err(e.into()),
        };
        if meta.e_tag.is_none() && meta.version.is_none() {
            return Err(ReadError::Io(format!(
                "{path} has neither an ETag nor a version to hold a read to"
            )));
        }
        Ok(Self {
            size: meta.size,
            source: Source::Remote {
                store,
                path,
                etag: meta.e_tag,
                version: meta.version,
            },
        })
    }

    /// The object's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes `range` of the object: all of them, or an error.
    pub async fn read(&self, range: Range<u64>) -> Result<Bytes, ReadError> {
        if range.end > self.size || range.start > range.end {
            return Err(ReadError::Truncated("the range asked of it"));
        }
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        match &self.source {
            Source::Local(file) => {
                let file = Arc::clone(file);
                tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; (range.end - range.start) as usize];
                    read_exact_at(&file, &mut buf, range.start)?;
                    Ok::<_, std::io::Error>(Bytes::from(buf))
                })
                .await
                .map_err(|e| ReadError::Io(e.to_string()))?
                .map_err(ReadError::from)
            }
            Source::Remote {
                store,
                path,
                etag,
                version,
            } => {
                let options = GetOptions {
                    if_match: etag.clone(),
                    version: version.clone(),
                    ..GetOptions::default()
                }
                .with_range(Some(range.clone()));
                let bytes = store.get_opts(path, options).await?.bytes().await?;
                if bytes.len() as u64 != range.end - range.start {
                    return Err(ReadError::Truncated("the range asked of it"));
                }
                Ok(bytes)
            }
        }
    }

    /// The envelope's header: its prefix says how long it is.
    pub async fn read_header(&self) -> Result<Vec<u8>, ReadError> {
        let prefix_len = tapeseal_core::header::PREFIX_LEN as u64;
        let prefix = self.read(0..self.size.min(prefix_len)).await?;
        let header_len = tapeseal_core::header::header_len(&prefix)? as u64;
        if header_len > self.size {
            return Err(ReadError::Truncated("its header"));
        }
        Ok(self.read(0..header_len).await?.to_vec())
    }

    /// Bytes `range` of the object as a stream of pieces of up to 1 MiB.
    pub fn stream(&self, range: Range<u64>) -> BoxStream<'static, Result<Bytes, ReadError>> {
        let this = self.clone();
        stream::unfold(range.start, move |at| {
            let this = this.clone();
            let end = range.end;
            async move {
                if at >= end {
                    return None;
                }
                let next = end.min(at + PIECE);
                Some((this.read(at..next).await, next))
            }
        })
        .boxed()
    }
}

/// Why `HEAD` found nothing: S3 answers a bare 404 for a missing object and for a
/// missing bucket alike, and only a `GET`'s answer says which. A missing bucket is a
/// misconfiguration to report as such, not a recording gone.
async fn missing(store: &dyn ObjectStore, path: &ObjectPath) -> ReadError {
    let options = GetOptions::default().with_range(Some(0..1));
    match store.get_opts(path, options).await {
        Err(e) if e.to_string().contains("NoSuchBucket") => {
            ReadError::Io(format!("the bucket does not exist: {e}"))
        }
        _ => ReadError::NotFound,
    }
}

fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}
