//! A throwaway PostgreSQL cluster for tests: Debian's server binaries, a fresh
//! `initdb` in a directory of its own under the one the test names, and a server
//! that listens only on 127.0.0.1 (a free port) and on a Unix socket in a directory
//! of its own, never the system's `/var/run/postgresql`. No system cluster is
//! touched: nothing here reads `/etc/postgresql` or runs `pg_ctlcluster`.
//!
//! Authentication is `trust`, for local (Unix socket) and 127.0.0.1 connections
//! only; IPv6 and every other address are refused. `fsync` stays on, as in
//! production (only `initdb` skips its final sync: a cluster that dies with its
//! test needs no durable start). The cluster has the superuser `postgres` and the
//! role `tapeseal`, which owns the database `tapeseal` and every database
//! [`Postgres::create_database`] makes, so that parallel tests each get their own.
//!
//! ```no_run
//! use tapeseal_testkit::Postgres;
//!
//! let dir = std::env::temp_dir().join("postgres-tests");
//! let pg = Postgres::start(&dir);
//! let url = pg.create_database("ingest_test"); // postgres://tapeseal@127.0.0.1:PORT/ingest_test
//! assert_eq!(pg.psql(&url, "SELECT 1 + 1"), "2");
//! drop(pg); // fast shutdown; the cluster's files go, its log stays
//! ```
//!
//! [`Postgres::start`] blocks (seconds: `initdb`, then the server's start); an async
//! test calls it through `tokio::task::spawn_blocking`.
//!
//! Running as root (CI containers), `initdb` and the server run as the `postgres`
//! user that Debian's package creates (both refuse root): the cluster's directory
//! is made theirs, and if that user cannot reach the directory the test named, the
//! cluster goes into a directory of its own under the system's temporary
//! directory instead. The server is started directly (not through `runuser`, whose
//! watching parent would stand between this process and the server), so that
//! dropping a [`Postgres`] signals the server itself.
//!
//! Dropping a [`Postgres`] (also while a failed test unwinds) asks the server for a
//! fast shutdown, waits for it to exit (killing it after 30 s), and removes the
//! cluster's files; the server's log stays beside them, at [`Postgres::log_path`].
//! Should this process end without dropping it (a `static`, `process::exit`, a
//! signal), a watchdog shell that holds the other end of a pipe from this process
//! sees the pipe close and asks the server for the same fast shutdown.
//!
//! Where the binaries come from: the directory `TAPESEAL_PG_BINDIR` names if set,
//! else `pg_config --bindir` if it holds the server, else the newest
//! `/usr/lib/postgresql/<version>/bin`. `cargo xtask ci` installs Debian's
//! `postgresql` when none is there.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod system;
mod tls;

use system::{NOT_FOUND, RunAs, absolute, bindir, clear_pg_env, private_dir, run_as, writable_by};

/// The role that owns the databases tests use.
const ROLE: &str = "tapeseal";
/// The superuser `initdb` makes.
const SUPERUSER: &str = "postgres";
/// The system user the cluster runs as when this process is root.
const SYSTEM_USER: &str = "postgres";
/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Starts tried when another process takes the free port first.
const BIND_ATTEMPTS: usize = 5;
/// `sun_path` holds 108 bytes, the last a NUL.
const SOCKET_PATH_MAX: usize = 107;
/// The longest socket file name in a socket directory: `/.s.PGSQL.65535`.
const SOCKET_NAME_MAX: usize = "/.s.PGSQL.65535".len();
/// How much of the server's log a failure shows.
const LOG_TAIL: u64 = 4096;
/// Clusters this process has started, to name their directories.
static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

/// A running throwaway PostgreSQL cluster on 127.0.0.1, with `trust` authentication
/// for the Unix socket and 127.0.0.1 only, the superuser `postgres` and the role
/// `tapeseal` owning the database `tapeseal`.
///
/// Dropping it stops the server (fast shutdown, waiting for it to exit) and removes
/// its files, except the log. It is `Send` and `Sync`: tests may share one between
/// threads, each with a database of its own. One kept in a `static` is never
/// dropped: its server still stops when the process ends (the watchdog), but its
/// files stay under the directory given to [`Postgres::start`].
pub struct Postgres {
    /// The postmaster; `None` only while [`Postgres::start`] is starting it.
    server: Option<Child>,
    /// `sh`, reading a pipe whose other end only this process holds: when this
    /// process ends, it asks the server for a fast shutdown.
    watchdog: Option<Child>,
    port: u16,
    bindir: PathBuf,
    /// The cluster's own directory: its data directory and, when short enough, its
    /// socket directory. Removed on drop.
    cluster: PathBuf,
    data: PathBuf,
    sockets: PathBuf,
    /// The socket directory, when it is not under [`Self::cluster`] (the path was
    /// too long for a socket). Removed on drop.
    socket_dir_of_its_own: bool,
    log: PathBuf,
    run_as: Option<RunAs>,
    /// The test CA's certificate, when TLS is on.
    tls: Option<PathBuf>,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Nothing secret: authentication is trust, on loopback only.
        f.debug_struct("Postgres")
            .field("url", &self.url())
            .field("pid", &self.server.as_ref().map(Child::id))
            .field("bindir", &self.bindir)
            .field("data", &self.data)
            .field("sockets", &self.sockets)
            .field("log", &self.log)
            .field("run_as", &self.run_as)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// Creates a cluster in a new directory under `dir` (created if missing), starts
    /// its server on a free port of 127.0.0.1, waits until it accepts connections,
    /// and creates the role `tapeseal` and its database `tapeseal`.
    ///
    /// Panics if the binaries cannot be found, `initdb` fails, or the server does
    /// not accept connections within 60 s, with the tail of the server's log.
    pub fn start(dir: &Path) -> Postgres {
        Self::start_inner(dir, false)
    }

    /// Like [`Postgres::start`], with TLS on: a test CA of its own
    /// ([`Postgres::ca_certificate`]) and a server certificate for 127.0.0.1 and
    /// `localhost` signed by it. Clients may still connect without TLS.
    pub fn start_with_tls(dir: &Path) -> Postgres {
        Self::start_inner(dir, true)
    }

    /// The test CA's certificate (PEM) that the server's certificate chains to, for
    /// a cluster started with TLS.
    pub fn ca_certificate(&self) -> Option<&Path> {
        self.tls.as_deref()
    }

    fn start_inner(dir: &Path, tls: bool) -> Postgres {
        let bindir = bindir();
        let run_as = run_as();
        fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("creating the directory {}: {e}", dir.display()));
        let name = format!(
            "postgres-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        let log = dir.join(format!("{name}.log"));
        File::create(&log)
            .unwrap_or_else(|e| panic!("creating the PostgreSQL log {}: {e}", log.display()));

        let mut cluster = absolute(&dir.join(&name));
        private_dir(&cluster, run_as);
        if let Some(user) = run_as.filter(|user| !writable_by(&cluster, *user)) {
            // The postgres user cannot reach `dir` (a home directory, say).
            let _ = fs::remove_dir_all(&cluster);
            cluster = std::env::temp_dir().join(format!("tapeseal-{name}"));
            private_dir(&cluster, run_as);
            if !writable_by(&cluster, user) {
                panic!(
                    "the {SYSTEM_USER} user cannot write to {} (nor to a directory under {})",
                    cluster.display(),
                    dir.display()
                );
            }
        }
        let data = cluster.join("data");
        let mut sockets = cluster.join("s");
        let socket_dir_of_its_own = sockets.as_os_str().len() + SOCKET_NAME_MAX > SOCKET_PATH_MAX;
        if socket_dir_of_its_own {
            sockets = PathBuf::from("/tmp").join(format!("tapeseal-{name}"));
        }
        private_dir(&sockets, run_as);

        // From here on, a panic drops this and so removes the directories and stops
        // whatever server runs.
        let mut pg = Postgres {
            server: None,
            watchdog: None,
            port: 0,
            bindir,
            cluster,
            data,
            sockets,
            socket_dir_of_its_own,
            log,
            run_as,
            tls: None,
        };
        pg.initdb();
        if tls {
            pg.make_certificates();
        }
        pg.start_server();
        pg.admin(&[
            &format!("CREATE ROLE {ROLE} LOGIN"),
            &format!("CREATE DATABASE {ROLE} OWNER {ROLE}"),
        ]);
        pg
    }

    /// `postgres://tapeseal@127.0.0.1:PORT/tapeseal`: the database `tapeseal`, as its
    /// owner.
    pub fn url(&self) -> String {
        self.database_url(ROLE)
    }

    /// The port the server listens on, on 127.0.0.1 only.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates the database `name`, owned by the role `tapeseal`, and returns its URL
    /// (`postgres://tapeseal@127.0.0.1:PORT/<name>`). `name` must be a plain
    /// identifier (lowercase ASCII letters, digits and `_`, not starting with a digit,
    /// at most 63 bytes); panics otherwise, or if the database exists.
    pub fn create_database(&self, name: &str) -> String {
        let plain = !name.is_empty()
            && name.len() <= 63
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            panic!("database name {name:?}: use lowercase letters, digits and _ (at most 63)");
        }
        self.admin(&[&format!("CREATE DATABASE {name} OWNER {ROLE}")]);
        self.database_url(name)
    }

    /// Runs `sql` with `psql` against `url` (one of this server's URLs) and returns
    /// its output, unaligned and without headers (`a|b` for a row of two columns, one
    /// line a row), trimmed. Panics if psql fails or the statement errs.
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let out = self
            .client("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                sql,
            ])
            .output()
            .unwrap_or_else(|e| panic!("running psql: {e}"));
        if !out.status.success() {
            panic!(
                "psql {url} -c {sql:?} exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The file the server (and `initdb`) write their output to. It stays after the
    /// cluster is dropped.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The cluster's data directory (removed on drop).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The directory of the PostgreSQL programs used (`psql`, `pg_dump`, …).
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    fn database_url(&self, database: &str) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{database}", self.port)
    }

    /// A PostgreSQL client program, with no `PG*` variable of the environment.
    fn client(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        let mut command = Command::new(if path.is_file() {
            path
        } else {
            PathBuf::from(program)
        });
        clear_pg_env(&mut command);
        command.stdin(Stdio::null());
        command
    }

    /// A server program (`initdb`, `postgres`): as the postgres user when this
    /// process is root, in the cluster's directory, its output to the log.
    fn server_command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bindir.join(program));
        clear_pg_env(&mut command);
        command
            .env("LC_ALL", "C")
            .current_dir(&self.cluster)
            .stdin(Stdio::null())
            .stdout(self.log_file())
            .stderr(self.log_file());
        if let Some(user) = self.run_as {
            command.uid(user.uid).gid(user.gid);
        }
        command
    }

    fn log_file(&self) -> File {
        OpenOptions::new()
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("opening the PostgreSQL log {}: {e}", self.log.display()))
    }

    fn initdb(&self) {
        let status = self
            .server_command("initdb")
            .arg("-D")
            .arg(&self.data)
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .status()
            .unwrap_or_else(|e| panic!("{NOT_FOUND}; running initdb: {e}"));
        if !status.success() {
            panic!(
                "initdb exited with {status}; {}",
                log_tail(&self.log, "its output")
            );
        }
        // Trust on the Unix socket and 127.0.0.1 only (initdb's file also trusts ::1
        // and replication connections).
        let hba = self.data.join("pg_hba.conf");
        fs::write(
            &hba,
            "# tapeseal-testkit: a throwaway cluster on loopback\n\
             local all all trust\n\
             host  all all 127.0.0.1/32 trust\n",
        )
        .unwrap_or_else(|e| panic!("writing {}: {e}", hba.display()));
        if let Some(user) = self.run_as {
            std::os::unix::fs::chown(&hba, Some(user.uid), Some(user.gid))
                .unwrap_or_else(|e| panic!("giving {} to {SYSTEM_USER}: {e}", hba.display()));
        }
    }

    /// Starts the server on a free port, again on another if that one was taken
    /// meanwhile, and waits until it accepts connections.
    fn start_server(&mut self) {
        let sockets = self.sockets.to_str().filter(|s| !s.contains(['"', ',']));
        let sockets = sockets.map(str::to_owned).unwrap_or_else(|| {
            panic!(
                "the socket directory {} is not a plain UTF-8 path",
                self.sockets.display()
            )
        });
        for attempt in 1..=BIND_ATTEMPTS {
            self.port = crate::free_port();
            let server = self
                .server_command("postgres")
                .arg("-D")
                .arg(&self.data)
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    &format!("port={}", self.port),
                    "-c",
                    &format!("unix_socket_directories=\"{sockets}\""),
                    "-c",
                    "fsync=on",
                ])
                .args(self.tls_settings())
                .spawn()
                .unwrap_or_else(|e| panic!("{NOT_FOUND}; running postgres: {e}"));
            self.watchdog = Some(watchdog(server.id(), &self.data));
            self.server = Some(server);
            match self.wait_ready() {
                Ok(()) => return,
                Err(status) => {
                    self.stop();
                    let log = fs::read_to_string(&self.log).unwrap_or_default();
                    let taken = log.contains("could not bind") || log.contains("already in use");
                    if !taken || attempt == BIND_ATTEMPTS {
                        panic!(
                            "postgres exited with {status} before accepting connections on \
                             127.0.0.1:{}; {}",
                            self.port,
                            log_tail(&self.log, "its log")
                        );
                    }
                }
            }
        }
    }

    /// Polls `pg_isready` over TCP until the server accepts connections. Returns the
    /// server's exit status if it exits first; panics (with the log's tail) after
    /// [`START_TIMEOUT`].
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let exited = self
                .server
                .as_mut()
                .and_then(|server| server.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(status.to_string());
            }
            let ready = self
                .client("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", SUPERUSER, "-d", "postgres", "-t", "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("running pg_isready: {e}"));
            if ready.success() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "postgres did not accept connections on 127.0.0.1:{} within {} s; {}",
                    self.port,
                    START_TIMEOUT.as_secs(),
                    log_tail(&self.log, "its log")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs each statement on its own (so that `CREATE DATABASE` is outside a
    /// transaction) as the superuser, over the Unix socket.
    fn admin(&self, statements: &[&str]) {
        let mut command = self.client("psql");
        command
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.sockets)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
            ]);
        for statement in statements {
            command.args(["-c", statement]);
        }
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("running psql: {e}"));
        if !out.status.success() {
            panic!(
                "psql as {SUPERUSER} ({statements:?}) exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Fast shutdown (SIGINT) of the server, if it runs, and waits for it; kills it
    /// if it is still there after [`STOP_TIMEOUT`]. Never panics (it runs in drop).
    fn stop(&mut self) {
        // First the watchdog, so that it signals nothing once the server is gone.
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let Some(mut server) = self.server.take() else {
            return;
        };
        if matches!(server.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-s", "INT", &server.id().to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let asked = Instant::now();
            while matches!(server.try_wait(), Ok(None)) && asked.elapsed() < STOP_TIMEOUT {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Already gone is fine: kill only reports it.
        let _ = server.kill();
        let _ = server.wait();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.cluster);
        if self.socket_dir_of_its_own {
            let _ = fs::remove_dir_all(&self.sockets);
        }
    }
}

/// `sh` waiting for the end of a pipe only this process writes to (Rust makes its
/// pipes close-on-exec): once this process is gone, it sends the server a fast
/// shutdown, unless the server has gone already (it removes `postmaster.pid`).
fn watchdog(server_pid: u32, data: &Path) -> Child {
    Command::new("sh")
        .args([
            "-c",
            r#"read -r _; [ -e "$2/postmaster.pid" ] && kill -s INT "$1"; exit 0"#,
            "tapeseal-postgres-watchdog",
            &server_pid.to_string(),
        ])
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting the watchdog shell: {e}"))
}

/// The last few KiB of the log, for a panic message.
fn log_tail(log: &Path, what: &str) -> String {
    let mut tail = String::new();
    if let Ok(mut file) = File::open(log) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        tail = String::from_utf8_lossy(&bytes).into_owned();
    }
    format!("{what} ({}) ends:\n{tail}", log.display())
}
