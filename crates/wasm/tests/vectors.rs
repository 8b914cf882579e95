//! Every shared vector through the wasm face, in Node and in headless Chromium
//! (`cargo xtask ci` runs this file in both): the same outcomes as the Rust tests.
#![cfg(target_arch = "wasm32")]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use js_sys::Reflect;
use serde_json::Value;
use tapeseal_wasm::{Layout, Opener, inspect, open};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

mod common;

use common::{VECTORS, dek_js, open_streaming};

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().expect("base64 field"))
        .expect("base64")
}

fn code(error: &JsValue) -> String {
    Reflect::get(error, &"code".into())
        .ok()
        .and_then(|c| c.as_string())
        .unwrap_or_else(|| format!("no code on {error:?}"))
}

/// The vector file's outcome name for a result from the wasm face.
fn category(result: &Result<Vec<u8>, JsValue>) -> String {
    match result {
        Ok(_) => "success".into(),
        Err(e) => match code(e).as_str() {
            "DECRYPT_FAILED" => "decrypt failure".into(),
            "UNSUPPORTED_VERSION" => "unsupported version".into(),
            "MALFORMED_HEADER" | "UNSUPPORTED_SUITE" | "INCOMPLETE_HEADER" => {
                "header failure".into()
            }
            other => format!("unexpected code {other}"),
        },
    }
}

fn open_by_chunks(envelope: &[u8], dek: &[u8]) -> Result<Vec<u8>, JsValue> {
    let opener = Opener::for_header(envelope, dek_js(dek), envelope.len() as f64)?;
    let layout = opener.layout()?;
    let mut out = Vec::new();
    for index in 0..layout.chunk_count() as u64 {
        let range = layout.chunk_range(index as f64)?;
        let start = Reflect::get(&range, &"start".into())?
            .as_f64()
            .unwrap_or(-1.0) as usize;
        let end = Reflect::get(&range, &"end".into())?
            .as_f64()
            .unwrap_or(-1.0) as usize;
        out.extend(opener.open_chunk(index as f64, &envelope[start..end])?);
    }
    Ok(out)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[wasm_bindgen_test]
fn every_vector_has_its_expected_outcome() {
    assert!(VECTORS.len() >= 30, "vectors were not embedded");
    for (file, text) in VECTORS {
        let v: Value = serde_json::from_str(text).expect("vector JSON");
        let expect = v["expect"].as_str().expect("expect");
        let envelope = b64(&v["envelope"]);
        let dek = b64(&v["dek"]);
        let one_shot = open(&envelope, dek_js(&dek));
        assert_eq!(category(&one_shot), expect, "{file} one-shot");
        for step in [1000, 65_552, envelope.len().max(1)] {
            let streamed = open_streaming(&envelope, &dek, step);
            assert_eq!(category(&streamed), expect, "{file} streaming by {step}");
        }
        if expect == "header failure" || expect == "unsupported version" {
            let inspected = inspect(&envelope).map(|_| Vec::new());
            assert_eq!(category(&inspected), expect, "{file} inspect");
        }
        if expect != "success" {
            continue;
        }
        let plain = one_shot.expect("success");
        assert_eq!(
            plain.len() as u64,
            v["plaintext_len"].as_u64().expect("plaintext_len"),
            "{file}"
        );
        assert_eq!(
            sha256_hex(&plain),
            v["plaintext_sha256"].as_str().expect("plaintext_sha256"),
            "{file}"
        );
        if !v["plaintext"].is_null() {
            assert_eq!(plain, b64(&v["plaintext"]), "{file} plaintext");
        }
        assert_eq!(
            open_streaming(&envelope, &dek, 4096).expect("stream"),
            plain,
            "{file}"
        );
        assert_eq!(
            open_by_chunks(&envelope, &dek).expect("chunks"),
            plain,
            "{file}"
        );
        let base64_dek = JsValue::from(B64.encode(&dek));
        assert_eq!(
            open(&envelope, base64_dek).expect("base64 DEK"),
            plain,
            "{file}"
        );
        let info = inspect(&envelope).expect("inspect");
        let field = |name: &str| Reflect::get(&info, &name.into()).expect("field");
        assert_eq!(
            field("recordingId").as_string(),
            v["header"]["recording_id"].as_str().map(String::from),
            "{file}"
        );
        assert_eq!(
            field("plaintextLength").as_f64(),
            v["plaintext_len"].as_f64(),
            "{file}"
        );
        let layout = Layout::from_header(&envelope, envelope.len() as f64).expect("layout");
        assert_eq!(layout.plaintext_length() as u64, plain.len() as u64);
    }
}
