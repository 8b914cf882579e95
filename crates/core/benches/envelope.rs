//! Seal and open of a 60 MB recording in 64 KiB chunks, and DEK wrap.
//! Run with `cargo bench -p tapeseal-core` (or `cargo xtask bench`); figures go in
//! docs/BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use tapeseal_core::{
    Dek, KekPublicKey, MediaKind, Opener, Recipient, SealParams, WrapAlgorithm, open, seal,
};

const PAYLOAD: usize = 60_000_000;

fn kek() -> KekPublicKey {
    KekPublicKey::from_pem(include_str!("../../../tests/vectors/keys/kek-a.public.pem"))
        .expect("test KEK")
}

fn envelope(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut plain = vec![0u8; PAYLOAD];
    rng.fill_bytes(&mut plain);
    let dek = Dek::generate(&mut rng);
    let params = SealParams::new("org", "rec", MediaKind::Call, "audio/wav", 0);
    let recipients = [Recipient::new("kek-a", kek())];
    let sealed = seal(&mut rng, &dek, &params, &recipients, &plain).expect("seal");

    let mut group = c.benchmark_group("60MB_64KiB_chunks");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    group.bench_function("seal", |b| {
        b.iter(|| seal(&mut rng, &dek, &params, &recipients, black_box(&plain)).expect("seal"))
    });
    group.bench_function("open", |b| {
        b.iter(|| open(black_box(&sealed), &dek).expect("open"))
    });
    group.bench_function("open_streaming_1MiB_pushes", |b| {
        let mut out = Vec::with_capacity(1 << 20);
        b.iter(|| {
            let mut opener: Opener = Opener::new(&dek);
            let mut total = 0;
            for piece in sealed.chunks(1 << 20) {
                out.clear();
                opener.push(piece, &mut out).expect("push");
                total += out.len();
            }
            out.clear();
            opener.finish(&mut out).expect("finish");
            total + out.len()
        })
    });
    group.finish();
}

fn wrap(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let key = kek();
    let dek = Dek::generate(&mut rng);
    let mut group = c.benchmark_group("wrap_dek_rsa3072");
    for alg in [WrapAlgorithm::RsaOaepSha256, WrapAlgorithm::RsaOaepSha1] {
        group.bench_function(alg.name(), |b| {
            b.iter(|| key.wrap(black_box(&dek), alg, &mut rng).expect("wrap"))
        });
    }
    group.finish();
}

criterion_group!(benches, envelope, wrap);
criterion_main!(benches);
