//! `tapeseal-wasm`: the JavaScript face of `tapeseal-core`, published as the npm
//! package `tapeseal`. It holds no format logic: every function converts arguments,
//! calls the core and converts the result or error. Errors reach JavaScript as
//! `Error`s with a stable `code`; nothing here panics on any input.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod convert;
mod detached;
mod error;

use js_sys::Uint8Array;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::Serialize;
use tapeseal_core::{Dek, ErrorCode, Header, Layout as CoreLayout};
use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

pub use crate::detached::{DetachedChunks, DetachedStream, webcrypto_error};

use crate::convert::{dek_from_js, header_to_js, inspection_to_js, seal_setup, to_js, to_u64};
use crate::error::{from_core, js_code, js_error};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** What kind of recording an envelope holds. */
export type MediaKind = "call" | "email" | "chat" | "message" | "transcript" | "other";
/** How the DEK is wrapped for the KEK. */
export type WrapAlgorithm = "rsa-oaep-sha256" | "rsa-oaep-sha1";
/** A 32-byte DEK, as bytes or base64. */
export type DekInput = Uint8Array | string;
/** A KEK public key: PEM text ("PUBLIC KEY" or "RSA PUBLIC KEY") or DER bytes. */
export type KekInput = string | Uint8Array;

/** Options for `seal` and `new Sealer`. */
export interface SealOptions {
  kekId: string;
  orgId: string;
  recordingId: string;
  mediaKind: MediaKind;
  /** MIME type of the plaintext, for example "audio/wav". */
  contentType: string;
  /** Authenticated, unencrypted metadata (at most 64 entries). */
  encryptionContext?: Record<string, string>;
  /** Plaintext bytes per chunk, 16 to 16 MiB; default 65536. */
  chunkSize?: number;
  /** Creation time in Unix milliseconds; default Date.now(). */
  createdAt?: number;
  /** Default "rsa-oaep-sha256"; "rsa-oaep-sha1" for Genesys-style LKMs. */
  wrapAlgorithm?: WrapAlgorithm;
  /** Seal under this DEK instead of a fresh one. */
  dek?: DekInput;
}

/** One key stanza: which KEK can unwrap the DEK. */
export interface StanzaInfo {
  kekId: string;
  algorithm: WrapAlgorithm;
  /** The wrapped DEK, base64: what an LKM's decrypt endpoint takes as `body`. */
  wrappedDek: string;
}

/** What `inspect` reports. Nothing here is authenticated until a DEK opens the envelope. */
export interface Inspection {
  version: number;
  suite: number;
  orgId: string;
  recordingId: string;
  mediaKind: MediaKind;
  contentType: string;
  createdAt: number;
  chunkSize: number;
  encryptionContext: Record<string, string>;
  stanzas: StanzaInfo[];
  headerLength: number;
  /** Bytes after the header in what was inspected (0 for a bare header). */
  payloadLength: number;
  /** Present when the bytes are a whole envelope of a valid length. */
  plaintextLength?: number;
  chunkCount?: number;
}

/** A byte range `[start, end)` of the envelope to fetch, and the chunks it holds. */
export interface ByteRange {
  start: number;
  end: number;
  firstChunk: number;
  /** Inclusive. */
  lastChunk: number;
}

/**
 * The stable `code` of a tapeseal error: one list shared with the server's JSON errors
 * and the CLI (docs/ERRORS.md), in that order. The package itself throws only some of
 * them; `errorCodes()` returns them all.
 */
export type TapesealErrorCode =
  | "MALFORMED_HEADER"
  | "UNSUPPORTED_VERSION"
  | "UNSUPPORTED_SUITE"
  | "INCOMPLETE_HEADER"
  | "DECRYPT_FAILED"
  | "INVALID_KEY"
  | "INVALID_DEK"
  | "INVALID_PARAMETER"
  | "OUT_OF_RANGE"
  | "FORMAT_LIMIT"
  | "INVALID_STATE"
  | "WRAP_FAILED"
  | "RANDOM_UNAVAILABLE"
  | "RESOURCE_LIMIT"
  | "BUSY"
  | "TIMEOUT"
  | "UNAVAILABLE"
  | "UNKNOWN_KEY"
  | "KEK_IN_USE"
  | "KEY_SERVICE_UNAVAILABLE"
  | "KEY_REFUSED"
  | "KEY_SERVICE_FAILED"
  | "BAD_REQUEST"
  | "UNAUTHORIZED"
  | "FORBIDDEN"
  | "NOT_FOUND"
  | "METHOD_NOT_ALLOWED"
  | "PAYLOAD_TOO_LARGE"
  | "RANGE_NOT_SATISFIABLE"
  | "CONFLICT"
  | "UNSUPPORTED_MEDIA_TYPE"
  | "UNREADABLE_RECORDING"
  | "IO"
  | "INTERNAL";

/** An error thrown by tapeseal: an `Error` named "TapesealError" with a stable `code`. */
export interface TapesealError extends Error {
  name: "TapesealError";
  code: TapesealErrorCode;
}
"#;

/// A CSPRNG for one call: ChaCha20 seeded from the platform (crypto.getRandomValues).
fn rng() -> Result<ChaCha20Rng, JsValue> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).map_err(|e| {
        js_error(
            ErrorCode::RandomUnavailable,
            &format!("no secure random source: {e}"),
        )
    })?;
    Ok(ChaCha20Rng::from_seed(*seed))
}

fn bytes_out(bytes: &[u8]) -> Uint8Array {
    Uint8Array::from(bytes)
}

/// Generates a fresh 32-byte DEK.
#[wasm_bindgen(js_name = generateDek)]
pub fn generate_dek() -> Result<Uint8Array, JsValue> {
    let dek = Dek::generate(&mut rng()?);
    Ok(bytes_out(dek.as_bytes()))
}

/// Every `code` a tapeseal error can carry, in the order of docs/ERRORS.md: the
/// codes this package throws and those only the server or the CLI report.
#[wasm_bindgen(js_name = errorCodes, unchecked_return_type = "TapesealErrorCode[]")]
pub fn error_codes() -> Vec<String> {
    ErrorCode::ALL.iter().map(|&code| js_code(code)).collect()
}

/// Seals a whole recording for one KEK. Returns the envelope.
#[wasm_bindgen]
pub fn seal(
    plaintext: &[u8],
    #[wasm_bindgen(unchecked_param_type = "KekInput")] kek_public_key: JsValue,
    #[wasm_bindgen(unchecked_param_type = "SealOptions")] options: JsValue,
) -> Result<Vec<u8>, JsValue> {
    let mut rng = rng()?;
    let setup = seal_setup(&kek_public_key, &options)?;
    let dek = match setup.dek {
        Some(dek) => dek,
        None => Dek::generate(&mut rng),
    };
    tapeseal_core::seal(&mut rng, &dek, &setup.params, &[setup.recipient], plaintext)
        .map_err(from_core)
}

/// Opens a whole envelope with its DEK. Returns the plaintext, or throws
/// `DECRYPT_FAILED` without saying which check refused it.
#[wasm_bindgen]
pub fn open(
    envelope: &[u8],
    #[wasm_bindgen(unchecked_param_type = "DekInput")] dek: JsValue,
) -> Result<Vec<u8>, JsValue> {
    let dek = dek_from_js(&dek)?;
    tapeseal_core::open(envelope, &dek).map_err(from_core)
}

/// Reads a header, or a whole envelope, without any key.
#[wasm_bindgen(unchecked_return_type = "Inspection")]
pub fn inspect(envelope_or_header: &[u8]) -> Result<JsValue, JsValue> {
    let info = tapeseal_core::inspect(envelope_or_header).map_err(from_core)?;
    inspection_to_js(&info)
}

/// The total header length declared by the first 14 bytes of an envelope: fetch this
/// many bytes to have the whole header.
#[wasm_bindgen(js_name = headerLength)]
pub fn header_length(prefix: &[u8]) -> Result<f64, JsValue> {
    tapeseal_core::header::header_len(prefix)
        .map(|n| n as f64)
        .map_err(from_core)
}

/// Streaming encryption: `push` plaintext as it is produced, write out what it returns,
/// then `finish`.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Sealer {
    inner: Option<tapeseal_core::Sealer>,
}

#[wasm_bindgen]
impl Sealer {
    /// Starts an envelope for the KEK.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "KekInput")] kek_public_key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "SealOptions")] options: JsValue,
    ) -> Result<Sealer, JsValue> {
        let mut rng = rng()?;
        let setup = seal_setup(&kek_public_key, &options)?;
        let dek = match setup.dek {
            Some(dek) => dek,
            None => Dek::generate(&mut rng),
        };
        let inner = tapeseal_core::Sealer::new(&mut rng, &dek, &setup.params, &[setup.recipient])
            .map_err(from_core)?;
        Ok(Sealer { inner: Some(inner) })
    }

    /// Takes plaintext; returns the envelope bytes that are now final (the header
    /// first, then whole chunks). May return an empty array.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<u8>, JsValue> {
        let inner = self.inner.as_mut().ok_or_else(finished)?;
        let mut out = Vec::with_capacity(bytes.len() + 1024);
        inner.push(bytes, &mut out).map_err(from_core)?;
        Ok(out)
    }

    /// Seals the final chunk; returns the rest of the envelope. The sealer is done.
    pub fn finish(&mut self) -> Result<Vec<u8>, JsValue> {
        let inner = self.inner.take().ok_or_else(finished)?;
        let mut out = Vec::new();
        inner.finish(&mut out).map_err(from_core)?;
        Ok(out)
    }

    /// The envelope's header, as `inspect` describes it.
    #[wasm_bindgen(getter, unchecked_return_type = "Inspection")]
    pub fn header(&self) -> Result<JsValue, JsValue> {
        let inner = self.inner.as_ref().ok_or_else(finished)?;
        header_to_js(inner.header())
    }
}

pub(crate) fn finished() -> JsValue {
    js_error(ErrorCode::InvalidState, "this object has already finished")
}

/// Decryption with a DEK, streaming or by chunk.
///
/// `new Opener(dek)` decrypts a stream: `push` envelope bytes in order, get back only
/// authenticated plaintext, and `finish` to check the stream was complete.
/// `Opener.forHeader(header, dek, envelopeLength)` opens any chunk on its own
/// (`openChunk`), for seeking and HTTP Range playback.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Opener {
    mode: OpenerMode,
}

#[derive(Debug)]
enum OpenerMode {
    Stream(tapeseal_core::Opener),
    Chunks(Box<Chunks<tapeseal_core::Decryptor>>),
    Finished,
}

/// Random access to the chunks of one envelope: what opens them (`T`: the core's
/// `Decryptor`, or a `VerifiedHeader` for the WebCrypto path) and where they sit.
#[derive(Debug)]
pub(crate) struct Chunks<T> {
    pub(crate) opener: T,
    pub(crate) layout: CoreLayout,
}

impl<T> Chunks<T> {
    /// What `forHeader` checks, in this order: the DEK, the header, the envelope
    /// length, then the DEK against the header (`verify`).
    pub(crate) fn for_header(
        header: &[u8],
        dek: &JsValue,
        envelope_length: f64,
        verify: impl FnOnce(Header, &Dek) -> tapeseal_core::Result<T>,
    ) -> Result<Self, JsValue> {
        let dek = dek_from_js(dek)?;
        let header = Header::parse(header).map_err(from_core)?;
        let layout = CoreLayout::new(&header, to_u64(envelope_length, "envelopeLength")?)
            .map_err(from_core)?;
        let opener = verify(header, &dek).map_err(from_core)?;
        Ok(Self { opener, layout })
    }

    /// A chunk index from JavaScript: a whole number below the chunk count.
    pub(crate) fn index(&self, index: f64) -> Result<u64, JsValue> {
        let index = to_u64(index, "index")?;
        if index >= self.layout.chunk_count() {
            return Err(js_error(
                ErrorCode::OutOfRange,
                "chunk index past the last chunk",
            ));
        }
        Ok(index)
    }
}

#[wasm_bindgen]
impl Opener {
    /// A streaming opener for envelopes sealed under `dek`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "DekInput")] dek: JsValue,
    ) -> Result<Opener, JsValue> {
        let dek = dek_from_js(&dek)?;
        Ok(Opener {
            mode: OpenerMode::Stream(tapeseal_core::Opener::new(&dek)),
        })
    }

    /// A random-access opener: verifies `dek` against `header` (the first
    /// `headerLength` bytes, or more) of an envelope of `envelopeLength` bytes.
    #[wasm_bindgen(js_name = forHeader)]
    pub fn for_header(
        header: &[u8],
        #[wasm_bindgen(unchecked_param_type = "DekInput")] dek: JsValue,
        #[wasm_bindgen(js_name = envelopeLength)] envelope_length: f64,
    ) -> Result<Opener, JsValue> {
        let chunks =
            Chunks::for_header(header, &dek, envelope_length, tapeseal_core::Decryptor::new)?;
        Ok(Opener {
            mode: OpenerMode::Chunks(Box::new(chunks)),
        })
    }

    /// Streaming: takes envelope bytes; returns the plaintext of every chunk that is
    /// now authenticated and known not to be the last. May return an empty array.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<u8>, JsValue> {
        match &mut self.mode {
            OpenerMode::Stream(opener) => {
                let mut out = Vec::with_capacity(bytes.len());
                opener.push(bytes, &mut out).map_err(from_core)?;
                Ok(out)
            }
            OpenerMode::Chunks(_) => Err(wrong_mode("push")),
            OpenerMode::Finished => Err(finished()),
        }
    }

    /// Streaming: opens the final chunk and returns its plaintext. Throws
    /// `DECRYPT_FAILED` if the stream was truncated or has trailing bytes.
    pub fn finish(&mut self) -> Result<Vec<u8>, JsValue> {
        match std::mem::replace(&mut self.mode, OpenerMode::Finished) {
            OpenerMode::Stream(opener) => {
                let mut out = Vec::new();
                opener.finish(&mut out).map_err(from_core)?;
                Ok(out)
            }
            chunks @ OpenerMode::Chunks(_) => {
                self.mode = chunks;
                Err(wrong_mode("finish"))
            }
            OpenerMode::Finished => Err(finished()),
        }
    }

    /// Random access: opens chunk `index` from exactly the bytes
    /// `layout.chunkRange(index)` names.
    #[wasm_bindgen(js_name = openChunk)]
    pub fn open_chunk(&self, index: f64, chunk: &[u8]) -> Result<Vec<u8>, JsValue> {
        match &self.mode {
            OpenerMode::Chunks(chunks) => {
                let index = chunks.index(index)?;
                chunks
                    .opener
                    .open_chunk(index, chunk, chunks.layout.is_last(index))
                    .map_err(from_core)
            }
            _ => Err(wrong_mode("openChunk")),
        }
    }

    /// Random access: the envelope's geometry.
    #[wasm_bindgen(getter)]
    pub fn layout(&self) -> Result<Layout, JsValue> {
        match &self.mode {
            OpenerMode::Chunks(chunks) => Ok(Layout {
                inner: chunks.layout,
            }),
            _ => Err(wrong_mode("layout")),
        }
    }
}

fn wrong_mode(method: &str) -> JsValue {
    js_error(
        ErrorCode::InvalidState,
        &format!(
            "{method} belongs to the other kind of Opener: new Opener(dek) streams (push, finish); Opener.forHeader(...) opens chunks (openChunk, layout)"
        ),
    )
}

/// Where every chunk of an envelope sits. Needs no key: a player can plan its HTTP
/// Range requests from the header and the envelope's length alone.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Layout {
    pub(crate) inner: CoreLayout,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ByteRangeJs {
    start: f64,
    end: f64,
    first_chunk: f64,
    last_chunk: f64,
}

#[wasm_bindgen]
impl Layout {
    /// The layout of an envelope of `envelopeLength` bytes that starts with `header`.
    #[wasm_bindgen(js_name = fromHeader)]
    pub fn from_header(
        header: &[u8],
        #[wasm_bindgen(js_name = envelopeLength)] envelope_length: f64,
    ) -> Result<Layout, JsValue> {
        let header = Header::parse(header).map_err(from_core)?;
        let inner = CoreLayout::new(&header, to_u64(envelope_length, "envelopeLength")?)
            .map_err(from_core)?;
        Ok(Layout { inner })
    }

    /// Number of chunks.
    #[wasm_bindgen(getter, js_name = chunkCount)]
    pub fn chunk_count(&self) -> f64 {
        self.inner.chunk_count() as f64
    }

    /// Plaintext length in bytes.
    #[wasm_bindgen(getter, js_name = plaintextLength)]
    pub fn plaintext_length(&self) -> f64 {
        self.inner.plaintext_len() as f64
    }

    /// Header length in bytes.
    #[wasm_bindgen(getter, js_name = headerLength)]
    pub fn header_length(&self) -> f64 {
        self.inner.header_len() as f64
    }

    /// Plaintext bytes per chunk.
    #[wasm_bindgen(getter, js_name = chunkSize)]
    pub fn chunk_size(&self) -> f64 {
        self.inner.chunk_size() as f64
    }

    /// Total envelope length.
    #[wasm_bindgen(getter, js_name = envelopeLength)]
    pub fn envelope_length(&self) -> f64 {
        self.inner.envelope_len() as f64
    }

    /// The envelope bytes `[start, end)` holding chunk `index`.
    #[wasm_bindgen(js_name = chunkRange, unchecked_return_type = "ByteRange")]
    pub fn chunk_range(&self, index: f64) -> Result<JsValue, JsValue> {
        let index = to_u64(index, "index")?;
        let range = self.inner.chunk_range(index).map_err(from_core)?;
        to_js(&ByteRangeJs {
            start: range.start as f64,
            end: range.end as f64,
            first_chunk: index as f64,
            last_chunk: index as f64,
        })
    }

    /// The envelope bytes to fetch to decrypt plaintext bytes `[start, end)`.
    #[wasm_bindgen(js_name = byteRange, unchecked_return_type = "ByteRange")]
    pub fn byte_range(&self, start: f64, end: f64) -> Result<JsValue, JsValue> {
        let range = to_u64(start, "start")?..to_u64(end, "end")?;
        let chunks = self.inner.chunks_for(range.clone()).map_err(from_core)?;
        let (bytes, _) = self.inner.ciphertext_range_for(range).map_err(from_core)?;
        to_js(&ByteRangeJs {
            start: bytes.start as f64,
            end: bytes.end as f64,
            first_chunk: chunks.start as f64,
            last_chunk: (chunks.end - 1) as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use tapeseal_core::ErrorCode;

    use crate::error::js_code;

    /// The JS spelling of every code, in `ErrorCode::ALL` order.
    fn js_codes() -> Vec<String> {
        ErrorCode::ALL.iter().map(|&code| js_code(code)).collect()
    }

    #[test]
    fn js_codes_are_unique_screaming_snake_spellings_of_the_names() {
        let codes = js_codes();
        for (code, js) in ErrorCode::ALL.iter().zip(&codes) {
            assert_eq!(js.to_ascii_lowercase(), code.name());
            assert!(
                js.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{js}"
            );
            assert_eq!(codes.iter().filter(|other| *other == js).count(), 1, "{js}");
        }
    }

    #[test]
    fn the_typescript_union_lists_every_code_in_order() {
        // The TypeScript section is consumed by #[wasm_bindgen], so read its source.
        let union: Vec<String> = include_str!("lib.rs")
            .lines()
            .skip_while(|line| !line.starts_with("export type TapesealErrorCode ="))
            .skip(1)
            .map_while(|line| line.trim().strip_prefix("| "))
            .map(|member| member.trim_end_matches(';').trim_matches('"').to_string())
            .collect();
        assert_eq!(union, js_codes());
    }

    #[test]
    fn the_package_readme_names_only_real_codes() {
        let readme = include_str!("../js/npm/README.md");
        let table: Vec<&str> = readme
            .lines()
            .skip_while(|line| !line.starts_with("## Errors"))
            .filter(|line| line.starts_with("| `"))
            .collect();
        assert!(!table.is_empty(), "the README has an error table");
        let codes = js_codes();
        for row in table {
            let first = row.split('|').nth(1).unwrap_or_default();
            for code in first.split('`').skip(1).step_by(2) {
                assert!(codes.iter().any(|c| c == code), "README names {code}");
            }
        }
    }
}
