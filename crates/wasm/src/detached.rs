//! The WebCrypto path's half in WebAssembly. The package's `openAsync`, `AsyncOpener`
//! and `AsyncChunkOpener` (js/npm/webcrypto.js) only import the payload key into
//! `crypto.subtle` and run `crypto.subtle.decrypt`; the header, the DEK check, the
//! payload key, the framing, nonces and AAD and every error come from here, through
//! the core's detached API. These exports are that file's, not the package's API: the
//! TypeScript declarations leave them out.

use js_sys::{Array, Object, Reflect, Uint8Array};
use tapeseal_core::header::MAX_HEADER_LEN;
use tapeseal_core::{ChunkParams, Dek, Error, ErrorCode, Framer, VerifiedHeader};
use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

use crate::convert::{dek_from_js, to_u64};
use crate::error::{from_core, js_code, js_error};
use crate::{Chunks, Layout, finished};

fn set(target: &Object, key: &str, value: &JsValue) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(target, &key.into(), value);
}

/// What `crypto.subtle.decrypt` takes for one chunk besides the key and the bytes:
/// `{index, iv, additionalData}`.
fn job(params: &ChunkParams) -> Object {
    let job = Object::new();
    set(&job, "index", &(params.index() as f64).into());
    set(&job, "iv", &Uint8Array::from(&params.nonce()[..]).into());
    set(
        &job,
        "additionalData",
        &Uint8Array::from(params.aad()).into(),
    );
    job
}

/// The payload key as a new JavaScript array, which the caller imports and zeroes;
/// the Rust copy is zeroized when `key` drops.
fn key_to_js(key: Option<Zeroizing<[u8; 32]>>) -> JsValue {
    key.map_or(JsValue::UNDEFINED, |key| Uint8Array::from(&key[..]).into())
}

/// The chunks of one envelope, for `openAsync` (`forEnvelope`) and
/// `AsyncChunkOpener` (`forHeader`).
#[wasm_bindgen(skip_typescript)]
#[derive(Debug)]
pub struct DetachedChunks {
    inner: Chunks<VerifiedHeader>,
}

#[wasm_bindgen]
impl DetachedChunks {
    /// A whole envelope, with exactly the checks and errors of `open`. Copies only the
    /// header into WebAssembly memory; the chunks stay where they are.
    #[wasm_bindgen(js_name = forEnvelope)]
    pub fn for_envelope(envelope: &Uint8Array, dek: JsValue) -> Result<DetachedChunks, JsValue> {
        let dek = dek_from_js(&dek)?;
        let length = envelope.length();
        let start = envelope
            .subarray(0, length.min(MAX_HEADER_LEN as u32))
            .to_vec();
        let (opener, layout) =
            VerifiedHeader::for_envelope(&start, u64::from(length), &dek).map_err(from_core)?;
        Ok(DetachedChunks {
            inner: Chunks { opener, layout },
        })
    }

    /// Random access, with exactly the checks and errors of `Opener.forHeader`.
    #[wasm_bindgen(js_name = forHeader)]
    pub fn for_header(
        header: &[u8],
        dek: JsValue,
        envelope_length: f64,
    ) -> Result<DetachedChunks, JsValue> {
        let inner = Chunks::for_header(header, &dek, envelope_length, VerifiedHeader::new)?;
        Ok(DetachedChunks { inner })
    }

    /// The payload key (a new `Uint8Array`) the first time, then `undefined`.
    #[wasm_bindgen(js_name = takeKey)]
    pub fn take_key(&mut self) -> JsValue {
        key_to_js(self.inner.opener.take_payload_key())
    }

    /// Every chunk of a whole envelope, as `open` opens them: the job, its envelope
    /// bytes `[start, end)` and where its plaintext goes (`at`).
    pub fn jobs(&self) -> Result<Array, JsValue> {
        let Chunks { opener, layout } = &self.inner;
        let jobs = Array::new();
        for index in 0..layout.chunk_count() {
            let range = layout.chunk_range(index).map_err(from_core)?;
            let sealed_len =
                usize::try_from(range.end - range.start).map_err(|_| decrypt_failed())?;
            let params = opener
                .chunk(index, sealed_len, layout.is_last(index))
                .map_err(from_core)?;
            let plain = layout.chunk_plaintext_range(index).map_err(from_core)?;
            let job = job(&params);
            set(&job, "start", &(range.start as f64).into());
            set(&job, "end", &(range.end as f64).into());
            set(&job, "at", &(plain.start as f64).into());
            jobs.push(&job);
        }
        Ok(jobs)
    }

    /// The job for chunk `index` of `sealedLength` bytes, with exactly the checks and
    /// errors of `Opener.openChunk` before its AES-GCM.
    pub fn job(&self, index: f64, sealed_length: f64) -> Result<JsValue, JsValue> {
        let index = self.inner.index(index)?;
        let sealed_len = usize::try_from(to_u64(sealed_length, "sealedLength")?)
            .map_err(|_| decrypt_failed())?;
        let params = self
            .inner
            .opener
            .chunk(index, sealed_len, self.inner.layout.is_last(index))
            .map_err(from_core)?;
        Ok(job(&params).into())
    }

    /// The envelope's geometry.
    #[wasm_bindgen(getter)]
    pub fn layout(&self) -> Layout {
        Layout {
            inner: self.inner.layout,
        }
    }

    /// Plaintext length of the whole envelope.
    #[wasm_bindgen(getter, js_name = plaintextLength)]
    pub fn plaintext_length(&self) -> f64 {
        self.inner.layout.plaintext_len() as f64
    }
}

/// A streaming opener's framer, for `AsyncOpener`: `push` and `finish` return
/// `{key, jobs}`, where `key` is the payload key once the header has been verified and
/// `jobs` the chunks now known to be whole, each with its `sealed` bytes. The rules
/// are `Opener`'s: the core's one framer cuts both streams.
#[wasm_bindgen(skip_typescript)]
#[derive(Debug)]
pub struct DetachedStream {
    dek: Dek,
    framer: Option<Framer<VerifiedHeader>>,
}

#[wasm_bindgen]
impl DetachedStream {
    /// A stream for envelopes sealed under `dek`.
    #[wasm_bindgen(constructor)]
    pub fn new(dek: JsValue) -> Result<DetachedStream, JsValue> {
        Ok(DetachedStream {
            dek: dek_from_js(&dek)?,
            framer: Some(Framer::new()),
        })
    }

    /// Takes envelope bytes.
    pub fn push(&mut self, bytes: &[u8]) -> Result<JsValue, JsValue> {
        let framer = self.framer.as_mut().ok_or_else(finished)?;
        let dek = &self.dek;
        let mut key = None;
        let jobs = Array::new();
        framer
            .push(
                bytes,
                |header| {
                    let mut verified = VerifiedHeader::new(header, dek)?;
                    key = verified.take_payload_key();
                    Ok(verified)
                },
                |_, chunk| {
                    let job = job(chunk.params());
                    set(&job, "sealed", &Uint8Array::from(chunk.sealed()).into());
                    jobs.push(&job);
                    Ok(())
                },
            )
            .map_err(from_core)?;
        Ok(frames(key_to_js(key), jobs))
    }

    /// Ends the stream: the final chunk's job. The stream is done, whatever happens.
    pub fn finish(&mut self) -> Result<JsValue, JsValue> {
        let framer = self.framer.take().ok_or_else(finished)?;
        let last = framer
            .finish(|_, chunk| {
                let job = job(chunk.params());
                set(&job, "sealed", &Uint8Array::from(chunk.sealed()).into());
                Ok(job)
            })
            .map_err(from_core)?;
        Ok(frames(JsValue::UNDEFINED, Array::of1(&last)))
    }

    /// Records a failure of the stream's WebCrypto half (a chunk that did not
    /// decrypt), so that the stream refuses all further input as `Opener` does after
    /// its first error. Returns `error`.
    pub fn fail(&mut self, error: JsValue) -> JsValue {
        let code = Reflect::get(&error, &"code".into())
            .ok()
            .and_then(|c| c.as_string());
        if code == Some(js_code(ErrorCode::DecryptFailed))
            && let Some(framer) = &mut self.framer
        {
            framer.fail(Error::DecryptFailed);
        }
        error
    }
}

fn frames(key: JsValue, jobs: Array) -> JsValue {
    let frames = Object::new();
    set(&frames, "key", &key);
    set(&frames, "jobs", &jobs);
    frames.into()
}

fn decrypt_failed() -> JsValue {
    from_core(Error::DecryptFailed)
}

/// The tapeseal error for a failed WebCrypto call (`operation`: "importKey" or
/// "decrypt"). A `decrypt` that fails (an `OperationError`: the tag did not verify)
/// is exactly what the synchronous path reports when its AES-GCM refuses a chunk,
/// `DECRYPT_FAILED`. No `crypto.subtle` at all (`error` undefined) is `UNAVAILABLE`;
/// anything else `INTERNAL`. A tapeseal error passes through unchanged.
#[wasm_bindgen(js_name = webCryptoError, skip_typescript)]
pub fn webcrypto_error(error: JsValue, operation: &str) -> JsValue {
    let name = Reflect::get(&error, &"name".into())
        .ok()
        .and_then(|n| n.as_string());
    if name.as_deref() == Some("TapesealError") {
        return error;
    }
    if error.is_undefined() {
        return js_error(
            ErrorCode::Unavailable,
            "crypto.subtle is not available here (WebCrypto needs a secure context: HTTPS or localhost); the synchronous API works without it",
        );
    }
    if operation == "decrypt" {
        return decrypt_failed();
    }
    let message = Reflect::get(&error, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_default();
    js_error(
        ErrorCode::Internal,
        &format!(
            "WebCrypto {operation} failed: {}: {message}",
            name.unwrap_or_default()
        ),
    )
}
