//! How an LKM is run: where its data lives, where it listens, its TLS mode and
//! admin token source, the browser origins it answers, and its limits. Defaults suit
//! a single LKM on one host.

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

/// How the LKM secures its connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// HTTPS with a self-signed certificate made once in the data directory.
    #[default]
    SelfSigned,
    /// HTTPS with the operator's certificate and key.
    Files(TlsFiles),
    /// Plain HTTP, allowed only on a loopback address: a same-host demo, where the
    /// browser and the LKM share the machine and nothing crosses a network.
    Off,
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
    /// HTTPS with a self-signed or the operator's certificate, or plain HTTP on
    /// loopback.
    pub tls: TlsMode,
    /// The environment variable holding the admin token; `None` uses (creating once)
    /// `admin.token` in the data directory.
    pub admin_token_env: Option<String>,
    /// The browser origins (`scheme://host[:port]`, exactly as browsers send them)
    /// whose pages may call browser decrypt; a request from any other origin is
    /// refused.
    pub allowed_origins: Vec<String>,
    /// Limits.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: SocketAddr::from(([127, 0, 0, 1], 8760)),
            tls: TlsMode::default(),
            admin_token_env: None,
            allowed_origins: Vec::new(),
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// Refuses limits that cannot work, plain HTTP off loopback, and origins that
    /// no browser sends.
    pub fn validate(&self) -> Result<()> {
        if self.tls == TlsMode::Off && !self.listen.ip().is_loopback() {
            return Err(LkmError::Config(format!(
                "plain HTTP is only for a loopback address (127.0.0.1 or ::1), not {}: \
                 an LKM other machines reach must serve HTTPS",
                self.listen
            )));
        }
        for origin in &self.allowed_origins {
            check_origin(origin)?;
        }
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

/// An origin as browsers send it in `Origin`: `http` or `https`, `://`, a lower-case
/// host (an IPv6 address in brackets), and a port only when it is not the scheme's
/// default; no path, not even `/`.
pub fn check_origin(origin: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(LkmError::Config(format!(
            "allowed origin {origin:?}: {why} (write it as the browser sends it, \
             e.g. http://127.0.0.1:8750)"
        )))
    };
    let (scheme, rest) = match origin.split_once("://") {
        Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
        _ => return bad("it must start with http:// or https://"),
    };
    if rest.contains(['/', '?', '#']) {
        return bad("an origin has no path, query or fragment, not even a trailing /");
    }
    if rest.contains('@') || rest.bytes().any(|b| !b.is_ascii_graphic()) {
        return bad("an origin has no user name, spaces or non-ASCII characters");
    }
    if rest.bytes().any(|b| b.is_ascii_uppercase()) {
        return bad("browsers send the host in lower case");
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((address, port)) if address.parse::<std::net::Ipv6Addr>().is_ok() => {
                (address, port)
            }
            _ => return bad("the IPv6 address in brackets is not valid"),
        },
        None => rest.split_at(rest.find(':').unwrap_or(rest.len())),
    };
    if host.is_empty() {
        return bad("the host is missing");
    }
    if port.is_empty() {
        return Ok(());
    }
    let Some(port) = port
        .strip_prefix(':')
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0)
    else {
        return bad("the port is not a number from 1 to 65535");
    };
    if (scheme, port) == ("http", 80) || (scheme, port) == ("https", 443) {
        return bad("browsers leave out the scheme's default port");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_as_browsers_send_them() {
        for good in [
            "http://127.0.0.1:8750",
            "https://player.example.com",
            "http://localhost:3000",
            "http://[::1]:8750",
            "https://[2001:db8::1]",
        ] {
            check_origin(good).unwrap_or_else(|e| unreachable!("{good}: {e}"));
        }
        for bad in [
            "127.0.0.1:8750",
            "ftp://127.0.0.1",
            "http://127.0.0.1:8750/",
            "http://127.0.0.1:8750/player",
            "http://127.0.0.1:8750?x",
            "http://Player.example.com",
            "http://user@127.0.0.1",
            "http://",
            "http://:8750",
            "http://127.0.0.1:",
            "http://127.0.0.1:0",
            "http://127.0.0.1:99999",
            "http://127.0.0.1:+80",
            "http://127.0.0.1:80",
            "https://example.com:443",
            "http://[::1",
            "http://[not-v6]:80",
            "*",
            "null",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        let on = |listen: &str, tls: TlsMode| Config {
            listen: listen.parse().expect("addr"),
            tls,
            ..Config::default()
        };
        on("127.0.0.1:0", TlsMode::Off)
            .validate()
            .expect("v4 loopback");
        on("[::1]:8760", TlsMode::Off)
            .validate()
            .expect("v6 loopback");
        for listen in ["0.0.0.0:8760", "192.168.1.5:8760", "[::]:8760"] {
            let error = on(listen, TlsMode::Off).validate().expect_err(listen);
            assert!(error.to_string().contains("loopback"), "{error}");
            on(listen, TlsMode::SelfSigned)
                .validate()
                .expect("HTTPS anywhere");
        }
        let origins = Config {
            allowed_origins: vec!["http://127.0.0.1:8750/".into()],
            ..Config::default()
        };
        assert!(origins.validate().is_err());
    }
}
