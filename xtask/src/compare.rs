//! `cargo xtask bench --compare`: one run that puts tapeseal's open paths beside
//! each other and beside the tools users compare it with, on the same machine and
//! the same sizes, and prints a table of times and ratios (also written to
//! `target/compare/compare.md`).
//!
//! - the native core and the wasmtime guest (criterion, 60 MB streamed in 1 MiB
//!   pieces), the guest both with the host's AES-256-GCM (the chunk-aead import)
//!   and with its own software AES-GCM (a `soft-aead` build of the guest);
//! - the npm package in Node and in headless Chromium, pure wasm and WebCrypto
//!   (`crates/wasm/js/bench`, 60 MB in 64 KiB chunks);
//! - the `tapeseal open` CLI as a whole process, on 60 MB, 200 MB (with its peak
//!   memory) and 1 KB;
//! - `age -d` and `gpg --decrypt` (Debian's packages) on the same plaintexts;
//! - `openssl speed -evp aes-256-gcm`, the machine's raw AES-GCM speed;
//! - ingest of a 16 MiB recording into the server over loopback HTTP
//!   (`benches/server.rs` of the `tapeseal` package);
//! - playback starts a second on the server under `wrk` (`benches/playback.rs` of
//!   the `tapeseal` package).
//!
//! Whole processes are run several times; the table shows the median.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::ci::{Res, run_in};

const MB: u64 = 1_000_000;
/// Times each whole-process command runs on large files; the median is reported.
const RUNS: usize = 5;
/// The same on 1 KB, where a run takes milliseconds and varies more.
const RUNS_SMALL: usize = 21;

/// One line of the table.
struct Row {
    what: String,
    bytes: u64,
    seconds: f64,
    note: String,
}

pub(crate) fn run(root: &Path, bench_args: &[&str]) -> Res<()> {
    install_tools(root)?;
    let dir = root.join("target/compare");
    fs::create_dir_all(&dir)?;
    // The release build of everything the benchmarks use, the CLI among them.
    crate::ci::cargo_env(root, &[bench_args, &["--no-run"]].concat(), &[])?;
    // Every benchmark binary, with a filter only the engine's matches: a
    // `--bench` selection would build with other features and rebuild.
    let soft_guest = build_soft_guest(root)?;
    crate::ci::cargo_env(
        root,
        &[bench_args, &["--", "60MB_streaming|server/ingest 16 MiB"]].concat(),
        &[("TAPESEAL_SOFT_GUEST", &path(&soft_guest))],
    )?;
    let mut rows = criterion_rows(root)?;
    rows.push(ingest_row(root)?);
    rows.extend(npm_rows(&crate::npm::bench_lines(root)?)?);

    // The CLI as `cargo build --release` makes it: the bench profile's build with
    // its debug info (which only the profiler reads) stripped, the same code.
    let cli = dir.join("tapeseal");
    run_in(
        root,
        "objcopy",
        &[
            "--strip-debug",
            &path(&root.join("target/release/tapeseal")),
            &path(&cli),
        ],
        &[],
    )?;
    let keys = root.join("tests/vectors/keys");
    let age_key = dir.join("age.key");
    if !age_key.exists() {
        run_in(&dir, "age-keygen", &["-o", &path(&age_key)], &[])?;
    }
    let age_recipient = String::from_utf8(
        Command::new("age-keygen")
            .args(["-y", &path(&age_key)])
            .output()?
            .stdout,
    )?
    .trim()
    .to_string();
    let gnupg = gpg_home(&dir)?;

    for (label, size) in [("1 KB", 1_000u64), ("60 MB", 60 * MB), ("200 MB", 200 * MB)] {
        let plain = dir.join(format!("plain-{size}"));
        if fs::metadata(&plain).map(|m| m.len()).ok() != Some(size) {
            write_random(&plain, size)?;
        }
        let sealed = dir.join(format!("plain-{size}.tapeseal"));
        let aged = dir.join(format!("plain-{size}.age"));
        let gpged = dir.join(format!("plain-{size}.gpg"));
        let out = dir.join("out");
        run_in(
            &dir,
            &path(&cli),
            &[
                "seal",
                "--kek",
                &path(&keys.join("kek-a.public.pem")),
                "--in",
                &path(&plain),
                "--out",
                &path(&sealed),
            ],
            &[],
        )?;
        run_in(
            &dir,
            "age",
            &["-r", &age_recipient, "-o", &path(&aged), &path(&plain)],
            &[],
        )?;
        let _ = fs::remove_file(&gpged);
        run_in(
            &dir,
            "gpg",
            &[
                "--homedir",
                &path(&gnupg),
                "--batch",
                "--yes",
                "--trust-model",
                "always",
                "--no-auto-key-locate",
                "--compress-algo",
                "none",
                "-r",
                "bench@tapeseal.invalid",
                "-o",
                &path(&gpged),
                "-e",
                &path(&plain),
            ],
            &[],
        )?;
        let tapeseal_open = vec![
            path(&cli),
            "open".into(),
            "--key".into(),
            path(&keys.join("kek-a.private.pem")),
            "--in".into(),
            path(&sealed),
            "--out".into(),
            path(&out),
        ];
        let age_open = vec![
            "age".into(),
            "-d".into(),
            "-i".into(),
            path(&age_key),
            "-o".into(),
            path(&out),
            path(&aged),
        ];
        let gpg_open = vec![
            "gpg".into(),
            "--homedir".into(),
            path(&gnupg),
            "--batch".into(),
            "--yes".into(),
            "-q".into(),
            "-o".into(),
            path(&out),
            "--decrypt".into(),
            path(&gpged),
        ];
        for (tool, command) in [
            ("tapeseal open (CLI)", tapeseal_open),
            ("age -d", age_open),
            ("gpg --decrypt", gpg_open),
        ] {
            let runs = if size < MB { RUNS_SMALL } else { RUNS };
            let (seconds, peak_kib) = time_command(&dir, &command, &out, size, runs)?;
            rows.push(Row {
                what: format!("{tool}, {label}"),
                bytes: size,
                seconds,
                note: format!(
                    "whole process, median of {runs}; peak RSS {} MiB",
                    peak_kib / 1024
                ),
            });
        }
    }
    rows.push(openssl_row(&dir)?);
    let mut table = render(&rows);
    // Playback starts a second against the server, under wrk.
    let playback = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(bench_args)
        .args(["--", "playback"])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()?;
    if !playback.status.success() {
        return Err("the playback benchmark failed".into());
    }
    // Only what the playback benchmark printed, not the other targets' test
    // harness lines.
    let printed = String::from_utf8_lossy(&playback.stdout);
    let report: Vec<&str> = printed
        .lines()
        .skip_while(|l| !l.starts_with("== playback"))
        .scan(false, |ended, l| {
            let keep = !*ended;
            *ended = l.starts_with("server:");
            keep.then_some(l)
        })
        .collect();
    table.push_str("\n```\n");
    table.push_str(report.join("\n").trim());
    table.push_str("\n```\n");
    println!("\n{table}");
    fs::write(dir.join("compare.md"), &table)?;
    println!("(written to {})", dir.join("compare.md").display());
    Ok(())
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn install_tools(root: &Path) -> Res<()> {
    let missing: Vec<&str> = [
        ("age", "age"),
        ("gpg", "gnupg"),
        ("openssl", "openssl"),
        ("/usr/bin/time", "time"),
        ("wrk", "wrk"),
        ("objcopy", "binutils"),
    ]
    .into_iter()
    .filter(|(bin, _)| {
        Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
    })
    .map(|(_, package)| package)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        crate::npm::apt_install(root, &missing)
    }
}

/// A throwaway GnuPG home with one RSA-3072 key without a passphrase.
fn gpg_home(dir: &Path) -> Res<PathBuf> {
    let home = dir.join("gnupg");
    if home.join("pubring.kbx").exists() {
        return Ok(home);
    }
    fs::create_dir_all(&home)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700))?;
    }
    run_in(
        dir,
        "gpg",
        &[
            "--homedir",
            &path(&home),
            "--batch",
            "--passphrase",
            "",
            "--quick-generate-key",
            "bench@tapeseal.invalid",
            // GnuPG 2.2's default: RSA-3072 with an RSA-3072 encryption subkey.
            "default",
            "default",
            "never",
        ],
        &[],
    )?;
    Ok(home)
}

fn write_random(file: &Path, size: u64) -> Res<()> {
    let mut rng = ChaCha20Rng::seed_from_u64(size);
    let mut data = vec![0u8; usize::try_from(size)?];
    rng.fill_bytes(&mut data);
    fs::write(file, data)?;
    Ok(())
}

/// Runs `command` `runs` times under GNU time; the median wall time and the
/// largest peak RSS (KiB). Checks the output has the plaintext's size.
fn time_command(
    dir: &Path,
    command: &[String],
    out: &Path,
    size: u64,
    runs: usize,
) -> Res<(f64, u64)> {
    let mut times = Vec::with_capacity(runs);
    let mut peak = 0;
    for _ in 0..runs {
        let _ = fs::remove_file(out);
        let report = dir.join("time.txt");
        let started = Instant::now();
        let status = Command::new("/usr/bin/time")
            .args(["-f", "%M", "-o", &path(&report)])
            .args(command)
            .current_dir(dir)
            .stdout(Stdio::null())
            .status()?;
        let elapsed = started.elapsed().as_secs_f64();
        if !status.success() {
            return Err(format!("`{}` failed: {status}", command.join(" ")).into());
        }
        let written = fs::metadata(out)?.len();
        if written != size {
            return Err(
                format!("`{}` wrote {written} bytes, not {size}", command.join(" ")).into(),
            );
        }
        let kib: u64 = fs::read_to_string(&report)?
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        peak = peak.max(kib);
        times.push(elapsed);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[runs / 2], peak))
}

/// The guest with the `soft-aead` feature: the core's software AES-GCM compiled
/// to wasm instead of the host's chunk-aead import, for the rows that show what the
/// import is worth. Its own target directory, as the engine's build script uses.
fn build_soft_guest(root: &Path) -> Res<PathBuf> {
    let target = root.join("target/guest-soft-aead");
    crate::ci::cargo(
        root,
        &[
            "build",
            "--package",
            "tapeseal-guest",
            "--features",
            "soft-aead",
            "--target",
            "wasm32-wasip2",
            "--release",
            "--locked",
            "--target-dir",
            &path(&target),
        ],
    )?;
    Ok(target.join("wasm32-wasip2/release/tapeseal_guest.wasm"))
}

/// The npm package's rows from what its benchmark printed
/// (`  node open (one-shot, pure wasm): 512 ms, 117 MB/s`).
fn npm_rows(lines: &[String]) -> Res<Vec<Row>> {
    let mut rows = Vec::new();
    for line in lines {
        let line = line.trim();
        let Some((runtime, rest)) = line.split_once(' ') else {
            continue;
        };
        let runtime = match runtime {
            "node" => "Node",
            "chromium" => "Chromium",
            _ => continue,
        };
        let Some((name, figures)) = rest.rsplit_once(": ") else {
            continue;
        };
        let ms: f64 = figures
            .split(" ms")
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("cannot read the npm benchmark's line: {line}"))?;
        let op = if name.starts_with("seal") {
            "seal"
        } else {
            "open"
        };
        rows.push(Row {
            what: format!("{op}: npm package in {runtime}, {name}"),
            bytes: 60 * MB,
            seconds: ms / 1000.0,
            note: "in process, median of 5, 64 KiB chunks".into(),
        });
    }
    if rows.is_empty() {
        return Err("the npm benchmark printed no figures".into());
    }
    Ok(rows)
}

/// Ingest of a 16 MiB recording over loopback HTTP into the real server
/// (`benches/server.rs`): upload, seal in the guest, fsync, catalogue row.
fn ingest_row(root: &Path) -> Res<Row> {
    Ok(Row {
        what: "ingest: tapeseal serve, POST over loopback HTTP".into(),
        bytes: 16 << 20,
        seconds: criterion_median(&root.join("target/criterion/server/ingest 16 MiB"))?,
        note: "whole request, criterion median; sealed, fsynced and catalogued".into(),
    })
}

fn criterion_median(bench: &Path) -> Res<f64> {
    let estimates = bench.join("new/estimates.json");
    let text =
        fs::read_to_string(&estimates).map_err(|e| format!("{}: {e}", estimates.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    let nanos = json["median"]["point_estimate"]
        .as_f64()
        .ok_or("no median in criterion's estimates")?;
    Ok(nanos / 1e9)
}

/// Criterion's median for the native core and the wasmtime guest, with the host's
/// AES-GCM and with the guest's own.
fn criterion_rows(root: &Path) -> Res<Vec<Row>> {
    let group = root.join("target/criterion/60MB_streaming_1MiB_pieces");
    let mut rows = Vec::new();
    for (id, what) in [
        ("open_native", "open: native core (RustCrypto AES-GCM)"),
        ("open_wasmtime", "open: wasmtime guest, host AES-GCM"),
        (
            "open_wasmtime_soft_aes",
            "open: wasmtime guest, AES-GCM in wasm (soft-aead build)",
        ),
        ("seal_native", "seal: native core (RustCrypto AES-GCM)"),
        ("seal_wasmtime", "seal: wasmtime guest, host AES-GCM"),
        (
            "seal_wasmtime_soft_aes",
            "seal: wasmtime guest, AES-GCM in wasm (soft-aead build)",
        ),
    ] {
        rows.push(Row {
            what: what.into(),
            bytes: 60 * MB,
            seconds: criterion_median(&group.join(id))?,
            note: "in process, criterion median, 1 MiB pieces".into(),
        });
    }
    Ok(rows)
}

/// `openssl speed -evp aes-256-gcm`: bytes per second on 16 KiB blocks.
fn openssl_row(dir: &Path) -> Res<Row> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "2", "-evp", "aes-256-gcm"])
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The last line: "AES-256-GCM  <16B>k <64B>k <256B>k <1KiB>k <8KiB>k <16KiB>k".
    let kilobytes_per_s: f64 = text
        .lines()
        .rev()
        .find(|l| l.to_ascii_lowercase().starts_with("aes-256-gcm"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.trim_end_matches('k').parse().ok())
        .ok_or_else(|| format!("cannot read openssl speed's output:\n{text}"))?;
    let bytes_per_s = kilobytes_per_s * 1000.0;
    Ok(Row {
        what: "openssl speed -evp aes-256-gcm (16 KiB blocks)".into(),
        bytes: 60 * MB,
        seconds: 60.0 * MB as f64 / bytes_per_s,
        note: "raw AES-GCM, no format; time for 60 MB at its rate".into(),
    })
}

/// The row a row is compared with: the native core for the in-process rows (open
/// with open, seal with seal), `age -d` on the same size for whole processes.
fn reference<'a>(rows: &'a [Row], row: &Row) -> Option<&'a Row> {
    if let Some(op) = row
        .what
        .strip_prefix("open:")
        .map(|_| "open: native")
        .or_else(|| row.what.strip_prefix("seal:").map(|_| "seal: native"))
    {
        return rows.iter().find(|r| r.what.starts_with(op));
    }
    let size = row.what.rsplit(", ").next()?;
    rows.iter().find(|r| r.what == format!("age -d, {size}"))
}

fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "| what | size | time | MB/s | speed ÷ reference | how |\n|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let rate = row.bytes as f64 / MB as f64 / row.seconds;
        let ratio = reference(rows, row).map_or("-".to_string(), |r| {
            format!("{:.2}", r.seconds / row.seconds)
        });
        let size = if row.bytes % MB == 0 {
            format!("{} MB", row.bytes / MB)
        } else if row.bytes >= MB {
            format!("{:.1} MB", row.bytes as f64 / MB as f64)
        } else {
            format!("{} B", row.bytes)
        };
        let time = if row.seconds < 1.0 {
            format!("{:.1} ms", row.seconds * 1000.0)
        } else {
            format!("{:.2} s", row.seconds)
        };
        out.push_str(&format!(
            "| {} | {size} | {time} | {rate:.0} | {ratio} | {} |\n",
            row.what, row.note
        ));
    }
    out.push_str(
        "\nReference: the native core's open (or seal) for in-process rows; `age -d` on the same size for whole processes. Above 1: faster than the reference.\n",
    );
    out
}
