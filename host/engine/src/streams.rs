//! The guest's streaming resources, each in a store of its own: a sealer, an opener,
//! and random access to one envelope's chunks.

use wasmtime::component::ResourceAny;

use crate::{ByteRange, Result, Session};

/// A streaming seal running in the guest.
pub struct StreamSealer {
    pub(crate) session: Session,
    pub(crate) handle: ResourceAny,
    pub(crate) header: Vec<u8>,
}

impl std::fmt::Debug for StreamSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSealer").finish_non_exhaustive()
    }
}

impl StreamSealer {
    /// The envelope's header (also the start of what `push` returns first).
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Takes plaintext; returns the envelope bytes now final.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        let handle = self.handle;
        self.session
            .call(data.len(), |b, st| b.sealer().call_push(st, handle, data))
    }

    /// Seals the final chunk; returns the rest of the envelope.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        let handle = self.handle;
        self.session
            .call(0, |b, st| b.sealer().call_finish(st, handle))
    }

    /// Fuel the last call used.
    pub fn last_fuel_used(&self, input_len: usize) -> u64 {
        self.session.fuel_used(input_len)
    }
}

/// A streaming open running in the guest.
pub struct StreamOpener {
    pub(crate) session: Session,
    pub(crate) handle: ResourceAny,
}

impl std::fmt::Debug for StreamOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamOpener").finish_non_exhaustive()
    }
}

impl StreamOpener {
    /// Takes envelope bytes; returns plaintext of chunks now authenticated.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        let handle = self.handle;
        self.session
            .call(data.len(), |b, st| b.opener().call_push(st, handle, data))
    }

    /// Opens the final chunk; fails if the stream was truncated or padded.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        let handle = self.handle;
        self.session
            .call(0, |b, st| b.opener().call_finish(st, handle))
    }

    /// Fuel the last call used.
    pub fn last_fuel_used(&self, input_len: usize) -> u64 {
        self.session.fuel_used(input_len)
    }
}

/// Random access to one envelope's chunks in the guest.
pub struct ChunkOpener {
    pub(crate) session: Session,
    pub(crate) handle: ResourceAny,
}

impl std::fmt::Debug for ChunkOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkOpener").finish_non_exhaustive()
    }
}

impl ChunkOpener {
    /// Number of chunks.
    pub fn chunk_count(&mut self) -> Result<u64> {
        let handle = self.handle;
        self.session.call(0, |b, st| {
            b.chunk_opener().call_chunk_count(st, handle).map(Ok)
        })
    }

    /// The plaintext length the envelope holds.
    pub fn plaintext_len(&mut self) -> Result<u64> {
        let handle = self.handle;
        self.session.call(0, |b, st| {
            b.chunk_opener().call_plaintext_len(st, handle).map(Ok)
        })
    }

    /// The envelope byte range of chunk `index`.
    pub fn chunk_range(&mut self, index: u64) -> Result<ByteRange> {
        let handle = self.handle;
        self.session.call(0, |b, st| {
            b.chunk_opener().call_chunk_range(st, handle, index)
        })
    }

    /// The envelope bytes needed for plaintext `[start, end)`.
    pub fn byte_range(&mut self, start: u64, end: u64) -> Result<ByteRange> {
        let handle = self.handle;
        self.session.call(0, |b, st| {
            b.chunk_opener().call_byte_range(st, handle, start, end)
        })
    }

    /// Opens chunk `index` from its bytes.
    pub fn open_chunk(&mut self, index: u64, chunk: &[u8]) -> Result<Vec<u8>> {
        let handle = self.handle;
        self.session.call(chunk.len(), |b, st| {
            b.chunk_opener().call_open_chunk(st, handle, index, chunk)
        })
    }
}
