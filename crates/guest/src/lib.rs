//! `tapeseal-guest`: tapeseal-core exported through the WIT world in `wit/tapeseal.wit`,
//! built for `wasm32-wasip2` and run by the wasmtime host. Conversion only: every
//! format rule lives in the core. It needs randomness (wasi:random) and the host's
//! chunk AEAD (the `chunk-aead` import: hardware AES-256-GCM for each chunk).
//!
//! Everything here is for WebAssembly only: built for the host (as `cargo build
//! --workspace` does), the crate is empty, because the component's export names are
//! not symbols a native linker accepts.
#![cfg(target_family = "wasm")]

mod aead;
mod convert;

use std::cell::RefCell;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tapeseal_core::{Dek, ErrorCode as Code, Header, Layout, RewrapMode as CoreRewrapMode};
use zeroize::Zeroizing;

use crate::bindings::exports::tapeseal::core::envelope::{
    ByteRange, ChunkOpener, Error, Guest, GuestChunkOpener, GuestOpener, GuestSealer, Inspection,
    Opener, Recipient, RewrapMode, SealParams, Sealer,
};

use crate::aead::Aead;
use crate::convert::{byte_range, dek, error, from_core, inspection, params, recipients};

/// The ABI glue wit-bindgen generates; it is the only unsafe code in this crate.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        world: "tapeseal",
        path: "../../wit",
    });

    use super::Component;
    export!(Component with_types_in self);
}

/// A CSPRNG for one call: ChaCha20 seeded from wasi:random.
fn rng() -> Result<ChaCha20Rng, Error> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).map_err(|e| {
        error(
            Code::RandomUnavailable,
            format!("no secure random source: {e}"),
        )
    })?;
    Ok(ChaCha20Rng::from_seed(*seed))
}

fn finished() -> Error {
    error(Code::InvalidState, "this stream has already finished")
}

struct Component;

impl Guest for Component {
    type Sealer = SealerImpl;
    type Opener = OpenerImpl;
    type ChunkOpener = ChunkOpenerImpl;

    fn generate_dek() -> Result<Vec<u8>, Error> {
        Ok(Dek::generate(&mut rng()?).as_bytes().to_vec())
    }

    fn header_length(prefix: Vec<u8>) -> Result<u64, Error> {
        tapeseal_core::header::header_len(&prefix)
            .map(|n| n as u64)
            .map_err(from_core)
    }

    fn inspect(bytes: Vec<u8>) -> Result<Inspection, Error> {
        tapeseal_core::inspect(&bytes)
            .map(|i| inspection(&i))
            .map_err(from_core)
    }

    fn seal(
        dek_bytes: Vec<u8>,
        seal_params: SealParams,
        to: Vec<Recipient>,
        plaintext: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let dek = dek(dek_bytes)?;
        let params = params(seal_params)?;
        let recipients = recipients(to)?;
        tapeseal_core::seal_with::<Aead, _>(&mut rng()?, &dek, &params, &recipients, &plaintext)
            .map_err(from_core)
    }

    fn open(envelope: Vec<u8>, dek_bytes: Vec<u8>) -> Result<Vec<u8>, Error> {
        let dek = dek(dek_bytes)?;
        tapeseal_core::open_with::<Aead>(&envelope, &dek).map_err(from_core)
    }

    fn rewrap_header(
        header: Vec<u8>,
        dek_bytes: Vec<u8>,
        to: Vec<Recipient>,
        mode: RewrapMode,
    ) -> Result<Vec<u8>, Error> {
        let dek = dek(dek_bytes)?;
        let recipients = recipients(to)?;
        let mode = match mode {
            RewrapMode::Replace => CoreRewrapMode::Replace,
            RewrapMode::Add => CoreRewrapMode::Add,
        };
        tapeseal_core::rewrap_header(&mut rng()?, &header, &dek, &recipients, mode)
            .map(|h| h.as_bytes().to_vec())
            .map_err(from_core)
    }
}

struct SealerImpl {
    header: Vec<u8>,
    inner: RefCell<Option<tapeseal_core::Sealer<Aead>>>,
}

impl GuestSealer for SealerImpl {
    fn create(
        dek_bytes: Vec<u8>,
        seal_params: SealParams,
        to: Vec<Recipient>,
    ) -> Result<Sealer, Error> {
        let dek = dek(dek_bytes)?;
        let params = params(seal_params)?;
        let recipients = recipients(to)?;
        let inner = tapeseal_core::Sealer::<Aead>::new(&mut rng()?, &dek, &params, &recipients)
            .map_err(from_core)?;
        Ok(Sealer::new(SealerImpl {
            header: inner.header().as_bytes().to_vec(),
            inner: RefCell::new(Some(inner)),
        }))
    }

    fn header(&self) -> Vec<u8> {
        self.header.clone()
    }

    fn push(&self, data: Vec<u8>) -> Result<Vec<u8>, Error> {
        let mut slot = self.inner.borrow_mut();
        let sealer = slot.as_mut().ok_or_else(finished)?;
        let mut out = Vec::with_capacity(data.len() + 1024);
        sealer.push(&data, &mut out).map_err(from_core)?;
        Ok(out)
    }

    fn finish(&self) -> Result<Vec<u8>, Error> {
        let sealer = self.inner.borrow_mut().take().ok_or_else(finished)?;
        let mut out = Vec::new();
        sealer.finish(&mut out).map_err(from_core)?;
        Ok(out)
    }
}

struct OpenerImpl(RefCell<Option<tapeseal_core::Opener<Aead>>>);

impl GuestOpener for OpenerImpl {
    fn create(dek_bytes: Vec<u8>) -> Result<Opener, Error> {
        let dek = dek(dek_bytes)?;
        Ok(Opener::new(OpenerImpl(RefCell::new(Some(
            tapeseal_core::Opener::<Aead>::new(&dek),
        )))))
    }

    fn push(&self, data: Vec<u8>) -> Result<Vec<u8>, Error> {
        let mut slot = self.0.borrow_mut();
        let opener = slot.as_mut().ok_or_else(finished)?;
        let mut out = Vec::with_capacity(data.len());
        opener.push(&data, &mut out).map_err(from_core)?;
        Ok(out)
    }

    fn finish(&self) -> Result<Vec<u8>, Error> {
        let opener = self.0.borrow_mut().take().ok_or_else(finished)?;
        let mut out = Vec::new();
        opener.finish(&mut out).map_err(from_core)?;
        Ok(out)
    }
}

struct ChunkOpenerImpl {
    decryptor: tapeseal_core::Decryptor<Aead>,
    layout: Layout,
}

impl GuestChunkOpener for ChunkOpenerImpl {
    fn create(
        header: Vec<u8>,
        dek_bytes: Vec<u8>,
        envelope_len: u64,
    ) -> Result<ChunkOpener, Error> {
        let dek = dek(dek_bytes)?;
        let header = Header::parse(&header).map_err(from_core)?;
        let layout = Layout::new(&header, envelope_len).map_err(from_core)?;
        let decryptor = tapeseal_core::Decryptor::<Aead>::new(header, &dek).map_err(from_core)?;
        Ok(ChunkOpener::new(ChunkOpenerImpl { decryptor, layout }))
    }

    fn chunk_count(&self) -> u64 {
        self.layout.chunk_count()
    }

    fn plaintext_len(&self) -> u64 {
        self.layout.plaintext_len()
    }

    fn chunk_range(&self, index: u64) -> Result<ByteRange, Error> {
        let range = self.layout.chunk_range(index).map_err(from_core)?;
        Ok(byte_range(range, index..index + 1))
    }

    fn byte_range(&self, start: u64, end: u64) -> Result<ByteRange, Error> {
        let chunks = self.layout.chunks_for(start..end).map_err(from_core)?;
        let (range, _) = self
            .layout
            .ciphertext_range_for(start..end)
            .map_err(from_core)?;
        Ok(byte_range(range, chunks))
    }

    fn open_chunk(&self, index: u64, chunk: Vec<u8>) -> Result<Vec<u8>, Error> {
        if index >= self.layout.chunk_count() {
            return Err(error(Code::OutOfRange, "chunk index past the last chunk"));
        }
        self.decryptor
            .open_chunk(index, &chunk, self.layout.is_last(index))
            .map_err(from_core)
    }
}
