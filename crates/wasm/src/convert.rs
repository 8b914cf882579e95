//! Conversions at the JS boundary: DEKs, KEKs, options and inspection results. DEKs
//! are copied straight from the caller's `Uint8Array` or base64 string into a
//! zeroizing buffer, so no stray copy stays in wasm memory.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use js_sys::{Reflect, Uint8Array};
use serde::{Deserialize, Serialize};
use tapeseal_core::{
    DEK_LEN, Dek, ErrorCode, Header, Inspection, KekPublicKey, MediaKind, Recipient, SealParams,
    WrapAlgorithm,
};
use wasm_bindgen::{JsCast, JsValue};
use zeroize::Zeroizing;

use crate::error::{from_core, invalid_parameter, js_error};

/// A DEK from a 32-byte `Uint8Array` or a base64 string.
pub(crate) fn dek_from_js(value: &JsValue) -> Result<Dek, JsValue> {
    let bad = || {
        js_error(
            ErrorCode::InvalidDek,
            "a DEK is a 32-byte Uint8Array or its base64 string",
        )
    };
    if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
        if bytes.length() as usize != DEK_LEN {
            return Err(bad());
        }
        let mut buf = Zeroizing::new([0u8; DEK_LEN]);
        bytes.copy_to(buf.as_mut());
        return Ok(Dek::from_bytes(*buf));
    }
    if let Some(text) = value.as_string() {
        let text = Zeroizing::new(text);
        let decoded = Zeroizing::new(B64.decode(text.trim()).map_err(|_| bad())?);
        return Dek::from_slice(&decoded).map_err(|_| bad());
    }
    Err(bad())
}

/// A KEK public key from PEM text or DER bytes.
pub(crate) fn kek_from_js(value: &JsValue) -> Result<KekPublicKey, JsValue> {
    if let Some(pem) = value.as_string() {
        return KekPublicKey::from_pem(&pem).map_err(from_core);
    }
    if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
        return KekPublicKey::from_pem_or_der(&bytes.to_vec()).map_err(from_core);
    }
    Err(js_error(
        ErrorCode::InvalidKey,
        "a KEK public key is a PEM string or DER bytes (Uint8Array)",
    ))
}

/// `SealOptions` as JavaScript passes them, except `dek`, which [`dek_option`] reads
/// straight into zeroizing memory.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SealOptionsJs {
    kek_id: String,
    org_id: String,
    recording_id: String,
    media_kind: String,
    content_type: String,
    #[serde(default)]
    encryption_context: BTreeMap<String, String>,
    chunk_size: Option<u32>,
    created_at: Option<f64>,
    wrap_algorithm: Option<String>,
}

/// Seal parameters, the recipient and, if the caller supplied one, the DEK.
pub(crate) struct SealSetup {
    pub(crate) params: SealParams,
    pub(crate) recipient: Recipient,
    pub(crate) dek: Option<Dek>,
}

/// The option names `SealOptionsJs` accepts, in their JavaScript spelling.
const SEAL_OPTION_NAMES: [&str; 10] = [
    "kekId",
    "orgId",
    "recordingId",
    "mediaKind",
    "contentType",
    "encryptionContext",
    "chunkSize",
    "createdAt",
    "wrapAlgorithm",
    "dek",
];

pub(crate) fn seal_setup(kek: &JsValue, options: &JsValue) -> Result<SealSetup, JsValue> {
    let key = kek_from_js(kek)?;
    let object = options
        .dyn_ref::<js_sys::Object>()
        .ok_or_else(|| invalid_parameter("seal options must be an object"))?;
    // serde-wasm-bindgen looks fields up by name, so it cannot see unknown ones: a
    // misspelt option would silently fall back to its default.
    for name in js_sys::Object::keys(object).iter() {
        let name = name.as_string().unwrap_or_default();
        if !SEAL_OPTION_NAMES.contains(&name.as_str()) {
            return Err(invalid_parameter(&format!(
                "unknown seal option '{name}' (known: {})",
                SEAL_OPTION_NAMES.join(", ")
            )));
        }
    }
    let opts: SealOptionsJs = serde_wasm_bindgen::from_value(options.clone())
        .map_err(|e| invalid_parameter(&format!("invalid seal options: {e}")))?;
    let media_kind = MediaKind::from_name(&opts.media_kind).ok_or_else(|| {
        invalid_parameter("mediaKind must be call, email, chat, message, transcript or other")
    })?;
    let algorithm = match opts.wrap_algorithm.as_deref() {
        None => WrapAlgorithm::default(),
        Some(name) => WrapAlgorithm::from_name(name).ok_or_else(|| {
            invalid_parameter("wrapAlgorithm must be rsa-oaep-sha256 or rsa-oaep-sha1")
        })?,
    };
    let created_at = match opts.created_at {
        Some(ms) => to_u64(ms, "createdAt (Unix milliseconds)")?,
        None => js_sys::Date::now() as u64,
    };
    let mut params = SealParams::new(
        opts.org_id,
        opts.recording_id,
        media_kind,
        opts.content_type,
        created_at,
    );
    params.context = opts.encryption_context;
    if let Some(chunk_size) = opts.chunk_size {
        params.chunk_size = chunk_size;
    }
    let dek = dek_option(options)?;
    Ok(SealSetup {
        params,
        recipient: Recipient::new(opts.kek_id, key).with_algorithm(algorithm),
        dek,
    })
}

fn dek_option(options: &JsValue) -> Result<Option<Dek>, JsValue> {
    let value = Reflect::get(options, &"dek".into()).unwrap_or(JsValue::UNDEFINED);
    if value.is_undefined() || value.is_null() {
        Ok(None)
    } else {
        dek_from_js(&value).map(Some)
    }
}

/// A JS number that must be a whole, non-negative, exactly representable length.
pub(crate) fn to_u64(value: f64, what: &str) -> Result<u64, JsValue> {
    if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= 9_007_199_254_740_991.0
    {
        Ok(value as u64)
    } else {
        Err(js_error(
            ErrorCode::OutOfRange,
            &format!("{what} must be a whole number between 0 and 2^53 - 1"),
        ))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StanzaJs {
    kek_id: String,
    algorithm: &'static str,
    wrapped_dek: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InspectionJs {
    version: u16,
    suite: u16,
    org_id: String,
    recording_id: String,
    media_kind: &'static str,
    content_type: String,
    created_at: f64,
    chunk_size: u32,
    encryption_context: BTreeMap<String, String>,
    stanzas: Vec<StanzaJs>,
    header_length: f64,
    payload_length: f64,
    plaintext_length: Option<f64>,
    chunk_count: Option<f64>,
}

fn header_js(
    header: &Header,
    payload_len: u64,
    layout: Option<tapeseal_core::Layout>,
) -> InspectionJs {
    InspectionJs {
        version: header.version(),
        suite: header.suite(),
        org_id: header.org_id().to_string(),
        recording_id: header.recording_id().to_string(),
        media_kind: header.media_kind().name(),
        content_type: header.content_type().to_string(),
        created_at: header.created_at_ms() as f64,
        chunk_size: header.chunk_size(),
        encryption_context: header.context().clone(),
        stanzas: header
            .stanzas()
            .iter()
            .map(|s| StanzaJs {
                kek_id: s.kek_id.clone(),
                algorithm: s.algorithm.name(),
                wrapped_dek: B64.encode(&s.wrapped_dek),
            })
            .collect(),
        header_length: header.header_len() as f64,
        payload_length: payload_len as f64,
        plaintext_length: layout.map(|l| l.plaintext_len() as f64),
        chunk_count: layout.map(|l| l.chunk_count() as f64),
    }
}

/// An inspection as a plain JS object.
pub(crate) fn inspection_to_js(info: &Inspection) -> Result<JsValue, JsValue> {
    to_js(&header_js(&info.header, info.payload_len, info.layout))
}

/// A header (no payload information) as a plain JS object.
pub(crate) fn header_to_js(header: &Header) -> Result<JsValue, JsValue> {
    to_js(&header_js(header, 0, None))
}

pub(crate) fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true))
        .map_err(|e| {
            js_error(
                ErrorCode::Internal,
                &format!("cannot build the result object: {e}"),
            )
        })
}
