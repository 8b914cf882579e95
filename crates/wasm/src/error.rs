//! Core errors as JavaScript `Error`s with a stable `code` property.

use tapeseal_core::Error;
use wasm_bindgen::JsValue;

/// The stable code for an error; callers switch on it instead of parsing messages.
pub(crate) fn code(error: &Error) -> &'static str {
    match error {
        Error::MalformedHeader(_) => "MALFORMED_HEADER",
        Error::UnsupportedVersion(_) => "UNSUPPORTED_VERSION",
        Error::UnsupportedSuite(_) => "UNSUPPORTED_SUITE",
        Error::IncompleteHeader { .. } => "INCOMPLETE_HEADER",
        Error::DecryptFailed => "DECRYPT_FAILED",
        Error::InvalidKey(_) => "INVALID_KEY",
        Error::InvalidDek => "INVALID_DEK",
        Error::InvalidParameter(_) => "INVALID_OPTIONS",
        Error::OutOfRange(_) => "OUT_OF_RANGE",
        Error::LimitExceeded(_) => "LIMIT_EXCEEDED",
        Error::InvalidState(_) => "INVALID_STATE",
        Error::WrapFailed => "WRAP_FAILED",
        _ => "INTERNAL",
    }
}

/// A JS `Error` with `message` and `code`.
pub(crate) fn js_error(code: &str, message: &str) -> JsValue {
    let error = js_sys::Error::new(message);
    let _ = js_sys::Reflect::set(&error, &"code".into(), &code.into());
    error.set_name("TapesealError");
    error.into()
}

/// Converts a core error.
pub(crate) fn from_core(error: Error) -> JsValue {
    js_error(code(&error), &error.to_string())
}

/// Invalid arguments from JavaScript (wrong types, unknown option names).
pub(crate) fn invalid_options(message: &str) -> JsValue {
    js_error("INVALID_OPTIONS", message)
}
