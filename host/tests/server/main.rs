//! The recording server through real HTTP on loopback: the `tapeseal` binary runs
//! as a child process with its own data directory, exactly as an operator runs it.

mod support;

mod access;
mod flow;
mod keys;
mod operations;
