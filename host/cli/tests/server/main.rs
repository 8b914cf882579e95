//! The recording server through real HTTP on loopback: the `tapeseal` binary runs
//! as a child process with its own data directory, exactly as an operator runs it.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod access;
mod cluster;
#[cfg(feature = "failpoints")]
mod crash;
mod export;
mod flow;
mod grants;
mod keys;
mod kms;
mod limits;
mod lkm;
mod operations;
mod sealed;
