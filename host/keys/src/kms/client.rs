//! The two KMS operations this mode uses (`Encrypt`, `Decrypt`) over the official
//! SDK, each under the organisation's encryption context, and the one place KMS and
//! transport failures become [`KeyServiceError`]s that say which organisation,
//! which key, what KMS answered and what to fix (never key material).

use std::time::Duration;

use aws_sdk_kms::Client;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use zeroize::Zeroizing;

use crate::service::KeyServiceError;

/// The encryption-context key naming the organisation.
pub const CONTEXT_ORG: &str = "tapeseal:org";
/// The encryption-context key naming the KEK.
pub const CONTEXT_KEK: &str = "tapeseal:kek";
/// The largest plaintext KMS `Encrypt` takes.
pub const MAX_PLAINTEXT: usize = 4096;

/// How to reach KMS for one organisation.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) client: Client,
    pub(crate) org_id: String,
    pub(crate) region: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("org_id", &self.org_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Builds an SDK client for `region`, with `credentials`, at `endpoint_url` if given.
pub(crate) fn client(
    region: &str,
    endpoint_url: Option<&str>,
    credentials: SharedCredentialsProvider,
    timeout: Duration,
) -> Client {
    let mut config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(credentials)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeout)
                .operation_attempt_timeout(timeout)
                .operation_timeout(timeout)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(2));
    if let Some(url) = endpoint_url {
        config = config.endpoint_url(url);
    }
    Client::from_conf(config.build())
}

/// Static credentials (an organisation's own access key).
pub(crate) fn static_credentials(
    access_key_id: &str,
    secret_access_key: &str,
) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(
        access_key_id,
        secret_access_key,
        None,
        None,
        "tapeseal-organisation",
    ))
}

impl Connection {
    /// Encrypts `plaintext` under `key_id` for `kek_id`; returns the ciphertext
    /// blob and the ARN of the key KMS used.
    pub(crate) async fn encrypt(
        &self,
        key_id: &str,
        kek_id: &str,
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, String), KeyServiceError> {
        let answer = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(plaintext))
            .encryption_context(CONTEXT_ORG, &self.org_id)
            .encryption_context(CONTEXT_KEK, kek_id)
            .send()
            .await
            .map_err(|e| self.error("Encrypt", key_id, kek_id, &e))?;
        let blob = answer
            .ciphertext_blob()
            .map(|b| b.as_ref().to_vec())
            .ok_or_else(|| self.malformed("Encrypt", key_id, "no ciphertext"))?;
        let arn = answer
            .key_id()
            .filter(|arn| arn.starts_with("arn:"))
            .ok_or_else(|| self.malformed("Encrypt", key_id, "no key ARN"))?;
        Ok((blob, arn.to_string()))
    }

    /// Decrypts a blob that must be under `key_arn` and bound to `kek_id`.
    pub(crate) async fn decrypt(
        &self,
        key_arn: &str,
        kek_id: &str,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyServiceError> {
        let mut answer = self
            .client
            .decrypt()
            .key_id(key_arn)
            .ciphertext_blob(Blob::new(blob))
            .encryption_context(CONTEXT_ORG, &self.org_id)
            .encryption_context(CONTEXT_KEK, kek_id)
            .send()
            .await
            .map_err(|e| self.error("Decrypt", key_arn, kek_id, &e))?;
        // Take the plaintext out of the answer so that the only copy is wiped.
        let plain = answer
            .plaintext
            .take()
            .map(|b| Zeroizing::new(b.into_inner()))
            .ok_or_else(|| self.malformed("Decrypt", key_arn, "no plaintext"))?;
        Ok(plain)
    }

    fn malformed(&self, operation: &str, key: &str, what: &str) -> KeyServiceError {
        KeyServiceError::Failed(format!(
            "AWS KMS answered {operation} with key {key} for organisation {} malformed ({what})",
            self.org_id
        ))
    }

    /// What a failed KMS call means, for the organisation's administrator.
    fn error<E>(
        &self,
        operation: &str,
        key: &str,
        kek_id: &str,
        error: &SdkError<E, HttpResponse>,
    ) -> KeyServiceError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let org = &self.org_id;
        let about = format!(
            "AWS KMS {operation} with key {key} for organisation {org} (KEK {kek_id}, region {})",
            self.region
        );
        let service = match error {
            SdkError::ServiceError(e) => Some((e.err().code(), e.raw().status().as_u16())),
            SdkError::ResponseError(e) => Some((None, e.raw().status().as_u16())),
            _ => None,
        };
        let Some((code, status)) = service else {
            return match error {
                SdkError::TimeoutError(_) => KeyServiceError::Unavailable(format!(
                    "{about}: no answer in time; check that KMS is reachable from this server"
                )),
                SdkError::DispatchFailure(e) => KeyServiceError::Unavailable(format!(
                    "{about}: cannot reach KMS ({}); check the endpoint, DNS and network",
                    match e.as_connector_error() {
                        Some(c) if c.is_timeout() => "timed out".to_string(),
                        Some(c) => source_chain(c),
                        None => "the request was not sent".to_string(),
                    }
                )),
                other => KeyServiceError::Failed(format!(
                    "{about}: the request could not be made: {}",
                    source_chain(other)
                )),
            };
        };
        let code = code.unwrap_or(match status {
            401 | 403 => "AccessDeniedException",
            _ => "an unreadable error",
        });
        let fix = match code {
            "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "IncompleteSignature"
            | "ExpiredTokenException" => {
                "tapeseal's AWS identity may not use this key: grant it kms:Encrypt and \
                 kms:Decrypt on the key (key policy or IAM policy), restore access that was \
                 revoked, or give valid credentials"
            }
            "DisabledException" => "the key is disabled: enable it (EnableKey)",
            "KMSInvalidStateException" | "KmsInvalidStateException" => {
                "the key cannot be used in its state (disabled, pending deletion or import): \
                 enable it or cancel its deletion"
            }
            "NotFoundException" => {
                "no such key in this account and region: check the key id, alias and region"
            }
            "IncorrectKeyException" | "InvalidCiphertextException" => {
                "the stored ciphertext does not decrypt under this key with this organisation's \
                 encryption context: it was made under another key or context, or altered"
            }
            "InvalidKeyUsageException" => "the key is not a symmetric ENCRYPT_DECRYPT key",
            "KeyUnavailableException"
            | "DependencyTimeoutException"
            | "KMSInternalException"
            | "KmsInternalException"
            | "ThrottlingException"
            | "LimitExceededException" => {
                return KeyServiceError::Unavailable(format!("{about}: {code}; try again later"));
            }
            _ if status >= 500 => {
                return KeyServiceError::Unavailable(format!(
                    "{about}: HTTP {status} ({code}); try again later"
                ));
            }
            _ => "see the KMS error code",
        };
        KeyServiceError::Failed(format!("{about} was refused: {code}: {fix}"))
    }
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
