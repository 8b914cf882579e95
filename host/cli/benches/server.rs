//! The recording server over loopback HTTP: ingest (streamed, sealed in the guest
//! as it arrives), full playback, a 64 KiB range from the middle, and the latency of
//! a small ingest (dominated by the DEK wrap and the catalogue write). The real
//! `tapeseal serve` binary runs as a child process. `cargo bench -p tapeseal
//! --bench server`; figures go in docs/BENCHMARKS.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "common/mod.rs"]
mod common;

const LARGE: usize = 16 << 20;

fn server(c: &mut Criterion) {
    let (server, tokens) = common::start("");
    let (recorder, player) = (tokens.recorder, tokens.player);
    let client = reqwest::blocking::Client::new();
    let body: Vec<u8> = (0..LARGE).map(|i| (i * 31 % 251) as u8).collect();
    let ingest = |bytes: Vec<u8>| -> String {
        let response = client
            .post(format!("{}/v1/recordings?kind=call", server.url))
            .bearer_auth(&recorder)
            .header("Content-Type", "audio/wav")
            .body(bytes)
            .send()
            .expect("ingest");
        assert_eq!(response.status().as_u16(), 201);
        let meta: serde_json::Value = response.json().expect("json");
        meta["id"].as_str().expect("id").to_string()
    };

    let mut group = c.benchmark_group("server");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(LARGE as u64));
    group.bench_function("ingest 16 MiB", |b| b.iter(|| ingest(body.clone())));
    let id = ingest(body.clone());
    let content = format!("{}/v1/recordings/{id}/content", server.url);
    group.bench_function("play back 16 MiB", |b| {
        b.iter(|| {
            let bytes = client
                .get(&content)
                .bearer_auth(&player)
                .send()
                .expect("get")
                .bytes()
                .expect("body");
            assert_eq!(bytes.len(), LARGE);
        })
    });
    group.throughput(Throughput::Bytes(65_536));
    group.bench_function("range of 64 KiB from the middle", |b| {
        b.iter(|| {
            let bytes = client
                .get(&content)
                .bearer_auth(&player)
                .header("Range", "bytes=8000000-8065535")
                .send()
                .expect("get")
                .bytes()
                .expect("body");
            assert_eq!(bytes.len(), 65_536);
        })
    });
    group.finish();

    let mut group = c.benchmark_group("server latency");
    group.bench_function("ingest 4 KiB", |b| b.iter(|| ingest(body[..4096].to_vec())));
    group.finish();
}

criterion_group!(benches, server);
criterion_main!(benches);
