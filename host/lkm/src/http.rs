//! The LKM's HTTP API (docs/LKM.md): the routes of the wire contract in
//! `tapeseal_keys::lkm::wire`, each handler authenticating as its endpoint demands,
//! then running the blocking work (SQLite, RSA) off the async workers. Playback
//! grants (issuer registration, browser decrypt) are in [`crate::grants`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router, middleware};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tapeseal_keys::lkm::wire::{
    AUTH_PATH, AuthRequest, AuthResponse, BROWSER_DECRYPT_PATH, DECRYPT_PATH, DecryptRequest,
    DecryptResponse, DecryptType, GRANT_ISSUER_PATH, HEALTH_PATH, KEYPAIR_PATH, Keypair,
    REQUEST_LOG_PATH, RequestLogEntry,
};
use tokio::sync::Semaphore;

use crate::auth::{Allow, Caller, Nonces, authenticate};
use crate::config::Limits;
use crate::data::AdminToken;
use crate::error::Result;
use crate::grants;
use crate::incoming::Incoming;
use crate::keyring::Keyring;
use crate::limits::{self, RateLimiter};
use crate::reply::ApiError;
use crate::store::LogQuery;
use crate::{cors, reqlog};

/// Request-log entries returned when `maxEntries` is not given.
const DEFAULT_LOG_ENTRIES: u32 = 100;
/// The most request-log entries one request returns.
const MAX_LOG_ENTRIES: u32 = 10_000;

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) admin: AdminToken,
    pub(crate) nonces: Nonces,
    /// Decrypts per Hawk credential.
    pub(crate) decrypts: RateLimiter,
    /// Browser decrypts per grant issuer: a bucket of the same size of its own, so
    /// that playback and the platform's own decrypts do not starve each other.
    pub(crate) grant_decrypts: RateLimiter,
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) limits: Limits,
    /// The origins whose pages may call browser decrypt.
    pub(crate) allowed_origins: Vec<String>,
    /// The listener's address (the Hawk host and port when a request has no `Host`).
    pub(crate) local: SocketAddr,
}

/// The shared state handlers see.
pub(crate) type Shared = Arc<AppState>;

impl AppState {
    /// The state for a listener on `local`.
    pub(crate) fn new(
        keyring: Keyring,
        admin: AdminToken,
        limits: Limits,
        allowed_origins: Vec<String>,
        local: SocketAddr,
    ) -> Self {
        Self {
            keyring: Arc::new(keyring),
            admin,
            nonces: Nonces::new(limits.skew, limits.max_nonces),
            decrypts: RateLimiter::new(limits.decrypt_rate),
            grant_decrypts: RateLimiter::new(limits.decrypt_rate),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            limits,
            allowed_origins,
            local,
        }
    }
}

/// The whole API.
pub(crate) fn router(state: Shared) -> Router {
    let keypair_one = format!("{KEYPAIR_PATH}/{{id}}");
    Router::new()
        .route(AUTH_PATH, post(issue_credentials))
        .route(KEYPAIR_PATH, post(create_keypair).get(list_keypairs))
        .route(&keypair_one, get(read_keypair).delete(delete_keypair))
        .route(DECRYPT_PATH, post(decrypt).options(probe_decrypt))
        .route(
            GRANT_ISSUER_PATH,
            put(grants::register_issuer).get(grants::read_issuer),
        )
        .route(
            BROWSER_DECRYPT_PATH,
            post(grants::browser_decrypt)
                .options(probe_decrypt)
                .layer(middleware::from_fn_with_state(state.clone(), cors::origins)),
        )
        .route(REQUEST_LOG_PATH, get(read_log).delete(clear_log))
        .route(HEALTH_PATH, get(health))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            reqlog::record,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), limits::admit))
        .with_state(state)
}

/// Runs blocking keyring work on the blocking pool.
pub(crate) async fn blocking<T, F>(state: &Shared, work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Keyring) -> Result<T> + Send + 'static,
{
    let keyring = state.keyring.clone();
    tokio::task::spawn_blocking(move || work(&keyring))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(ApiError::from)
}

/// `POST /auth {id}` (admin token): issues Hawk credentials.
async fn issue_credentials(
    State(state): State<Shared>,
    request: Incoming,
) -> Result<Json<AuthResponse>, ApiError> {
    authenticate(&state, &request, Allow::Admin).await?;
    let AuthRequest { id } = request.json("auth")?;
    let issued = blocking(&state, move |k| k.issue_credential(&id)).await?;
    tracing::info!(credential_id = issued.id, "credentials issued");
    Ok(Json(issued))
}

/// `POST /keypair`: generates an RSA-3072 key pair.
async fn create_keypair(
    State(state): State<Shared>,
    request: Incoming,
) -> Result<Json<Keypair>, ApiError> {
    authenticate(&state, &request, Allow::HawkOrAdmin).await?;
    let pair = blocking(&state, Keyring::generate_keypair).await?;
    request.noted.keypair(&pair.id);
    tracing::info!(keypair_id = pair.id, "key pair created");
    Ok(Json(pair))
}

/// `GET /keypair`: every key pair, as a plain JSON array.
async fn list_keypairs(
    State(state): State<Shared>,
    request: Incoming,
) -> Result<Json<Vec<Keypair>>, ApiError> {
    authenticate(&state, &request, Allow::HawkOrAdmin).await?;
    Ok(Json(blocking(&state, Keyring::keypairs).await?))
}

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(id)| id)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// `GET /keypair/{id}`.
async fn read_keypair(
    State(state): State<Shared>,
    path: Result<Path<String>, PathRejection>,
    request: Incoming,
) -> Result<Json<Keypair>, ApiError> {
    let id = path_id(path)?;
    request.noted.keypair(&id);
    authenticate(&state, &request, Allow::HawkOrAdmin).await?;
    Ok(Json(blocking(&state, move |k| k.keypair(&id)).await?))
}

/// `DELETE /keypair/{id}`: 204, or 409 for a key pair that ever decrypted.
async fn delete_keypair(
    State(state): State<Shared>,
    path: Result<Path<String>, PathRejection>,
    request: Incoming,
) -> Result<StatusCode, ApiError> {
    let id = path_id(path)?;
    request.noted.keypair(&id);
    authenticate(&state, &request, Allow::HawkOrAdmin).await?;
    let deleted = id.clone();
    blocking(&state, move |k| k.delete_keypair(&deleted)).await?;
    tracing::info!(keypair_id = id, "key pair deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /decrypt {keypairId, body, decryptType?}` (Hawk): the plaintext, base64.
async fn decrypt(
    State(state): State<Shared>,
    request: Incoming,
) -> Result<Json<DecryptResponse>, ApiError> {
    let caller = authenticate(&state, &request, Allow::Hawk).await?;
    if let Caller::Hawk(id) = &caller {
        state
            .decrypts
            .take(id, Instant::now())
            .map_err(ApiError::rate_limited)?;
    }
    let body: DecryptRequest = request.json("decrypt")?;
    request.noted.keypair(&body.keypair_id);
    let padding = padding(body.decrypt_type.as_deref())?;
    let wrapped = wrapped_dek(&body.body)?;
    unwrap_dek(&state, body.keypair_id, wrapped, padding).await
}

/// The padding `decryptType` names. PKCS#1 v1.5 is refused here, before any RSA
/// operation (padding oracle).
pub(crate) fn padding(decrypt_type: Option<&str>) -> Result<DecryptType, ApiError> {
    DecryptType::from_field(decrypt_type).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The wrapped DEK from a request's base64 `body`.
pub(crate) fn wrapped_dek(body: &str) -> Result<Vec<u8>, ApiError> {
    let wrapped = B64
        .decode(body.trim())
        .map_err(|_| ApiError::bad_request("body is not base64"))?;
    if wrapped.is_empty() {
        return Err(ApiError::bad_request("body is empty"));
    }
    Ok(wrapped)
}

/// Decrypts `wrapped` with key pair `keypair_id`: the answer of both decrypts.
pub(crate) async fn unwrap_dek(
    state: &Shared,
    keypair_id: String,
    wrapped: Vec<u8>,
    padding: DecryptType,
) -> Result<Json<DecryptResponse>, ApiError> {
    let plain = blocking(state, move |k| k.decrypt(&keypair_id, &wrapped, padding)).await?;
    Ok(Json(DecryptResponse {
        body: B64.encode(plain.as_slice()),
    }))
}

/// `OPTIONS /decrypt` (and `/browser-decrypt` without an `Origin`): platforms probe
/// it, without credentials.
async fn probe_decrypt() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    response
}

/// The request-log query (epoch milliseconds).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogParams {
    max_entries: Option<u32>,
    earliest_time: Option<i64>,
    latest_time: Option<i64>,
}

/// `GET /request-log?maxEntries=&earliestTime=&latestTime=`: newest first.
async fn read_log(
    State(state): State<Shared>,
    request: Incoming,
) -> Result<Json<Vec<RequestLogEntry>>, ApiError> {
    authenticate(&state, &request, Allow::HawkOrAdmin).await?;
    let params: LogParams = request.query()?;
    let query = LogQuery {
        max_entries: params
            .max_entries
            .unwrap_or(DEFAULT_LOG_ENTRIES)
            .min(MAX_LOG_ENTRIES),
        earliest: params.earliest_time,
        latest: params.latest_time,
    };
    Ok(Json(
        blocking(&state, move |k| k.store().log(&query)).await?,
    ))
}

/// `DELETE /request-log`: empties it (this request is then its first entry).
async fn clear_log(State(state): State<Shared>, request: Incoming) -> Result<StatusCode, ApiError> {
    let caller = authenticate(&state, &request, Allow::HawkOrAdmin).await?;
    blocking(&state, |k| k.store().clear_log()).await?;
    tracing::info!(by = ?caller, "request log cleared");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /health`, without credentials.
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use axum::body::{Body, Bytes, HttpBody};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::data::DataDir;

    /// A request body that never arrives: its request holds its slot until dropped.
    struct Stalled;

    impl HttpBody for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn requests_beyond_the_in_flight_limit_are_refused_as_busy() {
        let dir = tempfile::tempdir().expect("dir");
        let keyring = Keyring::open(&DataDir::new(dir.path()), true).expect("keyring");
        let admin = AdminToken::new("an-admin-token-for-tests".into()).expect("token");
        let limits = Limits {
            max_in_flight: 1,
            ..Limits::default()
        };
        let local = SocketAddr::from(([127, 0, 0, 1], 8760));
        let app = router(Arc::new(AppState::new(
            keyring,
            admin,
            limits,
            Vec::new(),
            local,
        )));
        let stalled = Request::post(DECRYPT_PATH)
            .body(Body::new(Stalled))
            .expect("request");
        let holder = tokio::spawn(app.clone().oneshot(stalled));
        let health = || {
            Request::get(HEALTH_PATH)
                .body(Body::empty())
                .expect("request")
        };
        let mut refused = None;
        for _ in 0..100 {
            let answer = app.clone().oneshot(health()).await.expect("answer");
            if answer.status() == StatusCode::SERVICE_UNAVAILABLE {
                refused = Some(answer);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let refused = refused.expect("a second request is refused while the first holds the slot");
        assert_eq!(
            refused.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(1u64))
        );
        holder.abort();
        let _ = holder.await;
        let answer = app.oneshot(health()).await.expect("answer");
        assert_eq!(answer.status(), StatusCode::OK, "the slot is free again");
    }
}
