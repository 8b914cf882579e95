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
        let commit_ok = self.commitment.ct_eq(&header.commitment);
        let mut mac = self.mac();
        mac.update(header.mac_input());
        let mac_ok = mac.verify_slice(&header.mac).is_ok();
        if bool::from(commit_ok) && mac_ok {
            Ok(())
        } else {
            Err(Error::DecryptFailed)
        }
    }
}
