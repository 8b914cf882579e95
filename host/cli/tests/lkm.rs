//! `tapeseal lkm` end to end with the real binary and the `openssl` command line:
//! keys made by OpenSSL (PKCS#8 and PKCS#1) are imported under the ids they had,
//! credentials are issued offline, the LKM serves HTTPS on loopback, and DEKs that
//! OpenSSL wrapped with RSA-OAEP (SHA-1 and SHA-256) come back from the
//! Hawk-authenticated decrypt endpoint unchanged.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use sha2::Digest;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_tapeseal");
const DECRYPT: &str = "/key-management/v1/decrypt";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| unreachable!("cannot run {program}: {e}"))
}

/// Runs `openssl`, asserting success.
fn openssl(args: &[&str]) -> Vec<u8> {
    let out = run("openssl", args);
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Wraps the file `dek` for the public key in `public` (PEM) with RSA-OAEP, `md`
/// (`sha1` or `sha256`) for both the hash and MGF1, into `wrapped`: what a platform
/// does with an LKM's public key.
fn openssl_wrap(public: &Path, dek: &Path, wrapped: &Path, md: &str) {
    let (oaep_md, mgf1_md) = (format!("rsa_oaep_md:{md}"), format!("rsa_mgf1_md:{md}"));
    openssl(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        path(public),
        "-in",
        path(dek),
        "-out",
        path(wrapped),
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        &oaep_md,
        "-pkeyopt",
        &mgf1_md,
    ]);
}

/// Runs `tapeseal`, asserting success; its stdout.
fn tapeseal(args: &[&str]) -> String {
    let out = run(BIN, args);
    assert!(
        out.status.success(),
        "tapeseal {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Runs `tapeseal`, asserting it fails with `code`; its stderr.
fn tapeseal_fails(args: &[&str], code: i32) -> String {
    let out = run(BIN, args);
    assert_eq!(out.status.code(), Some(code), "tapeseal {args:?}");
    String::from_utf8(out.stderr).expect("UTF-8")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A running `tapeseal lkm serve`.
struct Serving {
    child: Option<Child>,
    port: u16,
    stderr: PathBuf,
}

impl Serving {
    fn start(data: &Path, log: &Path) -> Self {
        let mut command = Command::new(BIN);
        command
            .args([
                "lkm",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data",
                path(data),
            ])
            .stderr(common::log_file(log));
        let (child, url) = common::spawn_listening(&mut command, log);
        let port = url
            .strip_prefix("https://127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| unreachable!("unexpected URL {url:?}"));
        Self {
            child: Some(child),
            port,
            stderr: log.to_path_buf(),
        }
    }

    /// The fingerprint printed on stderr.
    fn printed_fingerprint(&self) -> String {
        let log = std::fs::read_to_string(&self.stderr).expect("log");
        log.lines()
            .find_map(|l| l.strip_prefix("certificate sha256 fingerprint: "))
            .expect("fingerprint line")
            .to_string()
    }

    /// SIGTERM, then waits.
    fn terminate(mut self) -> ExitStatus {
        common::terminate(&mut self.child.take().expect("running"))
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A platform calling the LKM: trusts its self-signed certificate, signs with Hawk.
struct Platform {
    http: reqwest::blocking::Client,
    creds: tapeseal_keys::hawk::Credentials,
    port: u16,
}

impl Platform {
    fn new(cert_pem: &[u8], id: &str, auth_key: &str, port: u16) -> Self {
        let http = reqwest::blocking::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(cert_pem).expect("PEM")])
            .build()
            .expect("client");
        Self {
            http,
            creds: tapeseal_keys::hawk::credentials(id, auth_key).expect("credentials"),
            port,
        }
    }

    fn decrypt(
        &self,
        keypair_id: &str,
        wrapped: &[u8],
        decrypt_type: Option<&str>,
    ) -> reqwest::blocking::Response {
        let mut body = json!({ "keypairId": keypair_id, "body": B64.encode(wrapped) });
        if let Some(t) = decrypt_type {
            body["decryptType"] = json!(t);
        }
        let authorization = tapeseal_keys::hawk::authorization(
            &self.creds,
            "POST",
            "127.0.0.1",
            self.port,
            DECRYPT,
        )
        .expect("sign");
        self.http
            .post(format!("https://127.0.0.1:{}{DECRYPT}", self.port))
            .header("Authorization", authorization)
            .header("PureCloud-User-Id", "agent-42")
            .json(&body)
            .send()
            .expect("send")
    }
}

/// `tapeseal lkm decrypt`: the server's LKM client from the command line, pinning
/// the LKM's certificate by `fingerprint`.
fn cli_decrypt(
    port: u16,
    fingerprint: &str,
    hawk: (&str, &str),
    id: &str,
    md: &str,
    wrapped: &Path,
) -> Output {
    Command::new(BIN)
        .args([
            "lkm",
            "decrypt",
            "--url",
            &format!("https://127.0.0.1:{port}{DECRYPT}"),
        ])
        .args(["--hawk-id", hawk.0, "--hawk-key-env", "TEST_HAWK_KEY"])
        .args([
            "--fingerprint",
            fingerprint,
            "--keypair",
            id,
            "--oaep",
            md,
            "--in",
            path(wrapped),
        ])
        .env("TEST_HAWK_KEY", hawk.1)
        .output()
        .expect("run tapeseal lkm decrypt")
}

/// The SHA-256 (hex) of the first certificate in PEM text.
fn fingerprint(pem: &str) -> String {
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    hex(&sha2::Sha256::digest(B64.decode(b64).expect("base64")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn openssl_keys_imported_into_the_lkm_decrypt_what_openssl_wrapped() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let data = d.join("lkm");
    let pkcs8 = d.join("pkcs8.pem");
    let pkcs1 = d.join("pkcs1.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:3072",
        "-out",
        path(&pkcs8),
    ]);
    openssl(&["genrsa", "-traditional", "-out", path(&pkcs1), "3072"]);
    assert!(
        std::fs::read_to_string(&pkcs1)
            .expect("key")
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );

    // Import, keeping the ids the keys had; the public key is the key's PKCS#1 DER.
    let keys = [(&pkcs8, "legacy-pair-pkcs8"), (&pkcs1, "legacy-pair-pkcs1")];
    for (key, id) in keys {
        let pair: Value = serde_json::from_str(&tapeseal(&[
            "lkm",
            "import",
            path(key),
            "--id",
            id,
            "--data",
            path(&data),
        ]))
        .expect("Keypair JSON");
        assert_eq!(pair["id"], id);
        let der = openssl(&[
            "rsa",
            "-in",
            path(key),
            "-RSAPublicKey_out",
            "-outform",
            "DER",
        ]);
        assert_eq!(pair["publicKey"], B64.encode(der));
    }
    let again = tapeseal_fails(
        &[
            "lkm",
            "import",
            path(&pkcs8),
            "--id",
            "legacy-pair-pkcs8",
            "--data",
            path(&data),
        ],
        3,
    );
    assert!(again.contains("already exists"), "{again}");
    let small = d.join("small.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        path(&small),
    ]);
    let refused = tapeseal_fails(&["lkm", "import", path(&small), "--data", path(&data)], 3);
    assert!(refused.contains("2048"), "{refused}");
    let ec = d.join("ec.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        path(&ec),
    ]);
    tapeseal_fails(&["lkm", "import", path(&ec), "--data", path(&data)], 3);
    let listed: Vec<Value> =
        serde_json::from_str(&tapeseal(&["lkm", "keypairs", "--data", path(&data)])).expect("list");
    assert_eq!(listed.len(), 2);

    // Credentials, issued offline.
    tapeseal_fails(
        &["lkm", "credentials", "add", "short", "--data", path(&data)],
        2,
    );
    let issued: Value = serde_json::from_str(&tapeseal(&[
        "lkm",
        "credentials",
        "add",
        "genesys-org-1",
        "--data",
        path(&data),
    ]))
    .expect("AuthResponse JSON");
    assert_eq!(issued["algorithm"], "sha256");
    let auth_key = issued["authKey"].as_str().expect("authKey").to_string();

    let server = Serving::start(&data, &d.join("lkm.log"));
    let cert = std::fs::read_to_string(data.join("tls-cert.pem")).expect("certificate");
    let printed = server.printed_fingerprint();
    assert_eq!(printed, fingerprint(&cert));
    assert_eq!(printed.len(), 64);
    let platform = Platform::new(cert.as_bytes(), "genesys-org-1", &auth_key, server.port);

    // DEKs wrapped by OpenSSL with OAEP SHA-1 (the default) and SHA-256.
    for (key, id) in keys {
        let public = d.join(format!("{id}.pub.pem"));
        openssl(&["pkey", "-in", path(key), "-pubout", "-out", path(&public)]);
        for (md, decrypt_type) in [("sha1", None), ("sha256", Some("RSA-OAEP-256"))] {
            let dek = d.join("dek.bin");
            let wrapped = d.join("wrapped.bin");
            openssl(&["rand", "-out", path(&dek), "32"]);
            openssl_wrap(&public, &dek, &wrapped, md);
            let answer =
                platform.decrypt(id, &std::fs::read(&wrapped).expect("wrapped"), decrypt_type);
            assert_eq!(answer.status(), 200, "{id} {md}");
            let answer: Value = answer.json().expect("json");
            let plain = B64
                .decode(answer["body"].as_str().expect("body"))
                .expect("base64");
            assert_eq!(plain, std::fs::read(&dek).expect("dek"), "{id} {md}");
            // The same through the server's own LKM client, on the command line.
            let out = cli_decrypt(
                server.port,
                &printed,
                ("genesys-org-1", &auth_key),
                id,
                md,
                &wrapped,
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout).expect("UTF-8");
            assert_eq!(B64.decode(text.trim()).expect("base64"), plain, "{id} {md}");
        }
    }
    assert!(server.terminate().success(), "SIGTERM stops it cleanly");

    // Restarted on the same data: same certificate, same keys; a revoked credential
    // (revoked offline) is refused.
    let server = Serving::start(&data, &d.join("lkm-2.log"));
    assert_eq!(server.printed_fingerprint(), printed);
    let platform = Platform::new(cert.as_bytes(), "genesys-org-1", &auth_key, server.port);
    let public = d.join("legacy-pair-pkcs1.pub.pem");
    let dek = d.join("dek.bin");
    let wrapped = d.join("wrapped.bin");
    openssl_wrap(&public, &dek, &wrapped, "sha1");
    let wrapped = std::fs::read(&wrapped).expect("wrapped");
    assert_eq!(
        platform
            .decrypt("legacy-pair-pkcs1", &wrapped, None)
            .status(),
        200
    );
    tapeseal(&[
        "lkm",
        "credentials",
        "revoke",
        "genesys-org-1",
        "--data",
        path(&data),
    ]);
    assert_eq!(
        platform
            .decrypt("legacy-pair-pkcs1", &wrapped, None)
            .status(),
        401
    );
    // The client says why: the LKM rejected the credentials (exit 5, key_service_failed).
    let wrapped_file = d.join("wrapped.bin");
    let out = cli_decrypt(
        server.port,
        &printed,
        ("genesys-org-1", &auth_key),
        "legacy-pair-pkcs1",
        "sha1",
        &wrapped_file,
    );
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rejected"));
    // A certificate that is not the pinned one is never talked to.
    let out = cli_decrypt(
        server.port,
        &"00".repeat(32),
        ("genesys-org-1", &auth_key),
        "legacy-pair-pkcs1",
        "sha1",
        &wrapped_file,
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<Value> = serde_json::from_str(&tapeseal(&[
        "lkm",
        "credentials",
        "list",
        "--data",
        path(&data),
    ]))
    .expect("list");
    assert!(listed[0]["revokedAt"].is_i64());
    assert!(
        !listed[0]
            .as_object()
            .expect("object")
            .contains_key("authKey")
    );
    assert!(server.terminate().success());
}

#[test]
fn plain_http_serves_a_same_host_demo_and_only_on_loopback() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("lkm");
    let origin = "http://127.0.0.1:8750";

    // Off loopback, or with an origin no browser sends: a bad argument, nothing made.
    let off_loopback = tapeseal_fails(
        &[
            "lkm",
            "serve",
            "--plain-http",
            "--listen",
            "0.0.0.0:0",
            "--data",
            path(&data),
        ],
        2,
    );
    assert!(off_loopback.contains("loopback"), "{off_loopback}");
    let with_path = tapeseal_fails(
        &[
            "lkm",
            "serve",
            "--allow-origin",
            "http://127.0.0.1:8750/player",
            "--listen",
            "127.0.0.1:0",
            "--data",
            path(&data),
        ],
        2,
    );
    assert!(with_path.contains("origin"), "{with_path}");
    assert!(!data.exists());

    // The demo's command line.
    let log = dir.path().join("lkm.log");
    let mut command = Command::new(BIN);
    command
        .args(["lkm", "serve", "--plain-http", "--allow-origin", origin])
        .args(["--listen", "127.0.0.1:0", "--data", path(&data)])
        .stderr(common::log_file(&log));
    let (mut child, url) = common::spawn_listening(&mut command, &log);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let http = reqwest::blocking::Client::new();
    let health = http
        .get(format!("{url}/key-management/v1/health"))
        .send()
        .expect("send");
    assert_eq!(health.status(), 200);
    let preflight = http
        .request(
            reqwest::Method::OPTIONS,
            format!("{url}/key-management/v1/browser-decrypt"),
        )
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .send()
        .expect("send");
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        origin,
        "the allowed origin"
    );
    assert!(common::terminate(&mut child).success());
    let stderr = std::fs::read_to_string(&log).expect("log");
    assert!(!stderr.contains("fingerprint"), "{stderr}");
    assert!(stderr.contains("plain HTTP"), "{stderr}");
    assert!(!data.join("tls-cert.pem").exists());
}
