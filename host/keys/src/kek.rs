//! KEK key pairs in the host: RSA generation, import of existing pairs (PKCS#8 and
//! PKCS#1, DER and PEM, as Genesys-style LKMs produce), public-key export, and DEK
//! unwrap with RSA-OAEP — all in aws-lc-rs, whose RSA is constant-time. Private keys
//! never enter the WebAssembly guest and are never printed.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey,
    PrivateDecryptingKey,
};
use pkcs8::der::{Decode, Encode};
use tapeseal_core::{Dek, KekPublicKey, WrapAlgorithm};
use zeroize::Zeroizing;

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The bytes are not a private key this host reads.
    #[error("not a usable RSA private key: {0}")]
    Unreadable(String),
    /// A key that the envelope format does not accept.
    #[error("RSA-{0} keys are not accepted: tapeseal KEKs are 3072 or 4096 bits")]
    Size(usize),
    /// Key generation or encoding failed inside aws-lc-rs.
    #[error("key operation failed")]
    Crypto,
    /// The wrapped DEK did not unwrap with this key (wrong key, wrong algorithm, or a
    /// tampered stanza); deliberately no more precise.
    #[error("could not unwrap the DEK with this KEK")]
    Unwrap,
}

/// An RSA KEK pair held by the host.
pub struct KekPair {
    key: OaepPrivateDecryptingKey,
    private: PrivateDecryptingKey,
}

impl fmt::Debug for KekPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KekPair")
            .field("bits", &self.bits())
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

const RSA_ENCRYPTION: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

impl KekPair {
    /// Generates a new pair of 3072 or 4096 bits.
    pub fn generate(bits: usize) -> Result<Self, KeyError> {
        let size = match bits {
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            other => return Err(KeyError::Size(other)),
        };
        Self::checked(PrivateDecryptingKey::generate(size).map_err(|_| KeyError::Crypto)?)
    }

    fn checked(private: PrivateDecryptingKey) -> Result<Self, KeyError> {
        let bits = private.key_size_bits();
        if bits != 3072 && bits != 4096 {
            return Err(KeyError::Size(bits));
        }
        let key = OaepPrivateDecryptingKey::new(private.clone()).map_err(|_| KeyError::Crypto)?;
        Ok(Self { key, private })
    }

    /// Reads a private key: PEM `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY` (PKCS#1),
    /// or the same as DER.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, KeyError> {
        let text = std::str::from_utf8(bytes).ok().map(str::trim_start);
        let der = match text {
            Some(t) if t.starts_with("-----BEGIN") => {
                let (label, der) = pkcs8::der::pem::decode_vec(t.as_bytes())
                    .map_err(|e| KeyError::Unreadable(format!("bad PEM: {e}")))?;
                let der = Zeroizing::new(der);
                match label {
                    "PRIVATE KEY" => der,
                    "RSA PRIVATE KEY" => pkcs1_to_pkcs8(&der)?,
                    "ENCRYPTED PRIVATE KEY" => {
                        return Err(KeyError::Unreadable(
                            "the key is password-protected; export it unencrypted (openssl pkcs8 -nocrypt)".into(),
                        ));
                    }
                    other => {
                        return Err(KeyError::Unreadable(format!(
                            "expected a PEM 'PRIVATE KEY' or 'RSA PRIVATE KEY', found '{other}'"
                        )));
                    }
                }
            }
            _ => {
                if pkcs8::PrivateKeyInfoRef::from_der(bytes).is_ok() {
                    Zeroizing::new(bytes.to_vec())
                } else {
                    pkcs1_to_pkcs8(bytes)?
                }
            }
        };
        let private = PrivateDecryptingKey::from_pkcs8(&der)
            .map_err(|e| KeyError::Unreadable(format!("{e}")))?;
        Self::checked(private)
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.private.key_size_bits()
    }

    /// The public key as DER SubjectPublicKeyInfo.
    pub fn public_spki_der(&self) -> Result<Vec<u8>, KeyError> {
        let der = self
            .private
            .public_key()
            .as_der()
            .map_err(|_| KeyError::Crypto)?;
        Ok(der.as_ref().to_vec())
    }

    /// The public key as PEM `PUBLIC KEY`.
    pub fn public_pem(&self) -> Result<String, KeyError> {
        pem_encode("PUBLIC KEY", &self.public_spki_der()?).map_err(|_| KeyError::Crypto)
    }

    /// The public key as the core uses it.
    pub fn public_key(&self) -> Result<KekPublicKey, KeyError> {
        KekPublicKey::from_der(&self.public_spki_der()?)
            .map_err(|e| KeyError::Unreadable(e.to_string()))
    }

    /// The private key as PEM `PRIVATE KEY` (PKCS#8), in memory that is wiped on drop.
    pub fn private_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let der = self.private.as_der().map_err(|_| KeyError::Crypto)?;
        let der = Zeroizing::new(der.as_ref().to_vec());
        pem_encode("PRIVATE KEY", &der)
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Crypto)
    }

    /// `kek-` and the first 16 hex digits of the SHA-256 of the public key's DER: a
    /// stable id for a key that has none.
    pub fn fingerprint(&self) -> String {
        let der = self.public_spki_der().unwrap_or_default();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        format!("kek-{}", hex::encode(&digest.as_ref()[..8]))
    }

    /// Unwraps a DEK wrapped with RSA-OAEP under this key.
    pub fn unwrap(&self, wrapped: &[u8], algorithm: WrapAlgorithm) -> Result<Dek, KeyError> {
        let plain = self.decrypt(wrapped, algorithm)?;
        Dek::from_slice(&plain).map_err(|_| KeyError::Unwrap)
    }

    /// Decrypts an RSA-OAEP ciphertext of any length the key allows (a Local Key
    /// Manager decrypts whatever key its platform wrapped), into memory wiped on drop.
    pub fn decrypt(
        &self,
        wrapped: &[u8],
        algorithm: WrapAlgorithm,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let oaep = match algorithm {
            WrapAlgorithm::RsaOaepSha1 => &OAEP_SHA1_MGF1SHA1,
            _ => &OAEP_SHA256_MGF1SHA256,
        };
        let mut out = Zeroizing::new(vec![0u8; self.key.min_output_size()]);
        let len = self
            .key
            .decrypt(oaep, wrapped, &mut out, None)
            .map_err(|_| KeyError::Unwrap)?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// The public key as DER PKCS#1 `RSAPublicKey`, the form Genesys-style LKMs
    /// publish.
    pub fn public_pkcs1_der(&self) -> Result<Vec<u8>, KeyError> {
        spki_to_pkcs1(&self.public_spki_der()?)
    }
}

/// The PKCS#1 `RSAPublicKey` inside a DER SubjectPublicKeyInfo.
pub fn spki_to_pkcs1(spki: &[u8]) -> Result<Vec<u8>, KeyError> {
    let info = pkcs8::spki::SubjectPublicKeyInfoRef::from_der(spki)
        .map_err(|e| KeyError::Unreadable(e.to_string()))?;
    Ok(info.subject_public_key.raw_bytes().to_vec())
}

/// Wraps a PKCS#1 `RSAPrivateKey` in a PKCS#8 `PrivateKeyInfo`.
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let algorithm = pkcs8::AlgorithmIdentifierRef {
        oid: RSA_ENCRYPTION,
        parameters: Some(pkcs8::der::asn1::AnyRef::NULL),
    };
    let key = pkcs8::der::asn1::OctetStringRef::new(pkcs1)
        .map_err(|e| KeyError::Unreadable(e.to_string()))?;
    let info = pkcs8::PrivateKeyInfoRef::new(algorithm, key);
    info.to_der()
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Unreadable("not a PKCS#8 or PKCS#1 RSA private key".into()))
}

/// PEM text (64-column base64, LF line ends) of DER bytes under `label`, such as
/// `PUBLIC KEY` or `PRIVATE KEY`: the one PEM encoder of the host.
pub fn pem_encode(label: &'static str, der: &[u8]) -> Result<String, pkcs8::der::Error> {
    pkcs8::der::pem::encode_string(label, pkcs8::LineEnding::LF, der)
        .map_err(pkcs8::der::Error::from)
}
