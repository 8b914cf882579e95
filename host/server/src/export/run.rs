//! One export job's run: the selected recordings without an outcome go out
//! `parallel` at a time, each decrypted batch by batch, optionally through the
//! OpenPGP encoder, into the destination; each outcome is recorded once its file is
//! durable, and the manifest is written last.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::json;
use tokio::sync::{Mutex, mpsc};

use super::pipe::{PIPE_DEPTH, PIPE_PIECE, PipeReader, PipeWriter};
use super::{ACTOR, Params, Progress, SECRET_DOMAIN};
use crate::Shared;
use crate::jobs::{StopFlag, patiently};
use crate::playback::{BatchError, Decrypting, pinned_header, recording_dek};
use tapeseal_export::layout::{self, Placement};
use tapeseal_export::manifest::{
    MANIFEST_FORMAT, ManifestFailure, ManifestFile, ManifestHead, ManifestText, RecordingMetadata,
};
use tapeseal_export::pgp::PgpRecipient;
use tapeseal_export::{Destination, DestinationSpec, S3Settings, Secret};
use tapeseal_keys::{KeyServiceError, Purpose, UnwrapContext};
use tapeseal_store::catalogue::{
    AuditEvent, ExportItem, ExportOutcome, ExportedFile, Job, JobState, RecordingRecord,
};
use tapeseal_store::time::{now_ms, utc};

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
            plaintext_sha256: hex::encode(plain_hash.finish()),
            file_sha256: hex::encode(file_hash.finish()),
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
