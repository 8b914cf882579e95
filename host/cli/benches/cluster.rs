//! One, two and three instances sharing one PostgreSQL catalogue (a throwaway
//! cluster on loopback, Debian's server) and one recording repository: playback
//! starts a second on distinct recordings, and 1 MiB ingests a second, with the load
//! spread evenly over the instances (as a load balancer without stickiness would).
//!
//! The repository is a directory the instances share (as a network file system
//! would be): moto, the S3 the tests use, is one Python process and would measure
//! itself, not tapeseal. Everything, wrk included, shares this machine's cores, so
//! more instances cannot mean more cores: the figures show what the shared catalogue
//! costs, not how far a real deployment scales.
//!
//! `cargo bench -p tapeseal --bench cluster`. `TAPESEAL_BENCH_RECORDINGS` sets how
//! many recordings each run ingests before the playback load (default 12000).

mod common;

use tapeseal_store::catalogue::Catalogue;
use tapeseal_testkit::Postgres;

const CONNECTIONS: usize = 16;
const SECONDS: &str = "10s";
const RECORDING_BYTES: usize = 96 << 10;
/// Any 32 bytes, the same for every instance (they share the storage key sealed
/// under it).
const MASTER_KEY: &str = "YmVuY2gtY2x1c3Rlci1tYXN0ZXIta2V5LTMyLWJ5dGU=";

fn main() {
    if !common::wrk_bench_selected("cluster") {
        return;
    }
    let recordings = common::bench_recordings();
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let mut rows = Vec::new();
    for instances in 1..=3usize {
        let url = postgres.create_database(&format!("instances_{instances}"));
        let tokens = common::tokens(&Catalogue::open_location(&url, None).expect("catalogue"));
        let shared = dir.path().join(format!("recordings-{instances}"));
        let config = format!(
            "catalogue = \"{url}\"\n[master_key]\nenv = \"TAPESEAL_MASTER_KEY\"\n\
             [repository]\npath = \"{}\"\n[limits]\nguest_operations_per_org = 64\n",
            shared.display()
        );
        let servers: Vec<common::Server> = (0..instances)
            .map(|_| {
                common::spawn(
                    tempfile::tempdir().expect("tempdir"),
                    &config,
                    &[("TAPESEAL_MASTER_KEY", MASTER_KEY)],
                )
            })
            .collect();
        let urls: Vec<&str> = servers.iter().map(|s| s.url.as_str()).collect();
        let ids = common::ingest(&urls, &tokens.recorder, recordings, RECORDING_BYTES);
        let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();

        // Playback starts: each instance gets its share of the connections and of
        // the recordings, and all run at once.
        let share = ids.len() / instances;
        let playback = load(&servers, |n, server| {
            let script = server.dir.path().join("playback.lua");
            let ids = &ids[n * share..(n + 1) * share];
            std::fs::write(&script, common::playback_script(&tokens.player, ids, 1))
                .expect("script");
            script
        });
        // Ingest: 1 MiB uploads, sealed by the instance that takes them.
        let ingest = load(&servers, |_, server| {
            let script = server.dir.path().join("ingest.lua");
            std::fs::write(
                &script,
                format!(
                    "wrk.method = \"POST\"\nwrk.path = \"/v1/recordings?kind=call\"\n\
                     wrk.body = string.rep(\"r\", 1048576)\n\
                     wrk.headers[\"Authorization\"] = \"Bearer {}\"\n\
                     wrk.headers[\"Content-Type\"] = \"audio/wav\"\n",
                    tokens.recorder
                ),
            )
            .expect("script");
            script
        });
        let sum = |name: &str| -> f64 { urls.iter().map(|u| common::metric(u, name)).sum() };
        let retries = sum("tapeseal_catalogue_write_retries_total");
        let commits = sum("tapeseal_audit_commits_total");
        rows.push((instances, playback, ingest, retries, commits));
    }
    println!(
        "== instances sharing one PostgreSQL catalogue: wrk -c {CONNECTIONS} in all, {SECONDS} each"
    );
    println!(
        "| instances | playback starts/s (distinct recordings) | 1 MiB ingests/s | catalogue writes run again | audit group commits |"
    );
    println!("|---|---|---|---|---|");
    for (instances, playback, ingest, retries, commits) in rows {
        println!("| {instances} | {playback:.0} | {ingest:.1} | {retries:.0} | {commits:.0} |");
    }
}

/// Runs one wrk per instance at once, with the script `script` writes for it and
/// its share of the connections; the requests a second of them all.
fn load(
    servers: &[common::Server],
    script: impl Fn(usize, &common::Server) -> std::path::PathBuf,
) -> f64 {
    let per = (CONNECTIONS / servers.len()).max(1);
    let scripts: Vec<_> = servers
        .iter()
        .enumerate()
        .map(|(n, s)| script(n, s))
        .collect();
    std::thread::scope(|scope| {
        let runs: Vec<_> = servers
            .iter()
            .zip(&scripts)
            .map(|(server, script)| {
                scope.spawn(move || {
                    let report = common::wrk(&server.url, script, 1, per, SECONDS);
                    eprintln!("{}: {report}", server.url);
                    common::requests_per_sec(&report)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().expect("wrk")).sum()
    })
}
