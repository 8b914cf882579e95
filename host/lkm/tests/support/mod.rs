//! Runs a real LKM in this process on a loopback port, with its self-signed
//! certificate trusted (and its printed fingerprint checked), or over plain HTTP, and
//! signs requests with Hawk as a platform would.

#![allow(dead_code, unreachable_pub)]

pub mod playback;

use std::path::PathBuf;
use std::time::SystemTime;

use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::{Method, Response};
use serde_json::{Value, json};
use tapeseal_keys::hawk;
use tapeseal_lkm::{Config, DataDir, Limits};
use tempfile::TempDir;

/// The contract's paths.
pub const AUTH: &str = "/key-management/v1/auth";
/// Key pairs.
pub const KEYPAIR: &str = "/key-management/v1/keypair";
/// Decrypt.
pub const DECRYPT: &str = "/key-management/v1/decrypt";
/// The request log.
pub const LOG: &str = "/key-management/v1/request-log";
/// Health.
pub const HEALTH: &str = "/key-management/v1/health";
/// A platform's grant key.
pub const GRANT_ISSUER: &str = "/key-management/v1/grant-issuer";
/// Browser decrypt.
pub const BROWSER_DECRYPT: &str = "/key-management/v1/browser-decrypt";

/// A running LKM and a client that trusts it.
pub struct Lkm {
    pub url: String,
    pub port: u16,
    pub admin: String,
    /// The certificate's fingerprint; `None` over plain HTTP.
    pub fingerprint: Option<String>,
    pub data: PathBuf,
    pub client: reqwest::Client,
    config: Config,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    dir: Option<TempDir>,
}

impl Lkm {
    /// Starts an LKM with default limits.
    pub async fn start() -> Self {
        Self::start_with(Limits::default()).await
    }

    /// An LKM with Hawk credentials `platform-1` and one key pair: what most
    /// contract tests start from.
    pub async fn with_keypair() -> (Self, hawk::Credentials, Value) {
        let lkm = Self::start().await;
        let creds = lkm.credentials("platform-1").await;
        let pair = lkm.keypair(&creds).await;
        (lkm, creds, pair)
    }

    /// Starts an LKM with `limits`.
    pub async fn start_with(limits: Limits) -> Self {
        Self::start_config(|config| config.limits = limits).await
    }

    /// Starts an LKM on 127.0.0.1 with a fresh data directory and the configuration
    /// `edit` makes of the default one.
    pub async fn start_config(edit: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: dir.path().join("lkm"),
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..Config::default()
        };
        edit(&mut config);
        Self::launch(config, dir).await
    }

    /// Stops this LKM and starts another on the same data directory and
    /// configuration (on a new port): a restart.
    pub async fn restart(mut self) -> Self {
        let dir = self.dir.take().expect("data directory");
        let config = self.config.clone();
        drop(self);
        Self::launch(config, dir).await
    }

    async fn launch(config: Config, dir: TempDir) -> Self {
        let bound = tapeseal_lkm::bind(&config).await.expect("bind");
        let url = bound.url();
        let port = bound.local_addr().port();
        let fingerprint = bound.fingerprint().map(str::to_string);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(bound.serve(async {
            let _ = rx.await;
        }));
        let dirs = DataDir::new(&config.data_dir);
        let admin = std::fs::read_to_string(dirs.admin_token_path()).expect("admin token");
        let client = match &fingerprint {
            Some(fingerprint) => {
                let cert = std::fs::read(dirs.cert_path()).expect("certificate");
                assert_eq!(
                    &tapeseal_lkm::tls::fingerprint_of_pem(&cert).expect("fingerprint"),
                    fingerprint
                );
                // HTTP/1.1, so that a test may address a request as it likes with a
                // Host header (over HTTP/2 the URL's authority is what the server
                // sees, and the workspace's reqwest can speak it).
                reqwest::Client::builder()
                    .tls_certs_only([reqwest::Certificate::from_pem(&cert).expect("PEM")])
                    .http1_only()
                    .build()
                    .expect("client")
            }
            None => reqwest::Client::new(),
        };
        Self {
            url,
            port,
            admin,
            fingerprint,
            data: config.data_dir.clone(),
            client,
            config,
            stop: Some(tx),
            dir: Some(dir),
        }
    }

    /// A request to `path` with no credentials.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url))
    }

    /// A request with the admin bearer token.
    pub fn admin(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.request(method, path).bearer_auth(&self.admin)
    }

    /// Issues Hawk credentials for `id` through the API.
    pub async fn credentials(&self, id: &str) -> hawk::Credentials {
        self.issue(id).await.0
    }

    /// Issues Hawk credentials for `id` through the API; also their `authKey`.
    pub async fn issue(&self, id: &str) -> (hawk::Credentials, String) {
        let answer = self
            .admin(Method::POST, "/key-management/v1/auth")
            .json(&json!({ "id": id }))
            .send()
            .await
            .expect("send");
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.expect("json");
        assert_eq!(body["algorithm"], "sha256");
        let key = body["authKey"].as_str().expect("authKey").to_string();
        (hawk::credentials(id, &key).expect("credentials"), key)
    }

    /// A fresh Hawk `Authorization` value for `method` on `path` (with its query).
    pub fn hawk(&self, creds: &hawk::Credentials, method: &str, path: &str) -> String {
        hawk::authorization(creds, method, "127.0.0.1", self.port, path).expect("sign")
    }

    /// A Hawk value with a chosen timestamp and nonce.
    pub fn hawk_at(
        &self,
        creds: &hawk::Credentials,
        method: &str,
        path: &str,
        ts: SystemTime,
        nonce: &str,
    ) -> String {
        let header = ::hawk::RequestBuilder::new(method, "127.0.0.1", self.port, path)
            .request()
            .make_header_full(creds, ts, nonce)
            .expect("sign");
        format!("Hawk {header}")
    }

    /// A Hawk-signed request, with a `PureCloud-User-Id`.
    pub fn signed(
        &self,
        creds: &hawk::Credentials,
        method: Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let value = self.hawk(creds, method.as_str(), path);
        self.request(method, path)
            .header("Authorization", value)
            .header("PureCloud-User-Id", "agent-7")
    }

    /// Creates a key pair (Hawk) and returns its JSON.
    pub async fn keypair(&self, creds: &hawk::Credentials) -> Value {
        let answer = self
            .signed(creds, Method::POST, "/key-management/v1/keypair")
            .send()
            .await
            .expect("send");
        assert_eq!(answer.status(), 200);
        answer.json().await.expect("json")
    }

    /// `POST /decrypt` signed by `creds`.
    pub async fn decrypt(&self, creds: &hawk::Credentials, body: &Value) -> Response {
        self.signed(creds, Method::POST, "/key-management/v1/decrypt")
            .json(body)
            .send()
            .await
            .expect("send")
    }
}

impl Lkm {
    /// A request to `path` carrying exactly this `Authorization` value, sent.
    pub async fn authorized(&self, method: Method, path: &str, authorization: &str) -> Response {
        self.request(method, path)
            .header("Authorization", authorization)
            .send()
            .await
            .expect("send")
    }

    /// The request log, read with the admin token.
    pub async fn admin_log(&self) -> Vec<tapeseal_keys::lkm::wire::RequestLogEntry> {
        serde_json::from_value(self.admin_log_json().await).expect("log entries")
    }

    /// The request log as the JSON the LKM sent, read with the admin token.
    pub async fn admin_log_json(&self) -> Value {
        let answer = self
            .admin(Method::GET, "/key-management/v1/request-log")
            .send()
            .await
            .expect("send");
        assert_eq!(answer.status(), 200);
        answer.json().await.expect("log")
    }

    /// `GET /request-log` with `query` (`?…` or empty), signed by `creds`.
    pub async fn read_log(
        &self,
        creds: &hawk::Credentials,
        query: &str,
    ) -> Vec<tapeseal_keys::lkm::wire::RequestLogEntry> {
        let path = format!("/key-management/v1/request-log{query}");
        let answer = self
            .signed(creds, Method::GET, &path)
            .send()
            .await
            .expect("send");
        assert_eq!(answer.status(), 200);
        answer.json().await.expect("log")
    }
}

impl Drop for Lkm {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The decrypt request body for `wrapped`.
pub fn decrypt_body(keypair_id: &str, wrapped: &[u8], decrypt_type: Option<&str>) -> Value {
    let mut body = json!({ "keypairId": keypair_id, "body": B64.encode(wrapped) });
    if let Some(t) = decrypt_type {
        body["decryptType"] = json!(t);
    }
    body
}

/// 32 random bytes.
pub fn random_dek() -> [u8; 32] {
    let mut dek = [0u8; 32];
    aws_lc_rs::rand::fill(&mut dek).expect("random");
    dek
}

/// Wraps `plain` with RSA-OAEP (SHA-1 or SHA-256) for a key pair's `publicKey`
/// (base64 DER PKCS#1), as a platform does.
pub fn wrap(public_key_b64: &str, plain: &[u8], sha256: bool) -> Vec<u8> {
    let pkcs1 = B64.decode(public_key_b64).expect("base64 public key");
    let key = PublicEncryptingKey::from_der(&spki_of_pkcs1(&pkcs1)).expect("RSA public key");
    let key = OaepPublicEncryptingKey::new(key).expect("OAEP key");
    let oaep = if sha256 {
        &OAEP_SHA256_MGF1SHA256
    } else {
        &OAEP_SHA1_MGF1SHA1
    };
    let mut out = vec![0u8; key.ciphertext_size()];
    key.encrypt(oaep, plain, &mut out, None)
        .expect("encrypt")
        .to_vec()
}

/// DER SubjectPublicKeyInfo around a PKCS#1 `RSAPublicKey`.
fn spki_of_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    const RSA_ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let bits = tlv(0x03, &[&[0u8][..], pkcs1].concat());
    tlv(0x30, &[&RSA_ALGORITHM[..], &bits].concat())
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The `code` of an error answer, checking its status and `status` field.
pub async fn error_code(answer: Response, status: u16) -> String {
    error_of(answer, status).await.0
}

/// The `code` and `message` of an error answer, checking its status.
pub async fn error_of(answer: Response, status: u16) -> (String, String) {
    assert_eq!(answer.status(), status);
    let body: Value = answer.json().await.expect("JSON error body");
    assert_eq!(body["status"], status);
    let message = body["message"].as_str().expect("message").to_string();
    assert!(!message.is_empty());
    (body["code"].as_str().expect("code").to_string(), message)
}
