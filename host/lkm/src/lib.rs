//! `tapeseal-lkm`: the reference Local Key Manager. It holds an organisation's RSA
//! private keys, sealed at rest under its own master key, and decrypts wrapped DEKs
//! for platforms that present Hawk credentials, over HTTPS, speaking the Genesys-style
//! wire contract of `tapeseal_keys::lkm::wire` (docs/LKM.md).
//!
//! [`store`] keeps key pairs, credentials, grant issuers and the request log in
//! SQLite; [`keyring`] seals, generates, imports and decrypts; [`serve`] runs the
//! HTTPS API, whose handlers authenticate (Hawk with replay protection, the admin
//! token, or a single-use playback grant for browser decrypt), limit, and record
//! every request.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod auth;
pub mod config;
mod cors;
pub mod data;
mod error;
mod grants;
mod http;
pub mod ids;
mod incoming;
pub mod keyring;
mod limits;
mod reply;
mod reqlog;
pub mod serve;
pub mod store;
pub mod tls;

pub use config::{Config, Limits, Rate, TlsFiles, TlsMode};
pub use data::{AdminToken, DataDir, TokenSource};
pub use error::{LkmError, Result};
pub use keyring::Keyring;
pub use serve::{Bound, bind, run};
