//! The one request extractor: method, URI, headers and the whole body, read up to
//! the body limit (413 beyond it), so Hawk can check a payload hash against exactly
//! the bytes the handler then parses.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, Method, Uri, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use crate::http::Shared;
use crate::reply::ApiError;
use crate::reqlog::Noted;

/// A request with its body read.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// The method.
    pub(crate) method: Method,
    /// The URI as sent (path and query; the authority too under HTTP/2).
    pub(crate) uri: Uri,
    /// The headers.
    pub(crate) headers: HeaderMap,
    /// The body, at most the configured limit.
    pub(crate) body: Bytes,
    /// Where handlers note the credential and key pair for the request log.
    pub(crate) noted: Noted,
}

impl Incoming {
    /// A header's value, if present and text.
    pub(crate) fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON of type `T` (400 if it is not).
    pub(crate) fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::bad_request(format!("the body is not a valid {what} request: {e}"))
        })
    }

    /// The query string as `T` (400 if it does not fit).
    pub(crate) fn query<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&self.uri)
            .map(|q| q.0)
            .map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))
    }
}

impl FromRequest<Shared> for Incoming {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Shared) -> Result<Self, ApiError> {
        let limit = state.limits.max_body_bytes;
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(ApiError::too_large(limit));
        }
        let body = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    ApiError::too_large(limit)
                } else {
                    ApiError::bad_request("the request body could not be read")
                }
            })?
            .to_bytes();
        let noted = parts.extensions.get::<Noted>().cloned().unwrap_or_default();
        Ok(Self {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
            noted,
        })
    }
}
