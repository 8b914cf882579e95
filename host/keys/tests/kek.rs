//! KEK pairs in aws-lc-rs: generation, every import encoding, refusals, redaction,
//! and unwrapping what the core wrapped with both OAEP variants.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use tapeseal_core::{Dek, WrapAlgorithm};
use tapeseal_keys::{KekPair, KeyError};

fn vector_private(id: &str) -> String {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../tests/vectors/keys/{id}.private.pem"));
    std::fs::read_to_string(path).expect("vector key")
}

#[test]
fn generated_pairs_wrap_and_unwrap_with_both_oaep_variants() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    for bits in [3072, 4096] {
        let pair = KekPair::generate(bits).expect("generate");
        assert_eq!(pair.bits(), bits);
        let public = pair.public_key().expect("public");
        assert_eq!(public.bits(), bits);
        for algorithm in [WrapAlgorithm::RsaOaepSha256, WrapAlgorithm::RsaOaepSha1] {
            let dek = Dek::generate(&mut rng);
            let wrapped = public.wrap(&dek, algorithm, &mut rng).expect("wrap");
            assert_eq!(
                pair.unwrap(&wrapped, algorithm).expect("unwrap").as_bytes(),
                dek.as_bytes()
            );
            let other = match algorithm {
                WrapAlgorithm::RsaOaepSha1 => WrapAlgorithm::RsaOaepSha256,
                _ => WrapAlgorithm::RsaOaepSha1,
            };
            assert!(matches!(
                pair.unwrap(&wrapped, other),
                Err(KeyError::Unwrap)
            ));
        }
        // The exported private key reads back as the same pair.
        let again = KekPair::from_pem_or_der(pair.private_pkcs8_pem().expect("pem").as_bytes())
            .expect("re-import");
        assert_eq!(
            again.public_spki_der().expect("spki"),
            pair.public_spki_der().expect("spki")
        );
        assert_eq!(again.fingerprint(), pair.fingerprint());
        assert!(pair.fingerprint().starts_with("kek-") && pair.fingerprint().len() == 20);
    }
    assert!(matches!(KekPair::generate(2048), Err(KeyError::Size(2048))));
}

#[test]
fn existing_pairs_import_from_pkcs8_and_pkcs1_in_pem_and_der() {
    let reference = rsa::PrivateKey::from_pkcs8_pem(&vector_private("kek-a")).expect("rsa");
    let encodings: Vec<Vec<u8>> = vec![
        reference
            .to_pkcs8_pem(LineEnding::LF)
            .expect("pem")
            .as_bytes()
            .to_vec(),
        reference.to_pkcs8_der().expect("der").as_bytes().to_vec(),
        reference
            .to_pkcs1_pem(LineEnding::CRLF)
            .expect("pem")
            .as_bytes()
            .to_vec(),
        reference.to_pkcs1_der().expect("der").as_bytes().to_vec(),
    ];
    let pairs: Vec<KekPair> = encodings
        .iter()
        .map(|e| KekPair::from_pem_or_der(e).expect("imports"))
        .collect();
    let spki = pairs[0].public_spki_der().expect("spki");
    for pair in &pairs {
        assert_eq!(pair.public_spki_der().expect("spki"), spki);
    }
    // A stanza from the shared vectors unwraps to the vector's DEK.
    let vector: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/vectors/two-stanzas.json"),
        )
        .expect("vector"),
    )
    .expect("json");
    let envelope = base64_decode(vector["envelope"].as_str().expect("envelope"));
    let header = tapeseal_core::Header::parse(&envelope).expect("header");
    let stanza = &header.stanzas()[0];
    assert_eq!(stanza.kek_id, "kek-a");
    let dek = pairs[2]
        .unwrap(&stanza.wrapped_dek, stanza.algorithm)
        .expect("unwrap");
    assert_eq!(
        dek.as_bytes().to_vec(),
        base64_decode(vector["dek"].as_str().expect("dek"))
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

#[test]
fn unusable_keys_are_refused_with_a_reason() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let small = rsa::PrivateKey::new(&mut rng, 2048).expect("keygen");
    let pem = small.to_pkcs8_pem(LineEnding::LF).expect("pem");
    assert!(matches!(
        KekPair::from_pem_or_der(pem.as_bytes()),
        Err(KeyError::Size(2048))
    ));
    let encrypted =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let err = KekPair::from_pem_or_der(encrypted.as_bytes()).expect_err("refused");
    assert!(err.to_string().contains("password"), "{err}");
    let public = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    let err = KekPair::from_pem_or_der(public.as_bytes()).expect_err("refused");
    assert!(err.to_string().contains("PUBLIC KEY"), "{err}");
    assert!(KekPair::from_pem_or_der(b"\x30\x03\x02\x01\x00").is_err());
    assert!(KekPair::from_pem_or_der(b"").is_err());
}

#[test]
fn private_keys_never_print() {
    let pair = KekPair::generate(3072).expect("generate");
    let debug = format!("{pair:?}");
    let pem = pair.private_pkcs8_pem().expect("pem");
    let body: String = pem
        .lines()
        .nth(1)
        .expect("a base64 line")
        .chars()
        .take(40)
        .collect();
    assert!(!debug.contains(&body), "{debug}");
    assert!(
        debug.contains("3072") && debug.contains(&pair.fingerprint()),
        "{debug}"
    );
}
