//! The chunk AEAD the host provides (the `chunk-aead` import): tapeseal-core's
//! `ChunkAead` seam, with the AES-256-GCM of one chunk done by the host's hardware
//! AES. Everything around it (nonces, AAD, framing, the header's checks) stays in
//! the core, here in the guest.

use tapeseal_core::aead::{AeadError, ChunkAead, NONCE_LEN, TAG_LEN};

use crate::bindings::tapeseal::core::chunk_aead::ChunkKey;

/// A payload key held by the host.
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
