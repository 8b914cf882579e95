//! Proves what the PostgreSQL tests rely on the throwaway cluster for: it serves the
//! role `tapeseal` on 127.0.0.1 and nowhere else, makes a database per test (in
//! parallel too), and is gone once dropped, or once the process that started it
//! ends without dropping it.

#![allow(clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tapeseal_testkit::Postgres;

/// The variable that makes [`leaked_cluster_child`] start a cluster and exit
/// without dropping it; it names the directory.
const LEAK_DIR: &str = "TAPESEAL_TEST_PG_LEAK_DIR";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("postgres")
}

#[test]
fn serves_loopback_only_and_stops_on_drop() {
    let pg = Postgres::start(&dir());
    let port = pg.port();
    let url = pg.url();
    assert_eq!(
        url,
        format!("postgres://tapeseal@127.0.0.1:{port}/tapeseal")
    );
    assert!(format!("{pg:?}").contains(&url));

    // The role and its database, over TCP.
    assert_eq!(
        pg.psql(&url, "SELECT current_user, current_database(), 1 + 1"),
        "tapeseal|tapeseal|2"
    );
    assert_eq!(pg.psql(&url, "SHOW fsync"), "on");
    assert_eq!(pg.psql(&url, "SHOW listen_addresses"), "127.0.0.1");
    assert_eq!(
        pg.psql(
            &url,
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ),
        "f"
    );

    // Listening on 127.0.0.1 only: no other IPv4 or any IPv6 socket on the port,
    // and another loopback address is refused.
    assert_eq!(listeners(port), vec![format!("0100007F:{port:04X}")]);
    assert!(
        TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 2], port)),
            Duration::from_secs(2)
        )
        .is_err(),
        "127.0.0.2:{port} accepted a connection"
    );

    // A second database, its tables its own.
    let second = pg.create_database("second");
    assert_eq!(
        second,
        format!("postgres://tapeseal@127.0.0.1:{port}/second")
    );
    pg.psql(
        &second,
        "CREATE TABLE recordings (id text PRIMARY KEY); INSERT INTO recordings VALUES ('r-1')",
    );
    assert_eq!(pg.psql(&second, "SELECT id FROM recordings"), "r-1");
    assert_eq!(
        pg.psql(&url, "SELECT to_regclass('recordings') IS NULL"),
        "t"
    );
    assert_eq!(
        pg.psql(
            &second,
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'second'"
        ),
        "tapeseal"
    );

    // Parallel tests each make one.
    std::thread::scope(|scope| {
        for i in 0..4 {
            let pg = &pg;
            scope.spawn(move || {
                let url = pg.create_database(&format!("parallel_{i}"));
                assert_eq!(
                    pg.psql(&url, "SELECT current_database()"),
                    format!("parallel_{i}")
                );
            });
        }
    });

    let data = pg.data_dir().to_path_buf();
    let log = pg.log_path().to_path_buf();
    assert!(data.join("PG_VERSION").is_file());
    drop(pg);

    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "127.0.0.1:{port} still accepts connections after drop"
    );
    assert!(listeners(port).is_empty());
    assert!(!data.exists(), "{} is still there", data.display());
    assert!(processes_using(&data).is_empty());
    let log = std::fs::read_to_string(&log).expect("the log stays");
    assert!(log.contains("fast shutdown request"), "{log}");
    assert!(log.contains("database system is shut down"), "{log}");
}

#[test]
fn a_cluster_whose_process_ends_without_dropping_it_stops() {
    let dir = dir().join("leaked");
    let exe = std::env::current_exe().expect("this test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "leaked_cluster_child",
            "--ignored",
            "--nocapture",
        ])
        .env(LEAK_DIR, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("running this test binary again");
    let stdout = child.stdout.take().expect("its stdout");
    let mut started = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("its output");
        if let Some(rest) = line.strip_prefix("leaked cluster: ") {
            let (port, data) = rest.split_once(' ').expect("port and data directory");
            started = Some((port.parse::<u16>().expect("a port"), PathBuf::from(data)));
        }
    }
    let status = child.wait().expect("the child test ends");
    assert!(status.success(), "{status}");
    let (port, data) = started.expect("the child test started a cluster");

    // The watchdog asks the server for a fast shutdown once the process is gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(listeners(port).is_empty() && processes_using(&data).is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the server of {} still runs after its process ended",
            data.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    // Nobody removes its files: this test does.
    let _ = std::fs::remove_dir_all(data.parent().expect("the cluster's directory"));
}

/// Run by [`a_cluster_whose_process_ends_without_dropping_it_stops`] in a process of
/// its own.
#[test]
#[ignore = "run by a_cluster_whose_process_ends_without_dropping_it_stops"]
fn leaked_cluster_child() {
    let Some(dir) = std::env::var_os(LEAK_DIR) else {
        return;
    };
    let pg = Postgres::start(Path::new(&dir));
    assert_eq!(pg.psql(&pg.url(), "SELECT 1"), "1");
    println!("leaked cluster: {} {}", pg.port(), pg.data_dir().display());
    // Ends the process with the cluster running and never dropped.
    std::process::exit(0);
}

/// The local addresses (`hex address:hex port`, as /proc/net/tcp writes them) of
/// the TCP sockets listening on `port`, IPv4 and IPv6.
fn listeners(port: u16) -> Vec<String> {
    let port = format!(":{port:04X}");
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl, local_address, rem_address, st (0A is LISTEN).
            if let [_, local, _, "0A", ..] = fields.as_slice()
                && local.ends_with(&port)
            {
                found.push((*local).to_string());
            }
        }
    }
    found
}

/// The processes whose command line names `path` (the server is started with
/// `-D <data directory>`).
fn processes_using(path: &Path) -> Vec<u32> {
    let needle = path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(&needle).then_some(pid)
        })
        .collect()
}
