//! The data encryption key: 32 random bytes, one per recording, never printed and
//! wiped from memory when dropped.

use core::fmt;

use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};

/// Length of a DEK in bytes (AES-256).
pub const DEK_LEN: usize = 32;

/// A recording's AES-256 data encryption key.
///
/// Not `Clone`: a DEK is moved, not copied. `Debug` prints `Dek([redacted])`.
#[derive(Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Dek([u8; DEK_LEN]);

impl Dek {
    /// Generates a fresh DEK from a cryptographically secure random source.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; DEK_LEN];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Wraps existing key bytes (for example a DEK unwrapped by a key service).
    pub fn from_bytes(bytes: [u8; DEK_LEN]) -> Self {
        Self(bytes)
    }

    /// Copies a DEK out of a slice that must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let array: [u8; DEK_LEN] = bytes.try_into().map_err(|_| Error::InvalidDek)?;
        Ok(Self(array))
    }

    /// The raw key bytes, for handing to a key service or across an FFI boundary.
    pub fn as_bytes(&self) -> &[u8; DEK_LEN] {
        &self.0
    }
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dek([redacted])")
    }
}
