//! CORS for browser decrypt, the one endpoint pages call: a request whose `Origin` is
//! in the allowed list is answered with that origin in `Access-Control-Allow-Origin`
//! (and a preflight with the method and header it may use); any other `Origin` is
//! refused before the handler runs, so nothing is decrypted for it. A request without
//! `Origin` is not from a page and passes. The Hawk endpoints get no CORS headers.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::Shared;
use crate::reply::ApiError;

/// How long a browser may cache a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE_SECS: u64 = 600;

/// Middleware on browser decrypt: checks `Origin` and adds the CORS headers.
pub(crate) async fn origins(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    let allowed = origin
        .to_str()
        .is_ok_and(|o| state.allowed_origins.iter().any(|a| a == o));
    if !allowed {
        tracing::info!(
            ?origin,
            "browser decrypt from an origin that is not allowed"
        );
        return ApiError::forbidden_origin().into_response();
    }
    let preflight = request.method() == Method::OPTIONS;
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if preflight {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(PREFLIGHT_MAX_AGE_SECS),
        );
    }
    response
}
