//! The WebCrypto path's WebAssembly half (`DetachedChunks`, `DetachedStream`), with
//! the core's software AES-GCM standing in for `crypto.subtle`: on every vector it
//! names the key, nonces, AAD and bytes that open the envelope exactly as `open` and
//! `Opener` do, and refuses what they refuse with the same error (run in Node and
//! headless Chromium like vectors.rs; the JavaScript tests run the real WebCrypto).
#![cfg(target_arch = "wasm32")]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use js_sys::{Array, Reflect, Uint8Array};
use serde_json::Value;
use tapeseal_core::aead::{ChunkAead, SoftAes256Gcm};
use tapeseal_wasm::{DetachedChunks, DetachedStream, open, webcrypto_error};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

mod common;

use common::{VECTORS, open_streaming};

fn field(object: &JsValue, name: &str) -> JsValue {
    Reflect::get(object, &name.into()).expect("field")
}

fn bytes(object: &JsValue, name: &str) -> Vec<u8> {
    field(object, name)
        .dyn_into::<Uint8Array>()
        .expect("bytes")
        .to_vec()
}

/// What `crypto.subtle.decrypt` does with a job: AES-256-GCM over ciphertext and tag.
fn decrypt(key: &SoftAes256Gcm, job: &JsValue, sealed: &[u8]) -> Result<Vec<u8>, JsValue> {
    let iv: [u8; 12] = bytes(job, "iv").try_into().expect("12-byte iv");
    let aad = bytes(job, "additionalData");
    let Some(body_len) = sealed.len().checked_sub(16) else {
        return Err(webcrypto_error(JsValue::NULL, "decrypt"));
    };
    let mut buf = sealed[..body_len].to_vec();
    let tag: [u8; 16] = sealed[body_len..].try_into().expect("tag");
    key.open(&iv, &aad, &mut buf, &tag)
        .map_err(|_| webcrypto_error(JsValue::NULL, "decrypt"))?;
    Ok(buf)
}

fn engine(key: JsValue) -> SoftAes256Gcm {
    let raw: [u8; 32] = key
        .dyn_into::<Uint8Array>()
        .expect("the key, the first time")
        .to_vec()
        .try_into()
        .expect("32 bytes");
    SoftAes256Gcm::new(&raw)
}

fn open_detached(envelope: &[u8], dek: &[u8]) -> Result<Vec<u8>, JsValue> {
    let mut chunks =
        DetachedChunks::for_envelope(&Uint8Array::from(envelope), Uint8Array::from(dek).into())?;
    let key = engine(chunks.take_key());
    assert!(
        chunks.take_key().is_undefined(),
        "the key is handed out once"
    );
    let mut out = vec![0; chunks.plaintext_length() as usize];
    for job in chunks.jobs()?.iter() {
        let at = |name| field(&job, name).as_f64().expect("number") as usize;
        let plain = decrypt(&key, &job, &envelope[at("start")..at("end")])?;
        out[at("at")..at("at") + plain.len()].copy_from_slice(&plain);
    }
    Ok(out)
}

fn open_detached_streaming(envelope: &[u8], dek: &[u8], step: usize) -> Result<Vec<u8>, JsValue> {
    let mut stream = DetachedStream::new(Uint8Array::from(dek).into())?;
    let mut key = None;
    let mut out = Vec::new();
    let mut take = |frames: JsValue, out: &mut Vec<u8>| -> Result<(), JsValue> {
        let k = field(&frames, "key");
        if !k.is_undefined() {
            key = Some(engine(k));
        }
        for job in field(&frames, "jobs")
            .dyn_into::<Array>()
            .expect("jobs")
            .iter()
        {
            let key = key.as_ref().expect("the key comes with the header");
            out.extend(decrypt(key, &job, &bytes(&job, "sealed"))?);
        }
        Ok(())
    };
    for piece in envelope.chunks(step) {
        let frames = stream.push(piece)?;
        take(frames, &mut out)?;
    }
    let frames = stream.finish()?;
    take(frames, &mut out)?;
    Ok(out)
}

/// Bytes, or the error's name, code and message.
fn shape(result: Result<Vec<u8>, JsValue>) -> Result<Vec<u8>, [Option<String>; 3]> {
    result.map_err(|e| ["name", "code", "message"].map(|f| field(&e, f).as_string()))
}

#[wasm_bindgen_test]
fn the_webcrypto_half_opens_every_vector_as_open_does() {
    assert!(VECTORS.len() >= 30, "vectors were not embedded");
    for (file, text) in VECTORS {
        let v: Value = serde_json::from_str(text).expect("vector JSON");
        let envelope = B64
            .decode(v["envelope"].as_str().expect("envelope"))
            .expect("b64");
        let dek = B64.decode(v["dek"].as_str().expect("dek")).expect("b64");
        let expected = shape(open(&envelope, Uint8Array::from(&dek[..]).into()));
        assert_eq!(shape(open_detached(&envelope, &dek)), expected, "{file}");
        for step in [1000, 65_552, envelope.len().max(1)] {
            assert_eq!(
                shape(open_detached_streaming(&envelope, &dek, step)),
                shape(open_streaming(&envelope, &dek, step)),
                "{file} by {step}"
            );
        }
    }
}

#[wasm_bindgen_test]
fn webcrypto_failures_map_to_the_one_error_model() {
    let code = |e: &JsValue| field(e, "code").as_string();
    let tag = js_sys::Error::new("The operation failed for an operation-specific reason");
    tag.set_name("OperationError");
    let refused = webcrypto_error(tag.into(), "decrypt");
    assert_eq!(code(&refused).as_deref(), Some("DECRYPT_FAILED"));
    assert_eq!(
        field(&refused, "message").as_string().as_deref(),
        Some("could not decrypt")
    );
    assert_eq!(
        field(&refused, "name").as_string().as_deref(),
        Some("TapesealError")
    );
    assert_eq!(
        code(&webcrypto_error(JsValue::UNDEFINED, "importKey")).as_deref(),
        Some("UNAVAILABLE")
    );
    let odd = js_sys::Error::new("unsupported");
    odd.set_name("NotSupportedError");
    assert_eq!(
        code(&webcrypto_error(odd.into(), "importKey")).as_deref(),
        Some("INTERNAL")
    );
    // A tapeseal error passes through as it is.
    assert_eq!(webcrypto_error(refused.clone(), "importKey"), refused);
}
