//! The recording server over loopback HTTP: ingest (streamed, sealed in the guest
//! as it arrives), full playback, a 64 KiB range from the middle, and the latency of
//! a small ingest (dominated by the DEK wrap and the catalogue write). The real
//! `tapeseal serve` binary runs as a child process. `cargo bench -p tapeseal-host
//! --bench server`; figures go in docs/BENCHMARKS.md.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tapeseal_store::catalogue::{Catalogue, Role};

const LARGE: usize = 16 << 20;

struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> (Server, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    let catalogue = Catalogue::open(&data.join("catalogue.sqlite3")).expect("catalogue");
    catalogue.create_org("bench", "bench").expect("org");
    let recorder = catalogue
        .create_token("bench", Role::Recorder, "", "bench")
        .expect("token");
    let player = catalogue
        .create_token("bench", Role::Player, "", "bench")
        .expect("token");
    drop(catalogue);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tapeseal"))
        .arg("serve")
        .arg("--data")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .env("TAPESEAL_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next().expect("a line").expect("listening");
    std::thread::spawn(move || for _ in lines {});
    let url = line.trim_start_matches("listening on ").to_string();
    (
        Server {
            child,
            url,
            _dir: dir,
        },
        recorder.secret.to_string(),
        player.secret.to_string(),
    )
}

fn server(c: &mut Criterion) {
    let (server, recorder, player) = start();
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
