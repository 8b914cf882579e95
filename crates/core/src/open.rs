//! Opening with a supplied DEK: one-shot, push-style streaming and random access.
//! Plaintext leaves this module only after its chunk's tag has verified, and no
//! chunk is touched before the DEK has passed the header's key commitment and MAC.
//! The framing rules, nonces and DEK checks live in [`crate::detached`], which the
//! detached (WebCrypto) path shares; this module adds the core's own AEAD.

use alloc::vec::Vec;
use core::fmt;

use crate::aead::{ChunkAead, SoftAes256Gcm, TAG_LEN};
use crate::dek::Dek;
use crate::detached::{ChunkParams, Framer, SealedChunk, payload_key, whole_envelope};
use crate::error::{Error, Result};
use crate::header::Header;

/// A header whose DEK has been verified, ready to open any chunk on its own.
pub struct Decryptor<A: ChunkAead = SoftAes256Gcm> {
    aead: A,
    header: Header,
}

impl<A: ChunkAead> fmt::Debug for Decryptor<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decryptor")
            .field("recording_id", &self.header.recording_id())
            .finish_non_exhaustive()
    }
}

impl<A: ChunkAead> Decryptor<A> {
    /// Verifies `dek` against the header's key commitment and MAC.
    pub fn new(header: Header, dek: &Dek) -> Result<Self> {
        let key = payload_key(&header, dek)?;
        Ok(Self {
            aead: A::new(&key),
            header,
        })
    }

    /// The verified header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Opens sealed chunk `index` (ciphertext and tag, as [`Layout::chunk_range`]
    /// locates it). `last` says whether it is the envelope's final chunk.
    ///
    /// [`Layout::chunk_range`]: crate::Layout::chunk_range
    pub fn open_chunk(&self, index: u64, sealed: &[u8], last: bool) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(sealed.len());
        self.open_chunk_into(index, sealed, last, &mut out)?;
        Ok(out)
    }

    /// Like [`Decryptor::open_chunk`], appending the plaintext to `out`. On failure
    /// `out` is left as it was.
    pub fn open_chunk_into(
        &self,
        index: u64,
        sealed: &[u8],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let params = ChunkParams::check(self.header.chunk_size(), index, sealed.len(), last)?;
        self.open_checked(&params, sealed, out)
    }

    /// Opens a chunk the framer cut and checked.
    fn open_sealed(&self, chunk: SealedChunk<'_>, out: &mut Vec<u8>) -> Result<()> {
        self.open_checked(chunk.params(), chunk.sealed(), out)
    }

    fn open_checked(&self, params: &ChunkParams, sealed: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let (body, tag) = sealed
            .split_at_checked(params.body_len())
            .ok_or(Error::DecryptFailed)?;
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| Error::DecryptFailed)?;
        let start = out.len();
        out.extend_from_slice(body);
        if self
            .aead
            .open(params.nonce(), params.aad(), &mut out[start..], &tag)
            .is_err()
        {
            out.truncate(start);
            return Err(Error::DecryptFailed);
        }
        Ok(())
    }
}

/// Opens a whole envelope held in memory.
pub fn open(envelope: &[u8], dek: &Dek) -> Result<Vec<u8>> {
    open_with::<SoftAes256Gcm>(envelope, dek)
}

/// [`open`] with another implementation of the chunk AEAD (a host's hardware AES).
pub fn open_with<A: ChunkAead>(envelope: &[u8], dek: &Dek) -> Result<Vec<u8>> {
    let (decryptor, layout) =
        whole_envelope(envelope, envelope.len() as u64, dek, Decryptor::<A>::new)?;
    let capacity = usize::try_from(layout.plaintext_len()).map_err(|_| Error::DecryptFailed)?;
    let mut out = Vec::with_capacity(capacity);
    for index in 0..layout.chunk_count() {
        let range = layout.chunk_range(index)?;
        let sealed = &envelope[range.start as usize..range.end as usize];
        decryptor.open_chunk_into(index, sealed, layout.is_last(index), &mut out)?;
    }
    Ok(out)
}

/// Push-style streaming decryption of an envelope whose length is not known in
/// advance. Holds at most the header and one sealed chunk.
///
/// [`Opener::push`] releases plaintext only for chunks whose tag has verified and that
/// are known not to be the last; [`Opener::finish`] opens the final chunk, and fails
/// if the stream was truncated or has trailing bytes. The stream is cut by
/// [`Framer`], as for a detached opener.
pub struct Opener<A: ChunkAead = SoftAes256Gcm> {
    dek: Dek,
    framer: Framer<Decryptor<A>>,
}

impl<A: ChunkAead> fmt::Debug for Opener<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("framer", &self.framer)
            .finish_non_exhaustive()
    }
}

impl<A: ChunkAead> Opener<A> {
    /// A new opener for envelopes sealed under `dek`.
    pub fn new(dek: &Dek) -> Self {
        Self {
            dek: Dek::from_bytes(*dek.as_bytes()),
            framer: Framer::new(),
        }
    }

    /// The header, once it has been received and the DEK verified against it.
    pub fn header(&self) -> Option<&Header> {
        self.framer.opener().map(Decryptor::header)
    }

    /// Takes more envelope bytes; appends authenticated plaintext to `out`. After an
    /// error the opener refuses all further input, repeating that first error.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let dek = &self.dek;
        self.framer.push(
            data,
            |header| Decryptor::new(header, dek),
            |decryptor, chunk| decryptor.open_sealed(chunk, out),
        )
    }

    /// Ends the stream: opens the final chunk and appends its plaintext to `out`.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<()> {
        self.framer
            .finish(|decryptor, chunk| decryptor.open_sealed(chunk, out))
    }
}
