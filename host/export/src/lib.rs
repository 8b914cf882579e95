//! `tapeseal-export`: what bulk export writes and where. The [`layout`] of the files,
//! the [`destination`] (a directory or S3 with server-side encryption), optional
//! [`pgp`] re-encryption to a recipient's key, and the [`manifest`] and per-recording
//! metadata. It decrypts nothing itself: the server's export job opens each
//! recording in the guest and streams the plaintext here.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod destination;
pub mod layout;
pub mod manifest;
pub mod pgp;

pub use destination::{Destination, DestinationSpec, S3Settings, Secret};
