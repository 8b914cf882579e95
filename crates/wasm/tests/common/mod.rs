//! Shared by the wasm-bindgen tests: the embedded vectors and the streaming `Opener`
//! that the other ways of opening are held against.
#![allow(dead_code, unreachable_pub)]

use js_sys::Uint8Array;
use tapeseal_wasm::Opener;
use wasm_bindgen::JsValue;

include!(concat!(env!("OUT_DIR"), "/vectors.rs"));

/// A DEK as the JavaScript API takes it.
pub fn dek_js(bytes: &[u8]) -> JsValue {
    Uint8Array::from(bytes).into()
}

/// Opens through the streaming `Opener`, pushing `step` bytes at a time.
pub fn open_streaming(envelope: &[u8], dek: &[u8], step: usize) -> Result<Vec<u8>, JsValue> {
    let mut opener = Opener::new(dek_js(dek))?;
    let mut out = Vec::new();
    for piece in envelope.chunks(step) {
        out.extend(opener.push(piece)?);
    }
    out.extend(opener.finish()?);
    Ok(out)
}
