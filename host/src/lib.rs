//! `tapeseal-host`: the server side of tapeseal. The envelope core runs as a
//! WebAssembly component inside wasmtime ([`engine`]); KEK private keys live only
//! here, in aws-lc-rs ([`kek`]); [`catalogue`] holds organisations, tokens, KEKs and
//! recordings for the server, and [`managed`] is the managed key service over it;
//! [`server`] is the recording server, [`samples`] has recordings to try it with,
//! and [`cli`] is the `tapeseal` command.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod catalogue;
pub mod cli;
pub mod engine;
pub mod kek;
pub mod managed;
pub mod samples;
pub mod schedule;
pub mod server;
