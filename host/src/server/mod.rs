//! `tapeseal serve`: the recording server. Recordings go in sealed by the wasmtime
//! guest as they stream in and come out only to tokens of their own organisation;
//! managed KEKs rotate on schedule; rewrap jobs move recordings between KEKs by
//! rewriting headers; every decrypt is audited.
//!
//! Data flows one way: HTTP handlers ([`recordings`], [`keys`], [`jobs`], [`admin`])
//! use the catalogue, the key service, the guest runtime and the [`repo`]sitory,
//! which know nothing of HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use zeroize::Zeroizing;

use crate::catalogue::Catalogue;
use crate::engine::{Limits, Runtime};
use crate::managed::{ManagedKeys, MasterKey, StorageKey};

pub mod admin;
pub mod auth;
pub mod config;
pub mod error;
pub mod jobs;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod playback;
pub mod recordings;
pub mod repo;

pub use config::Config;

/// Everything a request handler can reach.
#[derive(Debug)]
pub struct AppState {
    /// The configuration the server started with.
    pub config: Config,
    /// Organisations, tokens, KEKs, recordings, schedules, jobs, audit log.
    pub catalogue: Catalogue,
    /// Seals managed private KEKs.
    pub master: MasterKey,
    /// Storage-side encryption for recordings not sealed for an organisation's KEK.
    pub storage_key: StorageKey,
    /// The compiled guest.
    pub runtime: Runtime,
    /// The recording repository.
    pub repo: repo::Repository,
    /// Prometheus metrics.
    pub metrics: metrics::Metrics,
    /// The operator token, if one is configured.
    pub operator_token: Option<OperatorToken>,
    /// Wakes the job worker.
    pub jobs: jobs::JobQueue,
}

/// The operator token's secret; prints as `[redacted]`.
pub struct OperatorToken(pub Zeroizing<String>);

impl std::fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorToken([redacted])")
    }
}

/// The state handlers share.
pub type Shared = Arc<AppState>;

impl AppState {
    /// The managed key service.
    pub fn keys(&self) -> ManagedKeys<'_> {
        ManagedKeys::new(&self.catalogue, &self.master)
    }
}

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

/// Opens the catalogue, master key, repository and guest that `config` names.
pub fn open_state(config: Config) -> anyhow::Result<(Shared, jobs::JobReceiver)> {
    config.create_data_dir().map_err(|e| {
        anyhow::anyhow!(
            "cannot create the data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    let catalogue = Catalogue::open(&config.catalogue_path())?;
    let master = match &config.master_key.env {
        Some(var) => {
            let value = Zeroizing::new(
                std::env::var(var)
                    .map_err(|_| anyhow::anyhow!("the master key variable {var} is not set"))?,
            );
            MasterKey::from_base64(&value)?
        }
        None => MasterKey::load_or_create(&config.master_key_path())?,
    };
    let storage_key = StorageKey::load_or_create(&config.storage_key_path(), &master)?;
    let operator_token = match &config.operator_token_env {
        Some(var) => Some(OperatorToken(Zeroizing::new(std::env::var(var).map_err(
            |_| anyhow::anyhow!("the operator token variable {var} is not set"),
        )?))),
        None => None,
    };
    let repo = repo::Repository::local(&config.repository_path())?;
    let swept = repo::Repository::sweep_staging(&config.repository_path())?;
    if swept > 0 {
        tracing::info!(files = swept, "removed writes that a crash interrupted");
    }
    let runtime = Runtime::new(Limits::default())?;
    let (queue, receiver) = jobs::JobQueue::new();
    let state = Arc::new(AppState {
        config,
        catalogue,
        master,
        storage_key,
        runtime,
        repo,
        metrics: metrics::Metrics::default(),
        operator_token,
        jobs: queue,
    });
    Ok((state, receiver))
}

/// The whole HTTP API.
pub fn router(state: Shared) -> Router {
    Router::new()
        .merge(recordings::routes())
        .merge(keys::routes())
        .merge(jobs::routes())
        .merge(admin::routes())
        .fallback(|| async { error::ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
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
    if let Some(error::ErrorCode(code)) = response.extensions().get::<error::ErrorCode>() {
        state.metrics.error(code);
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
    let (state, receiver) = open_state(config)?;

    keys::rotate_due(&state);
    let scheduler = tokio::spawn(keys::scheduler(state.clone()));
    let worker = tokio::spawn(jobs::worker(state.clone(), receiver));
    state.jobs.resume(&state)?;

    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
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
    tracing::info!(%local, scheme, "listening");
    match tls {
        Some(tls) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .map_err(|e| anyhow::anyhow!("cannot load the TLS certificate or key: {e}"))?;
            axum_server::from_tcp_rustls(listener, rustls)?
                .handle(handle)
                .serve(app)
                .await?;
        }
        None => {
            axum_server::from_tcp(listener)?
                .handle(handle)
                .serve(app)
                .await?;
        }
    }
    scheduler.abort();
    worker.abort();
    tracing::info!("stopped");
    Ok(())
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
