//! Jobs: their queue, worker, listing, cancellation and resumption; and rewrap
//! jobs (export jobs are in [`super::export`]). Rewrap jobs move every recording of one KEK onto another by rewriting envelope
//! headers only; the payload bytes are copied unchanged, never re-encrypted. Each
//! recording is replaced atomically and then re-pointed in the catalogue; progress
//! is persisted, so a job interrupted by a crash resumes at the next start, and a
//! recording whose object was replaced just before the crash is recognised by its
//! header and only re-pointed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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
use tapeseal_store::time::now_ms;

/// The job routes.
pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/v1/jobs", get(list))
        .route("/v1/jobs/rewrap", post(create_rewrap))
        .route("/v1/jobs/{id}", get(one))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/resume", post(resume))
}

/// Hands jobs to the worker, and knows which are running here (to stop them).
///
/// Several instances may share one catalogue: an instance runs a job only while it
/// holds the job's lease there (see [`claimer`] and [`worker`]).
#[derive(Debug, Clone)]
pub struct JobQueue {
    sender: mpsc::UnboundedSender<(String, String)>,
    running: Arc<Mutex<HashMap<String, Arc<AtomicBool>>>>,
    /// This instance, as job leases name it.
    pub(crate) owner: String,
    /// How long a lease lasts unless renewed.
    lease: Duration,
}

/// The worker's end of the queue.
pub type JobReceiver = mpsc::UnboundedReceiver<(String, String)>;

/// Tells a running job to stop; it looks between recordings (and, for an export,
/// between the batches of one recording).
#[derive(Debug, Clone)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Whether the job was asked to stop.
    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl JobQueue {
    /// A queue for the instance `owner`, whose job leases last `lease`, and its
    /// receiving end.
    pub fn new(owner: String, lease: Duration) -> (Self, JobReceiver) {
        let (sender, rx) = mpsc::unbounded_channel();
        let running = Arc::new(Mutex::new(HashMap::new()));
        (
            Self {
                sender,
                running,
                owner,
                lease,
            },
            rx,
        )
    }

    pub(crate) fn push(&self, org_id: &str, job_id: &str) {
        let _ = self.sender.send((org_id.to_string(), job_id.to_string()));
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    fn is_running(&self, job_id: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(job_id)
    }

    /// Marks a job running; `None` if it already is.
    fn start(&self, job_id: &str) -> Option<StopFlag> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.contains_key(job_id) {
            return None;
        }
        let flag = Arc::new(AtomicBool::new(false));
        running.insert(job_id.to_string(), flag.clone());
        Some(StopFlag(flag))
    }

    fn finish(&self, job_id: &str) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(job_id);
    }

    fn stop(&self, job_id: &str) {
        if let Some(flag) = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(job_id)
        {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// Offers the worker every unfinished job that no instance holds a live lease on:
/// at start (what this or another instance left unfinished) and then every half
/// lease, so that the jobs of an instance that died are taken over within about
/// one and a half leases. Nothing here depends on which instance created a job.
pub async fn claimer(state: Shared) {
    let mut tick = tokio::time::interval((state.jobs.lease / 2).max(Duration::from_millis(500)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.catalogue.claimable_jobs(now_ms()) {
            Ok(jobs) => {
                for (org_id, job_id) in jobs {
                    if !state.jobs.is_running(&job_id) {
                        state.jobs.push(&org_id, &job_id);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot look for jobs to claim"),
        }
    }
}

/// Renews this instance's lease on a running job every third of a lease; when the
/// lease cannot be renewed (another instance took the job over after a stall here,
/// or the job was cancelled through any instance), tells the job to stop.
async fn keep_lease(state: Shared, job_id: String, stop: StopFlag) {
    let mut tick = tokio::time::interval(state.jobs.lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match state
            .catalogue
            .renew_job_lease(&job_id, &state.jobs.owner, state.jobs.lease_ms())
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(
                    job_id,
                    "the job's lease is gone (cancelled or taken over): stopping it here"
                );
                stop.0.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => tracing::warn!(job_id, error = %e, "cannot renew the job's lease"),
        }
    }
}

/// Runs the jobs this instance claims: rewrap jobs one at a time, in order (two may
/// touch the same recordings); each export job in a task of its own, so that a long
/// export never holds up a rewrap. A job runs only once its lease is taken in the
/// catalogue, so two instances never run it at once; the lease is renewed while it
/// runs and given up when it ends here.
pub async fn worker(state: Shared, mut receiver: JobReceiver) {
    while let Some((org_id, job_id)) = receiver.recv().await {
        if state.jobs.is_running(&job_id) {
            continue;
        }
        let claimed =
            state
                .catalogue
                .claim_job(&org_id, &job_id, &state.jobs.owner, state.jobs.lease_ms());
        let job = match claimed {
            Ok(Some(job)) => job,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(job_id, error = %e, "cannot claim job");
                continue;
            }
        };
        let Some(stop) = state.jobs.start(&job.id) else {
            continue;
        };
        tracing::info!(job_id = %job.id, kind = %job.kind, "running job");
        let lease = tokio::spawn(keep_lease(state.clone(), job.id.clone(), stop.clone()));
        if job.kind == super::export::KIND {
            let state = state.clone();
            tokio::spawn(async move {
                let outcome = super::export::run(&state, &job, &stop).await;
                finished(&state, &job, lease, outcome, super::export::ACTOR);
            });
            continue;
        }
        let outcome = run_rewrap(&state, &job, &stop).await;
        finished(&state, &job, lease, outcome, ACTOR);
    }
}

fn finished(
    state: &AppState,
    job: &Job,
    lease: tokio::task::JoinHandle<()>,
    outcome: anyhow::Result<()>,
    actor: &str,
) {
    lease.abort();
    if let Err(e) = outcome {
        job_failed(state, job, &e, actor);
    }
    if let Err(e) = state.catalogue.release_job(&job.id, &state.jobs.owner) {
        tracing::warn!(job_id = %job.id, error = %e, "cannot give up the job's lease");
    }
    state.jobs.finish(&job.id);
}

/// Records that a job stopped on `e`: state `failed` (unless it was cancelled), the
/// progress made so far with the cause, and an audit entry.
fn job_failed(state: &AppState, job: &Job, e: &anyhow::Error, actor: &str) {
    let (org_id, job_id) = (job.org_id.as_str(), job.id.as_str());
    tracing::error!(job_id, error = %e, "job failed");
    // Keep the progress made so far; add why it stopped.
    let mut progress = state
        .catalogue
        .job(org_id, job_id)
        .ok()
        .flatten()
        .map(|j| j.progress)
        .unwrap_or_else(|| json!({}));
    if let Some(fields) = progress.as_object_mut() {
        fields.insert("error".into(), json!(e.to_string()));
    }
    // Only while this instance still holds the job: one that took it over after a
    // stall here has it now.
    match state.catalogue.update_job_as(
        &state.jobs.owner,
        org_id,
        job_id,
        JobState::Failed,
        &progress,
    ) {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => tracing::error!(job_id, error = %e, "cannot record that the job failed"),
    }
    let cause = e.to_string();
    let event = if job.kind == super::export::KIND {
        AuditEvent::ExportJobEnd {
            job_id,
            state: "failed",
            exported: progress["exported"].as_u64().unwrap_or(0),
            failed: progress["failed"].as_u64().unwrap_or(0),
            cause: Some(&cause),
        }
    } else {
        AuditEvent::RewrapJobFail {
            job_id,
            cause: &cause,
        }
    };
    let _ = state.catalogue.audit(org_id, actor, &event);
}

/// Stop a queued or running job. A rewrap job stops between two recordings (each
/// recording is either moved or untouched); an export job stops between batches,
/// and the files it was writing are discarded. Resume it with
/// `POST /v1/jobs/{id}/resume`.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "Cancelled (it stops within a batch)", body = Job),
        (status = 404, description = "No such job in this organisation", body = super::error::ErrorBody),
        (status = 409, description = "The job has already finished", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn cancel(
    State(state): State<Shared>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    auth.require(&[Role::Admin])?;
    found(&state, &auth, &id)?;
    let event = AuditEvent::JobCancel { job_id: &id };
    let moved = state.catalogue.transition_job(
        auth.org(),
        &id,
        &[JobState::Queued, JobState::Running],
        JobState::Cancelled,
        auth.actor(),
        &event,
    )?;
    if !moved {
        return Err(ApiError::conflict("the job has already finished"));
    }
    state.jobs.stop(&id);
    Ok(Json(found(&state, &auth, &id)?))
}

/// Queue a failed or cancelled job again. It carries on where it stopped: a rewrap
/// job with the recordings still on the old KEK, an export job with the recordings
/// it has not written (those that failed are tried again).
#[utoipa::path(
    post, path = "/v1/jobs/{id}/resume", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 202, description = "Queued", body = Job),
        (status = 404, description = "No such job in this organisation", body = super::error::ErrorBody),
        (status = 409, description = "The job is queued, running or done", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn resume(
    State(state): State<Shared>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    auth.require(&[Role::Admin])?;
    let job = found(&state, &auth, &id)?;
    if !matches!(job.state, JobState::Failed | JobState::Cancelled) {
        return Err(ApiError::conflict(
            "only a failed or cancelled job can be resumed",
        ));
    }
    if state
        .jobs
        .running
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains_key(&id)
    {
        return Err(ApiError::conflict(
            "the job is still stopping; try again in a moment",
        ));
    }
    if job.kind == super::export::KIND {
        state.catalogue.forget_failed_exports(&id)?;
    }
    let event = AuditEvent::JobResume { job_id: &id };
    let moved = state.catalogue.transition_job(
        auth.org(),
        &id,
        &[JobState::Failed, JobState::Cancelled],
        JobState::Queued,
        auth.actor(),
        &event,
    )?;
    if !moved {
        return Err(ApiError::conflict(
            "only a failed or cancelled job can be resumed",
        ));
    }
    state.jobs.push(auth.org(), &id);
    Ok((StatusCode::ACCEPTED, Json(found(&state, &auth, &id)?)))
}

fn found(state: &AppState, auth: &Auth, id: &str) -> ApiResult<Job> {
    state
        .catalogue
        .job(auth.org(), id)?
        .map(shown)
        .ok_or_else(|| ApiError::not_found("job"))
}

/// A job as the API shows it: parameters named `sealed_…` (secrets sealed under the
/// master key, such as an export destination's access key) are left out.
pub(crate) fn shown(mut job: Job) -> Job {
    if let Some(params) = job.params.as_object_mut() {
        params.retain(|name, _| !name.starts_with("sealed_"));
    }
    job
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
    Ok(Json(
        state
            .catalogue
            .list_jobs(auth.org())?
            .into_iter()
            .map(shown)
            .collect(),
    ))
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
    Ok(Json(found(&state, &auth, &id)?))
}

pub(crate) fn param<'a>(job: &'a Job, name: &str) -> anyhow::Result<&'a str> {
    job.params
        .get(name)
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow::anyhow!("job {} has no {name}", job.id))
}

async fn run_rewrap(state: &AppState, job: &Job, stop: &StopFlag) -> anyhow::Result<()> {
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
        let owner = &state.jobs.owner;
        anyhow::ensure!(
            state
                .catalogue
                .update_job_as(owner, org, &job.id, job_state, &value)?,
            "this instance no longer holds the job's lease"
        );
        Ok(())
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
            if stop.stopped() {
                tracing::info!(job_id = %job.id, "rewrap job cancelled");
                return Ok(());
            }
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

/// A failure that may be the key service's rather than the work's own.
pub(crate) trait ServiceFault {
    /// What is wrong with the key service, if that is the cause.
    fn service_fault(&self) -> Option<String>;
}

impl ServiceFault for anyhow::Error {
    fn service_fault(&self) -> Option<String> {
        self.downcast_ref::<KeyServiceError>()
            .and_then(ServiceFault::service_fault)
    }
}

impl ServiceFault for KeyServiceError {
    fn service_fault(&self) -> Option<String> {
        self.is_service_fault().then(|| self.to_string())
    }
}

/// Runs one recording's work for a job; while the key service is at fault
/// (unreachable, slow, or rejecting the server's credentials) it waits and tries
/// again, with backoff, for up to `key_service_patience_secs`. The outer error
/// stops the whole job; the inner one is the recording's own outcome.
pub(crate) async fn patiently<T, E, F, Fut>(
    state: &AppState,
    recording_id: &str,
    mut attempt: F,
) -> anyhow::Result<Result<T, E>>
where
    E: ServiceFault,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let patience = Duration::from_secs(state.config.jobs.key_service_patience_secs);
    let started = std::time::Instant::now();
    let mut backoff = Duration::from_millis(500);
    loop {
        let outcome = attempt().await;
        let fault = match &outcome {
            Err(e) => e.service_fault(),
            Ok(_) => None,
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
        tracing::warn!(recording_id, error = %fault, ?backoff, "key service fault; the job waits");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
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
    /// Runs the move, waiting out key service faults (see [`patiently`]). The outer
    /// error stops the whole job (this recording and the rest stay on the old KEK,
    /// untouched); the inner one is this recording's own failure.
    async fn run_patiently(&self) -> anyhow::Result<anyhow::Result<()>> {
        patiently(self.state, &self.record.id, || self.run()).await
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
        let (header, size, repinned) = if has(to) {
            (header, size, None)
        } else {
            let added = state.runtime.rewrap_header(
                &header,
                &dek,
                std::slice::from_ref(self.recipient),
                RewrapMode::Add,
            )?;
            let size = self.replace_header(added.clone(), &payload).await?;
            // An object store without versions keeps only what was just written:
            // the second copy takes its payload from that, once it is checked to be
            // exactly what was written.
            let again = state.repo.pin(&record.object_path).await?;
            anyhow::ensure!(
                again.size() == size && again.read_header().await? == added,
                "the envelope was replaced by something else while it was rewrapped"
            );
            (added, size, Some(again))
        };
        let payload = Payload {
            pinned: repinned.as_ref().unwrap_or(&pinned),
            range: header.len() as u64..size,
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
