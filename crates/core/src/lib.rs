//! `tapeseal-core`: envelope format v1 for contact-centre recordings.
//!
//! Every recording gets its own AES-256 data key ([`Dek`]), wrapped with RSA-OAEP by
//! one or more organisation key-encryption keys ([`KekPublicKey`]) into key stanzas.
//! The recording is sealed in fixed-size AES-256-GCM chunks (the STREAM construction)
//! under a key derived from the DEK; the header is authenticated and key-committing.
//! The byte-level specification is `docs/FORMAT.md`.
//!
//! The core never holds a private KEK and performs no I/O: randomness comes from the
//! caller, bytes go in and out as slices and vectors. It builds for
//! `wasm32-unknown-unknown` and `wasm32-wasip2` with no platform crate. The chunk
//! AES-256-GCM can run elsewhere: through the [`aead::ChunkAead`] seam (a host's
//! hardware AES), or behind an asynchronous API such as WebCrypto with the
//! [`detached`] API, where the core still makes every check and names every nonce.
//!
//! Every failure is an [`Error`]; [`Error::code`] gives its stable [`ErrorCode`], from
//! the one list of codes that every face of tapeseal (the WIT component, the npm
//! package, the server and the CLI) reports (`docs/ERRORS.md`).
//!
//! ```
//! use tapeseal_core::{Dek, KekPublicKey, MediaKind, Recipient, SealParams, open, seal};
//! # use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
//! # let mut rng = ChaCha20Rng::seed_from_u64(7);
//! # let pem = include_str!("../../../tests/vectors/keys/kek-a.public.pem");
//! let kek = KekPublicKey::from_pem(pem)?;
//! let dek = Dek::generate(&mut rng);
//! let params = SealParams::new("org-1", "rec-1", MediaKind::Call, "audio/wav", 1_700_000_000_000);
//! let envelope = seal(&mut rng, &dek, &params, &[Recipient::new("kek-a", kek)], b"hello")?;
//!
//! let info = tapeseal_core::inspect(&envelope)?;
//! assert_eq!(info.header.stanzas()[0].kek_id, "kek-a");
//! assert_eq!(open(&envelope, &dek)?, b"hello");
//! # Ok::<(), tapeseal_core::Error>(())
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub mod aead;
mod dek;
pub mod detached;
mod error;
pub mod header;
mod inspect;
mod kek;
mod keys;
pub mod layout;
mod open;
mod rewrap;
mod seal;
mod wire;

pub use dek::{DEK_LEN, Dek};
pub use detached::{ChunkParams, Framer, SealedChunk, VerifiedHeader};
pub use error::{Error, ErrorCode, PerCode, Result};
pub use header::{Header, MediaKind, Stanza};
pub use inspect::{Inspection, inspect};
pub use kek::{ACCEPTED_MODULUS_BITS, KekPublicKey, WrapAlgorithm};
pub use layout::Layout;
pub use open::{Decryptor, Opener, open, open_with};
pub use rewrap::{RewrapMode, rewrap, rewrap_header};
pub use seal::{Recipient, SealParams, Sealer, seal, seal_with};

/// Re-exported so callers name the same RNG traits the core takes.
pub use rand_core;
