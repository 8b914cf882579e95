//! DEK unwrap latency with an RSA-3072 KEK: aws-lc-rs against the pure-Rust `rsa`
//! crate. `cargo bench -p tapeseal-keys` (or `cargo xtask bench`); figures go in
//! docs/BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use rsa::Oaep;
use rsa::pkcs8::DecodePrivateKey;
use tapeseal_core::{Dek, KekPublicKey, WrapAlgorithm as CoreWrap};
use tapeseal_keys::KekPair;

const PUBLIC: &str = include_str!("../../../tests/vectors/keys/kek-a.public.pem");
const PRIVATE: &str = include_str!("../../../tests/vectors/keys/kek-a.private.pem");

fn unwrap(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let pair = KekPair::from_pem_or_der(PRIVATE.as_bytes()).expect("pair");
    let reference = rsa::PrivateKey::from_pkcs8_pem(PRIVATE).expect("rsa");
    let kek = KekPublicKey::from_pem(PUBLIC).expect("kek");
    let dek = Dek::generate(&mut rng);
    let mut group = c.benchmark_group("unwrap_dek_rsa3072");
    for (name, algorithm) in [
        ("oaep-sha256", CoreWrap::RsaOaepSha256),
        ("oaep-sha1", CoreWrap::RsaOaepSha1),
    ] {
        let wrapped = kek.wrap(&dek, algorithm, &mut rng).expect("wrap");
        group.bench_function(format!("aws-lc-rs/{name}"), |b| {
            b.iter(|| pair.unwrap(black_box(&wrapped), algorithm).expect("unwrap"))
        });
        group.bench_function(format!("rsa-crate/{name}"), |b| {
            b.iter(|| {
                match algorithm {
                    CoreWrap::RsaOaepSha1 => {
                        reference.decrypt(Oaep::<sha1::Sha1>::new(), black_box(&wrapped))
                    }
                    _ => reference.decrypt(Oaep::<sha2::Sha256>::new(), black_box(&wrapped)),
                }
                .expect("unwrap")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, unwrap);
criterion_main!(benches);
