//! Playback and download: the decrypted content with HTTP Range support (only the
//! chunks a range covers are read and opened, and only authenticated bytes are
//! released), and the stored object itself (the sealed envelope). Every read is
//! audited.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use tapeseal_core::Dek;
use tapeseal_engine::{ChunkOpener, HeaderInfo, Inspection};
use tapeseal_keys::{KeyServiceError, Purpose, UnwrapContext};
use tapeseal_store::catalogue::{AuditEvent, RecordingRecord, Role};
use tapeseal_store::repo::{Pinned, ReadError};

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::keys::unwrap_dek;
use super::limits::Permit;
use super::range::{ranged_response, requested};
use super::recordings::lookup;
use super::{AppState, Shared};

/// Chunks read from the repository per request, at most.
const READ_BATCH: u64 = 1 << 20;

/// Whose playback of which version of a recording a cached DEK serves: another
/// caller, another KEK or another stored envelope unwraps afresh.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlaybackKey {
    actor: String,
    org_id: String,
    recording_id: String,
    kek_id: Option<String>,
    object_path: String,
}

/// A DEK verified against its envelope's header, and the key that unwrapped it.
pub struct PlaybackDek {
    dek: Dek,
    key_id: String,
}

impl std::fmt::Debug for PlaybackDek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaybackDek")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// DEKs unwrapped for playbacks, so that the range requests of one playback (a
/// player seeking) pay one unwrap rather than one each; bounded by
/// `[playback] dek_cache_secs` and `dek_cache_entries`. Each DEK is zeroized once
/// evicted and no request still uses it.
pub type DekCache = tapeseal_keys::cache::KeyCache<PlaybackKey, Arc<PlaybackDek>>;

/// Drops every DEK cached for an organisation's playbacks: its key service or its
/// KEKs changed, and the next request must ask the key service again.
pub(crate) fn forget_playback_deks(state: &AppState, org_id: &str) {
    state.playback_deks.retain(|key| key.org_id != org_id);
}

/// Streams the plaintext of `range` out of an envelope: reads the ciphertext of a
/// batch of chunks at a time, opens each chunk (authenticating it) and releases only
/// the bytes inside the range. A guest instance is held for one batch at a time, so a
/// slow reader holds none while its socket drains.
pub(crate) struct Decrypting {
    state: Shared,
    org_id: String,
    header: Vec<u8>,
    dek: Dek,
    /// The version of the envelope the header came from.
    pinned: Pinned,
    next: u64,
    last: u64,
    range: Range<u64>,
    chunk_size: u64,
    /// A guest stream already open on this header and DEK, and the place it holds:
    /// the first batch uses them instead of instantiating the guest again.
    ready: Option<(ChunkOpener, Permit)>,
}

impl Decrypting {
    /// Reads chunks `chunks` of the `pinned` envelope, releasing the plaintext bytes
    /// inside `range`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        state: Shared,
        org_id: &str,
        header: Vec<u8>,
        dek: Dek,
        pinned: Pinned,
        chunks: std::ops::RangeInclusive<u64>,
        range: Range<u64>,
        chunk_size: u64,
    ) -> Self {
        Self {
            state,
            org_id: org_id.to_string(),
            header,
            dek,
            pinned,
            next: *chunks.start(),
            last: *chunks.end(),
            range,
            chunk_size,
            ready: None,
        }
    }

    /// Lets the first batch use `opener`, made by the caller on the same header and
    /// DEK under `permit`.
    pub(crate) fn starting_with(mut self, opener: ChunkOpener, permit: Permit) -> Self {
        self.ready = Some((opener, permit));
        self
    }

    /// The next batch of plaintext (each chunk authenticated before any of its bytes
    /// is released), or `None` at the end. `first` asks for a guest place under the
    /// admission limits (a prompt 503 when none frees up); later batches wait.
    pub(crate) async fn next_batch(&mut self, first: bool) -> Result<Option<Bytes>, BatchError> {
        if self.next > self.last {
            return Ok(None);
        }
        let (mut opener, _permit) = match self.ready.take() {
            Some(ready) => ready,
            None => {
                let permit = if first {
                    self.state.limits.admit(&self.org_id).await
                } else {
                    self.state.limits.wait_for(&self.org_id).await
                }
                .map_err(BatchError::Busy)?;
                let runtime = &self.state.runtime;
                let opener = runtime.chunk_opener(&self.header, &self.dek, self.pinned.size())?;
                (opener, permit)
            }
        };
        // The envelope ranges of the chunks this batch reads, asked of the guest once.
        let mut chunks = vec![opener.chunk_range(self.next)?];
        let start = chunks[0].start;
        let mut end_chunk = self.next;
        while end_chunk < self.last {
            let next = opener.chunk_range(end_chunk + 1)?;
            if next.end - start > READ_BATCH {
                break;
            }
            chunks.push(next);
            end_chunk += 1;
        }
        let end = chunks[chunks.len() - 1].end;
        let ciphertext = self.pinned.read(start..end).await?;
        let mut out = Vec::new();
        for (index, r) in (self.next..=end_chunk).zip(&chunks) {
            let from = usize::try_from(r.start - start).map_err(anyhow::Error::from)?;
            let to = usize::try_from(r.end - start).map_err(anyhow::Error::from)?;
            let plain = opener.open_chunk(index, &ciphertext[from..to])?;
            let chunk_start = index * self.chunk_size;
            let lo = self
                .range
                .start
                .saturating_sub(chunk_start)
                .min(plain.len() as u64);
            let hi = (self.range.end - chunk_start).min(plain.len() as u64);
            out.extend_from_slice(&plain[lo as usize..hi as usize]);
        }
        self.next = end_chunk + 1;
        Ok(Some(Bytes::from(out)))
    }
}

/// Why a batch did not come out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BatchError {
    /// No guest place was free: a resource limit, not damage.
    #[error("{0}")]
    Busy(ApiError),
    /// The guest refused or failed.
    #[error(transparent)]
    Guest(#[from] tapeseal_engine::HostError),
    /// Reading the repository failed.
    #[error(transparent)]
    Store(#[from] ReadError),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The decrypted recording, whole or one byte range (`Range: bytes=...`). Only the
/// chunks the range covers are read and opened.
#[utoipa::path(
    get,
    path = "/v1/recordings/{id}/content",
    tag = "recordings",
    params(
        ("id" = String, Path, description = "Recording id"),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. bytes=0-1023"),
    ),
    responses(
        (status = 200, description = "The whole recording, with the Content-Type it was ingested with", content_type = "*/*"),
        (status = 206, description = "The requested range", content_type = "*/*"),
        (status = 404, description = "No such recording in this organisation", body = super::error::ErrorBody),
        (status = 416, description = "Range outside the recording", body = super::error::ErrorBody),
        (status = 500, description = "The stored recording is damaged or cannot be decrypted", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn content(
    State(state): State<Shared>,
    auth: Auth,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth.require(&[Role::Player])?;
    let started = Instant::now();
    let record = lookup(&state, &auth, &id)?;
    let len = record.plaintext_len;
    let range = match requested(&headers, len) {
        Ok(range) => range,
        Err(refusal) => return Ok(refusal),
    };
    if method == Method::HEAD {
        // What a GET would send, without decrypting anything.
        return ranged_response(&record.content_type, range, len, Body::empty());
    }
    let unreadable = |e: &dyn std::fmt::Display| ApiError::unreadable(&record.id, e);
    // Guest work starts here: a place under the limits first, or a prompt 503.
    let permit = state.limits.admit(auth.org()).await?;
    let (pinned, header, info) = pinned_header(&state, &record).await?;
    let size = pinned.size();
    // A failed decrypt is audited too: who tried, and that it failed.
    let failed = |e: &dyn std::fmt::Display| {
        let _ = state.catalogue.audit(
            auth.org(),
            auth.actor(),
            &AuditEvent::RecordingDecryptFailed {
                recording_id: &record.id,
                kek_id: record.kek_id.as_deref(),
            },
        );
        ApiError::decrypt_failed(&record.id, e)
    };
    let context = UnwrapContext {
        org_id: auth.org(),
        actor: auth.actor(),
        purpose: Purpose::Playback,
        recording_id: &record.id,
    };
    let cache_key = PlaybackKey {
        actor: auth.actor().to_string(),
        org_id: auth.org().to_string(),
        recording_id: record.id.clone(),
        kek_id: record.kek_id.clone(),
        object_path: record.object_path.clone(),
    };
    let cached = state.playback_deks.get(&cache_key);
    let (dek, key_id) = match &cached {
        Some(found) => {
            state.metrics.dek_cache_hits.inc();
            (Dek::from_bytes(*found.dek.as_bytes()), found.key_id.clone())
        }
        None => match recording_dek(&state, &context, &record, &info.header).await {
            Ok(found) => found,
            // The key service could not answer: not the recording's fault.
            Err(e) if e.is_service_fault() => return Err(e.into()),
            Err(e) => return Err(failed(&e)),
        },
    };
    let mut opener = state
        .runtime
        .chunk_opener(&header, &dek, size)
        .map_err(|e| failed(&e))?;
    // Only a DEK the header's key commitment accepted serves later requests.
    if cached.is_none() {
        let verified = PlaybackDek {
            dek: Dek::from_bytes(*dek.as_bytes()),
            key_id: key_id.clone(),
        };
        state.playback_deks.insert(cache_key, Arc::new(verified));
    }
    if opener.plaintext_len()? != len {
        return Err(unreadable(
            &"the envelope's length differs from the catalogue's",
        ));
    }
    let wanted = range.clone().unwrap_or(0..len);
    let chunks = if len == 0 {
        0..=0
    } else {
        let br = opener.byte_range(wanted.start, wanted.end)?;
        br.first_chunk..=br.last_chunk
    };
    let mut reader = Decrypting::new(
        Arc::clone(&state),
        auth.org(),
        header,
        dek,
        pinned,
        chunks,
        wanted.clone(),
        u64::from(info.header.chunk_size),
    )
    .starting_with(opener, permit);
    // The first batch is opened before the response starts, so a damaged recording
    // or a wrong key gives a clean error instead of a cut-off body.
    let first = match reader.next_batch(true).await {
        Ok(first) => first,
        Err(BatchError::Busy(e)) => return Err(e),
        Err(e) => return Err(failed(&e)),
    };
    // Durable before any plaintext leaves, in a commit shared with concurrent
    // requests.
    state
        .catalogue
        .audit_async(
            auth.org(),
            auth.actor(),
            &AuditEvent::RecordingDecrypt {
                recording_id: &record.id,
                kek_id: &key_id,
                range: wanted,
                len,
            },
        )
        .await?;
    state.metrics.opens.inc();
    let finished = move |reader: &Decrypting, state: &AppState| {
        if reader.next > reader.last {
            state.metrics.open_seconds.observe(started.elapsed());
        }
    };
    finished(&reader, &state);
    let stream_state = state.clone();
    let recording_id = record.id.clone();
    let rest = futures::stream::unfold(Some(reader), move |reader| {
        let recording_id = recording_id.clone();
        let state = stream_state.clone();
        async move {
            let mut reader = reader?;
            match reader.next_batch(false).await {
                Ok(Some(bytes)) => {
                    finished(&reader, &state);
                    Some((Ok(bytes), Some(reader)))
                }
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(recording_id, error = %e, "decryption stopped mid-stream");
                    Some((Err(std::io::Error::other("could not decrypt")), None))
                }
            }
        }
    });
    let stream = futures::stream::iter(first.map(Ok)).chain(rest);
    ranged_response(&record.content_type, range, len, Body::from_stream(stream))
}

/// One version of a recording's envelope (a rewrap replacing it meanwhile does not
/// mix its header with this one's chunks), its header bytes, and what the guest
/// reads in them, checked to name this recording. The caller holds a guest place.
pub(super) async fn pinned_header(
    state: &AppState,
    record: &RecordingRecord,
) -> ApiResult<(Pinned, Vec<u8>, Inspection)> {
    let unreadable = |e: &dyn std::fmt::Display| ApiError::unreadable(&record.id, e);
    let pinned = state
        .repo
        .pin(&record.object_path)
        .await
        .map_err(|e| unreadable(&e))?;
    let header = pinned.read_header().await.map_err(|e| unreadable(&e))?;
    let info = state.runtime.inspect(&header).map_err(|e| match e {
        tapeseal_engine::HostError::Guest { .. } => unreadable(&e),
        other => ApiError::from(other),
    })?;
    if info.header.org_id != record.org_id || info.header.recording_id != record.id {
        return Err(unreadable(&"the envelope header names another recording"));
    }
    Ok((pinned, header, info))
}

/// A recording's DEK and the id of the key that unwrapped it: the organisation's
/// KEK for envelopes, the server's storage key for storage-encrypted recordings.
pub(super) async fn recording_dek(
    state: &AppState,
    context: &UnwrapContext<'_>,
    record: &RecordingRecord,
    header: &HeaderInfo,
) -> Result<(Dek, String), KeyServiceError> {
    if record.kek_id.is_some() {
        return unwrap_dek(state, context, header).await;
    }
    let storage = &state.storage_key;
    let stanza = header
        .stanzas
        .iter()
        .find(|s| s.kek_id == storage.id())
        .ok_or(KeyServiceError::NoUsableStanza)?;
    let started = Instant::now();
    let dek =
        tapeseal_store::blocking(|| storage.unwrap(&stanza.wrapped_dek, stanza.algorithm.into()))
            .map_err(KeyServiceError::from)?;
    state.metrics.unwraps.inc();
    state.metrics.unwrap_seconds.observe(started.elapsed());
    Ok((dek, storage.id().to_string()))
}

/// The sealed envelope as stored, whole or one range.
async fn stored_object(
    state: &AppState,
    auth: &Auth,
    record: &RecordingRecord,
    method: &Method,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let pinned = state
        .repo
        .pin(&record.object_path)
        .await
        .map_err(|e| ApiError::unreadable(&record.id, &e))?;
    let len = pinned.size();
    let range = match requested(headers, len) {
        Ok(range) => range,
        Err(refusal) => return Ok(refusal),
    };
    if method == Method::HEAD {
        return ranged_response(ENVELOPE_TYPE, range, len, Body::empty());
    }
    state
        .catalogue
        .audit_async(
            auth.org(),
            auth.actor(),
            &AuditEvent::RecordingEnvelope {
                recording_id: &record.id,
                kek_id: record.kek_id.as_deref(),
                bytes: len,
            },
        )
        .await?;
    let stream = pinned
        .stream(range.clone().unwrap_or(0..len))
        .map(|piece| piece.map_err(std::io::Error::other));
    ranged_response(ENVELOPE_TYPE, range, len, Body::from_stream(stream))
}

/// The media type of a sealed envelope.
const ENVELOPE_TYPE: &str = "application/vnd.tapeseal.envelope";

/// The sealed envelope, byte for byte, for decryption elsewhere (a browser that gets
/// the DEK from a Local Key Manager). Supports one byte range.
#[utoipa::path(
    get,
    path = "/v1/recordings/{id}/envelope",
    tag = "recordings",
    params(
        ("id" = String, Path, description = "Recording id"),
        ("Range" = Option<String>, Header, description = "One byte range of the envelope"),
    ),
    responses(
        (status = 200, description = "The envelope", content_type = "application/vnd.tapeseal.envelope"),
        (status = 206, description = "The requested range of the envelope", content_type = "application/vnd.tapeseal.envelope"),
        (status = 404, description = "No such recording in this organisation", body = super::error::ErrorBody),
        (status = 409, description = "A screen recording (storage-side encryption) has no envelope", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn envelope(
    State(state): State<Shared>,
    auth: Auth,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth.require(&[Role::Player])?;
    let record = lookup(&state, &auth, &id)?;
    if record.kek_id.is_none() {
        return Err(ApiError::conflict(
            "screen recordings are protected by storage-side encryption, not by an organisation KEK; they have no envelope to download",
        ));
    }
    stored_object(&state, &auth, &record, &method, &headers).await
}
