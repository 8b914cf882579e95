//! The wasmtime path against the native core on the same 60 MB payload, and the cost
//! of compiling and instantiating the guest. `cargo bench -p tapeseal-engine` (or
//! `cargo xtask bench`); figures go in docs/BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use tapeseal_core::{Dek, KekPublicKey, MediaKind as CoreKind, Opener, Sealer};
use tapeseal_engine::{Limits, MediaKind, Recipient, Runtime, SealParams, WrapAlgorithm};

const PAYLOAD: usize = 60_000_000;
const PIECE: usize = 1 << 20;
const PUBLIC: &str = include_str!("../../../tests/vectors/keys/kek-a.public.pem");

fn payload() -> (Vec<u8>, Dek) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut plain = vec![0u8; PAYLOAD];
    rng.fill_bytes(&mut plain);
    (plain, Dek::generate(&mut rng))
}

/// The guest built with the `soft-aead` feature (software AES-GCM in wasm), which
/// `cargo xtask bench --compare` builds and names in this variable.
const SOFT_GUEST: &str = "TAPESEAL_SOFT_GUEST";

fn throughput(c: &mut Criterion) {
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    let soft = std::env::var_os(SOFT_GUEST).map(|path| {
        let wasm = std::fs::read(&path).expect("the soft-aead guest");
        // AES in wasm takes far more instructions a byte than the default budget,
        // set for the host's AES, allows.
        let limits = Limits {
            fuel_per_byte: 4_000,
            ..Limits::default()
        };
        Runtime::with_component(limits, &wasm).expect("soft-aead runtime")
    });
    let (plain, dek) = payload();
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let core_params = tapeseal_core::SealParams::new("org", "rec", CoreKind::Call, "audio/wav", 0);
    let core_recipients = [tapeseal_core::Recipient::new(
        "kek-a",
        KekPublicKey::from_pem(PUBLIC).expect("kek"),
    )];
    let params = SealParams {
        org_id: "org".into(),
        recording_id: "rec".into(),
        media_kind: MediaKind::Call,
        content_type: "audio/wav".into(),
        created_at_ms: 0,
        context: Vec::new(),
        chunk_size: 65_536,
    };
    let recipients = [Recipient {
        kek_id: "kek-a".into(),
        public_key: PUBLIC.as_bytes().to_vec(),
        algorithm: WrapAlgorithm::RsaOaepSha256,
    }];
    let envelope =
        tapeseal_core::seal(&mut rng, &dek, &core_params, &core_recipients, &plain).expect("seal");

    let mut group = c.benchmark_group("60MB_streaming_1MiB_pieces");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    group.bench_function("seal/native", |b| {
        b.iter(|| {
            let mut sealer: Sealer =
                Sealer::new(&mut rng, &dek, &core_params, &core_recipients).expect("sealer");
            let mut out = Vec::with_capacity(PIECE + 4096);
            let mut n = 0;
            for piece in plain.chunks(PIECE) {
                out.clear();
                sealer.push(piece, &mut out).expect("push");
                n += out.len();
            }
            out.clear();
            sealer.finish(&mut out).expect("finish");
            n + out.len()
        })
    });
    let guest_seal = |runtime: &Runtime| {
        let mut sealer = runtime.sealer(&dek, &params, &recipients).expect("sealer");
        let mut n = 0;
        for piece in plain.chunks(PIECE) {
            n += sealer.push(piece).expect("push").len();
        }
        n + sealer.finish().expect("finish").len()
    };
    group.bench_function("seal/wasmtime", |b| b.iter(|| guest_seal(&runtime)));
    if let Some(soft) = &soft {
        group.bench_function("seal/wasmtime_soft_aes", |b| b.iter(|| guest_seal(soft)));
    }
    group.bench_function("open/native", |b| {
        b.iter(|| {
            let mut opener: Opener = Opener::new(&dek);
            let mut out = Vec::with_capacity(PIECE + 65_536);
            let mut n = 0;
            for piece in envelope.chunks(PIECE) {
                out.clear();
                opener.push(piece, &mut out).expect("push");
                n += out.len();
            }
            out.clear();
            opener.finish(&mut out).expect("finish");
            n + out.len()
        })
    });
    let guest_open = |runtime: &Runtime| {
        let mut opener = runtime.opener(&dek).expect("opener");
        let mut n = 0;
        for piece in envelope.chunks(PIECE) {
            n += opener.push(piece).expect("push").len();
        }
        n + opener.finish().expect("finish").len()
    };
    group.bench_function("open/wasmtime", |b| b.iter(|| guest_open(&runtime)));
    if let Some(soft) = &soft {
        group.bench_function("open/wasmtime_soft_aes", |b| b.iter(|| guest_open(soft)));
    }
    group.finish();
}

fn guest_lifecycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("guest");
    group.sample_size(10);
    group.bench_function("compile_uncached", |b| {
        b.iter(|| Runtime::with_cache_dir(Limits::default(), None).expect("runtime"))
    });
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    group.bench_function("runtime_new_cached", |b| {
        b.iter(|| Runtime::new(Limits::default()).expect("runtime"))
    });
    group.sample_size(100);
    group.bench_function("instantiate", |b| {
        b.iter(|| runtime.instantiate().expect("instance"))
    });
    let prefix = &tapeseal_core::seal(
        &mut ChaCha20Rng::seed_from_u64(3),
        &Dek::from_bytes([7; 32]),
        &tapeseal_core::SealParams::new("o", "r", CoreKind::Other, "a/b", 0),
        &[tapeseal_core::Recipient::new(
            "k",
            KekPublicKey::from_pem(PUBLIC).expect("kek"),
        )],
        b"x",
    )
    .expect("seal")[..tapeseal_core::header::PREFIX_LEN];
    group.bench_function("instantiate_and_call", |b| {
        b.iter(|| runtime.header_length(black_box(prefix)).expect("call"))
    });
    group.finish();
}

criterion_group!(benches, throughput, guest_lifecycle);
criterion_main!(benches);
