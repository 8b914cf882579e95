//! S3 as a place to keep objects: the settings of a bucket and the one function that
//! builds an `object_store` client for it, which the recording repository
//! ([`crate::repo::Repository::s3`]) and bulk export destinations both use. It sets
//! the endpoint, region and credentials, sends path-style requests to an endpoint of
//! one's own, asks for server-side encryption on every object written, and keeps
//! objects under a key prefix when one is given. Nothing is contacted until the
//! store is first used.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use serde::Deserialize;
use zeroize::Zeroizing;

/// The longest key prefix accepted, in bytes.
pub const MAX_PREFIX_LEN: usize = 512;

/// A secret (an AWS secret access key) that prints as `[redacted]` and is wiped
/// when dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret.
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

/// Server-side encryption S3 applies to every object written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// SSE-S3 (`AES256`): keys S3 manages.
    S3,
    /// SSE-KMS (`aws:kms`) under this KMS key (id, ARN, alias name or alias ARN).
    Kms {
        /// The KMS key.
        key_id: String,
    },
}

/// Where objects go in S3 and how to reach it.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// The bucket.
    pub bucket: String,
    /// A key prefix every object lives under (`/`-separated; ASCII letters, digits,
    /// `-`, `_`, `.`); none: the bucket's root.
    pub prefix: Option<String>,
    /// The bucket's region.
    pub region: String,
    /// Another endpoint than AWS's regional one (a VPC endpoint, an S3-compatible
    /// store, a test server); `http://` is allowed for it and only for it.
    pub endpoint_url: Option<String>,
    /// An access key id; none: the standard AWS chain from the environment.
    pub access_key_id: Option<String>,
    /// Its secret.
    pub secret_access_key: Option<Secret>,
    /// Server-side encryption asked for on every object written; none: the
    /// bucket's default.
    pub sse: Option<Sse>,
}

impl S3Settings {
    /// A bucket in `region`, reached with the environment's credentials, with
    /// SSE-S3, no prefix and AWS's endpoint.
    pub fn new(bucket: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: None,
            region: region.into(),
            endpoint_url: None,
            access_key_id: None,
            secret_access_key: None,
            sse: Some(Sse::S3),
        }
    }

    /// `s3://bucket/prefix`, for messages (no credentials).
    pub fn describe(&self) -> String {
        match self.prefix.as_deref().map(|p| p.trim_matches('/')) {
            Some(prefix) if !prefix.is_empty() => format!("s3://{}/{prefix}", self.bucket),
            _ => format!("s3://{}", self.bucket),
        }
    }

    /// Checks every field; the message says what is wrong and what is allowed.
    pub fn check(&self) -> Result<(), String> {
        if !valid_bucket(&self.bucket) {
            return Err(format!(
                "'{}' is not a valid S3 bucket name (3 to 63 lowercase letters, digits, '-' and '.')",
                self.bucket
            ));
        }
        if !valid_region(&self.region) {
            return Err(format!("'{}' is not a valid AWS region", self.region));
        }
        if let Some(prefix) = &self.prefix {
            check_prefix(prefix)?;
        }
        if let Some(url) = &self.endpoint_url {
            check_endpoint(url)?;
        }
        match (&self.access_key_id, &self.secret_access_key) {
            (None, None) => {}
            (Some(id), Some(secret))
                if valid_token(id, 128) && valid_token(secret.expose(), 256) => {}
            (Some(_), Some(_)) => return Err("the access key is malformed".into()),
            _ => {
                return Err(
                    "give both an access key id and its secret access key, or neither".into(),
                );
            }
        }
        if let Some(Sse::Kms { key_id }) = &self.sse
            && !valid_token(key_id, 2048)
        {
            return Err("the SSE-KMS key id is malformed".into());
        }
        Ok(())
    }
}

/// Whether `name` is a valid S3 bucket name: 3 to 63 lowercase letters, digits,
/// `-` and `.`, starting and ending with a letter or digit.
pub fn valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

/// Whether `region` looks like an AWS region (`eu-west-1`): letters, digits, `-`.
pub fn valid_region(region: &str) -> bool {
    valid_token(region, 64)
        && region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Whether `text` is 1 to `max` printable ASCII characters without quotes or
/// backslashes (an access key, a KMS key id).
pub fn valid_token(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\'))
}

/// Checks a key prefix: `/`-separated segments of ASCII letters, digits, `-`, `_`
/// and `.` (never `.` or `..` alone, never empty); leading and trailing `/` are
/// ignored.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.len() > MAX_PREFIX_LEN {
        return Err(format!("the prefix is longer than {MAX_PREFIX_LEN} bytes"));
    }
    if trimmed.is_empty() {
        return Ok(());
    }
    for part in trimmed.split('/') {
        let ok = !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(format!(
                "the prefix segment '{part}' is not allowed: use ASCII letters, digits, '-', '_' and '.', separated by '/'"
            ));
        }
    }
    Ok(())
}

/// Checks an endpoint URL: `http://` or `https://` and a host.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(format!("'{url}' is not an http:// or https:// URL")),
    }
}

/// Builds the store `settings` describe (their fields checked first). Without an
/// access key, credentials come from the standard chain `object_store` reads from the
/// environment: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, a
/// web identity token (EKS), ECS or EKS Pod Identity container credentials, then EC2
/// instance metadata. Other `AWS_*` settings of the environment apply too (proxies,
/// a metadata endpoint), except the endpoint and server-side encryption, which only
/// `settings` decide. Nothing is contacted here.
pub fn build(settings: &S3Settings) -> anyhow::Result<Arc<dyn ObjectStore>> {
    settings.check().map_err(anyhow::Error::msg)?;
    let explicit = settings.access_key_id.is_some();
    let mut builder = from_environment(explicit)
        .with_bucket_name(&settings.bucket)
        .with_region(&settings.region);
    let http = match &settings.endpoint_url {
        Some(endpoint) => {
            // Path-style (`endpoint/bucket/key`): an endpoint of one's own rarely
            // resolves `bucket.endpoint`.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
            endpoint.starts_with("http://")
        }
        None => false,
    };
    builder = builder.with_allow_http(http);
    if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret.expose());
    }
    builder = match &settings.sse {
        Some(Sse::Kms { key_id }) => builder.with_sse_kms_encryption(key_id),
        Some(Sse::S3) => {
            let key: AmazonS3ConfigKey = "aws_server_side_encryption".parse()?;
            builder.with_config(key, "AES256")
        }
        None => builder,
    };
    let store: Arc<dyn ObjectStore> = Arc::new(
        builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up {}: {e}", settings.describe()))?,
    );
    let prefix = settings
        .prefix
        .as_deref()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty());
    Ok(match prefix {
        Some(prefix) => Arc::new(PrefixStore::new(store, ObjectPath::parse(prefix)?)),
        None => store,
    })
}

/// `AmazonS3Builder::from_env` without what the settings alone decide: the endpoint
/// and server-side encryption, and, when the settings give an access key, the
/// environment's keys (a session token of another key would spoil its signature).
fn from_environment(explicit_credentials: bool) -> AmazonS3Builder {
    let mut builder = AmazonS3Builder::new();
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        if !name.starts_with("AWS_") {
            continue;
        }
        let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() else {
            continue;
        };
        let skip = match key {
            AmazonS3ConfigKey::Endpoint
            | AmazonS3ConfigKey::S3Endpoint
            | AmazonS3ConfigKey::Encryption(_) => true,
            AmazonS3ConfigKey::AccessKeyId
            | AmazonS3ConfigKey::SecretAccessKey
            | AmazonS3ConfigKey::Token => explicit_credentials,
            _ => false,
        };
        if !skip {
            builder = builder.with_config(key, value);
        }
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> S3Settings {
        S3Settings::new("recordings", "eu-west-1")
    }

    #[test]
    fn settings_are_checked_before_anything_is_contacted() {
        assert!(build(&settings()).is_ok());
        let mut with_key = settings();
        with_key.access_key_id = Some("AKIAEXAMPLE".into());
        with_key.secret_access_key = Some(Secret::new("secret".into()));
        with_key.endpoint_url = Some("http://127.0.0.1:9000".into());
        with_key.prefix = Some("tenant-1/recordings".into());
        with_key.sse = Some(Sse::Kms {
            key_id: "alias/recordings".into(),
        });
        assert!(build(&with_key).is_ok());

        type Change = fn(&mut S3Settings);
        let cases: [(Change, &str); 7] = [
            (|s| s.bucket = "Recordings".into(), "bucket"),
            (|s| s.region = "eu west".into(), "region"),
            (|s| s.prefix = Some("a/../b".into()), "prefix"),
            (|s| s.prefix = Some("a//b".into()), "prefix"),
            (|s| s.endpoint_url = Some("ftp://x".into()), "http"),
            (|s| s.access_key_id = Some("AKIA".into()), "both"),
            (
                |s| s.secret_access_key = Some(Secret::new("s".into())),
                "both",
            ),
        ];
        for (change, says) in cases {
            let mut s = settings();
            change(&mut s);
            let err = build(&s).expect_err("refused").to_string();
            assert!(err.contains(says), "{s:?}: {err}");
        }
    }

    #[test]
    fn a_secret_never_prints() {
        let mut s = settings();
        s.access_key_id = Some("AKIAEXAMPLE".into());
        s.secret_access_key = Some(Secret::new("hunter2-secret".into()));
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2") && shown.contains("[redacted]"));
        assert_eq!(s.describe(), "s3://recordings");
        s.prefix = Some("/a/b/".into());
        assert_eq!(s.describe(), "s3://recordings/a/b");
    }
}
