//! The browser pages: `cargo xtask www` assembles them for `tapeseal serve --www`
//! (target/www: the files of www/ plus the npm package's web build in pkg/), and
//! `cargo xtask www --test` runs their end-to-end tests in headless Chromium against
//! the real server and the real reference LKM (www/test/e2e.mjs).

use std::fs;
use std::path::{Path, PathBuf};

use crate::ci::{Res, run_in};

/// What in www/ is not served: the tests, their npm packages and the README.
const NOT_SERVED: [&str; 5] = [
    "test",
    "node_modules",
    "package.json",
    "package-lock.json",
    "README.md",
];

/// `target/www`: the pages as the server serves them.
pub(crate) fn dir(root: &Path) -> PathBuf {
    root.join("target/www")
}

/// Builds the npm package (unless `built`) and assembles target/www.
pub(crate) fn assemble(root: &Path, built: bool) -> Res<PathBuf> {
    let pkg = if built {
        crate::npm::package_dir(root)
    } else {
        crate::npm::build(root)?
    };
    let out = dir(root);
    if out.exists() {
        fs::remove_dir_all(&out)?;
    }
    copy_tree(&root.join("www"), &out, &NOT_SERVED)?;
    copy_tree(&pkg.join("web"), &out.join("pkg"), &[])?;
    println!("assembled the pages in {}", out.display());
    Ok(out)
}

fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> Res<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            copy_tree(&path, &to.join(&name), &[])?;
        } else {
            fs::copy(&path, to.join(&name))?;
        }
    }
    Ok(())
}

/// The end-to-end tests: installs www/'s locked npm packages, assembles the pages
/// from the built package and runs www/test/e2e.mjs with the workspace tests'
/// `tapeseal` binary. Screenshots and measurements go to target/www-e2e.
pub(crate) fn e2e(root: &Path) -> Res<()> {
    let www = root.join("www");
    run_in(&www, "npm", &["ci", "--no-audit", "--no-fund"], &[])?;
    let pages = assemble(root, crate::npm::package_dir(root).join("web").exists())?;
    let out = root.join("target/www-e2e");
    let bin = root.join("target/debug/tapeseal");
    // The admin page's AWS KMS organisation runs against moto's KMS.
    let moto = crate::moto::ensure(root)?;
    let env = [
        ("TAPESEAL_MOTO_SERVER", moto.to_string_lossy().to_string()),
        ("TAPESEAL_BIN", bin.to_string_lossy().to_string()),
        ("TAPESEAL_WWW", pages.to_string_lossy().to_string()),
        ("TAPESEAL_E2E_OUT", out.to_string_lossy().to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_in(&www, "node", &["test/e2e.mjs"], &env)
}
