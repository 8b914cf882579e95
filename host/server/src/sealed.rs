//! Recordings sealed at the edge: a recorder seals a recording itself, for the KEK
//! `GET /v1/keks/current` names, and uploads the finished envelope. The server never
//! sees the plaintext or the DEK, so it checks what it can without them before
//! anything is catalogued: the header (its organisation, recording id, KEK and
//! media kind) and the payload's length against the chunk layout.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, BodyDataStream};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::put;
use bytes::Bytes;
use futures::StreamExt;
use tapeseal_core::aead::TAG_LEN;
use tapeseal_core::header::PREFIX_LEN;
use tapeseal_core::{ErrorCode, Layout};
use tapeseal_engine::HeaderInfo;
use tapeseal_store::catalogue::{RecordingRecord, Role};
use tapeseal_store::repo::{ObjectWriter, Repository};
use tapeseal_store::time::now_ms;

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::recordings::{
    CONVERSATION_ID, RecordingView, catalogue_upload, is_mime_type, valid_text,
};
use super::{AppState, Shared};

/// The upload route (the download of the same path is in [`super::recordings`]).
pub fn routes() -> axum::Router<Shared> {
    axum::Router::new().route(
        "/v1/recordings/{id}/envelope",
        put(upload).layer(DefaultBodyLimit::disable()),
    )
}

/// How much of an upload is gathered before it is written to the repository.
const WRITE_BYTES: usize = 1 << 20;

/// Upload an envelope sealed elsewhere (`tapeseal seal`, or any writer of
/// docs/FORMAT.md) for a KEK of this organisation. The body is streamed to the
/// repository; the recording is catalogued only once the header and the length have
/// passed every check and the object is durable.
#[utoipa::path(
    put,
    path = "/v1/recordings/{id}/envelope",
    tag = "recordings",
    params(("id" = String, Path, description = "Recording id: `rec-` and 32 lowercase hex digits, the same as in the envelope's header")),
    request_body(content = Vec<u8>, description = "The envelope, byte for byte", content_type = "application/vnd.tapeseal.envelope"),
    responses(
        (status = 201, description = "Stored", body = RecordingView),
        (status = 400, description = "The id is not a recording id", body = super::error::ErrorBody),
        (status = 403, description = "The envelope names another organisation", body = super::error::ErrorBody),
        (status = 404, description = "No key stanza names a KEK of this organisation (`unknown_key`)", body = super::error::ErrorBody),
        (status = 409, description = "The recording id is taken (or being uploaded), or the envelope's KEK is retired", body = super::error::ErrorBody),
        (status = 413, description = "Holds more than max_upload_bytes of plaintext", body = super::error::ErrorBody),
        (status = 422, description = "Not a tapeseal envelope, a header that does not match the upload, or a length no complete envelope has (truncated or padded)", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn upload(
    State(state): State<Shared>,
    auth: Auth,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<RecordingView>)> {
    auth.require(&[Role::Recorder])?;
    let started = Instant::now();
    if !is_recording_id(&id) {
        return Err(ApiError::bad_request(
            "a recording id is rec- and 32 lowercase hex digits",
        ));
    }
    let org = auth.org().to_string();
    // The id is the uploader's, so two uploads of it may race, on this instance or
    // on two: each writes an object of its own, and the one the catalogue refuses
    // deletes only its own.
    let nonce = tapeseal_store::ids::new_id("up").map_err(|e| ApiError::internal(&e))?;
    let path = Repository::upload_path(&org, &id, &nonce);
    // On this instance, a second upload of an id in progress is refused at once.
    let _claim = Claim::take(&Repository::object_path(&org, &id), &id)?;
    if state.catalogue.recording(&org, &id)?.is_some() {
        return Err(ApiError::conflict(format!(
            "recording '{id}' already exists"
        )));
    }
    // The same admission control as ingest: a place first, or 503.
    let _permit = state.limits.admit(&org).await?;
    let mut incoming = Incoming {
        stream: body.into_data_stream(),
        idle: Duration::from_secs(state.config.limits.body_idle_timeout_secs),
    };
    let (header, first) = incoming.header(&state).await?;
    let info = state.runtime.inspect(&header)?;
    let accepted = check_header(&state, &org, &id, &info.header)?;
    let mut writer = state
        .repo
        .writer(&path)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let stored = store(
        &state,
        &mut incoming,
        &header,
        first,
        &accepted,
        &mut writer,
    )
    .await
    .map(|layout| layout.plaintext_len());
    let record = |plaintext_len, stored_len| RecordingRecord {
        id,
        org_id: org,
        kek_id: Some(accepted.kek_id),
        media_kind: accepted.media_kind.to_string(),
        content_type: accepted.content_type,
        conversation_id: accepted.conversation_id,
        plaintext_len,
        stored_len,
        object_path: path,
        created_at: now_ms(),
    };
    let message = "recording sealed at the edge stored";
    catalogue_upload(&state, &auth, started, writer, stored, record, message).await
}

/// `rec-` and 32 lowercase hex digits, as the server's own ids
/// (`tapeseal_store::ids::new_recording_id`); nothing else reaches a repository path.
fn is_recording_id(id: &str) -> bool {
    id.strip_prefix("rec-").is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Recordings with an upload in progress on this instance, so that a second upload
/// of one is refused before it sends its body. Across instances the catalogue
/// decides which upload wins (each writes to an object path of its own).
static UPLOADING: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// An upload's hold on its object path, let go when dropped (also when the client
/// goes away and the request is dropped).
struct Claim(String);

impl Claim {
    fn take(path: &str, id: &str) -> ApiResult<Self> {
        let mut uploading = UPLOADING.lock().unwrap_or_else(PoisonError::into_inner);
        if !uploading.insert(path.to_string()) {
            return Err(ApiError::conflict(format!(
                "recording '{id}' is being uploaded already"
            )));
        }
        Ok(Self(path.to_string()))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        UPLOADING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

/// The request body, frame by frame, each within the upload's idle timeout.
struct Incoming {
    stream: BodyDataStream,
    idle: Duration,
}

impl Incoming {
    async fn next(&mut self) -> ApiResult<Option<Bytes>> {
        match tokio::time::timeout(self.idle, self.stream.next()).await {
            Ok(Some(Ok(bytes))) => Ok(Some(bytes)),
            Ok(Some(Err(e))) => Err(ApiError::bad_request(format!(
                "the upload was interrupted: {e}"
            ))),
            Ok(None) => Ok(None),
            Err(_) => Err(ApiError::new(
                ErrorCode::Timeout,
                format!("the upload sent nothing for {} s", self.idle.as_secs()),
            )),
        }
    }

    /// The header's bytes (at most 64 KiB, as its prefix declares), and whatever
    /// payload bytes arrived with them.
    async fn header(&mut self, state: &AppState) -> ApiResult<(Vec<u8>, Vec<u8>)> {
        let mut buf = Vec::new();
        let mut needed = PREFIX_LEN;
        let mut prefix_read = false;
        loop {
            if buf.len() >= needed {
                if prefix_read {
                    let rest = buf.split_off(needed);
                    return Ok((buf, rest));
                }
                let declared = state.runtime.header_length(&buf[..PREFIX_LEN])?;
                needed = usize::try_from(declared).map_err(|e| ApiError::internal(&e))?;
                prefix_read = true;
                continue;
            }
            match self.next().await? {
                Some(bytes) => buf.extend_from_slice(&bytes),
                None => {
                    return Err(ApiError::new(
                        ErrorCode::IncompleteHeader,
                        format!(
                            "the body ended after {} bytes, before the envelope header did{}",
                            buf.len(),
                            if prefix_read {
                                format!(" ({needed} bytes)")
                            } else {
                                String::new()
                            }
                        ),
                    ));
                }
            }
        }
    }
}

/// What the checked header says about the recording.
struct Accepted {
    kek_id: String,
    media_kind: &'static str,
    content_type: String,
    conversation_id: Option<String>,
    header_len: u64,
    chunk_size: u32,
}

/// The checks a header must pass before its payload is stored: this organisation,
/// this recording, a usable KEK of this organisation, and metadata the catalogue
/// takes as ingest would.
fn check_header(state: &AppState, org: &str, id: &str, header: &HeaderInfo) -> ApiResult<Accepted> {
    if header.org_id != org {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "the envelope is sealed for organisation '{}'; this token belongs to '{org}'",
                header.org_id
            ),
        ));
    }
    if header.recording_id != id {
        return Err(invalid(format!(
            "the envelope is recording '{}', not '{id}'",
            header.recording_id
        )));
    }
    let kek_id = usable_kek(state, org, header)?;
    // Every media kind the format can carry (call, email, chat, message, transcript,
    // other) is one the server keeps as an envelope; `screen` is not one of them, as
    // screen recordings are sealed for the storage key by ingest alone.
    let media_kind = header.media_kind.name();
    if !is_mime_type(&header.content_type) {
        return Err(invalid(format!(
            "the envelope's content type '{}' is not a MIME type such as audio/wav",
            header.content_type
        )));
    }
    let conversation_id = match header.context.iter().find(|(k, _)| k == CONVERSATION_ID) {
        None => None,
        Some((_, value)) if valid_text(value) => Some(value.clone()),
        Some(_) => {
            return Err(invalid(format!(
                "the envelope's {CONVERSATION_ID} must be non-empty text without control characters"
            )));
        }
    };
    Ok(Accepted {
        kek_id,
        media_kind,
        content_type: header.content_type.clone(),
        conversation_id,
        header_len: header.header_len,
        chunk_size: header.chunk_size,
    })
}

/// The KEK the recording is catalogued under: of the stanzas that name an active KEK
/// of this organisation and wrap for it with the padding it takes, the current KEK's
/// if there is one, else the first. Unknown KEKs (another organisation's look the
/// same) and retired ones do not count.
fn usable_kek(state: &AppState, org: &str, header: &HeaderInfo) -> ApiResult<String> {
    let current = state.catalogue.current_kek_of_mode(org)?.map(|k| k.id);
    let (mut usable, mut retired, mut mismatched, mut unknown) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for stanza in &header.stanzas {
        let algorithm = tapeseal_core::WrapAlgorithm::from(stanza.algorithm).name();
        match state.catalogue.kek(org, &stanza.kek_id)? {
            None => unknown.push(format!("'{}'", stanza.kek_id)),
            Some(kek) if kek.state != "active" => retired.push(format!("'{}'", kek.id)),
            Some(kek) if kek.wrap_algorithm != algorithm => mismatched.push(format!(
                "'{}' (wrapped with {algorithm}; it takes {})",
                kek.id, kek.wrap_algorithm
            )),
            Some(kek) => usable.push(kek.id),
        }
    }
    let chosen = usable
        .iter()
        .find(|id| current.as_ref() == Some(*id))
        .or(usable.first());
    if let Some(id) = chosen {
        return Ok(id.clone());
    }
    if !mismatched.is_empty() {
        return Err(invalid(format!(
            "the envelope wraps its DEK for KEK {} with another padding than the KEK's; \
             seal with the wrap_algorithm GET /v1/keks/current gives",
            mismatched.join(", ")
        )));
    }
    if !retired.is_empty() {
        return Err(ApiError::conflict(format!(
            "the envelope is sealed for KEK {}, which is retired; seal for the current KEK \
             (GET /v1/keks/current)",
            retired.join(", ")
        )));
    }
    Err(ApiError::new(
        ErrorCode::UnknownKey,
        format!(
            "the envelope is sealed for KEK {}, which this organisation does not have; \
             seal for the current KEK (GET /v1/keks/current)",
            unknown.join(", ")
        ),
    ))
}

/// 422 `invalid_parameter`: an envelope that parses but is not one this upload may
/// store.
fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameter, message)
}

/// Writes the header, then streams the payload into `writer` as it arrives under the
/// upload limit, and checks its length against the chunk layout
/// (docs/FORMAT.md section 5). Returns the layout.
async fn store(
    state: &AppState,
    incoming: &mut Incoming,
    header: &[u8],
    first: Vec<u8>,
    accepted: &Accepted,
    writer: &mut ObjectWriter,
) -> ApiResult<Layout> {
    let limit = state.config.max_upload_bytes;
    let stride = u64::from(accepted.chunk_size) + TAG_LEN as u64;
    write(writer, header.to_vec()).await?;
    let mut payload: u64 = 0;
    let mut pending = Vec::with_capacity(WRITE_BYTES);
    let mut next = Some(Bytes::from(first));
    loop {
        let bytes = match next.take() {
            Some(bytes) => bytes,
            None => match incoming.next().await? {
                Some(bytes) => bytes,
                None => break,
            },
        };
        payload = payload.saturating_add(bytes.len() as u64);
        // The limit is on plaintext, as for ingest. What the payload so far would
        // hold never exceeds what any complete envelope that goes on to a valid
        // length holds, so refusing now refuses nothing that would have fitted.
        if payload.saturating_sub(payload.div_ceil(stride) * TAG_LEN as u64) > limit {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("uploads are limited to {limit} bytes"),
            ));
        }
        pending.extend_from_slice(&bytes);
        if pending.len() >= WRITE_BYTES {
            let full = std::mem::replace(&mut pending, Vec::with_capacity(WRITE_BYTES));
            write(writer, full).await?;
        }
    }
    write(writer, pending).await?;
    Layout::from_lengths(
        accepted.header_len,
        accepted.chunk_size,
        accepted.header_len.saturating_add(payload),
    )
    .map_err(|_| {
        invalid(format!(
            "the envelope is truncated or has trailing bytes: its {payload} payload bytes are not \
             whole chunks of {stride} bytes ({} of content and a 16-byte tag) ending with a final \
             chunk of 17 to {stride} bytes (16 to {stride} when it is the only one)",
            accepted.chunk_size
        ))
    })
}

async fn write(writer: &mut ObjectWriter, bytes: Vec<u8>) -> ApiResult<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    writer
        .put(Bytes::from(bytes))
        .await
        .map_err(|e| ApiError::internal(&e))
}

#[cfg(test)]
mod tests {
    use super::is_recording_id;

    #[test]
    fn recording_ids_are_the_servers_format_only() {
        let id = tapeseal_store::ids::new_recording_id().expect("random");
        assert!(is_recording_id(&id), "{id}");
        for bad in [
            "",
            "rec-",
            "rec-0123456789abcdef0123456789abcde",
            "rec-0123456789abcdef0123456789abcdef0",
            "rec-0123456789ABCDEF0123456789ABCDEF",
            "rec-0123456789abcdef0123456789abcdeg",
            "REC-0123456789abcdef0123456789abcdef",
            "rec-../../orgs/x/0123456789abcdef0123",
            "kek-0123456789abcdef0123456789abcdef",
        ] {
            assert!(!is_recording_id(bad), "{bad}");
        }
    }
}
