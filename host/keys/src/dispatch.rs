//! One key service for the server: each organisation's key mode picks managed keys,
//! its Local Key Manager or its AWS KMS key for new KEKs. KEKs an organisation had
//! before it changed mode keep unwrapping their recordings through whoever holds
//! their private key (the catalogue row says: sealed under the master key, under a
//! KMS key, or in the LKM).

use std::sync::Arc;

use async_trait::async_trait;
use tapeseal_core::Dek;
use tapeseal_store::catalogue::{AuditEvent, Catalogue, CatalogueError, KekHolder};

use crate::kms::{KmsConfig, KmsKeys};
use crate::lkm::LkmKeys;
use crate::managed::{MANAGED_DETAIL, ManagedKeys, MasterKey, current_of};
use crate::service::{CurrentKek, KeyService, KeyServiceError, StanzaRef, UnwrapContext, blocking};

/// Managed keys, LKMs and AWS KMS behind one [`KeyService`].
#[derive(Debug, Clone)]
pub struct KeyServices {
    catalogue: Arc<Catalogue>,
    managed: ManagedKeys,
    lkm: LkmKeys,
    kms: KmsKeys,
    master: Arc<MasterKey>,
}

fn internal(e: CatalogueError) -> KeyServiceError {
    match e {
        CatalogueError::NoSuchOrg(org) => {
            KeyServiceError::Internal(format!("no organisation '{org}'"))
        }
        CatalogueError::Invalid(why) => KeyServiceError::Conflict(why.to_string()),
        other => KeyServiceError::Internal(other.to_string()),
    }
}

impl KeyServices {
    /// The services over `catalogue`, sealing under `master`, with the default
    /// KMS settings.
    pub fn new(catalogue: Arc<Catalogue>, master: Arc<MasterKey>) -> Self {
        Self::with_kms(catalogue, master, KmsConfig::default())
    }

    /// The services with these KMS settings.
    pub fn with_kms(catalogue: Arc<Catalogue>, master: Arc<MasterKey>, kms: KmsConfig) -> Self {
        Self {
            managed: ManagedKeys::new(catalogue.clone(), master.clone()),
            lkm: LkmKeys::new(catalogue.clone(), master.clone()),
            kms: KmsKeys::new(catalogue.clone(), master.clone(), kms),
            catalogue,
            master,
        }
    }

    /// The master key, for the server's other sealed secrets (an export
    /// destination's access key).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The LKM service (settings and key-pair registration).
    pub fn lkm(&self) -> &LkmKeys {
        &self.lkm
    }

    /// The AWS KMS service (settings and the KMS key change).
    pub fn kms(&self) -> &KmsKeys {
        &self.kms
    }

    fn mode(&self, org_id: &str) -> Result<KekHolder, KeyServiceError> {
        let org = self.catalogue.find_org(org_id).map_err(internal)?;
        KekHolder::of_mode(&org.key_mode).ok_or_else(|| {
            KeyServiceError::Internal(format!("unknown key mode '{}'", org.key_mode))
        })
    }

    /// Switches the organisation's key mode: new recordings use KEKs of that
    /// holder from now on (a new managed KEK; the newest registered LKM key pair;
    /// the newest KEK under the KMS key, created if there is none). KEKs of other
    /// holders keep unwrapping their recordings. LKM and KMS modes need their
    /// settings first.
    pub async fn set_mode(
        &self,
        org_id: &str,
        holder: KekHolder,
        actor: &str,
    ) -> Result<Option<CurrentKek>, KeyServiceError> {
        let new_kek = match holder {
            KekHolder::Managed => {
                let (managed, org) = (self.managed.clone(), org_id.to_string());
                Some(blocking(move || managed.new_record(&org)).await?)
            }
            KekHolder::Lkm => None,
            KekHolder::Kms => match self
                .catalogue
                .current_kek(org_id, KekHolder::Kms)
                .map_err(internal)?
            {
                Some(_) => None,
                None => Some(self.kms.new_kek(org_id).await?),
            },
        };
        let detail = match (&new_kek, holder) {
            (Some(kek), KekHolder::Kms) => {
                crate::kms::kek_detail(kek.kms_key_arn.as_deref().unwrap_or_default())
            }
            _ => MANAGED_DETAIL.to_string(),
        };
        let events: Vec<AuditEvent<'_>> = new_kek
            .iter()
            .map(|kek| AuditEvent::KekCreate {
                kek_id: &kek.id,
                detail: &detail,
            })
            .collect();
        self.catalogue
            .set_key_mode(org_id, holder, new_kek.as_ref(), actor, &events)
            .map_err(internal)?;
        match self
            .catalogue
            .current_kek(org_id, holder)
            .map_err(internal)?
        {
            Some(record) => Ok(Some(
                current_of(record).map_err(|e| KeyServiceError::Internal(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl KeyService for KeyServices {
    fn mode(&self) -> &'static str {
        "per-organisation"
    }

    async fn current(&self, org_id: &str, actor: &str) -> Result<CurrentKek, KeyServiceError> {
        match self.mode(org_id)? {
            KekHolder::Managed => self.managed.current_async(org_id, actor).await,
            KekHolder::Lkm => self.lkm.current(org_id),
            KekHolder::Kms => self.kms.current(org_id, actor).await,
        }
    }

    async fn rotate(&self, org_id: &str, actor: &str) -> Result<CurrentKek, KeyServiceError> {
        match self.mode(org_id)? {
            KekHolder::Managed => KeyService::rotate(&self.managed, org_id, actor).await,
            KekHolder::Lkm => Err(KeyServiceError::Conflict(
                "this organisation's KEKs are in its Local Key Manager: create a key pair there \
                 and register it (POST /v1/lkm/keypairs)"
                    .into(),
            )),
            KekHolder::Kms => self.kms.rotate(org_id, actor).await,
        }
    }

    async fn rotate_if_due(
        &self,
        org_id: &str,
        now_ms: i64,
    ) -> Result<Option<CurrentKek>, KeyServiceError> {
        match self.mode(org_id)? {
            KekHolder::Managed => KeyService::rotate_if_due(&self.managed, org_id, now_ms).await,
            // An LKM organisation rotates in its LKM.
            KekHolder::Lkm => Ok(None),
            KekHolder::Kms => self.kms.rotate_if_due(org_id, now_ms).await,
        }
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
        match record.holder() {
            KekHolder::Managed => KeyService::unwrap(&self.managed, context, stanza).await,
            KekHolder::Lkm => self.lkm.unwrap(context, stanza).await,
            KekHolder::Kms => self.kms.unwrap(context, &record, stanza).await,
        }
    }

    async fn delete(&self, org_id: &str, kek_id: &str, actor: &str) -> Result<(), KeyServiceError> {
        // The catalogue's guard is the same whoever holds the private key; an LKM
        // keeps its key pair (deleting it there is the LKM's business).
        KeyService::delete(&self.managed, org_id, kek_id, actor).await?;
        self.kms.forget(org_id, kek_id);
        Ok(())
    }
}
