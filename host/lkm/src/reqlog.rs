//! The request log: every request under `/key-management/v1` (but the health check
//! and `OPTIONS`) is recorded with its method, path, status, the Hawk credential (or
//! grant issuer) that made it, the user it names (`PureCloud-User-Id`, or a grant's
//! subject), the key pair it concerns and, for browser decrypt, the recording. The entry is written before the answer leaves; if it cannot be, the
//! answer is a 500 instead (no unrecorded decrypts).

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tapeseal_keys::lkm::wire::{BASE_PATH, BROWSER_DECRYPT_PATH, HEALTH_PATH, USER_ID_HEADER};
use tapeseal_store::time::now_ms;

use crate::http::Shared;
use crate::reply::ApiError;
use crate::store::LogRecord;

/// The longest text kept in one field of an entry.
const MAX_FIELD: usize = 256;

#[derive(Debug, Default)]
struct Fields {
    credential_id: Option<String>,
    user_id: Option<String>,
    keypair_id: Option<String>,
    recording_id: Option<String>,
    nonce: Option<String>,
    grant: Option<(String, i64)>,
}

/// What handlers learn about a request that the log records.
#[derive(Debug, Clone, Default)]
pub(crate) struct Noted(Arc<Mutex<Fields>>);

impl Noted {
    fn fields(&self) -> std::sync::MutexGuard<'_, Fields> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The Hawk credential that authenticated the request.
    pub(crate) fn credential(&self, id: &str) {
        self.fields().credential_id = Some(clip(id));
    }

    /// The user the request is for, from a verified grant.
    pub(crate) fn user(&self, id: &str) {
        self.fields().user_id = Some(clip(id));
    }

    /// The key pair the request concerns.
    pub(crate) fn keypair(&self, id: &str) {
        self.fields().keypair_id = Some(clip(id));
    }

    /// The recording a browser decrypt is for, from a verified grant.
    pub(crate) fn recording(&self, id: &str) {
        self.fields().recording_id = Some(clip(id));
    }

    /// The accepted Hawk nonce (at most 256 bytes, as the header parser allows).
    pub(crate) fn nonce(&self, nonce: &str) {
        self.fields().nonce = Some(nonce.to_string());
    }

    /// The accepted grant's id (signed, so kept whole) and expiry, Unix ms.
    pub(crate) fn grant(&self, id: &str, expires_at_ms: i64) {
        self.fields().grant = Some((id.to_string(), expires_at_ms));
    }
}

/// At most [`MAX_FIELD`] bytes of `text`, cut at a character boundary.
fn clip(text: &str) -> String {
    let mut end = text.len().min(MAX_FIELD);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

fn is_logged(method: &Method, path: &str) -> bool {
    path.starts_with(BASE_PATH) && path != HEALTH_PATH && method != Method::OPTIONS
}

/// Middleware: records the request once its answer is known.
pub(crate) async fn record(
    State(state): State<Shared>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    if !is_logged(&method, &path) {
        return next.run(request).await;
    }
    let noted = Noted::default();
    request.extensions_mut().insert(noted.clone());
    // A browser decrypt's user is its grant's subject, never a header anyone can send.
    let header_user = request
        .headers()
        .get(USER_ID_HEADER)
        .filter(|_| path != BROWSER_DECRYPT_PATH)
        .map(|v| clip(&String::from_utf8_lossy(v.as_bytes())));
    let response = next.run(request).await;
    let fields = std::mem::take(&mut *noted.fields());
    let user_id = fields.user_id.or(header_user);
    let status = response.status().as_u16();
    tracing::info!(
        %method,
        path,
        status,
        credential_id = fields.credential_id.as_deref(),
        keypair_id = fields.keypair_id.as_deref(),
        user_id = user_id.as_deref(),
        recording_id = fields.recording_id.as_deref(),
        "request"
    );
    let record = LogRecord {
        time: now_ms(),
        method: method.to_string(),
        path: clip(&path),
        credential_id: fields.credential_id,
        user_id,
        keypair_id: fields.keypair_id,
        recording_id: fields.recording_id,
        status,
        nonce: fields.nonce,
        grant: fields.grant,
    };
    let keep = state.limits.request_log_max;
    let keyring = state.keyring.clone();
    let written =
        tokio::task::spawn_blocking(move || keyring.store().append_log(&record, keep)).await;
    match written {
        Ok(Ok(())) => response,
        Ok(Err(e)) => {
            ApiError::internal(&format!("cannot write the request log: {e}")).into_response()
        }
        Err(e) => {
            ApiError::internal(&format!("the request-log writer failed: {e}")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_clipped_at_character_boundaries() {
        let long = "é".repeat(200);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_FIELD && long.starts_with(&clipped));
        assert!(is_logged(&Method::POST, "/key-management/v1/decrypt"));
        assert!(!is_logged(&Method::OPTIONS, "/key-management/v1/decrypt"));
        assert!(!is_logged(&Method::GET, "/key-management/v1/health"));
        assert!(!is_logged(&Method::GET, "/elsewhere"));
    }
}
