//! Embeds the shared test vectors (tests/vectors/*.json) for the wasm-bindgen tests,
//! which run in Node and in a browser where there is no file system to read.

use std::fmt::Write;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    let mut out = String::from(
        "/// Every vector file: (file name, JSON text).\npub static VECTORS: &[(&str, &str)] = &[\n",
    );
    for path in &paths {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        );
    }
    out.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    if let Err(e) = std::fs::write(out_dir.join("vectors.rs"), out) {
        println!("cargo:warning=cannot write the embedded vector list: {e}");
    }
}
