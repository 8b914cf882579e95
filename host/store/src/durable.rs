//! Durable files: what the catalogue is told exists must survive a power cut. A file
//! is written, fsynced, and only then named; its directory is fsynced after the name
//! changes. Private files (keys) are created owner-only.

use std::fs;
use std::io::Write;
use std::path::Path;

/// Flushes a directory's entries (a created, renamed or removed name) to disk.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// The directory a path's name lives in.
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `path` (which must not exist yet) with mode 0600 holding `bytes`: written
/// and fsynced under a temporary name, then linked into place without replacing
/// anything, and the directory fsynced. Either the whole file exists or none does.
/// The one writer of private files (master key, storage key, KEK private keys).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_new_file(path, bytes, true)
}

/// Like [`write_private_file`], for a file others may read when `private` is false.
pub fn write_new_file(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let dir = parent(path);
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tapeseal-new-");
    #[cfg(unix)]
    if private {
        builder.permissions(private_mode());
    }
    let _ = private;
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    crate::crash_point!("durable.private_file.before_link");
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

#[cfg(unix)]
fn private_mode() -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    fs::Permissions::from_mode(0o600)
}

/// Creates a directory (and its parents) that only its owner can enter; a new
/// directory's name is fsynced into its parent.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    sync_dir(parent(dir))
}

/// Moves a complete, fsynced temporary file onto `to` (replacing what is there) and
/// fsyncs the directory.
pub fn persist_synced(tmp: tempfile::NamedTempFile, to: &Path) -> std::io::Result<()> {
    tmp.as_file().sync_all()?;
    tmp.persist(to).map_err(|e| e.error)?;
    sync_dir(parent(to))
}

/// Renames `from` onto `to` (same directory) and fsyncs that directory.
pub fn rename_synced(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::rename(from, to)?;
    sync_dir(parent(to))
}

#[cfg(test)]
mod tests {
    #[test]
    fn private_files_are_created_once_and_owner_only() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("key");
        super::write_private_file(&path, b"secret").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = super::write_private_file(&path, b"other").expect_err("exists");
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).expect("read"), b"secret");
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }
}
