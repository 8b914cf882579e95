//! The npm package `tapeseal`: build it (`cargo xtask npm`), test it as a consumer
//! would, and run the wasm-bindgen tests in Node and headless Chromium through
//! wasm-pack, as the package's Rust users run them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ci::{Res, cargo_env, run_in, step, step_value};

/// Must equal the `wasm-bindgen` pin in the workspace Cargo.toml.
pub(crate) const WASM_BINDGEN_VERSION: &str = "0.2.130";
const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// `target/npm/tapeseal`: the package directory.
pub(crate) fn package_dir(root: &Path) -> PathBuf {
    root.join("target/npm/tapeseal")
}

pub(crate) fn harness_dir(root: &Path) -> PathBuf {
    root.join("crates/wasm/js")
}

/// Installs what the JS side needs: wasm-bindgen-cli at the pinned version,
/// wasm-pack, Node and npm, Chromium and its driver, and the harness's locked npm
/// packages.
pub(crate) fn install(root: &Path) -> Res<()> {
    // Debian's packages download and unpack while cargo compiles the CLIs.
    std::thread::scope(|scope| {
        let debian = scope.spawn(|| install_debian_packages(root).map_err(|e| e.to_string()));
        let cli = install_wasm_bindgen(root).and_then(|()| install_wasm_pack(root));
        let debian = debian
            .join()
            .map_err(|_| "the Debian install panicked".to_string())?;
        cli.map_err(|e| e.to_string())?;
        debian
    })?;
    run_in(
        &harness_dir(root),
        "npm",
        &["ci", "--no-audit", "--no-fund"],
        &[],
    )
}

/// wasm-bindgen-cli at the pinned version, unless it is on PATH already.
pub(crate) fn install_wasm_bindgen(root: &Path) -> Res<()> {
    let current = Command::new("wasm-bindgen").arg("--version").output().ok();
    let have = current
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if have.as_deref() == Some(&format!("wasm-bindgen {WASM_BINDGEN_VERSION}")) {
        return Ok(());
    }
    // Only the two programs the checks run, optimised lightly.
    cargo_env(
        root,
        &[
            "install",
            "wasm-bindgen-cli",
            "--version",
            &format!("={WASM_BINDGEN_VERSION}"),
            "--bin",
            "wasm-bindgen",
            "--bin",
            "wasm-bindgen-test-runner",
        ],
        // wasm-bindgen transforms every test module, so it is optimised a little.
        &light_release("1"),
    )
}

/// How to compile a tool CI installs: a full release build of one is minutes of CI,
/// and these run briefly on small inputs.
const fn light_release(opt_level: &'static str) -> [(&'static str, &'static str); 4] {
    [
        ("CARGO_PROFILE_RELEASE_OPT_LEVEL", opt_level),
        ("CARGO_PROFILE_RELEASE_LTO", "false"),
        ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"),
        ("CARGO_PROFILE_RELEASE_DEBUG", "false"),
    ]
}

/// The wasm-pack CI installs when there is none.
const WASM_PACK_VERSION: &str = "=0.15.1";

/// wasm-pack, unless it is on PATH. It downloads nothing when it runs here: the
/// pinned wasm-bindgen-cli is on PATH and wasm-opt is off in crates/wasm/Cargo.toml.
fn install_wasm_pack(root: &Path) -> Res<()> {
    if on_path("wasm-pack") {
        return Ok(());
    }
    // Not optimised at all: it only starts cargo and wasm-bindgen, and compiling it
    // at opt-level 0 takes half the time of opt-level 1 (82 s against 161 s here).
    cargo_env(
        root,
        &["install", "wasm-pack", "--version", WASM_PACK_VERSION],
        &light_release("0"),
    )
}

/// Node, npm, Chromium and its driver, and GnuPG (the export tests decrypt with it)
/// from Debian, where missing.
fn install_debian_packages(root: &Path) -> Res<()> {
    let missing: Vec<&str> = [
        ("node", "nodejs"),
        ("npm", "npm"),
        ("chromium", "chromium"),
        ("chromedriver", "chromium-driver"),
        ("gpg", "gnupg"),
    ]
    .into_iter()
    .filter(|(bin, _)| !on_path(bin))
    .map(|(_, package)| package)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        apt_install(root, &missing)
    }
}

/// Installs Debian packages with apt-get, refreshing its package lists first.
pub(crate) fn apt_install(root: &Path, packages: &[&str]) -> Res<()> {
    run_in(root, "apt-get", &["update", "-qq"], &[])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(packages);
    run_in(
        root,
        "apt-get",
        &args,
        &[("DEBIAN_FRONTEND", "noninteractive")],
    )
}

fn on_path(bin: &str) -> bool {
    which(bin).is_some()
}

/// The first file named `bin` in a directory of `PATH`.
pub(crate) fn which(bin: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(bin))
        .find(|path| path.is_file())
}

/// Builds the package into `target/npm/tapeseal`.
pub(crate) fn build(root: &Path) -> Res<PathBuf> {
    cargo_env(
        root,
        &[
            "build",
            "-p",
            "tapeseal-wasm",
            "--target",
            WASM_TARGET,
            "--release",
        ],
        &[],
    )?;
    let wasm = root.join(format!("target/{WASM_TARGET}/release/tapeseal_wasm.wasm"));
    let pkg = package_dir(root);
    if pkg.exists() {
        fs::remove_dir_all(&pkg)?;
    }
    for (target, dir) in [("web", "web"), ("nodejs", "node")] {
        let out = pkg.join(dir);
        let out_str = out.to_string_lossy().to_string();
        let wasm_str = wasm.to_string_lossy().to_string();
        run_in(
            root,
            "wasm-bindgen",
            &[
                "--target",
                target,
                "--out-dir",
                &out_str,
                "--out-name",
                "tapeseal",
                &wasm_str,
            ],
            &[],
        )?;
    }
    let npm = harness_dir(root).join("npm");
    fs::copy(npm.join("web-index.js"), pkg.join("web/index.js"))?;
    fs::copy(npm.join("web-index.d.ts"), pkg.join("web/index.d.ts"))?;
    fs::copy(npm.join("webcrypto.js"), pkg.join("web/webcrypto.js"))?;
    fs::copy(npm.join("webcrypto.d.ts"), pkg.join("web/webcrypto.d.ts"))?;
    fs::copy(npm.join("node-index.mjs"), pkg.join("node/index.mjs"))?;
    fs::copy(npm.join("node-index.cjs"), pkg.join("node/index.cjs"))?;
    fs::write(
        pkg.join("node/webcrypto.cjs"),
        commonjs(&fs::read_to_string(npm.join("webcrypto.js"))?)?,
    )?;
    fs::copy(npm.join("node-package.json"), pkg.join("node/package.json"))?;
    fs::copy(npm.join("README.md"), pkg.join("README.md"))?;
    let manifest = fs::read_to_string(npm.join("package.json.in"))?
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"));
    fs::write(pkg.join("package.json"), manifest)?;
    let wasm_len = fs::metadata(pkg.join("web/tapeseal_bg.wasm"))?.len();
    let gz = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(pkg.join("web/tapeseal_bg.wasm"))
        .output()?;
    println!(
        "built {}: tapeseal_bg.wasm {wasm_len} bytes, {} bytes gzipped (-9)",
        pkg.display(),
        gz.stdout.len()
    );
    Ok(pkg)
}

/// The CommonJS form of an ES module written for it (js/npm/webcrypto.js), so that
/// `require` gets the same code as `import`: its one `import { ... } from "...";`
/// becomes a `require` and its one closing `export { ... };` becomes
/// `module.exports`. Any other `import` or `export` line is refused, not guessed at.
fn commonjs(module: &str) -> Res<String> {
    let (mut imports, mut exports) = (0, 0);
    let mut out = String::from("// Generated by `cargo xtask npm` from webcrypto.js.\n");
    for line in module.lines() {
        if let Some(rest) = line.strip_prefix("import {") {
            let (names, from) = rest
                .split_once("} from ")
                .ok_or_else(|| format!("unexpected import: {line}"))?;
            let from = from.trim_end_matches(';');
            out.push_str(&format!("const {{{names}}} = require({from});\n"));
            imports += 1;
        } else if let Some(names) = line.strip_prefix("export {") {
            out.push_str(&format!("module.exports = {{{names}\n"));
            exports += 1;
        } else if line.starts_with("import") || line.starts_with("export") {
            return Err(format!("cannot rewrite to CommonJS: {line}").into());
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if (imports, exports) != (1, 1) {
        return Err("expected one import and one export list to rewrite to CommonJS".into());
    }
    Ok(out)
}

/// Packs the package with `npm pack`; returns the tarball.
pub(crate) fn pack(root: &Path) -> Res<PathBuf> {
    let pkg = build(root)?;
    let dest = root.join("target/npm");
    let out = Command::new("npm")
        .args(["pack", "--pack-destination"])
        .arg(&dest)
        .current_dir(&pkg)
        .output()?;
    if !out.status.success() {
        return Err(format!("npm pack failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let name = String::from_utf8(out.stdout)?
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let tarball = dest.join(name);
    println!(
        "packed {} ({} bytes)",
        tarball.display(),
        fs::metadata(&tarball)?.len()
    );
    Ok(tarball)
}

/// Everything the package is tested with.
pub(crate) fn test(root: &Path) -> Res<()> {
    let crate_dir = root.join("crates/wasm");
    step("wasm-pack test --node crates/wasm", || {
        run_in(&crate_dir, "wasm-pack", &["test", "--node"], &[])
    })?;
    step("wasm-pack test --headless --chrome crates/wasm", || {
        // The tests are configured for Node; this runs the same ones in Chromium
        // (wasm-pack finds Debian's chromedriver on PATH).
        run_in(
            &crate_dir,
            "wasm-pack",
            &["test", "--headless", "--chrome"],
            &[("WASM_BINDGEN_USE_BROWSER", "1")],
        )
    })?;
    let tarball = step_value("npm pack", || pack(root))?;
    step(
        "the host binary, for envelopes crossing from and to Node",
        // The binary the workspace tests build: `cargo build -p` alone would resolve
        // features differently and rebuild wasmtime.
        || {
            let args = [&crate::ci::TEST_BUILD[..], &["--no-run"]].concat();
            cargo_env(root, &args, &[])
        },
    )?;
    step("the packed tarball in a fresh Node project", || {
        consumer(root, &tarball)
    })
}

/// Installs the tarball into a new temporary project and runs the consumer scripts,
/// the type check and the JS test suites against `import "tapeseal"`.
fn consumer(root: &Path, tarball: &Path) -> Res<()> {
    let dir = std::env::temp_dir().join(format!("tapeseal-consumer-{}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    let harness = harness_dir(root);
    let result = (|| -> Res<()> {
        run_in(&dir, "npm", &["init", "-y"], &[])?;
        let tgz = tarball.to_string_lossy().to_string();
        run_in(
            &dir,
            "npm",
            &["install", "--no-audit", "--no-fund", &tgz],
            &[],
        )?;
        for file in [
            "consumer.mjs",
            "consumer.cjs",
            "consumer.ts",
            "tsconfig.json",
            "cross-host.mjs",
        ] {
            fs::copy(harness.join("consumer").join(file), dir.join(file))?;
        }
        fs::create_dir_all(dir.join("test"))?;
        for entry in fs::read_dir(harness.join("test"))? {
            let path = entry?.path();
            if let Some(name) = path.file_name() {
                fs::copy(&path, dir.join("test").join(name))?;
            }
        }
        let vectors = root.join("tests/vectors");
        let kek = vectors
            .join("keys/kek-a.public.pem")
            .to_string_lossy()
            .to_string();
        let vector = vectors
            .join("two-stanzas.json")
            .to_string_lossy()
            .to_string();
        run_in(&dir, "node", &["consumer.mjs", &kek, &vector], &[])?;
        run_in(&dir, "node", &["consumer.cjs", &kek], &[])?;
        let project = dir.to_string_lossy().to_string();
        run_in(
            &harness.join("consumer"),
            "node",
            &["browser.mjs", &project, &kek, &vector],
            &[],
        )?;
        let host = root
            .join("target/debug/tapeseal")
            .to_string_lossy()
            .to_string();
        run_in(&dir, "node", &["cross-host.mjs", &host], &[])?;
        let tsc = harness
            .join("node_modules/typescript/bin/tsc")
            .to_string_lossy()
            .to_string();
        run_in(&dir, "node", &[&tsc, "-p", "tsconfig.json"], &[])?;
        println!("consumer.ts type-checks against the shipped declarations");
        let vectors_env = vectors.to_string_lossy().to_string();
        run_in(
            &dir,
            "node",
            &["--test", "--test-reporter=spec", "test/"],
            &[("TAPESEAL_VECTORS", vectors_env.as_str())],
        )
    })();
    let _ = fs::remove_dir_all(&dir);
    result
}

/// Seal/open throughput of the built package in Node and in headless Chromium.
pub(crate) fn bench(root: &Path) -> Res<()> {
    bench_lines(root).map(drop)
}

/// Runs [`bench`]'s measurements, echoing them, and returns the lines they print
/// (`  node open (...): 512 ms, 117 MB/s`, the same with `chromium`).
pub(crate) fn bench_lines(root: &Path) -> Res<Vec<String>> {
    install(root)?;
    let pkg = build(root)?.to_string_lossy().to_string();
    let kek = root
        .join("tests/vectors/keys/kek-a.public.pem")
        .to_string_lossy()
        .to_string();
    let bench = harness_dir(root).join("bench");
    let mut lines = Vec::new();
    for script in ["node.mjs", "browser.mjs"] {
        println!("$ node {script} {pkg} {kek}");
        let out = Command::new("node")
            .args([script, &pkg, &kek])
            .current_dir(&bench)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run node: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        if !out.status.success() {
            return Err(format!("`node {script}` exited with {}", out.status).into());
        }
        lines.extend(text.lines().map(str::to_string));
    }
    Ok(lines)
}
