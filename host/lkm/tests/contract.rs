//! The LKM wire contract (docs/LKM.md) against a real LKM over HTTPS on loopback:
//! credential issuance, Hawk verification and replay protection, key pairs, decrypt
//! in both OAEP paddings (also through tapeseal's own client), and the refusals of
//! PKCS#1 v1.5 and of deleting a key pair that ever decrypted.

mod support;

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::Method;
use serde_json::{Value, json};
use support::{
    AUTH, DECRYPT, KEYPAIR, LOG, Lkm, decrypt_body, error_code, error_of, random_dek, wrap,
};
use tapeseal_keys::lkm::wire::{DecryptType, Keypair};
use tapeseal_keys::lkm::{Client, Endpoint, Trust};
use tapeseal_lkm::{DataDir, Keyring};
#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_issued_only_with_the_admin_token() {
    let lkm = Lkm::start().await;
    let body = json!({ "id": "genesys-org-1" });
    let none = lkm
        .request(Method::POST, AUTH)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(none, 401).await, "unauthorized");
    let wrong = lkm
        .request(Method::POST, AUTH)
        .bearer_auth("not-the-admin-token-at-all")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(wrong, 401).await, "unauthorized");
    let short = lkm
        .admin(Method::POST, AUTH)
        .json(&json!({ "id": "abc12" }))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(short, 400).await, "bad_request");
    let not_json = lkm
        .admin(Method::POST, AUTH)
        .body("{")
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(not_json, 400).await, "bad_request");

    let issued = lkm
        .admin(Method::POST, AUTH)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(issued.status(), 200);
    let issued: Value = issued.json().await.expect("json");
    assert_eq!(issued["id"], "genesys-org-1");
    assert_eq!(issued["algorithm"], "sha256");
    let key = issued["authKey"].as_str().expect("authKey");
    assert_eq!(key.len(), 43, "32 bytes, base64url");
    let again = lkm
        .admin(Method::POST, AUTH)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(again, 409).await, "conflict");

    // Hawk credentials do not issue more credentials.
    let creds = tapeseal_keys::hawk::credentials("genesys-org-1", key).expect("creds");
    let by_hawk = lkm
        .signed(&creds, Method::POST, AUTH)
        .json(&json!({ "id": "another-client" }))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(by_hawk, 401).await, "unauthorized");

    // The key is sealed at rest: the store holds no plaintext authKey.
    let store = std::fs::read(DataDir::new(&lkm.data).store_path()).expect("store");
    assert!(!store.windows(key.len()).any(|w| w == key.as_bytes()));
}

#[tokio::test(flavor = "multi_thread")]
async fn hawk_requests_are_verified_once_and_in_time() {
    let lkm = Lkm::start().await;
    let creds = lkm.credentials("platform-1").await;

    let good = lkm
        .signed(&creds, Method::GET, KEYPAIR)
        .send()
        .await
        .expect("send");
    assert_eq!(good.status(), 200);

    // The same Authorization header twice: the nonce is spent.
    let value = lkm.hawk(&creds, "GET", KEYPAIR);
    let first = lkm.authorized(Method::GET, KEYPAIR, &value).await;
    assert_eq!(first.status(), 200);
    let replay = lkm.authorized(Method::GET, KEYPAIR, &value).await;
    let (code, message) = error_of(replay, 401).await;
    assert_eq!(code, "unauthorized");
    assert!(message.contains("nonce"), "{message}");

    // A MAC made with another key, or for another path.
    let forged = tapeseal_keys::hawk::credentials("platform-1", "not-the-key").expect("creds");
    let bad_mac = lkm
        .signed(&forged, Method::GET, KEYPAIR)
        .send()
        .await
        .expect("send");
    assert!(error_of(bad_mac, 401).await.1.contains("MAC"));
    let other_path = lkm.hawk(&creds, "GET", LOG);
    let moved = lkm.authorized(Method::GET, KEYPAIR, &other_path).await;
    assert!(error_of(moved, 401).await.1.contains("MAC"));

    // Timestamps more than 60 s off, either way.
    for offset in [-120i64, 120] {
        let ts = if offset < 0 {
            SystemTime::now() - Duration::from_secs(120)
        } else {
            SystemTime::now() + Duration::from_secs(120)
        };
        let stale = lkm.hawk_at(&creds, "GET", KEYPAIR, ts, &format!("stale{offset}"));
        let answer = lkm.authorized(Method::GET, KEYPAIR, &stale).await;
        let (code, message) = error_of(answer, 401).await;
        assert_eq!(code, "unauthorized");
        assert!(message.contains("stale"), "offset {offset}: {message}");
    }
    let recent = lkm.hawk_at(
        &creds,
        "GET",
        KEYPAIR,
        SystemTime::now() - Duration::from_secs(30),
        "recent",
    );
    let answer = lkm.authorized(Method::GET, KEYPAIR, &recent).await;
    assert_eq!(answer.status(), 200, "30 s of skew is within the window");

    // An id the LKM never issued, and a malformed header.
    let unknown = tapeseal_keys::hawk::credentials("nobody-at-all", "whatever").expect("creds");
    let answer = lkm
        .signed(&unknown, Method::GET, KEYPAIR)
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(answer, 401).await, "unauthorized");
    // A timestamp the hawk crate would overflow on is malformed, not a crash.
    let absurd = "Hawk id=\"platform-1\", ts=\"18446744073709551615\", nonce=\"n1\", mac=\"AAAA\"";
    let answer = lkm.authorized(Method::GET, KEYPAIR, absurd).await;
    assert_eq!(error_code(answer, 401).await, "unauthorized");
    let garbage = lkm.authorized(Method::GET, KEYPAIR, "Hawk nonsense").await;
    assert_eq!(error_code(garbage, 401).await, "unauthorized");

    // Revoked offline, while the LKM runs: refused from the next request on.
    Keyring::open(&DataDir::new(&lkm.data), false)
        .expect("keyring")
        .revoke_credential("platform-1")
        .expect("revoke");
    let revoked = lkm
        .signed(&creds, Method::GET, KEYPAIR)
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(revoked, 401).await, "unauthorized");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payload_hash_must_match_the_body() {
    let (lkm, creds, pair) = Lkm::with_keypair().await;
    let dek = random_dek();
    let body = decrypt_body(
        pair["id"].as_str().expect("id"),
        &wrap(pair["publicKey"].as_str().expect("key"), &dek, false),
        None,
    );
    let bytes = serde_json::to_vec(&body).expect("json");
    let signed_with = |payload: &[u8]| {
        let hash = ::hawk::PayloadHasher::hash(
            "application/json",
            ::hawk::DigestAlgorithm::Sha256,
            payload,
        )
        .expect("hash");
        let header = ::hawk::RequestBuilder::new("POST", "127.0.0.1", lkm.port, DECRYPT)
            .hash(Some(&hash[..]))
            .request()
            .make_header(&creds)
            .expect("sign");
        format!("Hawk {header}")
    };
    let post = |value: String| {
        lkm.request(Method::POST, DECRYPT)
            .header("Authorization", value)
            .header("Content-Type", "application/json; charset=utf-8")
            .body(bytes.clone())
            .send()
    };
    let good = post(signed_with(&bytes)).await.expect("send");
    assert_eq!(good.status(), 200);
    let answer: Value = good.json().await.expect("json");
    assert_eq!(
        B64.decode(answer["body"].as_str().expect("body"))
            .expect("b64"),
        dek
    );
    let tampered = post(signed_with(b"{}")).await.expect("send");
    assert!(error_of(tampered, 401).await.1.contains("MAC"));
}

#[tokio::test(flavor = "multi_thread")]
async fn key_pairs_are_created_listed_and_read() {
    let lkm = Lkm::start().await;
    let creds = lkm.credentials("platform-1").await;
    let created: Keypair = serde_json::from_value(lkm.keypair(&creds).await).expect("Keypair");
    assert_eq!(created.id.len(), 36, "a UUID");
    assert!(created.date_created > 0);
    let pkcs1 = B64.decode(&created.public_key).expect("base64");
    assert!(pkcs1.len() > 384, "an RSA-3072 PKCS#1 public key");

    let by_admin: Keypair = serde_json::from_value(
        lkm.admin(Method::POST, KEYPAIR)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json"),
    )
    .expect("Keypair");
    let list: Vec<Keypair> = lkm
        .signed(&creds, Method::GET, KEYPAIR)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("a plain JSON array");
    assert_eq!(list.len(), 2);
    assert!(list.contains(&created) && list.contains(&by_admin));
    let path = format!("{KEYPAIR}/{}", created.id);
    let one: Keypair = lkm
        .signed(&creds, Method::GET, &path)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(one, created);
    let missing = lkm
        .signed(&creds, Method::GET, &format!("{KEYPAIR}/no-such-pair"))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(missing, 404).await, "not_found");
    let anonymous = lkm
        .request(Method::GET, KEYPAIR)
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(anonymous, 401).await, "unauthorized");
}

#[tokio::test(flavor = "multi_thread")]
async fn decrypts_with_oaep_sha1_by_default_and_sha256_when_asked() {
    let (lkm, creds, pair) = Lkm::with_keypair().await;
    let id = pair["id"].as_str().expect("id");
    let public = pair["publicKey"].as_str().expect("publicKey");
    for (sha256, decrypt_type) in [
        (false, None),
        (false, Some("RSA-OAEP")),
        (true, Some("RSA-OAEP-256")),
    ] {
        let dek = random_dek();
        let answer = lkm
            .decrypt(
                &creds,
                &decrypt_body(id, &wrap(public, &dek, sha256), decrypt_type),
            )
            .await;
        assert_eq!(answer.status(), 200, "{decrypt_type:?}");
        let answer: Value = answer.json().await.expect("json");
        assert_eq!(
            B64.decode(answer["body"].as_str().expect("body"))
                .expect("b64"),
            dek
        );
    }
    // The wrong padding does not decrypt, and says so vaguely.
    let sha1_wrapped = wrap(public, &random_dek(), false);
    let answer = lkm
        .decrypt(
            &creds,
            &decrypt_body(id, &sha1_wrapped, Some("RSA-OAEP-256")),
        )
        .await;
    assert_eq!(error_code(answer, 400).await, "decrypt_failed");
    let answer = lkm.decrypt(&creds, &decrypt_body(id, b"short", None)).await;
    assert_eq!(error_code(answer, 400).await, "decrypt_failed");
    let answer = lkm
        .decrypt(
            &creds,
            &json!({ "keypairId": id, "body": "***not base64***" }),
        )
        .await;
    assert_eq!(error_code(answer, 400).await, "bad_request");
    let answer = lkm
        .decrypt(&creds, &decrypt_body("no-such-pair", &sha1_wrapped, None))
        .await;
    assert_eq!(error_code(answer, 404).await, "not_found");
    let answer = lkm.decrypt(&creds, &json!({ "body": "AAAA" })).await;
    assert_eq!(error_code(answer, 400).await, "bad_request");

    // The admin token does not decrypt.
    let answer = lkm
        .admin(Method::POST, DECRYPT)
        .json(&decrypt_body(id, &sha1_wrapped, None))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(answer, 401).await, "unauthorized");
}

#[tokio::test(flavor = "multi_thread")]
async fn tapeseal_s_own_client_decrypts_through_a_pinned_fingerprint() {
    let lkm = Lkm::start().await;
    let issued: Value = lkm
        .admin(Method::POST, AUTH)
        .json(&json!({ "id": "tapeseal-server" }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let creds = tapeseal_keys::hawk::credentials(
        "tapeseal-server",
        issued["authKey"].as_str().expect("key"),
    )
    .expect("creds");
    let pair = lkm.keypair(&creds).await;
    let client = Client::new(&Endpoint {
        decrypt_url: format!("{}{DECRYPT}", lkm.url),
        hawk_id: "tapeseal-server".into(),
        hawk_key: zeroize::Zeroizing::new(issued["authKey"].as_str().expect("key").to_string()),
        trust: Trust::fingerprint(lkm.fingerprint.as_deref().expect("HTTPS")).expect("fingerprint"),
        timeout: Duration::from_secs(30),
    })
    .expect("client");
    let public = pair["publicKey"].as_str().expect("publicKey");
    for (sha256, padding) in [
        (false, DecryptType::OaepSha1),
        (true, DecryptType::OaepSha256),
    ] {
        let dek = random_dek();
        let plain = client
            .decrypt(
                pair["id"].as_str().expect("id"),
                &wrap(public, &dek, sha256),
                padding,
                "agent-9",
            )
            .await
            .expect("decrypt");
        assert_eq!(plain.as_slice(), dek);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pkcs1_v15_is_refused_without_being_tried() {
    let (lkm, creds, pair) = Lkm::with_keypair().await;
    let id = pair["id"].as_str().expect("id");
    let wrapped = wrap(
        pair["publicKey"].as_str().expect("key"),
        &random_dek(),
        false,
    );
    for name in ["PKCS1", "RSA1_5", "pkcs1-v1_5"] {
        let answer = lkm
            .decrypt(&creds, &decrypt_body(id, &wrapped, Some(name)))
            .await;
        let (code, message) = error_of(answer, 400).await;
        assert_eq!(code, "bad_request", "{name}");
        assert!(message.contains("PKCS#1 v1.5"), "{name}: {message}");
    }
    let answer = lkm
        .decrypt(&creds, &decrypt_body(id, &wrapped, Some("rot13")))
        .await;
    assert_eq!(error_code(answer, 400).await, "bad_request");
    // Nothing was decrypted, so the key pair was never used and may go.
    let gone = lkm
        .signed(&creds, Method::DELETE, &format!("{KEYPAIR}/{id}"))
        .send()
        .await
        .expect("send");
    assert_eq!(gone.status(), 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_pair_that_ever_decrypted_is_never_deleted() {
    let lkm = Lkm::start().await;
    let creds = lkm.credentials("platform-1").await;
    let used = lkm.keypair(&creds).await;
    let unused = lkm.keypair(&creds).await;
    let used_id = used["id"].as_str().expect("id");
    let dek = random_dek();
    let wrapped = wrap(used["publicKey"].as_str().expect("key"), &dek, false);
    let answer = lkm
        .decrypt(&creds, &decrypt_body(used_id, &wrapped, None))
        .await;
    assert_eq!(answer.status(), 200);

    let refused = lkm
        .admin(Method::DELETE, &format!("{KEYPAIR}/{used_id}"))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(refused, 409).await, "conflict");
    let still = lkm
        .decrypt(&creds, &decrypt_body(used_id, &wrapped, None))
        .await;
    assert_eq!(still.status(), 200, "still there and still decrypting");

    let unused_path = format!("{KEYPAIR}/{}", unused["id"].as_str().expect("id"));
    let deleted = lkm
        .signed(&creds, Method::DELETE, &unused_path)
        .send()
        .await
        .expect("send");
    assert_eq!(deleted.status(), 204);
    let after = lkm
        .signed(&creds, Method::GET, &unused_path)
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(after, 404).await, "not_found");
    let again = lkm
        .signed(&creds, Method::DELETE, &unused_path)
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(again, 404).await, "not_found");
}
