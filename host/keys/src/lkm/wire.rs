//! The Local Key Manager wire contract (docs/LKM.md), compatible with Genesys-style
//! LKMs: paths, headers and JSON bodies. The client in this crate and the reference
//! LKM (`tapeseal-lkm`) both use these types, so the two cannot drift apart.

use serde::{Deserialize, Serialize};
use tapeseal_core::WrapAlgorithm;

/// Every LKM path starts with this.
pub const BASE_PATH: &str = "/key-management/v1";
/// `POST {id}` → Hawk credentials (admin token required).
pub const AUTH_PATH: &str = "/key-management/v1/auth";
/// `POST` creates a key pair, `GET` lists them; `/{id}` reads one.
pub const KEYPAIR_PATH: &str = "/key-management/v1/keypair";
/// `POST {keypairId, body, decryptType?}` → `{body}`; `OPTIONS` probes it.
pub const DECRYPT_PATH: &str = "/key-management/v1/decrypt";
/// `GET`/`DELETE` the request log.
pub const REQUEST_LOG_PATH: &str = "/key-management/v1/request-log";
/// `GET` → `{status: "ok"}`, without authentication.
pub const HEALTH_PATH: &str = "/key-management/v1/health";
/// Browser decrypt: a page presents a playback grant instead of Hawk credentials.
pub const BROWSER_DECRYPT_PATH: &str = "/key-management/v1/browser-decrypt";
/// Grant issuer: the Hawk-authenticated caller registers the key its grants are
/// signed with.
pub const GRANT_ISSUER_PATH: &str = "/key-management/v1/grant-issuer";
/// The header naming the platform user on whose behalf a DEK is decrypted.
pub const USER_ID_HEADER: &str = "PureCloud-User-Id";
/// Hawk credential ids shorter than this are refused.
pub const MIN_CREDENTIAL_ID_LEN: usize = 6;

/// `POST /auth` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    /// The credential id to issue.
    pub id: String,
}

/// `POST /auth` response: a Hawk id and key.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthResponse {
    /// The Hawk id.
    pub id: String,
    /// The Hawk key (secret).
    pub auth_key: String,
    /// Always `sha256`.
    pub algorithm: String,
}

impl std::fmt::Debug for AuthResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthResponse")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A key pair as the LKM shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Keypair {
    /// A UUID.
    pub id: String,
    /// Base64 DER PKCS#1 `RSAPublicKey`.
    pub public_key: String,
    /// Unix milliseconds.
    pub date_created: i64,
}

/// `POST /decrypt` request.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecryptRequest {
    /// The key pair whose private key decrypts.
    pub keypair_id: String,
    /// Base64 of the wrapped DEK.
    pub body: String,
    /// The padding; absent means RSA-OAEP with SHA-1 (see [`DecryptType`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decrypt_type: Option<String>,
}

impl std::fmt::Debug for DecryptRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptRequest")
            .field("keypair_id", &self.keypair_id)
            .field("decrypt_type", &self.decrypt_type)
            .finish_non_exhaustive()
    }
}

/// `POST /decrypt` response: base64 of the DEK (secret).
#[derive(Clone, Serialize, Deserialize)]
pub struct DecryptResponse {
    /// Base64 of the DEK.
    pub body: String,
}

impl std::fmt::Debug for DecryptResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecryptResponse([redacted])")
    }
}

/// `POST /browser-decrypt` request: what a page sends, with no credentials but the
/// grant.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrowserDecryptRequest {
    /// The playback grant (`tsg1.….…`), from the server.
    pub grant: String,
    /// The key pair whose private key decrypts; must be the grant's.
    pub keypair_id: String,
    /// Base64 of the wrapped DEK; its SHA-256 must be the grant's.
    pub body: String,
}

impl std::fmt::Debug for BrowserDecryptRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserDecryptRequest")
            .field("keypair_id", &self.keypair_id)
            .finish_non_exhaustive()
    }
}

/// `PUT /grant-issuer` request (Hawk): the public key that verifies the caller's
/// grants from now on (it replaces any earlier one).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantIssuerRequest {
    /// Base64 of the raw 32-byte Ed25519 public key.
    pub public_key: String,
}

/// `PUT`/`GET /grant-issuer` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantIssuer {
    /// The issuer: the Hawk id that registered the key (grants name it in `iss`).
    pub issuer: String,
    /// Base64 of the raw Ed25519 public key.
    pub public_key: String,
    /// The first 8 bytes of the key's SHA-256, hex.
    pub key_id: String,
    /// Unix milliseconds.
    pub registered_at: i64,
}

/// The paddings `decryptType` names. Absent (what existing platforms send) is
/// RSA-OAEP with SHA-1; PKCS#1 v1.5 is refused, never decrypted (padding oracle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecryptType {
    /// RSA-OAEP, SHA-1 and MGF1-SHA-1.
    OaepSha1,
    /// RSA-OAEP, SHA-256 and MGF1-SHA-256.
    OaepSha256,
}

/// Why a `decryptType` is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecryptTypeError {
    /// PKCS#1 v1.5 padding.
    #[error("PKCS#1 v1.5 decryption is refused (padding-oracle risk); use RSA-OAEP")]
    Pkcs1v15,
    /// Anything else.
    #[error("unknown decryptType; use RSA-OAEP (SHA-1) or RSA-OAEP-256")]
    Unknown,
}

impl DecryptType {
    /// The `decryptType` value this client sends: none for SHA-1 (so an LKM that
    /// predates the field works), `RSA-OAEP-256` for SHA-256.
    pub fn field(self) -> Option<String> {
        match self {
            Self::OaepSha1 => None,
            Self::OaepSha256 => Some("RSA-OAEP-256".into()),
        }
    }

    /// Reads the field: case and `-`/`_` do not matter.
    pub fn from_field(field: Option<&str>) -> Result<Self, DecryptTypeError> {
        let Some(field) = field else {
            return Ok(Self::OaepSha1);
        };
        let normal = field.trim().to_ascii_uppercase().replace('_', "-");
        match normal.as_str() {
            "" | "OAEP" | "RSA-OAEP" | "RSA-OAEP-SHA1" | "OAEP-SHA1" | "RSA-OAEP-SHA-1" => {
                Ok(Self::OaepSha1)
            }
            "RSA-OAEP-256" | "RSA-OAEP-SHA256" | "OAEP-SHA256" | "RSA-OAEP-SHA-256"
            | "OAEP-256" => Ok(Self::OaepSha256),
            "PKCS1" | "PKCS1V15" | "PKCS1-V1-5" | "RSA1-5" | "RSA-PKCS1" | "RSA-PKCS1-V1-5"
            | "PKCS1-PADDING" | "RSA" => Err(DecryptTypeError::Pkcs1v15),
            _ => Err(DecryptTypeError::Unknown),
        }
    }

    /// The envelope wrap algorithm with the same padding.
    pub fn wrap_algorithm(self) -> WrapAlgorithm {
        match self {
            Self::OaepSha1 => WrapAlgorithm::RsaOaepSha1,
            Self::OaepSha256 => WrapAlgorithm::RsaOaepSha256,
        }
    }

    /// The padding of an envelope wrap algorithm.
    pub fn of(algorithm: WrapAlgorithm) -> Self {
        match algorithm {
            WrapAlgorithm::RsaOaepSha1 => Self::OaepSha1,
            _ => Self::OaepSha256,
        }
    }
}

/// One request-log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestLogEntry {
    /// Sequence number.
    pub id: i64,
    /// Unix milliseconds.
    pub time: i64,
    /// HTTP method.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The Hawk credential id, if the request was authenticated.
    #[serde(default)]
    pub credential_id: Option<String>,
    /// The `PureCloud-User-Id` header, if sent.
    #[serde(default)]
    pub user_id: Option<String>,
    /// The key pair, for decrypts and key-pair reads.
    #[serde(default)]
    pub keypair_id: Option<String>,
    /// The recording a browser decrypt was for (its grant's `rec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_id: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
}

/// An LKM error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The HTTP status.
    pub status: u16,
    /// A stable code: `unauthorized`, `not_found`, `bad_request`, ...
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrypt_types_read_as_documented() {
        assert_eq!(DecryptType::from_field(None), Ok(DecryptType::OaepSha1));
        assert_eq!(
            DecryptType::from_field(Some("rsa_oaep")),
            Ok(DecryptType::OaepSha1)
        );
        assert_eq!(
            DecryptType::from_field(Some("RSA-OAEP-256")),
            Ok(DecryptType::OaepSha256)
        );
        assert_eq!(
            DecryptType::from_field(Some("PKCS1")),
            Err(DecryptTypeError::Pkcs1v15)
        );
        assert_eq!(
            DecryptType::from_field(Some("rot13")),
            Err(DecryptTypeError::Unknown)
        );
        for t in [DecryptType::OaepSha1, DecryptType::OaepSha256] {
            assert_eq!(DecryptType::from_field(t.field().as_deref()), Ok(t));
            assert_eq!(DecryptType::of(t.wrap_algorithm()), t);
        }
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let response = DecryptResponse {
            body: "c2VjcmV0".into(),
        };
        assert!(!format!("{response:?}").contains("c2VjcmV0"));
        let auth = AuthResponse {
            id: "tapeseal".into(),
            auth_key: "hawk-secret".into(),
            algorithm: "sha256".into(),
        };
        assert!(!format!("{auth:?}").contains("hawk-secret"));
    }
}
