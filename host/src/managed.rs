//! Managed key mode: the host generates each organisation's RSA KEK pairs (aws-lc-rs)
//! and keeps the private keys only sealed under a master key, AES-256-GCM with the
//! organisation and KEK ids as associated data. Unwrapping happens here, in the host.

use std::fs;
use std::io::Write;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tapeseal_core::{Dek, KekPublicKey, WrapAlgorithm};
use zeroize::Zeroizing;

use crate::catalogue::{Catalogue, CatalogueError, KekRecord, now_ms};
use crate::kek::{KekPair, KeyError};

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
    /// A KEK that recordings still reference cannot be deleted.
    #[error(
        "KEK '{kek_id}' is still used by {recordings} recording(s); rewrap them onto the current KEK first"
    )]
    InUse {
        /// The KEK.
        kek_id: String,
        /// How many recordings reference it.
        recordings: u64,
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

    /// Reads the key file, or creates it (32 random bytes, mode 0600) if it does not
    /// exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        let fail = |what: &str, e: std::io::Error| {
            ManagedKeyError::MasterKey(format!("cannot {what} {}: {e}", path.display()))
        };
        match fs::read(path) {
            Ok(bytes) => return Self::from_bytes(&Zeroizing::new(bytes)),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail("read", e)),
            Err(_) => {}
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(bytes.as_mut())
            .map_err(|_| ManagedKeyError::MasterKey("no secure random source".into()))?;
        write_private_file(path, bytes.as_ref()).map_err(|e| fail("create", e))?;
        Self::from_bytes(bytes.as_ref())
    }

    fn aad(org_id: &str, kek_id: &str) -> Vec<u8> {
        [
            b"tapeseal managed kek v1\0".as_slice(),
            org_id.as_bytes(),
            b"\0",
            kek_id.as_bytes(),
        ]
        .concat()
    }

    fn seal(&self, org_id: &str, kek_id: &str, secret: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| ManagedKeyError::MasterKey("no secure random source".into()))?;
        let mut buf = secret.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(org_id, kek_id)),
                &mut buf,
            )
            .map_err(|_| ManagedKeyError::Unseal)?;
        Ok([nonce.as_slice(), &buf].concat())
    }

    fn open(&self, org_id: &str, kek_id: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN {
            return Err(ManagedKeyError::Unseal);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| ManagedKeyError::Unseal)?;
        let mut buf = Zeroizing::new(body.to_vec());
        let plain_len = self
            .0
            .open_in_place(nonce, Aad::from(Self::aad(org_id, kek_id)), &mut buf)
            .map_err(|_| ManagedKeyError::Unseal)?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

/// The managed key service over a catalogue.
#[derive(Debug)]
pub struct ManagedKeys<'a> {
    catalogue: &'a Catalogue,
    master: &'a MasterKey,
}

/// The KEK that new recordings of an organisation are sealed for.
#[derive(Debug, Clone)]
pub struct CurrentKek {
    /// Its id.
    pub id: String,
    /// Its public key.
    pub public_key: KekPublicKey,
}

impl<'a> ManagedKeys<'a> {
    /// The service for `catalogue`, sealing under `master`.
    pub fn new(catalogue: &'a Catalogue, master: &'a MasterKey) -> Self {
        Self { catalogue, master }
    }

    /// Generates a new KEK and makes it current ("change key now"). Older KEKs stay
    /// and keep unwrapping their recordings.
    pub fn rotate(&self, org_id: &str, actor: &str) -> Result<CurrentKek> {
        let pair = KekPair::generate(3072)?;
        let id = format!("kek-{}", hex::encode(random_id()?));
        let pkcs8 = private_der(&pair)?;
        let record = KekRecord {
            id: id.clone(),
            org_id: org_id.to_string(),
            public_spki: pair.public_spki_der()?,
            sealed_private: Some(self.master.seal(org_id, &id, &pkcs8)?),
            state: "active".into(),
            created_at: now_ms(),
        };
        self.catalogue.insert_kek(&record)?;
        self.catalogue.audit(
            org_id,
            actor,
            "kek.create",
            None,
            Some(&id),
            "managed RSA-3072",
        )?;
        Ok(CurrentKek {
            id,
            public_key: pair.public_key()?,
        })
    }

    /// The current KEK, created on first use.
    pub fn current(&self, org_id: &str, actor: &str) -> Result<CurrentKek> {
        match self.catalogue.current_kek(org_id)? {
            Some(record) => Ok(CurrentKek {
                public_key: KekPublicKey::from_der(&record.public_spki)
                    .map_err(|e| KeyError::Unreadable(e.to_string()))?,
                id: record.id,
            }),
            None => self.rotate(org_id, actor),
        }
    }

    /// Rotates if the organisation's schedule says its current KEK is due at `now_ms`
    /// (a server calls this at start, so a rotation missed while it was down happens
    /// then, and periodically). Returns the new KEK when it rotated.
    pub fn rotate_if_due(&self, org_id: &str, now_ms: i64) -> Result<Option<CurrentKek>> {
        let (period, _) = self.catalogue.schedule(org_id)?;
        let due = match self.catalogue.current_kek(org_id)? {
            Some(current) => period.is_due(current.created_at, now_ms),
            None => false,
        };
        if !due {
            return Ok(None);
        }
        let kek = self.rotate(org_id, "scheduler")?;
        self.catalogue.mark_rotated(org_id, now_ms)?;
        Ok(Some(kek))
    }

    /// Unwraps a DEK with one of the organisation's KEKs.
    pub fn unwrap(
        &self,
        org_id: &str,
        kek_id: &str,
        wrapped: &[u8],
        algorithm: WrapAlgorithm,
    ) -> Result<Dek> {
        let record = self
            .catalogue
            .kek(org_id, kek_id)?
            .ok_or_else(|| ManagedKeyError::NoSuchKek(kek_id.to_string()))?;
        let sealed = record
            .sealed_private
            .ok_or_else(|| ManagedKeyError::NotManaged(kek_id.to_string()))?;
        let der = self.master.open(org_id, kek_id, &sealed)?;
        let pair = KekPair::from_pem_or_der(&der)?;
        Ok(pair.unwrap(wrapped, algorithm)?)
    }

    /// Deletes a KEK, refusing while any stored recording references it.
    pub fn delete(&self, org_id: &str, kek_id: &str, actor: &str) -> Result<()> {
        match self.catalogue.delete_kek(org_id, kek_id) {
            Ok(Ok(())) => {
                self.catalogue
                    .audit(org_id, actor, "kek.delete", None, Some(kek_id), "")?;
                Ok(())
            }
            Ok(Err(recordings)) => Err(ManagedKeyError::InUse {
                kek_id: kek_id.to_string(),
                recordings,
            }),
            Err(CatalogueError::Invalid(_)) => Err(ManagedKeyError::NoSuchKek(kek_id.to_string())),
            Err(e) => Err(e.into()),
        }
    }
}

/// Creates `path` (which must not exist yet) with mode 0600 and `bytes`, flushed to disk.
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The server's own key pair for storage-side encryption: what protects recordings
/// that are not sealed for an organisation's KEK (screen recordings) in a repository
/// without encryption of its own, like the local directory. It plays the part a
/// store's server-side encryption (S3 SSE-S3) plays: organisations do not hold it,
/// and rotation, rewrap and the deletion guard do not apply to it. Its private key
/// is kept only sealed under the master key.
pub struct StorageKey {
    id: String,
    pair: KekPair,
}

impl std::fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

const STORAGE_KEY_AAD: &str = "repository storage key";

impl StorageKey {
    /// Reads the sealed key file, or generates the pair and creates it (mode 0600).
    pub fn load_or_create(path: &Path, master: &MasterKey) -> Result<Self> {
        let fail = |what: &str, e: std::io::Error| {
            ManagedKeyError::MasterKey(format!("cannot {what} {}: {e}", path.display()))
        };
        let pair = match fs::read(path) {
            Ok(sealed) => {
                let der = master.open("", STORAGE_KEY_AAD, &sealed)?;
                KekPair::from_pem_or_der(&der)?
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail("read", e)),
            Err(_) => {
                let pair = KekPair::generate(3072)?;
                let sealed = master.seal("", STORAGE_KEY_AAD, &private_der(&pair)?)?;
                write_private_file(path, &sealed).map_err(|e| fail("create", e))?;
                pair
            }
        };
        Ok(Self {
            id: pair.fingerprint().replacen("kek-", "storage-", 1),
            pair,
        })
    }

    /// The id its stanzas carry.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its public key, DER SubjectPublicKeyInfo.
    pub fn public_spki(&self) -> Result<Vec<u8>> {
        Ok(self.pair.public_spki_der()?)
    }

    /// Unwraps a DEK from one of its stanzas.
    pub fn unwrap(&self, wrapped: &[u8], algorithm: WrapAlgorithm) -> Result<Dek> {
        Ok(self.pair.unwrap(wrapped, algorithm)?)
    }
}

fn private_der(pair: &KekPair) -> Result<Zeroizing<Vec<u8>>> {
    let pem = pair.private_pkcs8_pem()?;
    let (_, der) = pkcs8::der::pem::decode_vec(pem.as_bytes())
        .map_err(|_| ManagedKeyError::Key(KeyError::Crypto))?;
    Ok(Zeroizing::new(der))
}

fn random_id() -> Result<[u8; 8]> {
    let mut id = [0u8; 8];
    aws_lc_rs::rand::fill(&mut id)
        .map_err(|_| ManagedKeyError::MasterKey("no secure random source".into()))?;
    Ok(id)
}
