//! The chunk AEAD the host gives the guest (the `chunk-aead` import of
//! wit/tapeseal.wit): AES-256-GCM from aws-lc-rs, with the CPU's AES and carry-less
//! multiply instructions. The guest keeps every format rule; this only encrypts and
//! decrypts one chunk with the payload key and nonce the guest chose.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use tapeseal_core::aead::{AeadError, ChunkAead, NONCE_LEN, TAG_LEN};
use wasmtime::component::Resource;
use zeroize::Zeroize;

use crate::State;
use crate::bindings::tapeseal::core::chunk_aead::{Host, HostChunkKey};

/// How many payload keys one guest instance may hold at once. The guest needs one
/// per open envelope stream; the cap only stops a runaway guest from growing the
/// host's table.
const MAX_KEYS: usize = 64;

/// AES-256-GCM in aws-lc-rs, behind tapeseal-core's `ChunkAead` seam: what the
/// guest's chunks go through, and usable natively (benchmarks, tests).
pub struct HostAes256Gcm(LessSafeKey);

impl std::fmt::Debug for HostAes256Gcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostAes256Gcm([redacted])")
    }
}

impl HostAes256Gcm {
    /// A key from exactly 32 bytes.
    fn from_slice(key: &[u8]) -> Option<Self> {
        let key = UnboundKey::new(&AES_256_GCM, key).ok()?;
        Some(Self(LessSafeKey::new(key)))
    }
}

fn nonce(bytes: &[u8]) -> Result<Nonce, AeadError> {
    Nonce::try_assume_unique_for_key(bytes).map_err(|_| AeadError)
}

impl ChunkAead for HostAes256Gcm {
    fn new(key: &[u8; 32]) -> Self {
        // AES-256-GCM takes any 32-byte key.
        match Self::from_slice(key) {
            Some(aead) => aead,
            None => unreachable!("aws-lc-rs refused a 32-byte AES-256 key"),
        }
    }

    fn seal(
        &self,
        nonce_bytes: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce(nonce_bytes)?, Aad::from(aad), buf)
            .map_err(|_| AeadError)?;
        tag.as_ref().try_into().map_err(|_| AeadError)
    }

    fn open(
        &self,
        nonce_bytes: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        let opened =
            self.0
                .open_in_place_separate_tag(nonce(nonce_bytes)?, Aad::from(aad), tag, buf);
        if opened.is_err() {
            // aws-lc may have written unauthenticated plaintext: never leave it.
            buf.zeroize();
            return Err(AeadError);
        }
        Ok(())
    }
}

fn trap(what: &str) -> wasmtime::Error {
    wasmtime::Error::msg(format!("chunk-aead: {what}"))
}

impl Host for State {}

impl HostChunkKey for State {
    fn new(&mut self, key: Vec<u8>) -> wasmtime::Result<Resource<HostAes256Gcm>> {
        let mut key = key;
        let aead = HostAes256Gcm::from_slice(&key);
        key.zeroize();
        let aead = aead.ok_or_else(|| trap("the payload key must be 32 bytes"))?;
        if self.chunk_keys >= MAX_KEYS {
            return Err(trap("too many payload keys held at once"));
        }
        let handle = self.table.push(aead)?;
        self.chunk_keys += 1;
        Ok(handle)
    }

    fn seal(
        &mut self,
        key: Resource<HostAes256Gcm>,
        nonce: Vec<u8>,
        aad: Vec<u8>,
        plaintext: Vec<u8>,
    ) -> wasmtime::Result<Vec<u8>> {
        let aead = self.table.get(&key)?;
        let nonce: &[u8; NONCE_LEN] = nonce
            .as_slice()
            .try_into()
            .map_err(|_| trap("the nonce must be 12 bytes"))?;
        let mut sealed = plaintext;
        let tag = aead
            .seal(nonce, &aad, &mut sealed)
            .map_err(|_| trap("AES-GCM refused the chunk"))?;
        sealed.extend_from_slice(&tag);
        Ok(sealed)
    }

    fn open(
        &mut self,
        key: Resource<HostAes256Gcm>,
        nonce: Vec<u8>,
        aad: Vec<u8>,
        ciphertext: Vec<u8>,
        tag: Vec<u8>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        let aead = self.table.get(&key)?;
        let nonce: &[u8; NONCE_LEN] = nonce
            .as_slice()
            .try_into()
            .map_err(|_| trap("the nonce must be 12 bytes"))?;
        let Ok(tag) = <&[u8; TAG_LEN]>::try_from(tag.as_slice()) else {
            return Ok(None);
        };
        let mut plaintext = ciphertext;
        Ok(aead
            .open(nonce, &aad, &mut plaintext, tag)
            .is_ok()
            .then_some(plaintext))
    }

    fn drop(&mut self, key: Resource<HostAes256Gcm>) -> wasmtime::Result<()> {
        self.table.delete(key)?;
        self.chunk_keys = self.chunk_keys.saturating_sub(1);
        Ok(())
    }
}
