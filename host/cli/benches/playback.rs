//! Playback starts a second: the real `tapeseal serve` (bench profile) on a loopback
//! port, loaded by `wrk` (Debian's package) with authenticated
//! `Range: bytes=0-65535` requests, each on a recording the load has not asked for
//! before (so every request unwraps a DEK with the KEK, opens the first chunk in the
//! guest and makes its audit entry durable), then the same on one recording (a
//! player seeking: the playback's DEK is reused).
//!
//! `cargo bench -p tapeseal --bench playback` (part of `cargo xtask bench
//! --compare`). Prints requests a second and the latency percentiles wrk reports.
//! `TAPESEAL_BENCH_RECORDINGS` sets how many recordings are ingested (default 12000:
//! more than the load gets through, so none is asked for twice).

mod common;

const CONNECTIONS: &str = "16";
const SECONDS: &str = "10s";
const RECORDING_BYTES: usize = 96 << 10;

fn main() {
    if !common::wrk_bench_selected("playback") {
        return;
    }
    let recordings = common::bench_recordings();
    let (server, tokens) = common::start("[limits]\nguest_operations_per_org = 64\n");
    let ids = common::ingest(
        &[&server.url],
        &tokens.recorder,
        recordings,
        RECORDING_BYTES,
    );
    let client = reqwest::blocking::Client::new();

    let distinct = wrk(&server, &tokens.player, &ids, "distinct recordings");
    let one = wrk(
        &server,
        &tokens.player,
        &ids[..1],
        "one recording (a player seeking)",
    );
    let metrics = client
        .get(format!("{}/metrics", server.url))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or("?")
            .trim()
            .to_string()
    };
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    println!("{distinct}{one}");
    println!(
        "server: {} unwraps, {} playback DEK cache hits, {} audit commits for {} decrypts; peak RSS {rss_kib}",
        value("tapeseal_unwraps_total"),
        value("tapeseal_playback_dek_cache_hits_total"),
        value("tapeseal_audit_commits_total"),
        value("tapeseal_opens_total"),
    );
}

/// Runs wrk over `ids` in turn; its summary, with the requests a second and the
/// latency percentiles.
fn wrk(server: &common::Server, token: &str, ids: &[String], what: &str) -> String {
    let path = server.dir.path().join("load.lua");
    std::fs::write(&path, common::playback_script(token, ids, 2)).expect("script");
    let connections: usize = CONNECTIONS.parse().unwrap_or(16);
    let text = common::wrk(&server.url, &path, 2, connections, SECONDS);
    format!("== playback starts, {what}: wrk -t 2 -c {CONNECTIONS} -d {SECONDS}\n{text}\n")
}
