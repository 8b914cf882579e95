//! `moto_server`, the local stand-in for AWS KMS and IAM that the AWS KMS tests run
//! against (through `tapeseal-testkit`): found where it is already installed, or
//! installed from PyPI into a virtual environment in `target/tools/moto`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ci::{Res, run_in};

/// The variable that names the program, for xtask and the testkit alike.
const ENV: &str = "TAPESEAL_MOTO_SERVER";
/// moto 5 is what the testkit's assumptions were checked against (5.2.1): its
/// `INITIAL_NO_AUTH_ACTION_COUNT`, `x-moto-account-id` and account-by-access-key rules.
const REQUIREMENT: &str = "moto[server]>=5.1,<6";

/// The virtual environment the testkit looks in when `TAPESEAL_MOTO_SERVER` is unset.
fn venv(root: &Path) -> PathBuf {
    root.join("target/tools/moto")
}

/// Returns a `moto_server` that runs: `TAPESEAL_MOTO_SERVER`, else one on `PATH`,
/// else the one in `target/tools/moto`, installing it there if there is none.
pub(crate) fn ensure(root: &Path) -> Res<PathBuf> {
    if let Some(path) = std::env::var_os(ENV).map(PathBuf::from) {
        if path.is_file() {
            println!("moto_server: {} (from {ENV})", path.display());
            return Ok(path);
        }
        println!("{ENV}={} does not exist; looking elsewhere", path.display());
    }
    if let Some(path) = crate::npm::which("moto_server").filter(|p| runs(p)) {
        println!("moto_server: {} (on PATH)", path.display());
        return Ok(path);
    }
    let dir = venv(root);
    let program = dir.join("bin/moto_server");
    if runs(&program) {
        println!("moto_server: {}", program.display());
        return Ok(program);
    }
    install(root, &dir)?;
    if !runs(&program) {
        return Err(format!("{} was installed but does not run", program.display()).into());
    }
    println!("moto_server: {} (installed)", program.display());
    Ok(program)
}

/// Whether `moto_server --help` succeeds: the program exists and its Python can
/// import moto's server.
fn runs(program: &Path) -> bool {
    program.is_file()
        && Command::new(program)
            .arg("--help")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// `python3 -m venv target/tools/moto` (adding Debian's python3-venv if that is what
/// is missing), then pip installs moto's server into it.
fn install(root: &Path, dir: &Path) -> Res<()> {
    let dir_str = dir.to_string_lossy().to_string();
    // A half-made environment from an interrupted attempt would fail the same way.
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let venv_args = ["-m", "venv", dir_str.as_str()];
    if let Err(e) = run_in(root, "python3", &venv_args, &[]) {
        println!("python3 -m venv failed ({e}); installing Debian's python3-venv");
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        crate::npm::apt_install(root, &["python3-venv"])?;
        run_in(root, "python3", &venv_args, &[])?;
    }
    let pip = dir.join("bin/pip").to_string_lossy().to_string();
    run_in(
        root,
        &pip,
        &[
            "install",
            "--quiet",
            "--disable-pip-version-check",
            REQUIREMENT,
        ],
        &[],
    )
}
