//! An organisation's AWS KMS key over HTTP (`GET`/`PUT /v1/kms`): setting it puts
//! the organisation in KMS mode (its private KEKs are kept only as KMS ciphertext);
//! setting another key is the KMS key change (every private KEK re-encrypted under
//! the new key, no recording touched). docs/KEY-MODES.md.

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use tapeseal_keys::kms::KmsRequest as Request;
use tapeseal_store::catalogue::{KmsSettings, Role};

use super::Shared;
use super::auth::Auth;
use super::error::{ApiError, ApiResult, JsonBody};

/// The KMS routes.
pub fn routes() -> axum::Router<Shared> {
    axum::Router::new().route("/v1/kms", get(settings).put(configure))
}

/// The organisation's KMS key, and whose AWS credentials reach it.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct KmsRequest {
    /// A KMS key id, key ARN, alias name (`alias/…`) or alias ARN. tapeseal records
    /// the key's ARN as KMS answers it.
    pub key_id: String,
    /// The key's region, when `key_id` is not an ARN (default: the server's
    /// `[kms] region`, then `AWS_REGION`).
    #[serde(default)]
    pub region: Option<String>,
    /// An AWS access key id of the organisation's, instead of the server's own AWS
    /// credentials.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Its secret; stored sealed under the master key, never shown again.
    #[serde(default)]
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for KmsRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsRequest")
            .field("key_id", &self.key_id)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The organisation's KMS settings as the API shows them (never the secret key).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KmsView {
    /// The organisation's key mode (`aws-kms` once set, unless switched since).
    pub key_mode: String,
    /// The key as the administrator named it.
    pub key_id: String,
    /// The key's ARN: new KEKs are encrypted under it.
    pub key_arn: String,
    /// The key's region.
    pub region: String,
    /// Whose AWS credentials reach KMS: `server` or `organisation`.
    pub credentials: String,
    /// The organisation's access key id, when it gave one.
    pub access_key_id: Option<String>,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// How many KEKs' private keys are under this KMS key.
    pub keks: usize,
    /// How many KEKs this request moved from the previous KMS key (`PUT` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rekeyed: Option<usize>,
    /// The KEK this request created, if the organisation had none under KMS
    /// (`PUT` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_kek: Option<String>,
}

fn view(state: &Shared, settings: KmsSettings) -> ApiResult<KmsView> {
    let org = state.catalogue.find_org(&settings.org_id)?;
    let keks = state
        .catalogue
        .kms_keks(&settings.org_id)?
        .iter()
        .filter(|k| k.kms_key_arn.as_deref() == Some(settings.key_arn.as_str()))
        .count();
    Ok(KmsView {
        key_mode: org.key_mode,
        credentials: if settings.access_key_id.is_some() {
            "organisation"
        } else {
            "server"
        }
        .into(),
        key_id: settings.key_id,
        key_arn: settings.key_arn,
        region: settings.region,
        access_key_id: settings.access_key_id,
        updated_at: settings.updated_at,
        keks,
        rekeyed: None,
        created_kek: None,
    })
}

/// The organisation's AWS KMS key.
#[utoipa::path(
    get, path = "/v1/kms", tag = "keys",
    responses(
        (status = 200, description = "The KMS settings", body = KmsView),
        (status = 404, description = "No KMS key is configured", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn settings(State(state): State<Shared>, auth: Auth) -> ApiResult<Json<KmsView>> {
    auth.require(&[Role::Admin])?;
    let settings = state
        .keys
        .kms()
        .settings(auth.org())?
        .ok_or_else(|| ApiError::not_found("AWS KMS key for this organisation"))?;
    Ok(Json(view(&state, settings)?))
}

/// Set the organisation's AWS KMS key and switch it to KMS mode; with KEKs under
/// another KMS key already, move them all to this one (the KMS key change).
#[utoipa::path(
    put, path = "/v1/kms", tag = "keys",
    request_body = KmsRequest,
    responses(
        (status = 200, description = "The new settings", body = KmsView),
        (status = 400, description = "Malformed settings", body = super::error::ErrorBody),
        (status = 502, description = "KMS refused (`key_service_failed`): access, key state, key id", body = super::error::ErrorBody),
        (status = 503, description = "KMS unreachable (`key_service_unavailable`)", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn configure(
    State(state): State<Shared>,
    auth: Auth,
    JsonBody(body): JsonBody<KmsRequest>,
) -> ApiResult<Json<KmsView>> {
    auth.require(&[Role::Admin])?;
    let access_key = match (body.access_key_id, body.secret_access_key) {
        (None, None) => None,
        (id, secret) => Some((
            id.unwrap_or_default(),
            Zeroizing::new(secret.unwrap_or_default()),
        )),
    };
    let request = Request {
        key_id: body.key_id,
        region: body.region,
        access_key,
    };
    let done = state
        .keys
        .kms()
        .configure(auth.org(), &request, auth.actor())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "KMS settings not accepted");
            e
        })?;
    super::playback::forget_playback_deks(&state, auth.org());
    tracing::info!(
        key_arn = %done.settings.key_arn,
        rekeyed = done.rekeyed,
        "KMS key configured"
    );
    let mut shown = view(&state, done.settings)?;
    shown.rekeyed = Some(done.rekeyed);
    shown.created_kek = done.created_kek;
    Ok(Json(shown))
}
