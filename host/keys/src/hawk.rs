//! Hawk request authentication, as Genesys-style Local Key Managers use it: the
//! maintained `hawk` crate does the MACs, with aws-lc-rs as its cryptography (so no
//! second crypto library is linked). One module signs (the LKM client) and verifies
//! (the reference LKM); nonce replay and clock skew policy is the verifier's.

use std::sync::OnceLock;
use std::time::Duration;

use hawk::crypto::{CryptoError, Cryptographer, Hasher, HmacKey};
pub use hawk::{Credentials, DigestAlgorithm, Header, Key};

/// Why a Hawk header could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum HawkError {
    /// The header is not a Hawk header.
    #[error("malformed Hawk authorization header")]
    Malformed,
    /// The hawk crate failed (no random source, bad key).
    #[error("Hawk error: {0}")]
    Hawk(String),
}

struct AwsLc;

struct HmacSha(aws_lc_rs::hmac::Key);

impl HmacKey for HmacSha {
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(aws_lc_rs::hmac::sign(&self.0, data).as_ref().to_vec())
    }
}

struct Digest(Option<aws_lc_rs::digest::Context>);

impl Hasher for Digest {
    fn update(&mut self, data: &[u8]) -> Result<(), CryptoError> {
        match self.0.as_mut() {
            Some(context) => {
                context.update(data);
                Ok(())
            }
            None => Err(CryptoError::Other(anyhow::anyhow!("hash already finished"))),
        }
    }

    fn finish(&mut self) -> Result<Vec<u8>, CryptoError> {
        match self.0.take() {
            Some(context) => Ok(context.finish().as_ref().to_vec()),
            None => Err(CryptoError::Other(anyhow::anyhow!("hash already finished"))),
        }
    }
}

type Algorithms = (
    aws_lc_rs::hmac::Algorithm,
    &'static aws_lc_rs::digest::Algorithm,
);

fn algorithms(algorithm: DigestAlgorithm) -> Result<Algorithms, CryptoError> {
    match algorithm {
        DigestAlgorithm::Sha256 => Ok((aws_lc_rs::hmac::HMAC_SHA256, &aws_lc_rs::digest::SHA256)),
        DigestAlgorithm::Sha384 => Ok((aws_lc_rs::hmac::HMAC_SHA384, &aws_lc_rs::digest::SHA384)),
        DigestAlgorithm::Sha512 => Ok((aws_lc_rs::hmac::HMAC_SHA512, &aws_lc_rs::digest::SHA512)),
        other => Err(CryptoError::UnsupportedDigest(other)),
    }
}

impl Cryptographer for AwsLc {
    fn rand_bytes(&self, output: &mut [u8]) -> Result<(), CryptoError> {
        aws_lc_rs::rand::fill(output)
            .map_err(|_| CryptoError::Other(anyhow::anyhow!("no secure random source")))
    }

    fn new_key(
        &self,
        algorithm: DigestAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn HmacKey>, CryptoError> {
        let (hmac, _) = algorithms(algorithm)?;
        Ok(Box::new(HmacSha(aws_lc_rs::hmac::Key::new(hmac, key))))
    }

    fn new_hasher(&self, algorithm: DigestAlgorithm) -> Result<Box<dyn Hasher>, CryptoError> {
        let (_, digest) = algorithms(algorithm)?;
        Ok(Box::new(Digest(Some(aws_lc_rs::digest::Context::new(
            digest,
        )))))
    }

    fn constant_time_compare(&self, a: &[u8], b: &[u8]) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
    }
}

/// Makes aws-lc-rs the hawk crate's cryptography; every function here calls it first.
fn init() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // Fails only if already set, which this OnceLock rules out.
        let _ = hawk::crypto::set_cryptographer(&AwsLc);
    });
}

/// SHA-256 Hawk credentials: an id and the shared key (the LKM's `authKey`, whose
/// UTF-8 bytes are the HMAC key, as in the JavaScript Hawk implementation).
pub fn credentials(id: &str, key: &str) -> Result<Credentials, HawkError> {
    init();
    Ok(Credentials {
        id: id.to_string(),
        key: Key::new(key.as_bytes(), DigestAlgorithm::Sha256)
            .map_err(|e| HawkError::Hawk(e.to_string()))?,
    })
}

/// The `Authorization` header value (`Hawk id="…", ts="…", nonce="…", mac="…"`) for
/// one request; every call has a fresh timestamp and nonce.
pub fn authorization(
    credentials: &Credentials,
    method: &str,
    host: &str,
    port: u16,
    path: &str,
) -> Result<String, HawkError> {
    init();
    let header = hawk::RequestBuilder::new(method, host, port, path)
        .request()
        .make_header(credentials)
        .map_err(|e| HawkError::Hawk(e.to_string()))?;
    Ok(format!("Hawk {header}"))
}

/// Parses an `Authorization` header value that starts with `Hawk `. The header's id,
/// timestamp and nonce are there for the caller to look up and check for replays.
pub fn parse(value: &str) -> Result<Header, HawkError> {
    init();
    if absurd_ts(value) {
        return Err(HawkError::Malformed);
    }
    let rest = value.strip_prefix("Hawk ").ok_or(HawkError::Malformed)?;
    let header: Header = rest.parse().map_err(|_| HawkError::Malformed)?;
    if header.id.is_none() || header.ts.is_none() || header.nonce.is_none() || header.mac.is_none()
    {
        return Err(HawkError::Malformed);
    }
    Ok(header)
}

/// The largest Hawk timestamp read (about the year 36,800); see [`absurd_ts`].
const MAX_TS_SECS: u64 = 1 << 40;

/// Whether the header has a `ts` the hawk crate would overflow on (it adds any u64
/// to the epoch unchecked, which panics). This walks the attributes exactly as the
/// hawk crate's parser does, so it sees every `ts` that parser would read.
fn absurd_ts(value: &str) -> bool {
    let Some(mut p) = value.strip_prefix("Hawk ") else {
        return false;
    };
    while !p.is_empty() {
        p = p.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let Some(eq) = p.find('=') else {
            return false;
        };
        let attr = p[..eq].trim();
        let Some(rest) = p[eq + 1..].trim_start().strip_prefix('"') else {
            return false;
        };
        let Some(end) = rest.find('"') else {
            return false;
        };
        if attr == "ts"
            && rest[..end]
                .parse::<u64>()
                .is_ok_and(|secs| secs > MAX_TS_SECS)
        {
            return true;
        }
        p = rest[end + 1..].trim_start();
    }
    false
}

/// The request a Hawk header must match.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// HTTP method, upper case.
    pub method: &'a str,
    /// The host the client addressed (the `Host` header, without the port).
    pub host: &'a str,
    /// The port the client addressed.
    pub port: u16,
    /// Path and query, as sent.
    pub path: &'a str,
    /// The request body and its content type, checked when the header carries a
    /// payload hash.
    pub payload: Option<(&'a str, &'a [u8])>,
}

/// Whether `header` is a valid MAC with `key` over `expected`, made within `skew` of
/// now; a payload hash in the header must match the body. Replays are the caller's
/// to refuse (by remembering nonces for twice `skew`).
pub fn verify(header: &Header, key: &Key, expected: &Expected<'_>, skew: Duration) -> bool {
    init();
    let hash = match (&header.hash, expected.payload) {
        (Some(_), Some((content_type, body))) => {
            match hawk::PayloadHasher::hash(content_type, DigestAlgorithm::Sha256, body) {
                Ok(hash) => Some(hash),
                Err(_) => return false,
            }
        }
        (Some(_), None) => return false,
        (None, _) => None,
    };
    let request =
        hawk::RequestBuilder::new(expected.method, expected.host, expected.port, expected.path)
            .hash(hash.as_deref())
            .request();
    request.validate_header(header, key, skew)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: Duration = Duration::from_secs(60);

    fn expected(path: &str) -> Expected<'_> {
        Expected {
            method: "POST",
            host: "lkm.example",
            port: 8443,
            path,
            payload: None,
        }
    }

    #[test]
    fn a_signed_request_verifies_and_a_changed_one_does_not() {
        let creds = credentials("tapeseal-1", "secret-key").expect("creds");
        let value = authorization(
            &creds,
            "POST",
            "lkm.example",
            8443,
            "/key-management/v1/decrypt",
        )
        .expect("sign");
        let header = parse(&value).expect("parse");
        assert_eq!(header.id.as_deref(), Some("tapeseal-1"));
        assert!(verify(
            &header,
            &creds.key,
            &expected("/key-management/v1/decrypt"),
            SKEW
        ));
        assert!(!verify(
            &header,
            &creds.key,
            &expected("/key-management/v1/keypair"),
            SKEW
        ));
        let other = credentials("tapeseal-1", "another-key").expect("creds");
        assert!(!verify(
            &header,
            &other.key,
            &expected("/key-management/v1/decrypt"),
            SKEW
        ));
    }

    #[test]
    fn absurd_timestamps_are_caught_before_the_hawk_parser_sees_them() {
        let huge = "Hawk id=\"client\", ts=\"18446744073709551615\", nonce=\"n\", mac=\"AAAA\"";
        assert!(absurd_ts(huge));
        assert!(absurd_ts(
            "Hawk id=\"a,ts=1\" ,  ts = \"99999999999999\", mac=\"x\""
        ));
        assert!(!absurd_ts(
            "Hawk id=\"ts\", ts=\"1796478653\", nonce=\"99999999999999\""
        ));
        assert!(!absurd_ts("Hawk ts=\"not a number\""));
        assert!(!absurd_ts("Hawk ts=\"unterminated"));
        assert!(!absurd_ts("Bearer 99999999999999"));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(
            fields in proptest::collection::vec(
                ("(id|ts|nonce|mac|hash|ext|app|dlg|x)", "[ -~]{0,24}"),
                0..8,
            ),
            junk in "[ -~]{0,40}",
        ) {
            let mut value = String::from("Hawk ");
            for (name, v) in &fields {
                value.push_str(&format!("{name}=\"{v}\", "));
            }
            value.push_str(&junk);
            let _ = parse(&value);
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        for value in ["", "Bearer x", "Hawk ", "Hawk id=\"x\"", "Hawk garbage"] {
            assert!(parse(value).is_err(), "{value:?}");
        }
    }
}
