//! Pointing an organisation at a KMS key: the key proven usable first, and a KMS key
//! change moving every private KEK to the new key in one catalogue transaction.

use zeroize::Zeroizing;

use tapeseal_store::catalogue::{
    AuditEvent, CatalogueError, KekHolder, KekRecord, KmsRekey, KmsSettings,
};

use super::client::Connection;
use super::{
    Configured, KmsKeys, KmsRequest, MAX_KEY_ID_LEN, SECRET_KEY, arn_region, failed, internal,
    invalid, kek_detail, open,
};
use crate::cache::forget_keks;
use crate::managed::private_der;
use crate::service::KeyServiceError;

impl KmsKeys {
    /// Points the organisation at a KMS key, after proving the key can be used
    /// (an `Encrypt` and `Decrypt` of a random probe under the organisation's
    /// context), and puts it in KMS mode. With KEKs under another KMS key already,
    /// this is a KMS key change: each private KEK is decrypted under the old key,
    /// checked against its public key, encrypted under the new one and that checked
    /// by a decrypt; the catalogue then switches all of them in one transaction. If
    /// any step fails, nothing changes. Without a KEK under KMS, one is created.
    pub async fn configure(
        &self,
        org_id: &str,
        request: &KmsRequest,
        actor: &str,
    ) -> Result<Configured, KeyServiceError> {
        let key_id = request.key_id.trim();
        if key_id.is_empty()
            || key_id.len() > MAX_KEY_ID_LEN
            || key_id.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(invalid(
                "key_id is a KMS key id, key ARN, alias name (alias/…) or alias ARN",
            ));
        }
        let region = arn_region(key_id)
            .map(str::to_string)
            .or_else(|| request.region.clone().filter(|r| !r.trim().is_empty()))
            .or_else(|| self.config.region.clone())
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .ok_or_else(|| {
                invalid("name the key's region: give a key ARN, or region, or set [kms] region")
            })?;
        if let (Some(from_arn), Some(given)) = (arn_region(key_id), &request.region)
            && from_arn != given.trim()
        {
            return Err(invalid(format!(
                "the key ARN is in region {from_arn}, not {given}"
            )));
        }
        let access_key = match &request.access_key {
            Some((id, secret)) if !id.trim().is_empty() && !secret.is_empty() => {
                Some((id.trim(), secret.as_str()))
            }
            Some(_) => {
                return Err(invalid(
                    "give both access_key_id and secret_access_key, or neither",
                ));
            }
            None => None,
        };
        let new = self.connect(org_id, &region, access_key).await;
        let key_arn = probe(&new, key_id).await?;

        let previous = self.settings(org_id)?;
        let keks = self.catalogue.kms_keks(org_id).map_err(internal)?;
        let mut rekeyed = Vec::new();
        let moving: Vec<&KekRecord> = keks
            .iter()
            .filter(|k| k.kms_key_arn.as_deref() != Some(key_arn.as_str()))
            .collect();
        if !moving.is_empty() {
            let (old, _) = self.connection(org_id).await?;
            for kek in moving {
                rekeyed.push(rekey(&old, &new, kek, &key_arn).await?);
            }
        }
        let created = match self
            .catalogue
            .current_kek(org_id, KekHolder::Kms)
            .map_err(internal)?
        {
            Some(_) => None,
            None => Some(self.new_record(&new, &key_arn).await?),
        };
        let sealed_secret_key = match access_key {
            Some((id, secret)) => Some(
                self.master
                    .seal_secret(SECRET_KEY, org_id, id, secret.as_bytes())
                    .map_err(internal)?,
            ),
            None => None,
        };
        let mut settings = KmsSettings {
            org_id: org_id.to_string(),
            key_id: key_id.to_string(),
            key_arn: key_arn.clone(),
            region,
            access_key_id: access_key.map(|(id, _)| id.to_string()),
            sealed_secret_key,
            updated_at: 0,
        };
        let from_arn = previous
            .as_ref()
            .map_or("", |p| p.key_arn.as_str())
            .to_string();
        let detail = kek_detail(&key_arn);
        let mut events = vec![if rekeyed.is_empty() {
            AuditEvent::KmsConfigure { key_arn: &key_arn }
        } else {
            AuditEvent::KmsKeyChange {
                from_arn: &from_arn,
                to_arn: &key_arn,
                keks: rekeyed.len(),
            }
        }];
        if let Some(kek) = &created {
            events.push(AuditEvent::KekCreate {
                kek_id: &kek.id,
                detail: &detail,
            });
        }
        settings.updated_at = self
            .catalogue
            .set_kms_settings(&settings, &rekeyed, created.as_ref(), actor, &events)
            .map_err(|e| match e {
                CatalogueError::Invalid(why) => KeyServiceError::Conflict(why.to_string()),
                other => internal(other),
            })?;
        forget_keks(&self.cache, org_id, None);
        if !rekeyed.is_empty() {
            tracing::info!(
                org_id,
                from = %from_arn,
                to = %key_arn,
                keks = rekeyed.len(),
                "KMS key change: private KEKs re-encrypted"
            );
        }
        Ok(Configured {
            settings,
            rekeyed: rekeyed.len(),
            created_kek: created.map(|k| k.id),
        })
    }
}

/// Proves the key can encrypt and decrypt under the organisation's context and
/// returns its ARN.
async fn probe(connection: &Connection, key_id: &str) -> Result<String, KeyServiceError> {
    let mut sample = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(sample.as_mut()).map_err(|_| internal("no secure random source"))?;
    let (blob, arn) = connection.encrypt(key_id, "probe", sample.as_ref()).await?;
    let back = connection.decrypt(&arn, "probe", &blob).await?;
    if back.as_slice() != sample.as_ref() {
        return Err(failed(format!(
            "AWS KMS key {arn} decrypted a probe for organisation {} to something else",
            connection.org_id
        )));
    }
    Ok(arn)
}

/// Moves one private KEK from its KMS key (through `old`) to `to_arn` (through
/// `new`), checking each step.
async fn rekey(
    old: &Connection,
    new: &Connection,
    record: &KekRecord,
    to_arn: &str,
) -> Result<KmsRekey, KeyServiceError> {
    let pair = open(old, record).await?;
    let der = private_der(&pair).map_err(internal)?;
    let (blob, arn) = new.encrypt(to_arn, &record.id, &der).await?;
    let back = new.decrypt(&arn, &record.id, &blob).await?;
    if back.as_slice() != der.as_slice() {
        return Err(failed(format!(
            "AWS KMS key {arn} decrypted KEK '{}' to something else",
            record.id
        )));
    }
    Ok(KmsRekey {
        kek_id: record.id.clone(),
        from_arn: record.kms_key_arn.clone().unwrap_or_default(),
        ciphertext: blob,
    })
}
