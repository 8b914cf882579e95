//! Runs the reference Local Key Manager, `tapeseal lkm serve`, on a loopback port
//! with HTTPS (its self-signed certificate, generated on first start) and an admin
//! token, and calls its API the way an LKM administrator would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

use super::BIN;

/// The admin token the test LKMs run with.
const ADMIN_TOKEN: &str = "test-lkm-admin-token-0123456789";

/// A running reference LKM.
pub(crate) struct Lkm {
    child: Option<Child>,
    /// `https://127.0.0.1:PORT`.
    url: String,
    fingerprint: String,
    client: Client,
}

impl Lkm {
    /// Starts `tapeseal lkm serve` on `data` (created if missing, reused if not).
    pub(crate) fn start(data: &Path) -> Self {
        std::fs::create_dir_all(data).expect("lkm data dir");
        let log: PathBuf = data.with_extension("log");
        let log_start = std::fs::metadata(&log).map_or(0, |m| m.len()) as usize;
        let mut command = Command::new(BIN);
        command
            .args([
                "lkm",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-token-env",
                "TEST_LKM_ADMIN",
            ])
            .arg("--data")
            .arg(data)
            .env("TEST_LKM_ADMIN", ADMIN_TOKEN)
            .env("TAPESEAL_LOG", "debug")
            .stderr(crate::common::log_file(&log));
        let (child, url) = crate::common::spawn_listening(&mut command, &log);
        let deadline = Instant::now() + Duration::from_secs(10);
        let fingerprint = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let found = text.get(log_start..).unwrap_or("").lines().find_map(|l| {
                l.split("certificate sha256 fingerprint: ")
                    .nth(1)
                    .map(|f| f.trim().to_string())
            });
            if let Some(f) = found {
                break f;
            }
            assert!(
                Instant::now() < deadline,
                "no fingerprint in the LKM log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // This harness is the LKM's administrator on loopback; the server under test
        // trusts the LKM only by the pinned fingerprint.
        let client = Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .expect("client");
        Self {
            child: Some(child),
            url,
            fingerprint,
            client,
        }
    }

    /// The decrypt URL, for the server's settings.
    pub(crate) fn decrypt_url(&self) -> String {
        format!("{}/key-management/v1/decrypt", self.url)
    }

    /// The SHA-256 fingerprint of its certificate, as it printed it.
    pub(crate) fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().expect("LKM request");
        let status = response.status();
        let text = response.text().expect("LKM body");
        assert!(status.is_success(), "LKM {path}: {status} {text}");
        serde_json::from_str(&text).expect("LKM JSON")
    }

    /// Issues Hawk credentials (`{id, authKey, algorithm}`).
    pub(crate) fn credentials(&self, id: &str) -> Value {
        self.admin(
            reqwest::Method::POST,
            "/key-management/v1/auth",
            Some(serde_json::json!({ "id": id })),
        )
    }

    /// Creates a key pair (`{id, publicKey, dateCreated}`).
    pub(crate) fn create_keypair(&self) -> Value {
        self.admin(reqwest::Method::POST, "/key-management/v1/keypair", None)
    }

    /// `POST /browser-decrypt` as a page would (no credentials, the grant only),
    /// from `origin` if given.
    pub(crate) fn browser_decrypt(
        &self,
        url: &str,
        body: &Value,
        origin: Option<&str>,
    ) -> reqwest::blocking::Response {
        assert!(url.starts_with(&self.url), "{url} is this LKM's");
        let mut request = self.client.post(url).json(body);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        request.send().expect("LKM request")
    }

    /// The request log, newest first.
    pub(crate) fn request_log(&self) -> Value {
        self.admin(reqwest::Method::GET, "/key-management/v1/request-log", None)
    }

    /// SIGTERM, and waits for it to exit.
    pub(crate) fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            crate::common::terminate(&mut child);
        }
    }
}

impl Drop for Lkm {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
