//! How an LKM is run: where its data lives, where it listens, its TLS files and
//! admin token source, and its limits. Defaults suit a single LKM on one host.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{LkmError, Result};

/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "tapeseal-lkm-data";
/// The default listening address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8760";

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// A token bucket: `per_second` tokens refill each second, up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained requests per second.
    pub per_second: f64,
    /// How many may come at once after a quiet spell.
    pub burst: u32,
}

/// Bounds on what one LKM accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request body in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Requests handled at once (503 `busy` above it).
    pub max_in_flight: usize,
    /// Decrypts per Hawk credential (429 `rate_limited` above it).
    pub decrypt_rate: Rate,
    /// How far a Hawk timestamp may be from the LKM's clock; nonces are remembered
    /// for twice this.
    pub skew: Duration,
    /// Request-log entries kept; older ones are dropped.
    pub request_log_max: u64,
    /// Nonces remembered at once (503 `busy` when full of unexpired nonces).
    pub max_nonces: usize,
    /// Time a client gets to send a request's headers.
    pub header_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024,
            max_in_flight: 64,
            decrypt_rate: Rate {
                per_second: 100.0,
                burst: 200,
            },
            skew: Duration::from_secs(60),
            request_log_max: 100_000,
            max_nonces: 1_000_000,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Everything `tapeseal lkm serve` is told.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Data directory: store, master key, admin token, self-signed certificate.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Certificate and key; `None` makes (once) and uses a self-signed certificate.
    pub tls: Option<TlsFiles>,
    /// The environment variable holding the admin token; `None` uses (creating once)
    /// `admin.token` in the data directory.
    pub admin_token_env: Option<String>,
    /// Limits.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: SocketAddr::from(([127, 0, 0, 1], 8760)),
            tls: None,
            admin_token_env: None,
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// Refuses limits that cannot work.
    pub fn validate(&self) -> Result<()> {
        let l = &self.limits;
        let rate = l.decrypt_rate;
        if !(rate.per_second.is_finite() && rate.per_second > 0.0) || rate.burst == 0 {
            return Err(LkmError::Config(
                "the decrypt rate and burst must be positive".into(),
            ));
        }
        if l.max_body_bytes == 0 || l.max_in_flight == 0 || l.max_nonces == 0 {
            return Err(LkmError::Config(
                "body, in-flight and nonce limits must be positive".into(),
            ));
        }
        if l.skew.is_zero() {
            return Err(LkmError::Config("the Hawk skew must be positive".into()));
        }
        Ok(())
    }
}
