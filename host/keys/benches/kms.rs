//! DEK unwrap latency in AWS KMS mode against moto's KMS on loopback (started by
//! `tapeseal-testkit`; `cargo xtask bench` installs it): with the cache of decrypted
//! private KEKs off (every unwrap is a KMS `Decrypt`, the PKCS#8 parse and the RSA
//! unwrap) and on (the RSA unwrap alone), next to managed mode (master-key unseal,
//! parse, RSA unwrap). Figures go in docs/BENCHMARKS.md.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use zeroize::Zeroizing;

use tapeseal_core::{Dek, WrapAlgorithm};
use tapeseal_keys::kms::{CachePolicy, KmsConfig, KmsRequest};
use tapeseal_keys::{KeyService, KeyServices, MasterKey, Purpose, StanzaRef, UnwrapContext};
use tapeseal_store::catalogue::Catalogue;
use tapeseal_testkit::{Account, Moto};

/// One organisation in KMS mode (or managed, `kms = None`) and a DEK wrapped for
/// its current KEK.
struct Case {
    keys: KeyServices,
    org: String,
    kek: String,
    wrapped: Vec<u8>,
}

fn case(
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    moto: &Moto,
    kms: Option<CachePolicy>,
) -> Case {
    runtime.block_on(async {
        let catalogue =
            Arc::new(Catalogue::open(&dir.join("catalogue.sqlite3")).expect("catalogue"));
        let master =
            Arc::new(MasterKey::load_or_create(&dir.join("master.key"), true).expect("master"));
        let config = KmsConfig {
            endpoint_url: Some(moto.endpoint().to_string()),
            region: Some(Moto::REGION.to_string()),
            timeout: Duration::from_secs(5),
            cache: kms.unwrap_or(CachePolicy::OFF),
        };
        let keys = KeyServices::with_kms(catalogue.clone(), master, config);
        let org = catalogue.create_org("Acme", "bench").expect("org").id;
        if kms.is_some() {
            let key = moto.create_key(Account::A).await;
            let user = moto.user(Account::A, &format!("bench-{}", org)).await;
            let request = KmsRequest {
                key_id: key,
                region: None,
                access_key: Some((
                    user.access_key_id.clone(),
                    Zeroizing::new(user.secret_access_key.clone()),
                )),
            };
            keys.kms()
                .configure(&org, &request, "bench")
                .await
                .expect("configure");
        }
        let current = keys.current(&org, "bench").await.expect("current");
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let dek = Dek::generate(&mut rng);
        let wrapped = current
            .public_key
            .wrap(&dek, WrapAlgorithm::RsaOaepSha256, &mut rng)
            .expect("wrap");
        Case {
            keys,
            org,
            kek: current.id,
            wrapped,
        }
    })
}

fn unwrap(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = runtime.block_on(Moto::start(dir.path()));
    let cases = [
        ("aws-kms/cache-off", Some(CachePolicy::OFF)),
        ("aws-kms/cache-on", Some(CachePolicy::default())),
        ("managed", None),
    ];
    let mut group = c.benchmark_group("unwrap_dek_by_key_mode");
    for (i, (name, kms)) in cases.into_iter().enumerate() {
        let place = dir.path().join(i.to_string());
        std::fs::create_dir_all(&place).expect("dir");
        let case = case(&runtime, &place, &moto, kms);
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let context = UnwrapContext {
                        org_id: &case.org,
                        actor: "bench",
                        purpose: Purpose::Playback,
                        recording_id: "rec-bench",
                    };
                    let stanza = StanzaRef {
                        kek_id: &case.kek,
                        algorithm: WrapAlgorithm::RsaOaepSha256,
                        wrapped: &case.wrapped,
                    };
                    case.keys.unwrap(&context, &stanza).await.expect("unwrap")
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, unwrap);
criterion_main!(benches);
