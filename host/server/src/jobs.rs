//! Rewrap jobs: move every recording of one KEK onto another by rewriting envelope
//! headers only; the payload bytes are copied unchanged, never re-encrypted. Each
//! recording is replaced atomically and then re-pointed in the catalogue; progress
//! is persisted, so a job interrupted by a crash resumes at the next start, and a
//! recording whose object was replaced just before the crash is recognised by its
//! header and only re-pointed.

use std::time::Duration;
use tapeseal_keys::KeyService;

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
use tapeseal_engine::{Recipient, RewrapMode};
use tapeseal_keys::{KeyServiceError, Purpose, UnwrapContext};
use tapeseal_store::catalogue::AuditEvent;
use tapeseal_store::catalogue::{Job, JobState, RecordingFilter, RecordingRecord, Role};
use tapeseal_store::repo::Pinned;

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
            let cause = e.to_string();
            let event = AuditEvent::RewrapJobFail {
                job_id: &job_id,
                cause: &cause,
            };
            let _ = state.catalogue.audit(&org_id, ACTOR, &event);
        }
    }
}

/// The audit log's name for the rewrap worker.
const ACTOR: &str = "rewrap-job";

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
    /// The recording being moved when the job last saved: finished first on resume,
    /// whatever the catalogue now says of it.
    #[serde(default)]
    in_flight: Option<String>,
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
    let to = state.keys.current(auth.org(), auth.actor()).await?;
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
    let event = AuditEvent::RewrapJobCreate {
        from_kek_id: &request.from_kek_id,
        to_kek_id: &to.id,
        total,
    };
    let job = state.catalogue.create_job(
        auth.org(),
        "rewrap",
        &params,
        &progress,
        auth.actor(),
        &event,
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
        algorithm: tapeseal_core::WrapAlgorithm::from_name(&to.wrap_algorithm)
            .ok_or_else(|| anyhow::anyhow!("the target KEK {to_id} has an unknown wrap algorithm"))?
            .into(),
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
    let mut resumed = progress.in_flight.take();
    loop {
        let batch = match resumed.take() {
            // Moved into the catalogue, perhaps, but not finished: finish it first.
            Some(id) => state.catalogue.recording(org, &id)?.into_iter().collect(),
            None => {
                let filter = RecordingFilter {
                    kek_id: Some(from.to_string()),
                    after_id: progress.last_id.clone(),
                    limit: Some(100),
                    ..RecordingFilter::default()
                };
                state.catalogue.list_recordings(org, &filter)?
            }
        };
        if batch.is_empty() {
            if progress.in_flight.is_some() {
                progress.in_flight = None;
                continue;
            }
            break;
        }
        for record in batch {
            progress.in_flight = Some(record.id.clone());
            save(JobState::Running, &progress)?;
            let moved = Move {
                state,
                record: &record,
                from,
                recipient: &recipient,
                job_id: &job.id,
            };
            match moved.run_patiently().await? {
                Ok(()) => {
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
            if record.kek_id.as_deref() == Some(from) {
                progress.last_id = Some(record.id);
            }
            progress.in_flight = None;
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
    let event = AuditEvent::RewrapJobFinish {
        job_id: &job.id,
        from_kek_id: from,
        moved: progress.done,
        failed: progress.failed,
    };
    state.catalogue.audit(org, ACTOR, &event)?;
    tracing::info!(job_id = %job.id, done = progress.done, failed = progress.failed, "rewrap job finished");
    Ok(())
}

/// An envelope's payload bytes, in the version a move started from.
struct Payload<'a> {
    pinned: &'a Pinned,
    range: std::ops::Range<u64>,
}

/// One recording moving from one KEK to another, in three durable steps so that at
/// no point does the stored envelope open only with a KEK the catalogue lets go:
/// 1. the envelope gains a stanza for the new KEK (both KEKs open it);
/// 2. the catalogue points the recording at the new KEK;
/// 3. the envelope drops the old stanza.
///
/// A crash between any two steps leaves an envelope that its catalogued KEK opens,
/// and the job, resumed, picks up at the step it reached (read from the header).
struct Move<'a> {
    state: &'a AppState,
    record: &'a RecordingRecord,
    from: &'a str,
    recipient: &'a Recipient,
    job_id: &'a str,
}

impl Move<'_> {
    /// Runs the move; while the key service is at fault (unreachable, slow, or
    /// rejecting the server's credentials) it waits and tries again, with backoff,
    /// for up to `key_service_patience_secs`. The outer error stops the whole job
    /// (this recording and the rest stay on the old KEK, untouched); the inner one
    /// is this recording's own failure.
    async fn run_patiently(&self) -> anyhow::Result<anyhow::Result<()>> {
        let patience = Duration::from_secs(self.state.config.jobs.key_service_patience_secs);
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(500);
        loop {
            let outcome = self.run().await;
            let fault = match &outcome {
                Err(e) => e
                    .downcast_ref::<KeyServiceError>()
                    .filter(|k| k.is_service_fault())
                    .map(ToString::to_string),
                Ok(()) => None,
            };
            let Some(fault) = fault else {
                return Ok(outcome);
            };
            if started.elapsed() + backoff > patience {
                anyhow::bail!(
                    "stopped after {} s without the key service ({fault}); the remaining \
                     recordings are untouched: run the job again once it answers",
                    started.elapsed().as_secs()
                );
            }
            tracing::warn!(recording_id = %self.record.id, error = %fault, ?backoff, "key service fault; the rewrap job waits");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    async fn run(&self) -> anyhow::Result<()> {
        let (state, record) = (self.state, self.record);
        let to = self.recipient.kek_id.as_str();
        let _permit = state.limits.wait_for(&record.org_id).await?;
        // The version read now is the one both copies below take the payload from.
        let pinned = state.repo.pin(&record.object_path).await?;
        let header = pinned.read_header().await?;
        let size = pinned.size();
        let info = state.runtime.inspect(&header)?;
        anyhow::ensure!(
            info.header.org_id == record.org_id && info.header.recording_id == record.id,
            "the envelope header names another recording"
        );
        let has = |id: &str| info.header.stanzas.iter().any(|s| s.kek_id == id);
        if has(to) && !has(self.from) && record.kek_id.as_deref() == Some(to) {
            return Ok(());
        }
        let context = UnwrapContext {
            org_id: &record.org_id,
            actor: ACTOR,
            purpose: Purpose::Rewrap,
            recording_id: &record.id,
        };
        let (dek, _) = unwrap_dek(state, &context, &info.header).await?;
        // The payload of the pinned version, which every version shares.
        let payload = Payload {
            pinned: &pinned,
            range: header.len() as u64..size,
        };
        let (header, size) = if has(to) {
            (header, size)
        } else {
            let added = state.runtime.rewrap_header(
                &header,
                &dek,
                std::slice::from_ref(self.recipient),
                RewrapMode::Add,
            )?;
            let size = self.replace_header(added.clone(), &payload).await?;
            (added, size)
        };
        tapeseal_store::crash_point!("rewrap.after_add");
        if record.kek_id.as_deref() != Some(to) {
            self.repoint(size)?;
        }
        tapeseal_store::crash_point!("rewrap.after_catalogue");
        let only_new = state.runtime.rewrap_header(
            &header,
            &dek,
            std::slice::from_ref(self.recipient),
            RewrapMode::Replace,
        )?;
        drop(dek);
        let stored = self.replace_header(only_new, &payload).await?;
        if stored != size {
            self.repoint(stored)?;
        }
        Ok(())
    }

    /// Points the catalogue at the new KEK (and the envelope's stored size).
    fn repoint(&self, stored_len: u64) -> anyhow::Result<()> {
        let (record, to) = (self.record, self.recipient.kek_id.as_str());
        let event = AuditEvent::RecordingRewrap {
            recording_id: &record.id,
            to_kek_id: to,
            from_kek_id: self.from,
            job_id: self.job_id,
        };
        self.state.catalogue.set_recording_kek(
            &record.org_id,
            &record.id,
            to,
            stored_len,
            ACTOR,
            &event,
        )?;
        Ok(())
    }

    /// Replaces the envelope with one that has `new_header`; the payload bytes are
    /// copied unchanged. Durable once it returns. Returns the new stored size.
    async fn replace_header(
        &self,
        new_header: Vec<u8>,
        payload: &Payload<'_>,
    ) -> anyhow::Result<u64> {
        let (repo, path) = (&self.state.repo, &self.record.object_path);
        let mut writer = repo.writer(path).await?;
        let copied = async {
            writer.put(Bytes::from(new_header)).await?;
            let mut payload = payload.pinned.stream(payload.range.clone());
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
}
