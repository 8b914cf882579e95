//! The WIT world's types against the core's: wrap algorithms, media kinds (named
//! through the core's own list) and error codes.

use crate::{ErrorCode, MediaKind, WrapAlgorithm};

impl From<WrapAlgorithm> for tapeseal_core::WrapAlgorithm {
    fn from(w: WrapAlgorithm) -> Self {
        match w {
            WrapAlgorithm::RsaOaepSha256 => Self::RsaOaepSha256,
            WrapAlgorithm::RsaOaepSha1 => Self::RsaOaepSha1,
        }
    }
}

impl From<tapeseal_core::WrapAlgorithm> for WrapAlgorithm {
    fn from(w: tapeseal_core::WrapAlgorithm) -> Self {
        match w {
            tapeseal_core::WrapAlgorithm::RsaOaepSha1 => Self::RsaOaepSha1,
            _ => Self::RsaOaepSha256,
        }
    }
}

impl From<MediaKind> for tapeseal_core::MediaKind {
    fn from(k: MediaKind) -> Self {
        match k {
            MediaKind::Call => Self::Call,
            MediaKind::Email => Self::Email,
            MediaKind::Chat => Self::Chat,
            MediaKind::Message => Self::Message,
            MediaKind::Transcript => Self::Transcript,
            MediaKind::Other => Self::Other,
        }
    }
}

impl MediaKind {
    /// The kind's name, as the core spells it: `call`, `email`, ...
    pub fn name(self) -> &'static str {
        tapeseal_core::MediaKind::from(self).name()
    }

    /// Parses a kind name through the core's own list ([`tapeseal_core::MediaKind`]);
    /// `None` for a name the core does not know or this WIT world cannot carry.
    pub fn from_name(name: &str) -> Option<Self> {
        let core = tapeseal_core::MediaKind::from_name(name)?;
        [
            Self::Call,
            Self::Email,
            Self::Chat,
            Self::Message,
            Self::Transcript,
            Self::Other,
        ]
        .into_iter()
        .find(|k| tapeseal_core::MediaKind::from(*k) == core)
    }
}

/// The core's code for a WIT `error-code`: the engine's one mapping from the guest's
/// face back to the list in `tapeseal-core` (docs/ERRORS.md). Exhaustive over the WIT
/// enum, so a code added to the WIT world does not compile here until it is mapped.
pub fn core_code(code: ErrorCode) -> tapeseal_core::ErrorCode {
    use tapeseal_core::ErrorCode as Core;
    match code {
        ErrorCode::MalformedHeader => Core::MalformedHeader,
        ErrorCode::UnsupportedVersion => Core::UnsupportedVersion,
        ErrorCode::UnsupportedSuite => Core::UnsupportedSuite,
        ErrorCode::IncompleteHeader => Core::IncompleteHeader,
        ErrorCode::DecryptFailed => Core::DecryptFailed,
        ErrorCode::InvalidKey => Core::InvalidKey,
        ErrorCode::InvalidDek => Core::InvalidDek,
        ErrorCode::InvalidParameter => Core::InvalidParameter,
        ErrorCode::OutOfRange => Core::OutOfRange,
        ErrorCode::FormatLimit => Core::FormatLimit,
        ErrorCode::InvalidState => Core::InvalidState,
        ErrorCode::WrapFailed => Core::WrapFailed,
        ErrorCode::RandomUnavailable => Core::RandomUnavailable,
        ErrorCode::ResourceLimit => Core::ResourceLimit,
        ErrorCode::Busy => Core::Busy,
        ErrorCode::Timeout => Core::Timeout,
        ErrorCode::Unavailable => Core::Unavailable,
        ErrorCode::UnknownKey => Core::UnknownKey,
        ErrorCode::KekInUse => Core::KekInUse,
        ErrorCode::KeyServiceUnavailable => Core::KeyServiceUnavailable,
        ErrorCode::KeyRefused => Core::KeyRefused,
        ErrorCode::KeyServiceFailed => Core::KeyServiceFailed,
        ErrorCode::BadRequest => Core::BadRequest,
        ErrorCode::Unauthorized => Core::Unauthorized,
        ErrorCode::Forbidden => Core::Forbidden,
        ErrorCode::NotFound => Core::NotFound,
        ErrorCode::MethodNotAllowed => Core::MethodNotAllowed,
        ErrorCode::PayloadTooLarge => Core::PayloadTooLarge,
        ErrorCode::RangeNotSatisfiable => Core::RangeNotSatisfiable,
        ErrorCode::Conflict => Core::Conflict,
        ErrorCode::UnsupportedMediaType => Core::UnsupportedMediaType,
        ErrorCode::UnreadableRecording => Core::UnreadableRecording,
        ErrorCode::Io => Core::Io,
        ErrorCode::Internal => Core::Internal,
    }
}
