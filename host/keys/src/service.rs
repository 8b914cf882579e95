//! The `KeyService` seam: where an organisation's private KEKs live and how a DEK is
//! unwrapped. Managed keys are the first implementation; a Local Key Manager and AWS
//! KMS are remote, slow and can fail, so the seam is async, every call has a
//! deadline, and failures are typed (unavailable, refused, unknown key, timeout).
//! [`unwrap_dek`] is the one loop over an envelope's key stanzas.

use std::time::Duration;

use async_trait::async_trait;
use tapeseal_core::{Dek, KekPublicKey, WrapAlgorithm};

use crate::kek::KeyError;
use crate::managed::ManagedKeyError;

/// The KEK that new recordings of an organisation are sealed for.
#[derive(Debug, Clone)]
pub struct CurrentKek {
    /// Its id.
    pub id: String,
    /// Its public key.
    pub public_key: KekPublicKey,
    /// The OAEP padding its DEKs are wrapped with.
    pub algorithm: WrapAlgorithm,
}

/// Why a DEK is being unwrapped; key services may log or authorise by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Playing back or reading a recording's content.
    Playback,
    /// Moving a recording onto another KEK.
    Rewrap,
    /// Exporting recordings in bulk.
    Export,
}

impl Purpose {
    /// `playback`, `rewrap`, `export`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Playback => "playback",
            Self::Rewrap => "rewrap",
            Self::Export => "export",
        }
    }
}

/// Who asks for a DEK, for what, and about which recording.
#[derive(Debug, Clone, Copy)]
pub struct UnwrapContext<'a> {
    /// The organisation whose KEK wraps the DEK.
    pub org_id: &'a str,
    /// The asking token, job or user (as the audit log names it).
    pub actor: &'a str,
    /// Why.
    pub purpose: Purpose,
    /// The recording.
    pub recording_id: &'a str,
}

/// One key stanza of an envelope header.
#[derive(Debug, Clone, Copy)]
pub struct StanzaRef<'a> {
    /// The KEK it names.
    pub kek_id: &'a str,
    /// How the DEK is wrapped.
    pub algorithm: WrapAlgorithm,
    /// The wrapped DEK.
    pub wrapped: &'a [u8],
}

/// Why a key service could not do what was asked. Messages name keys and
/// organisations, never key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyServiceError {
    /// The key service could not be reached or answered with a server error.
    #[error("the key service is unavailable: {0}")]
    Unavailable(String),
    /// The key service refused (the key is disabled, access was denied, or the
    /// wrapped DEK did not unwrap).
    #[error("the key service refused: {0}")]
    Refused(String),
    /// No such KEK in the organisation.
    #[error("no KEK '{0}' in this organisation")]
    UnknownKey(String),
    /// None of an envelope's stanzas names a KEK of the organisation.
    #[error("none of the envelope's KEKs belongs to this organisation")]
    NoUsableStanza,
    /// The key service answered, but not usefully: it rejected our credentials, does
    /// not know the key, or sent a malformed answer; or its settings are unusable.
    #[error("the key service failed: {0}")]
    Failed(String),
    /// The organisation's key mode does not allow this now (an LKM organisation
    /// rotates in its LKM; it has no registered key pair yet).
    #[error("{0}")]
    Conflict(String),
    /// The key service did not answer in time.
    #[error("the key service did not answer within {0:?}")]
    Timeout(Duration),
    /// The settings given are malformed (nothing was asked of any key service).
    #[error("{0}")]
    Invalid(String),
    /// A KEK still in use cannot be deleted.
    #[error("{0}")]
    InUse(String),
    /// Anything else (catalogue, master key, key material).
    #[error("{0}")]
    Internal(String),
}

impl KeyServiceError {
    /// Whether the key service, not the recording, is at fault: it could not be
    /// reached, was too slow, failed or is not set up. Such a failure says nothing
    /// about the recording and is reported as itself, never as a failed decrypt.
    pub fn is_service_fault(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Timeout(_) | Self::Failed(_) | Self::Conflict(_)
        )
    }
}

impl From<ManagedKeyError> for KeyServiceError {
    fn from(e: ManagedKeyError) -> Self {
        match e {
            ManagedKeyError::NoSuchKek(id) => Self::UnknownKey(id),
            ManagedKeyError::InUse { .. } => Self::InUse(e.to_string()),
            ManagedKeyError::Key(KeyError::Unwrap) => Self::Refused(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Where an organisation's private KEKs live.
#[async_trait]
pub trait KeyService: Send + Sync + std::fmt::Debug {
    /// How it holds keys: `managed`, `lkm`, `aws-kms`.
    fn mode(&self) -> &'static str;

    /// The KEK new recordings of `org_id` are sealed for, created on first use.
    async fn current(&self, org_id: &str, actor: &str) -> Result<CurrentKek, KeyServiceError>;

    /// Creates a new KEK and makes it current ("change key now").
    async fn rotate(&self, org_id: &str, actor: &str) -> Result<CurrentKek, KeyServiceError>;

    /// Rotates when the organisation's schedule says its KEK is due at `now_ms`.
    async fn rotate_if_due(
        &self,
        org_id: &str,
        now_ms: i64,
    ) -> Result<Option<CurrentKek>, KeyServiceError>;

    /// Unwraps one stanza's DEK.
    async fn unwrap(
        &self,
        context: &UnwrapContext<'_>,
        stanza: &StanzaRef<'_>,
    ) -> Result<Dek, KeyServiceError>;

    /// Deletes a KEK nothing uses any more.
    async fn delete(&self, org_id: &str, kek_id: &str, actor: &str) -> Result<(), KeyServiceError>;
}

/// Unwraps a recording's DEK with whichever of its stanzas the organisation's key
/// service can open, each try bounded by `deadline`. Returns the DEK and the KEK id
/// that unwrapped it. Stanzas for KEKs the organisation does not have are skipped;
/// when every stanza fails, the last real failure is returned.
pub async fn unwrap_dek(
    service: &dyn KeyService,
    context: &UnwrapContext<'_>,
    stanzas: &[StanzaRef<'_>],
    deadline: Duration,
) -> Result<(Dek, String), KeyServiceError> {
    let mut last = None;
    for stanza in stanzas {
        let attempt = tokio::time::timeout(deadline, service.unwrap(context, stanza)).await;
        match attempt {
            Ok(Ok(dek)) => return Ok((dek, stanza.kek_id.to_string())),
            Ok(Err(KeyServiceError::UnknownKey(_))) => {}
            Ok(Err(e)) => {
                tracing::warn!(
                    org_id = context.org_id,
                    recording_id = context.recording_id,
                    kek_id = stanza.kek_id,
                    purpose = context.purpose.name(),
                    error = %e,
                    "a key stanza did not unwrap"
                );
                last = Some(e);
            }
            Err(_) => last = Some(KeyServiceError::Timeout(deadline)),
        }
    }
    Err(last.unwrap_or(KeyServiceError::NoUsableStanza))
}

/// Runs blocking key work (SQLite, RSA) on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ManagedKeyError> + Send + 'static,
) -> Result<T, KeyServiceError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(KeyServiceError::from),
        Err(e) => Err(KeyServiceError::Internal(format!("key task failed: {e}"))),
    }
}

impl crate::managed::ManagedKeys {
    /// [`ManagedKeys::current`](crate::managed::ManagedKeys::current) off the async
    /// workers.
    pub async fn current_async(
        &self,
        org_id: &str,
        actor: &str,
    ) -> Result<CurrentKek, KeyServiceError> {
        let (this, org_id, actor) = (self.clone(), org_id.to_string(), actor.to_string());
        blocking(move || this.current(&org_id, &actor)).await
    }
}

#[async_trait]
impl KeyService for crate::managed::ManagedKeys {
    fn mode(&self) -> &'static str {
        "managed"
    }

    async fn current(&self, org_id: &str, actor: &str) -> Result<CurrentKek, KeyServiceError> {
        self.current_async(org_id, actor).await
    }

    async fn rotate(&self, org_id: &str, actor: &str) -> Result<CurrentKek, KeyServiceError> {
        let (this, org_id, actor) = (self.clone(), org_id.to_string(), actor.to_string());
        blocking(move || this.rotate(&org_id, &actor)).await
    }

    async fn rotate_if_due(
        &self,
        org_id: &str,
        now_ms: i64,
    ) -> Result<Option<CurrentKek>, KeyServiceError> {
        let (this, org_id) = (self.clone(), org_id.to_string());
        blocking(move || this.rotate_if_due(&org_id, now_ms)).await
    }

    async fn unwrap(
        &self,
        context: &UnwrapContext<'_>,
        stanza: &StanzaRef<'_>,
    ) -> Result<Dek, KeyServiceError> {
        let this = self.clone();
        let (org_id, kek_id) = (context.org_id.to_string(), stanza.kek_id.to_string());
        let (wrapped, algorithm) = (stanza.wrapped.to_vec(), stanza.algorithm);
        blocking(move || this.unwrap(&org_id, &kek_id, &wrapped, algorithm)).await
    }

    async fn delete(&self, org_id: &str, kek_id: &str, actor: &str) -> Result<(), KeyServiceError> {
        let this = self.clone();
        let (org_id, kek_id, actor) = (org_id.to_string(), kek_id.to_string(), actor.to_string());
        blocking(move || this.delete(&org_id, &kek_id, &actor)).await
    }
}
