//! Opening with the chunk AES-256-GCM run outside the core (WebCrypto behind a promise,
//! a hardware engine): the core still verifies the header, derives the payload key,
//! frames the stream, checks every chunk's size and names the nonce and AAD each chunk
//! is opened with. The caller only runs AES-256-GCM on exactly what it is handed.
//! [`Decryptor`](crate::Decryptor), [`Opener`](crate::Opener) and
//! [`open`](crate::open) are built on the same pieces, so both paths follow one set of
//! rules.
//!
//! ```
//! use tapeseal_core::aead::{ChunkAead, SoftAes256Gcm};
//! use tapeseal_core::{Error, VerifiedHeader};
//! # use tapeseal_core::{Dek, KekPublicKey, MediaKind, Recipient, SealParams, seal};
//! # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
//! # let mut rng = ChaCha20Rng::seed_from_u64(7);
//! # let kek = KekPublicKey::from_pem(include_str!("../../../tests/vectors/keys/kek-a.public.pem"))?;
//! # let dek = Dek::generate(&mut rng);
//! # let params = SealParams::new("org-1", "rec-1", MediaKind::Call, "audio/wav", 0);
//! # let envelope = seal(&mut rng, &dek, &params, &[Recipient::new("kek-a", kek)], b"hello")?;
//! let (mut verified, layout) =
//!     VerifiedHeader::for_envelope(&envelope, envelope.len() as u64, &dek)?;
//! // The payload key goes to the other engine (here, for the example, the core's own).
//! let key = verified.take_payload_key().ok_or(Error::InvalidState("key taken"))?;
//! let engine = SoftAes256Gcm::new(&key);
//! let mut plain = Vec::new();
//! for index in 0..layout.chunk_count() {
//!     let range = layout.chunk_range(index)?;
//!     let sealed = &envelope[range.start as usize..range.end as usize];
//!     let params = verified.chunk(index, sealed.len(), layout.is_last(index))?;
//!     let (body, tag) = sealed.split_at(params.body_len());
//!     let mut buf = body.to_vec();
//!     let tag = tag.try_into().map_err(|_| Error::DecryptFailed)?;
//!     engine
//!         .open(params.nonce(), params.aad(), &mut buf, &tag)
//!         .map_err(|_| Error::DecryptFailed)?;
//!     plain.extend(buf);
//! }
//! assert_eq!(plain, b"hello");
//! # Ok::<(), Error>(())
//! ```

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use zeroize::Zeroizing;

use crate::aead::{NONCE_LEN, TAG_LEN, chunk_nonce};
use crate::dek::Dek;
use crate::error::{Error, Result};
use crate::header::{Header, PREFIX_LEN, header_len};
use crate::keys::DerivedKeys;
use crate::layout::{Layout, MAX_CHUNKS};

/// The additional authenticated data of every chunk: none in format v1.
const CHUNK_AAD: &[u8] = &[];

/// Checks `dek` against the header's key commitment and MAC; returns the payload key.
pub(crate) fn payload_key(header: &Header, dek: &Dek) -> Result<Zeroizing<[u8; 32]>> {
    let keys = DerivedKeys::derive(dek, header.salt());
    keys.verify(header)?;
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(keys.payload_key());
    Ok(key)
}

/// The checks [`open`](crate::open) makes before its first chunk: the header, the DEK
/// (through `verify`), then an envelope length that a complete envelope can have.
/// `envelope_start` holds at least the whole header, or the whole envelope if it is
/// shorter (its first [`MAX_HEADER_LEN`](crate::header::MAX_HEADER_LEN) bytes always
/// do).
pub(crate) fn whole_envelope<T>(
    envelope_start: &[u8],
    envelope_len: u64,
    dek: &Dek,
    verify: impl FnOnce(Header, &Dek) -> Result<T>,
) -> Result<(T, Layout)> {
    let header = Header::parse(envelope_start)?;
    let layout = Layout::new(&header, envelope_len);
    let verified = verify(header, dek)?;
    // Once a DEK is involved, a length no envelope can have is a truncation like any
    // other: "could not decrypt".
    let layout = layout.map_err(|_| Error::DecryptFailed)?;
    Ok((verified, layout))
}

/// How to open one sealed chunk whose framing has been checked: AES-256-GCM with
/// [`nonce`](Self::nonce) and [`aad`](Self::aad) over the first
/// [`body_len`](Self::body_len) bytes of the sealed chunk, whose last 16 bytes are the
/// tag (the layout WebCrypto's `decrypt` takes as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkParams {
    index: u64,
    last: bool,
    nonce: [u8; NONCE_LEN],
    body_len: usize,
}

impl ChunkParams {
    /// The framing rules of docs/FORMAT.md section 5 for sealed chunk `index` of
    /// `sealed_len` bytes: every chunk but the last is exactly full, the last is not
    /// larger and is empty only when it is the only one, and the index is below the
    /// format's chunk limit. Every path that opens a chunk checks it here.
    pub(crate) fn check(
        chunk_size: u32,
        index: u64,
        sealed_len: usize,
        last: bool,
    ) -> Result<Self> {
        let chunk_size = chunk_size as usize;
        let body_len = sealed_len
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
        Ok(Self {
            index,
            last,
            nonce: chunk_nonce(index, last),
            body_len,
        })
    }

    /// The chunk's index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Whether this is the envelope's final chunk.
    pub fn is_last(&self) -> bool {
        self.last
    }

    /// The chunk's 96-bit STREAM nonce (its counter and the final flag).
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// The additional authenticated data (empty in format v1).
    pub fn aad(&self) -> &'static [u8] {
        CHUNK_AAD
    }

    /// Length of the ciphertext before the tag: the plaintext length.
    pub fn body_len(&self) -> usize {
        self.body_len
    }

    /// Length of the sealed chunk: ciphertext and tag.
    pub fn sealed_len(&self) -> usize {
        self.body_len + TAG_LEN
    }
}

/// A header whose DEK has passed the key commitment and the header MAC, for opening
/// its chunks with an AES-256-GCM the core does not run.
///
/// It hands out the payload key once ([`take_payload_key`](Self::take_payload_key)),
/// so that the caller can move it into its engine (a non-extractable WebCrypto key) and
/// no other copy remains here. `Debug` never shows the key.
pub struct VerifiedHeader {
    header: Header,
    payload_key: Option<Zeroizing<[u8; 32]>>,
}

impl fmt::Debug for VerifiedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.payload_key.is_some() {
            "[redacted]"
        } else {
            "[taken]"
        };
        f.debug_struct("VerifiedHeader")
            .field("recording_id", &self.header.recording_id())
            .field("payload_key", &key)
            .finish()
    }
}

impl VerifiedHeader {
    /// Verifies `dek` against the header's key commitment and MAC, as
    /// [`Decryptor::new`](crate::Decryptor::new) does.
    pub fn new(header: Header, dek: &Dek) -> Result<Self> {
        let payload_key = payload_key(&header, dek)?;
        Ok(Self {
            header,
            payload_key: Some(payload_key),
        })
    }

    /// For a whole envelope of `envelope_len` bytes: the same checks, in the same
    /// order and with the same errors, that [`open`](crate::open) makes before its
    /// first chunk. `envelope_start` is the envelope's beginning: at least the whole
    /// header, or the whole envelope if it is shorter (its first
    /// [`MAX_HEADER_LEN`](crate::header::MAX_HEADER_LEN) bytes always suffice).
    ///
    /// Then open every chunk of the layout:
    /// [`chunk(i, range_len, layout.is_last(i))`](Self::chunk) for
    /// [`layout.chunk_range(i)`](Layout::chunk_range).
    pub fn for_envelope(
        envelope_start: &[u8],
        envelope_len: u64,
        dek: &Dek,
    ) -> Result<(Self, Layout)> {
        whole_envelope(envelope_start, envelope_len, dek, Self::new)
    }

    /// The verified header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The AES-256-GCM key of every chunk, the first time; `None` afterwards.
    pub fn take_payload_key(&mut self) -> Option<Zeroizing<[u8; 32]>> {
        self.payload_key.take()
    }

    /// The nonce and AAD for sealed chunk `index` of `sealed_len` bytes (`last`: the
    /// envelope's final chunk), after exactly the framing checks
    /// [`Decryptor::open_chunk`](crate::Decryptor::open_chunk) makes. Fails with
    /// [`Error::DecryptFailed`] for a chunk that cannot be where it is said to be.
    pub fn chunk(&self, index: u64, sealed_len: usize, last: bool) -> Result<ChunkParams> {
        ChunkParams::check(self.header.chunk_size(), index, sealed_len, last)
    }
}

/// One sealed chunk (ciphertext and tag) cut from a stream, with its checked
/// parameters.
#[derive(Debug, Clone, Copy)]
pub struct SealedChunk<'a> {
    params: ChunkParams,
    sealed: &'a [u8],
}

impl<'a> SealedChunk<'a> {
    /// How to open it.
    pub fn params(&self) -> &ChunkParams {
        &self.params
    }

    /// The sealed bytes: ciphertext, then the 16-byte tag.
    pub fn sealed(&self) -> &'a [u8] {
        self.sealed
    }

    /// The ciphertext and the tag, apart.
    pub fn split(&self) -> (&'a [u8], &'a [u8]) {
        // `params` was checked against exactly these bytes, so the split is in range.
        self.sealed
            .split_at_checked(self.params.body_len)
            .unwrap_or((self.sealed, &[]))
    }
}

/// Splits an envelope that arrives in pieces of any size into its header and its
/// sealed chunks, each with its framing checked. This is the one framer of the
/// core: [`Opener`](crate::Opener) opens what it hands out with the core's AEAD, a
/// detached opener with another.
///
/// When the header is complete, [`push`](Self::push) hands it to `start`, which
/// verifies the DEK and builds what opens the chunks (`T`). A chunk is handed to
/// `open` only once the bytes after it show it is not the last;
/// [`finish`](Self::finish) hands out the final chunk, so a truncated stream or
/// trailing bytes fail there. The framer holds at most the header and one sealed
/// chunk; whole chunks inside a pushed slice are handed out where they lie. After an
/// error, its own or one reported by [`fail`](Self::fail), it refuses all further
/// input, repeating that first error.
pub struct Framer<T> {
    state: State<T>,
}

enum State<T> {
    Header(Vec<u8>),
    Payload(Box<Payload<T>>),
    Failed(Error),
}

struct Payload<T> {
    opener: T,
    chunk_size: u32,
    pending: Vec<u8>,
    index: u64,
}

impl<T> fmt::Debug for Framer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Header(_) => "reading header",
            State::Payload(_) => "reading payload",
            State::Failed(_) => "failed",
        };
        f.debug_struct("Framer")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<T> Default for Framer<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Framer<T> {
    /// A framer waiting for the header.
    pub fn new() -> Self {
        Self {
            state: State::Header(Vec::new()),
        }
    }

    /// What `start` built from the header, once the header has arrived.
    pub fn opener(&self) -> Option<&T> {
        match &self.state {
            State::Payload(p) => Some(&p.opener),
            _ => None,
        }
    }

    /// Takes more envelope bytes. Calls `start` once, when the header is complete,
    /// then `open` for every chunk now known not to be the last, in order.
    pub fn push(
        &mut self,
        data: &[u8],
        start: impl FnOnce(Header) -> Result<T>,
        mut open: impl FnMut(&mut T, SealedChunk<'_>) -> Result<()>,
    ) -> Result<()> {
        let result = self.push_inner(data, start, &mut open);
        if let Err(e) = &result {
            self.fail(e.clone());
        }
        result
    }

    fn push_inner(
        &mut self,
        mut data: &[u8],
        start: impl FnOnce(Header) -> Result<T>,
        open: &mut impl FnMut(&mut T, SealedChunk<'_>) -> Result<()>,
    ) -> Result<()> {
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
            let chunk_size = header.chunk_size();
            let opener = start(header)?;
            self.state = State::Payload(Box::new(Payload {
                opener,
                chunk_size,
                pending: Vec::with_capacity(chunk_size as usize + TAG_LEN),
                index: 0,
            }));
        }
        match &mut self.state {
            State::Payload(p) => p.push(data, open),
            State::Header(_) => Ok(()),
            State::Failed(e) => Err(e.clone()),
        }
    }

    /// Ends the stream: hands the final chunk to `open` and returns what it returns.
    /// Fails if the header never completed, and (through the framing checks) if the
    /// stream was truncated or has trailing bytes.
    pub fn finish<R>(self, open: impl FnOnce(&mut T, SealedChunk<'_>) -> Result<R>) -> Result<R> {
        match self.state {
            State::Payload(mut p) => {
                let params = ChunkParams::check(p.chunk_size, p.index, p.pending.len(), true)?;
                let chunk = SealedChunk {
                    params,
                    sealed: &p.pending,
                };
                open(&mut p.opener, chunk)
            }
            State::Header(buf) => Err(Error::IncompleteHeader {
                needed: header_len(&buf).unwrap_or(PREFIX_LEN),
                available: buf.len(),
            }),
            State::Failed(e) => Err(e),
        }
    }

    /// Records a failure found outside the framer, such as a chunk whose tag did not
    /// verify in the caller's AEAD: from now on the framer refuses all input with its
    /// first error.
    pub fn fail(&mut self, error: Error) {
        if !matches!(self.state, State::Failed(_)) {
            self.state = State::Failed(error);
        }
    }
}

impl<T> Payload<T> {
    fn push(
        &mut self,
        mut data: &[u8],
        open: &mut impl FnMut(&mut T, SealedChunk<'_>) -> Result<()>,
    ) -> Result<()> {
        let stride = self.chunk_size as usize + TAG_LEN;
        while !data.is_empty() {
            if self.pending.len() == stride {
                self.hand_out(None, open)?;
                self.pending.clear();
            }
            if self.pending.is_empty() && data.len() > stride {
                // A whole chunk with more bytes after it: hand it out where it lies.
                let (sealed, rest) = data.split_at(stride);
                self.hand_out(Some(sealed), open)?;
                data = rest;
                continue;
            }
            let take = (stride - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    /// Hands out `sealed`, or the pending chunk, as the next chunk but not the last.
    fn hand_out(
        &mut self,
        sealed: Option<&[u8]>,
        open: &mut impl FnMut(&mut T, SealedChunk<'_>) -> Result<()>,
    ) -> Result<()> {
        let sealed = sealed.unwrap_or(&self.pending);
        let params = ChunkParams::check(self.chunk_size, self.index, sealed.len(), false)?;
        open(&mut self.opener, SealedChunk { params, sealed })?;
        self.index = self.index.saturating_add(1);
        Ok(())
    }
}
