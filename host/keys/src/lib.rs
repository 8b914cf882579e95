//! `tapeseal-keys`: where private KEKs live. [`kek`] holds RSA key pairs in aws-lc-rs
//! (constant-time); [`service`] is the `KeyService` seam with the one stanza-unwrap
//! loop; [`managed`] is its first implementation (private KEKs sealed under a master
//! key in the catalogue); [`lkm`] is the second (a Local Key Manager decrypts, over
//! Hawk-authenticated HTTPS, see [`hawk`]); [`kms`] is the third (private KEKs held
//! only as AWS KMS ciphertext); [`dispatch`] picks one per organisation;
//! [`storage`] is the server's own storage key. This crate never names wasmtime or an
//! HTTP server framework (the LKM client uses reqwest).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cache;
pub mod dispatch;
pub mod grant;
pub mod hawk;
pub mod kek;
pub mod kms;
pub mod lkm;
pub mod managed;
pub mod service;
pub mod storage;

pub use dispatch::KeyServices;
pub use kek::{KekPair, KeyError, pem_encode};
pub use managed::{ManagedKeyError, ManagedKeys, MasterKey};
pub use service::{
    CurrentKek, KeyService, KeyServiceError, Purpose, StanzaRef, UnwrapContext, unwrap_dek,
};
pub use storage::StorageKey;
