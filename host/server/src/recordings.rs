//! Recordings in: streaming ingest, sealed in the guest as the bytes arrive and
//! stored atomically; and the catalogue side of recordings out: listing and metadata.
//! Content and envelopes are served by [`super::playback`]; envelopes sealed by the
//! recorder itself come in through [`super::sealed`].

use std::time::Instant;
use tapeseal_keys::KeyService;

use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::auth::Auth;
use super::error::{ApiError, ApiResult, QueryParams};
use super::{AppState, Shared};
use tapeseal_core::ErrorCode;
use tapeseal_engine::{MediaKind, Recipient, SealParams, WrapAlgorithm};
use tapeseal_store::catalogue::{RecordingFilter, RecordingRecord, Role};
use tapeseal_store::ids;
use tapeseal_store::repo::{ObjectWriter, Repository};
use tapeseal_store::time::now_ms;

/// The recording routes.
pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route(
            "/v1/recordings",
            post(ingest).get(list).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/recordings/{id}", get(metadata))
        .route("/v1/recordings/{id}/content", get(super::playback::content))
        .route(
            "/v1/recordings/{id}/envelope",
            get(super::playback::envelope),
        )
        .route(
            "/v1/recordings/{id}/playback",
            axum::routing::post(super::grants::playback),
        )
}

/// Screen recordings: protected by storage-side encryption (the server's storage
/// key), not by the organisation's KEK.
pub const SCREEN: &str = "screen";

/// The envelope context key that carries a recording's conversation id.
pub const CONVERSATION_ID: &str = "conversation-id";

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
    /// `envelope` (sealed for the organisation's KEK) or `storage` (storage-side
    /// encryption under the server's storage key; screen recordings).
    pub protection: String,
    /// The organisation KEK its envelope is wrapped for; null for screen recordings,
    /// which are sealed for the server's storage key.
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

/// Non-empty text without control characters. How long it may be is the envelope
/// format's business: the core refuses what it cannot carry (422
/// `invalid_parameter`), so the server does not repeat its limits.
pub(super) fn valid_text(value: &str) -> bool {
    !value.is_empty() && !value.chars().any(char::is_control)
}

/// Whether `text` looks like a MIME type (`type/subtype`, no control characters).
pub(super) fn is_mime_type(text: &str) -> bool {
    let (kind, sub) = text.split_once('/').unwrap_or(("", ""));
    !kind.is_empty() && !sub.is_empty() && valid_text(text)
}

fn content_type_of(headers: &HeaderMap) -> ApiResult<String> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok("application/octet-stream".into());
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("Content-Type must be ASCII"))?
        .trim();
    if !is_mime_type(text) {
        return Err(ApiError::bad_request(
            "Content-Type must be a MIME type such as audio/wav",
        ));
    }
    Ok(text.to_string())
}

/// Upload a recording. The body is the recording itself, streamed; it is sealed for
/// the organisation's current KEK as it arrives and stored only once complete. Screen
/// recordings (`kind=screen`) get storage-side encryption instead: sealed for the
/// server's storage key, not for an organisation KEK.
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
    let screen = query.kind == SCREEN;
    let media_kind = if screen {
        MediaKind::Other
    } else {
        MediaKind::from_name(&query.kind).ok_or_else(|| {
            ApiError::bad_request(
                "kind must be call, email, chat, message, transcript, other or screen",
            )
        })?
    };
    if let Some(c) = &query.conversation_id
        && !valid_text(c)
    {
        return Err(ApiError::bad_request(
            "conversation_id must be non-empty text without control characters",
        ));
    }
    let content_type = content_type_of(&headers)?;
    let id = ids::new_recording_id().map_err(|e| ApiError::internal(&e))?;
    let created_at = now_ms();
    let org = auth.org().to_string();
    let path = Repository::object_path(&org, &id);
    let (recipient, kek_id) = if screen {
        let recipient = Recipient {
            kek_id: state.storage_key.id().to_string(),
            public_key: state.storage_key.public_spki()?,
            algorithm: WrapAlgorithm::RsaOaepSha256,
        };
        (recipient, None)
    } else {
        let kek = state.keys.current(&org, auth.actor()).await?;
        let recipient = Recipient {
            kek_id: kek.id.clone(),
            public_key: kek
                .public_key
                .to_spki_der()
                .map_err(|e| ApiError::internal(&e))?,
            algorithm: kek.algorithm.into(),
        };
        (recipient, Some(kek.id))
    };
    let mut context = Vec::new();
    if let Some(c) = &query.conversation_id {
        context.push((CONVERSATION_ID.to_string(), c.clone()));
    }
    let params = SealParams {
        org_id: org.clone(),
        recording_id: id.clone(),
        media_kind,
        content_type: content_type.clone(),
        created_at_ms: u64::try_from(created_at).unwrap_or(0),
        context,
        chunk_size: state.config.chunk_size,
    };
    // Sealing holds a guest instance for the whole upload: a place first, or 503.
    let _permit = state.limits.admit(&org).await?;
    let mut writer = state
        .repo
        .writer(&path)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let stored = seal_upload(&state, &params, recipient, body, &mut writer).await;
    let record = |plaintext_len, stored_len| RecordingRecord {
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
    let message = "recording stored";
    catalogue_upload(&state, &auth, started, writer, stored, record, message).await
}

/// The end of an upload streamed into `writer`, shared by ingest and envelopes sealed
/// at the edge: `stored` is what storing gave (the plaintext length), and on an
/// error the partial object is discarded. Otherwise the object is committed, the
/// recording `record` builds from the plaintext and stored lengths is catalogued (its
/// object deleted if the catalogue refuses it), counted and logged with `message`;
/// the answer is the 201 with the recording.
pub(crate) async fn catalogue_upload(
    state: &AppState,
    auth: &Auth,
    started: Instant,
    writer: ObjectWriter,
    stored: ApiResult<u64>,
    record: impl FnOnce(u64, u64) -> RecordingRecord,
    message: &str,
) -> ApiResult<(StatusCode, Json<RecordingView>)> {
    let plaintext_len = match stored {
        Ok(len) => len,
        Err(e) => {
            discard(writer).await;
            return Err(e);
        }
    };
    let stored_len = writer.written();
    writer.commit().await.map_err(|e| ApiError::internal(&e))?;
    let record = record(plaintext_len, stored_len);
    // The object is durable (fsynced, renamed, directory fsynced): only now may the
    // catalogue say it exists (with its `recording.ingest` audit entry, in the same
    // transaction).
    tapeseal_store::crash_point!("ingest.before_catalogue");
    if let Err(e) = state.catalogue.insert_recording(&record, auth.actor()) {
        let _ = state.repo.delete(&record.object_path).await;
        return Err(e.into());
    }
    tapeseal_store::crash_point!("ingest.after_catalogue");
    state.metrics.seals.inc();
    state.metrics.seal_seconds.observe(started.elapsed());
    tracing::info!(
        recording_id = %record.id,
        kind = %record.media_kind,
        bytes = plaintext_len,
        stored = stored_len,
        "{message}"
    );
    Ok((StatusCode::CREATED, Json(record.into())))
}

pub(super) async fn discard(writer: ObjectWriter) {
    if let Err(e) = writer.abort().await {
        tracing::warn!(error = %e, "could not discard a partial upload");
    }
}

/// Seals the request body for `recipient` into `writer` as it arrives, enforcing the
/// upload limit. Returns the number of plaintext bytes received.
async fn seal_upload(
    state: &AppState,
    params: &SealParams,
    recipient: Recipient,
    body: Body,
    writer: &mut ObjectWriter,
) -> ApiResult<u64> {
    let mut sealer = {
        let dek = state.runtime.generate_dek()?;
        state.runtime.sealer(&dek, params, &[recipient])?
    };
    let limit = state.config.max_upload_bytes;
    let mut received: u64 = 0;
    let mut pending = Vec::with_capacity(PUSH_BYTES);
    let mut stream = body.into_data_stream();
    let idle = std::time::Duration::from_secs(state.config.limits.body_idle_timeout_secs);
    loop {
        let frame = match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => {
                return Err(ApiError::new(
                    ErrorCode::Timeout,
                    format!("the upload sent nothing for {} s", idle.as_secs()),
                ));
            }
        };
        let bytes =
            frame.map_err(|e| ApiError::bad_request(format!("the upload was interrupted: {e}")))?;
        received += bytes.len() as u64;
        if received > limit {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("uploads are limited to {limit} bytes"),
            ));
        }
        // HTTP frames are small; the guest is called once per PUSH_BYTES.
        pending.extend_from_slice(&bytes);
        if pending.len() >= PUSH_BYTES {
            let sealed = sealer.push(&pending)?;
            pending.clear();
            put(writer, sealed).await?;
        }
    }
    let mut sealed = sealer.push(&pending)?;
    sealed.extend_from_slice(&sealer.finish()?);
    put(writer, sealed).await?;
    Ok(received)
}

/// How much of an upload is gathered before the guest seals it.
const PUSH_BYTES: usize = 1 << 20;

async fn put(writer: &mut ObjectWriter, sealed: Vec<u8>) -> ApiResult<()> {
    if sealed.is_empty() {
        return Ok(());
    }
    writer
        .put(Bytes::from(sealed))
        .await
        .map_err(|e| ApiError::internal(&e))
}

pub(super) fn lookup(state: &AppState, auth: &Auth, id: &str) -> ApiResult<RecordingRecord> {
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
