//! Browser playback grants end to end, without a browser: the real server issues a
//! grant for one recording; the real reference LKM redeems it once for that
//! recording's DEK, which opens the envelope the server hands out, and refuses it
//! for anything else. An organisation without grants plays through the server. The
//! browser itself is tested in www/test (headless Chromium).

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::support::lkm::Lkm;
use crate::support::{BIN, Org, Server, expect_error, expect_json, fixture, noise, org};

fn lkm_org(api: &crate::support::Api, acme: &Org, lkm: &Lkm) -> Value {
    let credentials = lkm.credentials("tapeseal-server");
    let view = expect_json(
        api.put_json(
            &acme.admin,
            "/v1/lkm",
            &json!({
                "decrypt_url": lkm.decrypt_url(),
                "hawk_id": credentials["id"],
                "hawk_key": credentials["authKey"],
                "fingerprint": lkm.fingerprint(),
            }),
        ),
        200,
    );
    let keypair = lkm.create_keypair();
    expect_json(
        api.post_json(
            &acme.admin,
            "/v1/lkm/keypairs",
            &json!({"id": keypair["id"], "public_key": keypair["publicKey"]}),
        ),
        201,
    );
    view
}

fn playback(api: &crate::support::Api, token: &str, id: &str) -> Value {
    expect_json(
        api.post_json(token, &format!("/v1/recordings/{id}/playback"), &json!({})),
        200,
    )
}

fn redeem(lkm: &Lkm, grant: &Value, wrapped_dek: &Value) -> reqwest::blocking::Response {
    lkm.browser_decrypt(
        grant["lkm_url"].as_str().expect("url"),
        &json!({
            "grant": grant["token"],
            "keypairId": grant["keypair_id"],
            "body": wrapped_dek,
        }),
        None,
    )
}

fn lkm_error(response: reqwest::blocking::Response, status: u16, code: &str) {
    let got = response.status().as_u16();
    let body: Value = response.json().expect("LKM error JSON");
    assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
}

#[test]
fn a_grant_is_redeemed_once_at_the_lkm_for_the_dek_of_its_recording_only() {
    let (dir, data, acme) = fixture();
    let lkm = Lkm::start(&dir.path().join("lkm"));
    let server = Server::start(&data, "[grants]\nttl_secs = 30");
    let api = server.api();
    let view = lkm_org(&api, &acme, &lkm);
    assert_eq!(view["browser_grants"], true, "{view}");
    assert!(
        view["browser_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/key-management/v1/browser-decrypt")),
        "{view}"
    );

    let body_a = noise(200_000, 11);
    let a = api.ingest(&acme.recorder, "call", "audio/wav", &body_a);
    let b = api.ingest(&acme.recorder, "call", "audio/wav", &noise(1000, 12));
    let a_id = a["id"].as_str().expect("id");
    let b_id = b["id"].as_str().expect("id");

    // Only players get grants.
    expect_error(
        api.post_json(
            &acme.recorder,
            &format!("/v1/recordings/{a_id}/playback"),
            &json!({}),
        ),
        403,
        "forbidden",
    );
    let plan = playback(&api, &acme.player, a_id);
    assert_eq!(plan["mode"], "lkm", "{plan}");
    assert_eq!(plan["size"], body_a.len());
    assert_eq!(
        plan["envelope_url"],
        format!("/v1/recordings/{a_id}/envelope")
    );
    let grant = &plan["grant"];
    assert_eq!(grant["keypair_id"], a["kek_id"]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let expires = grant["expires_at"].as_u64().expect("expiry");
    assert!(expires > now_ms && expires <= now_ms + 31_000, "{grant}");

    // The DEK the LKM returns opens the envelope the server hands out.
    let response = redeem(&lkm, grant, &grant["wrapped_dek"]);
    assert_eq!(response.status().as_u16(), 200);
    let dek = response.json::<Value>().expect("json")["body"]
        .as_str()
        .expect("dek")
        .to_string();
    assert_eq!(B64.decode(&dek).expect("base64").len(), 32);
    let envelope = api.get(&acme.player, &format!("/v1/recordings/{a_id}/envelope"));
    assert_eq!(envelope.status().as_u16(), 200);
    let sealed = dir.path().join("a.tseal");
    std::fs::write(&sealed, envelope.bytes().expect("envelope")).expect("write");
    let opened = dir.path().join("a.wav");
    let status = Command::new(BIN)
        .args(["open", "--dek-env", "TEST_DEK", "--in"])
        .arg(&sealed)
        .arg("--out")
        .arg(&opened)
        .env("TEST_DEK", &dek)
        .status()
        .expect("open");
    assert!(status.success());
    assert_eq!(std::fs::read(&opened).expect("opened"), body_a);

    // Once only.
    lkm_error(
        redeem(&lkm, grant, &grant["wrapped_dek"]),
        401,
        "grant_replayed",
    );
    // A grant for A does not unwrap B's DEK, nor for another key pair.
    let plan_b = playback(&api, &acme.player, b_id);
    let fresh = playback(&api, &acme.player, a_id);
    lkm_error(
        redeem(&lkm, &fresh["grant"], &plan_b["grant"]["wrapped_dek"]),
        403,
        "grant_mismatch",
    );
    // A forged grant (A's claims under another signature) is refused.
    let mut forged = fresh["grant"].clone();
    let token = forged["token"].as_str().expect("token").to_string();
    let (signed, _) = token.rsplit_once('.').expect("dots");
    forged["token"] = json!(format!("{signed}.{}", "A".repeat(86)));
    lkm_error(
        redeem(&lkm, &forged, &forged["wrapped_dek"]),
        401,
        "grant_invalid",
    );

    // The LKM logged the browser decrypt with the player and the recording; the
    // server audited the grants.
    let log = lkm.request_log();
    let redeemed: Vec<&Value> = log
        .as_array()
        .expect("log")
        .iter()
        .filter(|e| e["path"] == "/key-management/v1/browser-decrypt" && e["status"] == 200)
        .collect();
    assert_eq!(redeemed.len(), 1, "{log}");
    assert_eq!(redeemed[0]["recordingId"], a_id, "{log}");
    assert!(
        redeemed[0]["userId"]
            .as_str()
            .is_some_and(|u| u.starts_with("tok-")),
        "{log}"
    );
    let audit = expect_json(
        api.get(&acme.admin, "/v1/audit?action=recording.grant"),
        200,
    );
    assert_eq!(audit.as_array().expect("entries").len(), 3, "{audit}");

    // Registering the grant key again (as after an LKM outage) is admin-only and
    // keeps grants working.
    expect_error(
        api.post_json(&acme.player, "/v1/lkm/grant-key", &json!({})),
        403,
        "forbidden",
    );
    let again = expect_json(
        api.post_json(&acme.admin, "/v1/lkm/grant-key", &json!({})),
        200,
    );
    assert_eq!(again["browser_grants"], true);
    assert_eq!(again["grant_key_id"], view["grant_key_id"]);
    let later = playback(&api, &acme.player, a_id);
    assert_eq!(
        redeem(&lkm, &later["grant"], &later["grant"]["wrapped_dek"])
            .status()
            .as_u16(),
        200
    );
    lkm.stop();
}

#[test]
fn without_grants_a_recording_plays_through_the_server() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(&data, "");
    let api = server.api();
    let body = noise(70_000, 21);
    let rec = api.ingest(&acme.recorder, "call", "audio/wav", &body);
    let id = rec["id"].as_str().expect("id");
    let plan = playback(&api, &acme.player, id);
    assert_eq!(plan["mode"], "server", "{plan}");
    assert!(plan["grant"].is_null());
    assert_eq!(plan["content_url"], format!("/v1/recordings/{id}/content"));
    assert_eq!(api.content(&acme.player, id), body);
    // Another organisation's recording is not found, grant or not.
    let other = org(&data, "other");
    expect_error(
        api.post_json(
            &other.player,
            &format!("/v1/recordings/{id}/playback"),
            &json!({}),
        ),
        404,
        "not_found",
    );
}

#[test]
fn the_pages_are_served_from_the_www_directory_with_a_strict_policy() {
    let (dir, data, acme) = fixture();
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("pkg")).expect("www");
    std::fs::write(www.join("index.html"), "<!doctype html><title>play</title>").expect("page");
    std::fs::write(
        www.join("sw.js"),
        "self.addEventListener('fetch', () => {});",
    )
    .expect("sw");
    std::fs::write(www.join("pkg/tapeseal_bg.wasm"), b"\0asm\x01\0\0\0").expect("wasm");
    std::fs::write(dir.path().join("secret.html"), "outside").expect("outside");
    let server = Server::start(&data, &format!("[www]\ndir = \"{}\"", www.display()));
    let api = server.api();
    let client = reqwest::blocking::Client::new();
    let get = |path: &str| {
        client
            .get(format!("{}{path}", server.url))
            .send()
            .expect("get")
    };

    let index = get("/");
    assert_eq!(index.status().as_u16(), 200);
    let csp = index.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(
        csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(index.headers()["x-content-type-options"], "nosniff");
    assert!(index.text().expect("text").contains("play"));
    let sw = get("/sw.js");
    assert!(
        sw.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/javascript")
    );
    assert_eq!(
        get("/pkg/tapeseal_bg.wasm").headers()["content-type"],
        "application/wasm"
    );
    for outside in [
        "/../secret.html",
        "/pkg/..%2f..%2fsecret.html",
        "/.hidden.js",
        "/missing.html",
    ] {
        assert_eq!(get(outside).status().as_u16(), 404, "{outside}");
    }
    // The API is unchanged beside the pages.
    expect_error(api.get(&acme.admin, "/v1/nothing"), 404, "not_found");
    expect_json(api.get(&acme.admin, "/v1/keks"), 200);
}

#[test]
fn without_a_www_directory_there_are_no_pages() {
    let (_dir, data, _acme) = fixture();
    let server = Server::start(&data, "");
    let response = reqwest::blocking::get(format!("{}/", server.url)).expect("get");
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().expect("json");
    assert_eq!(body["error"]["code"], "not_found");
}
