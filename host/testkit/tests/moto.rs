//! Proves what the AWS KMS tests rely on moto for: encryption contexts bind, a
//! revoked user is refused and a restored one is not, accounts do not share keys,
//! and aliases resolve. One moto serves every check (it takes seconds to start).

#![allow(clippy::panic)]

use std::path::PathBuf;

use aws_sdk_kms::primitives::Blob;
use tapeseal_testkit::{Account, AwsUser, Moto, is_access_denied};

fn log_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("moto")
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_enforces_what_the_kms_tests_rely_on() {
    let moto = Moto::start(&log_dir()).await;
    let key = moto.create_key(Account::A).await;
    assert!(
        key.starts_with("arn:aws:kms:us-east-1:123456789012:key/"),
        "{key}"
    );
    let alice = moto.user(Account::A, "alice").await;
    assert!(!format!("{alice:?}").contains(&alice.secret_access_key));
    let kms = moto.kms(&alice);

    // Encrypt and Decrypt with an encryption context.
    let sealed = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"data key".to_vec()))
        .encryption_context("recording", "r-1")
        .send()
        .await
        .expect("alice encrypts");
    let blob = sealed.ciphertext_blob().expect("a ciphertext").clone();
    let opened = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("recording", "r-1")
        .send()
        .await
        .expect("alice decrypts");
    assert_eq!(opened.plaintext().map(Blob::as_ref), Some(&b"data key"[..]));
    assert_eq!(opened.key_id(), Some(key.as_str()));

    // Another context does not open it.
    let err = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("recording", "r-2")
        .send()
        .await
        .expect_err("another context must not decrypt");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_invalid_ciphertext_exception()),
        "{err:?}"
    );

    // A wrong secret is refused: moto checks the SigV4 signature.
    let forger = AwsUser {
        secret_access_key: "not-the-secret".into(),
        ..alice.clone()
    };
    let err = moto
        .kms(&forger)
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("recording", "r-1")
        .send()
        .await
        .expect_err("a wrong secret must be refused");
    assert!(is_access_denied(&err), "{err:?}");

    // Revoked: refused; restored: allowed again.
    moto.revoke(&alice).await;
    let err = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("recording", "r-1")
        .send()
        .await
        .expect_err("a revoked user must not decrypt");
    // moto refuses with HTTP 403 and an XML body, which the SDK cannot parse.
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert!(is_access_denied(&err), "{err:?}");
    moto.restore(&alice).await;
    kms.decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("recording", "r-1")
        .send()
        .await
        .expect("a restored user decrypts");

    // Account B's user cannot use account A's key, even with every KMS permission.
    let bob = moto.user(Account::B, "bob").await;
    let other = moto.kms(&bob);
    let err = other
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .expect_err("account B must not use account A's key");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_not_found_exception()),
        "{err:?}"
    );
    let err = other
        .decrypt()
        .ciphertext_blob(blob)
        .encryption_context("recording", "r-1")
        .send()
        .await
        .expect_err("account B must not decrypt account A's ciphertext");
    // Here moto answers 400 AccessDeniedException, as AWS does.
    assert_eq!(
        aws_sdk_kms::error::ProvideErrorMetadata::code(&err),
        Some("AccessDeniedException"),
        "{err:?}"
    );
    assert!(is_access_denied(&err));

    // An alias ARN works as a KeyId, and Encrypt names the key it resolved to.
    let alias = moto.create_alias(Account::A, "recordings", &key).await;
    assert_eq!(alias, "arn:aws:kms:us-east-1:123456789012:alias/recordings");
    let sealed = kms
        .encrypt()
        .key_id(&alias)
        .plaintext(Blob::new(b"data key".to_vec()))
        .send()
        .await
        .expect("alice encrypts through the alias");
    assert_eq!(sealed.key_id(), Some(key.as_str()));
    let b_key = moto.create_key(Account::B).await;
    assert!(
        b_key.starts_with("arn:aws:kms:us-east-1:222222222222:key/"),
        "{b_key}"
    );
}
