//! Who is asking: Hawk (SHA-256 MAC over method, path and query, host, port,
//! timestamp and nonce, and the body when the header carries a payload hash) from an
//! active credential, or the admin bearer token where an endpoint allows it. A
//! timestamp more than the skew from the LKM's clock is refused, and each (id,
//! nonce) is accepted once: nonces are remembered for twice the skew, after which
//! their timestamp is stale anyway.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::http::header;
use tapeseal_keys::hawk;

use crate::http::Shared;
use crate::incoming::Incoming;
use crate::keyring::Credential;
use crate::reply::ApiError;

/// The longest Hawk id or nonce read; longer ones are malformed.
const MAX_FIELD_LEN: usize = 256;
/// The remembered nonces are swept of expired ones this often (in insertions).
const SWEEP_EVERY: u64 = 4096;

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Allow {
    /// The admin bearer token only (issuing credentials).
    Admin,
    /// Hawk only (decrypt).
    Hawk,
    /// Either (key pairs, the request log).
    HawkOrAdmin,
}

/// Who is asking, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The holder of the admin token.
    Admin,
    /// A Hawk credential, by id.
    Hawk(String),
}

/// Why a request is not authenticated. Clients get [`Denied::message`]; the log gets
/// the variant and the claimed id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Denied {
    Missing,
    Malformed,
    NeedsAdmin,
    NeedsHawk,
    BadAdminToken,
    UnknownId,
    Revoked,
    Stale,
    BadMac,
    Replayed,
    NoncesFull,
}

impl Denied {
    fn message(self) -> &'static str {
        match self {
            Self::Missing => "an Authorization header is required",
            Self::Malformed => "malformed Authorization header",
            Self::NeedsAdmin => "this endpoint needs the admin bearer token",
            Self::NeedsHawk => "this endpoint needs Hawk credentials",
            Self::BadAdminToken => "wrong admin token",
            // One answer for both: an id's existence is not disclosed.
            Self::UnknownId | Self::Revoked => "unknown or revoked Hawk credentials",
            Self::Stale => "stale timestamp: the Hawk timestamp is too far from the LKM's clock",
            Self::BadMac => "the Hawk MAC does not match this request",
            Self::Replayed => "the Hawk nonce was already used",
            Self::NoncesFull => "too many requests to remember their nonces; retry later",
        }
    }

    fn reply(self, claimed_id: Option<&str>) -> ApiError {
        tracing::info!(reason = ?self, claimed_id, "request not authenticated");
        match self {
            Self::NoncesFull => ApiError::busy(self.message()),
            _ => ApiError::unauthorized(self.message()),
        }
    }
}

/// The (id, nonce) pairs seen within twice the skew.
#[derive(Debug)]
pub(crate) struct Nonces {
    seen: Mutex<Seen>,
    ttl: Duration,
    max: usize,
}

#[derive(Debug, Default)]
struct Seen {
    expiry: HashMap<(String, String), Instant>,
    inserts: u64,
}

impl Nonces {
    /// Remembers nonces for `2 × skew`, at most `max` at once.
    pub(crate) fn new(skew: Duration, max: usize) -> Self {
        Self {
            seen: Mutex::new(Seen::default()),
            ttl: skew.saturating_mul(2),
            max,
        }
    }

    /// Remembers nonces a previous run accepted, from the request log: `(id, nonce,
    /// accepted at, Unix ms)`, as of `now_ms`. Each is remembered for what is left of
    /// its window, so a request captured before a restart is still refused after it.
    pub(crate) fn seed(&self, accepted: Vec<(String, String, i64)>, now_ms: i64) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        for (id, nonce, at) in accepted {
            let age = Duration::from_millis(u64::try_from(now_ms.saturating_sub(at)).unwrap_or(0));
            if let Some(left) = self.ttl.checked_sub(age)
                && seen.expiry.len() < self.max
            {
                seen.expiry.insert((id, nonce), now + left);
            }
        }
    }

    /// The window nonces are remembered for.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Accepts `(id, nonce)` the first time it is seen within the window.
    fn first_use(&self, id: &str, nonce: &str, now: Instant) -> Result<(), Denied> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.inserts = seen.inserts.wrapping_add(1);
        if seen.inserts.is_multiple_of(SWEEP_EVERY) || seen.expiry.len() >= self.max {
            seen.expiry.retain(|_, expiry| *expiry > now);
        }
        let key = (id.to_string(), nonce.to_string());
        if seen.expiry.get(&key).is_some_and(|expiry| *expiry > now) {
            return Err(Denied::Replayed);
        }
        if seen.expiry.len() >= self.max {
            return Err(Denied::NoncesFull);
        }
        seen.expiry.insert(key, now + self.ttl);
        Ok(())
    }
}

/// Authenticates `request` as `allow` permits; a Hawk caller is noted for the log.
pub(crate) async fn authenticate(
    state: &Shared,
    request: &Incoming,
    allow: Allow,
) -> Result<Caller, ApiError> {
    let Some(value) = request.header(header::AUTHORIZATION) else {
        return Err(Denied::Missing.reply(None));
    };
    if let Some(token) = bearer(value) {
        return match allow {
            Allow::Hawk => Err(Denied::NeedsHawk.reply(None)),
            _ if state.admin.matches(token) => Ok(Caller::Admin),
            _ => Err(Denied::BadAdminToken.reply(None)),
        };
    }
    if allow == Allow::Admin {
        return Err(Denied::NeedsAdmin.reply(None));
    }
    let id = hawk_caller(state, request, value).await?;
    request.noted.credential(&id);
    Ok(Caller::Hawk(id))
}

/// The token of `Bearer <token>` (scheme in any case).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn hawk_caller(state: &Shared, request: &Incoming, value: &str) -> Result<String, ApiError> {
    let header = hawk::parse(value).map_err(|_| Denied::Malformed.reply(None))?;
    let (Some(id), Some(nonce), Some(ts)) = (header.id.clone(), header.nonce.clone(), header.ts)
    else {
        return Err(Denied::Malformed.reply(None));
    };
    if id.len() > MAX_FIELD_LEN || nonce.len() > MAX_FIELD_LEN {
        return Err(Denied::Malformed.reply(None));
    }
    let keyring = state.keyring.clone();
    let lookup = id.clone();
    let credential = tokio::task::spawn_blocking(move || keyring.credential(&lookup))
        .await
        .map_err(|e| ApiError::internal(&e))??;
    let key = match credential {
        Credential::Active(key) => key,
        Credential::Unknown => return Err(Denied::UnknownId.reply(Some(&id))),
        Credential::Revoked => return Err(Denied::Revoked.reply(Some(&id))),
    };
    let skew = state.limits.skew;
    if !within(ts, SystemTime::now(), skew) {
        return Err(Denied::Stale.reply(Some(&id)));
    }
    let credentials = hawk::credentials(&id, &key).map_err(|e| ApiError::internal(&e))?;
    let path = request
        .uri
        .path_and_query()
        .map_or_else(|| request.uri.path(), |p| p.as_str());
    let content_type = content_type(request);
    let payload = header
        .hash
        .as_ref()
        .map(|_| (content_type.as_str(), request.body.as_ref()));
    let method = request.method.as_str();
    let matches = addressed(request, state.local).iter().any(|(host, port)| {
        let expected = hawk::Expected {
            method,
            host,
            port: *port,
            path,
            payload,
        };
        hawk::verify(&header, &credentials.key, &expected, skew)
    });
    if !matches {
        return Err(Denied::BadMac.reply(Some(&id)));
    }
    state
        .nonces
        .first_use(&id, &nonce, Instant::now())
        .map_err(|denied| denied.reply(Some(&id)))?;
    request.noted.nonce(&nonce);
    Ok(id)
}

/// Whether `ts` is within `skew` of `now`, either way.
fn within(ts: SystemTime, now: SystemTime, skew: Duration) -> bool {
    match now.duration_since(ts) {
        Ok(behind) => behind <= skew,
        Err(ahead) => ahead.duration() <= skew,
    }
}

/// The content type as Hawk hashes it: lower case, without parameters.
fn content_type(request: &Incoming) -> String {
    request
        .header(header::CONTENT_TYPE)
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The (host, port) pairs the client may have signed: from the URI's authority
/// (HTTP/2) or the `Host` header, else the listener's address. Without a port the
/// client addressed 443, or the listener's port directly; an IPv6 host is tried with
/// and without its brackets (Hawk implementations differ).
fn addressed(request: &Incoming, local: SocketAddr) -> Vec<(String, u16)> {
    let authority = request
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| request.header(header::HOST));
    let Some(authority) = authority else {
        return vec![(local.ip().to_string(), local.port())];
    };
    let (host, port) = split_host_port(authority.trim());
    let ports = match port {
        Some(port) => vec![port],
        None => vec![443, local.port()],
    };
    let mut hosts = vec![host.to_string()];
    if let Some(bare) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        hosts.push(bare.to_string());
    }
    hosts
        .iter()
        .flat_map(|h| ports.iter().map(move |p| (h.clone(), *p)))
        .collect()
}

/// `host:port`, `[v6]:port` or a bare host.
fn split_host_port(authority: &str) -> (&str, Option<u16>) {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => {
                let (host, rest) = authority.split_at(end + 1);
                (host, rest.strip_prefix(':').and_then(|p| p.parse().ok()))
            }
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (authority, None),
        },
        None => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_accepted_once_within_its_window() {
        let nonces = Nonces::new(Duration::from_secs(60), 3);
        let now = Instant::now();
        assert_eq!(nonces.first_use("client", "n1", now), Ok(()));
        assert_eq!(nonces.first_use("client", "n1", now), Err(Denied::Replayed));
        assert_eq!(
            nonces.first_use("other", "n1", now),
            Ok(()),
            "nonces are per id"
        );
        let later = now + Duration::from_secs(121);
        assert_eq!(nonces.first_use("client", "n1", later), Ok(()), "expired");
        assert_eq!(nonces.first_use("client", "n2", now), Ok(()));
        assert_eq!(
            nonces.first_use("client", "n3", now),
            Err(Denied::NoncesFull)
        );
    }

    #[test]
    fn timestamps_outside_the_skew_are_stale() {
        let now = SystemTime::now();
        let skew = Duration::from_secs(60);
        assert!(within(now - Duration::from_secs(59), now, skew));
        assert!(within(now + Duration::from_secs(59), now, skew));
        assert!(!within(now - Duration::from_secs(61), now, skew));
        assert!(!within(now + Duration::from_secs(61), now, skew));
    }

    #[test]
    fn hosts_and_ports_are_read_as_clients_send_them() {
        assert_eq!(
            split_host_port("lkm.example:8443"),
            ("lkm.example", Some(8443))
        );
        assert_eq!(split_host_port("lkm.example"), ("lkm.example", None));
        assert_eq!(split_host_port("[::1]:8760"), ("[::1]", Some(8760)));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Hawk id=\"x\""), None);
    }
}
