//! AWS KMS symmetric key mode: tapeseal generates an organisation's RSA KEK pairs
//! (as in managed mode) but keeps each private key only as AWS KMS ciphertext under
//! the organisation's KMS key, bound by the encryption context
//! `{tapeseal:org, tapeseal:kek}`. Unwrapping a DEK needs the private key: from a
//! bounded cache ([`CachePolicy`]) or by KMS `Decrypt`. A KMS key change moves every
//! private KEK of the organisation to the new KMS key in one catalogue
//! transaction, touching no recording. docs/KEY-MODES.md.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_kms::config::SharedCredentialsProvider;
use tapeseal_core::{Dek, WrapAlgorithm};
use zeroize::Zeroizing;

use tapeseal_store::catalogue::{AuditEvent, Catalogue, KekHolder, KekRecord, KmsSettings};
use tapeseal_store::ids;
use tapeseal_store::time::now_ms;

use crate::kek::{KekPair, KeyError};
use crate::managed::{MasterKey, current_of, private_der, rotation_due};
use crate::service::{CurrentKek, KeyServiceError, StanzaRef, UnwrapContext};

pub mod client;
mod configure;

pub use crate::cache::CachePolicy;
use crate::cache::{KekCache, KeyCache, forget_keks, kek_key};
use client::Connection;

/// The sealing domain of organisations' AWS secret access keys under the master key.
const SECRET_KEY: &str = "tapeseal kms secret access key v1";
/// The longest KMS request timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// The KMS request timeout when none is set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest key id, ARN or alias accepted.
const MAX_KEY_ID_LEN: usize = 2048;

/// The server's KMS settings (`[kms]` in the server's configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsConfig {
    /// Any KMS-compatible endpoint; AWS's regional endpoint when `None`.
    pub endpoint_url: Option<String>,
    /// The region of keys named without an ARN, when the organisation names none.
    pub region: Option<String>,
    /// How long one KMS call may take.
    pub timeout: Duration,
    /// The cache of decrypted private KEKs.
    pub cache: CachePolicy,
}

impl Default for KmsConfig {
    fn default() -> Self {
        Self {
            endpoint_url: None,
            region: None,
            timeout: DEFAULT_TIMEOUT,
            cache: CachePolicy::default(),
        }
    }
}

/// An organisation's KMS key as its administrator names it.
pub struct KmsRequest {
    /// A key id, key ARN, alias name (`alias/…`) or alias ARN.
    pub key_id: String,
    /// The key's region, when `key_id` is not an ARN.
    pub region: Option<String>,
    /// An AWS access key of the organisation's (id, secret), instead of the
    /// server's credentials.
    pub access_key: Option<(String, Zeroizing<String>)>,
}

impl std::fmt::Debug for KmsRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsRequest")
            .field("key_id", &self.key_id)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key.as_ref().map(|(id, _)| id))
            .finish_non_exhaustive()
    }
}

/// What [`KmsKeys::configure`] did.
#[derive(Debug)]
pub struct Configured {
    /// The settings now recorded.
    pub settings: KmsSettings,
    /// How many private KEKs moved from the previous KMS key.
    pub rekeyed: usize,
    /// The KEK created under the key (when the organisation had none under KMS).
    pub created_kek: Option<String>,
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct KmsStats {
    /// KMS `Decrypt` calls made for unwrapping.
    pub decrypts: AtomicU64,
    /// Unwraps served from the cache.
    pub cache_hits: AtomicU64,
}

/// The AWS KMS key service over a catalogue.
#[derive(Debug, Clone)]
pub struct KmsKeys {
    catalogue: Arc<Catalogue>,
    master: Arc<MasterKey>,
    config: Arc<KmsConfig>,
    connections: Arc<Mutex<HashMap<String, (i64, Connection)>>>,
    server_credentials: Arc<tokio::sync::OnceCell<SharedCredentialsProvider>>,
    cache: Arc<KekCache>,
    stats: Arc<KmsStats>,
}

fn failed(message: impl Into<String>) -> KeyServiceError {
    KeyServiceError::Failed(message.into())
}

fn invalid(message: impl Into<String>) -> KeyServiceError {
    KeyServiceError::Invalid(message.into())
}

fn internal(e: impl std::fmt::Display) -> KeyServiceError {
    KeyServiceError::Internal(e.to_string())
}

/// The region of an ARN (`arn:partition:kms:region:account:…`).
fn arn_region(key_id: &str) -> Option<&str> {
    let mut parts = key_id.split(':');
    (parts.next() == Some("arn"))
        .then(|| parts.nth(2))
        .flatten()
        .filter(|r| !r.is_empty())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KeyServiceError> + Send + 'static,
) -> Result<T, KeyServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| KeyServiceError::Internal(format!("key task failed: {e}")))?
}

impl KmsKeys {
    /// The service for `catalogue`; organisations' AWS secret keys are sealed under
    /// `master`.
    pub fn new(catalogue: Arc<Catalogue>, master: Arc<MasterKey>, config: KmsConfig) -> Self {
        Self {
            catalogue,
            master,
            cache: KeyCache::new(config.cache),
            config: Arc::new(config),
            connections: Arc::default(),
            server_credentials: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// The server's KMS settings.
    pub fn config(&self) -> &KmsConfig {
        &self.config
    }

    /// Decrypt calls and cache hits so far.
    pub fn stats(&self) -> &KmsStats {
        &self.stats
    }

    /// How many decrypted private KEKs the cache holds now.
    pub fn cached_keys(&self) -> usize {
        self.cache.len()
    }

    /// The organisation's KMS settings.
    pub fn settings(&self, org_id: &str) -> Result<Option<KmsSettings>, KeyServiceError> {
        self.catalogue.kms_settings(org_id).map_err(internal)
    }

    /// The server's own AWS credentials: the standard chain (environment, shared
    /// files, web identity, ECS, EC2 instance metadata), set up on first use.
    async fn server_credentials(&self, region: &str) -> SharedCredentialsProvider {
        let region = aws_sdk_kms::config::Region::new(region.to_string());
        self.server_credentials
            .get_or_init(|| async move {
                SharedCredentialsProvider::new(
                    aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                        .region(region)
                        .build()
                        .await,
                )
            })
            .await
            .clone()
    }

    async fn connect(
        &self,
        org_id: &str,
        region: &str,
        access_key: Option<(&str, &str)>,
    ) -> Connection {
        let credentials = match access_key {
            Some((id, secret)) => client::static_credentials(id, secret),
            None => self.server_credentials(region).await,
        };
        Connection {
            client: client::client(
                region,
                self.config.endpoint_url.as_deref(),
                credentials,
                self.config.timeout,
            ),
            org_id: org_id.to_string(),
            region: region.to_string(),
        }
    }

    /// The connection for the organisation's recorded settings.
    async fn connection(&self, org_id: &str) -> Result<(Connection, KmsSettings), KeyServiceError> {
        let settings = self.settings(org_id)?.ok_or_else(|| {
            KeyServiceError::Conflict(
                "this organisation has no AWS KMS key configured (PUT /v1/kms)".into(),
            )
        })?;
        if let Some((version, connection)) = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(org_id)
            && *version == settings.updated_at
        {
            return Ok((connection.clone(), settings));
        }
        let secret = match (&settings.access_key_id, &settings.sealed_secret_key) {
            (Some(id), Some(sealed)) => Some(
                self.master
                    .open_secret(SECRET_KEY, org_id, id, sealed)
                    .map_err(internal)?,
            ),
            _ => None,
        };
        let secret = match &secret {
            Some(bytes) => Some(
                std::str::from_utf8(bytes)
                    .map_err(|_| internal("the sealed AWS secret key is not text"))?,
            ),
            None => None,
        };
        let access_key = settings.access_key_id.as_deref().zip(secret);
        let connection = self.connect(org_id, &settings.region, access_key).await;
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                org_id.to_string(),
                (settings.updated_at, connection.clone()),
            );
        Ok((connection, settings))
    }

    /// A new KEK pair, its private key encrypted under `key_arn`, not yet recorded.
    async fn new_record(
        &self,
        connection: &Connection,
        key_arn: &str,
    ) -> Result<KekRecord, KeyServiceError> {
        let pair = blocking(|| KekPair::generate(3072).map_err(internal)).await?;
        let id = ids::new_id("kek").map_err(internal)?;
        let der = private_der(&pair).map_err(internal)?;
        if der.len() > client::MAX_PLAINTEXT {
            return Err(internal(
                "the private key is larger than KMS Encrypt takes (4096 bytes)",
            ));
        }
        let (blob, arn) = connection.encrypt(key_arn, &id, &der).await?;
        Ok(KekRecord {
            org_id: connection.org_id.clone(),
            public_spki: pair.public_spki_der().map_err(internal)?,
            sealed_private: Some(blob),
            id,
            state: "active".into(),
            created_at: now_ms(),
            wrap_algorithm: WrapAlgorithm::RsaOaepSha256.name().into(),
            kms_key_arn: Some(arn),
        })
    }

    /// A new KEK for an organisation in KMS mode, not yet recorded.
    pub(crate) async fn new_kek(&self, org_id: &str) -> Result<KekRecord, KeyServiceError> {
        let (connection, settings) = self.connection(org_id).await?;
        self.new_record(&connection, &settings.key_arn).await
    }

    /// Creates a new KEK under the organisation's KMS key and makes it current.
    /// Requests that rotate from the same current KEK at once, on any instance,
    /// make one new KEK between them, and each gets that one.
    pub async fn rotate(&self, org_id: &str, actor: &str) -> Result<CurrentKek, KeyServiceError> {
        let base = self
            .catalogue
            .current_kek(org_id, KekHolder::Kms)
            .map_err(internal)?;
        let (_, kek) = self
            .rotate_from(org_id, base.map(|k| k.id).as_deref(), None, actor)
            .await?;
        Ok(kek)
    }

    /// Makes a new KEK current in place of `base`, unless another rotation replaced
    /// `base` first; then that rotation's KEK is returned, with `false`.
    async fn rotate_from(
        &self,
        org_id: &str,
        base: Option<&str>,
        scheduled_at: Option<i64>,
        actor: &str,
    ) -> Result<(bool, CurrentKek), KeyServiceError> {
        let record = self.new_kek(org_id).await?;
        let arn = record.kms_key_arn.clone().unwrap_or_default();
        let event = AuditEvent::KekCreate {
            kek_id: &record.id,
            detail: &kek_detail(&arn),
        };
        let made = self
            .catalogue
            .insert_kek_replacing(&record, base, scheduled_at, actor, &event)
            .map_err(internal)?;
        if made {
            return Ok((true, current_of(record).map_err(internal)?));
        }
        let current = self
            .catalogue
            .current_kek(org_id, KekHolder::Kms)
            .map_err(internal)?
            .ok_or_else(|| KeyServiceError::Internal("the current KEK vanished".into()))?;
        Ok((false, current_of(current).map_err(internal)?))
    }

    /// The KEK new recordings are sealed for, created on first use.
    pub async fn current(&self, org_id: &str, actor: &str) -> Result<CurrentKek, KeyServiceError> {
        match self
            .catalogue
            .current_kek(org_id, KekHolder::Kms)
            .map_err(internal)?
        {
            Some(record) => current_of(record).map_err(internal),
            None => self.rotate(org_id, actor).await,
        }
    }

    /// Rotates when the organisation's schedule says its KEK is due.
    pub async fn rotate_if_due(
        &self,
        org_id: &str,
        now_ms: i64,
    ) -> Result<Option<CurrentKek>, KeyServiceError> {
        let Some(due) =
            rotation_due(&self.catalogue, org_id, KekHolder::Kms, now_ms).map_err(internal)?
        else {
            return Ok(None);
        };
        let (made, kek) = self
            .rotate_from(org_id, Some(&due), Some(now_ms), "scheduler")
            .await?;
        Ok(made.then_some(kek))
    }

    /// Unwraps one stanza's DEK with `record`'s private key: cached, or decrypted
    /// by KMS under the organisation's context and checked against its public key.
    pub async fn unwrap(
        &self,
        context: &UnwrapContext<'_>,
        record: &KekRecord,
        stanza: &StanzaRef<'_>,
    ) -> Result<Dek, KeyServiceError> {
        let pair = match self.cache.get(&kek_key(context.org_id, &record.id)) {
            Some(pair) => {
                self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                pair
            }
            None => {
                let (connection, _) = self.connection(context.org_id).await?;
                let pair = Arc::new(open(&connection, record).await?);
                self.stats.decrypts.fetch_add(1, Ordering::Relaxed);
                self.cache
                    .insert(kek_key(context.org_id, &record.id), pair.clone());
                pair
            }
        };
        let (wrapped, algorithm, kek_id) =
            (stanza.wrapped.to_vec(), stanza.algorithm, record.id.clone());
        blocking(move || {
            pair.unwrap(&wrapped, algorithm).map_err(|e| match e {
                KeyError::Unwrap => KeyServiceError::Refused(format!(
                    "the wrapped DEK does not unwrap with KEK '{kek_id}'"
                )),
                other => internal(other),
            })
        })
        .await
    }

    /// Forgets a deleted KEK's cached private key.
    pub(crate) fn forget(&self, org_id: &str, kek_id: &str) {
        forget_keks(&self.cache, org_id, Some(kek_id));
    }
}

/// The audit detail of a new KEK under a KMS key.
pub(crate) fn kek_detail(key_arn: &str) -> String {
    format!("RSA-3072, private key under AWS KMS key {key_arn}")
}

/// Decrypts a KEK's private key with KMS and checks it against its public key.
async fn open(connection: &Connection, record: &KekRecord) -> Result<KekPair, KeyServiceError> {
    let (Some(blob), Some(arn)) = (&record.sealed_private, &record.kms_key_arn) else {
        return Err(internal(format!(
            "KEK '{}' is not under an AWS KMS key",
            record.id
        )));
    };
    let der = connection.decrypt(arn, &record.id, blob).await?;
    let (expected, kek_id) = (record.public_spki.clone(), record.id.clone());
    blocking(move || {
        let pair = KekPair::from_pem_or_der(&der).map_err(|_| {
            failed(format!(
                "AWS KMS decrypted KEK '{kek_id}' to something that is not a private key"
            ))
        })?;
        if pair.public_spki_der().map_err(internal)? != expected {
            return Err(failed(format!(
                "the private key AWS KMS decrypted for KEK '{kek_id}' does not match its public \
                 key: the catalogue row was altered"
            )));
        }
        Ok(pair)
    })
    .await
}
