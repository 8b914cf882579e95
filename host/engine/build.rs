//! Builds `tapeseal-guest` for wasm32-wasip2 and hands the component to this crate
//! (`include_bytes!` in src/lib.rs), so building `tapeseal-engine` alone yields a
//! working runtime.

use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // host/engine -> the workspace root.
    let workspace = manifest
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or(manifest.clone());
    for path in [
        "crates/guest",
        "crates/core/src",
        "crates/core/Cargo.toml",
        "wit",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if !target_installed(&rustc) {
        fail(&format!(
            "tapeseal-host embeds the tapeseal-guest component, which is built for {GUEST_TARGET}, \
             and this Rust toolchain has no {GUEST_TARGET} standard library.\n\
             Install it with:  rustup target add {GUEST_TARGET}"
        ));
    }
    // A target directory of its own: the outer cargo holds the lock on the usual one.
    let target_dir = workspace.join("target/guest");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&workspace).args([
        "build",
        "--package",
        "tapeseal-guest",
        "--target",
        GUEST_TARGET,
        "--release",
        "--locked",
        "--target-dir",
    ]);
    cmd.arg(&target_dir);
    // Cargo's variables for this build script describe the host build, not the guest's.
    for (key, _) in std::env::vars() {
        let inherited = key.starts_with("CARGO_") && key != "CARGO_HOME";
        if inherited
            || [
                "RUSTFLAGS",
                "TARGET",
                "HOST",
                "OUT_DIR",
                "OPT_LEVEL",
                "PROFILE",
                "DEBUG",
            ]
            .contains(&key.as_str())
        {
            cmd.env_remove(&key);
        }
    }
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!(
            "building tapeseal-guest for {GUEST_TARGET} failed ({status})"
        )),
        Err(e) => fail(&format!("cannot run {cargo} to build tapeseal-guest: {e}")),
    }
    let built = target_dir.join(format!("{GUEST_TARGET}/release/tapeseal_guest.wasm"));
    let out =
        PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("tapeseal_guest.wasm");
    if let Err(e) = std::fs::copy(&built, &out) {
        fail(&format!("cannot copy {}: {e}", built.display()));
    }
}

fn target_installed(rustc: &str) -> bool {
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()));
    sysroot.is_some_and(|root| root.join("lib/rustlib").join(GUEST_TARGET).exists())
}

fn fail(message: &str) -> ! {
    eprintln!("\nerror: {message}\n");
    std::process::exit(1)
}
