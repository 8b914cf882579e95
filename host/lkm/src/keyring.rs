//! The LKM's keys: RSA key pairs (generated here or imported from another LKM) and
//! Hawk credentials, each secret sealed under the master key with its own domain
//! and id, and the one decrypt path, which marks a key pair used before answering.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tapeseal_keys::lkm::wire::{AuthResponse, DecryptType, Keypair};
use tapeseal_keys::{KekPair, KeyError, MasterKey};
use tapeseal_store::time::now_ms;
use zeroize::Zeroizing;

use crate::data::DataDir;
use crate::error::{LkmError, Result};
use crate::ids::{check_credential_id, check_keypair_id, new_secret, new_uuid};
use crate::store::{CredentialInfo, KeypairRow, Store};

/// The sealing domain of private keys (part of each sealed key's associated data:
/// never changes).
const PRIVATE_KEY_DOMAIN: &str = "tapeseal lkm private key v1";
/// The sealing domain of Hawk `authKey`s.
const CREDENTIAL_DOMAIN: &str = "tapeseal lkm credential v1";
/// The sealing scope: one LKM holds one organisation's keys.
const SCOPE: &str = "lkm";
/// Modulus size of generated key pairs.
const GENERATED_BITS: usize = 3072;
/// Unsealed key pairs kept in memory, so a decrypt does not reparse its key.
const CACHE_MAX: usize = 256;

/// What a Hawk id currently is.
pub enum Credential {
    /// No such id.
    Unknown,
    /// Revoked: authenticates nothing.
    Revoked,
    /// Active, with its `authKey` (the Hawk key is its UTF-8 bytes).
    Active(Zeroizing<String>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unknown => "Unknown",
            Self::Revoked => "Revoked",
            Self::Active(_) => "Active([redacted])",
        })
    }
}

type Cache = HashMap<String, (Vec<u8>, Arc<KekPair>)>;

/// Key pairs and credentials over a store, sealing under a master key. Its methods
/// block (SQLite, RSA).
pub struct Keyring {
    store: Store,
    master: MasterKey,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring over `store`, sealing under `master`.
    pub fn new(store: Store, master: MasterKey) -> Self {
        Self {
            store,
            master,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Opens the data directory's store and master key (creating both if `create`).
    pub fn open(data: &DataDir, create: bool) -> Result<Self> {
        let store = data.open_store(create)?;
        let master = data.master_key(&store)?;
        Ok(Self::new(store, master))
    }

    /// The store under it (request log, listings).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Issues Hawk credentials for `id`: a new random `authKey`, sealed at rest.
    pub fn issue_credential(&self, id: &str) -> Result<AuthResponse> {
        check_credential_id(id)?;
        let key = new_secret()?;
        let sealed = self
            .master
            .seal_secret(CREDENTIAL_DOMAIN, SCOPE, id, key.as_bytes())?;
        self.store.insert_credential(id, &sealed, now_ms())?;
        Ok(AuthResponse {
            id: id.to_string(),
            auth_key: key.to_string(),
            algorithm: "sha256".into(),
        })
    }

    /// Revokes a credential.
    pub fn revoke_credential(&self, id: &str) -> Result<()> {
        self.store.revoke_credential(id, now_ms())
    }

    /// Every credential, without keys.
    pub fn credentials(&self) -> Result<Vec<CredentialInfo>> {
        self.store.credentials()
    }

    /// The state of Hawk id `id`, with its key when active.
    pub fn credential(&self, id: &str) -> Result<Credential> {
        let Some(row) = self.store.credential(id)? else {
            return Ok(Credential::Unknown);
        };
        if row.revoked_at.is_some() {
            return Ok(Credential::Revoked);
        }
        let key = self
            .master
            .open_secret(CREDENTIAL_DOMAIN, SCOPE, id, &row.sealed_auth_key)?;
        let key = String::from_utf8(key.to_vec())
            .map_err(|_| LkmError::Invalid(format!("credential '{id}' is not text")))?;
        Ok(Credential::Active(Zeroizing::new(key)))
    }

    /// Generates a new RSA-3072 key pair with a UUID id.
    pub fn generate_keypair(&self) -> Result<Keypair> {
        let pair = KekPair::generate(GENERATED_BITS)?;
        self.add(new_uuid()?, &pair)
    }

    /// Imports a private key (PKCS#8 or PKCS#1, PEM or DER; RSA 3072 or 4096 bits)
    /// under `id` (a new UUID when `None`), as when moving keys from another LKM.
    pub fn import_keypair(&self, key: &[u8], id: Option<&str>) -> Result<Keypair> {
        let id = match id {
            Some(id) => {
                check_keypair_id(id)?;
                id.to_string()
            }
            None => new_uuid()?,
        };
        if self.store.keypair(&id)?.is_some() {
            return Err(LkmError::Exists(format!("key pair '{id}'")));
        }
        let pair = KekPair::from_pem_or_der(key)?;
        self.add(id, &pair)
    }

    fn add(&self, id: String, pair: &KekPair) -> Result<Keypair> {
        let pem = pair.private_pkcs8_pem()?;
        let row = KeypairRow {
            sealed_private: self.master.seal_secret(
                PRIVATE_KEY_DOMAIN,
                SCOPE,
                &id,
                pem.as_bytes(),
            )?,
            public_pkcs1: pair.public_pkcs1_der()?,
            created_at: now_ms(),
            first_used_at: None,
            id,
        };
        self.store.insert_keypair(&row)?;
        Ok(row.to_wire())
    }

    /// Every key pair, oldest first.
    pub fn keypairs(&self) -> Result<Vec<Keypair>> {
        Ok(self
            .store
            .keypairs()?
            .iter()
            .map(KeypairRow::to_wire)
            .collect())
    }

    /// One key pair.
    pub fn keypair(&self, id: &str) -> Result<Keypair> {
        self.store
            .keypair(id)?
            .map(|row| row.to_wire())
            .ok_or_else(|| LkmError::NotFound(format!("key pair '{id}'")))
    }

    /// Deletes a key pair that has never decrypted anything.
    pub fn delete_keypair(&self, id: &str) -> Result<()> {
        self.store.delete_keypair(id)?;
        self.cache().remove(id);
        Ok(())
    }

    /// Decrypts `wrapped` with key pair `id`. The first success is recorded durably
    /// before the plaintext is returned, so a key pair that ever answered is never
    /// deleted. A failure is [`KeyError::Unwrap`]; its precise cause (which holds no
    /// secret) goes to the log only.
    pub fn decrypt(
        &self,
        id: &str,
        wrapped: &[u8],
        padding: DecryptType,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let row = self
            .store
            .keypair(id)?
            .ok_or_else(|| LkmError::NotFound(format!("key pair '{id}'")))?;
        let pair = self.unsealed(&row)?;
        let modulus_len = pair.bits() / 8;
        let plain = pair.decrypt(wrapped, padding.wrap_algorithm()).inspect_err(|_| {
            let cause = if wrapped.len() == modulus_len {
                "OAEP decoding failed: another key pair, another padding or hash, or altered bytes"
            } else {
                "the ciphertext is not as long as the modulus"
            };
            tracing::info!(
                keypair_id = id,
                ?padding,
                ciphertext_len = wrapped.len(),
                modulus_len,
                cause,
                "decrypt failed"
            );
        })?;
        if row.first_used_at.is_none() && !self.store.mark_used(id, now_ms())? {
            return Err(LkmError::NotFound(format!("key pair '{id}'")));
        }
        Ok(plain)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The row's private key, from the cache when the row's public key matches.
    fn unsealed(&self, row: &KeypairRow) -> Result<Arc<KekPair>> {
        if let Some((public, pair)) = self.cache().get(&row.id)
            && *public == row.public_pkcs1
        {
            return Ok(pair.clone());
        }
        let pem =
            self.master
                .open_secret(PRIVATE_KEY_DOMAIN, SCOPE, &row.id, &row.sealed_private)?;
        let pair = Arc::new(KekPair::from_pem_or_der(&pem)?);
        if pair.public_pkcs1_der()? != row.public_pkcs1 {
            return Err(LkmError::Key(KeyError::Unreadable(format!(
                "key pair '{}': the sealed private key does not match its public key",
                row.id
            ))));
        }
        let mut cache = self.cache();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(row.id.clone(), (row.public_pkcs1.clone(), pair.clone()));
        Ok(pair)
    }
}
