//! LKM mode end to end: the real `tapeseal lkm serve` (the reference Local Key
//! Manager) and the real `tapeseal serve`, over HTTPS with Hawk on loopback. An
//! organisation points the server at its LKM, registers key pairs (each proven by a
//! sample decrypt), ingests and plays back; rotation is a new key pair registered;
//! an LKM that is stopped, slow, has revoked our credentials or does not hold a key
//! pair gives a clear error and loses nothing.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::lkm::Lkm;
use crate::support::{Org, Server, audit_actions, cli, expect_error, expect_json, fixture, noise};

/// Points acme's server at `lkm` with these Hawk credentials.
fn configure(api: &crate::support::Api, org: &Org, lkm: &Lkm, credentials: &Value) -> Value {
    let body = json!({
        "decrypt_url": lkm.decrypt_url(),
        "hawk_id": credentials["id"],
        "hawk_key": credentials["authKey"],
        "fingerprint": lkm.fingerprint(),
        "timeout_ms": 1500,
    });
    expect_json(api.put_json(&org.admin, "/v1/lkm", &body), 200)
}

fn register(api: &crate::support::Api, org: &Org, keypair: &Value) -> reqwest::blocking::Response {
    api.post_json(
        &org.admin,
        "/v1/lkm/keypairs",
        &json!({"id": keypair["id"], "public_key": keypair["publicKey"]}),
    )
}

#[test]
fn an_lkm_organisation_seals_for_registered_key_pairs_and_plays_back_through_the_lkm() {
    let (dir, data, acme) = fixture();
    let lkm = Lkm::start(&dir.path().join("lkm"));
    let credentials = lkm.credentials("tapeseal-server");
    let server = Server::start(&data, "");
    let api = server.api();

    let view = configure(&api, &acme, &lkm, &credentials);
    assert_eq!(view["key_mode"], "lkm");
    assert_eq!(view["trust"], "fingerprint");
    assert!(
        !view
            .to_string()
            .contains(credentials["authKey"].as_str().expect("key"))
    );

    // Nothing is sealed before a key pair is registered.
    let refused = api.upload(&acme.recorder, "kind=call", "audio/wav", noise(100, 1));
    expect_error(refused, 409, "conflict");

    let first = lkm.create_keypair();
    let kek = expect_json(register(&api, &acme, &first), 201);
    assert_eq!(kek["id"], first["id"]);
    assert_eq!(kek["mode"], "lkm");
    assert_eq!(kek["current"], true);
    assert_eq!(kek["wrap_algorithm"], "rsa-oaep-sha256");

    let old_body = noise(300_000, 2);
    let old = api.ingest(&acme.recorder, "call", "audio/wav", &old_body);
    assert_eq!(old["kek_id"], first["id"]);
    let old_id = old["id"].as_str().expect("id");
    assert_eq!(api.content(&acme.player, old_id), old_body);

    // The LKM's request log names the acting token as the platform user.
    let log = lkm.request_log();
    let decrypts: Vec<&Value> = log
        .as_array()
        .expect("log")
        .iter()
        .filter(|e| e["path"] == "/key-management/v1/decrypt" && e["status"] == 200)
        .collect();
    assert!(
        decrypts.len() >= 2,
        "the sample decrypt and the playback: {log}"
    );
    assert!(
        decrypts.iter().all(
            |e| e["userId"].as_str().is_some_and(|u| u.starts_with("tok-"))
                && e["credentialId"] == "tapeseal-server"
        ),
        "{log}"
    );

    // Rotation happens in the LKM: "change key now" here says so.
    let message = expect_error(
        api.post_json(&acme.admin, "/v1/keks", &json!({})),
        409,
        "conflict",
    );
    assert!(message.contains("Local Key Manager"), "{message}");
    let second = lkm.create_keypair();
    expect_json(register(&api, &acme, &second), 201);
    let new_body = noise(50_000, 3);
    let new = api.ingest(&acme.recorder, "email", "message/rfc822", &new_body);
    assert_eq!(new["kek_id"], second["id"]);
    assert_eq!(
        api.content(&acme.player, new["id"].as_str().expect("id")),
        new_body
    );
    assert_eq!(
        api.content(&acme.player, old_id),
        old_body,
        "old recordings still play"
    );

    // A key pair whose public key is not the LKM's pair of that id is refused.
    let third = lkm.create_keypair();
    let mismatched = json!({"id": third["id"], "public_key": first["publicKey"]});
    let response = api.post_json(&acme.admin, "/v1/lkm/keypairs", &mismatched);
    expect_error(response, 403, "key_refused");
    // One the LKM does not hold at all is the LKM's failure, said so.
    let unknown = json!({"id": "no-such-keypair", "public_key": first["publicKey"]});
    let message = expect_error(
        api.post_json(&acme.admin, "/v1/lkm/keypairs", &unknown),
        502,
        "key_service_failed",
    );
    assert!(message.contains("no key pair"), "{message}");
    // Registering the same key pair twice is a conflict.
    expect_error(register(&api, &acme, &first), 409, "conflict");

    // The audit log has the switch and both registrations.
    let actions = audit_actions(&api, &acme.admin);
    assert!(actions.iter().any(|a| a == "lkm.configure"), "{actions:?}");
    assert_eq!(
        actions.iter().filter(|a| *a == "kek.create").count(),
        2,
        "{actions:?}"
    );
}

#[test]
fn a_stopped_slow_or_revoking_lkm_gives_a_clear_error_and_loses_nothing() {
    let (dir, data, acme) = fixture();
    let lkm_dir = dir.path().join("lkm");
    let lkm = Lkm::start(&lkm_dir);
    let credentials = lkm.credentials("tapeseal-server");
    let server = Server::start(&data, "");
    let api = server.api();
    configure(&api, &acme, &lkm, &credentials);
    expect_json(register(&api, &acme, &lkm.create_keypair()), 201);
    let body = noise(80_000, 4);
    let id = api.ingest(&acme.recorder, "call", "audio/wav", &body)["id"]
        .as_str()
        .expect("id")
        .to_string();
    let content = format!("/v1/recordings/{id}/content");

    // Stopped: 503 with the reason; sealing needs only the public key, so ingest
    // goes on.
    lkm.stop();
    let message = expect_error(
        api.get(&acme.player, &content),
        503,
        "key_service_unavailable",
    );
    assert!(message.contains("cannot reach the LKM"), "{message}");
    let while_down = noise(20_000, 5);
    let later = api.ingest(&acme.recorder, "chat", "text/plain", &while_down);

    // Back (on another port: the administrator points the server at it again).
    let lkm = Lkm::start(&lkm_dir);
    configure(&api, &acme, &lkm, &credentials);
    assert_eq!(api.content(&acme.player, &id), body);
    assert_eq!(
        api.content(&acme.player, later["id"].as_str().expect("id")),
        while_down
    );

    // Revoked credentials: 502, saying the LKM rejected them.
    lkm.stop();
    cli(&[
        "lkm",
        "credentials",
        "revoke",
        "--data",
        lkm_dir.to_str().expect("utf-8"),
        "tapeseal-server",
    ]);
    let lkm = Lkm::start(&lkm_dir);
    configure(&api, &acme, &lkm, &credentials);
    let message = expect_error(api.get(&acme.player, &content), 502, "key_service_failed");
    assert!(message.contains("rejected"), "{message}");
    let fresh = lkm.credentials("tapeseal-server-2");
    configure(&api, &acme, &lkm, &fresh);
    assert_eq!(api.content(&acme.player, &id), body);

    // Slow: an LKM that accepts connections and never answers. 504 within the
    // configured timeout, not a hung request.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!(
        "https://127.0.0.1:{}/key-management/v1/decrypt",
        silent.local_addr().expect("addr").port()
    );
    let body_json = json!({
        "decrypt_url": silent_url,
        "hawk_id": fresh["id"],
        "hawk_key": fresh["authKey"],
        "fingerprint": lkm.fingerprint(),
        "timeout_ms": 1000,
    });
    expect_json(api.put_json(&acme.admin, "/v1/lkm", &body_json), 200);
    let started = Instant::now();
    let message = expect_error(api.get(&acme.player, &content), 504, "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(message.contains("1000 ms"), "{message}");
    drop(silent);

    // Nothing was lost: with the LKM reachable again, everything plays.
    configure(&api, &acme, &lkm, &fresh);
    assert_eq!(api.content(&acme.player, &id), body);
    let listed = expect_json(api.get(&acme.player, "/v1/recordings"), 200);
    assert_eq!(listed.as_array().expect("list").len(), 2);
}

#[test]
fn lkm_settings_are_checked_and_the_hawk_key_is_never_shown() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(&data, "");
    let api = server.api();
    expect_error(api.get(&acme.admin, "/v1/lkm"), 404, "not_found");
    let base = json!({
        "decrypt_url": "https://127.0.0.1:9/key-management/v1/decrypt",
        "hawk_id": "tapeseal-server",
        "hawk_key": "k3y-material",
    });
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    for bad in [
        // Plain HTTP only to a loopback address.
        with(
            "decrypt_url",
            json!("http://lkm.example.com/key-management/v1/decrypt"),
        ),
        with(
            "decrypt_url",
            json!("http://10.0.0.9:8760/key-management/v1/decrypt"),
        ),
        with("browser_url", json!("ftp://lkm.example.com/x")),
        with("decrypt_url", json!("not a url")),
        with("hawk_id", json!("short")),
        with("fingerprint", json!("abc")),
        with("timeout_ms", json!(600_000)),
        with("ca_pem", json!("not a certificate")),
    ] {
        expect_error(
            api.put_json(&acme.admin, "/v1/lkm", &bad),
            400,
            "bad_request",
        );
    }
    expect_error(
        api.put_json(&acme.player, "/v1/lkm", &base),
        403,
        "forbidden",
    );
    // An LKM that cannot be reached now keeps the settings; grants stay off, saying why.
    let view = expect_json(api.put_json(&acme.admin, "/v1/lkm", &base), 200);
    assert_eq!(view["trust"], "system");
    assert_eq!(view["browser_grants"], false);
    assert!(
        view["grants_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach the LKM")),
        "{view}"
    );
    let shown = expect_json(api.get(&acme.admin, "/v1/lkm"), 200);
    assert!(!shown.to_string().contains("k3y-material"));
    assert!(!server.log().contains("k3y-material"));
    let catalogue = std::fs::read(data.join("catalogue.sqlite3")).unwrap_or_default();
    assert!(
        !crate::support::contains(&catalogue, b"k3y-material"),
        "sealed at rest"
    );
}

#[test]
fn a_rewrap_job_waits_for_an_unreachable_lkm_then_stops_and_touches_nothing() {
    let (dir, data, acme) = fixture();
    let lkm_dir = dir.path().join("lkm");
    let lkm = Lkm::start(&lkm_dir);
    let credentials = lkm.credentials("tapeseal-server");
    let server = Server::start(&data, "[jobs]\nkey_service_patience_secs = 2");
    let api = server.api();
    configure(&api, &acme, &lkm, &credentials);
    let first = lkm.create_keypair();
    expect_json(register(&api, &acme, &first), 201);
    let bodies: Vec<Vec<u8>> = (0..3).map(|i| noise(30_000, 10 + i)).collect();
    let ids = crate::keys::ingest_all(&api, &acme.recorder, "call", &bodies);
    expect_json(register(&api, &acme, &lkm.create_keypair()), 201);

    // The LKM goes away: the job retries for its patience, then stops, blaming the
    // key service, with no recording counted as failed and none moved.
    lkm.stop();
    let rewrap = json!({"from_kek_id": first["id"]});
    let job = expect_json(api.post_json(&acme.admin, "/v1/jobs/rewrap", &rewrap), 202);
    let job_id = job["id"].as_str().expect("id").to_string();
    let started = Instant::now();
    let job = api.wait_for_job(&acme.admin, &job_id);
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited");
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["progress"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("key service")),
        "{job}"
    );
    assert_eq!(job["progress"]["done"], 0, "{job}");
    assert_eq!(job["progress"]["failed"], 0, "{job}");
    for id in &ids {
        let meta = expect_json(api.get(&acme.admin, &format!("/v1/recordings/{id}")), 200);
        assert_eq!(meta["kek_id"], first["id"]);
    }

    // Back: the same job run again moves everything and retires the old key pair.
    let lkm = Lkm::start(&lkm_dir);
    configure(&api, &acme, &lkm, &credentials);
    let job = expect_json(api.post_json(&acme.admin, "/v1/jobs/rewrap", &rewrap), 202);
    let job = api.wait_for_job(&acme.admin, job["id"].as_str().expect("id"));
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["progress"]["done"], 3, "{job}");
    for (id, body) in ids.iter().zip(&bodies) {
        assert_eq!(&api.content(&acme.player, id), body);
    }
}
