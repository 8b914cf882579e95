//! Recordings: streaming ingest sealed in the guest as the bytes arrive, metadata,
//! decrypted content with HTTP Range (only the chunks a range needs are read and
//! opened), and the sealed envelope itself. Every decrypt is audited.

use std::ops::Range;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::auth::Auth;
use super::error::{ApiError, ApiResult, QueryParams};
use super::keys::unwrap_dek;
use super::repo::{ObjectWriter, Repository};
use super::{AppState, Shared};
use crate::catalogue::{RecordingFilter, RecordingRecord, Role};
use crate::engine::{ChunkOpener, MediaKind, Recipient, SealParams, WrapAlgorithm};

/// The recording routes.
pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route(
            "/v1/recordings",
            post(ingest).get(list).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/recordings/{id}", get(metadata))
        .route("/v1/recordings/{id}/content", get(content))
        .route("/v1/recordings/{id}/envelope", get(envelope))
}

/// Screen recordings: stored with the repository's own encryption, not as envelopes.
pub const SCREEN: &str = "screen";

/// A recording as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordingView {
    /// Recording id.
    pub id: String,
    /// `call`, `email`, `chat`, `message`, `transcript`, `other` or `screen`.
    pub media_kind: String,
    /// MIME type of the content.
    pub content_type: String,
    /// The conversation it belongs to.
    pub conversation_id: Option<String>,
    /// Plaintext bytes.
    pub size: u64,
    /// Stored bytes.
    pub stored_size: u64,
    /// `envelope` (sealed for a KEK) or `storage` (the repository's encryption only).
    pub protection: String,
    /// The KEK its envelope is wrapped for.
    pub kek_id: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl From<RecordingRecord> for RecordingView {
    fn from(r: RecordingRecord) -> Self {
        Self {
            protection: if r.kek_id.is_some() {
                "envelope"
            } else {
                "storage"
            }
            .into(),
            id: r.id,
            media_kind: r.media_kind,
            content_type: r.content_type,
            conversation_id: r.conversation_id,
            size: r.plaintext_len,
            stored_size: r.stored_len,
            kek_id: r.kek_id,
            created_at: r.created_at,
        }
    }
}

/// Ingest parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IngestQuery {
    /// `call`, `email`, `chat`, `message`, `transcript`, `other` or `screen`.
    pub kind: String,
    /// The conversation the recording belongs to (up to 200 characters).
    pub conversation_id: Option<String>,
}

/// List filters.
#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this conversation's recordings.
    pub conversation_id: Option<String>,
    /// Only recordings wrapped for this KEK.
    pub kek_id: Option<String>,
    /// Only this media kind.
    pub kind: Option<String>,
    /// Only ids after this one (paging: pass the last id of the previous page).
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

fn valid_text(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && !value.chars().any(char::is_control)
}

fn content_type_of(headers: &HeaderMap) -> ApiResult<String> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok("application/octet-stream".into());
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("Content-Type must be ASCII"))?
        .trim();
    let (kind, sub) = text.split_once('/').unwrap_or(("", ""));
    if kind.is_empty() || sub.is_empty() || !valid_text(text, 255) {
        return Err(ApiError::bad_request(
            "Content-Type must be a MIME type such as audio/wav (up to 255 characters)",
        ));
    }
    Ok(text.to_string())
}

fn new_recording_id() -> ApiResult<String> {
    let mut id = [0u8; 16];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| ApiError::internal(&"no secure random source"))?;
    Ok(format!("rec-{}", hex::encode(id)))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Upload a recording. The body is the recording itself, streamed; it is sealed for
/// the organisation's current KEK as it arrives and stored only once complete.
#[utoipa::path(
    post,
    path = "/v1/recordings",
    tag = "recordings",
    params(IngestQuery),
    request_body(content = Vec<u8>, description = "The recording's bytes; Content-Type gives its MIME type", content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored", body = RecordingView),
        (status = 400, description = "Bad kind, conversation id or Content-Type", body = super::error::ErrorBody),
        (status = 413, description = "Larger than max_upload_bytes", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn ingest(
    State(state): State<Shared>,
    auth: Auth,
    QueryParams(query): QueryParams<IngestQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<RecordingView>)> {
    auth.require(&[Role::Recorder])?;
    let started = Instant::now();
    let sealed_kind = match query.kind.as_str() {
        SCREEN => None,
        other => Some(MediaKind::from_name(other).ok_or_else(|| {
            ApiError::bad_request(
                "kind must be call, email, chat, message, transcript, other or screen",
            )
        })?),
    };
    if let Some(c) = &query.conversation_id
        && !valid_text(c, 200)
    {
        return Err(ApiError::bad_request(
            "conversation_id must be 1 to 200 characters without control characters",
        ));
    }
    let content_type = content_type_of(&headers)?;
    let id = new_recording_id()?;
    let created_at = now_ms();
    let org = auth.org().to_string();
    let path = Repository::object_path(&org, &id, sealed_kind.is_some());
    let mut writer = state.repo.writer(&path);

    let stored = match sealed_kind {
        None => receive(&state, body, &mut writer, Ok)
            .await
            .map(|n| (n, None)),
        Some(kind) => {
            let mut context = Vec::new();
            if let Some(c) = &query.conversation_id {
                context.push(("conversation-id".to_string(), c.clone()));
            }
            let params = SealParams {
                org_id: org.clone(),
                recording_id: id.clone(),
                media_kind: kind,
                content_type: content_type.clone(),
                created_at_ms: u64::try_from(created_at).unwrap_or(0),
                context,
                chunk_size: state.config.chunk_size,
            };
            seal_upload(&state, auth.actor(), &params, body, &mut writer).await
        }
    };
    let (plaintext_len, kek_id) = match stored {
        Ok(stored) => stored,
        Err(e) => {
            discard(writer).await;
            return Err(e);
        }
    };
    let stored_len = writer.written();
    writer.commit().await.map_err(|e| ApiError::internal(&e))?;
    let record = RecordingRecord {
        id: id.clone(),
        org_id: org.clone(),
        kek_id: kek_id.clone(),
        media_kind: query.kind.clone(),
        content_type,
        conversation_id: query.conversation_id.clone(),
        plaintext_len,
        stored_len,
        object_path: path.clone(),
        created_at,
    };
    if let Err(e) = state.catalogue.insert_recording(&record) {
        let _ = state.repo.delete(&path).await;
        return Err(e.into());
    }
    state.catalogue.audit(
        &org,
        auth.actor(),
        "recording.ingest",
        Some(&id),
        kek_id.as_deref(),
        &format!("{} bytes of {}", plaintext_len, query.kind),
    )?;
    if kek_id.is_some() {
        state.metrics.count(&state.metrics.seals);
        state.metrics.seal_seconds.observe(started.elapsed());
    }
    tracing::info!(recording_id = %id, kind = %query.kind, bytes = plaintext_len, "recording stored");
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// Seals the body for the organisation's current KEK into `writer`.
async fn seal_upload(
    state: &AppState,
    actor: &str,
    params: &SealParams,
    body: Body,
    writer: &mut ObjectWriter,
) -> ApiResult<(u64, Option<String>)> {
    let kek = state.keys().current(&params.org_id, actor)?;
    let recipient = Recipient {
        kek_id: kek.id.clone(),
        public_key: kek
            .public_key
            .to_spki_der()
            .map_err(|e| ApiError::internal(&e))?,
        algorithm: WrapAlgorithm::RsaOaepSha256,
    };
    let mut sealer = {
        let dek = state.runtime.generate_dek()?;
        state.runtime.sealer(&dek, params, &[recipient])?
    };
    let len = receive(state, body, writer, |bytes| {
        Ok(Bytes::from(sealer.push(&bytes)?))
    })
    .await?;
    writer.put(Bytes::from(sealer.finish()?)).await?;
    Ok((len, Some(kek.id)))
}

async fn discard(writer: ObjectWriter) {
    if let Err(e) = writer.abort().await {
        tracing::warn!(error = %e, "could not discard a partial upload");
    }
}

/// Copies the request body through `transform` into `writer`, enforcing the upload
/// limit. Returns the number of plaintext bytes received.
async fn receive(
    state: &AppState,
    body: Body,
    writer: &mut ObjectWriter,
    mut transform: impl FnMut(Bytes) -> ApiResult<Bytes>,
) -> ApiResult<u64> {
    let limit = state.config.max_upload_bytes;
    let mut received: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(frame) = stream.next().await {
        let bytes =
            frame.map_err(|e| ApiError::bad_request(format!("the upload was interrupted: {e}")))?;
        received += bytes.len() as u64;
        if received > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("uploads are limited to {limit} bytes"),
            ));
        }
        let out = transform(bytes)?;
        if !out.is_empty() {
            writer.put(out).await?;
        }
    }
    Ok(received)
}

fn lookup(state: &AppState, auth: &Auth, id: &str) -> ApiResult<RecordingRecord> {
    state
        .catalogue
        .recording(auth.org(), id)?
        .ok_or_else(|| ApiError::not_found("recording"))
}

/// List the organisation's recordings.
#[utoipa::path(
    get,
    path = "/v1/recordings",
    tag = "recordings",
    params(ListQuery),
    responses((status = 200, description = "Recordings, by id", body = Vec<RecordingView>)),
    security(("token" = []))
)]
pub async fn list(
    State(state): State<Shared>,
    auth: Auth,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<RecordingView>>> {
    auth.require(&[Role::Admin, Role::Player])?;
    let filter = RecordingFilter {
        conversation_id: query.conversation_id,
        kek_id: query.kek_id,
        media_kind: query.kind,
        after_id: query.after,
        limit: query.limit,
    };
    let records = state.catalogue.list_recordings(auth.org(), &filter)?;
    Ok(Json(records.into_iter().map(Into::into).collect()))
}

/// A recording's metadata.
#[utoipa::path(
    get,
    path = "/v1/recordings/{id}",
    tag = "recordings",
    params(("id" = String, Path, description = "Recording id")),
    responses(
        (status = 200, description = "Metadata", body = RecordingView),
        (status = 404, description = "No such recording in this organisation", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn metadata(
    State(state): State<Shared>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<RecordingView>> {
    auth.require(&[Role::Admin, Role::Player, Role::Recorder])?;
    Ok(Json(lookup(&state, &auth, &id)?.into()))
}

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
        .header(header::CACHE_CONTROL, "no-store");
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
        let first = self.opener.chunk_range(self.next)?;
        let mut end_chunk = self.next;
        let mut end = first.end;
        while end_chunk < self.last {
            let next = self.opener.chunk_range(end_chunk + 1)?;
            if next.end - first.start > READ_BATCH {
                break;
            }
            end_chunk += 1;
            end = next.end;
        }
        let ciphertext = self.repo.read(&self.path, first.start..end).await?;
        anyhow::ensure!(
            ciphertext.len() as u64 == end - first.start,
            "the stored envelope is shorter than its catalogue entry"
        );
        let mut out = Vec::new();
        for index in self.next..=end_chunk {
            let r = self.opener.chunk_range(index)?;
            let from = usize::try_from(r.start - first.start)?;
            let to = usize::try_from(r.end - first.start)?;
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
        (status = 200, description = "The whole recording, with its Content-Type", content_type = "application/octet-stream"),
        (status = 206, description = "The requested range", content_type = "application/octet-stream"),
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
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth.require(&[Role::Player])?;
    let started = Instant::now();
    let record = lookup(&state, &auth, &id)?;
    let Some(kek_id) = &record.kek_id else {
        let content_type = record.content_type.clone();
        return stored_object(
            &state,
            &auth,
            &record,
            &headers,
            &content_type,
            "recording.read",
        )
        .await;
    };
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
    let (dek, used_kek) = unwrap_dek(&state, auth.org(), &info.header)
        .map_err(|e| ApiError::decrypt_failed(&record.id, &e))?;
    let mut opener = state
        .runtime
        .chunk_opener(&header, &dek, size)
        .map_err(|e| ApiError::decrypt_failed(&record.id, &e))?;
    drop(dek);
    let len = opener.plaintext_len()?;
    let range = match requested(&headers, len) {
        Ok(range) => range,
        Err(refusal) => return Ok(refusal),
    };
    let wanted = range.clone().unwrap_or(0..len);
    let chunks = if len == 0 {
        0..=0
    } else {
        let br = opener.byte_range(wanted.start, wanted.end)?;
        br.first_chunk..=br.last_chunk
    };
    state.catalogue.audit(
        auth.org(),
        auth.actor(),
        "recording.decrypt",
        Some(&record.id),
        Some(&used_kek),
        &format!("bytes {}-{} of {len}", wanted.start, wanted.end),
    )?;
    if used_kek != *kek_id {
        tracing::info!(recording_id = %record.id, "recording unwrapped with a KEK other than its catalogue entry's");
    }
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
    let first = reader
        .next_batch()
        .await
        .map_err(|e| ApiError::decrypt_failed(&record.id, &e))?;
    state.metrics.count(&state.metrics.opens);
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

/// The stored object itself, whole or one range: a storage-encrypted recording's
/// content, or an envelope. Audited as `action`.
async fn stored_object(
    state: &AppState,
    auth: &Auth,
    record: &RecordingRecord,
    headers: &HeaderMap,
    content_type: &str,
    action: &str,
) -> ApiResult<Response> {
    let len = state.repo.size(&record.object_path).await?;
    let range = match requested(headers, len) {
        Ok(range) => range,
        Err(refusal) => return Ok(refusal),
    };
    state.catalogue.audit(
        auth.org(),
        auth.actor(),
        action,
        Some(&record.id),
        record.kek_id.as_deref(),
        &format!("stored bytes, {len} in all"),
    )?;
    let stream = state
        .repo
        .stream(&record.object_path, range.clone())
        .await?;
    ranged_response(content_type, range, len, Body::from_stream(stream))
}

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
        (status = 409, description = "A storage-encrypted recording has no envelope", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn envelope(
    State(state): State<Shared>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth.require(&[Role::Player])?;
    let record = lookup(&state, &auth, &id)?;
    if record.kek_id.is_none() {
        return Err(ApiError::conflict(
            "this recording is stored with the repository's encryption and has no envelope",
        ));
    }
    stored_object(
        &state,
        &auth,
        &record,
        &headers,
        "application/vnd.tapeseal.envelope",
        "recording.envelope",
    )
    .await
}
