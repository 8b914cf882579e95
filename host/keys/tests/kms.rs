//! AWS KMS key mode against a real KMS API: moto's server on loopback, with IAM
//! enforced, keys and aliases made through the AWS SDK, and tapeseal acting as an
//! IAM user whose policy is deleted to revoke its access and put back to restore it.
// A test that meets the wrong outcome says which one it met.
#![allow(clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_kms::primitives::Blob;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use zeroize::Zeroizing;

use tapeseal_core::{Dek, WrapAlgorithm};
use tapeseal_keys::kms::{CachePolicy, KmsConfig, KmsRequest};
use tapeseal_keys::{
    KekPair, KeyService, KeyServiceError, KeyServices, MasterKey, Purpose, StanzaRef, UnwrapContext,
};
use tapeseal_store::catalogue::{AuditFilter, Catalogue, KekHolder};
use tapeseal_testkit::{Account, AwsUser, Moto};

struct Setup {
    _dir: tempfile::TempDir,
    catalogue: Arc<Catalogue>,
    master: Arc<MasterKey>,
    keys: KeyServices,
    org: String,
}

fn config(moto: &Moto, cache: CachePolicy) -> KmsConfig {
    KmsConfig {
        endpoint_url: Some(moto.endpoint().to_string()),
        region: Some(Moto::REGION.to_string()),
        timeout: Duration::from_secs(5),
        cache,
    }
}

fn setup(moto: &Moto, cache: CachePolicy) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalogue =
        Arc::new(Catalogue::open(&dir.path().join("catalogue.sqlite3")).expect("catalogue"));
    let master =
        Arc::new(MasterKey::load_or_create(&dir.path().join("master.key"), true).expect("master"));
    let keys = KeyServices::with_kms(catalogue.clone(), master.clone(), config(moto, cache));
    let org = catalogue.create_org("Acme", "test").expect("org").id;
    Setup {
        _dir: dir,
        catalogue,
        master,
        keys,
        org,
    }
}

fn request(key_id: &str, user: &AwsUser) -> KmsRequest {
    KmsRequest {
        key_id: key_id.to_string(),
        region: None,
        access_key: Some((
            user.access_key_id.clone(),
            Zeroizing::new(user.secret_access_key.clone()),
        )),
    }
}

/// An organisation in KMS mode with a key of account A, reached as the IAM user
/// `tapeseal` of that account: (the setup, the key ARN, the user).
async fn kms_org(moto: &Moto, cache: CachePolicy) -> (Setup, String, AwsUser) {
    let key = moto.create_key(Account::A).await;
    let user = moto.user(Account::A, "tapeseal").await;
    let s = setup(moto, cache);
    s.keys
        .kms()
        .configure(&s.org, &request(&key, &user), "admin")
        .await
        .expect("configure");
    (s, key, user)
}

/// The KMS key the organisation's settings name.
fn kept_key_arn(s: &Setup) -> String {
    let settings = s.keys.kms().settings(&s.org).expect("settings");
    settings.expect("KMS settings").key_arn
}

/// Points the organisation at `key_id`, which KMS must refuse; returns why.
async fn refused_configure(s: &Setup, key_id: &str, user: &AwsUser) -> String {
    let result = s
        .keys
        .kms()
        .configure(&s.org, &request(key_id, user), "admin")
        .await;
    let Err(KeyServiceError::Failed(message)) = result else {
        panic!("KMS should have refused {key_id}: {result:?}");
    };
    message
}

/// A DEK wrapped for the organisation's current KEK: (kek id, DEK, wrapped).
async fn sealed_dek(setup: &Setup, seed: u64) -> (String, Dek, Vec<u8>) {
    let kek = setup
        .keys
        .current(&setup.org, "test")
        .await
        .expect("current");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let dek = Dek::generate(&mut rng);
    let wrapped = kek
        .public_key
        .wrap(&dek, WrapAlgorithm::RsaOaepSha256, &mut rng)
        .expect("wrap");
    (kek.id, dek, wrapped)
}

async fn unwrap(setup: &Setup, kek_id: &str, wrapped: &[u8]) -> Result<Dek, KeyServiceError> {
    unwrap_with(&setup.keys, &setup.org, kek_id, wrapped).await
}

async fn unwrap_with(
    keys: &KeyServices,
    org_id: &str,
    kek_id: &str,
    wrapped: &[u8],
) -> Result<Dek, KeyServiceError> {
    let context = UnwrapContext {
        org_id,
        actor: "test",
        purpose: Purpose::Playback,
        recording_id: "rec-1",
    };
    let stanza = StanzaRef {
        kek_id,
        algorithm: WrapAlgorithm::RsaOaepSha256,
        wrapped,
    };
    keys.unwrap(&context, &stanza).await
}

fn failure(result: Result<Dek, KeyServiceError>) -> String {
    match result {
        Ok(_) => panic!("the unwrap should have failed"),
        Err(KeyServiceError::Failed(message)) => message,
        Err(other) => panic!("expected a key-service failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_mode_keeps_private_keks_only_as_kms_ciphertext_under_the_org_context() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(dir.path()).await;
    let key = moto.create_key(Account::A).await;
    let alias = moto
        .create_alias(Account::A, "alias/acme-recordings", &key)
        .await;
    let user = moto.user(Account::A, "tapeseal").await;
    let s = setup(&moto, CachePolicy::OFF);

    // The organisation names its key by alias ARN; tapeseal records the key ARN.
    let done = s
        .keys
        .kms()
        .configure(&s.org, &request(&alias, &user), "admin")
        .await
        .expect("configure");
    assert_eq!(done.settings.key_arn, key);
    assert_eq!(done.rekeyed, 0);
    let kek_id = done.created_kek.expect("a KEK under KMS is created");
    assert_eq!(
        s.catalogue.find_org(&s.org).expect("org").key_mode,
        "aws-kms"
    );
    let current = s.keys.current(&s.org, "test").await.expect("current");
    assert_eq!(current.id, kek_id);

    // The stored private key is KMS ciphertext: it decrypts (with the SDK, as the
    // key's owner) only under this organisation's and this KEK's context.
    let record = s.catalogue.kek(&s.org, &kek_id).expect("row").expect("kek");
    assert_eq!(record.holder(), KekHolder::Kms);
    assert_eq!(record.kms_key_arn.as_deref(), Some(key.as_str()));
    let blob = record.sealed_private.clone().expect("ciphertext");
    let admin = moto.admin_kms(Account::A);
    let decrypt = |org: &str, kek: &str| {
        admin
            .decrypt()
            .ciphertext_blob(Blob::new(blob.clone()))
            .encryption_context("tapeseal:org", org)
            .encryption_context("tapeseal:kek", kek)
            .send()
    };
    let plain = decrypt(&s.org, &kek_id)
        .await
        .expect("decrypts with the context");
    let pair = KekPair::from_pem_or_der(plain.plaintext().expect("plaintext").as_ref())
        .expect("a PKCS#8 private key");
    assert_eq!(pair.public_spki_der().expect("spki"), record.public_spki);
    let other = s.catalogue.create_org("Other", "test").expect("org").id;
    assert!(
        decrypt(&other, &kek_id).await.is_err(),
        "another org's context"
    );
    assert!(
        decrypt(&s.org, "kek-other").await.is_err(),
        "another KEK's context"
    );
    assert!(
        s.master
            .open_secret("tapeseal managed kek v1", &s.org, &kek_id, &blob)
            .is_err(),
        "the master key plays no part"
    );

    // Each unwrap (the cache is off here) asks KMS.
    let (kek, dek, wrapped) = sealed_dek(&s, 1).await;
    assert_eq!(kek, kek_id);
    let before = s.keys.kms().stats().decrypts.load(Ordering::Relaxed);
    for _ in 0..2 {
        let got = unwrap(&s, &kek, &wrapped).await.expect("unwrap");
        assert_eq!(got.as_bytes(), dek.as_bytes());
    }
    assert_eq!(
        s.keys.kms().stats().decrypts.load(Ordering::Relaxed),
        before + 2
    );

    // A row moved to another KEK id does not decrypt: the context binds it.
    let rotated = s.keys.rotate(&s.org, "admin").await.expect("rotate");
    assert_ne!(rotated.id, kek_id);
    // The schedule rotates as in managed mode, under the same KMS key.
    s.catalogue
        .set_schedule(&s.org, tapeseal_store::schedule::Period::Daily, "admin")
        .expect("schedule");
    let created = s
        .catalogue
        .kek(&s.org, &rotated.id)
        .expect("row")
        .expect("kek")
        .created_at;
    assert!(
        s.keys
            .rotate_if_due(&s.org, created + 1)
            .await
            .expect("check")
            .is_none()
    );
    let due = s
        .keys
        .rotate_if_due(&s.org, created + 86_400_000)
        .await
        .expect("check")
        .expect("rotated when due");
    let scheduled = s.catalogue.kek(&s.org, &due.id).expect("row").expect("kek");
    assert_eq!(scheduled.holder(), KekHolder::Kms);
    assert_eq!(scheduled.kms_key_arn.as_deref(), Some(key.as_str()));
    assert_eq!(
        s.keys.current(&s.org, "test").await.expect("current").id,
        due.id
    );
    let db = rusqlite::Connection::open(s._dir.path().join("catalogue.sqlite3")).expect("db");
    db.execute(
        "UPDATE keks SET sealed_private = ?1 WHERE id = ?2",
        rusqlite::params![blob, rotated.id],
    )
    .expect("tamper");
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let dek2 = Dek::generate(&mut rng);
    let wrapped2 = rotated
        .public_key
        .wrap(&dek2, WrapAlgorithm::RsaOaepSha256, &mut rng)
        .expect("wrap");
    let message = failure(unwrap(&s, &rotated.id, &wrapped2).await);
    assert!(message.contains("InvalidCiphertextException"), "{message}");
    assert!(
        message.contains(&s.org) && message.contains(&key),
        "{message}"
    );

    // Bad settings are refused before anything is asked of KMS, and nothing
    // changes.
    for bad in ["", "alias/has space", "alias/bell\u{7}"] {
        let result = s
            .keys
            .kms()
            .configure(&s.org, &request(bad, &user), "admin")
            .await;
        assert!(
            matches!(result, Err(KeyServiceError::Invalid(_))),
            "{bad:?}: {result:?}"
        );
    }
    let unknown = format!(
        "arn:aws:kms:{}:123456789012:key/00000000-0000-0000-0000-000000000000",
        Moto::REGION
    );
    let message = refused_configure(&s, &unknown, &user).await;
    assert!(message.contains("NotFoundException"), "{message}");
    assert_eq!(kept_key_arn(&s), key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_access_fails_cleanly_and_restored_access_recovers_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(dir.path()).await;
    let (s, key, user) = kms_org(&moto, CachePolicy::OFF).await;
    let (kek, dek, wrapped) = sealed_dek(&s, 3).await;
    let stored = s.catalogue.kek(&s.org, &kek).expect("row").expect("kek");

    moto.revoke(&user).await;
    let message = failure(unwrap(&s, &kek, &wrapped).await);
    for needle in [
        s.org.as_str(),
        key.as_str(),
        "Decrypt",
        "AccessDenied",
        "grant",
    ] {
        assert!(message.contains(needle), "{needle} in: {message}");
    }
    // Rotation needs KMS Encrypt: refused the same way, and no KEK is added.
    let before = s.catalogue.list_keks(&s.org).expect("keks").len();
    assert!(matches!(
        s.keys.rotate(&s.org, "admin").await,
        Err(KeyServiceError::Failed(_))
    ));
    assert_eq!(s.catalogue.list_keks(&s.org).expect("keks").len(), before);
    assert_eq!(
        s.catalogue.kek(&s.org, &kek).expect("row").expect("kek"),
        stored,
        "nothing stored changes"
    );

    moto.restore(&user).await;
    let got = unwrap(&s, &kek, &wrapped).await.expect("works again");
    assert_eq!(got.as_bytes(), dek.as_bytes());

    // KMS unreachable: a service of the same catalogue pointed at a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let unreachable = KeyServices::with_kms(
        s.catalogue.clone(),
        s.master.clone(),
        KmsConfig {
            endpoint_url: Some(url),
            ..config(&moto, CachePolicy::OFF)
        },
    );
    match unwrap_with(&unreachable, &s.org, &kek, &wrapped).await {
        Err(KeyServiceError::Unavailable(message)) => {
            assert!(
                message.contains("cannot reach KMS") && message.contains(&s.org),
                "{message}"
            );
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_spares_kms_calls_within_its_ttl_and_revocation_bites_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(dir.path()).await;
    let ttl = Duration::from_millis(1500);
    let (s, _, user) = kms_org(&moto, CachePolicy { ttl, entries: 8 }).await;
    let (kek, dek, wrapped) = sealed_dek(&s, 4).await;
    let stats = s.keys.kms().stats();
    let decrypts = stats.decrypts.load(Ordering::Relaxed);
    for _ in 0..5 {
        unwrap(&s, &kek, &wrapped).await.expect("unwrap");
    }
    assert_eq!(
        stats.decrypts.load(Ordering::Relaxed),
        decrypts + 1,
        "one KMS call"
    );
    assert_eq!(stats.cache_hits.load(Ordering::Relaxed), 4);
    assert_eq!(s.keys.kms().cached_keys(), 1);

    // Within the TTL a revoked key still unwraps from memory (the stated bound);
    // after it, KMS is asked and refuses, and the expired key is gone.
    moto.revoke(&user).await;
    let got = unwrap(&s, &kek, &wrapped).await.expect("cached");
    assert_eq!(got.as_bytes(), dek.as_bytes());
    // The sweeper drops the expired key while nobody asks for it.
    let deadline = std::time::Instant::now() + ttl + Duration::from_secs(10);
    while s.keys.kms().cached_keys() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired key stays"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    failure(unwrap(&s, &kek, &wrapped).await);
    moto.restore(&user).await;
    unwrap(&s, &kek, &wrapped).await.expect("works again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_key_change_moves_every_kek_and_the_old_key_is_no_longer_needed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(dir.path()).await;
    let old_key = moto.create_key(Account::A).await;
    let old_user = moto.user(Account::A, "tapeseal").await;
    let new_key = moto.create_key(Account::B).await;
    let new_user = moto.user(Account::B, "tapeseal").await;
    let s = setup(&moto, CachePolicy::OFF);
    s.keys
        .kms()
        .configure(&s.org, &request(&old_key, &old_user), "admin")
        .await
        .expect("configure");
    let mut sealed = vec![sealed_dek(&s, 10).await];
    for seed in 11..13 {
        s.keys.rotate(&s.org, "admin").await.expect("rotate");
        sealed.push(sealed_dek(&s, seed).await);
    }
    let before = s.catalogue.kms_keks(&s.org).expect("keks");
    assert_eq!(before.len(), 3);

    // A change that cannot read the old key changes nothing.
    moto.revoke(&old_user).await;
    let message = refused_configure(&s, &new_key, &new_user).await;
    assert!(
        message.contains(&old_key) && message.contains("AccessDenied"),
        "{message}"
    );
    assert_eq!(s.catalogue.kms_keks(&s.org).expect("keks"), before);
    assert_eq!(kept_key_arn(&s), old_key);
    moto.restore(&old_user).await;

    let done = s
        .keys
        .kms()
        .configure(&s.org, &request(&new_key, &new_user), "admin")
        .await
        .expect("key change");
    assert_eq!(done.rekeyed, 3);
    assert_eq!(
        done.created_kek, None,
        "the KEKs stay; only their ciphertexts change"
    );
    let after = s.catalogue.kms_keks(&s.org).expect("keks");
    for (old, new) in before.iter().zip(&after) {
        assert_eq!((&old.id, &old.public_spki), (&new.id, &new.public_spki));
        assert_eq!(new.kms_key_arn.as_deref(), Some(new_key.as_str()));
        assert_ne!(old.sealed_private, new.sealed_private);
    }

    // Tapeseal's access to the old key (account A) is revoked: every DEK still
    // unwraps, through account B's key only.
    moto.revoke(&old_user).await;
    for (kek, dek, wrapped) in &sealed {
        let got = unwrap(&s, kek, wrapped)
            .await
            .expect("unwraps under the new key");
        assert_eq!(got.as_bytes(), dek.as_bytes());
    }
    let rotated = s
        .keys
        .rotate(&s.org, "admin")
        .await
        .expect("new KEKs use the new key");
    let record = s
        .catalogue
        .kek(&s.org, &rotated.id)
        .expect("row")
        .expect("kek");
    assert_eq!(record.kms_key_arn.as_deref(), Some(new_key.as_str()));
    let audit = s
        .catalogue
        .audit_log(&s.org, &AuditFilter::default())
        .expect("audit");
    let change = audit
        .iter()
        .find(|e| e.action == "kms.key_change")
        .expect("audited");
    assert!(change.detail.contains("3 KEK(s)") && change.detail.contains(&new_key));
}
