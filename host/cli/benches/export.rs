//! Bulk export throughput: the real `tapeseal serve` exports a few hundred
//! recordings (decrypted in the guest, unwrapped with the organisation's managed
//! KEK) to a directory (every file and its metadata fsynced), to a directory with
//! OpenPGP encryption, and to moto's S3 on loopback with SSE-S3. One iteration is one
//! whole export job, created through the API and polled until done. Recordings per
//! second are the count divided by the time; `cargo xtask bench` runs it with moto.

use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use tapeseal_testkit::{Account, Moto};

#[path = "common/mod.rs"]
mod common;

/// Recordings exported per job.
const COUNT: usize = 300;
/// Bytes per recording (about 16 s of 8 kHz 16-bit call audio).
const SIZE: usize = 256 << 10;

fn gpg_public_key(dir: &std::path::Path) -> String {
    let home = dir.join("gnupg");
    std::fs::create_dir_all(&home).expect("GNUPGHOME");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let gpg = |args: &[&str]| {
        let out = Command::new("gpg")
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .env("GNUPGHOME", &home)
            .output()
            .expect("gpg (Debian's gnupg)");
        assert!(out.status.success(), "gpg {args:?}");
        out.stdout
    };
    gpg(&[
        "--quick-gen-key",
        "Bench <bench@example.com>",
        "future-default",
        "default",
        "never",
    ]);
    let key = String::from_utf8(gpg(&["--export", "--armor", "bench@example.com"])).expect("armor");
    let _ = Command::new("gpgconf")
        .args(["--kill", "gpg-agent"])
        .env("GNUPGHOME", &home)
        .status();
    key
}

fn export(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let logs = tempfile::tempdir().expect("tempdir");
    let moto = runtime.block_on(Moto::start(logs.path()));
    runtime.block_on(moto.create_bucket(Account::A, "bench"));
    let admin = moto.admin(Account::A).clone();
    let (server, tokens) = common::start(&format!(
        "[export]\ns3_endpoint_url = \"{}\"\n",
        moto.endpoint()
    ));
    let client = reqwest::blocking::Client::new();
    for i in 0..COUNT {
        let body: Vec<u8> = (0..SIZE).map(|j| ((i * 7 + j * 31) % 251) as u8).collect();
        let response = client
            .post(format!(
                "{}/v1/recordings?kind=call&conversation_id=c{}",
                server.url,
                i % 50
            ))
            .bearer_auth(&tokens.recorder)
            .header("Content-Type", "audio/wav")
            .body(body)
            .send()
            .expect("ingest");
        assert_eq!(response.status().as_u16(), 201);
    }
    let public_key = gpg_public_key(server.dir.path());
    let run = |destination: Value, openpgp: bool, parallel: u32| {
        let mut request = json!({ "destination": destination, "parallel": parallel });
        if openpgp {
            request["openpgp_public_key"] = json!(public_key);
        }
        let job: Value = client
            .post(format!("{}/v1/jobs/export", server.url))
            .bearer_auth(&tokens.admin)
            .json(&request)
            .send()
            .expect("create")
            .json()
            .expect("job");
        let id = job["id"].as_str().expect("job id").to_string();
        loop {
            let job: Value = client
                .get(format!("{}/v1/jobs/{id}", server.url))
                .bearer_auth(&tokens.admin)
                .send()
                .expect("poll")
                .json()
                .expect("job");
            if job["state"] == "done" {
                assert_eq!(job["progress"]["exported"], COUNT);
                return;
            }
            assert!(
                matches!(job["state"].as_str(), Some("queued" | "running")),
                "export failed: {job}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };

    let mut group = c.benchmark_group(format!("export {COUNT} recordings of 256 KiB"));
    group.sample_size(10);
    group.throughput(Throughput::Bytes((COUNT * SIZE) as u64));
    let mut n = 0;
    let mut prefix = || {
        n += 1;
        format!("run-{n}")
    };
    for parallel in [4, 16] {
        group.bench_function(format!("to a directory, {parallel} at once"), |b| {
            b.iter(|| {
                run(
                    json!({ "type": "directory", "prefix": prefix() }),
                    false,
                    parallel,
                )
            })
        });
        group.bench_function(
            format!("to a directory, OpenPGP, {parallel} at once"),
            |b| {
                b.iter(|| {
                    run(
                        json!({ "type": "directory", "prefix": prefix() }),
                        true,
                        parallel,
                    )
                })
            },
        );
        group.bench_function(format!("to S3 (moto, SSE-S3), {parallel} at once"), |b| {
            b.iter(|| {
                run(
                    json!({
                        "type": "s3", "bucket": "bench", "prefix": prefix(),
                        "access_key_id": admin.access_key_id,
                        "secret_access_key": admin.secret_access_key,
                    }),
                    false,
                    parallel,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, export);
criterion_main!(benches);
