//! Core errors as JavaScript `Error`s with a stable `code` property.
//!
//! The only mapping from [`ErrorCode`] to JavaScript is [`js_code`]: the
//! SCREAMING_SNAKE_CASE spelling of the code's name. It covers every code, including
//! ones added to the core later, with no table to forget.

use tapeseal_core::{Error, ErrorCode};
use wasm_bindgen::JsValue;

/// The JavaScript `error.code` of a code, such as `"DECRYPT_FAILED"`.
pub(crate) fn js_code(code: ErrorCode) -> String {
    code.name().to_ascii_uppercase()
}

/// A JS `Error` named `TapesealError` with `message` and `code`.
pub(crate) fn js_error(code: ErrorCode, message: &str) -> JsValue {
    let error = js_sys::Error::new(message);
    let _ = js_sys::Reflect::set(&error, &"code".into(), &js_code(code).into());
    error.set_name("TapesealError");
    error.into()
}

/// Converts a core error.
pub(crate) fn from_core(error: Error) -> JsValue {
    js_error(error.code(), &error.to_string())
}

/// Invalid arguments from JavaScript (wrong types, unknown option names).
pub(crate) fn invalid_parameter(message: &str) -> JsValue {
    js_error(ErrorCode::InvalidParameter, message)
}
