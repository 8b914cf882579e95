//! Opening with a supplied DEK: one-shot, push-style streaming and random access.
//! Plaintext leaves this module only after its chunk's tag has verified, and no
//! chunk is touched before the DEK has passed the header's key commitment and MAC.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use crate::aead::{ChunkAead, SoftAes256Gcm, TAG_LEN, chunk_nonce};
use crate::dek::Dek;
use crate::error::{Error, Result};
use crate::header::{Header, PREFIX_LEN, header_len};
use crate::keys::DerivedKeys;
use crate::layout::{Layout, MAX_CHUNKS};

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
        let keys = DerivedKeys::derive(dek, header.salt());
        keys.verify(&header)?;
        Ok(Self {
            aead: A::new(keys.payload_key()),
            header,
        })
    }

    /// The verified header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Opens sealed chunk `index` (ciphertext and tag, as [`Layout::chunk_range`]
    /// locates it). `last` says whether it is the envelope's final chunk.
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
        let chunk_size = self.header.chunk_size() as usize;
        let body_len = sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(Error::DecryptFailed)?;
        let well_sized = if last {
            body_len <= chunk_size && (body_len > 0 || index == 0)
        } else {
            body_len == chunk_size
        };
        if !well_sized || index >= MAX_CHUNKS {
            return Err(Error::DecryptFailed);
        }
        let (body, tag) = sealed.split_at(body_len);
        let mut tag_bytes = [0u8; TAG_LEN];
        tag_bytes.copy_from_slice(tag);
        let start = out.len();
        out.extend_from_slice(body);
        let nonce = chunk_nonce(index, last);
        if self
            .aead
            .open(&nonce, &[], &mut out[start..], &tag_bytes)
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
    let header = Header::parse(envelope)?;
    let decryptor = Decryptor::<A>::new(header, dek)?;
    let layout =
        Layout::new(decryptor.header(), envelope.len() as u64).map_err(|_| Error::DecryptFailed)?;
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
/// if the stream was truncated or has trailing bytes.
pub struct Opener<A: ChunkAead = SoftAes256Gcm> {
    dek: Dek,
    state: State<A>,
}

enum State<A: ChunkAead> {
    Header(Vec<u8>),
    Payload(Box<Payload<A>>),
    Failed(Error),
}

struct Payload<A: ChunkAead> {
    decryptor: Decryptor<A>,
    pending: Vec<u8>,
    index: u64,
}

impl<A: ChunkAead> fmt::Debug for Opener<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Header(_) => "reading header",
            State::Payload(_) => "reading payload",
            State::Failed(_) => "failed",
        };
        f.debug_struct("Opener")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<A: ChunkAead> Opener<A> {
    /// A new opener for envelopes sealed under `dek`.
    pub fn new(dek: &Dek) -> Self {
        Self {
            dek: Dek::from_bytes(*dek.as_bytes()),
            state: State::Header(Vec::new()),
        }
    }

    /// The header, once it has been received and the DEK verified against it.
    pub fn header(&self) -> Option<&Header> {
        match &self.state {
            State::Payload(p) => Some(p.decryptor.header()),
            _ => None,
        }
    }

    /// Takes more envelope bytes; appends authenticated plaintext to `out`. After an
    /// error the opener refuses all further input, repeating that first error.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let result = self.push_inner(data, out);
        if let Err(e) = &result {
            self.state = State::Failed(e.clone());
        }
        result
    }

    fn push_inner(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if let State::Header(buf) = &mut self.state {
            loop {
                let needed = if buf.len() < PREFIX_LEN {
                    PREFIX_LEN
                } else {
                    header_len(buf)?
                };
                if buf.len() >= needed {
                    break;
                }
                if data.is_empty() {
                    return Ok(());
                }
                let take = (needed - buf.len()).min(data.len());
                buf.extend_from_slice(&data[..take]);
                data = &data[take..];
            }
            let header = Header::parse(buf)?;
            let decryptor = Decryptor::new(header, &self.dek)?;
            let stride = decryptor.header().chunk_size() as usize + TAG_LEN;
            self.state = State::Payload(Box::new(Payload {
                decryptor,
                pending: Vec::with_capacity(stride),
                index: 0,
            }));
        }
        match &mut self.state {
            State::Payload(p) => {
                let Payload {
                    decryptor,
                    pending,
                    index,
                } = p.as_mut();
                let stride = decryptor.header().chunk_size() as usize + TAG_LEN;
                while !data.is_empty() {
                    if pending.len() == stride {
                        decryptor.open_chunk_into(*index, pending, false, out)?;
                        pending.clear();
                        *index += 1;
                    }
                    let take = (stride - pending.len()).min(data.len());
                    pending.extend_from_slice(&data[..take]);
                    data = &data[take..];
                }
                Ok(())
            }
            State::Header(_) => Ok(()),
            State::Failed(e) => Err(e.clone()),
        }
    }

    /// Ends the stream: opens the final chunk and appends its plaintext to `out`.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<()> {
        match self.state {
            State::Payload(p) => p.decryptor.open_chunk_into(p.index, &p.pending, true, out),
            State::Header(buf) => Err(Error::IncompleteHeader {
                needed: header_len(&buf).unwrap_or(PREFIX_LEN),
                available: buf.len(),
            }),
            State::Failed(e) => Err(e),
        }
    }
}
