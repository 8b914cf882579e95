//! One key service for the server: each organisation's key mode picks managed keys
//! or its Local Key Manager. KEKs an organisation had before it changed mode keep
//! unwrapping their recordings: a KEK whose private key is sealed here is managed,
//! any other is the LKM's.

use std::sync::Arc;

use async_trait::async_trait;
use tapeseal_core::Dek;
use tapeseal_store::catalogue::{Catalogue, CatalogueError};

use crate::lkm::LkmKeys;
use crate::managed::{ManagedKeys, MasterKey};
use crate::service::{CurrentKek, KeyService, KeyServiceError, StanzaRef, UnwrapContext};

/// Managed keys and LKMs behind one [`KeyService`].
#[derive(Debug, Clone)]
pub struct KeyServices {
    catalogue: Arc<Catalogue>,
    managed: ManagedKeys,
    lkm: LkmKeys,
}

fn internal(e: CatalogueError) -> KeyServiceError {
    match e {
        CatalogueError::NoSuchOrg(org) => {
            KeyServiceError::Internal(format!("no organisation '{org}'"))
        }
        other => KeyServiceError::Internal(other.to_string()),
    }
}

impl KeyServices {
    /// Both services over `catalogue`, sealing under `master`.
    pub fn new(catalogue: Arc<Catalogue>, master: Arc<MasterKey>) -> Self {
        Self {
            managed: ManagedKeys::new(catalogue.clone(), master.clone()),
            lkm: LkmKeys::new(catalogue.clone(), master),
            catalogue,
        }
    }

    /// The LKM service (settings and key-pair registration).
    pub fn lkm(&self) -> &LkmKeys {
        &self.lkm
    }

    fn is_lkm(&self, org_id: &str) -> Result<bool, KeyServiceError> {
        Ok(self.catalogue.find_org(org_id).map_err(internal)?.key_mode == "lkm")
    }
}

#[async_trait]
impl KeyService for KeyServices {
    fn mode(&self) -> &'static str {
        "per-organisation"
    }

    async fn current(&self, org_id: &str, actor: &str) -> Result<CurrentKek, KeyServiceError> {
        if self.is_lkm(org_id)? {
            self.lkm.current(org_id)
        } else {
            self.managed.current_async(org_id, actor).await
        }
    }

    async fn rotate(&self, org_id: &str, actor: &str) -> Result<CurrentKek, KeyServiceError> {
        if self.is_lkm(org_id)? {
            return Err(KeyServiceError::Conflict(
                "this organisation's KEKs are in its Local Key Manager: create a key pair there \
                 and register it (POST /v1/lkm/keypairs)"
                    .into(),
            ));
        }
        KeyService::rotate(&self.managed, org_id, actor).await
    }

    async fn rotate_if_due(
        &self,
        org_id: &str,
        now_ms: i64,
    ) -> Result<Option<CurrentKek>, KeyServiceError> {
        if self.is_lkm(org_id)? {
            // An LKM organisation rotates in its LKM.
            return Ok(None);
        }
        KeyService::rotate_if_due(&self.managed, org_id, now_ms).await
    }

    async fn unwrap(
        &self,
        context: &UnwrapContext<'_>,
        stanza: &StanzaRef<'_>,
    ) -> Result<Dek, KeyServiceError> {
        let record = self
            .catalogue
            .kek(context.org_id, stanza.kek_id)
            .map_err(internal)?
            .ok_or_else(|| KeyServiceError::UnknownKey(stanza.kek_id.to_string()))?;
        if record.sealed_private.is_some() {
            KeyService::unwrap(&self.managed, context, stanza).await
        } else {
            self.lkm.unwrap(context, stanza).await
        }
    }

    async fn delete(&self, org_id: &str, kek_id: &str, actor: &str) -> Result<(), KeyServiceError> {
        // The catalogue's guard is the same whoever holds the private key; an LKM
        // keeps its key pair (deleting it there is the LKM's business).
        KeyService::delete(&self.managed, org_id, kek_id, actor).await
    }
}
