//! `tapeseal-store`: what the server keeps. The [`catalogue`] (organisations, tokens,
//! KEKs, schedules, recordings, jobs and the audit log, in SQLite or PostgreSQL
//! through [`db`]) and the recording
//! [`repo`]sitory (objects behind `object_store`), with [`durable`] writes: a thing
//! is fsynced, named and its directory fsynced before the catalogue says it exists.
//! It reads envelope headers with `tapeseal-core` directly and never names wasmtime
//! or an HTTP framework.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod catalogue;
pub mod datadir;
pub mod db;
pub mod durable;
pub mod ids;
mod pgtls;
pub mod pinned;
pub mod repo;
pub mod s3;
pub mod schedule;
pub mod sqlite;
pub mod time;

pub use catalogue::{Catalogue, CatalogueError};
pub use datadir::DataDir;

/// A crash point for the failpoint tests: with the `failpoints` feature and
/// `FAILPOINTS=<name>=return`, the process aborts there, as a power cut or `kill -9`
/// would stop it; `FAILPOINTS=<name>=sleep(<ms>)` holds the thread there instead,
/// which lets a test line up concurrent requests at that point. Without the feature
/// it compiles to nothing.
#[macro_export]
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        {
            if $crate::fail::eval($name, |_| ()).is_some() {
                ::std::process::abort();
            }
        }
    };
}

#[cfg(feature = "failpoints")]
#[doc(hidden)]
pub use fail;

/// Runs blocking work (SQLite, file I/O) so that it does not stall an async worker:
/// inside a multi-threaded tokio runtime the worker hands its other tasks to another
/// thread first (`block_in_place`); anywhere else it simply runs.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
