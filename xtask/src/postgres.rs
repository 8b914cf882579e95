//! PostgreSQL for CI and the demo: Debian's `postgresql` installed when its server
//! binaries are missing, and a cluster for the demo, a small copy of what
//! `tapeseal-testkit`'s `Postgres` does for tests (xtask does not depend on the
//! testkit).
//!
//! The demo's cluster (`cargo xtask demo --cluster`) keeps its data directory
//! (`<dir>/data`) between runs, listens on 127.0.0.1 only, on port 8770 or the next
//! free one (8760 is the demo LKM's), with no Unix socket, `trust` authentication for
//! 127.0.0.1 only, and the role `tapeseal` owning the database `tapeseal`. `fsync`
//! stays on. When xtask runs as root, `initdb` and the server run as the `postgres`
//! user (both refuse root). The server runs in a process group of its own, so that
//! Ctrl-C at the terminal does not stop it under the tapeseal instances that use it:
//! it stops (fast shutdown) when the [`Cluster`] is stopped or dropped.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ci::Res;

/// The port the demo's cluster asks for first.
pub(crate) const PREFERRED_PORT: u16 = 8770;
/// Ports tried from [`PREFERRED_PORT`] on.
const PORTS_TRIED: u16 = 20;
const ROLE: &str = "tapeseal";
const SUPERUSER: &str = "postgres";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The directory of the PostgreSQL server programs: `TAPESEAL_PG_BINDIR` (as the
/// testkit reads it), else `pg_config --bindir` if it holds the server, else the
/// newest `/usr/lib/postgresql/<version>/bin`.
pub(crate) fn bindir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("TAPESEAL_PG_BINDIR").map(PathBuf::from) {
        return has_server(&dir).then_some(dir);
    }
    let pg_config = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if let Some(dir) = pg_config.filter(|dir| has_server(dir)) {
        return Some(dir);
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
    versions.pop().map(|(_, dir)| dir)
}

/// Installs Debian's `postgresql` (which pulls the current versioned server) unless
/// [`bindir`] finds one; returns the binaries' directory.
pub(crate) fn install(root: &Path) -> Res<PathBuf> {
    if let Some(dir) = bindir() {
        println!("PostgreSQL: {}", dir.display());
        return Ok(dir);
    }
    crate::npm::apt_install(root, &["postgresql"])?;
    let dir = bindir().ok_or("postgresql was installed but no initdb and postgres were found")?;
    println!("PostgreSQL: {} (installed)", dir.display());
    Ok(dir)
}

/// The demo's running cluster. Dropping it stops the server.
#[derive(Debug)]
pub(crate) struct Cluster {
    server: Child,
    port: u16,
    log: PathBuf,
}

impl Cluster {
    /// Starts the cluster of `dir` (`<dir>/data`, made with `initdb` if missing;
    /// the server's output in `<dir>/postgres.log`) on [`PREFERRED_PORT`] or the
    /// next free port, and makes the role and database `tapeseal` if missing.
    pub(crate) fn start(dir: &Path) -> Res<Cluster> {
        let bindir = bindir().ok_or(
            "PostgreSQL's server binaries not found: apt-get install postgresql \
             (cargo xtask ci installs it)",
        )?;
        let run_as = run_as()?;
        fs::create_dir_all(dir)?;
        let dir = std::path::absolute(dir)?;
        let data = dir.join("data");
        let log = dir.join("postgres.log");
        File::create(&log)?;
        let server_command = |program: &str| -> Res<Command> {
            let mut command = Command::new(bindir.join(program));
            clear_pg_env(&mut command);
            let out = OpenOptions::new().append(true).open(&log)?;
            command
                .env("LC_ALL", "C")
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out);
            if let Some((uid, gid)) = run_as {
                command.uid(uid).gid(gid);
            }
            Ok(command)
        };

        // A server an earlier run left running holds the data directory.
        crate::cluster::stop_leftover(
            &data.join("postmaster.pid"),
            &data.display().to_string(),
            "INT",
        )?;
        let version = fs::read_to_string(data.join("PG_VERSION")).ok();
        if let Some(version) = version {
            let ours = major_version(&bindir)?;
            if version.trim() != ours {
                return Err(format!(
                    "{} holds a PostgreSQL {} cluster and the server here is {ours}: remove it",
                    data.display(),
                    version.trim()
                )
                .into());
            }
            println!("PostgreSQL: reusing {}", data.display());
        } else {
            // Nothing, or what an interrupted initdb left.
            if data.exists() {
                fs::remove_dir_all(&data)?;
            }
            fs::create_dir(&data)?;
            fs::set_permissions(&data, fs::Permissions::from_mode(0o700))?;
            if let Some((uid, gid)) = run_as {
                std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
            }
            let status = server_command("initdb")?
                .arg("-D")
                .arg(&data)
                .args(["-U", SUPERUSER, "--auth=trust", "--encoding=UTF8"])
                .args(["--locale=C", "--no-sync"])
                .status()?;
            if !status.success() {
                return Err(format!("initdb exited with {status}; {}", log_tail(&log)).into());
            }
            let hba = data.join("pg_hba.conf");
            fs::write(
                &hba,
                "# cargo xtask demo: 127.0.0.1 only\nhost all all 127.0.0.1/32 trust\n",
            )?;
            if let Some((uid, gid)) = run_as {
                std::os::unix::fs::chown(&hba, Some(uid), Some(gid))?;
            }
        }

        let port = crate::service::free_port(PREFERRED_PORT, PORTS_TRIED)?;
        let server = server_command("postgres")?
            .arg("-D")
            .arg(&data)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                &format!("port={port}"),
            ])
            .args(["-c", "unix_socket_directories=", "-c", "fsync=on"])
            .process_group(0)
            .spawn()?;
        // From here on, dropping it stops the server.
        let mut cluster = Cluster { server, port, log };
        cluster.wait_ready(&bindir)?;
        cluster.setup(&bindir)?;
        println!(
            "PostgreSQL: {} (log {})",
            cluster.url(),
            cluster.log.display()
        );
        Ok(cluster)
    }

    /// `postgres://tapeseal@127.0.0.1:PORT/tapeseal`.
    pub(crate) fn url(&self) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{ROLE}", self.port)
    }

    /// The server's exit status if it has exited (it should not, until stopped).
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.server.try_wait().ok().flatten()
    }

    /// The file the server logs to.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// Fast shutdown; fails if the server had already exited.
    pub(crate) fn stop(mut self) -> Res<()> {
        if !matches!(self.server.try_wait(), Ok(None)) {
            return Err(format!("PostgreSQL had exited; {}", log_tail(&self.log)).into());
        }
        self.shut_down();
        Ok(())
    }

    fn wait_ready(&mut self, bindir: &Path) -> Res<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.server.try_wait()? {
                return Err(format!(
                    "postgres exited with {status} before accepting connections; {}",
                    log_tail(&self.log)
                )
                .into());
            }
            let ready = client(bindir, "pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", SUPERUSER, "-d", "postgres", "-t", "2"])
                .status()?;
            if ready.success() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "postgres did not accept connections on 127.0.0.1:{} within {} s; {}",
                    self.port,
                    START_TIMEOUT.as_secs(),
                    log_tail(&self.log)
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The role and its database, unless a previous run made them.
    fn setup(&self, bindir: &Path) -> Res<()> {
        let mut sql = String::new();
        writeln!(
            sql,
            "SELECT 'CREATE ROLE {ROLE} LOGIN' WHERE NOT EXISTS \
             (SELECT FROM pg_roles WHERE rolname = '{ROLE}')\\gexec"
        )?;
        writeln!(
            sql,
            "SELECT 'CREATE DATABASE {ROLE} OWNER {ROLE}' WHERE NOT EXISTS \
             (SELECT FROM pg_database WHERE datname = '{ROLE}')\\gexec"
        )?;
        let mut psql = client(bindir, "psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        psql.stdin
            .take()
            .ok_or("psql's stdin")?
            .write_all(sql.as_bytes())?;
        let status = psql.wait()?;
        if !status.success() {
            return Err(format!("psql creating the role and database exited with {status}").into());
        }
        Ok(())
    }

    /// SIGINT (fast shutdown), then waits; kills the server after [`STOP_TIMEOUT`].
    fn shut_down(&mut self) {
        let _ = crate::service::stop_child(&mut self.server, "INT", STOP_TIMEOUT);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// A client program of `bindir` (else on PATH), with no `PG*` variables.
fn client(bindir: &Path, program: &str) -> Command {
    let path = bindir.join(program);
    let mut command = Command::new(if path.is_file() {
        path
    } else {
        PathBuf::from(program)
    });
    clear_pg_env(&mut command);
    command.stdin(Stdio::null()).stderr(Stdio::inherit());
    command
}

fn clear_pg_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            command.env_remove(name);
        }
    }
}

/// The `postgres` user's uid and gid when xtask runs as root, else `None`.
fn run_as() -> Res<Option<(u32, u32)>> {
    // /proc/self belongs to the effective user.
    if fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(
            |line| match line.split(':').collect::<Vec<_>>().as_slice() {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            },
        )
        .map(Some)
        .ok_or_else(|| "running as root and there is no postgres user to run PostgreSQL as".into())
}

/// `15` from `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`.
fn major_version(bindir: &Path) -> Res<String> {
    let out = Command::new(bindir.join("postgres")).arg("-V").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(2)
        .and_then(|v| v.split('.').next())
        .map(str::to_string)
        .ok_or_else(|| format!("cannot read the version of postgres -V: {text}").into())
}

fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    format!("its log ({}) ends:\n{tail}", log.display())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// The cluster demo's PostgreSQL: it serves the role's database on 127.0.0.1,
    /// keeps its data for the next run, and stops.
    #[test]
    fn demo_cluster_starts_is_reused_and_stops() -> Res<()> {
        let bindir = bindir().ok_or("no PostgreSQL binaries (cargo xtask ci installs them)")?;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp/xtask-postgres");
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        let query = |url: &str, sql: &str| -> Res<String> {
            let out = client(&bindir, "psql")
                .args([
                    "-X",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    url,
                    "-c",
                    sql,
                ])
                .output()?;
            if !out.status.success() {
                return Err(format!("psql: {}", String::from_utf8_lossy(&out.stderr)).into());
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };

        let cluster = Cluster::start(&dir)?;
        let url = cluster.url();
        assert!(url.starts_with("postgres://tapeseal@127.0.0.1:"), "{url}");
        assert_eq!(
            query(&url, "SELECT current_user, current_database()")?,
            "tapeseal|tapeseal"
        );
        assert_eq!(query(&url, "SHOW listen_addresses")?, "127.0.0.1");
        query(
            &url,
            "CREATE TABLE kept (id int); INSERT INTO kept VALUES (7)",
        )?;
        let port = cluster.port;
        cluster.stop()?;
        assert!(std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());

        // The next run finds its data.
        let cluster = Cluster::start(&dir)?;
        assert_eq!(query(&cluster.url(), "SELECT id FROM kept")?, "7");
        let port = cluster.port;
        drop(cluster);
        assert!(std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
        fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
