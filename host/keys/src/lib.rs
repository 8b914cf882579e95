//! `tapeseal-keys`: where private KEKs live. [`kek`] holds RSA key pairs in aws-lc-rs
//! (constant-time); [`service`] is the `KeyService` seam with the one stanza-unwrap
//! loop; [`managed`] is its first implementation (private KEKs sealed under a master
//! key in the catalogue); [`storage`] is the server's own storage key. This crate
//! never names wasmtime or an HTTP framework.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod kek;
pub mod managed;
pub mod service;
pub mod storage;

pub use kek::{KekPair, KeyError, pem_encode};
pub use managed::{ManagedKeyError, ManagedKeys, MasterKey};
pub use service::{
    CurrentKek, KeyService, KeyServiceError, Purpose, StanzaRef, UnwrapContext, unwrap_dek,
};
pub use storage::StorageKey;
