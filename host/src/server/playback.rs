//! Playback and download: the decrypted content with HTTP Range support (only the
//! chunks a range covers are read and opened, and only authenticated bytes are
//! released), and the stored object itself (the sealed envelope). Every read is
//! audited.

use std::ops::Range;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::keys::unwrap_dek;
use super::recordings::lookup;
use super::repo::Repository;
use super::{AppState, Shared};
use crate::catalogue::{RecordingRecord, Role};
use crate::engine::{ChunkOpener, HeaderInfo};
use tapeseal_core::Dek;

/// What a Range header asks of a resource of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable Range header: the whole resource.
    Full,
    /// One satisfiable range (end exclusive).
    Partial(Range<u64>),
    /// A range that lies outside the resource.
    Unsatisfiable,
}

/// Parses a single-range `bytes=` Range header. Multiple ranges and syntax the
/// server does not understand are ignored, as RFC 9110 allows, and the whole
/// resource is served.
pub fn parse_range(value: Option<&HeaderValue>, len: u64) -> RangeRequest {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => RangeRequest::Full,
        (true, false) => match parse(last) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(n) if len > 0 => RangeRequest::Partial(len.saturating_sub(n)..len),
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Full,
        },
        (false, open_end) => {
            let Some(start) = parse(first) else {
                return RangeRequest::Full;
            };
            let end = if open_end {
                len
            } else {
                match parse(last) {
                    Some(last) if last >= start => last.saturating_add(1).min(len),
                    _ => return RangeRequest::Full,
                }
            };
            if start >= len {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(start..end)
            }
        }
    }
}

fn unsatisfiable(len: u64) -> Response {
    let mut response = ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range_not_satisfiable",
        format!("the range lies outside the {len} bytes of the content"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
        response.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    response
}

/// The range a request asks for (`None`: all of it), or the 416 refusal.
#[allow(clippy::result_large_err)]
fn requested(headers: &HeaderMap, len: u64) -> Result<Option<Range<u64>>, Response> {
    match parse_range(headers.get(header::RANGE), len) {
        RangeRequest::Full => Ok(None),
        RangeRequest::Partial(r) => Ok(Some(r)),
        RangeRequest::Unsatisfiable => Err(unsatisfiable(len)),
    }
}

/// A response for `range` of a `len`-byte resource whose bytes `body` streams.
fn ranged_response(
    content_type: &str,
    range: Option<Range<u64>>,
    len: u64,
    body: Body,
) -> ApiResult<Response> {
    let (status, length) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, len),
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, length)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "no-store")
        // Content is the uploader's, typed as the uploader said: never let a browser
        // sniff it into something else or run it as a page of this origin.
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        );
    if let Some(r) = &range {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{len}", r.start, r.end.saturating_sub(1)),
        );
    }
    builder.body(body).map_err(|e| ApiError::internal(&e))
}

/// Chunks read from the repository per request, at most.
const READ_BATCH: u64 = 1 << 20;

/// Streams the plaintext of `range` out of an envelope: reads the ciphertext of a
/// batch of chunks at a time, opens each chunk (authenticating it) and releases only
/// the bytes inside the range.
struct Decrypting {
    opener: ChunkOpener,
    repo: Repository,
    path: String,
    next: u64,
    last: u64,
    range: Range<u64>,
    chunk_size: u64,
}

impl Decrypting {
    async fn next_batch(&mut self) -> anyhow::Result<Option<Bytes>> {
        if self.next > self.last {
            return Ok(None);
        }
        // The envelope ranges of the chunks this batch reads, asked of the guest once.
        let mut chunks = vec![self.opener.chunk_range(self.next)?];
        let start = chunks[0].start;
        let mut end_chunk = self.next;
        while end_chunk < self.last {
            let next = self.opener.chunk_range(end_chunk + 1)?;
            if next.end - start > READ_BATCH {
                break;
            }
            chunks.push(next);
            end_chunk += 1;
        }
        let end = chunks[chunks.len() - 1].end;
        let ciphertext = self.repo.read(&self.path, start..end).await?;
        anyhow::ensure!(
            ciphertext.len() as u64 == end - start,
            "the stored envelope is shorter than its catalogue entry"
        );
        let mut out = Vec::new();
        for (index, r) in (self.next..=end_chunk).zip(&chunks) {
            let from = usize::try_from(r.start - start)?;
            let to = usize::try_from(r.end - start)?;
            let plain = self.opener.open_chunk(index, &ciphertext[from..to])?;
            let chunk_start = index * self.chunk_size;
            let lo = self
                .range
                .start
                .saturating_sub(chunk_start)
                .min(plain.len() as u64);
            let hi = (self.range.end - chunk_start).min(plain.len() as u64);
            out.extend_from_slice(&plain[usize::try_from(lo)?..usize::try_from(hi)?]);
        }
        self.next = end_chunk + 1;
        Ok(Some(Bytes::from(out)))
    }
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
    let unreadable = |e: &dyn std::fmt::Display| {
        tracing::warn!(recording_id = %record.id, error = %e, "stored recording is unreadable");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unreadable_recording",
            "the stored recording is damaged or is not a tapeseal envelope",
        )
    };
    let (header, size) = state
        .repo
        .read_header(&state.runtime, &record.object_path)
        .await
        .map_err(|e| unreadable(&e))?;
    let info = state.runtime.inspect(&header).map_err(|e| unreadable(&e))?;
    if info.header.org_id != record.org_id || info.header.recording_id != record.id {
        return Err(unreadable(&"the envelope header names another recording"));
    }
    // A failed decrypt is audited too: who tried, and that it failed.
    let failed = |e: &dyn std::fmt::Display| {
        let _ = state.catalogue.audit(
            auth.org(),
            auth.actor(),
            "recording.decrypt_failed",
            Some(&record.id),
            record.kek_id.as_deref(),
            "could not decrypt",
        );
        ApiError::decrypt_failed(&record.id, e)
    };
    let (dek, key_id) = recording_dek(&state, &record, &info.header).map_err(|e| failed(&e))?;
    let mut opener = state
        .runtime
        .chunk_opener(&header, &dek, size)
        .map_err(|e| failed(&e))?;
    drop(dek);
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
    let detail = if wanted.is_empty() {
        format!("0 of {len} bytes")
    } else {
        format!("bytes {}-{}/{len}", wanted.start, wanted.end - 1)
    };
    let mut reader = Decrypting {
        opener,
        repo: state.repo.clone(),
        path: record.object_path.clone(),
        next: *chunks.start(),
        last: *chunks.end(),
        range: wanted,
        chunk_size: u64::from(info.header.chunk_size),
    };
    // The first batch is opened before the response starts, so a damaged recording
    // or a wrong key gives a clean error instead of a cut-off body.
    let first = reader.next_batch().await.map_err(|e| failed(&e))?;
    state.catalogue.audit(
        auth.org(),
        auth.actor(),
        "recording.decrypt",
        Some(&record.id),
        Some(&key_id),
        &detail,
    )?;
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
            match reader.next_batch().await {
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

/// A recording's DEK and the id of the key that unwrapped it: the organisation's
/// KEK for envelopes, the server's storage key for storage-encrypted recordings.
fn recording_dek(
    state: &AppState,
    record: &RecordingRecord,
    header: &HeaderInfo,
) -> anyhow::Result<(Dek, String)> {
    if record.kek_id.is_some() {
        return unwrap_dek(state, &record.org_id, header);
    }
    let storage = &state.storage_key;
    let stanza = header
        .stanzas
        .iter()
        .find(|s| s.kek_id == storage.id())
        .ok_or_else(|| {
            anyhow::anyhow!("the recording is not sealed for this server's storage key")
        })?;
    let started = Instant::now();
    let dek = storage.unwrap(&stanza.wrapped_dek, stanza.algorithm.into())?;
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
    let len = state.repo.size(&record.object_path).await?;
    let range = match requested(headers, len) {
        Ok(range) => range,
        Err(refusal) => return Ok(refusal),
    };
    if method == Method::HEAD {
        return ranged_response(ENVELOPE_TYPE, range, len, Body::empty());
    }
    state.catalogue.audit(
        auth.org(),
        auth.actor(),
        "recording.envelope",
        Some(&record.id),
        record.kek_id.as_deref(),
        &format!("stored bytes, {len} in all"),
    )?;
    let stream = state
        .repo
        .stream(&record.object_path, range.clone())
        .await?;
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
