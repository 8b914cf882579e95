//! Browser playback: what a page needs to play one recording. For an organisation
//! whose LKM accepted this server's grant key, a short-lived, single-use grant that
//! the page presents to the LKM for the DEK (the server never holds that DEK); the
//! page then opens the sealed envelope's chunks itself. Otherwise the page plays the
//! server's decrypted content. Every grant is audited.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;
use tapeseal_keys::lkm::GrantRequest;
use tapeseal_store::catalogue::{AuditEvent, RecordingRecord, Role};

use super::auth::Auth;
use super::error::ApiResult;
use super::playback::pinned_header;
use super::recordings::lookup;
use super::{AppState, Shared};

/// How a page plays a recording.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlaybackView {
    /// Recording id.
    pub recording_id: String,
    /// `call`, `email`, `chat`, `message`, `transcript`, `other` or `screen`.
    pub media_kind: String,
    /// MIME type of the content.
    pub content_type: String,
    /// Plaintext bytes.
    pub size: u64,
    /// Stored bytes (the envelope).
    pub envelope_size: u64,
    /// `lkm`: open the envelope in the page with the DEK the LKM returns for
    /// `grant`; `server`: play `content_url`, which the server decrypts.
    pub mode: String,
    /// The sealed envelope (HTTP Range supported).
    pub envelope_url: String,
    /// The decrypted content (HTTP Range supported).
    pub content_url: String,
    /// The grant, in `lkm` mode.
    pub grant: Option<GrantView>,
}

/// A playback grant and what to send the LKM with it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GrantView {
    /// The signed grant (`tsg1.….…`); the LKM accepts it once, before `expires_at`.
    pub token: String,
    /// The LKM's browser-decrypt URL: `POST {grant, keypairId, body}`.
    pub lkm_url: String,
    /// The LKM key pair the DEK is wrapped for.
    pub keypair_id: String,
    /// The wrapped DEK (base64), as in the envelope's header.
    pub wrapped_dek: String,
    /// Unix milliseconds.
    pub expires_at: u64,
}

/// Prepare the playback of a recording in a browser: a grant for the organisation's
/// LKM when it takes grants, else the server's decrypted content.
#[utoipa::path(
    post,
    path = "/v1/recordings/{id}/playback",
    tag = "recordings",
    params(("id" = String, Path, description = "Recording id")),
    responses(
        (status = 200, description = "How to play it", body = PlaybackView),
        (status = 404, description = "No such recording in this organisation", body = super::error::ErrorBody),
        (status = 500, description = "The stored recording is damaged", body = super::error::ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn playback(
    State(state): State<Shared>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<PlaybackView>> {
    auth.require(&[Role::Player])?;
    let record = lookup(&state, &auth, &id)?;
    let grant = match record.kek_id {
        Some(_) => grant(&state, &auth, &record).await?,
        None => None,
    };
    let base = format!("/v1/recordings/{}", record.id);
    Ok(Json(PlaybackView {
        mode: if grant.is_some() { "lkm" } else { "server" }.into(),
        envelope_url: format!("{base}/envelope"),
        content_url: format!("{base}/content"),
        grant,
        recording_id: record.id,
        media_kind: record.media_kind,
        content_type: record.content_type,
        size: record.plaintext_len,
        envelope_size: record.stored_len,
    }))
}

/// A grant for the recording's LKM stanza, if the organisation's LKM takes grants.
async fn grant(
    state: &AppState,
    auth: &Auth,
    record: &RecordingRecord,
) -> ApiResult<Option<GrantView>> {
    let lkm = state.keys.lkm();
    let Some(settings) = lkm
        .settings(auth.org())?
        .filter(|s| s.grants.registered_at.is_some())
    else {
        return Ok(None);
    };
    let info = {
        let _permit = state.limits.admit(auth.org()).await?;
        pinned_header(state, record).await?.2
    };
    // The stanza of a KEK the LKM holds (no private key here).
    let mut stanza = None;
    for s in &info.header.stanzas {
        if state
            .catalogue
            .kek(auth.org(), &s.kek_id)?
            .is_some_and(|k| k.sealed_private.is_none())
        {
            stanza = Some(s);
            break;
        }
    }
    let Some(stanza) = stanza else {
        // Sealed for a managed KEK (before the switch to LKM mode): the server plays it.
        return Ok(None);
    };
    let request = GrantRequest {
        recording_id: &record.id,
        keypair_id: &stanza.kek_id,
        wrapped_dek: &stanza.wrapped_dek,
        algorithm: stanza.algorithm.into(),
        user: auth.actor(),
        ttl: Duration::from_secs(state.config.grants.ttl_secs),
    };
    let Some(issued) = lkm.issue_grant(&settings, &request)? else {
        return Ok(None);
    };
    state.catalogue.audit(
        auth.org(),
        auth.actor(),
        &AuditEvent::RecordingGrant {
            recording_id: &record.id,
            kek_id: &stanza.kek_id,
            expires_at: issued.expires_at,
        },
    )?;
    state.metrics.grants.inc();
    Ok(Some(GrantView {
        token: issued.token,
        lkm_url: issued.url,
        keypair_id: stanza.kek_id.clone(),
        wrapped_dek: B64.encode(&stanza.wrapped_dek),
        expires_at: issued.expires_at.saturating_mul(1000),
    }))
}
