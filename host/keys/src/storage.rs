//! The server's storage key (see [`StorageKey`]).

use std::fs;
use std::path::Path;

use tapeseal_core::{Dek, WrapAlgorithm};
use tapeseal_store::Catalogue;

use crate::kek::KekPair;
use crate::managed::{ManagedKeyError, MasterKey, private_der};

type Result<T, E = ManagedKeyError> = std::result::Result<T, E>;

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

/// Its name among the catalogue's server secrets.
const SECRET_NAME: &str = "storage-key";

impl StorageKey {
    /// The storage key every instance of a deployment shares, kept in the
    /// catalogue sealed under the master key. The first instance to start makes it
    /// (instances starting together agree on one); a key file that an earlier
    /// version kept at `legacy_file` is moved into the catalogue instead, so that
    /// what it protects stays readable. The file is left as it is.
    pub fn load_or_create(
        catalogue: &Catalogue,
        legacy_file: &Path,
        master: &MasterKey,
    ) -> Result<Self> {
        let sealed = match catalogue.server_secret(SECRET_NAME)? {
            Some(sealed) => sealed,
            None => {
                let candidate = match fs::read(legacy_file) {
                    Ok(sealed) => sealed,
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(ManagedKeyError::MasterKey(format!(
                            "cannot read {}: {e}",
                            legacy_file.display()
                        )));
                    }
                    Err(_) => {
                        let pair = KekPair::generate(3072)?;
                        master.seal("", STORAGE_KEY_AAD, &private_der(&pair)?)?
                    }
                };
                catalogue.insert_server_secret(SECRET_NAME, &candidate)?
            }
        };
        let der = master.open("", STORAGE_KEY_AAD, &sealed)?;
        let pair = KekPair::from_pem_or_der(&der)?;
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
