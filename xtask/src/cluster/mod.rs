//! `cargo xtask demo --cluster`: three `tapeseal serve` instances on 127.0.0.1
//! sharing one PostgreSQL catalogue and one S3 bucket (moto's), as instances behind
//! a load balancer would. It loads the sample recordings through the first instance
//! and plays them back through the third, prints where everything listens and the
//! tokens to use, and serves until Ctrl-C, then stops the instances, moto and
//! PostgreSQL (fast shutdown), in that order. Everything lives in
//! `target/demo-cluster/` and is kept between runs (`cargo xtask demo` wipes
//! `target/demo/` only): the catalogue, the bucket (moto keeps it in memory; see
//! [`crate::moto::Server`]), the master key every instance shares, and the
//! organisation `demo`, which gets fresh tokens each run. `--check` stops once the
//! samples played back.
//!
//! Ctrl-C: the terminal sends SIGINT to its whole foreground process group, which
//! would stop xtask and PostgreSQL at once, before the instances have finished.
//! xtask has no signal handler of its own (it has no unsafe code and no dependency
//! for it), so once the binaries are built it executes itself again with SIGINT
//! ignored (GNU `env --ignore-signal=INT`), starts PostgreSQL and moto in process
//! groups of their own, and learns of Ctrl-C from a `cat` that keeps the default
//! action. The instances stay in the foreground group: they start their graceful
//! shutdown at once, and xtask waits for them before it stops moto and PostgreSQL.
//! A run that ends otherwise (xtask killed, its terminal closed) leaves PostgreSQL
//! and moto running: the next run stops them (and any instance left) before it
//! starts its own.

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::ci::Res;
use crate::demo::{DemoOrg, capture, write_private};
use crate::loopback::http;

mod instance;
mod summary;

use instance::{Instance, Shared, log_tail};
use summary::{Summary, print_summary};

/// The bucket the instances keep recordings in.
const BUCKET: &str = "tapeseal-recordings";
/// The organisation the cluster demo makes (and finds again on later runs).
const ORG: &str = "demo";
/// How many `tapeseal serve` instances run.
const INSTANCES: u16 = 3;
/// The first instance asks for this port, the next ones for the ports after it
/// (`cargo xtask demo` takes 8750); each takes the next free one when it is taken.
const FIRST_PORT: u16 = 8751;
/// The port moto's S3 asks for first (PostgreSQL's is 8770).
const MOTO_PORT: u16 = 8780;
/// Ports tried from a preferred one on.
const PORTS_TRIED: u16 = 20;
/// The secret access key the instances give moto (which checks none).
const S3_SECRET: &str = "demo";
/// Set when xtask runs itself again with SIGINT ignored (see the module's doc).
const SUPERVISING: &str = "TAPESEAL_XTASK_CLUSTER_SUPERVISING";

pub(crate) fn run(root: &Path, check: bool) -> Res<()> {
    if std::env::var_os(SUPERVISING).is_some() {
        return supervise(root, check);
    }
    let mut command = supervisor(root, check, crate::demo::Binary::Build)?;
    // Replaces this process: the shell waits for it, Ctrl-C and all.
    let error = command.exec();
    Err(format!(
        "cannot run xtask again under `env --ignore-signal=INT` (GNU coreutils 8.31 or later): {error}"
    )
    .into())
}

/// `cargo xtask demo --cluster --check` as `cargo xtask ci` runs it: on the binary
/// the tests built, in a child process that this one waits for.
pub(crate) fn check(root: &Path) -> Res<()> {
    let status = supervisor(root, true, crate::demo::Binary::FromTests)?.status()?;
    if !status.success() {
        return Err(format!("the cluster demo check failed: {status}").into());
    }
    Ok(())
}

/// Builds the binary, finds moto and PostgreSQL, and makes the command that runs
/// this xtask again, with SIGINT ignored, as the cluster's supervisor.
fn supervisor(root: &Path, check: bool, binary: crate::demo::Binary) -> Res<Command> {
    crate::demo::build(root, binary)?;
    let (moto, pg_bindir) = crate::ci::step_value(
        "moto_server (the S3) and PostgreSQL's server programs (the catalogue)",
        || Ok((crate::moto::ensure(root)?, crate::postgres::install(root)?)),
    )?;
    let exe = std::env::current_exe()?;
    let mut command = Command::new("env");
    command
        .arg("--ignore-signal=INT")
        .arg(&exe)
        .args(["demo", "--cluster"])
        .args(check.then_some("--check"))
        .env(SUPERVISING, "1")
        .env("TAPESEAL_MOTO_SERVER", &moto)
        .env("TAPESEAL_PG_BINDIR", &pg_bindir)
        .current_dir(root);
    Ok(command)
}

/// The cluster, from xtask running with SIGINT ignored.
fn supervise(root: &Path, check: bool) -> Res<()> {
    let mut ctrl_c = CtrlC::watch()?;
    let bin = root.join("target/debug/tapeseal");
    let moto_program =
        PathBuf::from(std::env::var_os("TAPESEAL_MOTO_SERVER").ok_or("no moto_server given")?);
    let dir = root.join("target/demo-cluster");
    fs::create_dir_all(&dir)?;
    // What a run that was not stopped with Ctrl-C left (PostgreSQL's own leftover is
    // seen to as it starts).
    for n in 1..=INSTANCES {
        let home = dir.join(format!("instance-{n}"));
        let config = home.join("tapeseal.toml").display().to_string();
        stop_leftover(&home.join("tapeseal.pid"), &config, "TERM")?;
    }
    let moto_dir = dir.join("moto");
    let recorder = moto_dir.join("requests.jsonl").display().to_string();
    stop_leftover(&moto_dir.join("moto.pid"), &recorder, "TERM")?;

    let mut postgres = crate::postgres::Cluster::start(&dir.join("postgres"))?;
    let catalogue = postgres.url();
    ctrl_c.check()?;
    let (mut moto, replayed) = crate::moto::Server::start(&moto_program, &moto_dir, MOTO_PORT)?;
    fs::write(moto_dir.join("moto.pid"), format!("{}\n", moto.pid()))?;
    if replayed.requests > 0 || replayed.unreadable > 0 {
        let mut note = format!(
            "moto: the bucket restored from earlier runs ({} recorded requests replayed",
            replayed.requests
        );
        if replayed.refused > 0 {
            note += &format!(
                ", {} of them refused (as they may have been the first time)",
                replayed.refused
            );
        }
        if replayed.unreadable > 0 {
            note += &format!(", {} unreadable lines skipped", replayed.unreadable);
        }
        println!("{note})");
    }
    if moto.ensure_bucket(BUCKET)? {
        println!("moto: bucket {BUCKET} created");
    }
    println!(
        "moto: S3 at {} (log {})",
        moto.endpoint(),
        moto.log().display()
    );
    ctrl_c.check()?;

    let master_key = master_key(&dir.join("master.key"))?;
    let (org, created) = organisation(&bin, &catalogue)?;
    println!(
        "organisation {ORG}: {}, with new tokens",
        if created {
            "created"
        } else {
            "found (made by an earlier run)"
        }
    );
    let env_file = dir.join("tokens.env");
    let samples_dir = dir.join("samples");
    let listing = capture(
        &bin,
        &[
            "samples",
            "--out",
            samples_dir.to_str().ok_or("non-UTF-8 path")?,
        ],
    )?;
    let samples = crate::demo::read_samples(&listing, &samples_dir)?;

    let shared = Shared {
        catalogue: catalogue.clone(),
        s3_endpoint: moto.endpoint(),
        master_key,
    };
    let mut instances = Vec::new();
    let mut port = FIRST_PORT;
    for n in 1..=INSTANCES {
        let instance = Instance::start(&bin, &dir, n, port, &shared)?;
        port = instance.port()? + 1;
        instances.push(instance);
        ctrl_c.check()?;
    }
    let urls: String = instances
        .iter()
        .enumerate()
        .map(|(i, instance)| format!("export TAPESEAL_URL_{}={}\n", i + 1, instance.service.url))
        .collect();
    write_private(&env_file, &(org.env_lines() + &urls))?;

    let (first, last) = match instances.as_slice() {
        [first, .., last] => (first, last),
        _ => return Err("the cluster needs two instances at least".into()),
    };
    let earlier = check_earlier(&instances, &org)?;
    let heading = format!("played back through {}", last.name);
    let first_id = crate::demo::play_samples(
        &org,
        &samples,
        first.service.addr(),
        last.service.addr(),
        &heading,
    )?;
    ctrl_c.check()?;

    print_summary(&Summary {
        dir: &dir,
        instances: &instances,
        postgres: &postgres,
        moto: &moto,
        org: &org,
        env_file: &env_file,
        first_id: &first_id,
        earlier,
    });
    if check {
        stop(instances, moto, postgres)?;
        println!("\ncluster demo check passed; the instances, moto and PostgreSQL stopped cleanly");
        return Ok(());
    }
    println!("\nServing until Ctrl-C.");
    let outcome = serve_until_ctrl_c(&mut ctrl_c, &mut instances, &mut moto, &mut postgres);
    println!("\nstopping the instances, then moto, then PostgreSQL (fast shutdown)");
    let stopped = stop(instances, moto, postgres);
    outcome?;
    stopped?;
    println!(
        "stopped; the catalogue, the bucket and the master key stay in {} for the next run",
        dir.display()
    );
    Ok(())
}

/// Ctrl-C, seen by a child that keeps SIGINT's default action (xtask ignores it):
/// `cat` in the terminal's foreground process group, which Ctrl-C ends. It reads a
/// pipe that xtask never writes to, so it ends with xtask too, however that ends.
#[derive(Debug)]
struct CtrlC(Child);

impl CtrlC {
    fn watch() -> Res<Self> {
        let child = Command::new("env")
            .args(["--default-signal=INT", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Self(child))
    }

    fn pressed(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(Some(_)))
    }

    /// Fails once Ctrl-C was pressed (everything started is then stopped as it is
    /// dropped).
    fn check(&mut self) -> Res<()> {
        if self.pressed() {
            return Err("interrupted (Ctrl-C)".into());
        }
        Ok(())
    }
}

impl Drop for CtrlC {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The base64 of 32 random bytes in `path` (made with mode 0600 on the first run),
/// the master key every instance gets.
fn master_key(path: &Path) -> Res<String> {
    let engine = base64::engine::general_purpose::STANDARD;
    if let Ok(text) = fs::read_to_string(path) {
        let key = text.trim().to_string();
        if engine.decode(&key).map(|k| k.len()) != Ok(32) {
            return Err(format!(
                "{} is not the base64 of 32 bytes; it seals the catalogue's keys, so it is \
                 not replaced: restore it, or remove target/demo-cluster to start afresh",
                path.display()
            )
            .into());
        }
        return Ok(key);
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random source: {e}"))?;
    let key = engine.encode(bytes);
    write_private(path, &format!("{key}\n"))?;
    Ok(key)
}

/// The organisation [`ORG`] in the catalogue at `url`, made unless an earlier run
/// made it, with one new token per role; whether it was made now.
fn organisation(bin: &Path, url: &str) -> Res<(DemoOrg, bool)> {
    let catalogue = ["--catalogue", url];
    let orgs = capture(bin, &[&["org", "list"], &catalogue[..]].concat())?;
    // `<id>  <name>  keys: <mode>`
    let exists = orgs
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some(ORG));
    if !exists {
        capture(bin, &[&["org", "create"], &catalogue[..], &[ORG]].concat())?;
    }
    let org = DemoOrg::with_new_tokens(bin, &catalogue, ORG, "", "demo-cluster")?;
    Ok((org, !exists))
}

/// Recordings of earlier runs: how many, and how many of them play (their first
/// byte, each through the next instance in turn).
fn check_earlier(instances: &[Instance], org: &DemoOrg) -> Res<(usize, usize)> {
    let lister = instances.first().ok_or("no instance")?.service.addr();
    let mut ids = Vec::new();
    loop {
        let after = ids
            .last()
            .map(|id| format!("&after={id}"))
            .unwrap_or_default();
        let (status, body) = http(
            lister,
            "GET",
            &format!("/v1/recordings?limit=1000{after}"),
            &org.player,
            &[],
            &[],
        )?;
        if status != 200 {
            return Err(format!(
                "GET /v1/recordings: {status} {}",
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        let page: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
        let count = page.len();
        ids.extend(
            page.iter()
                .filter_map(|r| r["id"].as_str().map(String::from)),
        );
        if count < 1000 {
            break;
        }
    }
    let mut playable = 0;
    for (i, id) in ids.iter().enumerate() {
        let addr = instances[i % instances.len()].service.addr();
        let (status, _) = http(
            addr,
            "GET",
            &format!("/v1/recordings/{id}/content"),
            &org.player,
            &[("Range", "bytes=0-0")],
            &[],
        )?;
        if status == 206 {
            playable += 1;
        }
    }
    Ok((ids.len(), playable))
}

/// Waits for Ctrl-C; fails if an instance, moto or PostgreSQL stops on its own.
fn serve_until_ctrl_c(
    ctrl_c: &mut CtrlC,
    instances: &mut [Instance],
    moto: &mut crate::moto::Server,
    postgres: &mut crate::postgres::Cluster,
) -> Res<()> {
    loop {
        if ctrl_c.pressed() {
            return Ok(());
        }
        let mut failed = None;
        for instance in instances.iter_mut() {
            if let Some(status) = instance.service.exited() {
                failed = Some(format!(
                    "{} exited with {status}; {}",
                    instance.name,
                    log_tail(&instance.log)
                ));
            }
        }
        if let Some(status) = moto.exited() {
            failed = Some(format!(
                "moto exited with {status}; see {}",
                moto.log().display()
            ));
        }
        if let Some(status) = postgres.exited() {
            failed = Some(format!(
                "PostgreSQL exited with {status}; see {}",
                postgres.log().display()
            ));
        }
        if let Some(failed) = failed {
            // Ctrl-C stops the instances too; it may just not be seen yet.
            std::thread::sleep(Duration::from_millis(200));
            if ctrl_c.pressed() {
                return Ok(());
            }
            return Err(failed.into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops the instances (SIGTERM: in-flight requests finish), then moto, then
/// PostgreSQL (fast shutdown).
fn stop(
    mut instances: Vec<Instance>,
    moto: crate::moto::Server,
    postgres: crate::postgres::Cluster,
) -> Res<()> {
    let mut problems = Vec::new();
    for instance in &mut instances {
        match instance.service.terminate() {
            Ok(status) if status.success() => {}
            Ok(status) => problems.push(format!(
                "{} exited with {status}; {}",
                instance.name,
                log_tail(&instance.log)
            )),
            Err(e) => problems.push(format!("{}: {e}", instance.name)),
        }
    }
    drop(instances);
    if let Err(e) = moto.stop() {
        problems.push(e.to_string());
    }
    if let Err(e) = postgres.stop() {
        problems.push(e.to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

/// Stops what a run that was not stopped with Ctrl-C left running (xtask killed, or
/// its terminal closed: PostgreSQL and moto, in process groups of their own, outlive
/// it): the process whose id starts `pid_file`, if its command line or environment
/// contains `marker` (a process that took the id since is left alone). `signal`
/// first; it is killed if still there after 30 s.
pub(crate) fn stop_leftover(pid_file: &Path, marker: &str, signal: &str) -> Res<()> {
    let Some(pid) = fs::read_to_string(pid_file)
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
    else {
        return Ok(());
    };
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let has_marker = |file: &str| {
        fs::read(proc.join(file)).is_ok_and(|bytes| {
            bytes
                .split(|b| *b == 0)
                .any(|part| String::from_utf8_lossy(part).contains(marker))
        })
    };
    if !(has_marker("cmdline") || has_marker("environ")) {
        return Ok(());
    }
    // Gone, or a zombie that nothing reaped yet.
    let running = || {
        fs::read_to_string(proc.join("stat")).is_ok_and(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
    };
    println!("stopping process {pid} ({marker}), which an earlier run left running");
    let pid = pid.to_string();
    let _ = Command::new("kill").args(["-s", signal, &pid]).status();
    let since = Instant::now();
    while running() {
        if since.elapsed() > Duration::from_secs(30) {
            let _ = Command::new("kill").args(["-s", "KILL", &pid]).status();
        }
        if since.elapsed() > Duration::from_secs(35) {
            return Err(format!("process {pid} ({marker}) does not stop").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
