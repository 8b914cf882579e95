//! Sealing: one-shot and streaming. The [`Sealer`] holds at most one chunk of
//! plaintext, so a media tier can write audio as it is produced.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::aead::{ChunkAead, SoftAes256Gcm, TAG_LEN, chunk_nonce};
use crate::dek::Dek;
use crate::error::{Error, Result};
use crate::header::{DEFAULT_CHUNK_SIZE, Header, HeaderFields, MediaKind, SALT_LEN, Stanza};
use crate::kek::{KekPublicKey, WrapAlgorithm};
use crate::keys::DerivedKeys;
use crate::layout::MAX_CHUNKS;

/// A KEK that will be able to unwrap the envelope's DEK.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// The KEK's id, as the key service knows it.
    pub kek_id: String,
    /// The KEK's public key.
    pub key: KekPublicKey,
    /// How to wrap the DEK for it.
    pub algorithm: WrapAlgorithm,
}

impl Recipient {
    /// A recipient using the default wrap algorithm (RSA-OAEP-SHA256).
    pub fn new(kek_id: impl Into<String>, key: KekPublicKey) -> Self {
        Self {
            kek_id: kek_id.into(),
            key,
            algorithm: WrapAlgorithm::default(),
        }
    }

    /// The same recipient with another wrap algorithm.
    pub fn with_algorithm(mut self, algorithm: WrapAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    pub(crate) fn stanza<R: CryptoRng + ?Sized>(&self, dek: &Dek, rng: &mut R) -> Result<Stanza> {
        Ok(Stanza {
            kek_id: self.kek_id.clone(),
            algorithm: self.algorithm,
            wrapped_dek: self.key.wrap(dek, self.algorithm, rng)?,
        })
    }
}

/// What the header of a new envelope says about the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealParams {
    /// Owning organisation (1..=256 bytes).
    pub org_id: String,
    /// Recording id (1..=256 bytes).
    pub recording_id: String,
    /// What the recording is.
    pub media_kind: MediaKind,
    /// MIME type of the plaintext, visible ASCII.
    pub content_type: String,
    /// Creation time in Unix milliseconds (the core has no clock).
    pub created_at_ms: u64,
    /// Authenticated, unencrypted context (at most 64 entries).
    pub context: BTreeMap<String, String>,
    /// Plaintext bytes per chunk (16..=16 MiB, default 64 KiB).
    pub chunk_size: u32,
}

impl SealParams {
    /// Parameters with an empty context and the default chunk size.
    pub fn new(
        org_id: impl Into<String>,
        recording_id: impl Into<String>,
        media_kind: MediaKind,
        content_type: impl Into<String>,
        created_at_ms: u64,
    ) -> Self {
        Self {
            org_id: org_id.into(),
            recording_id: recording_id.into(),
            media_kind,
            content_type: content_type.into(),
            created_at_ms,
            context: BTreeMap::new(),
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }

    /// Adds an encryption-context entry; a key that is already present gets the new value.
    pub fn with_context(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.context.insert(key.into(), value.into());
        self
    }

    /// Sets the chunk size.
    pub fn with_chunk_size(mut self, chunk_size: u32) -> Self {
        self.chunk_size = chunk_size;
        self
    }
}

/// Streaming encryption of one recording.
///
/// Everything it emits through `out` is the envelope, in order: the header on the first
/// call, then each chunk once it is known not to be the last, then the final chunk on
/// [`Sealer::finish`].
pub struct Sealer<A: ChunkAead = SoftAes256Gcm> {
    aead: A,
    header: Header,
    header_written: bool,
    pending: Zeroizing<Vec<u8>>,
    chunk_size: usize,
    index: u64,
}

impl<A: ChunkAead> fmt::Debug for Sealer<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("recording_id", &self.header.recording_id())
            .field("chunks_sealed", &self.index)
            .finish_non_exhaustive()
    }
}

impl<A: ChunkAead> Sealer<A> {
    /// Starts an envelope for `dek`, wrapped for every recipient.
    pub fn new<R: CryptoRng + ?Sized>(
        rng: &mut R,
        dek: &Dek,
        params: &SealParams,
        recipients: &[Recipient],
    ) -> Result<Self> {
        if recipients.is_empty() {
            return Err(Error::InvalidParameter(
                "at least one recipient KEK is needed",
            ));
        }
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let keys = DerivedKeys::derive(dek, &salt);
        let stanzas = recipients
            .iter()
            .map(|r| r.stanza(dek, rng))
            .collect::<Result<Vec<_>>>()?;
        let fields = HeaderFields {
            chunk_size: params.chunk_size,
            salt: &salt,
            created_at_ms: params.created_at_ms,
            media_kind: params.media_kind,
            org_id: &params.org_id,
            recording_id: &params.recording_id,
            content_type: &params.content_type,
            context: &params.context,
        };
        let header = Header::assemble(&fields, &stanzas, &keys)?;
        let chunk_size = params.chunk_size as usize;
        Ok(Self {
            aead: A::new(keys.payload_key()),
            header,
            header_written: false,
            pending: Zeroizing::new(Vec::with_capacity(chunk_size)),
            chunk_size,
            index: 0,
        })
    }

    /// The header this envelope starts with.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Takes more plaintext; appends any finished envelope bytes to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.write_header(out);
        while !data.is_empty() {
            if self.pending.len() == self.chunk_size {
                self.seal_pending(false, out)?;
            }
            let take = (self.chunk_size - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    /// Seals the final chunk and appends the rest of the envelope to `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<()> {
        self.write_header(out);
        self.seal_pending(true, out)
    }

    fn write_header(&mut self, out: &mut Vec<u8>) {
        if !self.header_written {
            out.extend_from_slice(self.header.as_bytes());
            self.header_written = true;
        }
    }

    fn seal_pending(&mut self, last: bool, out: &mut Vec<u8>) -> Result<()> {
        if self.index >= MAX_CHUNKS {
            return Err(Error::LimitExceeded(
                "an envelope holds at most 2^32 chunks",
            ));
        }
        let start = out.len();
        out.extend_from_slice(&self.pending);
        let sealed = self
            .aead
            .seal(&chunk_nonce(self.index, last), &[], &mut out[start..]);
        let Ok(tag) = sealed else {
            out.truncate(start);
            return Err(Error::LimitExceeded("the AEAD refused the chunk"));
        };
        out.extend_from_slice(&tag);
        self.pending.clear();
        self.index += 1;
        Ok(())
    }
}

/// Seals a whole plaintext in one call: a new envelope for `dek`.
pub fn seal<R: CryptoRng + ?Sized>(
    rng: &mut R,
    dek: &Dek,
    params: &SealParams,
    recipients: &[Recipient],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    seal_with::<SoftAes256Gcm, R>(rng, dek, params, recipients, plaintext)
}

/// [`seal`] with another implementation of the chunk AEAD (a host's hardware AES).
pub fn seal_with<A: ChunkAead, R: CryptoRng + ?Sized>(
    rng: &mut R,
    dek: &Dek,
    params: &SealParams,
    recipients: &[Recipient],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let mut sealer = Sealer::<A>::new(rng, dek, params, recipients)?;
    let chunks = plaintext.len() / params.chunk_size.max(1) as usize + 1;
    let capacity = chunks
        .checked_mul(TAG_LEN)
        .and_then(|tags| tags.checked_add(plaintext.len()))
        .and_then(|n| n.checked_add(sealer.header().header_len()))
        .ok_or(Error::LimitExceeded("the envelope would not fit in memory"))?;
    let mut out = Vec::new();
    out.try_reserve_exact(capacity)
        .map_err(|_| Error::LimitExceeded("the envelope would not fit in memory"))?;
    sealer.push(plaintext, &mut out)?;
    sealer.finish(&mut out)?;
    Ok(out)
}
