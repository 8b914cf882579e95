//! An organisation's Local Key Manager over HTTP: where it is (`GET`/`PUT /v1/lkm`),
//! and the registration of its key pairs by id and public key (`POST
//! /v1/lkm/keypairs`), which the LKM must first prove it holds by decrypting a sample
//! DEK. New recordings are sealed for the newest registered key pair; rotation is
//! done in the LKM (create a key pair there, register it here).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use tapeseal_keys::lkm::{DEFAULT_TIMEOUT, Settings};
use tapeseal_store::catalogue::Role;

use super::Shared;
use super::auth::Auth;
use super::error::{ApiError, ApiResult, JsonBody};
use super::keys::{KekView, view};

/// The LKM routes.
pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/v1/lkm", get(settings).put(configure))
        .route("/v1/lkm/keypairs", post(register))
        .route("/v1/lkm/grant-key", post(register_grant_key))
}

/// Where the organisation's LKM is and how it is reached.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct LkmRequest {
    /// The LKM's decrypt URL, `https://host:port/key-management/v1/decrypt`.
    pub decrypt_url: String,
    /// The Hawk id the LKM issued to this server.
    pub hawk_id: String,
    /// The Hawk key (`authKey`) the LKM issued; stored sealed, never shown again.
    pub hawk_key: String,
    /// The CA certificate (PEM) that issued the LKM's TLS certificate.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// Or the SHA-256 fingerprint (hex) of the LKM's own certificate, pinned.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// How long one LKM request may take, in milliseconds (default 5000, at most
    /// 30000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// The LKM's browser-decrypt URL as browsers reach it (for playback grants);
    /// default: the decrypt URL with `browser-decrypt` for `decrypt`.
    #[serde(default)]
    pub browser_url: Option<String>,
}

impl std::fmt::Debug for LkmRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LkmRequest")
            .field("decrypt_url", &self.decrypt_url)
            .field("hawk_id", &self.hawk_id)
            .finish_non_exhaustive()
    }
}

/// The organisation's LKM settings as the API shows them (never the Hawk key).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LkmView {
    /// `lkm` once configured.
    pub key_mode: String,
    /// The decrypt URL.
    pub decrypt_url: String,
    /// The Hawk id.
    pub hawk_id: String,
    /// How the LKM's certificate is trusted: `ca`, `fingerprint` or `system`.
    pub trust: String,
    /// The pinned fingerprint, if any.
    pub fingerprint: Option<String>,
    /// Request timeout in milliseconds.
    pub timeout_ms: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// Whether browsers get playback grants (the LKM accepted this server's grant
    /// key); otherwise recordings play through the server.
    pub browser_grants: bool,
    /// Where browsers present grants.
    pub browser_url: Option<String>,
    /// The grant key's id (the first 8 bytes of its SHA-256, hex).
    pub grant_key_id: Option<String>,
    /// Why the LKM did not accept the grant key, the last time it was asked.
    pub grants_error: Option<String>,
}

/// A key pair of the LKM to seal new recordings for.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RegisterKeypair {
    /// The LKM's key pair id.
    pub id: String,
    /// Its public key as the LKM gives it (base64 DER PKCS#1 `RSAPublicKey`), or
    /// base64 DER SubjectPublicKeyInfo, or PEM.
    pub public_key: String,
}

fn current_view(state: &Shared, org_id: &str) -> ApiResult<LkmView> {
    let org = state.catalogue.find_org(org_id)?;
    let record = state
        .keys
        .lkm()
        .settings(org_id)?
        .ok_or_else(|| ApiError::not_found("Local Key Manager for this organisation"))?;
    Ok(LkmView {
        key_mode: org.key_mode,
        trust: match (&record.ca_pem, &record.fingerprint) {
            (Some(_), _) => "ca",
            (None, Some(_)) => "fingerprint",
            (None, None) => "system",
        }
        .into(),
        decrypt_url: record.decrypt_url,
        hawk_id: record.hawk_id,
        fingerprint: record.fingerprint,
        timeout_ms: record.timeout_ms,
        updated_at: record.updated_at,
        browser_grants: record.grants.registered_at.is_some(),
        browser_url: record.grants.browser_url,
        grant_key_id: record.grants.key_id,
        grants_error: record.grants.error,
    })
}

/// The organisation's LKM.
#[utoipa::path(
    get, path = "/v1/lkm", tag = "keys",
    responses(
        (status = 200, description = "The LKM settings", body = LkmView),
        (status = 404, description = "No LKM is configured", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn settings(State(state): State<Shared>, auth: Auth) -> ApiResult<Json<LkmView>> {
    auth.require(&[Role::Admin])?;
    Ok(Json(current_view(&state, auth.org())?))
}

/// Set the organisation's LKM and switch it to LKM mode. Recordings already sealed
/// for managed KEKs keep playing; new ones need a registered key pair.
#[utoipa::path(
    put, path = "/v1/lkm", tag = "keys",
    request_body = LkmRequest,
    responses(
        (status = 200, description = "The new settings", body = LkmView),
        (status = 502, description = "Unusable settings (`key_service_failed`)", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn configure(
    State(state): State<Shared>,
    auth: Auth,
    JsonBody(body): JsonBody<LkmRequest>,
) -> ApiResult<Json<LkmView>> {
    auth.require(&[Role::Admin])?;
    let settings = Settings {
        decrypt_url: body.decrypt_url.trim().to_string(),
        hawk_id: body.hawk_id,
        hawk_key: Zeroizing::new(body.hawk_key),
        ca_pem: body.ca_pem.filter(|p| !p.trim().is_empty()),
        fingerprint: body.fingerprint.filter(|f| !f.trim().is_empty()),
        timeout: body
            .timeout_ms
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis),
        browser_url: body
            .browser_url
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty()),
    };
    state
        .keys
        .lkm()
        .configure(auth.org(), &settings, auth.actor())
        .map_err(|e| match e {
            tapeseal_keys::KeyServiceError::Failed(reason) => ApiError::bad_request(reason),
            other => other.into(),
        })?;
    tracing::info!(url = %settings.decrypt_url, "LKM configured");
    super::playback::forget_playback_deks(&state, auth.org());
    try_grant_key(&state, &auth).await;
    Ok(Json(current_view(&state, auth.org())?))
}

/// Registers the grant key with the LKM, keeping the settings if the LKM cannot be
/// reached now (the outcome is recorded and shown; it is tried again when a key pair
/// is registered, or with `POST /v1/lkm/grant-key`).
async fn try_grant_key(state: &Shared, auth: &Auth) {
    match state
        .keys
        .lkm()
        .register_grant_key(auth.org(), auth.actor())
        .await
    {
        Ok(true) => tracing::info!("the LKM accepted the grant key: browsers get grants"),
        Ok(false) => {
            tracing::info!("the LKM has no browser decrypt: recordings play through the server")
        }
        Err(e) => tracing::warn!(error = %e, "the LKM did not take the grant key"),
    }
}

/// Register (again) this server's playback-grant key with the organisation's LKM,
/// so that browsers can ask the LKM for DEKs themselves.
#[utoipa::path(
    post, path = "/v1/lkm/grant-key", tag = "keys",
    responses(
        (status = 200, description = "The settings; `browser_grants` says whether the LKM took the key", body = LkmView),
        (status = 409, description = "No LKM configured", body = super::error::ErrorBody),
        (status = 502, description = "The LKM refused the key or the credentials", body = super::error::ErrorBody),
        (status = 503, description = "The LKM cannot be reached", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn register_grant_key(
    State(state): State<Shared>,
    auth: Auth,
) -> ApiResult<Json<LkmView>> {
    auth.require(&[Role::Admin])?;
    state
        .keys
        .lkm()
        .register_grant_key(auth.org(), auth.actor())
        .await?;
    Ok(Json(current_view(&state, auth.org())?))
}

/// Register one of the LKM's key pairs: the LKM must decrypt a sample DEK wrapped
/// for the public key (RSA-OAEP SHA-256, or SHA-1 if it cannot) before anything is
/// sealed for it. It becomes the key pair new recordings are sealed for.
#[utoipa::path(
    post, path = "/v1/lkm/keypairs", tag = "keys",
    request_body = RegisterKeypair,
    responses(
        (status = 201, description = "The registered key pair, now current", body = KekView),
        (status = 400, description = "Not a usable public key", body = super::error::ErrorBody),
        (status = 403, description = "The LKM could not decrypt the sample (`key_refused`)", body = super::error::ErrorBody),
        (status = 409, description = "No LKM configured, or the id is registered already", body = super::error::ErrorBody),
        (status = 502, description = "The LKM rejected the credentials or does not know the key pair", body = super::error::ErrorBody),
        (status = 503, description = "The LKM cannot be reached", body = super::error::ErrorBody),
        (status = 504, description = "The LKM did not answer in time", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn register(
    State(state): State<Shared>,
    auth: Auth,
    JsonBody(body): JsonBody<RegisterKeypair>,
) -> ApiResult<(StatusCode, Json<KekView>)> {
    auth.require(&[Role::Admin])?;
    let text = body.public_key.trim();
    let public_key = if text.starts_with("-----BEGIN") {
        text.as_bytes().to_vec()
    } else {
        B64.decode(text)
            .map_err(|_| ApiError::bad_request("public_key is base64 DER or PEM"))?
    };
    let kek = state
        .keys
        .lkm()
        .register(auth.org(), body.id.trim(), &public_key, auth.actor())
        .await?;
    tracing::info!(kek_id = %kek.id, algorithm = kek.algorithm.name(), "LKM key pair registered");
    let grants_on = state
        .keys
        .lkm()
        .settings(auth.org())?
        .is_some_and(|s| s.grants.registered_at.is_some());
    if !grants_on {
        try_grant_key(&state, &auth).await;
    }
    let record = state.catalogue.kek(auth.org(), &kek.id)?.ok_or_else(|| {
        ApiError::internal(&"the registered key pair is missing from the catalogue")
    })?;
    Ok((
        StatusCode::CREATED,
        Json(view(&state, record, Some(&kek.id))?),
    ))
}
