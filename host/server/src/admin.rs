//! Operating the server: health, metrics, the OpenAPI document, organisations (for
//! the operator), an organisation's tokens, and its audit log.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};

use super::Shared;
use super::auth::{Auth, Operator};
use super::error::{ApiError, ApiResult, JsonBody, QueryParams};
use tapeseal_core::ErrorCode;
use tapeseal_store::catalogue::{AuditEntry, AuditFilter, NewToken, Org, Role, TokenInfo};

/// The operating routes.
pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/orgs", post(create_org))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}", delete(revoke_token))
        .route("/v1/audit", get(audit))
}

/// Health.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// Catalogue schema version.
    pub schema_version: u32,
    /// tapeseal version.
    pub version: String,
}

/// Liveness and readiness: the catalogue answers.
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "Serving", body = Health),
        (status = 503, description = "The catalogue does not answer", body = super::error::ErrorBody),
    )
)]
pub async fn healthz(State(state): State<Shared>) -> ApiResult<Json<Health>> {
    let schema_version = state.catalogue.schema_version().map_err(|e| {
        tracing::error!(error = %e, "health check: catalogue unavailable");
        ApiError::new(ErrorCode::Unavailable, "the catalogue is unavailable")
    })?;
    Ok(Json(Health {
        status: "ok".into(),
        schema_version,
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", content_type = "text/plain; version=0.0.4"))
)]
pub async fn metrics(
    State(state): State<Shared>,
    headers: axum::http::HeaderMap,
) -> ApiResult<impl IntoResponse> {
    if let Some(expected) = &state.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !super::auth::same_secret(presented, &expected.0) {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "metrics need the metrics token (Authorization: Bearer ...)",
            ));
        }
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render() + &kms_metrics(state.keys.kms()) + &audit_metrics(&state),
    ))
}

/// The AWS KMS key service's counters, in the Prometheus text format.
fn kms_metrics(kms: &tapeseal_keys::kms::KmsKeys) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = kms.stats();
    format!(
        "# HELP tapeseal_kms_decrypts_total Private KEKs decrypted by AWS KMS for unwrapping.\n\
         # TYPE tapeseal_kms_decrypts_total counter\n\
         tapeseal_kms_decrypts_total {}\n\
         # HELP tapeseal_kms_cache_hits_total Unwraps served by a cached private KEK.\n\
         # TYPE tapeseal_kms_cache_hits_total counter\n\
         tapeseal_kms_cache_hits_total {}\n\
         # HELP tapeseal_kms_cached_keys Private KEKs held in memory now.\n\
         # TYPE tapeseal_kms_cached_keys gauge\n\
         tapeseal_kms_cached_keys {}\n",
        stats.decrypts.load(Relaxed),
        stats.cache_hits.load(Relaxed),
        kms.cached_keys()
    )
}

/// The audit log's group commits and the playback DEKs held, in the Prometheus
/// text format.
fn audit_metrics(state: &super::AppState) -> String {
    format!(
        "# HELP tapeseal_audit_commits_total Transactions that made audit entries durable (concurrent entries share one).\n\
         # TYPE tapeseal_audit_commits_total counter\n\
         tapeseal_audit_commits_total {}\n\
         # HELP tapeseal_catalogue_write_retries_total Catalogue writes run again after a conflict with another writer (PostgreSQL).\n\
         # TYPE tapeseal_catalogue_write_retries_total counter\n\
         tapeseal_catalogue_write_retries_total {}\n\
         # HELP tapeseal_playback_cached_deks DEKs held in memory for playbacks now.\n\
         # TYPE tapeseal_playback_cached_deks gauge\n\
         tapeseal_playback_cached_deks {}\n",
        state.catalogue.audit_commits(),
        state.catalogue.write_retries(),
        state.playback_deks.len()
    )
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::document(),
    )
}

/// A new organisation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewOrg {
    /// Unique name, 1 to 200 characters.
    pub name: String,
}

/// A new organisation and its first admin token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedOrg {
    /// The organisation.
    pub org: Org,
    /// An admin token for it; the secret is shown this once.
    pub admin_token: CreatedToken,
}

/// Create an organisation and its first admin token (operator token only).
#[utoipa::path(
    post, path = "/v1/orgs", tag = "organisations",
    request_body = NewOrg,
    responses(
        (status = 201, description = "Created", body = CreatedOrg),
        (status = 409, description = "The name is taken", body = super::error::ErrorBody),
    ),
    security(("operator" = []))
)]
pub async fn create_org(
    State(state): State<Shared>,
    _operator: Operator,
    JsonBody(body): JsonBody<NewOrg>,
) -> ApiResult<(StatusCode, Json<CreatedOrg>)> {
    let org = state.catalogue.create_org(&body.name, "operator")?;
    let token = state
        .catalogue
        .create_token(&org.id, Role::Admin, "first admin", "operator")?;
    let admin_token = CreatedToken::from(&token);
    Ok((StatusCode::CREATED, Json(CreatedOrg { org, admin_token })))
}

/// A token to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewTokenRequest {
    /// `admin`, `recorder` or `player`.
    pub role: String,
    /// A note for whoever lists tokens later, at most 200 bytes.
    #[serde(default)]
    pub label: String,
}

/// A created token; the secret is shown this once and never stored.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// Token id.
    pub id: String,
    /// The bearer secret (`tsk_...`).
    pub token: String,
    /// Its role.
    pub role: String,
}

impl From<&NewToken> for CreatedToken {
    fn from(token: &NewToken) -> Self {
        Self {
            id: token.id.clone(),
            token: token.secret.to_string(),
            role: token.role.name().into(),
        }
    }
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Create a token in the caller's organisation (admin).
#[utoipa::path(
    post, path = "/v1/tokens", tag = "organisations",
    request_body = NewTokenRequest,
    responses((status = 201, description = "Created; the secret is shown only now", body = CreatedToken)),
    security(("token" = []))
)]
pub async fn create_token(
    State(state): State<Shared>,
    auth: Auth,
    JsonBody(body): JsonBody<NewTokenRequest>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    auth.require(&[Role::Admin])?;
    let role = Role::from_name(&body.role)
        .ok_or_else(|| ApiError::bad_request("role must be admin, recorder or player"))?;
    let token = state
        .catalogue
        .create_token(auth.org(), role, &body.label, auth.actor())?;
    Ok((StatusCode::CREATED, Json(CreatedToken::from(&token))))
}

/// The organisation's tokens (never their secrets).
#[utoipa::path(
    get, path = "/v1/tokens", tag = "organisations",
    responses((status = 200, description = "Tokens", body = Vec<TokenInfo>)),
    security(("token" = []))
)]
pub async fn list_tokens(
    State(state): State<Shared>,
    auth: Auth,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    auth.require(&[Role::Admin])?;
    Ok(Json(state.catalogue.list_tokens(auth.org())?))
}

/// Revoke a token of the caller's organisation.
#[utoipa::path(
    delete, path = "/v1/tokens/{id}", tag = "organisations",
    params(("id" = String, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such active token in this organisation", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn revoke_token(
    State(state): State<Shared>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require(&[Role::Admin])?;
    if !state
        .catalogue
        .revoke_token(auth.org(), &id, auth.actor())?
    {
        return Err(ApiError::not_found("token"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Audit log filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries at or after this time (Unix milliseconds).
    pub from: Option<i64>,
    /// Entries before this time (Unix milliseconds).
    pub to: Option<i64>,
    /// Entries by this actor (a token id, `scheduler`, `rewrap-job`, `operator`, `cli`).
    pub actor: Option<String>,
    /// Entries about this recording.
    pub recording_id: Option<String>,
    /// Entries about this KEK.
    pub kek_id: Option<String>,
    /// Entries with this action, e.g. `recording.decrypt`.
    pub action: Option<String>,
    /// Entries after this sequence number (paging).
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// The organisation's audit log, oldest first (admin).
#[utoipa::path(
    get, path = "/v1/audit", tag = "organisations",
    params(AuditQuery),
    responses((status = 200, description = "Entries", body = Vec<AuditEntry>)),
    security(("token" = []))
)]
pub async fn audit(
    State(state): State<Shared>,
    auth: Auth,
    QueryParams(q): QueryParams<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    auth.require(&[Role::Admin])?;
    let filter = AuditFilter {
        from_ms: q.from,
        to_ms: q.to,
        actor: q.actor,
        recording_id: q.recording_id,
        kek_id: q.kek_id,
        action: q.action,
        after_seq: q.after,
        limit: q.limit,
    };
    Ok(Json(state.catalogue.audit_log(auth.org(), &filter)?))
}
