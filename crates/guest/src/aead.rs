//! The chunk AEAD the host provides (the `chunk-aead` import): tapeseal-core's
//! `ChunkAead` seam, with the AES-256-GCM of one chunk done by the host's hardware
//! AES. Everything around it (nonces, AAD, framing, the header's checks) stays in
//! the core, here in the guest.

use tapeseal_core::aead::{AeadError, ChunkAead, NONCE_LEN, TAG_LEN};

use crate::bindings::tapeseal::core::chunk_aead::ChunkKey;

/// The chunk AEAD this build uses: the host's, unless the `soft-aead` feature
/// asks for the core's software AES-GCM compiled into the guest. That build exists
/// for `cargo xtask bench --compare`, which measures what the import is worth; the
/// host still links only guests it can give the import to.
#[cfg(not(feature = "soft-aead"))]
pub(crate) type Aead = HostAead;
#[cfg(feature = "soft-aead")]
pub(crate) type Aead = tapeseal_core::aead::SoftAes256Gcm;

/// A payload key held by the host.
#[cfg_attr(feature = "soft-aead", allow(dead_code))]
pub(crate) struct HostAead(ChunkKey);

impl ChunkAead for HostAead {
    fn new(key: &[u8; 32]) -> Self {
        Self(ChunkKey::new(key))
    }

    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        let sealed = self.0.seal(nonce, aad, buf);
        if sealed.len() != buf.len() + TAG_LEN {
            return Err(AeadError);
        }
        let (ciphertext, tag) = sealed.split_at(buf.len());
        buf.copy_from_slice(ciphertext);
        tag.try_into().map_err(|_| AeadError)
    }

    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        match self.0.open(nonce, aad, buf, tag) {
            Some(plaintext) if plaintext.len() == buf.len() => {
                buf.copy_from_slice(&plaintext);
                Ok(())
            }
            _ => Err(AeadError),
        }
    }
}
