//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `ci`: every check CI runs, installing what is missing first.
//! - `vectors [--check]`: regenerate (or verify) `tests/vectors/`.
//! - `bench`: the criterion benchmarks.
//! - `demo [--check]`: the recording server with sample recordings on 127.0.0.1;
//!   `demo --cluster [--check]`: three of them sharing PostgreSQL and moto's S3.
//! - `npm`: build the npm package into `target/npm/tapeseal` and pack it.
//! - `moto`: find or install `moto_server`, which the AWS KMS tests run against.

mod ci;
mod cluster;
mod compare;
mod demo;
mod loopback;
mod moto;
mod npm;
mod postgres;
mod service;
mod vectors;
mod www;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  ci                 run every check CI runs (installs rustup targets and components first)
  vectors [--check]  regenerate tests/vectors/ from fixed seeds, or check they are current
  bench              run the criterion benchmarks of the core, the wasmtime engine, the
                     key unwrap, a DEK unwrapped through the reference LKM and
                     the server over loopback HTTP,
                     then the npm package's seal/open throughput in Node and Chromium;
                     --compare: one table of open times on the same machine (native
                     core, wasmtime guest, the tapeseal CLI, age -d, gpg --decrypt,
                     openssl speed) in target/compare/compare.md
  demo [--check]     run the recording server and the reference LKM on 127.0.0.1 with
                     two demo organisations (managed keys, LKM) and sample
                     recordings (data in target/demo/); --check stops after
                     checking playback instead of serving until Ctrl-C
  demo --cluster [--check]
                     run three recording servers on 127.0.0.1 sharing a PostgreSQL
                     catalogue and an S3 bucket (moto), with sample recordings
                     ingested through one and played back through another (data
                     in target/demo-cluster/, kept between runs)
  npm [--test]       build the npm package into target/npm/tapeseal and pack it;
                     with --test, also run its Node, Chromium and consumer tests
  www [--test]       assemble the browser pages into target/www (for
                     tapeseal serve --www); with --test, run their end-to-end
                     tests in headless Chromium (screenshots in target/www-e2e)
  moto               find moto_server (for the AWS KMS tests) or install it into
                     target/tools/moto with pip, and print its path";

/// The benchmarks' build: the packages with benchmarks, built together so that they
/// share one set of features.
const BENCH: [&str; 11] = [
    "bench",
    "-p",
    "tapeseal-core",
    "-p",
    "tapeseal-engine",
    "-p",
    "tapeseal-keys",
    "-p",
    "tapeseal-lkm",
    "-p",
    "tapeseal",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["ci"] => ci::run(&root),
        ["vectors"] => vectors::run(&root, false),
        ["vectors", "--check"] => vectors::run(&root, true),
        ["bench", "--compare"] => compare::run(&root, &BENCH),
        ["bench", rest @ ..] => moto::ensure(&root)
            .and_then(|moto| {
                ci::cargo_env(
                    &root,
                    &[&BENCH[..], &["--"], rest].concat(),
                    &[("TAPESEAL_MOTO_SERVER", &moto.to_string_lossy())],
                )
            })
            .and_then(|()| npm::bench(&root)),
        ["demo"] => demo::run(&root, false, demo::Binary::Build),
        ["demo", "--check"] => demo::run(&root, true, demo::Binary::Build),
        ["demo", "--cluster"] => cluster::run(&root, false),
        ["demo", "--cluster", "--check"] | ["demo", "--check", "--cluster"] => {
            cluster::run(&root, true)
        }
        ["npm"] => npm::pack(&root).map(|_| ()),
        ["npm", "--test"] => npm::install(&root).and_then(|()| npm::test(&root)),
        ["www"] => ci::install_targets(&root)
            .and_then(|()| npm::install_wasm_bindgen(&root))
            .and_then(|()| www::assemble(&root, false))
            .map(|_| ()),
        ["www", "--test"] => npm::install(&root).and_then(|()| {
            ci::cargo(&root, &[&ci::TEST_BUILD[..], &["--no-run"]].concat())?;
            www::e2e(&root)
        }),
        ["moto"] => moto::ensure(&root).map(|path| println!("{}", path.display())),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}
