//! Runs the real `tapeseal serve` binary on a loopback port with a data directory of
//! its own, and talks to it over real HTTP.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::Value;

pub(crate) mod edge;
pub(crate) mod lkm;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_tapeseal");

/// Where the compiled guest is cached between server starts.
fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasmtime-cache")
}

/// A running server.
pub(crate) struct Server {
    child: Option<Child>,
    pub(crate) url: String,
    log: PathBuf,
}

impl Server {
    /// Starts a server on `data` with extra TOML `config` lines and environment.
    pub(crate) fn start_with(data: &Path, config: &str, env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(data).expect("data dir");
        let file = data.with_extension("toml");
        std::fs::write(
            &file,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{config}\n",
                data.display()
            ),
        )
        .expect("config");
        let log = data.with_extension("log");
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--config"])
            .arg(&file)
            .env("TAPESEAL_CACHE_DIR", cache_dir())
            .env("TAPESEAL_LOG", "debug")
            .envs(env.iter().copied())
            .stderr(crate::common::log_file(&log));
        let (child, url) = crate::common::spawn_listening(&mut command, &log);
        Self {
            child: Some(child),
            url,
            log,
        }
    }

    /// Starts a server with the embedded defaults (and extra config lines).
    pub(crate) fn start(data: &Path, config: &str) -> Self {
        Self::start_with(data, config, &[])
    }

    /// SIGTERM, then waits for the process to exit.
    pub(crate) fn terminate(mut self) -> ExitStatus {
        crate::common::terminate(&mut self.child.take().expect("running"))
    }

    /// SIGTERM without waiting; the caller waits with [`Server::wait`].
    pub(crate) fn signal_terminate(&self) {
        let child = self.child.as_ref().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    }

    /// Waits for the process to exit.
    pub(crate) fn wait(mut self) -> ExitStatus {
        self.child.take().expect("running").wait().expect("wait")
    }

    /// SIGKILL: a crash, with no chance to clean up.
    pub(crate) fn crash(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    /// Whether the process has exited (it aborted, for a failpoint).
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    pub(crate) fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Everything the server has logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn api(&self) -> Api {
        Api::new(&self.url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the `tapeseal` CLI; returns its stdout and asserts success.
pub(crate) fn cli(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env("TAPESEAL_CACHE_DIR", cache_dir())
        .output()
        .expect("run tapeseal");
    assert!(
        out.status.success(),
        "tapeseal {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// An organisation with one token of each role.
pub(crate) struct Org {
    pub(crate) id: String,
    pub(crate) admin: String,
    pub(crate) recorder: String,
    pub(crate) player: String,
}

/// A scratch directory, the data directory inside it, and an organisation "acme"
/// with one token per role.
pub(crate) fn fixture() -> (tempfile::TempDir, PathBuf, Org) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let acme = org(&data, "acme");
    (dir, data, acme)
}

/// Creates an organisation and its tokens with the CLI, as an operator would, in the
/// catalogue of the data directory `data`.
pub(crate) fn org(data: &Path, name: &str) -> Org {
    org_in(&["--data", data.to_str().expect("utf-8 path")], name)
}

/// Creates an organisation and its tokens with the CLI in the catalogue `location`
/// names: `["--data", dir]` or `["--catalogue", url]`.
pub(crate) fn org_in(location: &[&str], name: &str) -> Org {
    let created = cli(&[&["org", "create"], location, &[name]].concat());
    let id = created
        .split_whitespace()
        .find(|w| w.starts_with("org-"))
        .expect("org id")
        .to_string();
    let token = |role: &str| {
        cli(&[
            &["token", "create"],
            location,
            &["--org", name, "--role", role],
        ]
        .concat())
        .trim()
        .to_string()
    };
    Org {
        id,
        admin: token("admin"),
        recorder: token("recorder"),
        player: token("player"),
    }
}

/// A client for one server.
pub(crate) struct Api {
    client: Client,
    base: String,
}

impl Api {
    pub(crate) fn new(base: &str) -> Self {
        Self::with_client(base, Client::builder().build().expect("client"))
    }

    pub(crate) fn with_client(base: &str, client: Client) -> Self {
        Self {
            client,
            base: base.to_string(),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn get(&self, token: &str, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .expect("GET")
    }

    pub(crate) fn get_range(&self, token: &str, path: &str, range: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .header("Range", range)
            .send()
            .expect("GET range")
    }

    pub(crate) fn post_json(&self, token: &str, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .expect("POST")
    }

    pub(crate) fn put_json(&self, token: &str, path: &str, body: &Value) -> Response {
        self.client
            .put(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .expect("PUT")
    }

    /// POSTs without a body; `None` when the connection fails (a server that died).
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    pub(crate) fn try_post(&self, token: &str, path: &str) -> Option<Response> {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .ok()
    }

    /// POSTs JSON; `None` when the connection fails (a server that died).
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    pub(crate) fn try_post_json(&self, token: &str, path: &str, body: &Value) -> Option<Response> {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .ok()
    }

    pub(crate) fn delete(&self, token: &str, path: &str) -> Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .expect("DELETE")
    }

    pub(crate) fn upload(
        &self,
        token: &str,
        query: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Response {
        self.try_upload(token, query, content_type, body)
            .expect("upload")
    }

    /// Uploads; `None` when the connection fails (a server that died).
    pub(crate) fn try_upload(
        &self,
        token: &str,
        query: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Option<Response> {
        self.client
            .post(self.url(&format!("/v1/recordings?{query}")))
            .bearer_auth(token)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .ok()
    }

    /// Uploads and expects 201; returns the recording's metadata.
    pub(crate) fn ingest(&self, token: &str, kind: &str, content_type: &str, body: &[u8]) -> Value {
        let response = self.upload(token, &format!("kind={kind}"), content_type, body.to_vec());
        expect_json(response, 201)
    }

    /// The decrypted content of a recording (expects 200).
    pub(crate) fn content(&self, token: &str, id: &str) -> Vec<u8> {
        let response = self.get(token, &format!("/v1/recordings/{id}/content"));
        assert_eq!(response.status().as_u16(), 200, "content of {id}");
        response.bytes().expect("body").to_vec()
    }

    /// Polls a job until it finishes; returns it.
    pub(crate) fn wait_for_job(&self, admin: &str, job_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let job = expect_json(self.get(admin, &format!("/v1/jobs/{job_id}")), 200);
            if job["state"] == "done" || job["state"] == "failed" {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {job_id} did not finish: {job}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Asserts the status and returns the JSON body.
pub(crate) fn expect_json(response: Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let text = response.text().expect("body");
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).expect("JSON body")
}

/// One unlabelled value (or one with the labels in `name`) of the server's metrics.
pub(crate) fn metric(api: &Api, name: &str) -> f64 {
    let metrics = reqwest::blocking::get(api.url("/metrics"))
        .expect("GET /metrics")
        .text()
        .expect("text");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| unreachable!("{name} missing from:\n{metrics}"))
}

/// The actions of an organisation's audit log, oldest first (up to 500).
pub(crate) fn audit_actions(api: &Api, admin: &str) -> Vec<String> {
    expect_json(api.get(admin, "/v1/audit?limit=500"), 200)
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_string))
        .collect()
}

/// Asserts an error response: its status and stable code.
pub(crate) fn expect_error(response: Response, status: u16, code: &str) -> String {
    let body = expect_json(response, status);
    assert_eq!(body["error"]["code"], code, "error body: {body}");
    body["error"]["message"]
        .as_str()
        .expect("message")
        .to_string()
}

/// Starts an upload on a raw connection that declares `declared` bytes and sends only
/// `sent`; the caller decides when to drop the connection.
pub(crate) fn partial_upload(
    base: &str,
    token: &str,
    declared: usize,
    sent: usize,
) -> std::net::TcpStream {
    use std::io::Write;
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "POST /v1/recordings?kind=call HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: audio/wav\r\nContent-Length: {declared}\r\n\r\n"
    )
    .expect("headers");
    stream.write_all(&noise(sent, 2)).expect("part of the body");
    stream.flush().expect("flush");
    stream
}

/// Every file under `dir`, recursively.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Whether `needle` occurs anywhere in `haystack`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Reads a whole file.
pub(crate) fn read(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .expect("read file");
    bytes
}

/// Deterministic pseudo-random bytes (xorshift), for content that must not repeat.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
