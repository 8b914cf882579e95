//! `tapeseal-server`, the recording server behind `tapeseal serve`. Recordings go in sealed by the wasmtime
//! guest as they stream in and come out only to tokens of their own organisation;
//! managed KEKs rotate on schedule; rewrap jobs move recordings between KEKs by
//! rewriting headers; export jobs decrypt recordings in bulk to a directory or S3;
//! every decrypt is audited.
//!
//! Data flows one way: HTTP handlers ([`recordings`], [`playback`], [`keys`],
//! [`jobs`], [`export`], [`admin`]) use the catalogue and repository (`tapeseal-store`), the key
//! service (`tapeseal-keys`) and the guest runtime (`tapeseal-engine`), which know
//! nothing of HTTP.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use zeroize::Zeroizing;

use tapeseal_engine::{Limits, Runtime};
use tapeseal_keys::{KeyServices, MasterKey, StorageKey};
use tapeseal_store::catalogue::Catalogue;
use tapeseal_store::repo;

pub mod admin;
pub mod auth;
pub mod config;
pub mod error;
pub mod export;
pub mod grants;
pub mod jobs;
pub mod keys;
pub mod kms;
pub mod limits;
pub mod lkm;
pub mod metrics;
pub mod openapi;
pub mod playback;
pub mod range;
pub mod recordings;
pub mod rewrap;
pub mod sealed;
pub mod www;

pub use config::Config;

/// Everything a request handler can reach.
#[derive(Debug)]
pub struct AppState {
    /// The configuration the server started with.
    pub config: Config,
    /// Organisations, tokens, KEKs, recordings, schedules, jobs, audit log.
    pub catalogue: Arc<Catalogue>,
    /// Where private KEKs live and DEKs are unwrapped: managed keys or the
    /// organisation's Local Key Manager.
    pub keys: KeyServices,
    /// Storage-side encryption for recordings not sealed for an organisation's KEK.
    pub storage_key: StorageKey,
    /// The compiled guest.
    pub runtime: Runtime,
    /// The recording repository.
    pub repo: repo::Repository,
    /// Prometheus metrics.
    pub metrics: metrics::Metrics,
    /// The operator token, if one is configured.
    pub operator_token: Option<SecretToken>,
    /// The token `/metrics` requires, if one is configured.
    pub metrics_token: Option<SecretToken>,
    /// Admission control for guest work.
    pub limits: limits::Limiter,
    /// This instance's name among those sharing the catalogue (random, made at
    /// start): it holds job leases under it.
    pub instance: String,
    /// Wakes the job worker.
    pub jobs: jobs::JobQueue,
    /// DEKs unwrapped for playbacks, each for the length of one playback.
    pub playback_deks: Arc<playback::DekCache>,
}

/// A configured bearer secret (the operator or the metrics token); prints as
/// `[redacted]`.
pub struct SecretToken(pub Zeroizing<String>);

impl std::fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretToken([redacted])")
    }
}

/// The state handlers share.
pub type Shared = Arc<AppState>;

/// Sends structured logs to standard error, filtered by `TAPESEAL_LOG` (default
/// `info`). Logs carry ids, sizes and error causes, never key material or content.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TAPESEAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Opens the catalogue `config` names: PostgreSQL at `catalogue`, with the password
/// from `catalogue_password_env`; SQLite in the data directory without.
pub fn open_catalogue(config: &Config) -> anyhow::Result<Catalogue> {
    let Some(url) = &config.catalogue else {
        return Ok(config.data().open_catalogue()?);
    };
    let password = match &config.catalogue_password_env {
        Some(var) => Some(Zeroizing::new(std::env::var(var).map_err(|_| {
            anyhow::anyhow!("the catalogue password variable {var} is not set")
        })?)),
        None => None,
    };
    Ok(Catalogue::connect_postgres(
        url,
        password.as_ref().map(|p| p.as_str()),
        config.catalogue_ca_file.as_deref(),
    )?)
}

/// Opens the catalogue, master key, repository and guest that `config` names.
pub fn open_state(config: Config) -> anyhow::Result<(Shared, jobs::JobReceiver)> {
    let data = config.data();
    let catalogue = Arc::new(open_catalogue(&config)?);
    let storage_key_path = data.storage_key_path();
    // Keys sealed under a master key exist: a missing key file is an error then.
    let may_create = !catalogue.has_sealed_keys()? && !storage_key_path.exists();
    let master = match &config.master_key.env {
        Some(var) => {
            let value = Zeroizing::new(
                std::env::var(var)
                    .map_err(|_| anyhow::anyhow!("the master key variable {var} is not set"))?,
            );
            MasterKey::from_base64(&value)?
        }
        None => MasterKey::load_or_create(&config.master_key_path(), may_create)?,
    };
    let storage_key = StorageKey::load_or_create(&catalogue, &storage_key_path, &master)?;
    let keys = KeyServices::with_kms(catalogue.clone(), Arc::new(master), config.kms.keys()?);
    let secret = |var: &Option<String>, what: &str| -> anyhow::Result<Option<SecretToken>> {
        match var {
            Some(var) => Ok(Some(SecretToken(Zeroizing::new(
                std::env::var(var)
                    .map_err(|_| anyhow::anyhow!("the {what} variable {var} is not set"))?,
            )))),
            None => Ok(None),
        }
    };
    let operator_token = secret(&config.operator_token_env, "operator token")?;
    let metrics_token = secret(&config.metrics_token_env, "metrics token")?;
    let limits = limits::Limiter::new(
        config.limits.guest_operations,
        config.limits.guest_operations_per_org,
        Duration::from_millis(config.limits.admission_wait_ms),
    );
    let repo = match config.repository.s3_settings()? {
        // Nothing to sweep: an interrupted upload is invisible, and the bucket's
        // lifecycle rule removes its parts (docs/SERVER.md).
        Some(settings) => {
            let repo = repo::Repository::s3(&settings)?;
            tracing::info!(repository = repo.location(), "recordings are kept in S3");
            repo
        }
        None => {
            let repo = repo::Repository::local(&config.repository_path())?;
            let swept = repo::Repository::sweep_staging(&config.repository_path())?;
            if swept > 0 {
                tracing::info!(files = swept, "removed writes that a crash interrupted");
            }
            repo
        }
    };
    let export_root = config.export_path();
    let swept = repo::Repository::sweep_any_staging(&export_root)
        .map_err(|e| anyhow::anyhow!("cannot clean {}: {e}", export_root.display()))?;
    if swept > 0 {
        tracing::info!(
            files = swept,
            "removed export files that a crash interrupted"
        );
    }
    let runtime = Runtime::new(Limits::default())?;
    let playback_deks = playback::DekCache::new(config.playback.dek_cache()?);
    let instance = tapeseal_store::ids::new_id("inst")?;
    let (queue, receiver) = jobs::JobQueue::new(
        instance.clone(),
        Duration::from_secs(config.jobs.lease_secs),
    );
    let state = Arc::new(AppState {
        config,
        catalogue,
        keys,
        storage_key,
        runtime,
        repo,
        metrics: metrics::Metrics::default(),
        operator_token,
        metrics_token,
        limits,
        instance,
        jobs: queue,
        playback_deks,
    });
    Ok((state, receiver))
}

/// The whole HTTP API.
pub fn router(state: Shared) -> Router {
    Router::new()
        .merge(recordings::routes())
        .merge(sealed::routes())
        .merge(keys::routes())
        .merge(lkm::routes())
        .merge(kms::routes())
        .merge(jobs::routes())
        .merge(export::routes())
        .merge(admin::routes())
        .fallback(www::page)
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(
                tapeseal_core::ErrorCode::MethodNotAllowed,
                "this route does not take that method",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Logs and measures every request by its route template (never its ids).
async fn observe(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    if let Some(error::ResponseCode(code)) = response.extensions().get::<error::ResponseCode>() {
        state.metrics.error(code.name());
    }
    state.metrics.request(&route, status, elapsed);
    tracing::info!(
        %method,
        route,
        status,
        elapsed_ms = elapsed.as_secs_f64() * 1e3,
        "request"
    );
    response
}

/// Runs the server until SIGINT or SIGTERM, then lets in-flight requests finish for
/// up to `shutdown_grace_secs`. Prints `listening on <url>` once it accepts.
pub fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let tls = config.tls.clone();
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let header_timeout = Duration::from_secs(config.limits.header_read_timeout_secs);
    let backlog = config.limits.listen_backlog;
    let (state, receiver) = open_state(config)?;

    keys::rotate_due(&state).await;
    let scheduler = tokio::spawn(keys::scheduler(state.clone()));
    let worker = tokio::spawn(jobs::worker(state.clone(), receiver));
    let claimer = tokio::spawn(jobs::claimer(state.clone()));

    let listener =
        bind(listen, backlog).map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let local: SocketAddr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let app = router(state.clone()).into_make_service();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let shutdown = {
        let handle = handle.clone();
        async move {
            shutdown_signal().await;
            tracing::info!(grace_secs = grace.as_secs(), "shutting down");
            handle.graceful_shutdown(Some(grace));
        }
    };
    tokio::spawn(shutdown);
    println!("listening on {scheme}://{local}");
    tracing::info!(%local, scheme, instance = %state.instance, "listening");
    match tls {
        Some(tls) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .map_err(|e| anyhow::anyhow!("cannot load the TLS certificate or key: {e}"))?;
            let mut server = axum_server::from_tcp_rustls(listener, rustls)?;
            limit_headers(server.http_builder(), header_timeout);
            server.handle(handle).serve(app).await?;
        }
        None => {
            let mut server = axum_server::from_tcp(listener)?;
            limit_headers(server.http_builder(), header_timeout);
            server.handle(handle).serve(app).await?;
        }
    }
    scheduler.abort();
    worker.abort();
    claimer.abort();
    tracing::info!("stopped");
    Ok(())
}

/// A listening socket on `addr` whose kernel queue holds `backlog` connections not
/// yet accepted (the standard library's `bind` gives 128, which a burst of clients
/// behind a load balancer overflows).
fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// A client gets `timeout` to send a request's headers; a connection that dawdles is
/// closed instead of holding a slot.
fn limit_headers(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    timeout: Duration,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeout);
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
