//! Export jobs: recordings leave in bulk. Each selected recording is decrypted
//! through its organisation's key service (managed, LKM or AWS KMS) and the guest,
//! streamed batch by batch (each chunk authenticated before its bytes go on),
//! optionally re-encrypted with OpenPGP, and written to a directory or an S3 bucket
//! (`tapeseal-export` decides where and how). Several recordings go at once. Each
//! recording's outcome is recorded, with the job's progress and an audit entry,
//! only once its file and metadata are durable: a job resumed after a crash, a
//! restart or a cancellation redoes exactly the recordings without an outcome, and
//! overwrites whatever half-made file they may have left. A recording that fails
//! (a key its LKM refuses, a damaged envelope) is reported and the others go on.
//! When none is left, the job writes its manifest.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::Shared;
use super::auth::Auth;
use super::error::{ApiError, ApiResult, JsonBody};
use tapeseal_export::DestinationSpec;
use tapeseal_export::pgp::PgpRecipient;
use tapeseal_store::catalogue::{AuditEvent, ExportSelection, Job, Role};
use tapeseal_store::time::now_ms;

mod pipe;
mod run;

pub use run::run;

/// The job kind.
pub const KIND: &str = "export";
/// The audit log's name for the export worker.
pub const ACTOR: &str = "export-job";
/// The sealing domain of an export destination's secret access key.
const SECRET_DOMAIN: &str = "tapeseal export secret access key v1";
/// The most entries one selection list may have.
const MAX_LIST: usize = 10_000;

/// The export routes.
pub fn routes() -> axum::Router<Shared> {
    axum::Router::new().route("/v1/jobs/export", post(create))
}

/// What starts an export job.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// Which recordings (every field narrows; none: all of the organisation's).
    #[serde(default)]
    pub select: ExportSelection,
    /// Where the files go.
    pub destination: DestinationSpec,
    /// An OpenPGP public key (as `gpg --export --armor` gives it) to encrypt every
    /// file to; files are then named `.pgp`.
    #[serde(default)]
    pub openpgp_public_key: Option<String>,
    /// Recordings exported at once (1 to 16; default `[export] parallel`).
    #[serde(default)]
    pub parallel: Option<u32>,
}

/// A job's parameters as the catalogue keeps them (no secret in the clear).
#[derive(Debug, Serialize, Deserialize)]
struct Params {
    select: ExportSelection,
    destination: DestinationSpec,
    /// The destination's secret access key, sealed under the master key (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_secret_access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    openpgp_public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    openpgp_fingerprint: Option<String>,
    parallel: u32,
}

/// A job's progress: counts and bytes, saved with every recording's outcome.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    /// Recordings selected.
    total: u64,
    /// Their plaintext bytes.
    total_bytes: u64,
    /// Recordings written.
    exported: u64,
    /// Recordings that failed.
    failed: u64,
    /// Plaintext bytes of the recordings written.
    bytes: u64,
    /// Bytes of the files written.
    written_bytes: u64,
    /// The manifest, once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest: Option<String>,
    /// Why the job stopped, if it stopped on an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn check_selection(select: &ExportSelection) -> ApiResult<()> {
    for kind in &select.media_kinds {
        if tapeseal_core::MediaKind::from_name(kind).is_none() && kind != super::recordings::SCREEN
        {
            return Err(ApiError::bad_request(
                "media_kinds are call, email, chat, message, transcript, other or screen",
            ));
        }
    }
    let lists = [
        &select.media_kinds,
        &select.conversation_ids,
        &select.recording_ids,
    ];
    if lists.iter().any(|l| l.len() > MAX_LIST) {
        return Err(ApiError::bad_request(
            "a selection list has more than 10000 entries; split the export",
        ));
    }
    if let (Some(from), Some(to)) = (select.from_ms, select.to_ms)
        && from >= to
    {
        return Err(ApiError::bad_request("from_ms must be before to_ms"));
    }
    Ok(())
}

/// Start an export job: the selected recordings are decrypted and written to the
/// destination, with a metadata file each and a final manifest. Poll
/// `GET /v1/jobs/{id}` for progress; cancel with `POST /v1/jobs/{id}/cancel`.
#[utoipa::path(
    post, path = "/v1/jobs/export", tag = "jobs",
    request_body = ExportRequest,
    responses(
        (status = 202, description = "Queued", body = Job),
        (status = 400, description = "A bad selection, destination or OpenPGP key", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn create(
    State(state): State<Shared>,
    auth: Auth,
    JsonBody(request): JsonBody<ExportRequest>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    auth.require(&[Role::Admin])?;
    let mut select = request.select;
    check_selection(&select)?;
    request.destination.check().map_err(ApiError::bad_request)?;
    let parallel = request.parallel.unwrap_or(state.config.export.parallel);
    if !(1..=crate::config::MAX_EXPORT_PARALLEL).contains(&parallel) {
        return Err(ApiError::bad_request("parallel must be 1 to 16"));
    }
    let fingerprint = match &request.openpgp_public_key {
        Some(key) => Some(
            PgpRecipient::parse(key.as_bytes())
                .map_err(|e| ApiError::bad_request(format!("openpgp_public_key: {e}")))?
                .fingerprint(),
        ),
        None => None,
    };
    let mut destination = request.destination;
    let sealed_secret_access_key = match &mut destination {
        DestinationSpec::S3 {
            access_key_id: Some(id),
            secret_access_key,
            ..
        } => {
            let secret = secret_access_key.take().ok_or_else(|| {
                ApiError::bad_request("give both access_key_id and secret_access_key, or neither")
            })?;
            let sealed = state
                .keys
                .master()
                .seal_secret(SECRET_DOMAIN, auth.org(), id, secret.expose().as_bytes())
                .map_err(|e| ApiError::internal(&e))?;
            Some(base64::engine::general_purpose::STANDARD.encode(sealed))
        }
        _ => None,
    };
    select.as_of_ms = Some(now_ms());
    let (total, total_bytes) = state
        .catalogue
        .count_export_selection(auth.org(), &select)?;
    let described = destination.describe();
    let params = Params {
        select,
        destination,
        sealed_secret_access_key,
        openpgp_public_key: request.openpgp_public_key,
        openpgp_fingerprint: fingerprint,
        parallel,
    };
    let progress = Progress {
        total,
        total_bytes,
        ..Progress::default()
    };
    let event = AuditEvent::ExportJobCreate {
        destination: &described,
        total,
    };
    let job = state.catalogue.create_job(
        auth.org(),
        KIND,
        &serde_json::to_value(&params).map_err(|e| ApiError::internal(&e))?,
        &serde_json::to_value(&progress).map_err(|e| ApiError::internal(&e))?,
        auth.actor(),
        &event,
    )?;
    tracing::info!(job_id = %job.id, total, destination = %described, "export job created");
    state.jobs.push(auth.org(), &job.id);
    Ok((StatusCode::ACCEPTED, Json(super::jobs::shown(job))))
}
