//! WIT types to and from the core's types.

use std::collections::BTreeMap;
use std::ops::Range;

use tapeseal_core::{
    Dek, ErrorCode as Code, KekPublicKey, MediaKind as CoreKind, WrapAlgorithm as CoreWrap,
};
use zeroize::Zeroizing;

use crate::bindings::exports::tapeseal::core::envelope::{
    ByteRange, Error, ErrorCode, HeaderInfo, Inspection, MediaKind, Recipient, SealParams, Stanza,
    WrapAlgorithm,
};

/// The WIT `error-code` of every core code, at the code's position in
/// [`Code::ALL`]. The array's length is `Code::ALL.len()`, so a code added to the core
/// without a WIT case here does not compile; the check below proves every entry sits
/// at its own position in the WIT enum, whose cases tapeseal-core's tests compare,
/// name by name and in order, with `Code::ALL`. So no code can fall back to another.
const WIT_CODES: [ErrorCode; Code::ALL.len()] = [
    ErrorCode::MalformedHeader,
    ErrorCode::UnsupportedVersion,
    ErrorCode::UnsupportedSuite,
    ErrorCode::IncompleteHeader,
    ErrorCode::DecryptFailed,
    ErrorCode::InvalidKey,
    ErrorCode::InvalidDek,
    ErrorCode::InvalidParameter,
    ErrorCode::OutOfRange,
    ErrorCode::FormatLimit,
    ErrorCode::InvalidState,
    ErrorCode::WrapFailed,
    ErrorCode::RandomUnavailable,
    ErrorCode::ResourceLimit,
    ErrorCode::Busy,
    ErrorCode::Timeout,
    ErrorCode::Unavailable,
    ErrorCode::UnknownKey,
    ErrorCode::KekInUse,
    ErrorCode::KeyServiceUnavailable,
    ErrorCode::KeyRefused,
    ErrorCode::KeyServiceFailed,
    ErrorCode::BadRequest,
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::NotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::PayloadTooLarge,
    ErrorCode::RangeNotSatisfiable,
    ErrorCode::Conflict,
    ErrorCode::UnsupportedMediaType,
    ErrorCode::UnreadableRecording,
    ErrorCode::Io,
    ErrorCode::Internal,
];

// The WIT enum is a fieldless `#[repr(u8)]` enum whose discriminants are the cases'
// positions in wit/tapeseal.wit: entry `i` must be case `i`.
const _: () = {
    let mut i = 0;
    while i < WIT_CODES.len() {
        assert!(
            WIT_CODES[i] as usize == i,
            "WIT_CODES is not in the order of the WIT enum error-code"
        );
        i += 1;
    }
};

/// The WIT code of a core code.
pub(crate) fn wit_code(code: Code) -> ErrorCode {
    WIT_CODES[code.index()]
}

/// A WIT error with `code` and `message` (which never holds key material).
pub(crate) fn error(code: Code, message: impl Into<String>) -> Error {
    Error {
        code: wit_code(code),
        message: message.into(),
    }
}

/// A core error as a WIT error: its code and its message.
pub(crate) fn from_core(error: tapeseal_core::Error) -> Error {
    Error {
        code: wit_code(error.code()),
        message: error.to_string(),
    }
}

/// A DEK from bytes that cross the component boundary; the copy is wiped.
pub(crate) fn dek(bytes: Vec<u8>) -> Result<Dek, Error> {
    let bytes = Zeroizing::new(bytes);
    Dek::from_slice(&bytes).map_err(from_core)
}

fn kind_in(kind: MediaKind) -> CoreKind {
    match kind {
        MediaKind::Call => CoreKind::Call,
        MediaKind::Email => CoreKind::Email,
        MediaKind::Chat => CoreKind::Chat,
        MediaKind::Message => CoreKind::Message,
        MediaKind::Transcript => CoreKind::Transcript,
        MediaKind::Other => CoreKind::Other,
    }
}

fn kind_out(kind: CoreKind) -> MediaKind {
    match kind {
        CoreKind::Call => MediaKind::Call,
        CoreKind::Email => MediaKind::Email,
        CoreKind::Chat => MediaKind::Chat,
        CoreKind::Message => MediaKind::Message,
        CoreKind::Transcript => MediaKind::Transcript,
        _ => MediaKind::Other,
    }
}

fn wrap_in(algorithm: WrapAlgorithm) -> CoreWrap {
    match algorithm {
        WrapAlgorithm::RsaOaepSha256 => CoreWrap::RsaOaepSha256,
        WrapAlgorithm::RsaOaepSha1 => CoreWrap::RsaOaepSha1,
    }
}

fn wrap_out(algorithm: CoreWrap) -> WrapAlgorithm {
    match algorithm {
        CoreWrap::RsaOaepSha1 => WrapAlgorithm::RsaOaepSha1,
        _ => WrapAlgorithm::RsaOaepSha256,
    }
}

pub(crate) fn params(p: SealParams) -> Result<tapeseal_core::SealParams, Error> {
    let mut context = BTreeMap::new();
    for (key, value) in p.context {
        if context.insert(key, value).is_some() {
            return Err(error(
                Code::InvalidParameter,
                "an encryption-context key appears twice",
            ));
        }
    }
    let mut params = tapeseal_core::SealParams::new(
        p.org_id,
        p.recording_id,
        kind_in(p.media_kind),
        p.content_type,
        p.created_at_ms,
    )
    .with_chunk_size(p.chunk_size);
    params.context = context;
    Ok(params)
}

pub(crate) fn recipients(list: Vec<Recipient>) -> Result<Vec<tapeseal_core::Recipient>, Error> {
    list.into_iter()
        .map(|r| {
            let key = KekPublicKey::from_pem_or_der(&r.public_key).map_err(from_core)?;
            Ok(tapeseal_core::Recipient::new(r.kek_id, key).with_algorithm(wrap_in(r.algorithm)))
        })
        .collect()
}

fn header_info(h: &tapeseal_core::Header) -> HeaderInfo {
    HeaderInfo {
        version: h.version(),
        suite: h.suite(),
        org_id: h.org_id().into(),
        recording_id: h.recording_id().into(),
        media_kind: kind_out(h.media_kind()),
        content_type: h.content_type().into(),
        created_at_ms: h.created_at_ms(),
        chunk_size: h.chunk_size(),
        context: h
            .context()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        stanzas: h
            .stanzas()
            .iter()
            .map(|s| Stanza {
                kek_id: s.kek_id.clone(),
                algorithm: wrap_out(s.algorithm),
                wrapped_dek: s.wrapped_dek.clone(),
            })
            .collect(),
        header_len: h.header_len() as u64,
    }
}

pub(crate) fn inspection(info: &tapeseal_core::Inspection) -> Inspection {
    Inspection {
        header: header_info(&info.header),
        payload_len: info.payload_len,
        plaintext_len: info.layout.map(|l| l.plaintext_len()),
        chunk_count: info.layout.map(|l| l.chunk_count()),
    }
}

pub(crate) fn byte_range(bytes: Range<u64>, chunks: Range<u64>) -> ByteRange {
    ByteRange {
        start: bytes.start,
        end: bytes.end,
        first_chunk: chunks.start,
        last_chunk: chunks.end.saturating_sub(1),
    }
}
