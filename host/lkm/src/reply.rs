//! HTTP error answers: every failure is an `ErrorBody` (`{status, code, message}`)
//! with its status. Clients get a stable code and a message without secrets; the
//! precise cause of a decrypt or internal failure goes to the log only.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tapeseal_keys::KeyError;
use tapeseal_keys::grant::GrantError;
use tapeseal_keys::lkm::wire::ErrorBody;

use crate::error::LkmError;

/// A failed request, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// 400 `bad_request`.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401 `unauthorized`.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden_origin`: a page from an origin the LKM was not told to allow.
    pub(crate) fn forbidden_origin() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "pages from this origin may not call browser decrypt (see the LKM's --allow-origin)",
        )
    }

    /// A refused playback grant: 401 `grant_invalid` (malformed, not signed by the
    /// issuer's registered key, or an overlong lifetime), `grant_expired`,
    /// `grant_not_yet_valid` or `grant_replayed`; 403 `grant_mismatch` (another
    /// recording or key pair). The message never repeats the grant.
    pub(crate) fn grant(error: &GrantError) -> Self {
        let (status, code) = match error {
            GrantError::Expired => (StatusCode::UNAUTHORIZED, "grant_expired"),
            GrantError::NotYetValid => (StatusCode::UNAUTHORIZED, "grant_not_yet_valid"),
            GrantError::Replayed => (StatusCode::UNAUTHORIZED, "grant_replayed"),
            GrantError::Mismatch => (StatusCode::FORBIDDEN, "grant_mismatch"),
            _ => (StatusCode::UNAUTHORIZED, "grant_invalid"),
        };
        Self::new(status, code, error.to_string())
    }

    /// 404 `not_found`.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405 `method_not_allowed`.
    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this path does not take that method",
        )
    }

    /// 413 `payload_too_large`.
    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request bodies are at most {limit} bytes"),
        )
    }

    /// 429 `rate_limited`, with `Retry-After`.
    pub(crate) fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many decrypt requests for this credential; retry later",
            )
        }
    }

    /// 503 `busy`, with `Retry-After`.
    pub(crate) fn busy(message: impl Into<String>) -> Self {
        Self {
            retry_after_secs: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
        }
    }

    /// 500 `internal`: the detail is logged here, not sent.
    pub(crate) fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the LKM failed; see its log",
        )
    }

    /// The status it answers with.
    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<LkmError> for ApiError {
    fn from(e: LkmError) -> Self {
        match e {
            LkmError::Invalid(message) => Self::bad_request(message),
            LkmError::NotFound(_) | LkmError::NoStore(_) => Self::not_found(e.to_string()),
            LkmError::Exists(_) | LkmError::InUse(_) => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            LkmError::Key(KeyError::Unwrap) => Self::new(
                StatusCode::BAD_REQUEST,
                "decrypt_failed",
                "the body could not be decrypted with this key pair",
            ),
            LkmError::Key(KeyError::Size(_) | KeyError::Unreadable(_)) => {
                Self::bad_request(e.to_string())
            }
            other => Self::internal(&other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            status: self.status.as_u16(),
            code: self.code.to_string(),
            message: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_their_statuses() {
        let cases = [
            (LkmError::Invalid("x".into()), 400),
            (LkmError::NotFound("key pair 'k'".into()), 404),
            (LkmError::Exists("k".into()), 409),
            (LkmError::InUse("k".into()), 409),
            (LkmError::Key(KeyError::Unwrap), 400),
            (LkmError::Random, 500),
        ];
        for (error, status) in cases {
            assert_eq!(ApiError::from(error).status().as_u16(), status);
        }
        let grants = [
            (GrantError::Malformed("x"), 401, "grant_invalid"),
            (GrantError::BadSignature, 401, "grant_invalid"),
            (GrantError::TooLong, 401, "grant_invalid"),
            (GrantError::Expired, 401, "grant_expired"),
            (GrantError::NotYetValid, 401, "grant_not_yet_valid"),
            (GrantError::Replayed, 401, "grant_replayed"),
            (GrantError::Mismatch, 403, "grant_mismatch"),
        ];
        for (error, status, code) in grants {
            let reply = ApiError::grant(&error);
            assert_eq!((reply.status().as_u16(), reply.code), (status, code));
        }
        let limited = ApiError::rate_limited(2).into_response();
        assert_eq!(
            limited.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(2u64))
        );
    }
}
