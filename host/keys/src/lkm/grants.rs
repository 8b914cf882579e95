//! Playback grants for an LKM organisation: the grant key is made when the LKM is
//! configured, registered with the LKM over the Hawk channel (so the LKM trusts it
//! exactly as far as it trusts this server's Hawk credentials), and then signs one
//! short-lived grant per playback. See [`crate::grant`] for the token.

use std::time::Duration;

use tapeseal_core::WrapAlgorithm;
use tapeseal_store::catalogue::{GrantSettings, LkmSettings};

use super::wire::{BROWSER_DECRYPT_PATH, DECRYPT_PATH, DecryptType};
use super::{LkmKeys, Settings, failed};
use crate::grant::{self, Claims, GrantSigner};
use crate::managed::MasterKey;
use crate::service::KeyServiceError;

/// The sealing domain of grant keys under the master key.
const GRANT_KEY: &str = "tapeseal lkm grant key v1";

/// What a grant is for.
#[derive(Debug, Clone)]
pub struct GrantRequest<'a> {
    /// The recording.
    pub recording_id: &'a str,
    /// The LKM key pair (the stanza's KEK id).
    pub keypair_id: &'a str,
    /// The wrapped DEK in that stanza.
    pub wrapped_dek: &'a [u8],
    /// Its padding.
    pub algorithm: WrapAlgorithm,
    /// Who will hear it (logged by the LKM).
    pub user: &'a str,
    /// How long the grant lives.
    pub ttl: Duration,
}

/// A signed grant and where to present it.
#[derive(Debug, Clone)]
pub struct IssuedGrant {
    /// The token.
    pub token: String,
    /// The LKM's browser-decrypt URL.
    pub url: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// The browser URL for `settings`: given, or the decrypt URL with `browser-decrypt`
/// for its last segment (the same LKM, as the browser reaches it).
fn browser_url(settings: &Settings) -> Result<String, KeyServiceError> {
    let text = match &settings.browser_url {
        Some(url) => url.clone(),
        None => {
            let mut url = reqwest::Url::parse(&settings.decrypt_url)
                .map_err(|e| failed(format!("the LKM decrypt URL is not a URL: {e}")))?;
            let path = url.path().to_string();
            let derived = match path.strip_suffix("/decrypt") {
                Some(base) if path.ends_with(DECRYPT_PATH) => format!("{base}/browser-decrypt"),
                _ => BROWSER_DECRYPT_PATH.to_string(),
            };
            url.set_path(&derived);
            url.set_query(None);
            url.to_string()
        }
    };
    let url = reqwest::Url::parse(&text)
        .map_err(|e| failed(format!("the LKM browser URL is not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(failed(
            "the LKM browser URL must be an http(s) URL with a host",
        ));
    }
    Ok(url.to_string())
}

/// Grant settings for a newly configured LKM: a fresh key, sealed, not registered.
pub(super) fn new_settings(
    master: &MasterKey,
    org_id: &str,
    settings: &Settings,
) -> Result<GrantSettings, KeyServiceError> {
    let browser_url = browser_url(settings)?;
    let (signer, pkcs8) =
        GrantSigner::generate().map_err(|e| KeyServiceError::Internal(e.to_string()))?;
    let key_id = signer.key_id();
    let sealed = master
        .seal_secret(GRANT_KEY, org_id, &key_id, &pkcs8)
        .map_err(|e| KeyServiceError::Internal(e.to_string()))?;
    Ok(GrantSettings {
        browser_url: Some(browser_url),
        sealed_key: Some(sealed),
        key_id: Some(key_id),
        registered_at: None,
        error: None,
    })
}

impl LkmKeys {
    fn signer(&self, org_id: &str, grants: &GrantSettings) -> Result<GrantSigner, KeyServiceError> {
        let (Some(sealed), Some(key_id)) = (&grants.sealed_key, &grants.key_id) else {
            return Err(KeyServiceError::Conflict(
                "this organisation's LKM settings predate browser grants: set them again (PUT /v1/lkm)"
                    .into(),
            ));
        };
        let pkcs8 = self
            .master
            .open_secret(GRANT_KEY, org_id, key_id, sealed)
            .map_err(|e| KeyServiceError::Internal(e.to_string()))?;
        GrantSigner::from_pkcs8(&pkcs8).map_err(|e| KeyServiceError::Internal(e.to_string()))
    }

    /// Registers the organisation's grant key with its LKM. `Ok(true)` once the LKM
    /// accepted it; `Ok(false)` when the LKM does not offer browser decrypt (grants
    /// stay off, recordings play through the server). Either outcome is recorded.
    pub async fn register_grant_key(
        &self,
        org_id: &str,
        actor: &str,
    ) -> Result<bool, KeyServiceError> {
        let record = self.settings(org_id)?.ok_or_else(|| {
            KeyServiceError::Conflict(
                "this organisation has no Local Key Manager configured".into(),
            )
        })?;
        let signer = self.signer(org_id, &record.grants)?;
        let key_id = signer.key_id();
        let outcome = self
            .client(org_id)?
            .register_grant_issuer(signer.public_key())
            .await;
        let record_outcome = |result: Result<(), &str>| {
            self.catalogue
                .set_lkm_grants_registered(org_id, &key_id, result, actor)
                .map_err(|e| KeyServiceError::Internal(e.to_string()))
        };
        match outcome {
            Ok(Some(_)) => record_outcome(Ok(())).map(|()| true),
            Ok(None) => {
                record_outcome(Err("the LKM does not offer browser decrypt (404)")).map(|()| false)
            }
            Err(e) => {
                record_outcome(Err(&e.to_string()))?;
                Err(e)
            }
        }
    }

    /// A signed grant for `request` under the organisation's LKM settings `record`
    /// (from [`settings`](Self::settings)), or `None` when its LKM has not accepted a
    /// grant key (the recording then plays through the server).
    pub fn issue_grant(
        &self,
        record: &LkmSettings,
        request: &GrantRequest<'_>,
    ) -> Result<Option<IssuedGrant>, KeyServiceError> {
        let org_id = record.org_id.as_str();
        let (Some(url), Some(_)) = (&record.grants.browser_url, record.grants.registered_at) else {
            return Ok(None);
        };
        let ttl = request.ttl.as_secs();
        if ttl == 0 || ttl > grant::MAX_TTL_SECS {
            return Err(KeyServiceError::Internal(format!(
                "a grant lives 1 to {} s",
                grant::MAX_TTL_SECS
            )));
        }
        let signer = self.signer(org_id, &record.grants)?;
        let now = u64::try_from(tapeseal_store::time::now_ms() / 1000).unwrap_or(0);
        let claims = Claims {
            iss: record.hawk_id.clone(),
            org: org_id.to_string(),
            rec: request.recording_id.to_string(),
            kp: request.keypair_id.to_string(),
            wdk: grant::wrapped_dek_hash(request.wrapped_dek),
            dty: DecryptType::of(request.algorithm).field(),
            sub: request.user.to_string(),
            iat: now,
            exp: now + ttl,
            jti: grant::new_grant_id().map_err(|e| KeyServiceError::Internal(e.to_string()))?,
        };
        let token = signer
            .sign(&claims)
            .map_err(|e| KeyServiceError::Internal(e.to_string()))?;
        Ok(Some(IssuedGrant {
            token,
            url: url.clone(),
            expires_at: claims.exp,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn settings(decrypt_url: &str, browser_url: Option<&str>) -> Settings {
        Settings {
            decrypt_url: decrypt_url.into(),
            hawk_id: "tapeseal-test".into(),
            hawk_key: Zeroizing::new("key".into()),
            ca_pem: None,
            fingerprint: None,
            timeout: Duration::from_secs(1),
            browser_url: browser_url.map(String::from),
        }
    }

    #[test]
    fn the_browser_url_defaults_to_the_decrypt_urls_sibling() {
        let cases = [
            (
                "https://lkm.example:8760/key-management/v1/decrypt",
                None,
                "https://lkm.example:8760/key-management/v1/browser-decrypt",
            ),
            (
                "https://lkm.example/prefix/key-management/v1/decrypt?x=1",
                None,
                "https://lkm.example/prefix/key-management/v1/browser-decrypt",
            ),
            (
                "https://lkm.example/kms/unwrap",
                None,
                "https://lkm.example/key-management/v1/browser-decrypt",
            ),
            (
                "https://10.0.0.5:8760/key-management/v1/decrypt",
                Some("https://lkm.example.com/key-management/v1/browser-decrypt"),
                "https://lkm.example.com/key-management/v1/browser-decrypt",
            ),
        ];
        for (decrypt, browser, expected) in cases {
            assert_eq!(
                browser_url(&settings(decrypt, browser)).expect("url"),
                expected
            );
        }
        for bad in ["not a url", "ftp://lkm/x", "data:text/plain,x"] {
            assert!(
                browser_url(&settings("https://lkm/x", Some(bad))).is_err(),
                "{bad}"
            );
        }
    }
}
