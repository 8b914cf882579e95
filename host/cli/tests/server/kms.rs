//! AWS KMS mode end to end: the real `tapeseal serve` against moto's KMS on
//! loopback (IAM enforced). An organisation names its KMS key, ingests and plays
//! back; revoked access gives a clear error that names the key and the fix, and
//! restored access plays again without a restart; a KMS key change followed by the
//! revocation of the old key leaves every recording playable; switching back to
//! managed keys seals new recordings there while the old ones keep playing.

use serde_json::{Value, json};

use crate::support::{Server, audit_actions, expect_error, expect_json, fixture, noise};
use tapeseal_testkit::{Account, AwsUser, Moto};

fn kms_request(key_id: &str, user: &AwsUser) -> Value {
    json!({
        "key_id": key_id,
        "access_key_id": user.access_key_id,
        "secret_access_key": user.secret_access_key,
    })
}

#[test]
fn a_kms_organisation_plays_back_survives_revocation_and_a_key_change_and_switches_modes() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (dir, data, acme) = fixture();
    let moto = runtime.block_on(Moto::start(dir.path()));
    let (key_a, user_a, key_b, user_b) = runtime.block_on(async {
        let key_a = moto.create_key(Account::A).await;
        let alias = moto.create_alias(Account::A, "alias/acme", &key_a).await;
        let user_a = moto.user(Account::A, "tapeseal").await;
        let key_b = moto.create_key(Account::B).await;
        let user_b = moto.user(Account::B, "tapeseal").await;
        ((key_a, alias), user_a, key_b, user_b)
    });
    let (key_a, alias_a) = key_a;
    let server = Server::start(
        &data,
        &format!(
            // Neither private KEKs nor playback DEKs are cached: each request
            // shows what KMS answers now.
            "[kms]\nendpoint_url = \"{}\"\nregion = \"{}\"\ncache_ttl_secs = 0\n\
             [playback]\ndek_cache_secs = 0\n",
            moto.endpoint(),
            Moto::REGION
        ),
    );
    let api = server.api();

    let view = expect_json(
        api.put_json(&acme.admin, "/v1/kms", &kms_request(&alias_a, &user_a)),
        200,
    );
    assert_eq!(view["key_mode"], "aws-kms");
    assert_eq!(view["key_arn"], key_a.as_str());
    assert_eq!(view["credentials"], "organisation");
    assert_eq!(view["keks"], 1);
    assert!(!view.to_string().contains(&user_a.secret_access_key));
    let kek = view["created_kek"].as_str().expect("a KEK").to_string();

    let body = noise(200_000, 7);
    let recording = api.ingest(&acme.recorder, "call", "audio/wav", &body);
    assert_eq!(recording["kek_id"], kek.as_str());
    let id = recording["id"].as_str().expect("id").to_string();
    assert_eq!(api.content(&acme.player, &id), body);
    let keks = expect_json(api.get(&acme.admin, "/v1/keks"), 200);
    assert_eq!(keks[0]["mode"], "aws-kms");

    // Revoked: playback fails with what to fix, nothing is lost; restored: plays.
    runtime.block_on(moto.revoke(&user_a));
    let message = expect_error(
        api.get(&acme.player, &format!("/v1/recordings/{id}/content")),
        502,
        "key_service_failed",
    );
    for needle in [
        key_a.as_str(),
        acme.id.as_str(),
        "AccessDenied",
        "kms:Decrypt",
    ] {
        assert!(message.contains(needle), "{needle} in: {message}");
    }
    runtime.block_on(moto.restore(&user_a));
    assert_eq!(api.content(&acme.player, &id), body, "no restart needed");

    // KMS key change to a key in another account, then the old one is revoked.
    let changed = expect_json(
        api.put_json(&acme.admin, "/v1/kms", &kms_request(&key_b, &user_b)),
        200,
    );
    assert_eq!(changed["rekeyed"], 1);
    assert_eq!(changed["key_arn"], key_b.as_str());
    runtime.block_on(moto.revoke(&user_a));
    assert_eq!(
        api.content(&acme.player, &id),
        body,
        "plays under the new key"
    );
    let second = api.ingest(&acme.recorder, "email", "message/rfc822", b"hello");
    assert_eq!(second["kek_id"], kek.as_str(), "same KEK, new KMS key");

    // Back to managed keys: new recordings there, old ones still play via KMS.
    let switched = expect_json(
        api.put_json(&acme.admin, "/v1/key-mode", &json!({"mode": "managed"})),
        200,
    );
    assert_eq!(switched["key_mode"], "managed");
    assert_eq!(switched["current"]["mode"], "managed");
    let managed = api.ingest(&acme.recorder, "chat", "application/json", b"{}");
    assert_ne!(managed["kek_id"], kek.as_str());
    assert_eq!(api.content(&acme.player, &id), body);
    // And into KMS again: its newest KEK there is current once more.
    let again = expect_json(
        api.put_json(&acme.admin, "/v1/key-mode", &json!({"mode": "aws-kms"})),
        200,
    );
    assert_eq!(again["current"]["id"], kek.as_str());
    expect_error(
        api.put_json(&acme.admin, "/v1/key-mode", &json!({"mode": "lkm"})),
        409,
        "conflict",
    );

    let actions = audit_actions(&api, &acme.admin);
    for action in ["kms.configure", "kms.key_change", "org.key_mode"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    assert!(!server.log().contains(&user_b.secret_access_key));
}
