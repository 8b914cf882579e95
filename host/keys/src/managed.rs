//! Managed key mode: the host generates each organisation's RSA KEK pairs (aws-lc-rs)
//! and keeps the private keys only sealed under a master key, AES-256-GCM with the
//! organisation and KEK ids as associated data. Unwrapping happens here, in the host.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tapeseal_core::{Dek, KekPublicKey, WrapAlgorithm};
use zeroize::Zeroizing;

use tapeseal_store::catalogue::{AuditEvent, Catalogue, CatalogueError, KekHolder, KekRecord};
use tapeseal_store::durable::write_private_file;
use tapeseal_store::ids;
use tapeseal_store::time::now_ms;

use crate::cache::{CachePolicy, KekCache, KeyCache, forget_keks, kek_key};
use crate::kek::{KekPair, KeyError};
use crate::service::CurrentKek;

/// Why a managed-key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ManagedKeyError {
    /// The catalogue failed.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    /// Key material failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The master key could not be read or created.
    #[error("master key: {0}")]
    MasterKey(String),
    /// A sealed private key did not open under the master key (wrong master key, or
    /// the catalogue row was altered).
    #[error("a managed private key could not be unsealed with this master key")]
    Unseal,
    /// No such KEK in the organisation.
    #[error("no KEK '{0}' in this organisation")]
    NoSuchKek(String),
    /// The KEK's private key is not held here.
    #[error("KEK '{0}' is not a managed key")]
    NotManaged(String),
    /// A KEK that recordings or unfinished jobs still reference cannot be deleted.
    #[error(
        "KEK '{kek_id}' is still used by {recordings} recording(s) and {jobs} unfinished job(s); rewrap the recordings onto the current KEK (and let the jobs finish) first"
    )]
    InUse {
        /// The KEK.
        kek_id: String,
        /// How many recordings reference it.
        recordings: u64,
        /// How many queued or running jobs name it.
        jobs: u64,
    },
}

type Result<T, E = ManagedKeyError> = std::result::Result<T, E>;

/// The 256-bit key that seals managed private keys.
pub struct MasterKey(LessSafeKey);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// From 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| ManagedKeyError::MasterKey("a master key is exactly 32 bytes".into()))?;
        Ok(Self(LessSafeKey::new(key)))
    }

    /// From base64 (for an environment variable or a config file).
    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes = Zeroizing::new(
            B64.decode(text.trim())
                .map_err(|_| ManagedKeyError::MasterKey("the master key is not base64".into()))?,
        );
        Self::from_bytes(&bytes)
    }

    /// Reads the key file, or creates it (32 random bytes, mode 0600, fsynced with
    /// its directory) if it does not exist yet and `may_create` says nothing is
    /// sealed under a master key yet. A missing file when sealed keys exist is an
    /// error, never a new master key: that would orphan every managed KEK.
    pub fn load_or_create(path: &Path, may_create: bool) -> Result<Self> {
        let fail = |what: &str, e: std::io::Error| {
            ManagedKeyError::MasterKey(format!("cannot {what} {}: {e}", path.display()))
        };
        match fs::read(path) {
            Ok(bytes) => return Self::from_bytes(&Zeroizing::new(bytes)),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail("read", e)),
            Err(_) if !may_create => {
                return Err(ManagedKeyError::MasterKey(format!(
                    "the master key file {} is missing, but the catalogue holds keys sealed \
                     under a master key; restore the file (or set master_key.env) rather \
                     than start with a new key that cannot open them",
                    path.display()
                )));
            }
            Err(_) => {}
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(bytes.as_mut())
            .map_err(|_| ManagedKeyError::MasterKey("no secure random source".into()))?;
        write_private_file(path, bytes.as_ref()).map_err(|e| fail("create", e))?;
        Self::from_bytes(bytes.as_ref())
    }

    fn aad(domain: &str, scope: &str, id: &str) -> Vec<u8> {
        [
            domain.as_bytes(),
            b"\0",
            scope.as_bytes(),
            b"\0",
            id.as_bytes(),
        ]
        .concat()
    }

    pub(crate) fn seal(&self, org_id: &str, kek_id: &str, secret: &[u8]) -> Result<Vec<u8>> {
        self.seal_secret(MANAGED_KEK, org_id, kek_id, secret)
    }

    pub(crate) fn open(
        &self,
        org_id: &str,
        kek_id: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.open_secret(MANAGED_KEK, org_id, kek_id, sealed)
    }

    /// Seals a secret (AES-256-GCM, random nonce) bound to `domain` (what kind of
    /// secret), `scope` and `id` (whose): it opens only under the same three.
    pub fn seal_secret(
        &self,
        domain: &str,
        scope: &str,
        id: &str,
        secret: &[u8],
    ) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| ManagedKeyError::MasterKey("no secure random source".into()))?;
        let mut buf = secret.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(domain, scope, id)),
                &mut buf,
            )
            .map_err(|_| ManagedKeyError::Unseal)?;
        Ok([nonce.as_slice(), &buf].concat())
    }

    /// Opens what [`MasterKey::seal_secret`] sealed with the same `domain`, `scope`
    /// and `id`, into memory wiped on drop.
    pub fn open_secret(
        &self,
        domain: &str,
        scope: &str,
        id: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN {
            return Err(ManagedKeyError::Unseal);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| ManagedKeyError::Unseal)?;
        let mut buf = Zeroizing::new(body.to_vec());
        let plain_len = self
            .0
            .open_in_place(nonce, Aad::from(Self::aad(domain, scope, id)), &mut buf)
            .map_err(|_| ManagedKeyError::Unseal)?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

/// The sealing domain of managed private KEKs (its bytes are part of every sealed
/// key's associated data, so it never changes).
const MANAGED_KEK: &str = "tapeseal managed kek v1";

/// The managed key service over a catalogue. Its methods block (SQLite, RSA); the
/// [`KeyService`](crate::KeyService) implementation runs them off the async workers.
#[derive(Debug, Clone)]
pub struct ManagedKeys {
    catalogue: Arc<Catalogue>,
    master: Arc<MasterKey>,
    /// Parsed private KEKs, so that a bulk export or a run of playbacks does not
    /// parse the same RSA key for every DEK.
    cache: Arc<KekCache>,
}

impl ManagedKeys {
    /// The service for `catalogue`, sealing under `master`, keeping parsed private
    /// KEKs for the default [`CachePolicy`] (300 s, 1024 keys).
    pub fn new(catalogue: Arc<Catalogue>, master: Arc<MasterKey>) -> Self {
        Self {
            catalogue,
            master,
            cache: KeyCache::new(CachePolicy::default()),
        }
    }

    /// Generates a new KEK and makes it current ("change key now"). Older KEKs stay
    /// and keep unwrapping their recordings. Requests that rotate from the same
    /// current KEK at the same time, on this instance or others, make one new KEK
    /// between them, and each gets that one.
    pub fn rotate(&self, org_id: &str, actor: &str) -> Result<CurrentKek> {
        let base = self.catalogue.current_kek(org_id, KekHolder::Managed)?;
        Ok(self
            .rotate_from(org_id, base.map(|k| k.id).as_deref(), None, actor)?
            .1)
    }

    /// Makes a new KEK current in place of `base` (`None`: the organisation has
    /// none yet), unless another rotation replaced `base` first; then the KEK that
    /// rotation made is current, and is returned with `false`.
    fn rotate_from(
        &self,
        org_id: &str,
        base: Option<&str>,
        scheduled_at: Option<i64>,
        actor: &str,
    ) -> Result<(bool, CurrentKek)> {
        let record = self.new_record(org_id)?;
        tapeseal_store::crash_point!("rotation.before_insert");
        let event = AuditEvent::KekCreate {
            kek_id: &record.id,
            detail: MANAGED_DETAIL,
        };
        let made =
            self.catalogue
                .insert_kek_replacing(&record, base, scheduled_at, actor, &event)?;
        tapeseal_store::crash_point!("rotation.after_insert");
        if made {
            return Ok((true, current_of(record)?));
        }
        let current = self
            .catalogue
            .current_kek(org_id, KekHolder::Managed)?
            .ok_or_else(|| ManagedKeyError::NoSuchKek("the current KEK".into()))?;
        Ok((false, current_of(current)?))
    }

    /// A new KEK pair with its private key sealed under the master key, not yet
    /// recorded.
    pub(crate) fn new_record(&self, org_id: &str) -> Result<KekRecord> {
        let pair = KekPair::generate(3072)?;
        let id = ids::new_id("kek").map_err(|e| ManagedKeyError::MasterKey(e.to_string()))?;
        let pkcs8 = private_der(&pair)?;
        Ok(KekRecord {
            org_id: org_id.to_string(),
            public_spki: pair.public_spki_der()?,
            sealed_private: Some(self.master.seal(org_id, &id, &pkcs8)?),
            id,
            state: "active".into(),
            created_at: now_ms(),
            wrap_algorithm: WrapAlgorithm::RsaOaepSha256.name().into(),
            kms_key_arn: None,
        })
    }

    /// The current KEK, created on first use.
    pub fn current(&self, org_id: &str, actor: &str) -> Result<CurrentKek> {
        match self.catalogue.current_kek(org_id, KekHolder::Managed)? {
            Some(record) => Ok(current_of(record)?),
            None => self.rotate(org_id, actor),
        }
    }

    /// Rotates if the organisation's schedule says its current KEK is due at `now_ms`
    /// (a server calls this at start, so a rotation missed while it was down happens
    /// then, and periodically). Returns the new KEK when it rotated.
    ///
    /// However many instances find the same KEK due at once, one new KEK results:
    /// the others' rotations find it replaced and record nothing.
    pub fn rotate_if_due(&self, org_id: &str, now_ms: i64) -> Result<Option<CurrentKek>> {
        let Some(due) = rotation_due(&self.catalogue, org_id, KekHolder::Managed, now_ms)? else {
            return Ok(None);
        };
        let (made, kek) = self.rotate_from(org_id, Some(&due), Some(now_ms), "scheduler")?;
        Ok(made.then_some(kek))
    }

    /// Unwraps a DEK with one of the organisation's KEKs.
    pub fn unwrap(
        &self,
        org_id: &str,
        kek_id: &str,
        wrapped: &[u8],
        algorithm: WrapAlgorithm,
    ) -> Result<Dek> {
        // The catalogue is asked every time: a deleted KEK unwraps nothing more.
        let record = self
            .catalogue
            .kek(org_id, kek_id)?
            .ok_or_else(|| ManagedKeyError::NoSuchKek(kek_id.to_string()))?;
        let sealed = record
            .sealed_private
            .filter(|_| record.kms_key_arn.is_none())
            .ok_or_else(|| ManagedKeyError::NotManaged(kek_id.to_string()))?;
        let pair = match self.cache.get(&kek_key(org_id, kek_id)) {
            Some(pair) => pair,
            None => {
                let der = self.master.open(org_id, kek_id, &sealed)?;
                let pair = Arc::new(KekPair::from_pem_or_der(&der)?);
                self.cache.insert(kek_key(org_id, kek_id), pair.clone());
                pair
            }
        };
        Ok(pair.unwrap(wrapped, algorithm)?)
    }

    /// Deletes a KEK, refusing while any stored recording or unfinished job
    /// references it (checked in the same transaction as the delete).
    pub fn delete(&self, org_id: &str, kek_id: &str, actor: &str) -> Result<()> {
        match self.catalogue.delete_kek(org_id, kek_id, actor) {
            Ok(Ok(())) => {
                forget_keks(&self.cache, org_id, Some(kek_id));
                Ok(())
            }
            Ok(Err(users)) => Err(ManagedKeyError::InUse {
                kek_id: kek_id.to_string(),
                recordings: users.recordings,
                jobs: users.jobs,
            }),
            Err(CatalogueError::NoSuchKek) => Err(ManagedKeyError::NoSuchKek(kek_id.to_string())),
            Err(e) => Err(e.into()),
        }
    }
}

/// The audit detail of a new managed KEK.
pub(crate) const MANAGED_DETAIL: &str = "managed RSA-3072";

/// Whether the organisation's schedule says its current KEK of `holder` is due
/// for rotation at `now_ms`.
/// The id of the organisation's current KEK of `holder` if its schedule says it is
/// due for rotation at `now_ms`.
pub(crate) fn rotation_due(
    catalogue: &Catalogue,
    org_id: &str,
    holder: KekHolder,
    now_ms: i64,
) -> Result<Option<String>, CatalogueError> {
    let (period, _) = catalogue.schedule(org_id)?;
    Ok(catalogue
        .current_kek(org_id, holder)?
        .filter(|current| period.is_due(current.created_at, now_ms))
        .map(|current| current.id))
}

/// A catalogue KEK as the KEK new recordings are sealed for.
pub(crate) fn current_of(record: KekRecord) -> Result<CurrentKek, KeyError> {
    Ok(CurrentKek {
        public_key: KekPublicKey::from_der(&record.public_spki)
            .map_err(|e| KeyError::Unreadable(e.to_string()))?,
        algorithm: WrapAlgorithm::from_name(&record.wrap_algorithm).ok_or_else(|| {
            KeyError::Unreadable(format!(
                "unknown wrap algorithm '{}'",
                record.wrap_algorithm
            ))
        })?,
        id: record.id,
    })
}

pub(crate) fn private_der(pair: &KekPair) -> Result<Zeroizing<Vec<u8>>> {
    let pem = pair.private_pkcs8_pem()?;
    let (_, der) = pkcs8::der::pem::decode_vec(pem.as_bytes())
        .map_err(|_| ManagedKeyError::Key(KeyError::Crypto))?;
    Ok(Zeroizing::new(der))
}
