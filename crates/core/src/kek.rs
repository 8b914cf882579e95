//! KEK public keys and DEK wrapping with RSA-OAEP. The core only ever holds the
//! public half of a KEK; unwrapping happens in a key service.

use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, PublicKey};

use crate::dek::Dek;
use crate::error::{Error, Result};

/// Modulus sizes, in bits, that may wrap DEKs for new envelopes.
pub const ACCEPTED_MODULUS_BITS: [usize; 2] = [3072, 4096];

/// How a DEK is wrapped in a key stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum WrapAlgorithm {
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256, empty label. The default.
    #[default]
    RsaOaepSha256,
    /// RSAES-OAEP with SHA-1 and MGF1-SHA-1, empty label: what existing
    /// Genesys-style Local Key Managers decrypt.
    RsaOaepSha1,
}

impl WrapAlgorithm {
    /// The algorithm's identifier byte in a key stanza.
    pub fn id(self) -> u8 {
        match self {
            Self::RsaOaepSha256 => 1,
            Self::RsaOaepSha1 => 2,
        }
    }

    /// The algorithm for an identifier byte, if it is one this build knows.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Self::RsaOaepSha256),
            2 => Some(Self::RsaOaepSha1),
            _ => None,
        }
    }

    /// The algorithm's name as written in docs, JSON and CLIs.
    pub fn name(self) -> &'static str {
        match self {
            Self::RsaOaepSha256 => "rsa-oaep-sha256",
            Self::RsaOaepSha1 => "rsa-oaep-sha1",
        }
    }

    /// Parses [`WrapAlgorithm::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "rsa-oaep-sha256" => Some(Self::RsaOaepSha256),
            "rsa-oaep-sha1" => Some(Self::RsaOaepSha1),
            _ => None,
        }
    }
}

impl fmt::Display for WrapAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The public half of an organisation's RSA key pair, checked to be usable for
/// wrapping (3072 or 4096 bits, a sane public exponent).
#[derive(Clone, PartialEq, Eq)]
pub struct KekPublicKey {
    key: PublicKey,
}

impl KekPublicKey {
    /// Parses DER: SubjectPublicKeyInfo or PKCS#1 `RSAPublicKey`.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        use pkcs1::DecodeRsaPublicKey;
        use spki::DecodePublicKey;
        let key = PublicKey::from_public_key_der(der)
            .or_else(|_| PublicKey::from_pkcs1_der(der))
            .map_err(|_| {
                Error::InvalidKey("not a DER RSA public key (SubjectPublicKeyInfo or PKCS#1)")
            })?;
        Self::checked(key)
    }

    /// Parses PEM: `-----BEGIN PUBLIC KEY-----` (SPKI) or `-----BEGIN RSA PUBLIC KEY-----`
    /// (PKCS#1).
    pub fn from_pem(pem: &str) -> Result<Self> {
        use pkcs1::DecodeRsaPublicKey;
        use spki::DecodePublicKey;
        let pem = pem.trim();
        let key = if pem.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
            PublicKey::from_pkcs1_pem(pem)
                .map_err(|_| Error::InvalidKey("malformed PKCS#1 RSA PUBLIC KEY PEM"))?
        } else if pem.starts_with("-----BEGIN PUBLIC KEY-----") {
            PublicKey::from_public_key_pem(pem)
                .map_err(|_| Error::InvalidKey("malformed or non-RSA PUBLIC KEY PEM"))?
        } else {
            return Err(Error::InvalidKey(
                "expected a PEM 'PUBLIC KEY' or 'RSA PUBLIC KEY' block",
            ));
        };
        Self::checked(key)
    }

    /// Parses PEM if the bytes look like PEM text, DER otherwise.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self> {
        match core::str::from_utf8(bytes) {
            Ok(text) if text.trim_start().starts_with("-----BEGIN") => Self::from_pem(text),
            _ => Self::from_der(bytes),
        }
    }

    fn checked(key: PublicKey) -> Result<Self> {
        let bits = key.n().bit_width() as usize;
        if !ACCEPTED_MODULUS_BITS.contains(&bits) {
            return Err(Error::InvalidKey(
                "the modulus must be 3072 or 4096 bits for new envelopes",
            ));
        }
        let e = key.e_bytes();
        let e_ok = e.len() <= 4
            && e.last().is_some_and(|b| b & 1 == 1)
            && e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)) >= 65537;
        if !e_ok {
            return Err(Error::InvalidKey(
                "the public exponent must be odd and between 65537 and 2^32",
            ));
        }
        Ok(Self { key })
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.n().bit_width() as usize
    }

    /// Length in bytes of every DEK wrapped with this key.
    pub fn wrapped_len(&self) -> usize {
        self.key.size()
    }

    /// Encodes the key as DER SubjectPublicKeyInfo.
    pub fn to_spki_der(&self) -> Result<Vec<u8>> {
        use spki::EncodePublicKey;
        self.key
            .to_public_key_der()
            .map(|doc| doc.into_vec())
            .map_err(|_| Error::InvalidKey("cannot encode key"))
    }

    /// Wraps a DEK with RSA-OAEP.
    pub fn wrap<R: CryptoRng + ?Sized>(
        &self,
        dek: &Dek,
        algorithm: WrapAlgorithm,
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        let wrapped = match algorithm {
            WrapAlgorithm::RsaOaepSha256 => {
                self.key
                    .encrypt(rng, Oaep::<sha2::Sha256>::new(), dek.as_bytes())
            }
            WrapAlgorithm::RsaOaepSha1 => {
                self.key
                    .encrypt(rng, Oaep::<sha1::Sha1>::new(), dek.as_bytes())
            }
        };
        wrapped.map_err(|_| Error::WrapFailed)
    }
}

impl fmt::Debug for KekPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KekPublicKey")
            .field("bits", &self.bits())
            .finish_non_exhaustive()
    }
}
