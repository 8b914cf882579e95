//! The npm package's error codes are the core's list, spelt for JavaScript, and the
//! errors it throws carry them (run in Node and headless Chromium like vectors.rs).
#![cfg(target_arch = "wasm32")]

use js_sys::Reflect;
use tapeseal_core::ErrorCode;
use tapeseal_wasm::{error_codes, inspect, open};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
fn error_codes_are_every_core_code_in_screaming_snake_case() {
    let codes = error_codes();
    assert_eq!(codes.len(), ErrorCode::ALL.len());
    for (code, js) in ErrorCode::ALL.iter().zip(&codes) {
        assert_eq!(*js, code.name().to_ascii_uppercase());
        assert_eq!(ErrorCode::from_name(&js.to_ascii_lowercase()), Some(*code));
    }
}

/// The core code of a thrown error; `None` if its `code` is not one.
fn code_of(error: &JsValue) -> Option<ErrorCode> {
    let code = Reflect::get(error, &"code".into())
        .ok()
        .and_then(|c| c.as_string())
        .unwrap_or_default();
    let name = Reflect::get(error, &"name".into())
        .ok()
        .and_then(|n| n.as_string());
    assert_eq!(name.as_deref(), Some("TapesealError"), "{error:?}");
    ErrorCode::from_name(&code.to_ascii_lowercase())
}

#[wasm_bindgen_test]
fn thrown_errors_carry_a_listed_code() {
    let dek = JsValue::from(js_sys::Uint8Array::new_with_length(32));
    let not_envelope = b"definitely not an envelope";
    let err = open(not_envelope, dek).expect_err("not an envelope");
    assert_eq!(code_of(&err), Some(ErrorCode::MalformedHeader));
    let err = inspect(&not_envelope[..5]).expect_err("too short");
    assert_eq!(code_of(&err), Some(ErrorCode::IncompleteHeader));
    let err = open(not_envelope, JsValue::from(42)).expect_err("not a DEK");
    assert_eq!(code_of(&err), Some(ErrorCode::InvalidDek));
}
