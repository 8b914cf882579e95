//! Jobs: their queue, the leases that let one instance of several run each job, the
//! worker, listing, cancellation and resumption, and the patience with a key service
//! that every job's recordings share. What a job does is in [`super::rewrap`] and
//! [`super::export`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::mpsc;

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::{AppState, Shared};
use tapeseal_keys::KeyServiceError;
use tapeseal_store::catalogue::AuditEvent;
use tapeseal_store::catalogue::{Job, JobState, Role};
use tapeseal_store::time::now_ms;

/// The job routes.
pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/v1/jobs", get(list))
        .route("/v1/jobs/rewrap", post(super::rewrap::create_rewrap))
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
        let outcome = super::rewrap::run(&state, &job, &stop).await;
        finished(&state, &job, lease, outcome, super::rewrap::ACTOR);
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
