//! Rewrap jobs: every recording of one KEK moves onto another by rewriting envelope
//! headers only; the payload bytes are copied unchanged, never re-encrypted. Each
//! recording is replaced atomically and then re-pointed in the catalogue; progress
//! is persisted, so a job interrupted by a crash resumes at the next start (here or
//! on another instance), and a recording whose object was replaced just before the
//! crash is recognised by its header and only re-pointed.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tapeseal_engine::{Recipient, RewrapMode};
use tapeseal_keys::{KeyService, Purpose, UnwrapContext};
use tapeseal_store::catalogue::{
    AuditEvent, Job, JobState, RecordingFilter, RecordingRecord, Role,
};
use tapeseal_store::repo::Pinned;

use super::auth::Auth;
use super::error::{ApiError, ApiResult, JsonBody};
use super::jobs::{StopFlag, param, patiently};
use super::keys::unwrap_dek;
use super::{AppState, Shared};

/// The audit log's name for the rewrap worker.
pub(crate) const ACTOR: &str = "rewrap-job";

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

pub(crate) async fn run(state: &AppState, job: &Job, stop: &StopFlag) -> anyhow::Result<()> {
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
