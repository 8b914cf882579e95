//! What the cluster needs of the machine: where PostgreSQL's server binaries are,
//! which user runs them when this process is root, and directories that user can
//! use.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::SYSTEM_USER;

const BINDIR_ENV: &str = "TAPESEAL_PG_BINDIR";
pub(super) const NOT_FOUND: &str = "PostgreSQL's server binaries (initdb, postgres) not found: \
    `cargo xtask ci` installs Debian's postgresql (apt-get install postgresql), \
    or set TAPESEAL_PG_BINDIR";

/// The user and group the cluster runs as when this process is root.
#[derive(Clone, Copy, Debug)]
pub(super) struct RunAs {
    pub(super) uid: u32,
    pub(super) gid: u32,
}

/// `TAPESEAL_PG_BINDIR`, else `pg_config --bindir` if it holds the server, else the
/// newest `/usr/lib/postgresql/<version>/bin`.
pub(super) fn bindir() -> PathBuf {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os(BINDIR_ENV).map(PathBuf::from) {
        if has_server(&dir) {
            return dir;
        }
        panic!(
            "{BINDIR_ENV}={} holds no initdb and postgres",
            dir.display()
        );
    }
    let pg_config = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if let Some(dir) = pg_config.filter(|dir| has_server(dir)) {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, dir)| dir)
        .unwrap_or_else(|| panic!("{NOT_FOUND}"))
}

/// The postgres user, when this process runs as root (`initdb` and `postgres`
/// refuse to).
pub(super) fn run_as() -> Option<RunAs> {
    // /proc/self belongs to the effective user and group.
    let euid = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .ok()
        .or_else(|| {
            let out = Command::new("id").arg("-u").output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        });
    if euid != Some(0) {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let user = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [name, _, uid, gid, ..] if *name == SYSTEM_USER => Some(RunAs {
                uid: uid.parse().ok()?,
                gid: gid.parse().ok()?,
            }),
            _ => None,
        }
    });
    Some(user.unwrap_or_else(|| {
        panic!(
            "running as root, the cluster must run as the {SYSTEM_USER} user, and there is \
             none: {NOT_FOUND}"
        )
    }))
}

/// Creates `dir` (mode 0700), owned by `run_as` if given. An old one of the same
/// name (a reused process id) is removed first.
pub(super) fn private_dir(dir: &Path, run_as: Option<RunAs>) {
    if dir.exists() {
        let _ = fs::remove_dir_all(dir);
    }
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("making {} private: {e}", dir.display()));
    if let Some(user) = run_as {
        std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))
            .unwrap_or_else(|e| panic!("giving {} to {SYSTEM_USER}: {e}", dir.display()));
    }
}

/// Whether `user` can write to `dir` (and so reach it through its parents).
pub(super) fn writable_by(dir: &Path, user: RunAs) -> bool {
    Command::new("test")
        .arg("-w")
        .arg(dir)
        .uid(user.uid)
        .gid(user.gid)
        .current_dir("/")
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Removes `PG*` variables (`PGHOST`, `PGPORT`, `PGDATA`, …), which would point
/// the programs elsewhere.
pub(super) fn clear_pg_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            command.env_remove(name);
        }
    }
}

pub(super) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
