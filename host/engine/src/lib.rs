//! `tapeseal-engine`: the wasmtime embedding of the tapeseal-guest component, and the
//! only crate that names wasmtime.
//!
//! All wasmtime glue lives here, because wasmtime's API moves every month: the
//! component is compiled once (and kept on disk, `compiled.rs`), pre-instantiated, and
//! instantiated per operation or per stream in a store with a memory cap and a fuel
//! budget. The guest is granted randomness and the host's chunk AEAD (hardware
//! AES-256-GCM, [`HostAes256Gcm`]) and nothing else: its WASI context has no
//! preopened directories, no network, no environment, no arguments and no stdio.

// The one exception, in compiled.rs: mapping the compiled guest from the private
// cache directory is `unsafe` in wasmtime's API.
#![deny(unsafe_code)]
#![deny(missing_docs)]

use std::path::PathBuf;

use tapeseal_core::Dek;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use zeroize::Zeroizing;

/// What `bindgen!` generates from wit/tapeseal.wit (documented there).
#[allow(missing_docs, unreachable_pub)]
mod bindings {
    wasmtime::component::bindgen!({
        world: "tapeseal",
        path: "../../wit",
        with: {
            "tapeseal:core/chunk-aead.chunk-key": crate::aead::HostAes256Gcm,
        },
        // The chunk-aead import traps on a guest that breaks its contract.
        imports: { default: trappable },
    });
}

mod aead;
mod compiled;
mod convert;
mod streams;

pub use aead::HostAes256Gcm;
pub use convert::core_code;
pub use streams::{ChunkOpener, StreamOpener, StreamSealer};

pub use bindings::exports::tapeseal::core::envelope::{
    ByteRange, Error as GuestError, ErrorCode, HeaderInfo, Inspection, MediaKind, Recipient,
    RewrapMode, SealParams, Stanza, WrapAlgorithm,
};
use bindings::{Tapeseal, TapesealPre};

/// The tapeseal-guest component, built for wasm32-wasip2 by build.rs.
pub static GUEST_COMPONENT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tapeseal_guest.wasm"));

/// What one store may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most linear memory a guest instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Fuel (roughly, WebAssembly instructions) for any call, plus...
    pub fuel_base: u64,
    /// ...this much per input byte of the call.
    pub fuel_per_byte: u64,
}

impl Default for Limits {
    /// 64 MiB of memory; fuel for about ten times the work an honest input needs.
    /// Streaming seal and open use about 4 fuel a byte now that the chunk AEAD runs
    /// in the host (`the_default_fuel_budget_is_about_ten_times_what_honest_streams_use`
    /// in tests/guest.rs keeps the two in step); the base covers a call's fixed work,
    /// such as the RSA-OAEP wrap of a seal, done in the guest.
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            fuel_base: 2_000_000_000,
            fuel_per_byte: 40,
        }
    }
}

/// Errors from the guest or from the runtime around it.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The core refused the operation (its message holds no key material).
    #[error("{message}")]
    Guest {
        /// Stable error code.
        code: ErrorCode,
        /// What went wrong.
        message: String,
    },
    /// The guest hit its memory cap or ran out of its execution budget; the input is
    /// refused and the server carries on.
    #[error("the operation exceeded its {0} and was stopped")]
    LimitExceeded(&'static str),
    /// wasmtime itself failed (compiling, instantiating, or a trap).
    #[error("WebAssembly runtime error: {0}")]
    Runtime(String),
}

impl HostError {
    /// The guest's error code, if the guest produced this error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Guest { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<GuestError> for HostError {
    fn from(e: GuestError) -> Self {
        Self::Guest {
            code: e.code,
            message: e.message,
        }
    }
}

type Result<T, E = HostError> = std::result::Result<T, E>;

/// The memory cap, as the error the limiter raises to stop a growing guest.
#[derive(Debug)]
struct MemoryCapExceeded;

impl std::fmt::Display for MemoryCapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the guest's memory cap was reached")
    }
}

impl std::error::Error for MemoryCapExceeded {}

struct Limiter {
    memory_bytes: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(wasmtime::Error::new(MemoryCapExceeded));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    /// Payload keys the guest holds through the chunk-aead import.
    chunk_keys: usize,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn runtime_error(e: impl std::fmt::Display) -> HostError {
    HostError::Runtime(e.to_string())
}

/// Maps a failed call: limits first, then traps and other runtime errors.
fn call_error(e: wasmtime::Error) -> HostError {
    if e.downcast_ref::<MemoryCapExceeded>().is_some() {
        return HostError::LimitExceeded("memory cap");
    }
    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return HostError::LimitExceeded("instance pool");
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => HostError::LimitExceeded("execution budget"),
        _ => HostError::Runtime(format!("{e:#}")),
    }
}

/// The compiled guest, ready to instantiate. Create one per process and share it.
pub struct Runtime {
    engine: Engine,
    component: Component,
    pre: TapesealPre<State>,
    limits: Limits,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TAPESEAL_CACHE_DIR") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|base| base.join("tapeseal/wasmtime"))
}

/// Creates the compiled-guest cache directory owner-only (0700) if it is missing, and
/// refuses one that another user owns or can write to: the cache holds native code
/// that this process would run.
fn private_cache_dir(dir: &std::path::Path) -> Result<()> {
    let refuse = |why: String| {
        HostError::Runtime(format!(
            "the compiled-guest cache {} {why}; fix it or set TAPESEAL_CACHE_DIR to another \
             directory (empty turns the cache off)",
            dir.display()
        ))
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| refuse(format!("cannot be created ({e})")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(dir).map_err(|e| refuse(format!("cannot be read ({e})")))?;
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(refuse("is writable by other users".into()));
        }
        if let Ok(me) = std::fs::metadata("/proc/self")
            && meta.uid() != me.uid()
        {
            return Err(refuse(format!(
                "belongs to another user (uid {})",
                meta.uid()
            )));
        }
    }
    Ok(())
}

impl Runtime {
    /// Compiles the embedded guest, or loads it from the on-disk cache
    /// (`$TAPESEAL_CACHE_DIR`, else `$XDG_CACHE_HOME/tapeseal/wasmtime`, else
    /// `~/.cache/tapeseal/wasmtime`; an empty `TAPESEAL_CACHE_DIR` turns it off).
    pub fn new(limits: Limits) -> Result<Self> {
        Self::with_cache_dir(limits, cache_dir())
    }

    /// Like [`Runtime::new`] for a process that runs a few operations and exits
    /// (the CLI): instances are allocated on demand instead of from a pool of 256
    /// set up in advance, which a one-shot process would pay for at start-up.
    pub fn one_shot(limits: Limits) -> Result<Self> {
        Self::build(limits, cache_dir(), false, GUEST_COMPONENT)
    }

    /// Like [`Runtime::new`] with an explicit cache directory, or none.
    pub fn with_cache_dir(limits: Limits, cache: Option<PathBuf>) -> Result<Self> {
        Self::build(limits, cache, true, GUEST_COMPONENT)
    }

    /// Like [`Runtime::new`] with another build of `tapeseal-guest` than the
    /// embedded one, such as its `soft-aead` build, which the comparison benchmark
    /// runs to measure what the host's chunk AEAD is worth. The component must
    /// link against the same world; anything else is refused here.
    pub fn with_component(limits: Limits, component: &[u8]) -> Result<Self> {
        Self::build(limits, cache_dir(), true, component)
    }

    fn build(
        limits: Limits,
        cache: Option<PathBuf>,
        pooled: bool,
        component: &[u8],
    ) -> Result<Self> {
        let mut config = Config::new();
        config.consume_fuel(true);
        if pooled {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(256)
                .total_core_instances(512)
                .total_memories(256)
                .total_tables(256)
                .max_memory_size(limits.memory_bytes);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(runtime_error)?;
        let component = match cache {
            Some(dir) => {
                private_cache_dir(&dir)?;
                compiled::load(&engine, &dir, component)?
            }
            None => Component::new(&engine, component).map_err(runtime_error)?,
        };
        let pre = link(&engine, &component, true)?;
        Ok(Self {
            engine,
            component,
            pre,
            limits,
        })
    }

    /// Instantiates the guest in a fresh store and drops it: what every operation
    /// pays before its first call.
    pub fn instantiate(&self) -> Result<()> {
        self.session().map(drop)
    }

    /// The limits every store gets.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The names of everything the component imports, sorted.
    pub fn component_imports(&self) -> Vec<String> {
        let ty = self.component.component_type();
        let mut names: Vec<String> = ty
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        names.sort();
        names
    }

    fn session(&self) -> Result<Session> {
        // Nothing inherited: no stdio, environment, arguments, directories or network.
        let wasi = WasiCtxBuilder::new().build();
        let state = State {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_bytes: self.limits.memory_bytes,
            },
            chunk_keys: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store
            .set_fuel(self.limits.fuel_base)
            .map_err(runtime_error)?;
        let bindings = self.pre.instantiate(&mut store).map_err(call_error)?;
        Ok(Session {
            store,
            bindings,
            limits: self.limits,
        })
    }

    /// A fresh DEK from the guest (randomness comes from the host's OS).
    pub fn generate_dek(&self) -> Result<Dek> {
        let mut s = self.session()?;
        let bytes = Zeroizing::new(s.call(0, |b, st| b.call_generate_dek(st))?);
        Dek::from_slice(&bytes).map_err(runtime_error)
    }

    /// The header length declared by an envelope's first 14 bytes.
    pub fn header_length(&self, prefix: &[u8]) -> Result<u64> {
        self.session()?
            .call(prefix.len(), |b, st| b.call_header_length(st, prefix))
    }

    /// Reads a header or an envelope without any key.
    pub fn inspect(&self, bytes: &[u8]) -> Result<Inspection> {
        self.session()?
            .call(bytes.len(), |b, st| b.call_inspect(st, bytes))
    }

    /// Seals a whole plaintext.
    pub fn seal(
        &self,
        dek: &Dek,
        params: &SealParams,
        recipients: &[Recipient],
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        self.session()?.call(plaintext.len(), |b, st| {
            b.call_seal(st, dek.as_bytes(), params, recipients, plaintext)
        })
    }

    /// Opens a whole envelope.
    pub fn open(&self, envelope: &[u8], dek: &Dek) -> Result<Vec<u8>> {
        self.session()?.call(envelope.len(), |b, st| {
            b.call_open(st, envelope, dek.as_bytes())
        })
    }

    /// A new header with other stanzas, for an unchanged payload.
    pub fn rewrap_header(
        &self,
        header: &[u8],
        dek: &Dek,
        recipients: &[Recipient],
        mode: RewrapMode,
    ) -> Result<Vec<u8>> {
        self.session()?.call(header.len(), |b, st| {
            b.call_rewrap_header(st, header, dek.as_bytes(), recipients, mode)
        })
    }

    /// Starts a streaming seal in a store of its own.
    pub fn sealer(
        &self,
        dek: &Dek,
        params: &SealParams,
        recipients: &[Recipient],
    ) -> Result<StreamSealer> {
        let mut session = self.session()?;
        let handle = session.call(0, |b, st| {
            b.sealer()
                .call_create(st, dek.as_bytes(), params, recipients)
        })?;
        let header = session.call(0, |b, st| b.sealer().call_header(st, handle).map(Ok))?;
        Ok(StreamSealer {
            session,
            handle,
            header,
        })
    }

    /// Starts a streaming open in a store of its own.
    pub fn opener(&self, dek: &Dek) -> Result<StreamOpener> {
        let mut session = self.session()?;
        let handle = session.call(0, |b, st| b.opener().call_create(st, dek.as_bytes()))?;
        Ok(StreamOpener { session, handle })
    }

    /// Random access to the chunks of an envelope of `envelope_len` bytes.
    pub fn chunk_opener(&self, header: &[u8], dek: &Dek, envelope_len: u64) -> Result<ChunkOpener> {
        let mut session = self.session()?;
        let handle = session.call(header.len(), |b, st| {
            b.chunk_opener()
                .call_create(st, header, dek.as_bytes(), envelope_len)
        })?;
        Ok(ChunkOpener { session, handle })
    }
}

/// Links the guest to WASI (randomness; the rest empty) and, unless told not to,
/// to the host's chunk AEAD. Without the chunk AEAD the guest cannot link at all.
fn link(engine: &Engine, component: &Component, chunk_aead: bool) -> Result<TapesealPre<State>> {
    let mut linker = Linker::<State>::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(runtime_error)?;
    if chunk_aead {
        Tapeseal::add_to_linker::<State, wasmtime::component::HasSelf<State>>(
            &mut linker,
            |state| state,
        )
        .map_err(runtime_error)?;
    }
    linker
        .instantiate_pre(component)
        .and_then(TapesealPre::new)
        .map_err(runtime_error)
}

type Envelope = bindings::exports::tapeseal::core::envelope::Guest;

/// Runs guest work so that it does not stall an async worker: inside a
/// multi-threaded tokio runtime the worker hands its other tasks to another thread
/// first (`block_in_place`); anywhere else (the CLI) it simply runs.
fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// One store and one instance.
pub(crate) struct Session {
    store: Store<State>,
    bindings: Tapeseal,
    limits: Limits,
}

impl Session {
    /// Refuels for an input of `input_len` bytes and calls into the guest.
    pub(crate) fn call<T>(
        &mut self,
        input_len: usize,
        f: impl FnOnce(&Envelope, &mut Store<State>) -> wasmtime::Result<Result<T, GuestError>>,
    ) -> Result<T> {
        let fuel = self
            .limits
            .fuel_base
            .saturating_add(self.limits.fuel_per_byte.saturating_mul(input_len as u64));
        self.store.set_fuel(fuel).map_err(runtime_error)?;
        let envelope = self.bindings.tapeseal_core_envelope();
        match off_worker(|| f(envelope, &mut self.store)) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(guest)) => Err(guest.into()),
            Err(e) => Err(call_error(e)),
        }
    }

    /// Fuel consumed since the last refuel (for benchmarks and calibration).
    pub(crate) fn fuel_used(&self, input_len: usize) -> u64 {
        let budget = self
            .limits
            .fuel_base
            .saturating_add(self.limits.fuel_per_byte.saturating_mul(input_len as u64));
        budget.saturating_sub(self.store.get_fuel().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_without_the_chunk_aead_cannot_link_the_guest() {
        let runtime = Runtime::new(Limits::default()).expect("runtime");
        let refused = link(&runtime.engine, &runtime.component, false)
            .err()
            .expect("linking without the chunk AEAD must fail");
        let message = refused.to_string();
        assert!(
            message.contains("tapeseal:core/chunk-aead"),
            "the refusal names the missing import: {message}"
        );
        assert!(link(&runtime.engine, &runtime.component, true).is_ok());
    }
}
