//! Key derivation from a DEK (docs/FORMAT.md section 3): the payload key, the key
//! commitment and the header MAC key, all by HKDF-SHA256 over the DEK and the salt.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::dek::Dek;
use crate::error::{Error, Result};
use crate::header::{Header, SALT_LEN};

pub(crate) const INFO_PAYLOAD: &[u8] = b"tapeseal v1 payload key";
pub(crate) const INFO_COMMIT: &[u8] = b"tapeseal v1 key commitment";
pub(crate) const INFO_MAC: &[u8] = b"tapeseal v1 header mac key";

/// Keys derived from one DEK and one salt.
pub(crate) struct DerivedKeys {
    payload: Zeroizing<[u8; 32]>,
    commitment: [u8; 32],
    mac: Zeroizing<[u8; 32]>,
}

impl DerivedKeys {
    pub(crate) fn derive(dek: &Dek, salt: &[u8; SALT_LEN]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(salt), dek.as_bytes());
        let mut payload = Zeroizing::new([0u8; 32]);
        let mut commitment = [0u8; 32];
        let mut mac = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        let _ = hk.expand(INFO_PAYLOAD, payload.as_mut());
        let _ = hk.expand(INFO_COMMIT, &mut commitment);
        let _ = hk.expand(INFO_MAC, mac.as_mut());
        Self {
            payload,
            commitment,
            mac,
        }
    }

    pub(crate) fn commitment(&self) -> [u8; 32] {
        self.commitment
    }

    pub(crate) fn payload_key(&self) -> &[u8; 32] {
        &self.payload
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        <Hmac<Sha256> as KeyInit>::new_from_slice(self.mac.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }

    pub(crate) fn header_mac(&self, bytes: &[u8]) -> [u8; 32] {
        let mut mac = self.mac();
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }

    /// Checks the commitment, then the header MAC, both in constant time. Says only
    /// "could not decrypt" on failure.
    pub(crate) fn verify(&self, header: &Header) -> Result<()> {
        let commit_ok = self.commitment.ct_eq(header.commitment());
        let mut mac = self.mac();
        mac.update(header.mac_input());
        let mac_ok = mac.verify_slice(header.mac()).is_ok();
        if bool::from(commit_ok) && mac_ok {
            Ok(())
        } else {
            Err(Error::DecryptFailed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aead::{ChunkAead, SoftAes256Gcm, chunk_nonce};

    /// The worked example of docs/FORMAT.md section 3.1, computed independently of
    /// this crate (Python's hmac and the `cryptography` package).
    #[test]
    fn derivations_match_the_spec_example() {
        let dek = Dek::from_bytes(core::array::from_fn(|i| i as u8));
        let salt: [u8; 32] = core::array::from_fn(|i| 0x20 + i as u8);
        let keys = DerivedKeys::derive(&dek, &salt);
        let hex = |b: &[u8]| hex::encode(b);
        assert_eq!(
            hex(keys.payload_key()),
            "b1f9db48a945826934ab4723472cfe3ca5a3700b6549241e96f9df3e915b60e9"
        );
        assert_eq!(
            hex(&keys.commitment()),
            "34c984274e172dab7ae08bdf04c8e48fbedf23e01573b036cd64cc54c1d39240"
        );
        assert_eq!(
            hex(keys.mac.as_ref()),
            "30119ec639311f6e543935a99b32d2c06627d041997c8938e1815fbab54dd9ed"
        );
        let tag = SoftAes256Gcm::new(keys.payload_key())
            .seal(&chunk_nonce(0, true), &[], &mut [])
            .expect("seal");
        assert_eq!(hex(&tag), "8ad7d4bbe5ea2b4f1bdc2892b65b3593");
    }

    #[test]
    fn nonces_carry_the_index_big_endian_and_the_final_flag() {
        assert_eq!(chunk_nonce(0, false), [0; 12]);
        assert_eq!(chunk_nonce(5, true), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 1]);
        assert_eq!(
            chunk_nonce(0x0102_0304, false),
            [0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 0]
        );
    }
}
