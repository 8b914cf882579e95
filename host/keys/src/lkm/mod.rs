//! LKM key mode: an organisation's private KEKs live in its own Local Key Manager,
//! which decrypts DEKs on request (docs/LKM.md). The catalogue holds the LKM's
//! address and Hawk credentials (the key sealed under the master key) and the key
//! pairs registered by id and public key; a key pair is used for new recordings only
//! after the LKM has decrypted a sample DEK wrapped for it.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey,
};
use tapeseal_core::{Dek, KekPublicKey, WrapAlgorithm};
use zeroize::Zeroizing;

use tapeseal_store::catalogue::{AuditEvent, Catalogue, KekHolder, KekRecord, LkmSettings};
use tapeseal_store::time::now_ms;

use crate::managed::{MasterKey, current_of};
use crate::service::{CurrentKek, KeyServiceError, StanzaRef, UnwrapContext};

pub mod client;
mod grants;
pub mod wire;

pub use client::{Client, Endpoint, Trust};
pub use grants::{GrantRequest, IssuedGrant};
use wire::DecryptType;

/// The sealing domain of LKM Hawk keys under the master key.
const HAWK_KEY: &str = "tapeseal lkm hawk key v1";
/// The longest LKM request timeout an organisation may set.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// The timeout when none is set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// LKM settings as an administrator gives them.
#[derive(Clone)]
pub struct Settings {
    /// `https://host:port/key-management/v1/decrypt`.
    pub decrypt_url: String,
    /// The Hawk id the LKM issued.
    pub hawk_id: String,
    /// The Hawk key the LKM issued.
    pub hawk_key: Zeroizing<String>,
    /// A CA certificate (PEM) that issued the LKM's certificate.
    pub ca_pem: Option<String>,
    /// Or the SHA-256 fingerprint of the LKM's certificate, pinned.
    pub fingerprint: Option<String>,
    /// How long one request may take.
    pub timeout: Duration,
    /// The LKM's browser-decrypt URL as browsers reach it; by default the decrypt
    /// URL's with `browser-decrypt` for `decrypt`.
    pub browser_url: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("decrypt_url", &self.decrypt_url)
            .field("hawk_id", &self.hawk_id)
            .field("fingerprint", &self.fingerprint)
            .field("timeout", &self.timeout)
            .field("browser_url", &self.browser_url)
            .finish_non_exhaustive()
    }
}

fn failed(message: impl Into<String>) -> KeyServiceError {
    KeyServiceError::Failed(message.into())
}

impl Settings {
    fn endpoint(&self) -> Result<Endpoint, KeyServiceError> {
        let trust = match (&self.ca_pem, &self.fingerprint) {
            (Some(_), Some(_)) => {
                return Err(failed(
                    "give the LKM's CA certificate or its fingerprint, not both",
                ));
            }
            (Some(pem), None) => Trust::Ca(pem.clone()),
            (None, Some(f)) => Trust::fingerprint(f).ok_or_else(|| {
                failed(
                    "the fingerprint is the certificate's SHA-256 in hex (64 digits, ':' allowed)",
                )
            })?,
            (None, None) => Trust::System,
        };
        if self.hawk_id.len() < wire::MIN_CREDENTIAL_ID_LEN || self.hawk_key.is_empty() {
            return Err(failed(format!(
                "the Hawk id is at least {} characters and the key is not empty",
                wire::MIN_CREDENTIAL_ID_LEN
            )));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(failed(format!(
                "the LKM timeout is between 1 ms and {} s",
                MAX_TIMEOUT.as_secs()
            )));
        }
        Ok(Endpoint {
            decrypt_url: self.decrypt_url.clone(),
            hawk_id: self.hawk_id.clone(),
            hawk_key: self.hawk_key.clone(),
            trust,
            timeout: self.timeout,
        })
    }
}

/// The LKM key service over a catalogue.
#[derive(Debug, Clone)]
pub struct LkmKeys {
    catalogue: Arc<Catalogue>,
    master: Arc<MasterKey>,
    clients: Arc<client::Clients>,
}

impl LkmKeys {
    /// The service for `catalogue`; Hawk keys are sealed under `master`.
    pub fn new(catalogue: Arc<Catalogue>, master: Arc<MasterKey>) -> Self {
        Self {
            catalogue,
            master,
            clients: Arc::default(),
        }
    }

    /// Records the organisation's LKM (checked for form, not yet contacted) with a
    /// new grant key (not registered with the LKM yet: see
    /// [`register_grant_key`](Self::register_grant_key)) and puts the organisation
    /// in LKM mode.
    pub fn configure(
        &self,
        org_id: &str,
        settings: &Settings,
        actor: &str,
    ) -> Result<(), KeyServiceError> {
        let endpoint = settings.endpoint()?;
        Client::new(&endpoint)?;
        let grants = grants::new_settings(&self.master, org_id, settings)?;
        let sealed_hawk_key = self
            .master
            .seal_secret(
                HAWK_KEY,
                org_id,
                &settings.hawk_id,
                settings.hawk_key.as_bytes(),
            )
            .map_err(|e| KeyServiceError::Internal(e.to_string()))?;
        let record = LkmSettings {
            org_id: org_id.to_string(),
            decrypt_url: settings.decrypt_url.clone(),
            hawk_id: settings.hawk_id.clone(),
            sealed_hawk_key,
            ca_pem: settings.ca_pem.clone(),
            fingerprint: settings.fingerprint.clone(),
            timeout_ms: i64::try_from(settings.timeout.as_millis()).unwrap_or(i64::MAX),
            updated_at: 0,
            grants,
        };
        self.catalogue
            .set_lkm_settings(&record, actor)
            .map_err(|e| KeyServiceError::Internal(e.to_string()))?;
        Ok(())
    }

    /// The organisation's LKM settings, without the Hawk key.
    pub fn settings(&self, org_id: &str) -> Result<Option<LkmSettings>, KeyServiceError> {
        self.catalogue
            .lkm_settings(org_id)
            .map_err(|e| KeyServiceError::Internal(e.to_string()))
    }

    fn client(&self, org_id: &str) -> Result<Arc<Client>, KeyServiceError> {
        let record = self.settings(org_id)?.ok_or_else(|| {
            KeyServiceError::Conflict(
                "this organisation has no Local Key Manager configured".into(),
            )
        })?;
        self.clients.get(org_id, record.updated_at, || {
            let key = self
                .master
                .open_secret(HAWK_KEY, org_id, &record.hawk_id, &record.sealed_hawk_key)
                .map_err(|e| KeyServiceError::Internal(e.to_string()))?;
            let key = String::from_utf8(key.to_vec())
                .map_err(|_| KeyServiceError::Internal("the sealed Hawk key is not text".into()))?;
            let settings = Settings {
                decrypt_url: record.decrypt_url.clone(),
                hawk_id: record.hawk_id.clone(),
                hawk_key: Zeroizing::new(key),
                ca_pem: record.ca_pem.clone(),
                fingerprint: record.fingerprint.clone(),
                timeout: Duration::from_millis(u64::try_from(record.timeout_ms).unwrap_or(0)),
                browser_url: record.grants.browser_url.clone(),
            };
            Client::new(&settings.endpoint()?)
        })
    }

    /// The newest registered key pair.
    pub fn current(&self, org_id: &str) -> Result<CurrentKek, KeyServiceError> {
        let record = self
            .catalogue
            .current_kek(org_id, KekHolder::Lkm)
            .map_err(|e| KeyServiceError::Internal(e.to_string()))?
            .ok_or_else(|| {
                KeyServiceError::Conflict(
                    "no LKM key pair is registered for this organisation yet: create one in the \
                     LKM and register it (POST /v1/lkm/keypairs)"
                        .into(),
                )
            })?;
        current_of(record).map_err(|e| KeyServiceError::Internal(e.to_string()))
    }

    /// Registers the LKM's key pair `keypair_id` with its public key (DER PKCS#1 or
    /// SubjectPublicKeyInfo, or PEM) after the LKM decrypted a sample DEK wrapped for
    /// that key: with SHA-256 OAEP if it can, else SHA-1 (what older LKMs decrypt).
    /// The key pair becomes the one new recordings are sealed for.
    pub async fn register(
        &self,
        org_id: &str,
        keypair_id: &str,
        public_key: &[u8],
        actor: &str,
    ) -> Result<CurrentKek, KeyServiceError> {
        if keypair_id.is_empty()
            || keypair_id.len() > 200
            || keypair_id.chars().any(|c| c.is_control() || c == '/')
        {
            return Err(failed(
                "a key pair id is 1 to 200 characters, without '/' or control characters",
            ));
        }
        let public = KekPublicKey::from_pem_or_der(public_key)
            .map_err(|e| failed(format!("not a usable RSA public key: {e}")))?;
        let spki = public
            .to_spki_der()
            .map_err(|e| failed(format!("not a usable RSA public key: {e}")))?;
        let client = self.client(org_id)?;
        let algorithm = verify(&client, keypair_id, &spki, actor).await?;
        let record = KekRecord {
            id: keypair_id.to_string(),
            org_id: org_id.to_string(),
            public_spki: spki,
            sealed_private: None,
            state: "active".into(),
            created_at: now_ms(),
            wrap_algorithm: algorithm.name().into(),
            kms_key_arn: None,
        };
        let detail = format!(
            "LKM key pair, RSA-{}, verified with {}",
            public.bits(),
            algorithm.name()
        );
        self.catalogue
            .insert_kek(
                &record,
                actor,
                &AuditEvent::KekCreate {
                    kek_id: keypair_id,
                    detail: &detail,
                },
            )
            .map_err(|e| match e {
                tapeseal_store::catalogue::CatalogueError::Exists(what) => {
                    KeyServiceError::Conflict(format!("{what}: it is registered already"))
                }
                other => KeyServiceError::Internal(other.to_string()),
            })?;
        current_of(record).map_err(|e| KeyServiceError::Internal(e.to_string()))
    }

    /// Asks the LKM to unwrap one stanza, on behalf of the context's actor.
    pub async fn unwrap(
        &self,
        context: &UnwrapContext<'_>,
        stanza: &StanzaRef<'_>,
    ) -> Result<Dek, KeyServiceError> {
        let client = self.client(context.org_id)?;
        let plain = client
            .decrypt(
                stanza.kek_id,
                stanza.wrapped,
                DecryptType::of(stanza.algorithm),
                context.actor,
            )
            .await?;
        Dek::from_slice(&plain).map_err(|_| failed("the LKM's answer is not a 32-byte DEK"))
    }
}

/// Wraps a random sample DEK for `spki` and has the LKM decrypt it: SHA-256 OAEP
/// first, SHA-1 when the LKM cannot do SHA-256. Returns the padding that worked.
async fn verify(
    client: &Client,
    keypair_id: &str,
    spki: &[u8],
    actor: &str,
) -> Result<WrapAlgorithm, KeyServiceError> {
    let key = PublicEncryptingKey::from_der(spki)
        .map_err(|e| failed(format!("not a usable RSA public key: {e}")))
        .and_then(|k| {
            OaepPublicEncryptingKey::new(k).map_err(|_| failed("not a usable RSA-OAEP public key"))
        })?;
    let mut sample = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(sample.as_mut())
        .map_err(|_| KeyServiceError::Internal("no secure random source".into()))?;
    let mut refused = None;
    for algorithm in [WrapAlgorithm::RsaOaepSha256, WrapAlgorithm::RsaOaepSha1] {
        let oaep = match algorithm {
            WrapAlgorithm::RsaOaepSha1 => &OAEP_SHA1_MGF1SHA1,
            _ => &OAEP_SHA256_MGF1SHA256,
        };
        let mut wrapped = vec![0u8; key.ciphertext_size()];
        let wrapped = key
            .encrypt(oaep, sample.as_ref(), &mut wrapped, None)
            .map_err(|_| KeyServiceError::Internal("RSA-OAEP wrap failed".into()))?;
        match client
            .decrypt(keypair_id, wrapped, DecryptType::of(algorithm), actor)
            .await
        {
            Ok(plain) => {
                return if aws_lc_rs::constant_time::verify_slices_are_equal(&plain, sample.as_ref())
                    .is_ok()
                {
                    Ok(algorithm)
                } else {
                    Err(failed(format!(
                        "the LKM decrypted the sample DEK for key pair '{keypair_id}' to something else: \
                         its private key does not match the public key given"
                    )))
                };
            }
            Err(KeyServiceError::Refused(reason)) => refused = Some(reason),
            Err(other) => return Err(other),
        }
    }
    Err(KeyServiceError::Refused(format!(
        "the LKM could not decrypt a sample DEK wrapped for the public key given, so it is not \
         key pair '{keypair_id}''s: {}",
        refused.unwrap_or_default()
    )))
}
