//! KEKs over HTTP: list, "change key now", the rotation schedule, the deletion
//! guard; and the two things the rest of the server needs from the key service:
//! unwrapping a recording's DEK, and rotating when a schedule says so.

use std::time::{Duration, Instant};
use tapeseal_keys::KeyService;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, put};
use serde::{Deserialize, Serialize};
use tapeseal_core::Dek;
use tapeseal_keys::{KeyServiceError, StanzaRef, UnwrapContext};

use super::auth::Auth;
use super::error::{ApiError, ApiResult, JsonBody};
use super::{AppState, Shared};
use tapeseal_engine::HeaderInfo;
use tapeseal_store::catalogue::{KekRecord, Role};
use tapeseal_store::schedule::Period;

/// The key routes.
pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/v1/keks", get(list).post(rotate))
        .route("/v1/keks/current", get(current))
        .route("/v1/keks/{id}", delete(remove).get(one))
        .route("/v1/rotation-schedule", get(schedule).put(set_schedule))
        .route("/v1/key-mode", put(set_mode))
}

/// How long one key-service call may take before it counts as failed.
const KEY_SERVICE_DEADLINE: Duration = Duration::from_secs(10);

/// Unwraps a recording's DEK through the organisation's key service, with whichever
/// of its header's stanzas the service can open. Returns the DEK and the KEK that
/// unwrapped it.
pub async fn unwrap_dek(
    state: &AppState,
    context: &UnwrapContext<'_>,
    header: &HeaderInfo,
) -> Result<(Dek, String), KeyServiceError> {
    let stanzas: Vec<StanzaRef<'_>> = header
        .stanzas
        .iter()
        .map(|s| StanzaRef {
            kek_id: &s.kek_id,
            algorithm: s.algorithm.into(),
            wrapped: &s.wrapped_dek,
        })
        .collect();
    let started = Instant::now();
    let unwrapped =
        tapeseal_keys::unwrap_dek(&state.keys, context, &stanzas, KEY_SERVICE_DEADLINE).await?;
    state.metrics.unwraps.inc();
    state.metrics.unwrap_seconds.observe(started.elapsed());
    Ok(unwrapped)
}

/// A KEK as the API shows it (public parts only).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KekView {
    /// KEK id.
    pub id: String,
    /// `active` or `retired`.
    pub state: String,
    /// Whether new recordings are sealed for it.
    pub current: bool,
    /// Where its private key is held: `managed` (sealed here under the master
    /// key), `lkm` (in the organisation's Local Key Manager) or `aws-kms` (here,
    /// only as ciphertext under the organisation's AWS KMS key).
    pub mode: String,
    /// The RSA-OAEP padding DEKs are wrapped for it with: `rsa-oaep-sha256` or
    /// `rsa-oaep-sha1` (an LKM that cannot decrypt SHA-256).
    pub wrap_algorithm: String,
    /// Its public key, PEM (SubjectPublicKeyInfo).
    pub public_key_pem: String,
    /// How many stored recordings are wrapped for it.
    pub recordings: u64,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A KEK's public key as PEM (SubjectPublicKeyInfo).
fn public_key_pem(key: &tapeseal_core::KekPublicKey) -> ApiResult<String> {
    let der = key.to_spki_der().map_err(|e| ApiError::internal(&e))?;
    tapeseal_keys::pem_encode("PUBLIC KEY", &der).map_err(|e| ApiError::internal(&e))
}

pub(crate) fn view(state: &AppState, kek: KekRecord, current: Option<&str>) -> ApiResult<KekView> {
    let recordings = state.catalogue.recordings_using_kek(&kek.org_id, &kek.id)?;
    let public_key_pem = tapeseal_core::KekPublicKey::from_der(&kek.public_spki)
        .map_err(|e| ApiError::internal(&e))
        .and_then(|key| public_key_pem(&key))?;
    Ok(KekView {
        current: current == Some(kek.id.as_str()),
        mode: kek.holder().name().into(),
        wrap_algorithm: kek.wrap_algorithm,
        id: kek.id,
        state: kek.state,
        public_key_pem,
        recordings,
        created_at: kek.created_at,
    })
}

/// The organisation's KEKs, newest first.
#[utoipa::path(
    get, path = "/v1/keks", tag = "keys",
    responses((status = 200, description = "KEKs, newest first", body = Vec<KekView>)),
    security(("token" = []))
)]
pub async fn list(State(state): State<Shared>, auth: Auth) -> ApiResult<Json<Vec<KekView>>> {
    auth.require(&[Role::Admin])?;
    let current = state
        .catalogue
        .current_kek_of_mode(auth.org())?
        .map(|k| k.id);
    let keks = state.catalogue.list_keks(auth.org())?;
    let views = keks
        .into_iter()
        .map(|k| view(&state, k, current.as_deref()))
        .collect::<ApiResult<_>>()?;
    Ok(Json(views))
}

/// What a recorder that seals at the edge needs of the KEK new recordings are
/// sealed for: public parts only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CurrentKekView {
    /// KEK id: the `kek_id` of the envelope's key stanza.
    pub id: String,
    /// The organisation: the envelope's `org_id`.
    pub org_id: String,
    /// The RSA-OAEP padding to wrap the DEK with: `rsa-oaep-sha256` or
    /// `rsa-oaep-sha1`.
    pub wrap_algorithm: String,
    /// Its public key, PEM (SubjectPublicKeyInfo).
    pub public_key_pem: String,
}

/// The KEK new recordings are sealed for, for recorders that seal recordings
/// themselves (`PUT /v1/recordings/{id}/envelope`). A managed or AWS KMS
/// organisation's first KEK is created by this call, as by a first ingest.
#[utoipa::path(
    get, path = "/v1/keks/current", tag = "keys",
    responses(
        (status = 200, description = "The current KEK", body = CurrentKekView),
        (status = 409, description = "An LKM organisation has registered no key pair yet", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn current(State(state): State<Shared>, auth: Auth) -> ApiResult<Json<CurrentKekView>> {
    auth.require(&[Role::Recorder, Role::Admin])?;
    let kek = state.keys.current(auth.org(), auth.actor()).await?;
    let public_key_pem = public_key_pem(&kek.public_key)?;
    Ok(Json(CurrentKekView {
        id: kek.id,
        org_id: auth.org().to_string(),
        wrap_algorithm: kek.algorithm.name().into(),
        public_key_pem,
    }))
}

/// One KEK.
#[utoipa::path(
    get, path = "/v1/keks/{id}", tag = "keys",
    params(("id" = String, Path, description = "KEK id")),
    responses(
        (status = 200, description = "The KEK", body = KekView),
        (status = 404, description = "No such KEK in this organisation", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn one(
    State(state): State<Shared>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<KekView>> {
    auth.require(&[Role::Admin])?;
    let kek = state
        .catalogue
        .kek(auth.org(), &id)?
        .ok_or_else(|| ApiError::not_found("KEK"))?;
    let current = state
        .catalogue
        .current_kek_of_mode(auth.org())?
        .map(|k| k.id);
    Ok(Json(view(&state, kek, current.as_deref())?))
}

/// Change key now: generate a new KEK and make it current. Older KEKs keep
/// decrypting their recordings.
#[utoipa::path(
    post, path = "/v1/keks", tag = "keys",
    responses((status = 201, description = "The new current KEK", body = KekView)),
    security(("token" = []))
)]
pub async fn rotate(
    State(state): State<Shared>,
    auth: Auth,
) -> ApiResult<(StatusCode, Json<KekView>)> {
    auth.require(&[Role::Admin])?;
    let kek = state.keys.rotate(auth.org(), auth.actor()).await?;
    state.metrics.rotations.inc();
    tracing::info!(kek_id = %kek.id, "KEK rotated on demand");
    let record = state
        .catalogue
        .kek(auth.org(), &kek.id)?
        .ok_or_else(|| ApiError::internal(&"the new KEK is missing from the catalogue"))?;
    Ok((
        StatusCode::CREATED,
        Json(view(&state, record, Some(&kek.id))?),
    ))
}

/// Which holder new recordings' KEKs come from.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct KeyModeRequest {
    /// `managed`, `lkm` or `aws-kms`.
    pub mode: String,
}

/// The organisation's key mode after a switch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyModeView {
    /// `managed`, `lkm` or `aws-kms`.
    pub key_mode: String,
    /// The KEK new recordings are sealed for now; none for an LKM organisation
    /// that has not registered a key pair yet.
    pub current: Option<KekView>,
}

/// Switch the organisation's key mode. `managed` makes a new managed KEK current;
/// `lkm` and `aws-kms` need their settings first (`PUT /v1/lkm`, `PUT /v1/kms`,
/// which switch by themselves). KEKs of the other modes keep unwrapping their
/// recordings; a rewrap job moves recordings onto the current KEK.
#[utoipa::path(
    put, path = "/v1/key-mode", tag = "keys",
    request_body = KeyModeRequest,
    responses(
        (status = 200, description = "The new key mode and current KEK", body = KeyModeView),
        (status = 400, description = "Unknown mode", body = super::error::ErrorBody),
        (status = 409, description = "That mode has no settings yet", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn set_mode(
    State(state): State<Shared>,
    auth: Auth,
    JsonBody(body): JsonBody<KeyModeRequest>,
) -> ApiResult<Json<KeyModeView>> {
    auth.require(&[Role::Admin])?;
    let holder = tapeseal_store::catalogue::KekHolder::of_mode(body.mode.trim())
        .ok_or_else(|| ApiError::bad_request("mode is managed, lkm or aws-kms"))?;
    let current = state
        .keys
        .set_mode(auth.org(), holder, auth.actor())
        .await?;
    tracing::info!(mode = holder.name(), "key mode switched");
    super::playback::forget_playback_deks(&state, auth.org());
    let current = match current {
        Some(kek) => state.catalogue.kek(auth.org(), &kek.id)?,
        None => None,
    };
    let current = match current {
        Some(record) => {
            let id = record.id.clone();
            Some(view(&state, record, Some(&id))?)
        }
        None => None,
    };
    Ok(Json(KeyModeView {
        key_mode: holder.name().into(),
        current,
    }))
}

/// Delete a KEK. Refused with 409 `kek_in_use` while any stored recording is
/// wrapped for it: rewrap those first.
#[utoipa::path(
    delete, path = "/v1/keks/{id}", tag = "keys",
    params(("id" = String, Path, description = "KEK id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such KEK in this organisation", body = super::error::ErrorBody),
        (status = 409, description = "Recordings still use it (`kek_in_use`), or it is the current KEK (`conflict`)", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn remove(
    State(state): State<Shared>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require(&[Role::Admin])?;
    let current = state
        .catalogue
        .current_kek_of_mode(auth.org())?
        .map(|k| k.id);
    if current.as_deref() == Some(id.as_str()) {
        let users = state.catalogue.recordings_using_kek(auth.org(), &id)?;
        if users == 0 {
            return Err(ApiError::conflict(
                "this is the current KEK; rotate to a new one before deleting it",
            ));
        }
    }
    state.keys.delete(auth.org(), &id, auth.actor()).await?;
    tracing::info!(kek_id = %id, "KEK deleted");
    super::playback::forget_playback_deks(&state, auth.org());
    Ok(StatusCode::NO_CONTENT)
}

/// The rotation schedule.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleView {
    /// `DISABLED`, `DAILY`, `WEEKLY`, `MONTHLY` or `YEARLY`.
    pub period: String,
    /// When the schedule last rotated the KEK (Unix milliseconds).
    #[serde(default, skip_deserializing)]
    pub last_rotated_at: Option<i64>,
    /// When the current KEK is next due (Unix milliseconds); absent when disabled.
    #[serde(default, skip_deserializing)]
    pub next_rotation_at: Option<i64>,
}

fn schedule_view(state: &AppState, org_id: &str) -> ApiResult<ScheduleView> {
    let (period, last) = state.catalogue.schedule(org_id)?;
    let next = state
        .catalogue
        .current_kek_of_mode(org_id)?
        .and_then(|k| period.next_due(k.created_at));
    Ok(ScheduleView {
        period: period.name().into(),
        last_rotated_at: last,
        next_rotation_at: next,
    })
}

/// The organisation's rotation schedule.
#[utoipa::path(
    get, path = "/v1/rotation-schedule", tag = "keys",
    responses((status = 200, description = "The schedule", body = ScheduleView)),
    security(("token" = []))
)]
pub async fn schedule(State(state): State<Shared>, auth: Auth) -> ApiResult<Json<ScheduleView>> {
    auth.require(&[Role::Admin])?;
    Ok(Json(schedule_view(&state, auth.org())?))
}

/// Set the rotation schedule; it is kept across restarts. A current KEK that is
/// already a whole period old rotates at once.
#[utoipa::path(
    put, path = "/v1/rotation-schedule", tag = "keys",
    request_body = ScheduleView,
    responses(
        (status = 200, description = "The new schedule", body = ScheduleView),
        (status = 400, description = "Unknown period", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn set_schedule(
    State(state): State<Shared>,
    auth: Auth,
    JsonBody(body): JsonBody<ScheduleView>,
) -> ApiResult<Json<ScheduleView>> {
    auth.require(&[Role::Admin])?;
    let period = Period::from_name(&body.period.to_ascii_uppercase()).ok_or_else(|| {
        ApiError::bad_request("period must be DISABLED, DAILY, WEEKLY, MONTHLY or YEARLY")
    })?;
    state
        .catalogue
        .set_schedule(auth.org(), period, auth.actor())?;
    rotate_org_if_due(&state, auth.org()).await;
    Ok(Json(schedule_view(&state, auth.org())?))
}

/// Rotates every organisation whose schedule is due now. Called at start (so a
/// rotation missed while the server was down happens then) and by the scheduler.
pub async fn rotate_due(state: &AppState) {
    let orgs = match state.catalogue.list_orgs() {
        Ok(orgs) => orgs,
        Err(e) => {
            tracing::error!(error = %e, "scheduler cannot list organisations");
            return;
        }
    };
    for org in orgs {
        rotate_org_if_due(state, &org.id).await;
    }
}

/// Rotates one organisation's KEK if its schedule says it is due now.
async fn rotate_org_if_due(state: &AppState, org_id: &str) {
    match state
        .keys
        .rotate_if_due(org_id, tapeseal_store::time::now_ms())
        .await
    {
        Ok(Some(kek)) => {
            state.metrics.rotations.inc();
            tracing::info!(org_id, kek_id = %kek.id, "KEK rotated by schedule");
        }
        Ok(None) => {}
        Err(e) => tracing::error!(org_id, error = %e, "scheduled rotation failed"),
    }
}

/// Checks the schedules every `scheduler_interval_secs`.
pub async fn scheduler(state: Shared) {
    let period = Duration::from_secs(state.config.scheduler_interval_secs);
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tick.tick().await;
        rotate_due(&state).await;
    }
}
