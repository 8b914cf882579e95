//! Who is asking: Hawk (SHA-256 MAC over method, path and query, host, port,
//! timestamp and nonce, and the body when the header carries a payload hash) from an
//! active credential, or the admin bearer token where an endpoint allows it. A
//! timestamp more than the skew from the LKM's clock is refused, and each (id,
//! nonce) is accepted once: nonces are remembered for twice the skew, after which
//! their timestamp is stale anyway. The same memory, in a namespace of its own,
//! makes playback grants single-use.

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

/// What a remembered value belongs to: a Hawk credential's nonces, or a grant
/// issuer's grant ids. The two never collide, whatever the ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Space {
    /// Hawk nonces, by credential id.
    Hawk,
    /// Grant ids (`jti`), by issuer.
    Grant,
}

/// Why a nonce or grant id was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spent {
    /// Seen before, within its window.
    Replayed,
    /// Too many unexpired values are remembered to take another.
    Full,
}

/// The Hawk (id, nonce) pairs seen within twice the skew, and the grant (issuer,
/// grant id) pairs accepted, until their grant's expiry plus the skew.
#[derive(Debug)]
pub(crate) struct Nonces {
    seen: Mutex<Seen>,
    skew: Duration,
    ttl: Duration,
    max: usize,
}

#[derive(Debug, Default)]
struct Seen {
    expiry: HashMap<(Space, String, String), Instant>,
    inserts: u64,
}

/// Milliseconds as an `i64`, saturating.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Nonces {
    /// Remembers nonces for `2 × skew`, grant ids until `exp + skew`; at most `max`
    /// values at once.
    pub(crate) fn new(skew: Duration, max: usize) -> Self {
        Self {
            seen: Mutex::new(Seen::default()),
            skew,
            ttl: skew.saturating_mul(2),
            max,
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers values a previous run accepted, from the request log: `(id, value,
    /// since, Unix ms)`, as of `now_ms`, each for what is left of its window: a Hawk
    /// nonce for twice the skew after it was accepted (`since`), a grant id for the
    /// skew after its grant expires (`since`). So a request or grant captured before a
    /// restart is still refused after it.
    pub(crate) fn seed(&self, space: Space, accepted: Vec<(String, String, i64)>, now_ms: i64) {
        let window = millis(match space {
            Space::Hawk => self.ttl,
            Space::Grant => self.skew,
        });
        let mut seen = self.seen();
        let now = Instant::now();
        for (id, value, since) in accepted {
            let until = since.saturating_add(window);
            let left = u64::try_from(until.saturating_sub(now_ms)).unwrap_or(0);
            if left > 0 && seen.expiry.len() < self.max {
                seen.expiry
                    .insert((space, id, value), now + Duration::from_millis(left));
            }
        }
    }

    /// The window nonces are remembered for.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Accepts `(id, nonce)` the first time it is seen within the window.
    fn first_use(&self, id: &str, nonce: &str, now: Instant) -> Result<(), Denied> {
        self.remember(Space::Hawk, id, nonce, now, now + self.ttl)
            .map_err(|spent| match spent {
                Spent::Replayed => Denied::Replayed,
                Spent::Full => Denied::NoncesFull,
            })
    }

    /// Accepts grant `jti` of `issuer` the first time it is seen, remembering it until
    /// the skew after its expiry `exp` (Unix seconds; `now_secs` is the LKM's clock
    /// at `now`).
    pub(crate) fn first_grant_use(
        &self,
        issuer: &str,
        jti: &str,
        exp: u64,
        now: Instant,
        now_secs: u64,
    ) -> Result<(), Spent> {
        let left = Duration::from_secs(exp.saturating_sub(now_secs)).saturating_add(self.skew);
        self.remember(Space::Grant, issuer, jti, now, now + left)
    }

    fn remember(
        &self,
        space: Space,
        id: &str,
        value: &str,
        now: Instant,
        until: Instant,
    ) -> Result<(), Spent> {
        let mut seen = self.seen();
        seen.inserts = seen.inserts.wrapping_add(1);
        if seen.inserts.is_multiple_of(SWEEP_EVERY) || seen.expiry.len() >= self.max {
            seen.expiry.retain(|_, expiry| *expiry > now);
        }
        let key = (space, id.to_string(), value.to_string());
        if seen.expiry.get(&key).is_some_and(|expiry| *expiry > now) {
            return Err(Spent::Replayed);
        }
        if seen.expiry.len() >= self.max {
            return Err(Spent::Full);
        }
        seen.expiry.insert(key, until);
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
    fn a_grant_id_is_accepted_once_until_the_skew_after_its_expiry() {
        let nonces = Nonces::new(Duration::from_secs(60), 10);
        let now = Instant::now();
        assert_eq!(nonces.first_use("issuer-1", "j1", now), Ok(()));
        assert_eq!(
            nonces.first_grant_use("issuer-1", "j1", 1_100, now, 1_000),
            Ok(()),
            "grant ids and Hawk nonces are apart"
        );
        assert_eq!(
            nonces.first_grant_use("issuer-1", "j1", 1_100, now, 1_000),
            Err(Spent::Replayed)
        );
        let before = now + Duration::from_secs(159);
        assert_eq!(
            nonces.first_grant_use("issuer-1", "j1", 1_100, before, 1_159),
            Err(Spent::Replayed)
        );
        assert_eq!(
            nonces.first_grant_use("issuer-2", "j1", 1_100, now, 1_000),
            Ok(()),
            "grant ids are per issuer"
        );
        let after = now + Duration::from_secs(161);
        assert_eq!(
            nonces.first_grant_use("issuer-1", "j1", 1_100, after, 1_161),
            Ok(()),
            "forgotten after exp + skew (and refused as expired by then)"
        );
    }

    #[test]
    fn seeded_values_are_remembered_for_what_is_left_of_their_window() {
        let nonces = Nonces::new(Duration::from_secs(60), 10);
        let now_ms = 1_000_000;
        nonces.seed(
            Space::Hawk,
            vec![
                ("c".into(), "recent".into(), now_ms - 100_000),
                ("c".into(), "old".into(), now_ms - 121_000),
            ],
            now_ms,
        );
        nonces.seed(
            Space::Grant,
            vec![
                ("i".into(), "live".into(), now_ms - 59_000),
                ("i".into(), "gone".into(), now_ms - 61_000),
            ],
            now_ms,
        );
        let now = Instant::now();
        assert_eq!(nonces.first_use("c", "recent", now), Err(Denied::Replayed));
        assert_eq!(nonces.first_use("c", "old", now), Ok(()));
        let exp = 2_000;
        assert_eq!(
            nonces.first_grant_use("i", "live", exp, now, 1_000),
            Err(Spent::Replayed)
        );
        assert_eq!(nonces.first_grant_use("i", "gone", exp, now, 1_000), Ok(()));
        assert_eq!(
            nonces.first_use("i", "live", now),
            Ok(()),
            "a seeded grant id is not a Hawk nonce"
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
