//! `cargo xtask ci`: installs what the checks need, then runs them in order, stopping
//! at the first failure.

use std::path::Path;
use std::process::Command;

pub(crate) type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Targets the core must build for, with no platform crate in its tree.
const WASM_TARGETS: [&str; 2] = ["wasm32-unknown-unknown", "wasm32-wasip2"];
/// Crates that would tie the core to one platform.
const PLATFORM_CRATES: [&str; 7] = [
    "getrandom",
    "wasm-bindgen",
    "js-sys",
    "web-sys",
    "wasi",
    "wit-bindgen",
    "libc",
];

/// How every step that builds the workspace's tests builds them, so that they share
/// one build: the failpoints are compiled in (inert unless `FAILPOINTS` is set), for
/// the crash-safety tests.
pub(crate) const TEST_BUILD: [&str; 4] =
    ["test", "--workspace", "--features", "tapeseal/failpoints"];

/// Set by [`run`]: every program CI starts builds without incremental compilation.
/// A one-off build gains nothing from it, and it would double the disk the
/// build takes (about 2 GiB more on a fresh clone).
static ONE_OFF_BUILD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The free disk below which CI warns before it starts: a fresh clone's build
/// (target/, CARGO_HOME, the npm and PyPI packages) takes about 8 GiB.
const DISK_NEEDED_GIB: u64 = 12;

pub(crate) fn run(root: &Path) -> Res<()> {
    let started = std::time::Instant::now();
    ONE_OFF_BUILD.store(true, std::sync::atomic::Ordering::Relaxed);
    report_free_disk(root);
    install(root)?;
    let (moto, postgres) = step_value(
        "moto server for the AWS KMS tests (PyPI moto[server]), while Debian's postgresql \
         installs for the PostgreSQL tests",
        || {
            std::thread::scope(|scope| {
                let postgres =
                    scope.spawn(|| crate::postgres::install(root).map_err(|e| e.to_string()));
                let moto = crate::moto::ensure(root);
                let postgres = postgres
                    .join()
                    .map_err(|_| "the PostgreSQL install panicked".to_string())??;
                Ok((moto?, postgres))
            })
        },
    )?;
    let moto = moto.to_string_lossy().to_string();
    let postgres = postgres.to_string_lossy().to_string();
    step("format", || cargo(root, &["fmt", "--all", "--", "--check"]))?;
    lint_as_we_build(root)?;
    step(
        "clippy (-D warnings) while building the workspace's tests, benches and binaries",
        || {
            cargo(
                root,
                &[&TEST_BUILD[..], &["--all-targets", "--no-run"]].concat(),
            )
        },
    )?;
    step("clippy for the wasm face on wasm32", || {
        cargo(
            root,
            &[
                "clippy",
                "-p",
                "tapeseal-wasm",
                "--target",
                "wasm32-unknown-unknown",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        )
    })?;
    step("clippy for the guest component on wasm32-wasip2", || {
        cargo(
            root,
            &[
                "clippy",
                "-p",
                "tapeseal-guest",
                "--target",
                "wasm32-wasip2",
                "--",
                "-D",
                "warnings",
            ],
        )
    })?;
    step("tests, the failpoint crash matrix among them", || {
        // The AWS KMS tests run against this moto, the PostgreSQL tests against
        // clusters of these binaries (tapeseal-testkit).
        cargo_env(
            root,
            &TEST_BUILD,
            &[
                ("TAPESEAL_MOTO_SERVER", moto.as_str()),
                ("TAPESEAL_PG_BINDIR", postgres.as_str()),
            ],
        )
    })?;
    for target in WASM_TARGETS {
        step(&format!("core for {target}"), || {
            cargo(root, &["build", "-p", "tapeseal-core", "--target", target])?;
            platform_free(root, target)
        })?;
    }
    step("vectors are current", || crate::vectors::run(root, true))?;
    step("the README's run command: cargo xtask demo --check", || {
        crate::demo::run(root, true, crate::demo::Binary::FromTests)
    })?;
    step("its cluster: cargo xtask demo --cluster --check", || {
        crate::cluster::check(root)
    })?;
    crate::npm::test(root)?;
    step(
        "the browser pages end to end in headless Chromium (www/test/e2e.mjs)",
        || crate::www::e2e(root),
    )?;
    println!(
        "\nxtask ci: all checks passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub(crate) fn step(name: &str, f: impl FnOnce() -> Res<()>) -> Res<()> {
    println!("\n==> {name}");
    let started = std::time::Instant::now();
    let result = f().map_err(|e| format!("step '{name}' failed: {e}").into());
    println!("<== {name}: {:.0} s", started.elapsed().as_secs_f64());
    result
}

/// A [`step`] that produces a value.
pub(crate) fn step_value<T>(name: &str, f: impl FnOnce() -> Res<T>) -> Res<T> {
    let mut out = None;
    step(name, || {
        out = Some(f()?);
        Ok(())
    })?;
    out.ok_or_else(|| "step produced nothing".into())
}

/// Prints the free space where the build goes, and warns when it is short: a
/// full disk shows up late and obscurely (the linker dies of SIGBUS).
fn report_free_disk(root: &Path) {
    match output(root, "df", &["-Pk", "."]) {
        Ok(df) => {
            let free_kib = df
                .lines()
                .nth(1)
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse::<u64>().ok());
            match free_kib {
                Some(kib) if kib < DISK_NEEDED_GIB << 20 => println!(
                    "xtask ci: WARNING: {:.1} GiB free here; a build from scratch needs about {DISK_NEEDED_GIB} GiB",
                    kib as f64 / 1_048_576.0
                ),
                Some(kib) => println!("xtask ci: {:.1} GiB free", kib as f64 / 1_048_576.0),
                None => println!("xtask ci: cannot read the free disk from df"),
            }
        }
        Err(e) => println!("xtask ci: cannot read the free disk: {e}"),
    }
}

/// Adds the wasm32 targets that are missing (the host's build needs wasm32-wasip2
/// for the guest component).
pub(crate) fn install_targets(root: &Path) -> Res<()> {
    let installed = output(root, "rustup", &["target", "list", "--installed"])?;
    for target in WASM_TARGETS {
        if !installed.lines().any(|l| l.trim() == target) {
            run_cmd(root, "rustup", &["target", "add", target])?;
        }
    }
    Ok(())
}

fn install(root: &Path) -> Res<()> {
    step("toolchain", || {
        install_targets(root)?;
        let components = output(root, "rustup", &["component", "list", "--installed"])?;
        for component in ["rustfmt", "clippy"] {
            if !components.lines().any(|l| l.starts_with(component)) {
                run_cmd(root, "rustup", &["component", "add", component])?;
            }
        }
        Ok(())
    })?;
    step(
        "JavaScript toolchain: wasm-bindgen-cli, wasm-pack, Node, Chromium, npm packages",
        || crate::npm::install(root),
    )
}

/// Fails if the core's normal dependency tree for `target` contains a platform crate.
fn platform_free(root: &Path, target: &str) -> Res<()> {
    let tree = output(
        root,
        "cargo",
        &[
            "tree",
            "-p",
            "tapeseal-core",
            "-e",
            "normal",
            "--target",
            target,
            "--prefix",
            "none",
        ],
    )?;
    let found: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| PLATFORM_CRATES.contains(name))
        .collect();
    if found.is_empty() {
        println!("tapeseal-core for {target}: no platform crate in its dependency tree");
        Ok(())
    } else {
        Err(format!("tapeseal-core pulls platform crates for {target}: {found:?}").into())
    }
}

pub(crate) fn cargo(root: &Path, args: &[&str]) -> Res<()> {
    cargo_env(root, args, &[])
}

/// clippy-driver, once [`lint_as_we_build`] has found it.
static CLIPPY_DRIVER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// From now on every cargo this process runs compiles the workspace's own crates
/// with clippy-driver as the rustc wrapper, as `cargo clippy` does, but building
/// them too: clippy's lints (as errors) come with the test build instead of a
/// second, check-only build of every dependency. The wrapper is part of cargo's
/// fingerprints, so each later step must use it to reuse that build.
fn lint_as_we_build(root: &Path) -> Res<()> {
    let driver = output(root, "rustup", &["which", "clippy-driver"])?;
    let driver = driver.trim().to_string();
    if !Path::new(&driver).is_file() {
        return Err(format!("clippy-driver not found (rustup said {driver})").into());
    }
    CLIPPY_DRIVER
        .set(driver)
        .map_err(|_| "clippy-driver was set twice".into())
}

/// Runs cargo (the one running xtask) with extra environment variables.
pub(crate) fn cargo_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Res<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut env = env.to_vec();
    // `cargo install` builds other people's code: never lint it.
    if let Some(driver) = CLIPPY_DRIVER
        .get()
        .filter(|_| args.first() != Some(&"install"))
    {
        // How cargo-clippy hands its arguments to clippy-driver.
        env.extend([
            ("RUSTC_WORKSPACE_WRAPPER", driver.as_str()),
            (
                "CLIPPY_ARGS",
                "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__",
            ),
        ]);
    }
    run_in(root, &cargo, args, &env)
}

fn run_cmd(root: &Path, program: &str, args: &[&str]) -> Res<()> {
    run_in(root, program, args, &[])
}

/// Runs a program in `dir`, echoing the command, failing on a non-zero exit.
pub(crate) fn run_in(dir: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) -> Res<()> {
    println!("$ {program} {}", args.join(" "));
    let mut command = Command::new(program);
    if ONE_OFF_BUILD.load(std::sync::atomic::Ordering::Relaxed) {
        command.env("CARGO_INCREMENTAL", "0");
    }
    let status = command
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` exited with {status}", args.join(" ")).into())
    }
}

fn output(root: &Path, program: &str, args: &[&str]) -> Res<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(root)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}
