//! Operating the server: TLS, restarts, graceful shutdown, health, metrics, the
//! OpenAPI document, and bootstrapping an organisation through the API.

use std::io::Read;
use std::time::Duration;

use serde_json::json;

use crate::support::{
    Api, Server, audit_actions, expect_error, expect_json, fixture, metric, noise, partial_upload,
};

#[test]
fn tls_is_served_with_a_configured_certificate() {
    let (dir, data, acme) = fixture();

    // A test CA and a server certificate for 127.0.0.1 and localhost.
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tapeseal test CA");
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("leaf params");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf");
    let cert = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    std::fs::write(&cert, leaf.pem()).expect("cert");
    std::fs::write(&key, leaf_key.serialize_pem()).expect("key");

    let server = Server::start(
        &data,
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"",
            cert.display(),
            key.display()
        ),
    );
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let client = reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_cert.pem().as_bytes()).expect("ca")])
        .build()
        .expect("client");
    let api = Api::with_client(&server.url, client);
    let body = noise(70_000, 4);
    let meta = api.ingest(&acme.recorder, "call", "audio/wav", &body);
    assert_eq!(
        api.content(&acme.player, meta["id"].as_str().expect("id")),
        body
    );

    // A client that does not trust the CA is refused, and plain HTTP gets nowhere.
    let untrusting = reqwest::blocking::Client::builder()
        .tls_certs_only([])
        .build()
        .expect("client");
    assert!(untrusting.get(api.url("/healthz")).send().is_err());
    let plain = server.url.replacen("https://", "http://", 1);
    let answered = reqwest::blocking::get(format!("{plain}/healthz"))
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    assert!(!answered);
}

#[test]
fn a_restart_on_the_same_data_directory_loses_nothing() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(&data, "");
    let api = server.api();
    let body = noise(123_456, 8);
    let meta = api.ingest(&acme.recorder, "transcript", "text/plain", &body);
    let id = meta["id"].as_str().expect("id").to_string();
    expect_json(api.post_json(&acme.admin, "/v1/keks", &json!({})), 201);
    expect_json(
        api.put_json(
            &acme.admin,
            "/v1/rotation-schedule",
            &json!({"period": "MONTHLY"}),
        ),
        200,
    );
    let keks = expect_json(api.get(&acme.admin, "/v1/keks"), 200);
    let audit = expect_json(api.get(&acme.admin, "/v1/audit?limit=1000"), 200);
    let status = server.terminate();
    assert!(status.success(), "graceful exit: {status}");

    let server = Server::start(&data, "");
    let api = server.api();
    assert_eq!(
        expect_json(api.get(&acme.player, &format!("/v1/recordings/{id}")), 200),
        meta
    );
    assert_eq!(api.content(&acme.player, &id), body);
    assert_eq!(expect_json(api.get(&acme.admin, "/v1/keks"), 200), keks);
    let after = expect_json(api.get(&acme.admin, "/v1/audit?limit=1000"), 200);
    let after = after.as_array().expect("entries");
    let before = audit.as_array().expect("entries");
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(
        expect_json(api.get(&acme.admin, "/v1/rotation-schedule"), 200)["period"],
        "MONTHLY"
    );
    // The master key file was created once, owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("master.key"))
        .expect("master key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn shutdown_lets_an_upload_in_flight_finish() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(&data, "");
    let url = server.url.clone();

    // A body that arrives slowly: the server is told to stop while it streams in.
    struct Slow {
        left: Vec<u8>,
        started: std::sync::mpsc::Sender<()>,
    }
    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.left.is_empty() {
                return Ok(0);
            }
            let _ = self.started.send(());
            std::thread::sleep(Duration::from_millis(100));
            let n = buf.len().min(8192).min(self.left.len());
            buf[..n].copy_from_slice(&self.left[..n]);
            self.left.drain(..n);
            Ok(n)
        }
    }
    let body = noise(80_000, 6);
    let (tx, rx) = std::sync::mpsc::channel();
    let upload = {
        let body = body.clone();
        let token = acme.recorder.clone();
        let url = url.clone();
        std::thread::spawn(move || {
            let slow = Slow {
                left: body.clone(),
                started: tx,
            };
            reqwest::blocking::Client::new()
                .post(format!("{url}/v1/recordings?kind=call"))
                .bearer_auth(token)
                .header("Content-Type", "audio/wav")
                .body(reqwest::blocking::Body::sized(slow, body.len() as u64))
                .send()
                .expect("upload")
        })
    };
    rx.recv_timeout(Duration::from_secs(30))
        .expect("upload started");
    std::thread::sleep(Duration::from_millis(200));
    server.signal_terminate();
    let response = upload.join().expect("upload thread");
    let meta = expect_json(response, 201);
    let status = server.wait();
    assert!(status.success(), "graceful exit: {status}");

    let server = Server::start(&data, "");
    let api = server.api();
    assert_eq!(
        api.content(&acme.player, meta["id"].as_str().expect("id")),
        body
    );
    // New connections after shutdown began were not accepted... and the server
    // that restarted serves normally.
    expect_json(api.get(&acme.player, "/v1/recordings"), 200);
}

#[test]
fn health_metrics_and_the_openapi_document() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(&data, "");
    let api = server.api();

    let health = expect_json(
        reqwest::blocking::get(api.url("/healthz")).expect("GET"),
        200,
    );
    assert_eq!(health["status"], "ok");
    assert_eq!(health["schema_version"], 7);

    let meta = api.ingest(&acme.recorder, "call", "audio/wav", &noise(1000, 1));
    let id = meta["id"].as_str().expect("id");
    api.content(&acme.player, id);
    expect_error(api.get(&acme.player, "/v1/keks"), 403, "forbidden");
    let value = |name: &str| metric(&api, name);
    let metrics = reqwest::blocking::get(api.url("/metrics"))
        .expect("GET")
        .text()
        .expect("text");
    assert_eq!(value("tapeseal_seals_total"), 1.0);
    assert_eq!(value("tapeseal_opens_total"), 1.0);
    assert_eq!(value("tapeseal_unwraps_total"), 1.0);
    assert_eq!(value("tapeseal_errors_total{code=\"forbidden\"}"), 1.0);
    assert_eq!(value("tapeseal_seal_seconds_count"), 1.0);
    assert_eq!(value("tapeseal_open_seconds_count"), 1.0);
    assert_eq!(value("tapeseal_unwrap_seconds_bucket{le=\"+Inf\"}"), 1.0);
    assert!(metrics.contains("route=\"/v1/recordings/{id}/content\""));
    assert!(!metrics.contains(id), "ids never become labels");

    let doc = expect_json(
        reqwest::blocking::get(api.url("/openapi.json")).expect("GET"),
        200,
    );
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    for path in [
        "/v1/recordings",
        "/v1/recordings/{id}",
        "/v1/recordings/{id}/content",
        "/v1/recordings/{id}/envelope",
        "/v1/keks",
        "/v1/keks/{id}",
        "/v1/rotation-schedule",
        "/v1/jobs/rewrap",
        "/v1/jobs/export",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/cancel",
        "/v1/jobs/{id}/resume",
        "/v1/audit",
        "/v1/orgs",
        "/v1/tokens",
        "/healthz",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not documented");
    }
}

#[test]
fn an_operator_bootstraps_an_organisation_through_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let operator = "operator-secret-for-this-test";
    let server = Server::start_with(
        &data,
        "operator_token_env = \"TAPESEAL_TEST_OPERATOR\"",
        &[("TAPESEAL_TEST_OPERATOR", operator)],
    );
    let api = server.api();
    expect_error(
        api.post_json("wrong", "/v1/orgs", &json!({"name": "initech"})),
        401,
        "unauthorized",
    );
    let created = expect_json(
        api.post_json(operator, "/v1/orgs", &json!({"name": "initech"})),
        201,
    );
    expect_error(
        api.post_json(operator, "/v1/orgs", &json!({"name": "initech"})),
        409,
        "conflict",
    );
    let admin = created["admin_token"]["token"].as_str().expect("token");
    let mut tokens = Vec::new();
    for role in ["recorder", "player"] {
        let t = expect_json(
            api.post_json(admin, "/v1/tokens", &json!({"role": role, "label": "api"})),
            201,
        );
        tokens.push((
            t["id"].as_str().expect("id").to_string(),
            t["token"].as_str().expect("secret").to_string(),
        ));
    }
    let meta = api.ingest(
        &tokens[0].1,
        "email",
        "message/rfc822",
        b"Subject: hi\r\n\r\nhello",
    );
    let id = meta["id"].as_str().expect("id");
    assert_eq!(api.content(&tokens[1].1, id), b"Subject: hi\r\n\r\nhello");
    let listed = expect_json(api.get(admin, "/v1/tokens"), 200);
    assert_eq!(listed.as_array().expect("tokens").len(), 3);
    assert!(
        !listed.to_string().contains("tsk_"),
        "secrets are never listed"
    );
    assert_eq!(
        api.delete(admin, &format!("/v1/tokens/{}", tokens[1].0))
            .status()
            .as_u16(),
        204
    );
    expect_error(
        api.get(&tokens[1].1, &format!("/v1/recordings/{id}")),
        401,
        "unauthorized",
    );
    // The operator token is not an organisation token.
    expect_error(api.get(operator, "/v1/recordings"), 401, "unauthorized");
}

#[test]
fn an_upload_still_running_when_the_grace_period_ends_is_discarded_cleanly() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(&data, "shutdown_grace_secs = 1");

    // An upload that stalls half-way and never finishes.
    let stream = partial_upload(&server.url, &acme.recorder, 20_000_000, 10_000_000);
    std::thread::sleep(Duration::from_millis(500));

    server.signal_terminate();
    let status = server.wait();
    assert!(status.success(), "exits after the grace period: {status}");
    drop(stream);

    let server = Server::start(&data, "");
    let api = server.api();
    let listed = expect_json(api.get(&acme.player, "/v1/recordings"), 200);
    assert_eq!(listed.as_array().expect("list").len(), 0);
    let left: Vec<_> = crate::support::files_under(&data.join("recordings"));
    assert!(left.is_empty(), "nothing of the upload remains: {left:?}");
}

#[test]
fn concurrent_uploads_and_playbacks_do_not_mix() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(&data, "chunk_size = 4096");
    let url = server.url.clone();
    let bodies: Vec<Vec<u8>> = (0..6)
        .map(|i| noise(150_000 + i * 1_001, 40 + i as u64))
        .collect();
    let uploads: Vec<_> = bodies
        .iter()
        .cloned()
        .map(|body| {
            let (url, token) = (url.clone(), acme.recorder.clone());
            std::thread::spawn(move || {
                let meta = Api::new(&url).ingest(&token, "call", "audio/wav", &body);
                (meta["id"].as_str().expect("id").to_string(), body)
            })
        })
        .collect();
    let stored: Vec<(String, Vec<u8>)> = uploads
        .into_iter()
        .map(|t| t.join().expect("upload"))
        .collect();
    let playbacks: Vec<_> = stored
        .into_iter()
        .map(|(id, body)| {
            let (url, token) = (url.clone(), acme.player.clone());
            std::thread::spawn(move || {
                let api = Api::new(&url);
                assert_eq!(api.content(&token, &id), body, "{id}");
                let part = api.get_range(
                    &token,
                    &format!("/v1/recordings/{id}/content"),
                    "bytes=70000-80000",
                );
                assert_eq!(&part.bytes().expect("body")[..], &body[70_000..80_001]);
            })
        })
        .collect();
    for t in playbacks {
        t.join().expect("playback");
    }
    let api = server.api();
    let listed = expect_json(api.get(&acme.player, "/v1/recordings"), 200);
    assert_eq!(listed.as_array().expect("list").len(), bodies.len());
}

#[test]
fn metrics_can_require_a_token() {
    let (_dir, data, _acme) = fixture();
    let server = Server::start_with(
        &data,
        "metrics_token_env = \"TAPESEAL_TEST_METRICS\"",
        &[("TAPESEAL_TEST_METRICS", "scrape-secret")],
    );
    let api = server.api();
    expect_error(
        reqwest::blocking::get(api.url("/metrics")).expect("GET"),
        401,
        "unauthorized",
    );
    expect_error(api.get("wrong", "/metrics"), 401, "unauthorized");
    let metrics = api.get("scrape-secret", "/metrics");
    assert_eq!(metrics.status().as_u16(), 200);
    assert!(
        metrics
            .text()
            .expect("text")
            .contains("tapeseal_seals_total")
    );
    // The health check stays open.
    assert_eq!(
        reqwest::blocking::get(api.url("/healthz"))
            .expect("GET")
            .status()
            .as_u16(),
        200
    );
    assert!(
        !server.log().contains("scrape-secret"),
        "the token is not logged"
    );
}

#[test]
fn active_content_is_served_as_a_download_never_as_its_own_type() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(&data, "");
    let api = server.api();
    let page = b"<html><script>alert(document.cookie)</script></html>";
    for content_type in [
        "text/html; charset=utf-8",
        "image/svg+xml",
        "application/xml",
    ] {
        let meta = api.ingest(&acme.recorder, "other", content_type, page);
        let id = meta["id"].as_str().expect("id");
        assert_eq!(meta["content_type"], content_type, "the catalogue keeps it");
        let response = api.get(&acme.player, &format!("/v1/recordings/{id}/content"));
        assert_eq!(response.status().as_u16(), 200);
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(
            header("content-type"),
            "application/octet-stream",
            "{content_type}"
        );
        assert_eq!(
            header("content-disposition"),
            "attachment",
            "{content_type}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(&response.bytes().expect("body")[..], page);
    }
    // Ordinary media keeps its type and plays inline.
    let meta = api.ingest(&acme.recorder, "call", "audio/wav", &noise(500, 3));
    let id = meta["id"].as_str().expect("id");
    let response = api.get(&acme.player, &format!("/v1/recordings/{id}/content"));
    assert_eq!(response.headers()["content-type"], "audio/wav");
    assert!(response.headers().get("content-disposition").is_none());
}

#[test]
fn a_missing_master_key_stops_the_server_instead_of_replacing_it() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(&data, "");
    let body = noise(2_000, 9);
    let id = server
        .api()
        .ingest(&acme.recorder, "email", "message/rfc822", &body)["id"]
        .as_str()
        .expect("id")
        .to_string();
    server.terminate();
    let key = data.join("master.key");
    let saved = std::fs::read(&key).expect("master key");
    std::fs::remove_file(&key).expect("remove");

    let out = std::process::Command::new(crate::support::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("TAPESEAL_CACHE_DIR", "")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the server started without its master key"
    );
    assert!(
        stderr.contains("master key file") && stderr.contains("missing"),
        "{stderr}"
    );
    assert!(!key.exists(), "no new master key was made");

    // Put back, everything opens again.
    std::fs::write(&key, saved).expect("restore");
    let server = Server::start(&data, "");
    assert_eq!(server.api().content(&acme.player, &id), body);
}

#[test]
fn one_playback_unwraps_its_dek_once_and_audits_every_range() {
    let (_dir, data, acme) = fixture();
    let body = noise(300_000, 14);
    let path = {
        let server = Server::start(&data, "");
        let api = server.api();
        let meta = api.ingest(&acme.recorder, "call", "audio/wav", &body);
        let path = format!(
            "/v1/recordings/{}/content",
            meta["id"].as_str().expect("id")
        );
        // A player seeking: three ranges of one recording.
        for (range, start, end) in [
            ("bytes=0-65535", 0, 65_536),
            ("bytes=100000-165535", 100_000, 165_536),
            ("bytes=250000-", 250_000, 300_000),
        ] {
            let response = api.get_range(&acme.player, &path, range);
            assert_eq!(response.status().as_u16(), 206);
            assert_eq!(response.bytes().expect("body"), body[start..end]);
        }
        assert_eq!(metric(&api, "tapeseal_unwraps_total"), 1.0);
        assert_eq!(metric(&api, "tapeseal_playback_dek_cache_hits_total"), 2.0);
        assert_eq!(metric(&api, "tapeseal_playback_cached_deks"), 1.0);

        // Another caller's playback does not use this one's DEK.
        let other = expect_json(
            api.post_json(&acme.admin, "/v1/tokens", &json!({"role": "player"})),
            201,
        );
        let other = other["token"].as_str().expect("token");
        let response = api.get_range(other, &path, "bytes=0-99");
        assert_eq!(response.bytes().expect("body"), body[..100]);
        assert_eq!(metric(&api, "tapeseal_unwraps_total"), 2.0);

        // Every decrypt is in the audit log, cached DEK or not.
        let decrypts = audit_actions(&api, &acme.admin)
            .iter()
            .filter(|a| *a == "recording.decrypt")
            .count();
        assert_eq!(decrypts, 4);
        assert!(metric(&api, "tapeseal_audit_commits_total") >= 1.0);
        path
    };

    // With the cache off, each request unwraps.
    let server = Server::start(&data, "[playback]\ndek_cache_secs = 0\n");
    let api = server.api();
    for _ in 0..2 {
        let response = api.get_range(&acme.player, &path, "bytes=0-99");
        assert_eq!(response.bytes().expect("body"), body[..100]);
    }
    assert_eq!(metric(&api, "tapeseal_unwraps_total"), 2.0);
    assert_eq!(metric(&api, "tapeseal_playback_dek_cache_hits_total"), 0.0);
}
