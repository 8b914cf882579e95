//! `cargo xtask demo`: what the core does today, on sample recordings. The recording
//! server that will serve them over HTTP is not built yet.
use std::path::Path;

pub(crate) fn run(_root: &Path) -> Result<(), Box<dyn std::error::Error>> {
    Err("not built yet".into())
}
