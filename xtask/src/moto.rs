//! `moto_server`, the local stand-in for AWS KMS, S3 and IAM that the AWS tests run
//! against (through `tapeseal-testkit`): found where it is already installed (if it
//! is recent enough), or installed from PyPI into a virtual environment in
//! `target/tools/moto`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ci::{Res, run_in};

/// The variable that names the program, for xtask and the testkit alike.
const ENV: &str = "TAPESEAL_MOTO_SERVER";
/// moto 5 is what the testkit's assumptions were checked against: its
/// `INITIAL_NO_AUTH_ACTION_COUNT`, `x-moto-account-id` and account-by-access-key rules.
/// Before 5.2.5 its S3 refuses the SigV4 signature of a PUT whose key holds `=`
/// (percent-encoded, as in the export layout's `year=2026/...`).
const REQUIREMENT: &str = "moto[server]>=5.2.5,<6";
/// The lowest version [`REQUIREMENT`] allows.
const MINIMUM: (u32, u32, u32) = (5, 2, 5);

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
        match version(&path) {
            Some(v) if v >= MINIMUM => {
                println!("moto_server: {} (on PATH, moto {v:?})", path.display());
                return Ok(path);
            }
            found => println!(
                "moto_server on PATH is moto {found:?}, older than {MINIMUM:?} (or unknown); not used"
            ),
        }
    }
    let dir = venv(root);
    let program = dir.join("bin/moto_server");
    if runs(&program) && version(&program).is_some_and(|v| v >= MINIMUM) {
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

/// The version of moto behind a `moto_server` script: asked of the Python its
/// `#!` line names, or of `python3` for a wrapper such as a pyenv shim.
fn version(program: &Path) -> Option<(u32, u32, u32)> {
    let script = std::fs::read(program).ok()?;
    let first = script.split(|b| *b == b'\n').next()?;
    let first = String::from_utf8_lossy(first);
    let python = first
        .strip_prefix("#!")
        .map(str::trim)
        .filter(|p| p.contains("python") && !p.contains(' '))
        .unwrap_or("python3")
        .to_string();
    let out = Command::new(&python)
        .args(["-c", "import moto; print(moto.__version__)"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.trim().split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .ok()
    });
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
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
