//! API errors: a status, a stable machine-readable code and a message that holds no
//! key material. Decryption failures stay vague to callers; the precise cause goes to
//! the log, which never holds secrets either.

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tapeseal_core::ErrorCode;
use tapeseal_core::PerCode;
use tapeseal_engine::HostError;
use tapeseal_keys::{KeyServiceError, ManagedKeyError};
use tapeseal_store::catalogue::CatalogueError;

/// The HTTP status of every error code: the server's one mapping from the core's
/// list (docs/ERRORS.md). A code added to the core does not compile here until it has
/// a status.
const STATUS: PerCode<u16> = PerCode {
    malformed_header: 422,
    unsupported_version: 422,
    unsupported_suite: 422,
    incomplete_header: 422,
    decrypt_failed: 500,
    invalid_key: 422,
    invalid_dek: 422,
    invalid_parameter: 422,
    out_of_range: 416,
    format_limit: 422,
    invalid_state: 500,
    wrap_failed: 500,
    random_unavailable: 500,
    resource_limit: 503,
    busy: 503,
    timeout: 504,
    unavailable: 503,
    unknown_key: 404,
    kek_in_use: 409,
    key_service_unavailable: 503,
    key_refused: 403,
    key_service_failed: 502,
    bad_request: 400,
    unauthorized: 401,
    forbidden: 403,
    not_found: 404,
    method_not_allowed: 405,
    payload_too_large: 413,
    range_not_satisfiable: 416,
    conflict: 409,
    unsupported_media_type: 415,
    unreadable_recording: 500,
    io: 500,
    internal: 500,
};

/// The HTTP status an error code answers with.
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(*STATUS.get(code)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// An error as the API returns it.
#[derive(Debug)]
pub struct ApiError {
    /// Stable code from the core's list; its name is the JSON `error.code`.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// Seconds a client should wait before trying again (503 `busy`).
    pub retry_after: Option<u64>,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error's code and message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, one of the list in docs/ERRORS.md, e.g. `not_found`,
    /// `kek_in_use`, `busy`, `decrypt_failed`.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// An error with a code and a message; the status follows from the code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        status_of(self.code)
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// 404; also what another organisation's objects look like.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("no such {what}"))
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// 503 with `Retry-After`: a resource limit, never a fault in the data.
    pub fn busy(wait: Duration) -> Self {
        Self {
            retry_after: Some(wait.as_secs().max(1)),
            ..Self::new(
                ErrorCode::Busy,
                "the server is at its limit of concurrent operations for now; try again shortly",
            )
        }
    }

    /// 500; the cause is logged, the caller gets no detail.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error; see the server log")
    }

    /// 500 for a recording that can't be decrypted; the cause goes to the log only.
    pub fn decrypt_failed(recording_id: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(recording_id, error = %cause, "could not decrypt a recording");
        Self::new(
            ErrorCode::DecryptFailed,
            "the recording could not be decrypted",
        )
    }

    /// 500 for a stored object that is not a readable envelope of this recording.
    pub fn unreadable(recording_id: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(recording_id, error = %cause, "stored recording is unreadable");
        Self::new(
            ErrorCode::UnreadableRecording,
            "the stored recording is damaged or is not a tapeseal envelope",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status(),
            self.code.name(),
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

/// The code of an error response, left in its extensions for the metrics layer.
#[derive(Debug, Clone, Copy)]
pub struct ResponseCode(pub ErrorCode);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.name().to_string(),
                message: self.message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(ResponseCode(self.code));
        response
    }
}

impl From<CatalogueError> for ApiError {
    fn from(e: CatalogueError) -> Self {
        match e {
            CatalogueError::Exists(what) => Self::conflict(format!("{what} already exists")),
            CatalogueError::Invalid(why) => Self::new(ErrorCode::InvalidParameter, why),
            CatalogueError::NoSuchOrg(_) => Self::not_found("organisation"),
            CatalogueError::NoSuchKek => Self::not_found("KEK"),
            other => Self::internal(&other),
        }
    }
}

impl From<ManagedKeyError> for ApiError {
    fn from(e: ManagedKeyError) -> Self {
        KeyServiceError::from(e).into()
    }
}

impl From<KeyServiceError> for ApiError {
    fn from(e: KeyServiceError) -> Self {
        match e {
            KeyServiceError::UnknownKey(_) => Self::not_found("KEK"),
            KeyServiceError::InUse(message) => Self::new(ErrorCode::KekInUse, message),
            // The reasons name hosts, ports, HTTP statuses and key ids, never key
            // material: an administrator needs them to fix the key service.
            KeyServiceError::Unavailable(reason) => {
                tracing::warn!(%reason, "key service unavailable");
                Self::new(
                    ErrorCode::KeyServiceUnavailable,
                    format!("the key service is unavailable; try again later ({reason})"),
                )
            }
            KeyServiceError::Timeout(after) => {
                tracing::warn!(?after, "key service timed out");
                Self::new(
                    ErrorCode::Timeout,
                    format!(
                        "the key service did not answer within {} ms",
                        after.as_millis()
                    ),
                )
            }
            KeyServiceError::Failed(reason) => {
                tracing::warn!(%reason, "key service failed");
                Self::new(
                    ErrorCode::KeyServiceFailed,
                    format!("the key service failed: {reason}"),
                )
            }
            KeyServiceError::Conflict(message) => Self::new(ErrorCode::Conflict, message),
            KeyServiceError::Invalid(message) => Self::bad_request(message),
            KeyServiceError::Refused(_) | KeyServiceError::NoUsableStanza => {
                tracing::warn!(error = %e, "key service refused");
                Self::new(ErrorCode::KeyRefused, "the key service refused")
            }
            other => Self::internal(&other),
        }
    }
}

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        match &e {
            // A resource limit is reported as such, never as damage.
            HostError::LimitExceeded(what) => {
                tracing::warn!(limit = what, "guest resource limit reached");
                Self::new(
                    ErrorCode::ResourceLimit,
                    format!("the operation exceeded the server's {what}; try again later"),
                )
            }
            HostError::Guest { code, message } => {
                let code = tapeseal_engine::core_code(*code);
                if status_of(code).is_server_error() {
                    tracing::warn!(code = code.name(), error = %message, "guest refused");
                    Self::new(code, "the operation failed; see the server log")
                } else {
                    Self::new(code, message.clone())
                }
            }
            HostError::Runtime(_) => Self::internal(&e),
        }
    }
}

impl From<object_store::Error> for ApiError {
    fn from(e: object_store::Error) -> Self {
        Self::internal(&e)
    }
}

/// What handlers return.
pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON request body whose rejections are API errors (400 `bad_request`).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> ApiResult<Self> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// Query parameters whose rejections are API errors (400 `bad_request`).
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}
