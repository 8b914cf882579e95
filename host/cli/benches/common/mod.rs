//! The real `tapeseal serve` binary as a child process on a loopback port, with a
//! data directory of its own and one organisation with a token per role. Each bench
//! uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use tapeseal_store::catalogue::{Catalogue, Role};

/// A running server; dropping it kills the process and removes its data.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
    pub(crate) dir: tempfile::TempDir,
}

impl Server {
    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The organisation's tokens.
pub(crate) struct Tokens {
    pub(crate) admin: String,
    pub(crate) recorder: String,
    pub(crate) player: String,
}

/// Starts a server with extra TOML `config` lines.
pub(crate) fn start(config: &str) -> (Server, Tokens) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    let catalogue = Catalogue::open(&data.join("catalogue.sqlite3")).expect("catalogue");
    let tokens = tokens(&catalogue);
    drop(catalogue);
    (spawn(dir, config, &[]), tokens)
}

/// Creates the organisation "bench" in `catalogue`, with a token per role.
pub(crate) fn tokens(catalogue: &Catalogue) -> Tokens {
    catalogue.create_org("bench", "bench").expect("org");
    let token = |role| {
        catalogue
            .create_token("bench", role, "", "bench")
            .expect("token")
            .secret
            .to_string()
    };
    Tokens {
        admin: token(Role::Admin),
        recorder: token(Role::Recorder),
        player: token(Role::Player),
    }
}

/// Starts a server whose data directory is `data` in `dir`, with extra TOML
/// `config` lines and environment.
pub(crate) fn spawn(dir: tempfile::TempDir, config: &str, env: &[(&str, &str)]) -> Server {
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    let file = dir.path().join("server.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{config}\n",
            data.display()
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tapeseal"))
        .args(["serve", "--config"])
        .arg(&file)
        .env("TAPESEAL_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next().expect("a line").expect("listening");
    std::thread::spawn(move || for _ in lines {});
    let url = line.trim_start_matches("listening on ").to_string();
    Server { child, url, dir }
}

/// Ingests `count` recordings of `bytes` bytes from four threads, spread over
/// `servers` in turn; their ids. The setting-up, not what is measured.
pub(crate) fn ingest(servers: &[&str], recorder: &str, count: usize, bytes: usize) -> Vec<String> {
    let client = reqwest::blocking::Client::new();
    let body = vec![7u8; bytes];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (client, body) = (&client, &body);
                scope.spawn(move || {
                    (0..count / 4)
                        .map(|i| {
                            let url = servers[(w + i * 4) % servers.len()];
                            let created: serde_json::Value = client
                                .post(format!("{url}/v1/recordings?kind=call"))
                                .bearer_auth(recorder)
                                .header("Content-Type", "audio/wav")
                                .body(body.clone())
                                .send()
                                .and_then(|r| r.error_for_status())
                                .and_then(|r| r.json())
                                .expect("ingest");
                            created["id"].as_str().expect("id").to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("ingest thread"))
            .collect()
    })
}

/// A wrk script that asks for the first 64 KiB of each of `ids` in turn, each of
/// wrk's `threads` threads taking its share, so that none is asked for twice
/// until the list is used up.
pub(crate) fn playback_script(token: &str, ids: &[String], threads: usize) -> String {
    let mut list = String::new();
    for id in ids {
        let _ = std::fmt::Write::write_fmt(&mut list, format_args!("\"{id}\","));
    }
    format!(
        r#"local ids = {{{list}}}
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local n = 0
request = function()
  local id = ids[((n * {threads} + tid) % #ids) + 1]
  n = n + 1
  return wrk.format("GET", "/v1/recordings/" .. id .. "/content",
    {{ ["Authorization"] = "Bearer {token}", ["Range"] = "bytes=0-65535" }})
end
"#
    )
}

/// Runs `wrk` with `script` against `url`; its report.
pub(crate) fn wrk(
    url: &str,
    script: &std::path::Path,
    threads: usize,
    connections: usize,
    duration: &str,
) -> String {
    let out = Command::new("wrk")
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            duration,
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .expect("wrk");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Requests a second from a wrk report.
pub(crate) fn requests_per_sec(report: &str) -> f64 {
    report
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A counter or gauge from the server's `/metrics`.
pub(crate) fn metric(url: &str, name: &str) -> f64 {
    reqwest::blocking::get(format!("{url}/metrics"))
        .and_then(|r| r.text())
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(f64::NAN)
}

/// Whether the wrk bench `name` is to run: like criterion, `--list` lists nothing
/// and a filter that is not part of `name` skips it (so `cargo bench -- 60MB` does
/// not run it); without wrk it is skipped, saying so.
pub(crate) fn wrk_bench_selected(name: &str) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if args.iter().any(|a| a == "--list") || filters.iter().any(|f| !name.contains(f.as_str())) {
        return false;
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("{name} bench: wrk is not installed (apt-get install wrk); skipped");
        return false;
    }
    true
}

/// `TAPESEAL_BENCH_RECORDINGS`, or 12,000: how many recordings a wrk bench ingests
/// (more than its load gets through, so none is asked for twice).
pub(crate) fn bench_recordings() -> usize {
    std::env::var("TAPESEAL_BENCH_RECORDINGS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(12_000)
}
