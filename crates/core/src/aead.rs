//! The chunk AEAD seam: AES-256-GCM with 96-bit nonces and 128-bit tags. The core uses
//! RustCrypto's constant-time implementation; a host may plug in another
//! implementation of exactly the same construction (for example aws-lc-rs).

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};

/// Length of an AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Length of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;

/// AES-256-GCM over one chunk, in place, with a detached tag.
///
/// Implementations must be AES-256-GCM exactly as in NIST SP 800-38D: the test vectors
/// and Wycheproof cases run through this trait.
pub trait ChunkAead: Sized {
    /// Creates the cipher for a 32-byte key.
    fn new(key: &[u8; 32]) -> Self;
    /// Encrypts `buf` in place and returns the tag. Fails only for inputs AES-GCM cannot
    /// take (over 64 GiB), far above the format's 16 MiB chunks.
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError>;
    /// Decrypts `buf` in place if `tag` is valid. On failure `buf` must not be used
    /// (the caller discards it).
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError>;
}

/// The tag did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AeadError;

/// RustCrypto `aes-gcm` (AES-NI and CLMUL where the CPU has them, constant-time
/// software otherwise). The default everywhere, including wasm.
pub struct SoftAes256Gcm(Aes256Gcm);

impl core::fmt::Debug for SoftAes256Gcm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SoftAes256Gcm([redacted])")
    }
}

impl ChunkAead for SoftAes256Gcm {
    fn new(key: &[u8; 32]) -> Self {
        Self(Aes256Gcm::new(key.into()))
    }

    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        self.0
            .encrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into())
            .map(Into::into)
            .map_err(|_| AeadError)
    }

    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        self.0
            .decrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into(), &Tag::from(*tag))
            .map_err(|_| AeadError)
    }
}

/// The STREAM nonce of chunk `index`: an 88-bit big-endian counter and a final flag.
pub(crate) fn chunk_nonce(index: u64, last: bool) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[3..11].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}
