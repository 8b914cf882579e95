//! The rest of the LKM contract (docs/LKM.md) against a real LKM over HTTPS: the
//! unauthenticated probe and health check, the request log, and the limits (body
//! size, per-credential decrypt rate).

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{
    AUTH, DECRYPT, HEALTH, KEYPAIR, LOG, Lkm, decrypt_body, error_code, random_dek, wrap,
};
use tapeseal_keys::lkm::wire::RequestLogEntry;
use tapeseal_lkm::{Limits, Rate};

#[tokio::test(flavor = "multi_thread")]
async fn the_decrypt_probe_and_health_need_no_credentials() {
    let lkm = Lkm::start().await;
    let probe = lkm
        .request(Method::OPTIONS, DECRYPT)
        .send()
        .await
        .expect("send");
    assert_eq!(probe.status(), 204);
    assert_eq!(probe.headers()["allow"], "POST, OPTIONS");
    let health = lkm.request(Method::GET, HEALTH).send().await.expect("send");
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<Value>().await.expect("json"),
        json!({ "status": "ok" })
    );
    let nowhere = lkm
        .request(Method::GET, "/key-management/v1/nowhere")
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(nowhere, 404).await, "not_found");
    let wrong_method = lkm.request(Method::PUT, HEALTH).send().await.expect("send");
    assert_eq!(error_code(wrong_method, 405).await, "method_not_allowed");
    let log: Vec<RequestLogEntry> = lkm.admin_log().await;
    assert!(
        log.iter()
            .all(|e| e.path != HEALTH && e.method != "OPTIONS"),
        "neither the probe nor health is logged: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_request_log_records_who_asked_and_can_be_read_and_cleared() {
    let (lkm, creds, pair) = Lkm::with_keypair().await;
    let id = pair["id"].as_str().expect("id");
    let wrapped = wrap(
        pair["publicKey"].as_str().expect("key"),
        &random_dek(),
        false,
    );
    let answer = lkm.decrypt(&creds, &decrypt_body(id, &wrapped, None)).await;
    assert_eq!(answer.status(), 200);
    let denied = lkm
        .request(Method::GET, KEYPAIR)
        .header("PureCloud-User-Id", "intruder")
        .send()
        .await
        .expect("send");
    assert_eq!(denied.status(), 401);

    let log = lkm.read_log(&creds, "").await;
    // Newest first: the 401, the decrypt, the key pair, the credentials.
    let summary: Vec<(&str, &str, u16)> = log
        .iter()
        .map(|e| (e.method.as_str(), e.path.as_str(), e.status))
        .collect();
    assert_eq!(
        summary,
        [
            ("GET", KEYPAIR, 401),
            ("POST", DECRYPT, 200),
            ("POST", KEYPAIR, 200),
            ("POST", AUTH, 200)
        ]
    );
    assert!(
        log.windows(2)
            .all(|w| w[0].id > w[1].id && w[0].time >= w[1].time)
    );
    assert_eq!(log[0].user_id.as_deref(), Some("intruder"));
    assert_eq!(log[0].credential_id, None);
    let decrypt = &log[1];
    assert_eq!(decrypt.user_id.as_deref(), Some("agent-7"));
    assert_eq!(decrypt.credential_id.as_deref(), Some("platform-1"));
    assert_eq!(decrypt.keypair_id.as_deref(), Some(id));
    assert_eq!(log[2].keypair_id.as_deref(), Some(id));

    let one = lkm.read_log(&creds, "?maxEntries=1").await;
    assert_eq!(one.len(), 1);
    let at = decrypt.time;
    let window = lkm
        .read_log(&creds, &format!("?earliestTime={at}&latestTime={at}"))
        .await;
    assert!(!window.is_empty() && window.iter().all(|e| e.time == at));
    assert!(window.iter().any(|e| e.path == DECRYPT));
    let future = lkm
        .read_log(&creds, &format!("?earliestTime={}", at + 3_600_000))
        .await;
    assert!(future.is_empty());
    let past = lkm.read_log(&creds, "?latestTime=0").await;
    assert!(past.is_empty());
    let bad = lkm
        .admin(Method::GET, &format!("{LOG}?maxEntries=lots"))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(bad, 400).await, "bad_request");

    let cleared = lkm.admin(Method::DELETE, LOG).send().await.expect("send");
    assert_eq!(cleared.status(), 204);
    let after: Vec<RequestLogEntry> = lkm.admin_log().await;
    let paths: Vec<(&str, u16)> = after
        .iter()
        .map(|e| (e.method.as_str(), e.status))
        .collect();
    assert_eq!(
        paths,
        [("DELETE", 204)],
        "only the clearing request itself remains"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_are_refused() {
    let lkm = Lkm::start().await;
    let creds = lkm.credentials("platform-1").await;
    let big = json!({ "keypairId": "x", "body": "A".repeat(17 * 1024) });
    let answer = lkm.decrypt(&creds, &big).await;
    assert_eq!(error_code(answer, 413).await, "payload_too_large");
    let answer = lkm
        .admin(Method::POST, AUTH)
        .json(&json!({ "id": "a".repeat(20 * 1024) }))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(answer, 413).await, "payload_too_large");
}

#[tokio::test(flavor = "multi_thread")]
async fn decrypts_are_rate_limited_per_credential() {
    let limits = Limits {
        decrypt_rate: Rate {
            per_second: 0.5,
            burst: 2,
        },
        ..Limits::default()
    };
    let lkm = Lkm::start_with(limits).await;
    let busy = lkm.credentials("platform-1").await;
    let other = lkm.credentials("platform-2").await;
    let body = decrypt_body("no-such-pair", b"anything", None);
    for _ in 0..2 {
        assert_eq!(lkm.decrypt(&busy, &body).await.status(), 404);
    }
    let limited = lkm.decrypt(&busy, &body).await;
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(error_code(limited, 429).await, "rate_limited");
    assert_eq!(
        lkm.decrypt(&other, &body).await.status(),
        404,
        "another credential has its own bucket"
    );
    // Other endpoints are not rate-limited.
    assert_eq!(
        lkm.signed(&busy, Method::GET, KEYPAIR)
            .send()
            .await
            .expect("send")
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nonce_accepted_before_a_restart_is_still_refused_after_it() {
    let (lkm, creds, _pair) = Lkm::with_keypair().await;
    let captured = lkm.hawk(&creds, "GET", KEYPAIR);
    let first = lkm.authorized(Method::GET, KEYPAIR, &captured).await;
    assert_eq!(first.status(), 200);

    // Another LKM process starts on the same data directory (a restart, or a second
    // instance) with an empty nonce cache; the request is replayed to it, addressed
    // as the original was (the MAC covers the Host header's host and port).
    let config = tapeseal_lkm::Config {
        data_dir: lkm.data.clone(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..tapeseal_lkm::Config::default()
    };
    let bound = tapeseal_lkm::bind(&config).await.expect("bind");
    let url = bound.url();
    tokio::spawn(bound.serve(std::future::pending()));
    let replay = |authorization: String| {
        lkm.client
            .get(format!("{url}{KEYPAIR}"))
            .header("Host", format!("127.0.0.1:{}", lkm.port))
            .header("Authorization", authorization)
            .send()
    };
    // A fresh header for the original address is accepted by the new process...
    let fresh = replay(lkm.hawk(&creds, "GET", KEYPAIR))
        .await
        .expect("send");
    let status = fresh.status();
    let body = fresh.text().await.unwrap_or_default();
    assert_eq!(status, 200, "a fresh request to the new process: {body}");
    // ...and the captured one is refused as a replay, not as a bad MAC.
    let replayed = replay(captured).await.expect("send");
    let (code, message) = support::error_of(replayed, 401).await;
    assert_eq!(code, "unauthorized");
    assert!(message.contains("nonce was already used"), "{message}");
}
