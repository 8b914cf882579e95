//! `tapeseal-host`: the server side of tapeseal. The envelope core runs as a
//! WebAssembly component inside wasmtime ([`engine`]); KEK private keys live only
//! here, in aws-lc-rs ([`kek`]); [`cli`] is the `tapeseal` command.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod engine;
pub mod kek;
