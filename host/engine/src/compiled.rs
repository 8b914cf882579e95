//! The compiled guest on disk. Compiling the component takes about a second; a
//! process that finds it compiled maps the file and starts at once. One file per
//! component build and wasmtime version (`guest-<sha256>-<engine>.cwasm`) in the
//! private cache directory ([`crate::private_cache_dir`] has made sure only this
//! user can write there), written whole under a temporary name and renamed into
//! place, so readers never see half a file. The file is mapped as it is, with no
//! copy and no decompression: most of a one-shot command's start-up otherwise.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::{Result, runtime_error};

/// How many compiled guests the directory keeps: the newest, for tapeseal
/// versions that share it. Older ones are removed when a new one is written.
const KEEP: usize = 4;

/// The compiled `wasm`, from `dir` if it holds it, else compiled now and stored
/// there. A cache that cannot be written only costs the next process a compile.
pub(crate) fn load(engine: &Engine, dir: &Path, wasm: &[u8]) -> Result<Component> {
    let file = dir.join(file_name(engine, wasm));
    if file.is_file() {
        // SAFETY: the file was written by `store` below from
        // `Engine::precompile_component`, under a name that names this component
        // and this engine's configuration, in a directory only this user can
        // write (`private_cache_dir`); wasmtime checks its header against this
        // engine and refuses a file another build made. It is replaced only by
        // rename, so a mapped file never changes under us.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &file) };
        match loaded {
            Ok(component) => return Ok(component),
            Err(e) => tracing::warn!(
                file = %file.display(),
                error = %e,
                "the compiled guest in the cache was refused; compiling it again"
            ),
        }
    }
    let compiled = engine.precompile_component(wasm).map_err(runtime_error)?;
    if let Err(e) = store(dir, &file, &compiled) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot keep the compiled guest");
    }
    // SAFETY: these bytes came from `precompile_component` on this engine a moment
    // ago and have not left this process.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &compiled) };
    component.map_err(runtime_error)
}

/// `guest-<sha256 of the component>-<hash of the engine's settings>.cwasm`.
fn file_name(engine: &Engine, wasm: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, wasm);
    let component: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut settings = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    env!("CARGO_PKG_VERSION").hash(&mut settings);
    format!("guest-{component}-{:016x}.cwasm", settings.finish())
}

fn store(dir: &Path, file: &Path, compiled: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    // tempfile creates it 0600.
    let mut temp = tempfile::Builder::new()
        .prefix(".guest-")
        .tempfile_in(dir)?;
    temp.write_all(compiled)?;
    temp.persist(file).map_err(|e| e.error)?;
    prune(dir, file);
    Ok(())
}

/// Removes all but the [`KEEP`] newest compiled guests.
fn prune(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("guest-") && name.ends_with(".cwasm")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .filter(|(_, path)| path != keep)
        .collect();
    found.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, old) in found.into_iter().skip(KEEP - 1) {
        let _ = std::fs::remove_file(old);
    }
}
