//! Serving: opens the data directory, binds the listener, loads or makes the TLS
//! identity, and serves HTTPS until told to stop; [`run`] is `tapeseal lkm serve`
//! (prints `listening on https://…` first on stdout, stops on SIGINT or SIGTERM).

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;

use crate::config::Config;
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
    tls: RustlsConfig,
    fingerprint: String,
    token_source: TokenSource,
    state: Arc<AppState>,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("local", &self.local)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Opens `config`'s data directory (creating what a first start needs), binds its
/// address and prepares TLS.
pub async fn bind(config: &Config) -> Result<Bound> {
    config.validate()?;
    let data = DataDir::new(&config.data_dir);
    let keyring = Keyring::open(&data, true)?;
    let (admin, token_source) = data.admin_token(config.admin_token_env.as_deref())?;
    let identity = tls::identity(&data, config.tls.as_ref())?;
    let rustls = RustlsConfig::from_pem(identity.cert_pem.clone(), identity.key_pem.to_vec())
        .await
        .map_err(|e| LkmError::Tls(format!("cannot load the certificate or key: {e}")))?;
    let listener = TcpListener::bind(config.listen)
        .map_err(|e| LkmError::Config(format!("cannot listen on {}: {e}", config.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| LkmError::Config(format!("no local address: {e}")))?;
    let state = Arc::new(AppState::new(keyring, admin, config.limits.clone(), local));
    // Nonces accepted before a restart stay refused for the rest of their window.
    let now = tapeseal_store::time::now_ms();
    let window = i64::try_from(state.nonces.ttl().as_millis()).unwrap_or(i64::MAX);
    let accepted = state
        .keyring
        .store()
        .nonces_since(now.saturating_sub(window))?;
    state.nonces.seed(accepted, now);
    Ok(Bound {
        listener,
        local,
        tls: rustls,
        fingerprint: identity.fingerprint,
        token_source,
        state,
    })
}

impl Bound {
    /// The address it listens on (the actual port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `https://` and the address.
    pub fn url(&self) -> String {
        format!("https://{}", self.local)
    }

    /// The certificate's SHA-256 fingerprint (64 lowercase hex digits).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
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
        let mut server = axum_server::from_tcp_rustls(self.listener, self.tls)
            .map_err(|e| LkmError::Config(format!("cannot serve: {e}")))?;
        server
            .http_builder()
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout);
        server
            .handle(handle)
            .serve(app)
            .await
            .map_err(|e| LkmError::Config(format!("the server failed: {e}")))?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// `tapeseal lkm serve`: binds, prints where (stdout) and the certificate
/// fingerprint and admin token source (stderr), and serves until SIGINT or SIGTERM.
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
        eprintln!("certificate sha256 fingerprint: {}", bound.fingerprint());
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
