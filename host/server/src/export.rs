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

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use base64::Engine;
use bytes::Bytes;
use std::collections::VecDeque;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{Mutex, mpsc};

use super::Shared;
use super::auth::Auth;
use super::error::{ApiError, ApiResult, JsonBody};
use super::jobs::{StopFlag, patiently};
use super::playback::{BatchError, Decrypting, pinned_header, recording_dek};
use tapeseal_export::layout::{self, Placement};
use tapeseal_export::manifest::{
    MANIFEST_FORMAT, ManifestFailure, ManifestFile, ManifestHead, ManifestText, RecordingMetadata,
};
use tapeseal_export::pgp::PgpRecipient;
use tapeseal_export::{Destination, DestinationSpec, S3Settings, Secret};
use tapeseal_keys::{KeyServiceError, Purpose, UnwrapContext};
use tapeseal_store::catalogue::{
    AuditEvent, ExportItem, ExportOutcome, ExportSelection, ExportedFile, Job, JobState,
    RecordingRecord, Role,
};
use tapeseal_store::time::{now_ms, utc};

/// The job kind.
pub const KIND: &str = "export";
/// The audit log's name for the export worker.
pub const ACTOR: &str = "export-job";
/// The sealing domain of an export destination's secret access key.
const SECRET_DOMAIN: &str = "tapeseal export secret access key v1";
/// The most entries one selection list may have.
const MAX_LIST: usize = 10_000;
/// Plaintext pieces in flight between the decryption and the OpenPGP encoder, and
/// encoded pieces between it and the destination (each at most about 1 MiB).
const PIPE_DEPTH: usize = 4;
/// Bytes of OpenPGP output gathered into one piece for the destination.
const PIPE_PIECE: usize = 256 << 10;

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

/// What one job run works with.
struct Run<'a> {
    state: &'a Shared,
    job: &'a Job,
    destination: Destination,
    recipient: Option<Arc<PgpRecipient>>,
    stop: &'a StopFlag,
    pause: Duration,
}

/// Why one recording did not get out.
#[derive(Debug)]
enum ItemError {
    /// This recording only (the others go on); the message goes in the manifest.
    Recording(String),
    /// Something every recording needs (the destination, the key service) failed:
    /// the job stops, and is resumed once it is fixed.
    Job(anyhow::Error),
    /// The job was cancelled.
    Stopped,
}

/// Runs (or resumes) an export job until every selected recording has an outcome,
/// then writes the manifest. Returns an error when the job stops on one.
pub async fn run(state: &Shared, job: &Job, stop: &StopFlag) -> anyhow::Result<()> {
    let org = job.org_id.as_str();
    let params: Params = serde_json::from_value(job.params.clone())
        .map_err(|e| anyhow::anyhow!("job {} has malformed parameters: {e}", job.id))?;
    let mut progress: Progress = serde_json::from_value(job.progress.clone()).unwrap_or_default();
    // The counts are what the recorded outcomes say (a resume forgets failures).
    let totals = state.catalogue.export_totals(&job.id)?;
    progress.exported = totals.exported;
    progress.failed = totals.failed;
    progress.bytes = totals.plaintext_bytes;
    progress.written_bytes = totals.file_bytes;
    progress.error = None;
    progress.manifest = None;
    anyhow::ensure!(
        state.catalogue.update_job_as(
            &state.jobs.owner,
            org,
            &job.id,
            JobState::Running,
            &json!(progress)
        )?,
        "this instance no longer holds the job's lease"
    );
    let secret = match (&params.destination, &params.sealed_secret_access_key) {
        (
            DestinationSpec::S3 {
                access_key_id: Some(id),
                ..
            },
            Some(sealed),
        ) => {
            let sealed = base64::engine::general_purpose::STANDARD.decode(sealed)?;
            let plain = state
                .keys
                .master()
                .open_secret(SECRET_DOMAIN, org, id, &sealed)
                .map_err(|e| anyhow::anyhow!("cannot open the destination's access key: {e}"))?;
            Some(Secret::new(String::from_utf8(plain.to_vec())?))
        }
        _ => None,
    };
    let settings = S3Settings {
        endpoint_url: state.config.export.s3_endpoint_url.clone(),
        region: state.config.export.s3_region.clone(),
    };
    let destination = Destination::open(
        &params.destination,
        &settings,
        &state.config.export_path(),
        secret.as_ref(),
    )
    .map_err(|e| anyhow::anyhow!("the destination cannot be used: {e}"))?;
    let recipient = match &params.openpgp_public_key {
        Some(key) => Some(Arc::new(PgpRecipient::parse(key.as_bytes())?)),
        None => None,
    };
    let run = Run {
        state,
        job,
        destination,
        recipient,
        stop,
        pause: Duration::from_millis(state.config.export.pause_ms),
    };
    let progress = Mutex::new(progress);
    run.export_all(&params, &progress).await?;
    let mut progress = progress.into_inner();
    if stop.stopped() {
        let event = AuditEvent::ExportJobEnd {
            job_id: &job.id,
            state: "cancelled",
            exported: progress.exported,
            failed: progress.failed,
            cause: None,
        };
        state.catalogue.audit(org, ACTOR, &event)?;
        tracing::info!(job_id = %job.id, "export job cancelled");
        return Ok(());
    }
    let finished = if progress.failed == 0 {
        JobState::Done
    } else {
        JobState::Failed
    };
    let manifest = run.write_manifest(&params, &progress, finished).await?;
    progress.manifest = Some(manifest);
    anyhow::ensure!(
        state.catalogue.update_job_as(
            &state.jobs.owner,
            org,
            &job.id,
            finished,
            &json!(progress)
        )?,
        "this instance no longer holds the job's lease"
    );
    let event = AuditEvent::ExportJobEnd {
        job_id: &job.id,
        state: if finished == JobState::Done {
            "done"
        } else {
            "failed"
        },
        exported: progress.exported,
        failed: progress.failed,
        cause: None,
    };
    state.catalogue.audit(org, ACTOR, &event)?;
    tracing::info!(job_id = %job.id, exported = progress.exported, failed = progress.failed, "export job finished");
    Ok(())
}

impl Run<'_> {
    /// Exports every selected recording without an outcome, `parallel` at a time.
    async fn export_all(&self, params: &Params, progress: &Mutex<Progress>) -> anyhow::Result<()> {
        let (org, job_id) = (self.job.org_id.as_str(), self.job.id.as_str());
        let parallel = usize::try_from(params.parallel).unwrap_or(1).max(1);
        let mut in_flight = FuturesUnordered::new();
        let mut page = VecDeque::new();
        // Recordings in flight have no outcome yet, so the next page starts after the
        // last one handed out.
        let mut after: Option<String> = None;
        let mut exhausted = false;
        loop {
            while in_flight.len() < parallel && !self.stop.stopped() {
                if page.is_empty() && !exhausted {
                    page.extend(self.state.catalogue.pending_exports(
                        org,
                        job_id,
                        &params.select,
                        after.as_deref(),
                        100,
                    )?);
                    exhausted = page.is_empty();
                }
                let Some(record) = page.pop_front() else {
                    break;
                };
                after = Some(record.id.clone());
                in_flight.push(self.export_and_record(record, progress));
            }
            match in_flight.next().await {
                Some(done) => done?,
                None => return Ok(()),
            }
        }
    }

    /// Exports one recording and records its outcome.
    async fn export_and_record(
        &self,
        record: RecordingRecord,
        progress: &Mutex<Progress>,
    ) -> anyhow::Result<()> {
        let outcome = self.export_one(&record).await;
        self.record(&record, outcome, progress).await?;
        if !self.pause.is_zero() {
            tokio::time::sleep(self.pause).await;
        }
        Ok(())
    }

    /// Records one recording's outcome, or stops the job on a job-wide failure.
    async fn record(
        &self,
        record: &RecordingRecord,
        outcome: Result<ExportedFile, ItemError>,
        progress: &Mutex<Progress>,
    ) -> anyhow::Result<()> {
        let (org, job_id) = (self.job.org_id.as_str(), self.job.id.as_str());
        let mut progress = progress.lock().await;
        let (item, event) = match outcome {
            Ok(file) => {
                progress.exported += 1;
                progress.bytes += file.plaintext_len;
                progress.written_bytes += file.bytes;
                self.state.metrics.exported.inc();
                (ExportOutcome::Done(file), true)
            }
            Err(ItemError::Recording(why)) => {
                tracing::warn!(job_id, recording_id = %record.id, error = %why, "a recording could not be exported");
                progress.failed += 1;
                (ExportOutcome::Failed(why), false)
            }
            Err(ItemError::Stopped) => return Ok(()),
            Err(ItemError::Job(e)) => return Err(e),
        };
        let item = ExportItem {
            recording_id: record.id.clone(),
            outcome: item,
        };
        let audit = match (&item.outcome, event) {
            (ExportOutcome::Done(file), true) => Some(AuditEvent::RecordingExport {
                recording_id: &record.id,
                kek_id: &file.kek_id,
                job_id,
                bytes: file.plaintext_len,
            }),
            _ => None,
        };
        self.state.catalogue.record_export_item(
            org,
            job_id,
            &item,
            &json!(*progress),
            ACTOR,
            audit.as_ref(),
        )?;
        Ok(())
    }

    /// Decrypts one recording and writes it, then its metadata, to the destination.
    async fn export_one(&self, record: &RecordingRecord) -> Result<ExportedFile, ItemError> {
        if self.stop.stopped() {
            return Err(ItemError::Stopped);
        }
        let state = self.state;
        let recording = |e: &dyn std::fmt::Display| ItemError::Recording(e.to_string());
        let permit = state
            .limits
            .wait_for(&record.org_id)
            .await
            .map_err(|e| ItemError::Job(anyhow::anyhow!("{e}")))?;
        let (pinned, header, info) = pinned_header(state, record)
            .await
            .map_err(|e| recording(&e))?;
        let context = UnwrapContext {
            org_id: &record.org_id,
            actor: ACTOR,
            purpose: Purpose::Export,
            recording_id: &record.id,
        };
        let unwrapped = patiently(state, &record.id, || {
            recording_dek(state, &context, record, &info.header)
        })
        .await
        .map_err(ItemError::Job)?;
        let (dek, kek_id) = match unwrapped {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(recording_id = %record.id, error = %e, "export: no DEK");
                let _ = state.catalogue.audit(
                    &record.org_id,
                    ACTOR,
                    &AuditEvent::RecordingDecryptFailed {
                        recording_id: &record.id,
                        kek_id: record.kek_id.as_deref(),
                    },
                );
                return Err(ItemError::Recording(
                    match e {
                        KeyServiceError::Refused(_) => "the key service refused to unwrap its DEK",
                        KeyServiceError::UnknownKey(_) | KeyServiceError::NoUsableStanza => {
                            "none of its KEKs is known to the organisation"
                        }
                        _ => "its DEK could not be unwrapped",
                    }
                    .into(),
                ));
            }
        };
        let mut opener = state
            .runtime
            .chunk_opener(&header, &dek, pinned.size())
            .map_err(|e| {
                tracing::warn!(recording_id = %record.id, error = %e, "export: cannot open the envelope");
                ItemError::Recording("the recording could not be decrypted".into())
            })?;
        let len = opener.plaintext_len().map_err(|e| recording(&e))?;
        if len != record.plaintext_len {
            return Err(ItemError::Recording(
                "the envelope's length differs from the catalogue's".into(),
            ));
        }
        let chunks = opener.chunk_count().map_err(|e| recording(&e))?;
        drop(opener);
        drop(permit);
        let reader = Decrypting::new(
            Arc::clone(state),
            &record.org_id,
            header,
            dek,
            pinned,
            0..=chunks.saturating_sub(1),
            0..len,
            u64::from(info.header.chunk_size),
        );
        let placement = layout::place(self.destination.prefix(), record, self.recipient.is_some());
        let written = self.write_file(reader, &placement).await?;
        let file = ExportedFile {
            path: placement.file.clone(),
            metadata_path: placement.metadata.clone(),
            bytes: written.bytes,
            plaintext_len: len,
            plaintext_sha256: written.plaintext_sha256,
            file_sha256: written.file_sha256,
            kek_id,
        };
        let fingerprint = self.recipient.as_ref().map(|r| r.fingerprint());
        let metadata = RecordingMetadata::new(
            record,
            &placement.file_name,
            &file,
            fingerprint.as_deref(),
            &self.job.id,
            now_ms(),
        );
        self.destination
            .put(&placement.metadata, Bytes::from(metadata.to_json()))
            .await
            .map_err(|e| self.destination_error(&placement.metadata, &e))?;
        Ok(file)
    }

    fn destination_error(&self, path: &str, e: &std::io::Error) -> ItemError {
        ItemError::Job(anyhow::anyhow!(
            "writing {path} to the destination failed: {e}"
        ))
    }

    /// Streams the plaintext into the file at `placement` (through the OpenPGP
    /// encoder when there is a recipient); nothing is visible there unless every
    /// chunk was authenticated and the write committed.
    async fn write_file(
        &self,
        mut reader: Decrypting,
        placement: &Placement,
    ) -> Result<Written, ItemError> {
        let mut writer = self
            .destination
            .repo()
            .writer(&placement.file)
            .await
            .map_err(|e| self.destination_error(&placement.file, &e))?;
        let mut plain_hash = digest::Context::new(&digest::SHA256);
        let mut file_hash = digest::Context::new(&digest::SHA256);
        let outcome = match &self.recipient {
            None => {
                async {
                    while let Some(bytes) = self.next_plaintext(&mut reader).await? {
                        plain_hash.update(&bytes);
                        file_hash.update(&bytes);
                        writer
                            .put(bytes)
                            .await
                            .map_err(|e| self.destination_error(&placement.file, &e))?;
                    }
                    Ok(())
                }
                .await
            }
            Some(recipient) => {
                self.encrypt_into(
                    recipient,
                    &mut reader,
                    &mut writer,
                    placement,
                    &mut plain_hash,
                    &mut file_hash,
                )
                .await
            }
        };
        if let Err(e) = outcome {
            let _ = writer.abort().await;
            return Err(e);
        }
        let bytes = writer.written();
        writer
            .commit()
            .await
            .map_err(|e| self.destination_error(&placement.file, &e))?;
        Ok(Written {
            bytes,
            plaintext_sha256: hex(plain_hash.finish().as_ref()),
            file_sha256: hex(file_hash.finish().as_ref()),
        })
    }

    /// The next authenticated plaintext batch, `None` at the end.
    async fn next_plaintext(&self, reader: &mut Decrypting) -> Result<Option<Bytes>, ItemError> {
        if self.stop.stopped() {
            return Err(ItemError::Stopped);
        }
        reader.next_batch(false).await.map_err(|e| match e {
            BatchError::Busy(e) => ItemError::Job(anyhow::anyhow!("{e}")),
            other => {
                tracing::warn!(job_id = %self.job.id, error = %other, "export: decryption stopped");
                ItemError::Recording("the recording could not be decrypted".into())
            }
        })
    }

    /// Feeds the plaintext to the OpenPGP encoder on a blocking thread and its output
    /// to the writer, through bounded pipes (memory stays bounded whatever the size).
    async fn encrypt_into(
        &self,
        recipient: &Arc<PgpRecipient>,
        reader: &mut Decrypting,
        writer: &mut tapeseal_store::repo::ObjectWriter,
        placement: &Placement,
        plain_hash: &mut digest::Context,
        file_hash: &mut digest::Context,
    ) -> Result<(), ItemError> {
        let (plain_tx, plain_rx) = mpsc::channel::<std::io::Result<Bytes>>(PIPE_DEPTH);
        let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(PIPE_DEPTH);
        let encoder = {
            let recipient = Arc::clone(recipient);
            let name = placement.file_name.clone();
            tokio::task::spawn_blocking(move || {
                let out = std::io::BufWriter::with_capacity(PIPE_PIECE, PipeWriter(out_tx));
                recipient.encrypt(&name, PipeReader::new(plain_rx), out)
            })
        };
        // Moves the sender in: it is dropped (ending the encoder's input) when done.
        let produce = async move {
            loop {
                match self.next_plaintext(reader).await {
                    Ok(Some(bytes)) => {
                        plain_hash.update(&bytes);
                        if plain_tx.send(Ok(bytes)).await.is_err() {
                            // The encoder stopped; its own error says why.
                            return Ok(());
                        }
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        let _ = plain_tx
                            .send(Err(std::io::Error::other("decryption stopped")))
                            .await;
                        return Err(e);
                    }
                }
            }
        };
        let consume = async {
            while let Some(bytes) = out_rx.recv().await {
                file_hash.update(&bytes);
                writer
                    .put(bytes)
                    .await
                    .map_err(|e| self.destination_error(&placement.file, &e))?;
            }
            Ok::<(), ItemError>(())
        };
        let (produced, consumed) = tokio::join!(produce, consume);
        let encoded = encoder
            .await
            .map_err(|e| ItemError::Job(anyhow::anyhow!("the OpenPGP encoder failed: {e}")))?;
        produced?;
        consumed?;
        encoded
            .map(drop)
            .map_err(|e| ItemError::Recording(format!("OpenPGP encryption failed: {e}")))
    }

    /// Writes the manifest from the recorded outcomes, page by page.
    async fn write_manifest(
        &self,
        params: &Params,
        progress: &Progress,
        finished: JobState,
    ) -> anyhow::Result<String> {
        let (org, job_id) = (self.job.org_id.as_str(), self.job.id.as_str());
        let path = layout::manifest(self.destination.prefix(), org, job_id);
        let described = params.destination.describe();
        let head = ManifestHead {
            format: MANIFEST_FORMAT,
            job_id,
            org_id: org,
            state: if finished == JobState::Done {
                "done"
            } else {
                "failed"
            },
            created_at: utc(self.job.created_at.unsigned_abs()),
            finished_at: utc(now_ms().unsigned_abs()),
            destination: &described,
            selection: &params.select,
            openpgp_recipient: params.openpgp_fingerprint.as_deref(),
            recordings: progress.total,
            exported: progress.exported,
            failed: progress.failed,
            plaintext_bytes: progress.bytes,
            file_bytes: progress.written_bytes,
        };
        let mut writer = self.destination.repo().writer(&path).await?;
        let written = async {
            let mut text = ManifestText::default();
            writer.put(Bytes::from(text.head(&head))).await?;
            for failures in [false, true] {
                if failures {
                    writer.put(Bytes::from(text.failures())).await?;
                }
                let mut after: Option<String> = None;
                loop {
                    let page = self
                        .state
                        .catalogue
                        .export_items(job_id, after.as_deref(), 1000)?;
                    let Some(last) = page.last() else { break };
                    after = Some(last.recording_id.clone());
                    let mut piece = String::new();
                    for item in &page {
                        match (&item.outcome, failures) {
                            (ExportOutcome::Done(file), false) => {
                                piece += &text.file(&ManifestFile {
                                    recording_id: &item.recording_id,
                                    file,
                                });
                            }
                            (ExportOutcome::Failed(error), true) => {
                                piece += &text.failure(&ManifestFailure {
                                    recording_id: &item.recording_id,
                                    error,
                                });
                            }
                            _ => {}
                        }
                    }
                    writer.put(Bytes::from(piece)).await?;
                }
            }
            writer.put(Bytes::from(text.end())).await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = written {
            let _ = writer.abort().await;
            return Err(e.context(format!("writing the manifest {path}")));
        }
        writer.commit().await?;
        Ok(path)
    }
}

/// What [`Run::write_file`] wrote.
struct Written {
    bytes: u64,
    plaintext_sha256: String,
    file_sha256: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The OpenPGP encoder's input: plaintext pieces from the decrypting task.
struct PipeReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl PipeReader {
    fn new(rx: mpsc::Receiver<std::io::Result<Bytes>>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl std::io::Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The OpenPGP encoder's output: pieces for the writing task.
struct PipeWriter(mpsc::Sender<Bytes>);

impl std::io::Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::other("the destination stopped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
