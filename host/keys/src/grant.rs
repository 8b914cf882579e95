//! Playback grants: short-lived, single-use permissions for a browser to ask an
//! organisation's Local Key Manager for one recording's DEK, so that the DEK goes from
//! the LKM straight to the page and the server never holds it. The server signs each
//! grant with its Ed25519 grant key for that organisation; the LKM trusts that key
//! because the server registered it over the Hawk-authenticated channel. A grant is
//! bound to the organisation, the recording, the key pair, the wrapped DEK (by its
//! SHA-256) and the user; the LKM refuses it after `exp` and a second time (`jti`).
//!
//! Token: `tsg1.<base64url(claims JSON)>.<base64url(Ed25519 signature)>`, the
//! signature covering the ASCII text before the second dot. docs/LKM.md has the
//! threat model.

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The token's version prefix.
pub const PREFIX: &str = "tsg1";
/// Longest token accepted (the claims are a few hundred bytes).
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest lifetime a grant may state; the LKM refuses longer ones.
pub const MAX_TTL_SECS: u64 = 600;
/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// What a grant allows. All fields are checked by the LKM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The issuer: the Hawk id the LKM gave the server; it names the registered key
    /// that verifies the grant.
    pub iss: String,
    /// The organisation.
    pub org: String,
    /// The recording.
    pub rec: String,
    /// The LKM key pair the DEK is wrapped for.
    pub kp: String,
    /// SHA-256 of the wrapped DEK's bytes, base64url without padding.
    pub wdk: String,
    /// The padding the DEK is wrapped with, as the decrypt endpoint's `decryptType`
    /// names it (absent: RSA-OAEP with SHA-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dty: Option<String>,
    /// The user the DEK is released to (logged by the LKM as its user id).
    pub sub: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// A random id; the LKM accepts each once.
    pub jti: String,
}

impl Claims {
    /// Fails unless the grant is for `keypair_id` and exactly these wrapped-DEK bytes.
    pub fn check_binding(&self, keypair_id: &str, wrapped_dek: &[u8]) -> Result<(), GrantError> {
        if self.kp != keypair_id || self.wdk != wrapped_dek_hash(wrapped_dek) {
            return Err(GrantError::Mismatch);
        }
        Ok(())
    }
}

/// Why a grant was refused. The messages hold no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// Not a grant token at all.
    #[error("the grant is malformed: {0}")]
    Malformed(&'static str),
    /// No registered key signed it.
    #[error("the grant's signature does not verify")]
    BadSignature,
    /// Its `exp` has passed.
    #[error("the grant has expired")]
    Expired,
    /// Its `iat` is in the future beyond the allowed clock skew.
    #[error("the grant is not valid yet (check the clocks)")]
    NotYetValid,
    /// It claims a lifetime longer than [`MAX_TTL_SECS`].
    #[error("the grant's lifetime is longer than {MAX_TTL_SECS} s")]
    TooLong,
    /// It is for another key pair or another wrapped DEK (another recording).
    #[error("the grant is for another recording or key pair")]
    Mismatch,
    /// It was used before.
    #[error("the grant was used before")]
    Replayed,
    /// The signing key could not be made or read.
    #[error("grant key: {0}")]
    Key(&'static str),
}

/// SHA-256 of a wrapped DEK, as grants carry it.
pub fn wrapped_dek_hash(wrapped_dek: &[u8]) -> String {
    B64URL.encode(digest::digest(&digest::SHA256, wrapped_dek))
}

/// A fresh random grant id.
pub fn new_grant_id() -> Result<String, GrantError> {
    let mut id = [0u8; 16];
    SystemRandom::new()
        .fill(&mut id)
        .map_err(|_| GrantError::Key("no randomness"))?;
    Ok(B64URL.encode(id))
}

/// The server's signing key for one organisation's grants.
pub struct GrantSigner {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for GrantSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantSigner")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl GrantSigner {
    /// A new key, and its PKCS#8 document (to seal and store).
    pub fn generate() -> Result<(Self, Zeroizing<Vec<u8>>), GrantError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| GrantError::Key("cannot generate an Ed25519 key"))?;
        let pkcs8 = Zeroizing::new(document.as_ref().to_vec());
        Ok((Self::from_pkcs8(&pkcs8)?, pkcs8))
    }

    /// The key from its PKCS#8 document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, GrantError> {
        Ed25519KeyPair::from_pkcs8(pkcs8)
            .map(|pair| Self { pair })
            .map_err(|_| GrantError::Key("the stored grant key is not an Ed25519 key"))
    }

    /// The raw 32-byte public key the LKM verifies with.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// A short name for the public key: the first 8 bytes of its SHA-256, hex.
    pub fn key_id(&self) -> String {
        key_id(self.public_key())
    }

    /// The signed token for `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, GrantError> {
        let json =
            serde_json::to_vec(claims).map_err(|_| GrantError::Key("cannot encode claims"))?;
        let signed = format!("{PREFIX}.{}", B64URL.encode(json));
        let signature = self.pair.sign(signed.as_bytes());
        Ok(format!("{signed}.{}", B64URL.encode(signature.as_ref())))
    }
}

/// A short name for an Ed25519 public key: the first 8 bytes of its SHA-256, hex.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(&digest::digest(&digest::SHA256, public_key).as_ref()[..8])
}

/// A parsed, not yet verified grant.
#[derive(Debug, Clone)]
pub struct Grant {
    claims: Claims,
    signed_len: usize,
    token: String,
    signature: Vec<u8>,
}

impl Grant {
    /// Reads a token's structure and claims; nothing is trusted yet.
    pub fn parse(token: &str) -> Result<Self, GrantError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(GrantError::Malformed("too long"));
        }
        let mut parts = token.split('.');
        let (Some(prefix), Some(encoded), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(GrantError::Malformed("not three dot-separated parts"));
        };
        if prefix != PREFIX {
            return Err(GrantError::Malformed("unknown version"));
        }
        let json = B64URL
            .decode(encoded)
            .map_err(|_| GrantError::Malformed("claims are not base64url"))?;
        let claims: Claims = serde_json::from_slice(&json)
            .map_err(|_| GrantError::Malformed("claims are not the expected JSON"))?;
        let signature = B64URL
            .decode(signature)
            .map_err(|_| GrantError::Malformed("signature is not base64url"))?;
        Ok(Self {
            claims,
            signed_len: prefix.len() + 1 + encoded.len(),
            token: token.to_string(),
            signature,
        })
    }

    /// The issuer the grant names (to find the key that verifies it).
    pub fn issuer(&self) -> &str {
        &self.claims.iss
    }

    /// What the grant claims, not yet verified (for logging a refusal).
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// Checks the signature with `public_key`, then the times against `now` (Unix
    /// seconds) allowing `skew_secs` for `iat`; returns the claims.
    pub fn verify(self, public_key: &[u8], now: u64, skew_secs: u64) -> Result<Claims, GrantError> {
        UnparsedPublicKey::new(&signature::ED25519, public_key)
            .verify(&self.token.as_bytes()[..self.signed_len], &self.signature)
            .map_err(|_| GrantError::BadSignature)?;
        let c = self.claims;
        if c.exp < c.iat || c.exp - c.iat > MAX_TTL_SECS {
            return Err(GrantError::TooLong);
        }
        if c.iat > now.saturating_add(skew_secs) {
            return Err(GrantError::NotYetValid);
        }
        if now >= c.exp {
            return Err(GrantError::Expired);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claims(now: u64) -> Claims {
        Claims {
            iss: "tapeseal-server".into(),
            org: "acme".into(),
            rec: "rec-1".into(),
            kp: "kp-1".into(),
            wdk: wrapped_dek_hash(b"wrapped"),
            dty: Some("RSA-OAEP-256".into()),
            sub: "tok_player".into(),
            iat: now,
            exp: now + 60,
            jti: new_grant_id().expect("id"),
        }
    }

    #[test]
    fn a_signed_grant_verifies_and_is_bound_to_its_key_pair_and_wrapped_dek() {
        let (signer, pkcs8) = GrantSigner::generate().expect("key");
        let again = GrantSigner::from_pkcs8(&pkcs8).expect("reload");
        assert_eq!(again.public_key(), signer.public_key());
        let token = signer.sign(&claims(1000)).expect("sign");
        let grant = Grant::parse(&token).expect("parse");
        assert_eq!(grant.issuer(), "tapeseal-server");
        let verified = grant.verify(signer.public_key(), 1010, 5).expect("verify");
        verified.check_binding("kp-1", b"wrapped").expect("bound");
        assert_eq!(
            verified.check_binding("kp-2", b"wrapped"),
            Err(GrantError::Mismatch)
        );
        assert_eq!(
            verified.check_binding("kp-1", b"other"),
            Err(GrantError::Mismatch)
        );
    }

    #[test]
    fn expiry_future_issue_overlong_lifetime_and_another_key_are_refused() {
        let (signer, _) = GrantSigner::generate().expect("key");
        let (other, _) = GrantSigner::generate().expect("key");
        let token = signer.sign(&claims(1000)).expect("sign");
        let check = |key: &[u8], now| Grant::parse(&token).expect("parse").verify(key, now, 5);
        assert_eq!(check(signer.public_key(), 1060), Err(GrantError::Expired));
        assert_eq!(
            check(signer.public_key(), 990),
            Err(GrantError::NotYetValid)
        );
        assert!(check(signer.public_key(), 996).is_ok());
        assert_eq!(
            check(other.public_key(), 1010),
            Err(GrantError::BadSignature)
        );
        let mut long = claims(1000);
        long.exp = 1000 + MAX_TTL_SECS + 1;
        let token = signer.sign(&long).expect("sign");
        assert_eq!(
            Grant::parse(&token)
                .expect("parse")
                .verify(signer.public_key(), 1001, 5),
            Err(GrantError::TooLong)
        );
    }

    #[test]
    fn a_changed_claim_breaks_the_signature() {
        let (signer, _) = GrantSigner::generate().expect("key");
        let token = signer.sign(&claims(1000)).expect("sign");
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut c = claims(1000);
        c.rec = "rec-2".into();
        parts[1] = B64URL.encode(serde_json::to_vec(&c).expect("json"));
        let forged = parts.join(".");
        assert_eq!(
            Grant::parse(&forged)
                .expect("parse")
                .verify(signer.public_key(), 1010, 5),
            Err(GrantError::BadSignature)
        );
    }

    #[test]
    fn the_debug_form_shows_only_the_key_id() {
        let (signer, pkcs8) = GrantSigner::generate().expect("key");
        let shown = format!("{signer:?}");
        assert!(shown.contains(&signer.key_id()));
        assert!(!shown.contains(&hex::encode(&pkcs8[pkcs8.len() - 8..])));
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in ".{0,300}") {
            let _ = Grant::parse(&text);
        }

        #[test]
        fn any_prefixed_junk_is_refused(a in "[A-Za-z0-9_-]{0,80}", b in "[A-Za-z0-9_-]{0,120}") {
            let (signer, _) = GrantSigner::generate().expect("key");
            let token = format!("{PREFIX}.{a}.{b}");
            if let Ok(grant) = Grant::parse(&token) {
                prop_assert!(grant.verify(signer.public_key(), 0, 0).is_err());
            }
        }
    }
}
