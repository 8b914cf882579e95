//! Where every chunk sits in an envelope of known length (docs/FORMAT.md section 5):
//! chunk counts, plaintext length and byte ranges for random access and HTTP Range.

use core::ops::Range;

use crate::aead::TAG_LEN;
use crate::error::{Error, Result};
use crate::header::{Header, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};

/// Most chunks one envelope may hold (the 32-bit chunk limit of the format).
pub const MAX_CHUNKS: u64 = 1 << 32;

/// The chunk geometry of one envelope, derived from its header and total length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    header_len: u64,
    chunk_size: u64,
    chunk_count: u64,
    plaintext_len: u64,
}

impl Layout {
    /// The layout of an envelope of `envelope_len` bytes whose header is `header`.
    /// Fails with [`Error::OutOfRange`] when no valid envelope has that length (a
    /// truncated or padded file).
    pub fn new(header: &Header, envelope_len: u64) -> Result<Self> {
        Self::from_lengths(
            header.header_len() as u64,
            header.chunk_size(),
            envelope_len,
        )
    }

    /// The layout from raw lengths: what a client that fetched only the 14-byte prefix
    /// and the chunk size can compute.
    pub fn from_lengths(header_len: u64, chunk_size: u32, envelope_len: u64) -> Result<Self> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(Error::OutOfRange("chunk size outside 16..=16777216"));
        }
        let bad = Error::OutOfRange("the envelope length is not one a complete envelope can have");
        let chunk_size = u64::from(chunk_size);
        let stride = chunk_size + TAG_LEN as u64;
        let payload = envelope_len.checked_sub(header_len).ok_or(bad.clone())?;
        let chunk_count = payload.div_ceil(stride);
        if chunk_count == 0 || chunk_count > MAX_CHUNKS {
            return Err(bad);
        }
        let last_len = payload - (chunk_count - 1) * stride;
        let min_last = if chunk_count > 1 {
            TAG_LEN as u64 + 1
        } else {
            TAG_LEN as u64
        };
        if last_len < min_last {
            return Err(bad);
        }
        Ok(Self {
            header_len,
            chunk_size,
            chunk_count,
            plaintext_len: payload - chunk_count * TAG_LEN as u64,
        })
    }

    /// Number of chunks (at least one).
    pub fn chunk_count(&self) -> u64 {
        self.chunk_count
    }

    /// Plaintext length in bytes.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// Header length in bytes: the payload starts here.
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// Plaintext bytes per full chunk.
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// Total envelope length.
    pub fn envelope_len(&self) -> u64 {
        self.header_len + self.plaintext_len + self.chunk_count * TAG_LEN as u64
    }

    /// Whether `index` is the final chunk.
    pub fn is_last(&self, index: u64) -> bool {
        index.checked_add(1) == Some(self.chunk_count)
    }

    /// The envelope byte range that holds sealed chunk `index`.
    pub fn chunk_range(&self, index: u64) -> Result<Range<u64>> {
        if index >= self.chunk_count {
            return Err(Error::OutOfRange("chunk index past the last chunk"));
        }
        let stride = self.chunk_size + TAG_LEN as u64;
        let start = self.header_len + index * stride;
        let end = (start + stride).min(self.envelope_len());
        Ok(start..end)
    }

    /// The plaintext byte range that chunk `index` decrypts to.
    pub fn chunk_plaintext_range(&self, index: u64) -> Result<Range<u64>> {
        if index >= self.chunk_count {
            return Err(Error::OutOfRange("chunk index past the last chunk"));
        }
        let start = index * self.chunk_size;
        Ok(start..(start + self.chunk_size).min(self.plaintext_len))
    }

    /// The chunks needed to produce plaintext bytes `range` (end exclusive), as an
    /// inclusive-exclusive chunk index range. `range` must be non-empty and inside the
    /// plaintext.
    pub fn chunks_for(&self, range: Range<u64>) -> Result<Range<u64>> {
        if range.start >= range.end || range.end > self.plaintext_len {
            return Err(Error::OutOfRange(
                "the plaintext range is empty or past the end of the recording",
            ));
        }
        Ok(range.start / self.chunk_size..(range.end - 1) / self.chunk_size + 1)
    }

    /// The envelope byte range to fetch (for example with HTTP Range) to decrypt
    /// plaintext bytes `range`, and the first chunk index it starts with.
    pub fn ciphertext_range_for(&self, range: Range<u64>) -> Result<(Range<u64>, u64)> {
        let chunks = self.chunks_for(range)?;
        let first = self.chunk_range(chunks.start)?;
        let last = self.chunk_range(chunks.end - 1)?;
        Ok((first.start..last.end, chunks.start))
    }
}
