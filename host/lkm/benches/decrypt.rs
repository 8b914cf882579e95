//! One DEK unwrapped through a Local Key Manager, as the server does it: the
//! server's LKM client (`tapeseal_keys::lkm::Client`, Hawk over HTTPS, the
//! certificate pinned) against the reference LKM in the same process on 127.0.0.1.
//! Each decrypt is a Hawk MAC made and checked, a TLS request on a kept-alive
//! connection, RSA-3072 OAEP in aws-lc-rs, and a request-log entry that SQLite
//! commits with `synchronous = FULL`. `cargo bench -p tapeseal-lkm` (or `cargo xtask
//! bench`); figures go in docs/BENCHMARKS.md.

use std::time::Duration;

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tapeseal_keys::lkm::wire::DecryptType;
use tapeseal_keys::lkm::{Client, Endpoint, Trust};
use tapeseal_lkm::config::{Config, Limits, Rate};
use tapeseal_lkm::{DataDir, Keyring};
use zeroize::Zeroizing;

/// Concurrent decrypts in the throughput case: the server's per-organisation limit.
const CONCURRENT: usize = 16;

fn decrypt(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("lkm");
    let config = Config {
        data_dir: data.clone(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        limits: Limits {
            decrypt_rate: Rate {
                per_second: 1e9,
                burst: u32::MAX,
            },
            ..Limits::default()
        },
        ..Config::default()
    };
    let (url, fingerprint) = runtime.block_on(async {
        let bound = tapeseal_lkm::bind(&config).await.expect("bind");
        let found = (bound.url(), bound.fingerprint().expect("HTTPS").to_string());
        tokio::spawn(bound.serve(std::future::pending()));
        found
    });
    let keyring = Keyring::open(&DataDir::new(&data), false).expect("keyring");
    let issued = keyring
        .issue_credential("bench-platform")
        .expect("credentials");
    let pair = keyring.generate_keypair().expect("key pair");
    let pkcs1 = B64.decode(&pair.public_key).expect("base64");
    let spki = tapeseal_core::KekPublicKey::from_der(&pkcs1)
        .and_then(|k| k.to_spki_der())
        .expect("public key");
    let key = OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&spki).expect("spki"))
        .expect("oaep");
    let mut wrapped = vec![0u8; key.ciphertext_size()];
    let wrapped = key
        .encrypt(&OAEP_SHA256_MGF1SHA256, &[7u8; 32], &mut wrapped, None)
        .expect("wrap")
        .to_vec();
    let client = Client::new(&Endpoint {
        decrypt_url: format!("{url}/key-management/v1/decrypt"),
        hawk_id: issued.id.clone(),
        hawk_key: Zeroizing::new(issued.auth_key.clone()),
        trust: Trust::fingerprint(&fingerprint).expect("fingerprint"),
        timeout: Duration::from_secs(10),
    })
    .expect("client");
    let once = || async {
        let dek = client
            .decrypt(&pair.id, &wrapped, DecryptType::OaepSha256, "bench-user")
            .await
            .expect("decrypt");
        assert_eq!(dek.as_slice(), &[7u8; 32]);
    };

    let mut group = c.benchmark_group("lkm_decrypt_rsa3072");
    group.sample_size(30);
    group.bench_function("one DEK, sequential", |b| {
        b.iter(|| runtime.block_on(once()));
    });
    group.throughput(Throughput::Elements(CONCURRENT as u64));
    group.bench_function(format!("{CONCURRENT} DEKs, {CONCURRENT} at once"), |b| {
        b.iter(|| {
            runtime.block_on(async {
                futures::future::join_all((0..CONCURRENT).map(|_| once())).await;
            })
        });
    });
    group.finish();
}

criterion_group!(benches, decrypt);
criterion_main!(benches);
