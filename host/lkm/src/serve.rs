//! Serving: opens the data directory, binds the listener, loads or makes the TLS
//! identity, and serves HTTPS (or, on loopback only, plain HTTP) until told to stop;
//! [`run`] is `tapeseal lkm serve` (prints `listening on https://…` first on stdout,
//! stops on SIGINT or SIGTERM).

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};

use crate::auth::Space;
use crate::config::{Config, TlsMode};
use crate::data::{DataDir, TokenSource};
use crate::error::{LkmError, Result};
use crate::http::{AppState, router};
use crate::keyring::Keyring;
use crate::tls;

/// How long in-flight requests get to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// An LKM bound to its address, ready to serve.
pub struct Bound {
    listener: TcpListener,
    local: SocketAddr,
    /// `None` serves plain HTTP (loopback only).
    tls: Option<Tls>,
    token_source: TokenSource,
    state: Arc<AppState>,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("local", &self.local)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// The TLS configuration and the fingerprint of its certificate.
struct Tls {
    config: RustlsConfig,
    fingerprint: String,
}

/// The TLS identity `mode` asks for, loaded for rustls; `None` for plain HTTP.
async fn load_tls(data: &DataDir, mode: &TlsMode) -> Result<Option<Tls>> {
    let files = match mode {
        TlsMode::Off => return Ok(None),
        TlsMode::SelfSigned => None,
        TlsMode::Files(files) => Some(files),
    };
    let identity = tls::identity(data, files)?;
    let config = RustlsConfig::from_pem(identity.cert_pem.clone(), identity.key_pem.to_vec())
        .await
        .map_err(|e| LkmError::Tls(format!("cannot load the certificate or key: {e}")))?;
    Ok(Some(Tls {
        config,
        fingerprint: identity.fingerprint,
    }))
}

/// Opens `config`'s data directory (creating what a first start needs), binds its
/// address and prepares TLS (unless `config.tls` is off, which `validate` allows on
/// loopback only).
pub async fn bind(config: &Config) -> Result<Bound> {
    config.validate()?;
    let data = DataDir::new(&config.data_dir);
    let keyring = Keyring::open(&data, true)?;
    let (admin, token_source) = data.admin_token(config.admin_token_env.as_deref())?;
    let tls = load_tls(&data, &config.tls).await?;
    let listener = TcpListener::bind(config.listen)
        .map_err(|e| LkmError::Config(format!("cannot listen on {}: {e}", config.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| LkmError::Config(format!("no local address: {e}")))?;
    let state = Arc::new(AppState::new(
        keyring,
        admin,
        config.limits.clone(),
        config.allowed_origins.clone(),
        local,
    ));
    // Nonces and grant ids accepted before a restart stay refused for the rest of
    // their window.
    let now = tapeseal_store::time::now_ms();
    let store = state.keyring.store();
    let window = i64::try_from(state.nonces.ttl().as_millis()).unwrap_or(i64::MAX);
    let nonces = store.nonces_since(now.saturating_sub(window))?;
    state.nonces.seed(Space::Hawk, nonces, now);
    let skew = i64::try_from(config.limits.skew.as_millis()).unwrap_or(i64::MAX);
    let grant_ids = store.grant_ids_since(now.saturating_sub(skew))?;
    state.nonces.seed(Space::Grant, grant_ids, now);
    Ok(Bound {
        listener,
        local,
        tls,
        token_source,
        state,
    })
}

impl Bound {
    /// The address it listens on (the actual port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `https://` (or `http://` for plain HTTP) and the address.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local)
    }

    /// The certificate's SHA-256 fingerprint (64 lowercase hex digits); `None` for
    /// plain HTTP.
    pub fn fingerprint(&self) -> Option<&str> {
        self.tls.as_ref().map(|tls| tls.fingerprint.as_str())
    }

    /// Where the admin token came from.
    pub fn token_source(&self) -> &TokenSource {
        &self.token_source
    }

    /// Serves until `stop` completes, then lets in-flight requests finish.
    pub async fn serve(self, stop: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let handle = axum_server::Handle::new();
        let stopper = handle.clone();
        tokio::spawn(async move {
            stop.await;
            tracing::info!("shutting down");
            stopper.graceful_shutdown(Some(SHUTDOWN_GRACE));
        });
        let header_timeout = self.state.limits.header_read_timeout;
        let app = router(self.state).into_make_service();
        let mut server = axum_server::from_tcp(self.listener)
            .map_err(|e| LkmError::Config(format!("cannot serve: {e}")))?;
        server
            .http_builder()
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout);
        let server = server.handle(handle);
        match self.tls {
            Some(tls) => {
                server
                    .acceptor(RustlsAcceptor::new(tls.config))
                    .serve(app)
                    .await
            }
            None => server.serve(app).await,
        }
        .map_err(|e| LkmError::Config(format!("the server failed: {e}")))?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// `tapeseal lkm serve`: binds, prints where (stdout) and the certificate
/// fingerprint (or a plain-HTTP warning) and admin token source (stderr), and serves
/// until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| LkmError::Config(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let bound = bind(&config).await?;
        match bound.token_source() {
            TokenSource::Env(var) => eprintln!("admin token: from ${var}"),
            TokenSource::File(path) => eprintln!("admin token: in {}", path.display()),
            TokenSource::Created(path) => {
                eprintln!("admin token: generated into {}", path.display());
            }
        }
        match bound.fingerprint() {
            Some(fingerprint) => eprintln!("certificate sha256 fingerprint: {fingerprint}"),
            None => eprintln!(
                "warning: serving plain HTTP (--plain-http) on {}: for a demo on this host \
                 only; anything that can reach it could read the DEKs it answers",
                bound.local_addr()
            ),
        }
        println!("listening on {}", bound.url());
        tracing::info!(local = %bound.local_addr(), "listening");
        bound.serve(stop_signal()).await
    })
}

/// Completes on SIGINT or SIGTERM.
pub async fn stop_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
