//! API errors: a status, a stable machine-readable code and a message that holds no
//! key material. Decryption failures stay vague to callers; the precise cause goes to
//! the log, which never holds secrets either.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::catalogue::CatalogueError;
use crate::engine::HostError;
use crate::managed::ManagedKeyError;

/// An error as the API returns it.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code, e.g. `not_found`, `kek_in_use`.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
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
    /// Stable code: `unauthorized`, `forbidden`, `not_found`, `bad_request`,
    /// `method_not_allowed`, `payload_too_large`, `range_not_satisfiable`,
    /// `kek_in_use`, `conflict`,
    /// `decrypt_failed`, `unreadable_recording`, `unavailable`, `internal`.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404; also what another organisation's objects look like.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 500; the cause is logged, the caller gets no detail.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }

    /// 500 for a recording that can't be decrypted; the cause goes to the log only.
    pub fn decrypt_failed(recording_id: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(recording_id, error = %cause, "could not decrypt a recording");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "decrypt_failed",
            "the recording could not be decrypted",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

/// The code of an error response, left in its extensions for the metrics layer.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

impl From<CatalogueError> for ApiError {
    fn from(e: CatalogueError) -> Self {
        match e {
            CatalogueError::Exists(what) => Self::conflict(format!("{what} already exists")),
            CatalogueError::Invalid(why) => Self::bad_request(why),
            CatalogueError::NoSuchOrg(_) => Self::not_found("organisation"),
            other => Self::internal(&other),
        }
    }
}

impl From<ManagedKeyError> for ApiError {
    fn from(e: ManagedKeyError) -> Self {
        match e {
            ManagedKeyError::NoSuchKek(_) => Self::not_found("KEK"),
            ManagedKeyError::InUse { .. } => {
                Self::new(StatusCode::CONFLICT, "kek_in_use", e.to_string())
            }
            ManagedKeyError::Catalogue(e) => e.into(),
            other => Self::internal(&other),
        }
    }
}

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        Self::internal(&e)
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
