//! Rewrap jobs: move every recording of one KEK onto another by rewriting envelope
//! headers only; the payload bytes are copied unchanged, never re-encrypted. Each
//! recording is replaced atomically and then re-pointed in the catalogue; progress
//! is persisted, so a job interrupted by a crash resumes at the next start, and a
//! recording whose object was replaced just before the crash is recognised by its
//! header and only re-pointed.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::auth::Auth;
use super::error::{ApiError, ApiResult, JsonBody};
use super::keys::unwrap_dek;
use super::{AppState, Shared};
use crate::catalogue::{Job, JobState, RecordingFilter, RecordingRecord, Role};
use crate::engine::{Recipient, RewrapMode, WrapAlgorithm};

/// The job routes.
pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/v1/jobs", get(list))
        .route("/v1/jobs/rewrap", post(create_rewrap))
        .route("/v1/jobs/{id}", get(one))
}

/// Hands jobs to the worker.
#[derive(Debug, Clone)]
pub struct JobQueue(mpsc::UnboundedSender<(String, String)>);

/// The worker's end of the queue.
pub type JobReceiver = mpsc::UnboundedReceiver<(String, String)>;

impl JobQueue {
    /// A queue and its receiving end.
    pub fn new() -> (Self, JobReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    fn push(&self, org_id: &str, job_id: &str) {
        let _ = self.0.send((org_id.to_string(), job_id.to_string()));
    }

    /// Queues every job a previous run left unfinished.
    pub fn resume(&self, state: &AppState) -> anyhow::Result<()> {
        for job in state.catalogue.unfinished_jobs()? {
            tracing::info!(job_id = %job.id, "resuming job");
            self.push(&job.org_id, &job.id);
        }
        Ok(())
    }
}

/// Runs queued jobs one at a time.
pub async fn worker(state: Shared, mut receiver: JobReceiver) {
    while let Some((org_id, job_id)) = receiver.recv().await {
        let job = match state.catalogue.job(&org_id, &job_id) {
            Ok(Some(job)) if matches!(job.state, JobState::Queued | JobState::Running) => job,
            Ok(_) => continue,
            Err(e) => {
                tracing::error!(job_id, error = %e, "cannot read job");
                continue;
            }
        };
        if let Err(e) = run_rewrap(&state, &job).await {
            tracing::error!(job_id, error = %e, "job failed");
            // Keep the progress made so far; add why it stopped.
            let mut progress = state
                .catalogue
                .job(&org_id, &job_id)
                .ok()
                .flatten()
                .map(|j| j.progress)
                .unwrap_or_else(|| json!({}));
            if let Some(fields) = progress.as_object_mut() {
                fields.insert("error".into(), json!(e.to_string()));
            }
            let _ = state
                .catalogue
                .update_job(&org_id, &job_id, JobState::Failed, &progress);
            let _ = state.catalogue.audit(
                &org_id,
                "rewrap-job",
                "job.rewrap.fail",
                None,
                None,
                &format!("job {job_id} stopped: {e}"),
            );
        }
    }
}

/// What starts a rewrap job.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RewrapRequest {
    /// The KEK whose recordings move to the current KEK.
    pub from_kek_id: String,
}

#[derive(Debug, Default, serde::Serialize, Deserialize)]
struct Progress {
    total: u64,
    done: u64,
    failed: u64,
    #[serde(default)]
    failed_ids: Vec<String>,
    #[serde(default)]
    last_id: Option<String>,
}

/// Start a rewrap job: every recording wrapped for `from_kek_id` moves to the current
/// KEK. Poll `GET /v1/jobs/{id}`; when it is `done`, the old KEK is retired and can be
/// deleted.
#[utoipa::path(
    post, path = "/v1/jobs/rewrap", tag = "jobs",
    request_body = RewrapRequest,
    responses(
        (status = 202, description = "Queued", body = Job),
        (status = 404, description = "No such KEK in this organisation", body = super::error::ErrorBody),
        (status = 409, description = "It is the current KEK", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn create_rewrap(
    State(state): State<Shared>,
    auth: Auth,
    JsonBody(request): JsonBody<RewrapRequest>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    auth.require(&[Role::Admin])?;
    if state
        .catalogue
        .kek(auth.org(), &request.from_kek_id)?
        .is_none()
    {
        return Err(ApiError::not_found("KEK"));
    }
    let to = state.keys().current(auth.org(), auth.actor())?;
    if to.id == request.from_kek_id {
        return Err(ApiError::conflict(
            "that is the current KEK; rotate first (POST /v1/keks), then rewrap onto the new one",
        ));
    }
    let total = state
        .catalogue
        .recordings_using_kek(auth.org(), &request.from_kek_id)?;
    let params = json!({ "from_kek_id": request.from_kek_id, "to_kek_id": to.id });
    let progress = serde_json::to_value(Progress {
        total,
        ..Progress::default()
    })
    .map_err(|e| ApiError::internal(&e))?;
    let job = state
        .catalogue
        .create_job(auth.org(), "rewrap", &params, &progress)?;
    state.catalogue.audit(
        auth.org(),
        auth.actor(),
        "job.rewrap.create",
        None,
        Some(&request.from_kek_id),
        &format!("{} recording(s) to {}", total, to.id),
    )?;
    state.jobs.push(auth.org(), &job.id);
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// The organisation's jobs, newest first.
#[utoipa::path(
    get, path = "/v1/jobs", tag = "jobs",
    responses((status = 200, description = "Jobs", body = Vec<Job>)),
    security(("token" = []))
)]
pub async fn list(State(state): State<Shared>, auth: Auth) -> ApiResult<Json<Vec<Job>>> {
    auth.require(&[Role::Admin])?;
    Ok(Json(state.catalogue.list_jobs(auth.org())?))
}

/// One job and its progress.
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 404, description = "No such job in this organisation", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn one(
    State(state): State<Shared>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    auth.require(&[Role::Admin])?;
    state
        .catalogue
        .job(auth.org(), &id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("job"))
}

fn param<'a>(job: &'a Job, name: &str) -> anyhow::Result<&'a str> {
    job.params
        .get(name)
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow::anyhow!("job {} has no {name}", job.id))
}

async fn run_rewrap(state: &AppState, job: &Job) -> anyhow::Result<()> {
    let org = job.org_id.as_str();
    let from = param(job, "from_kek_id")?;
    let to_id = param(job, "to_kek_id")?;
    let to = state
        .catalogue
        .kek(org, to_id)?
        .ok_or_else(|| anyhow::anyhow!("the target KEK {to_id} no longer exists"))?;
    let recipient = Recipient {
        kek_id: to.id.clone(),
        public_key: to.public_spki.clone(),
        algorithm: WrapAlgorithm::RsaOaepSha256,
    };
    let mut progress: Progress = serde_json::from_value(job.progress.clone()).unwrap_or_default();
    let save = |job_state: JobState, progress: &Progress| -> anyhow::Result<()> {
        let value = serde_json::to_value(progress)?;
        Ok(state
            .catalogue
            .update_job(org, &job.id, job_state, &value)?)
    };
    save(JobState::Running, &progress)?;
    let pause = Duration::from_millis(state.config.jobs.rewrap_pause_ms);
    loop {
        let filter = RecordingFilter {
            kek_id: Some(from.to_string()),
            after_id: progress.last_id.clone(),
            limit: Some(100),
            ..RecordingFilter::default()
        };
        let batch = state.catalogue.list_recordings(org, &filter)?;
        if batch.is_empty() {
            break;
        }
        for record in batch {
            match rewrap_one(state, &record, &recipient).await {
                Ok(stored_len) => {
                    state
                        .catalogue
                        .set_recording_kek(org, &record.id, &to.id, stored_len)?;
                    state.catalogue.audit(
                        org,
                        "rewrap-job",
                        "recording.rewrap",
                        Some(&record.id),
                        Some(&to.id),
                        &format!("from {from}; job {}", job.id),
                    )?;
                    state.metrics.rewrapped.inc();
                    progress.done += 1;
                }
                Err(e) => {
                    tracing::warn!(recording_id = %record.id, error = %e, "rewrap failed for a recording");
                    progress.failed += 1;
                    if progress.failed_ids.len() < 100 {
                        progress.failed_ids.push(record.id.clone());
                    }
                }
            }
            progress.last_id = Some(record.id);
            save(JobState::Running, &progress)?;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }
    let finished = if progress.failed == 0 {
        state.catalogue.retire_kek(org, from)?;
        JobState::Done
    } else {
        JobState::Failed
    };
    save(finished, &progress)?;
    state.catalogue.audit(
        org,
        "rewrap-job",
        "job.rewrap.finish",
        None,
        Some(from),
        &format!(
            "job {}: {} moved, {} failed",
            job.id, progress.done, progress.failed
        ),
    )?;
    tracing::info!(job_id = %job.id, done = progress.done, failed = progress.failed, "rewrap job finished");
    Ok(())
}

/// Replaces one recording's envelope with one whose header is wrapped for
/// `recipient`; the payload bytes are copied unchanged. Returns the new stored size.
async fn rewrap_one(
    state: &AppState,
    record: &RecordingRecord,
    recipient: &Recipient,
) -> anyhow::Result<u64> {
    let path = &record.object_path;
    let (header, size) = state.repo.read_header(&state.runtime, path).await?;
    let info = state.runtime.inspect(&header)?;
    anyhow::ensure!(
        info.header.org_id == record.org_id && info.header.recording_id == record.id,
        "the envelope header names another recording"
    );
    if info.header.stanzas.len() == 1 && info.header.stanzas[0].kek_id == recipient.kek_id {
        // Replaced before an interruption; only the catalogue was behind.
        return Ok(size);
    }
    let (dek, _) = unwrap_dek(state, &record.org_id, &info.header)?;
    let new_header = state.runtime.rewrap_header(
        &header,
        &dek,
        std::slice::from_ref(recipient),
        RewrapMode::Replace,
    )?;
    drop(dek);
    let header_len = header.len() as u64;
    let mut writer = state.repo.writer(path);
    let copied = async {
        writer.put(Bytes::from(new_header)).await?;
        let mut payload = state.repo.stream(path, Some(header_len..size)).await?;
        while let Some(bytes) = payload.next().await {
            writer.put(bytes?).await?;
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = copied {
        let _ = writer.abort().await;
        return Err(e);
    }
    let stored = writer.written();
    writer.commit().await?;
    Ok(stored)
}
