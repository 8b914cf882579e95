//! Playback grants against a real LKM over HTTPS on loopback (docs/LKM.md, "Playback
//! grants"): a platform registers its grant key with Hawk, signs grants as the server
//! does, and a page (here, reqwest with an `Origin`) trades each grant once for the
//! DEK it names; expired, misbound, replayed (also across a restart), unknown-issuer,
//! foreign-key and revoked-credential grants are refused, CORS admits only the
//! allowed origins, and plain HTTP is served on loopback only.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::Method;
use serde_json::{Value, json};
use support::playback::{
    ISSUER, ORIGIN, Playback, browser_decrypt, claims_for, dek_of, header, now_secs, read_issuer,
    refusal, register,
};
use support::{
    BROWSER_DECRYPT, DECRYPT, GRANT_ISSUER, HEALTH, KEYPAIR, Lkm, decrypt_body, error_code,
    error_of,
};
use tapeseal_keys::grant::{self, Claims, GrantSigner};
use tapeseal_keys::lkm::wire::{GrantIssuer, RequestLogEntry};
use tapeseal_lkm::{Config, DataDir, Keyring, Limits, Rate, TlsMode};

#[tokio::test(flavor = "multi_thread")]
async fn a_registered_issuer_s_grant_returns_the_dek_in_both_paddings() {
    let p = Playback::start().await;
    let registered = read_issuer(&p.lkm, &p.creds).await;
    assert_eq!(registered.status(), 200);
    let registered: GrantIssuer = registered.json().await.expect("GrantIssuer");
    assert_eq!(registered.issuer, ISSUER);
    assert_eq!(registered.public_key, B64.encode(p.signer.public_key()));
    assert_eq!(registered.key_id, p.signer.key_id());
    assert!(registered.registered_at > 0);

    for (sha256, dty) in [(true, Some("RSA-OAEP-256")), (false, None)] {
        let (dek, wrapped) = p.wrapped(sha256);
        let grant = p.grant(&p.claims(&wrapped, dty));
        let answer = p.decrypt(&grant, &wrapped, None).await;
        assert_eq!(header(&answer, "access-control-allow-origin"), None);
        assert_eq!(dek_of(answer).await, dek, "{dty:?}");
    }

    // The padding is the grant's: PKCS#1 v1.5 is refused before any RSA operation,
    // and the request cannot name another.
    let (_, wrapped) = p.wrapped(false);
    let grant = p.grant(&p.claims(&wrapped, Some("PKCS1")));
    let (code, message) = error_of(p.decrypt(&grant, &wrapped, None).await, 400).await;
    assert_eq!(code, "bad_request");
    assert!(message.contains("PKCS#1 v1.5"), "{message}");
    let grant = p.grant(&p.claims(&wrapped, None));
    let with_type = p
        .lkm
        .request(Method::POST, BROWSER_DECRYPT)
        .json(&json!({
            "grant": grant,
            "keypairId": p.keypair_id(),
            "body": B64.encode(&wrapped),
            "decryptType": "RSA-OAEP-256",
        }))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(with_type, 400).await, "bad_request");
    let not_json = p
        .lkm
        .request(Method::POST, BROWSER_DECRYPT)
        .body("{")
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(not_json, 400).await, "bad_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_early_and_overlong_grants_are_refused() {
    let p = Playback::start().await;
    let (dek, wrapped) = p.wrapped(true);
    let dty = Some("RSA-OAEP-256");
    let now = now_secs();
    let cases = [
        (now - 120, now - 60, "grant_expired"),
        (now + 300, now + 360, "grant_not_yet_valid"),
        (now, now + grant::MAX_TTL_SECS + 1, "grant_invalid"),
    ];
    for (iat, exp, expected) in cases {
        let claims = Claims {
            iat,
            exp,
            ..p.claims(&wrapped, dty)
        };
        let grant = p.grant(&claims);
        let answer = p.decrypt(&grant, &wrapped, None).await;
        assert_eq!(refusal(answer, 401, &grant).await, expected);
    }
    let grant = p.grant(&p.claims(&wrapped, dty));
    assert_eq!(dek_of(p.decrypt(&grant, &wrapped, None).await).await, dek);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_is_bound_to_its_wrapped_dek_and_key_pair() {
    let p = Playback::start().await;
    let other_pair = p.lkm.keypair(&p.creds).await;
    let other_id = other_pair["id"].as_str().expect("id");
    let (dek, wrapped) = p.wrapped(false);
    let (_, another_dek) = p.wrapped(false);
    let grant = p.grant(&p.claims(&wrapped, None));

    let answer = p.decrypt(&grant, &another_dek, None).await;
    assert_eq!(refusal(answer, 403, &grant).await, "grant_mismatch");
    let answer = browser_decrypt(&p.lkm, &grant, other_id, &wrapped, None).await;
    assert_eq!(refusal(answer, 403, &grant).await, "grant_mismatch");
    // A grant for the other key pair does not open this one's DEK either.
    let for_other = p.grant(&claims_for(other_id, &wrapped, None));
    let answer = p.decrypt(&for_other, &wrapped, None).await;
    assert_eq!(refusal(answer, 403, &for_other).await, "grant_mismatch");

    // Refused for its binding, the grant was not spent.
    assert_eq!(dek_of(p.decrypt(&grant, &wrapped, None).await).await, dek);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_is_accepted_once_also_after_a_restart() {
    let p = Playback::start().await;
    let (dek, wrapped) = p.wrapped(true);
    let dty = Some("RSA-OAEP-256");
    let grant = p.grant(&p.claims(&wrapped, dty));
    assert_eq!(dek_of(p.decrypt(&grant, &wrapped, None).await).await, dek);
    let again = p.decrypt(&grant, &wrapped, None).await;
    assert_eq!(refusal(again, 401, &grant).await, "grant_replayed");

    // A restarted LKM has an empty memory of grants; the request log refills it.
    let Playback {
        lkm, signer, pair, ..
    } = p;
    let lkm = lkm.restart().await;
    let keypair_id = pair["id"].as_str().expect("id");
    let replayed = browser_decrypt(&lkm, &grant, keypair_id, &wrapped, None).await;
    assert_eq!(refusal(replayed, 401, &grant).await, "grant_replayed");
    let fresh = signer
        .sign(&claims_for(keypair_id, &wrapped, dty))
        .expect("sign");
    let answer = browser_decrypt(&lkm, &fresh, keypair_id, &wrapped, None).await;
    assert_eq!(dek_of(answer).await, dek, "the issuer survives the restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_of_unknown_issuers_or_signed_with_another_key_are_invalid() {
    let p = Playback::start().await;
    let (dek, wrapped) = p.wrapped(false);
    let (stranger, _) = GrantSigner::generate().expect("key");

    let nobody = Claims {
        iss: "nobody-at-all".into(),
        ..p.claims(&wrapped, None)
    };
    let grant = p.grant(&nobody);
    let (code, unknown_message) = error_of(p.decrypt(&grant, &wrapped, None).await, 401).await;
    assert_eq!(code, "grant_invalid");
    // A credential that never registered a grant key issues no grants.
    p.lkm.credentials("platform-2").await;
    let unregistered = Claims {
        iss: "platform-2".into(),
        ..p.claims(&wrapped, None)
    };
    let answer = p.decrypt(&p.grant(&unregistered), &wrapped, None).await;
    assert_eq!(error_code(answer, 401).await, "grant_invalid");

    let forged = stranger.sign(&p.claims(&wrapped, None)).expect("sign");
    let (code, forged_message) = error_of(p.decrypt(&forged, &wrapped, None).await, 401).await;
    assert_eq!(code, "grant_invalid");
    assert_eq!(
        unknown_message, forged_message,
        "whether an issuer is registered is not disclosed"
    );
    for junk in ["not a grant", "tsg1.e30.AAAA", "tsg2.e30.AAAA"] {
        let answer = p.decrypt(junk, &wrapped, None).await;
        assert_eq!(error_code(answer, 401).await, "grant_invalid", "{junk}");
    }

    let grant = p.grant(&p.claims(&wrapped, None));
    assert_eq!(dek_of(p.decrypt(&grant, &wrapped, None).await).await, dek);
}

#[tokio::test(flavor = "multi_thread")]
async fn registering_again_replaces_the_issuer_s_key() {
    let p = Playback::start().await;
    let (dek, wrapped) = p.wrapped(false);
    let before = p.grant(&p.claims(&wrapped, None));

    // The server's own client registers the new key, as it does at start.
    let (replacement, _) = GrantSigner::generate().expect("key");
    let registered = p
        .client()
        .register_grant_issuer(replacement.public_key())
        .await
        .expect("register")
        .expect("the reference LKM offers browser decrypt");
    assert_eq!(
        (registered.issuer.as_str(), registered.key_id.as_str()),
        (ISSUER, replacement.key_id().as_str())
    );

    let answer = p.decrypt(&before, &wrapped, None).await;
    assert_eq!(refusal(answer, 401, &before).await, "grant_invalid");
    let after = p.grant(&p.claims(&wrapped, None));
    let answer = p.decrypt(&after, &wrapped, None).await;
    assert_eq!(refusal(answer, 401, &after).await, "grant_invalid");
    let grant = replacement.sign(&p.claims(&wrapped, None)).expect("sign");
    assert_eq!(dek_of(p.decrypt(&grant, &wrapped, None).await).await, dek);
    let shown = read_issuer(&p.lkm, &p.creds).await;
    let shown: GrantIssuer = shown.json().await.expect("GrantIssuer");
    assert_eq!(shown.public_key, B64.encode(replacement.public_key()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_credential_s_grants_are_refused() {
    let p = Playback::start().await;
    let (_, wrapped) = p.wrapped(false);
    let grant = p.grant(&p.claims(&wrapped, None));

    // Revoked offline, as `tapeseal lkm credentials revoke` does, while it serves.
    Keyring::open(&DataDir::new(&p.lkm.data), false)
        .expect("keyring")
        .revoke_credential(ISSUER)
        .expect("revoke");
    let answer = p.decrypt(&grant, &wrapped, None).await;
    assert_eq!(refusal(answer, 401, &grant).await, "grant_invalid");
    let read = read_issuer(&p.lkm, &p.creds).await;
    assert_eq!(error_code(read, 401).await, "unauthorized");

    // Issued again, the credential starts without a grant key: the old one is gone.
    let creds = p.lkm.credentials(ISSUER).await;
    let read = read_issuer(&p.lkm, &creds).await;
    assert_eq!(error_code(read, 404).await, "not_found");
    let answer = p.decrypt(&grant, &wrapped, None).await;
    assert_eq!(refusal(answer, 401, &grant).await, "grant_invalid");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_admits_the_allowed_origins_on_browser_decrypt_only() {
    let p = Playback::start_config(|config| {
        config.allowed_origins = vec![ORIGIN.into()];
        config.limits = Limits {
            decrypt_rate: Rate {
                per_second: 0.001,
                burst: 2,
            },
            ..Limits::default()
        };
    })
    .await;
    let preflight = |origin: &'static str| {
        p.lkm
            .request(Method::OPTIONS, BROWSER_DECRYPT)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
    };
    // Preflights are not decrypts: several do not touch the rate.
    for _ in 0..5 {
        let allowed = preflight(ORIGIN).await.expect("send");
        assert_eq!(allowed.status(), 204);
        assert_eq!(
            header(&allowed, "access-control-allow-origin"),
            Some(ORIGIN)
        );
        assert_eq!(header(&allowed, "vary"), Some("Origin"));
        assert_eq!(
            header(&allowed, "access-control-allow-methods"),
            Some("POST")
        );
        assert_eq!(
            header(&allowed, "access-control-allow-headers"),
            Some("content-type")
        );
        assert_eq!(header(&allowed, "access-control-max-age"), Some("600"));
    }
    let denied = preflight("http://evil.example").await.expect("send");
    assert_eq!(header(&denied, "access-control-allow-origin"), None);
    assert_eq!(error_code(denied, 403).await, "forbidden_origin");

    // A page from another origin is refused before anything is decrypted: its grant
    // is not spent, and the log shows that the handler never read the request.
    let (dek, wrapped) = p.wrapped(false);
    let grant = p.grant(&p.claims(&wrapped, None));
    for origin in ["http://evil.example", "http://127.0.0.1:8751", "null"] {
        let refused = p.decrypt(&grant, &wrapped, Some(origin)).await;
        assert_eq!(header(&refused, "access-control-allow-origin"), None);
        assert_eq!(error_code(refused, 403).await, "forbidden_origin");
    }
    let log = p.lkm.admin_log().await;
    assert!(
        log[..3]
            .iter()
            .all(|e| (e.path.as_str(), e.status, e.keypair_id.as_deref())
                == (BROWSER_DECRYPT, 403, None)),
        "{log:?}"
    );
    let allowed = p.decrypt(&grant, &wrapped, Some(ORIGIN)).await;
    assert_eq!(
        header(&allowed, "access-control-allow-origin"),
        Some(ORIGIN)
    );
    assert_eq!(header(&allowed, "vary"), Some("Origin"));
    assert_eq!(dek_of(allowed).await, dek);

    // No Origin: a non-browser client holding a grant.
    let grant = p.grant(&p.claims(&wrapped, None));
    assert_eq!(dek_of(p.decrypt(&grant, &wrapped, None).await).await, dek);
    // The third browser decrypt exceeds the issuer's burst; the page can read why.
    let grant = p.grant(&p.claims(&wrapped, None));
    let limited = p.decrypt(&grant, &wrapped, Some(ORIGIN)).await;
    assert_eq!(
        header(&limited, "access-control-allow-origin"),
        Some(ORIGIN)
    );
    assert_eq!(error_code(limited, 429).await, "rate_limited");

    // The Hawk endpoints get no CORS headers, whatever the Origin.
    let hawk_decrypt = p
        .lkm
        .signed(&p.creds, Method::POST, DECRYPT)
        .header("Origin", ORIGIN)
        .json(&decrypt_body(p.keypair_id(), &wrapped, None))
        .send()
        .await
        .expect("send");
    assert_eq!(hawk_decrypt.status(), 200, "its own bucket");
    assert_eq!(header(&hawk_decrypt, "access-control-allow-origin"), None);
    for path in [DECRYPT, GRANT_ISSUER, KEYPAIR] {
        let probe = p
            .lkm
            .request(Method::OPTIONS, path)
            .header("Origin", ORIGIN)
            .header("Access-Control-Request-Method", "POST")
            .send()
            .await
            .expect("send");
        assert_eq!(
            header(&probe, "access-control-allow-origin"),
            None,
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_request_log_names_the_user_and_recording_of_browser_decrypts() {
    let p = Playback::start().await;
    let (_, wrapped) = p.wrapped(false);
    let grant = p.grant(&p.claims(&wrapped, None));
    // A header anyone can send does not name the user of a browser decrypt.
    let body = json!({ "grant": grant, "keypairId": p.keypair_id(), "body": B64.encode(&wrapped) });
    let sent = |body: Value| {
        p.lkm
            .request(Method::POST, BROWSER_DECRYPT)
            .header("PureCloud-User-Id", "spoofed")
            .json(&body)
            .send()
    };
    assert_eq!(sent(body.clone()).await.expect("send").status(), 200);
    assert_eq!(sent(body).await.expect("send").status(), 401);
    let expired = Claims {
        iat: now_secs() - 120,
        exp: now_secs() - 60,
        ..p.claims(&wrapped, None)
    };
    let answer = p.decrypt(&p.grant(&expired), &wrapped, None).await;
    assert_eq!(answer.status(), 401);
    let stranger = Claims {
        iss: "nobody-at-all".into(),
        ..p.claims(&wrapped, None)
    };
    let answer = p.decrypt(&p.grant(&stranger), &wrapped, None).await;
    assert_eq!(answer.status(), 401);

    let raw = p.lkm.admin_log_json().await;
    let log: Vec<RequestLogEntry> = serde_json::from_value(raw.clone()).expect("entries");
    let seen: Vec<_> = log
        .iter()
        .take(4)
        .map(|e| {
            (
                e.path.as_str(),
                e.status,
                e.credential_id.as_deref(),
                e.user_id.as_deref(),
                e.recording_id.as_deref(),
            )
        })
        .collect();
    let b = BROWSER_DECRYPT;
    assert_eq!(
        seen,
        [
            (b, 401, None, None, None),
            (b, 401, Some(ISSUER), Some("agent-42"), Some("rec-7")),
            (b, 401, Some(ISSUER), Some("agent-42"), Some("rec-7")),
            (b, 200, Some(ISSUER), Some("agent-42"), Some("rec-7")),
        ],
        "newest first: unknown issuer, expired, replayed, decrypted"
    );
    assert!(
        log[..4]
            .iter()
            .all(|e| e.keypair_id.as_deref() == Some(p.keypair_id()))
    );
    let registration = log
        .iter()
        .find(|e| e.path == GRANT_ISSUER)
        .expect("the registration is logged");
    assert_eq!(
        (
            registration.method.as_str(),
            registration.status,
            registration.credential_id.as_deref()
        ),
        ("PUT", 200, Some(ISSUER))
    );
    for (entry, shown) in log.iter().zip(raw.as_array().expect("array")) {
        assert_eq!(
            shown.get("recordingId").is_some(),
            entry.path == BROWSER_DECRYPT && entry.user_id.is_some(),
            "{shown}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn registering_a_grant_key_needs_hawk_and_a_32_byte_key() {
    let lkm = Lkm::start().await;
    let creds = lkm.credentials("platform-1").await;
    let key = json!({ "publicKey": B64.encode([7u8; 32]) });
    let anonymous = lkm
        .request(Method::PUT, GRANT_ISSUER)
        .json(&key)
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(anonymous, 401).await, "unauthorized");
    let admin = lkm
        .admin(Method::PUT, GRANT_ISSUER)
        .json(&key)
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(admin, 401).await, "unauthorized");
    let none_yet = read_issuer(&lkm, &creds).await;
    assert_eq!(error_code(none_yet, 404).await, "not_found");
    for bad in [
        json!({ "publicKey": B64.encode([7u8; 31]) }),
        json!({ "publicKey": B64.encode([7u8; 33]) }),
        json!({ "publicKey": "***" }),
        json!({ "key": B64.encode([7u8; 32]) }),
    ] {
        let answer = lkm
            .signed(&creds, Method::PUT, GRANT_ISSUER)
            .json(&bad)
            .send()
            .await
            .expect("send");
        assert_eq!(error_code(answer, 400).await, "bad_request", "{bad}");
    }
    let none_still = read_issuer(&lkm, &creds).await;
    assert_eq!(error_code(none_still, 404).await, "not_found");
    let registered = register(&lkm, &creds, &[7u8; 32]).await;
    assert_eq!(registered.status(), 200);
    let wrong_method = lkm
        .signed(&creds, Method::DELETE, GRANT_ISSUER)
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(wrong_method, 405).await, "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_is_served_on_loopback_only() {
    let dir = tempfile::tempdir().expect("dir");
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let config = Config {
            data_dir: dir.path().join("lkm"),
            listen: listen.parse().expect("addr"),
            tls: TlsMode::Off,
            ..Config::default()
        };
        let error = tapeseal_lkm::bind(&config).await.expect_err(listen);
        assert!(error.to_string().contains("loopback"), "{error}");
    }
    assert!(!dir.path().join("lkm").exists(), "refused before any file");

    // The demo: plain HTTP on 127.0.0.1, the page's origin allowed.
    let p = Playback::start_config(|config| {
        config.tls = TlsMode::Off;
        config.allowed_origins = vec![ORIGIN.into()];
    })
    .await;
    assert!(p.lkm.url.starts_with("http://127.0.0.1:"), "{}", p.lkm.url);
    assert_eq!(p.lkm.fingerprint, None);
    assert!(!DataDir::new(&p.lkm.data).cert_path().exists());
    let health = p
        .lkm
        .request(Method::GET, HEALTH)
        .send()
        .await
        .expect("send");
    assert_eq!(health.status(), 200);
    // The server's client talks to it over http:// (loopback only), with Hawk.
    let registered = p
        .client()
        .register_grant_issuer(p.signer.public_key())
        .await
        .expect("register")
        .expect("supported");
    assert_eq!(registered.key_id, p.signer.key_id());
    let (dek, wrapped) = p.wrapped(true);
    let grant = p.grant(&p.claims(&wrapped, Some("RSA-OAEP-256")));
    let answer = p.decrypt(&grant, &wrapped, Some(ORIGIN)).await;
    assert_eq!(header(&answer, "access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(dek_of(answer).await, dek);
}
