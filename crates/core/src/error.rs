//! The one error type of the core. Decrypt failures are deliberately vague: callers
//! learn that an envelope could not be decrypted, never which check refused it.

use thiserror::Error;

/// Everything that can go wrong in `tapeseal-core`.
///
/// Header problems are reported precisely (the header is public, parsing it needs no
/// key). Everything that happens after a DEK is involved collapses into
/// [`Error::DecryptFailed`], so that a caller (or an attacker behind it) cannot tell a
/// wrong key from a tampered header, a broken tag or a truncated payload.
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

/// Result with [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;
