//! Failures and exit codes: the command line's one mapping from the core's error codes
//! (docs/ERRORS.md). 0 success, 1 runtime or I/O failure, 2 usage, 3 unreadable or
//! refused input, 4 could not decrypt, 5 a resource limit or an unavailable service
//! (try again).

use std::io;
use std::path::Path;

use tapeseal_core::ErrorCode;
use tapeseal_core::PerCode;
use tapeseal_engine::HostError;
use tapeseal_keys::KeyError;
use tapeseal_store::catalogue::CatalogueError;

/// The exit code of every error code. A code added to the core does not compile here
/// until it has one.
const EXIT: PerCode<u8> = PerCode {
    malformed_header: 3,
    unsupported_version: 3,
    unsupported_suite: 3,
    incomplete_header: 3,
    decrypt_failed: 4,
    invalid_key: 3,
    invalid_dek: 3,
    invalid_parameter: 2,
    out_of_range: 3,
    format_limit: 3,
    invalid_state: 1,
    wrap_failed: 1,
    random_unavailable: 1,
    resource_limit: 5,
    busy: 5,
    timeout: 5,
    unavailable: 5,
    unknown_key: 4,
    kek_in_use: 3,
    key_service_unavailable: 5,
    key_refused: 4,
    key_service_failed: 5,
    bad_request: 2,
    unauthorized: 2,
    forbidden: 2,
    not_found: 3,
    method_not_allowed: 2,
    payload_too_large: 3,
    range_not_satisfiable: 3,
    conflict: 3,
    unsupported_media_type: 2,
    unreadable_recording: 3,
    io: 1,
    internal: 1,
};

/// The exit code for an error code.
pub fn exit_code(code: ErrorCode) -> u8 {
    *EXIT.get(code)
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    /// A failure with an error code's exit code.
    pub(crate) fn coded(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: exit_code(code),
            message: message.into(),
        }
    }

    pub(crate) fn io(what: &str, path: &Path, e: io::Error) -> Self {
        Self {
            code: 1,
            message: format!("{what} {}: {e}", path.display()),
        }
    }

    pub(crate) fn input(message: impl Into<String>) -> Self {
        Self {
            code: 3,
            message: message.into(),
        }
    }
}

impl From<HostError> for Failure {
    fn from(e: HostError) -> Self {
        let code = match &e {
            HostError::Guest { code, .. } => tapeseal_engine::core_code(*code),
            HostError::LimitExceeded(_) => ErrorCode::ResourceLimit,
            HostError::Runtime(_) => ErrorCode::Internal,
        };
        let hint = if code == ErrorCode::DecryptFailed {
            " (wrong key or DEK, or the envelope was altered or cut short)"
        } else {
            ""
        };
        Self::coded(code, format!("{e}{hint}"))
    }
}

impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Self {
        let code = match e {
            KeyError::Unwrap => ErrorCode::DecryptFailed,
            KeyError::Crypto => ErrorCode::Internal,
            _ => ErrorCode::InvalidKey,
        };
        Self::coded(code, e.to_string())
    }
}

pub(crate) type Outcome<T = ()> = Result<T, Failure>;

impl From<CatalogueError> for Failure {
    fn from(e: CatalogueError) -> Self {
        let code = match e {
            CatalogueError::Database(_)
            | CatalogueError::Random(_)
            | CatalogueError::AuditNotRecorded(_)
            | CatalogueError::TooNew { .. } => ErrorCode::Internal,
            CatalogueError::Exists(_) => ErrorCode::Conflict,
            CatalogueError::NoSuchOrg(_) | CatalogueError::NoSuchKek => ErrorCode::NotFound,
            _ => ErrorCode::InvalidParameter,
        };
        Self::coded(code, e.to_string())
    }
}
