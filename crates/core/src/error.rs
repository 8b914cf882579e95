//! The one error type of the core, and the one list of error codes every face of
//! tapeseal reports. Decrypt failures are deliberately vague: callers learn that an
//! envelope could not be decrypted, never which check refused it.

use core::fmt;

use thiserror::Error;

/// Everything that can go wrong in `tapeseal-core`.
///
/// Header problems are reported precisely (the header is public, parsing it needs no
/// key). Everything that happens after a DEK is involved collapses into
/// [`Error::DecryptFailed`], so that a caller (or an attacker behind it) cannot tell a
/// wrong key from a tampered header, a broken tag or a truncated payload.
///
/// [`Error::code`] gives the stable [`ErrorCode`] of each error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a well-formed tapeseal header.
    #[error("malformed envelope header: {0}")]
    MalformedHeader(&'static str),
    /// The envelope declares a format version this build does not read.
    #[error("unsupported envelope format version {0} (this build reads version 1)")]
    UnsupportedVersion(u16),
    /// The envelope declares an algorithm suite this build does not know.
    #[error("unsupported algorithm suite {0:#06x}")]
    UnsupportedSuite(u16),
    /// The input ended before the header did.
    #[error("incomplete header: {needed} bytes are needed, {available} were given")]
    IncompleteHeader {
        /// Bytes needed to parse the whole header.
        needed: usize,
        /// Bytes that were supplied.
        available: usize,
    },
    /// The envelope could not be decrypted with the given key: wrong DEK, failed key
    /// commitment, tampered header or payload, truncation or trailing bytes.
    #[error("could not decrypt")]
    DecryptFailed,
    /// A KEK public key that cannot be used for wrapping.
    #[error("invalid KEK public key: {0}")]
    InvalidKey(&'static str),
    /// A DEK of the wrong length or encoding.
    #[error("invalid DEK: it must be exactly 32 bytes")]
    InvalidDek,
    /// Seal or rewrap parameters that the format cannot carry.
    #[error("invalid parameter: {0}")]
    InvalidParameter(&'static str),
    /// RSA-OAEP wrapping failed (only a broken random source can cause this).
    #[error("could not wrap the DEK")]
    WrapFailed,
    /// A chunk index outside the envelope, or a length that no envelope can have.
    #[error("out of range: {0}")]
    OutOfRange(&'static str),
    /// The envelope would exceed a format limit (too many chunks).
    #[error("format limit exceeded: {0}")]
    LimitExceeded(&'static str),
    /// An API used out of order, such as pushing after `finish`.
    #[error("invalid use: {0}")]
    InvalidState(&'static str),
}

impl Error {
    /// The stable code of this error: what every face (WIT, npm, HTTP, CLI) reports.
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        match self {
            Error::MalformedHeader(_) => ErrorCode::MalformedHeader,
            Error::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            Error::UnsupportedSuite(_) => ErrorCode::UnsupportedSuite,
            Error::IncompleteHeader { .. } => ErrorCode::IncompleteHeader,
            Error::DecryptFailed => ErrorCode::DecryptFailed,
            Error::InvalidKey(_) => ErrorCode::InvalidKey,
            Error::InvalidDek => ErrorCode::InvalidDek,
            Error::InvalidParameter(_) => ErrorCode::InvalidParameter,
            Error::WrapFailed => ErrorCode::WrapFailed,
            Error::OutOfRange(_) => ErrorCode::OutOfRange,
            Error::LimitExceeded(_) => ErrorCode::FormatLimit,
            Error::InvalidState(_) => ErrorCode::InvalidState,
        }
    }
}

/// Result with [`Error`](enum@Error).
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Defines [`ErrorCode`], [`ErrorCode::ALL`] and [`ErrorCode::name`] from one list,
/// so that `ALL` holds every variant, in declaration order, by construction.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// The stable code of an error, the same in every face of tapeseal.
        ///
        /// This is the one list of codes: the WIT enum `error-code` (same order,
        /// kebab-case), the npm package's `error.code` (SCREAMING_SNAKE_CASE), the
        /// server's JSON errors and HTTP statuses and the CLI's exit codes all map from
        /// it (`docs/ERRORS.md`). It includes codes only the host produces (runtime
        /// limits, key services, HTTP requests, storage). New codes may be added, so
        /// the enum is `#[non_exhaustive]`; faces outside this crate map through
        /// [`ErrorCode::name`] or the position in [`ErrorCode::ALL`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order: `ALL[code.index()] == code`.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable snake_case name, such as `"decrypt_failed"`.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }
        }
    };
}

error_codes! {
    // The core's own errors (`Error::code`).
    /// The bytes are not a well-formed tapeseal header.
    MalformedHeader = "malformed_header",
    /// The envelope declares a format version this build does not read.
    UnsupportedVersion = "unsupported_version",
    /// The envelope declares an algorithm suite this build does not know.
    UnsupportedSuite = "unsupported_suite",
    /// The input ended before the header did.
    IncompleteHeader = "incomplete_header",
    /// The envelope could not be decrypted with the key given. Deliberately vague:
    /// a wrong DEK, a failed key commitment, a tampered header or payload, truncation
    /// and trailing bytes all look the same to the caller.
    DecryptFailed = "decrypt_failed",
    /// A KEK public key that cannot be used for wrapping (not RSA, or the wrong size).
    InvalidKey = "invalid_key",
    /// A DEK that is not exactly 32 bytes (or not valid base64).
    InvalidDek = "invalid_dek",
    /// A parameter or argument the format or the API cannot take.
    InvalidParameter = "invalid_parameter",
    /// A chunk index or byte range outside the envelope, or a length no envelope can
    /// have.
    OutOfRange = "out_of_range",
    /// The envelope would exceed a format limit (too many chunks).
    FormatLimit = "format_limit",
    /// An API used out of order, such as pushing after `finish`.
    InvalidState = "invalid_state",
    /// RSA-OAEP wrapping of the DEK failed (only a broken random source causes this).
    WrapFailed = "wrap_failed",
    /// No secure random source is available.
    RandomUnavailable = "random_unavailable",
    // The runtime that runs the core.
    /// A guest memory cap or execution budget stopped the operation: a resource
    /// limit, never damaged data.
    ResourceLimit = "resource_limit",
    /// Too many concurrent operations; try again later.
    Busy = "busy",
    /// The operation did not finish in time.
    Timeout = "timeout",
    /// The service cannot answer now (its catalogue or storage does not respond); try
    /// again later.
    Unavailable = "unavailable",
    // Key services.
    /// No such KEK.
    UnknownKey = "unknown_key",
    /// A KEK still referenced by recordings or a job cannot be deleted.
    KekInUse = "kek_in_use",
    /// The key service could not be reached or did not answer.
    KeyServiceUnavailable = "key_service_unavailable",
    /// The key service refused to unwrap the DEK.
    KeyRefused = "key_refused",
    /// The key service answered with an error: it rejected the server's credentials,
    /// does not know the key, or sent a malformed answer.
    KeyServiceFailed = "key_service_failed",
    // Requests.
    /// A request that is malformed or misses something required.
    BadRequest = "bad_request",
    /// No valid credentials.
    Unauthorized = "unauthorized",
    /// Valid credentials without the permission this needs.
    Forbidden = "forbidden",
    /// No such resource.
    NotFound = "not_found",
    /// The resource does not support this method.
    MethodNotAllowed = "method_not_allowed",
    /// The request body is larger than allowed.
    PayloadTooLarge = "payload_too_large",
    /// The requested byte range lies outside the recording.
    RangeNotSatisfiable = "range_not_satisfiable",
    /// The request conflicts with the current state (it already exists, or is in
    /// progress).
    Conflict = "conflict",
    /// A request body of a media type that is not accepted.
    UnsupportedMediaType = "unsupported_media_type",
    // Storage and the rest.
    /// A stored object is not a readable envelope.
    UnreadableRecording = "unreadable_recording",
    /// Reading or writing storage failed.
    Io = "io",
    /// An unexpected internal failure.
    Internal = "internal",
}

impl ErrorCode {
    /// The code with this snake_case [`name`](ErrorCode::name), if there is one.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|code| code.name() == name)
    }

    /// The position of this code in [`ErrorCode::ALL`], which is also its position
    /// in the WIT enum `error-code`.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The code at `index` in [`ErrorCode::ALL`] (and in the WIT enum `error-code`).
    #[must_use]
    pub const fn from_index(index: usize) -> Option<Self> {
        if index < Self::ALL.len() {
            Some(Self::ALL[index])
        } else {
            None
        }
    }
}

impl fmt::Display for ErrorCode {
    /// Writes the snake_case name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One value for every [`ErrorCode`]: how a face (HTTP statuses, exit codes, the WIT
/// enum) writes its mapping from the core's list. A struct literal must name every
/// field, so a code added here does not compile in any face until that face maps it:
/// the exhaustive match the faces cannot write themselves, because `ErrorCode` is
/// `#[non_exhaustive]` outside this crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerCode<T> {
    /// [`ErrorCode::MalformedHeader`].
    pub malformed_header: T,
    /// [`ErrorCode::UnsupportedVersion`].
    pub unsupported_version: T,
    /// [`ErrorCode::UnsupportedSuite`].
    pub unsupported_suite: T,
    /// [`ErrorCode::IncompleteHeader`].
    pub incomplete_header: T,
    /// [`ErrorCode::DecryptFailed`].
    pub decrypt_failed: T,
    /// [`ErrorCode::InvalidKey`].
    pub invalid_key: T,
    /// [`ErrorCode::InvalidDek`].
    pub invalid_dek: T,
    /// [`ErrorCode::InvalidParameter`].
    pub invalid_parameter: T,
    /// [`ErrorCode::OutOfRange`].
    pub out_of_range: T,
    /// [`ErrorCode::FormatLimit`].
    pub format_limit: T,
    /// [`ErrorCode::InvalidState`].
    pub invalid_state: T,
    /// [`ErrorCode::WrapFailed`].
    pub wrap_failed: T,
    /// [`ErrorCode::RandomUnavailable`].
    pub random_unavailable: T,
    /// [`ErrorCode::ResourceLimit`].
    pub resource_limit: T,
    /// [`ErrorCode::Busy`].
    pub busy: T,
    /// [`ErrorCode::Timeout`].
    pub timeout: T,
    /// [`ErrorCode::Unavailable`].
    pub unavailable: T,
    /// [`ErrorCode::UnknownKey`].
    pub unknown_key: T,
    /// [`ErrorCode::KekInUse`].
    pub kek_in_use: T,
    /// [`ErrorCode::KeyServiceUnavailable`].
    pub key_service_unavailable: T,
    /// [`ErrorCode::KeyRefused`].
    pub key_refused: T,
    /// [`ErrorCode::KeyServiceFailed`].
    pub key_service_failed: T,
    /// [`ErrorCode::BadRequest`].
    pub bad_request: T,
    /// [`ErrorCode::Unauthorized`].
    pub unauthorized: T,
    /// [`ErrorCode::Forbidden`].
    pub forbidden: T,
    /// [`ErrorCode::NotFound`].
    pub not_found: T,
    /// [`ErrorCode::MethodNotAllowed`].
    pub method_not_allowed: T,
    /// [`ErrorCode::PayloadTooLarge`].
    pub payload_too_large: T,
    /// [`ErrorCode::RangeNotSatisfiable`].
    pub range_not_satisfiable: T,
    /// [`ErrorCode::Conflict`].
    pub conflict: T,
    /// [`ErrorCode::UnsupportedMediaType`].
    pub unsupported_media_type: T,
    /// [`ErrorCode::UnreadableRecording`].
    pub unreadable_recording: T,
    /// [`ErrorCode::Io`].
    pub io: T,
    /// [`ErrorCode::Internal`].
    pub internal: T,
}

impl<T> PerCode<T> {
    /// The value for `code`.
    pub const fn get(&self, code: ErrorCode) -> &T {
        match code {
            ErrorCode::MalformedHeader => &self.malformed_header,
            ErrorCode::UnsupportedVersion => &self.unsupported_version,
            ErrorCode::UnsupportedSuite => &self.unsupported_suite,
            ErrorCode::IncompleteHeader => &self.incomplete_header,
            ErrorCode::DecryptFailed => &self.decrypt_failed,
            ErrorCode::InvalidKey => &self.invalid_key,
            ErrorCode::InvalidDek => &self.invalid_dek,
            ErrorCode::InvalidParameter => &self.invalid_parameter,
            ErrorCode::OutOfRange => &self.out_of_range,
            ErrorCode::FormatLimit => &self.format_limit,
            ErrorCode::InvalidState => &self.invalid_state,
            ErrorCode::WrapFailed => &self.wrap_failed,
            ErrorCode::RandomUnavailable => &self.random_unavailable,
            ErrorCode::ResourceLimit => &self.resource_limit,
            ErrorCode::Busy => &self.busy,
            ErrorCode::Timeout => &self.timeout,
            ErrorCode::Unavailable => &self.unavailable,
            ErrorCode::UnknownKey => &self.unknown_key,
            ErrorCode::KekInUse => &self.kek_in_use,
            ErrorCode::KeyServiceUnavailable => &self.key_service_unavailable,
            ErrorCode::KeyRefused => &self.key_refused,
            ErrorCode::KeyServiceFailed => &self.key_service_failed,
            ErrorCode::BadRequest => &self.bad_request,
            ErrorCode::Unauthorized => &self.unauthorized,
            ErrorCode::Forbidden => &self.forbidden,
            ErrorCode::NotFound => &self.not_found,
            ErrorCode::MethodNotAllowed => &self.method_not_allowed,
            ErrorCode::PayloadTooLarge => &self.payload_too_large,
            ErrorCode::RangeNotSatisfiable => &self.range_not_satisfiable,
            ErrorCode::Conflict => &self.conflict,
            ErrorCode::UnsupportedMediaType => &self.unsupported_media_type,
            ErrorCode::UnreadableRecording => &self.unreadable_recording,
            ErrorCode::Io => &self.io,
            ErrorCode::Internal => &self.internal,
        }
    }
}
