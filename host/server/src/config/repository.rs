//! Where recordings are stored: `[repository]`, a local directory or an S3 bucket
//! (`[repository.s3]`), and how the S3 settings are checked and completed from the
//! environment.

use std::path::PathBuf;

use serde::Deserialize;
use tapeseal_store::s3::{S3Settings, Secret, Sse};

/// Where recordings are stored: a local directory (`path`, the default) or an S3
/// bucket (`[repository.s3]`), never both.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RepositoryConfig {
    /// A local directory; default `<data_dir>/recordings`.
    pub path: Option<PathBuf>,
    /// An S3 bucket (or any S3-compatible store) instead of a directory.
    pub s3: Option<S3RepositoryConfig>,
}

/// An S3 recording repository. The secret access key never appears in the file:
/// `secret_access_key_env` names the environment variable that holds it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct S3RepositoryConfig {
    /// The bucket.
    pub bucket: String,
    /// A key prefix every recording lives under (`/`-separated; ASCII letters,
    /// digits, `-`, `_`, `.`); none: the bucket's root.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The bucket's region.
    #[serde(default = "default_s3_region")]
    pub region: String,
    /// Another endpoint than AWS's regional one (a VPC endpoint, an S3-compatible
    /// store, a test server; `http://` allowed, then requests are path-style).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// An access key id; none: the standard AWS chain (environment, web identity,
    /// container credentials, instance metadata).
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// The name of the environment variable holding the access key's secret.
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    /// Server-side encryption of every object: `AES256` (SSE-S3, the default),
    /// `aws:kms` (SSE-KMS, with `sse_kms_key_id`) or `none` (the bucket's default).
    #[serde(default)]
    pub sse: SseConfig,
    /// The KMS key (id, ARN, alias name or alias ARN) for `sse = "aws:kms"`.
    #[serde(default)]
    pub sse_kms_key_id: Option<String>,
}

fn default_s3_region() -> String {
    "us-east-1".into()
}

/// Server-side encryption S3 applies to every recording written.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum SseConfig {
    /// `AES256`: SSE-S3, keys S3 manages.
    #[default]
    #[serde(rename = "AES256")]
    Aes256,
    /// `aws:kms`: SSE-KMS under `sse_kms_key_id`.
    #[serde(rename = "aws:kms")]
    AwsKms,
    /// `none`: no encryption header; the bucket's default encryption applies.
    #[serde(rename = "none")]
    None,
}

impl RepositoryConfig {
    /// Checks what can be checked without the environment.
    pub fn validate(&self) -> anyhow::Result<()> {
        let Some(s3) = &self.s3 else {
            return Ok(());
        };
        anyhow::ensure!(
            self.path.is_none(),
            "[repository] path and [repository.s3] exclude each other: recordings are kept \
             in a directory or in a bucket; give one"
        );
        anyhow::ensure!(
            s3.access_key_id.is_some() == s3.secret_access_key_env.is_some(),
            "[repository.s3] access_key_id and secret_access_key_env go together: give both, \
             or neither for the standard AWS credential chain"
        );
        if let Some(var) = &s3.secret_access_key_env {
            anyhow::ensure!(
                !var.is_empty() && !var.contains('=') && !var.contains('\0'),
                "[repository.s3] secret_access_key_env is the name of an environment variable"
            );
        }
        match (s3.sse, &s3.sse_kms_key_id) {
            (SseConfig::AwsKms, None) => anyhow::bail!(
                "[repository.s3] sse = \"aws:kms\" needs sse_kms_key_id (a KMS key id, ARN or alias)"
            ),
            (SseConfig::Aes256 | SseConfig::None, Some(_)) => {
                anyhow::bail!("[repository.s3] sse_kms_key_id goes with sse = \"aws:kms\" only")
            }
            _ => {}
        }
        // Every other field, as the store checks it (the secret is not read yet).
        let mut settings = s3.settings(None);
        if settings.access_key_id.is_some() {
            settings.secret_access_key = Some(Secret::new("unread".into()));
        }
        settings
            .check()
            .map_err(|e| anyhow::anyhow!("[repository.s3] {e}"))
    }

    /// The S3 repository's settings, its secret read from the environment; none for
    /// a local directory.
    pub fn s3_settings(&self) -> anyhow::Result<Option<S3Settings>> {
        self.s3_settings_from(|var| std::env::var(var).ok())
    }

    /// [`RepositoryConfig::s3_settings`] with the environment given.
    fn s3_settings_from(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<S3Settings>> {
        let Some(s3) = &self.s3 else {
            return Ok(None);
        };
        self.validate()?;
        let secret = match &s3.secret_access_key_env {
            Some(var) => Some(Secret::new(env(var).ok_or_else(|| {
                anyhow::anyhow!("[repository.s3] the secret access key variable {var} is not set")
            })?)),
            None => None,
        };
        let settings = s3.settings(secret);
        settings
            .check()
            .map_err(|e| anyhow::anyhow!("[repository.s3] {e}"))?;
        Ok(Some(settings))
    }
}

impl S3RepositoryConfig {
    fn settings(&self, secret_access_key: Option<Secret>) -> S3Settings {
        S3Settings {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key,
            sse: match self.sse {
                SseConfig::Aes256 => Some(Sse::S3),
                SseConfig::AwsKms => Some(Sse::Kms {
                    key_id: self.sse_kms_key_id.clone().unwrap_or_default(),
                }),
                SseConfig::None => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repository(text: &str) -> anyhow::Result<RepositoryConfig> {
        super::super::Config::from_toml(text).map(|c| c.repository)
    }

    fn env(var: &str) -> Option<String> {
        (var == "RECORDINGS_SECRET").then(|| "s3cr3t-value".to_string())
    }

    #[test]
    fn an_s3_repository_is_configured_in_its_own_section() {
        let config = repository(
            "[repository.s3]\nbucket = \"recordings\"\nprefix = \"tenant-1\"\n\
             endpoint_url = \"http://127.0.0.1:9000\"\naccess_key_id = \"AKIAEXAMPLE\"\n\
             secret_access_key_env = \"RECORDINGS_SECRET\"\nsse = \"aws:kms\"\n\
             sse_kms_key_id = \"alias/recordings\"\n",
        )
        .expect("an S3 repository");
        let settings = config.s3_settings_from(env).expect("settings").expect("S3");
        assert_eq!(settings.bucket, "recordings");
        assert_eq!(settings.prefix.as_deref(), Some("tenant-1"));
        assert_eq!(settings.region, "us-east-1");
        assert_eq!(
            settings.endpoint_url.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(settings.access_key_id.as_deref(), Some("AKIAEXAMPLE"));
        assert_eq!(
            settings.secret_access_key.as_ref().map(Secret::expose),
            Some("s3cr3t-value")
        );
        assert_eq!(
            settings.sse,
            Some(Sse::Kms {
                key_id: "alias/recordings".into()
            })
        );
        assert!(!format!("{settings:?}").contains("s3cr3t"));

        // The defaults: us-east-1, SSE-S3, the standard credential chain, no prefix.
        let plain = repository("[repository.s3]\nbucket = \"recordings\"\n")
            .expect("a bare bucket")
            .s3_settings_from(env)
            .expect("settings")
            .expect("S3");
        assert_eq!(
            (plain.region.as_str(), &plain.sse, &plain.prefix),
            ("us-east-1", &Some(Sse::S3), &None)
        );
        assert!(plain.access_key_id.is_none() && plain.secret_access_key.is_none());
        let none = repository("[repository.s3]\nbucket = \"recordings\"\nsse = \"none\"\n")
            .expect("no SSE")
            .s3_settings_from(env)
            .expect("settings")
            .expect("S3");
        assert_eq!(none.sse, None);

        // A directory repository has no S3 settings.
        let local = repository("[repository]\npath = \"/srv/recordings\"\n").expect("a directory");
        assert!(local.s3_settings_from(env).expect("settings").is_none());
    }

    #[test]
    fn s3_mistakes_are_refused_with_a_reason() {
        for (text, says) in [
            (
                "[repository]\npath = \"/srv\"\n[repository.s3]\nbucket = \"recordings\"\n",
                "exclude each other",
            ),
            (
                "[repository.s3]\nprefix = \"x\"\n",
                "missing field `bucket`",
            ),
            ("[repository.s3]\nbucket = \"Recordings\"\n", "bucket"),
            (
                "[repository.s3]\nbucket = \"recordings\"\nprefix = \"a/../b\"\n",
                "prefix",
            ),
            (
                "[repository.s3]\nbucket = \"recordings\"\nregion = \"eu west\"\n",
                "region",
            ),
            (
                "[repository.s3]\nbucket = \"recordings\"\nendpoint_url = \"s3.example.com\"\n",
                "http:// or https://",
            ),
            (
                "[repository.s3]\nbucket = \"recordings\"\naccess_key_id = \"AKIAEXAMPLE\"\n",
                "go together",
            ),
            (
                "[repository.s3]\nbucket = \"recordings\"\nsecret_access_key_env = \"S\"\n",
                "go together",
            ),
            // The secret itself never goes in the file.
            (
                "[repository.s3]\nbucket = \"recordings\"\nsecret_access_key = \"x\"\n",
                "unknown field `secret_access_key`",
            ),
            (
                "[repository.s3]\nbucket = \"recordings\"\nsse = \"aws:kms\"\n",
                "needs sse_kms_key_id",
            ),
            (
                "[repository.s3]\nbucket = \"recordings\"\nsse_kms_key_id = \"alias/x\"\n",
                "goes with sse",
            ),
            (
                "[repository.s3]\nbucket = \"recordings\"\nsse = \"aes256\"\n",
                "unknown variant",
            ),
        ] {
            let err = repository(text).expect_err(text).to_string();
            assert!(err.contains(says), "{text}: {err}");
        }

        // A secret variable that is not set stops the server at start, naming it.
        let unset = repository(
            "[repository.s3]\nbucket = \"recordings\"\naccess_key_id = \"AKIAEXAMPLE\"\n\
             secret_access_key_env = \"NOT_SET_ANYWHERE\"\n",
        )
        .expect("parses");
        let err = unset.s3_settings_from(env).expect_err("unset").to_string();
        assert!(err.contains("NOT_SET_ANYWHERE"), "{err}");
    }

    #[test]
    fn the_documented_s3_example_is_a_valid_configuration() {
        let doc = include_str!("../../../../docs/SERVER.md");
        let start = doc
            .find("```toml\n[repository.s3]")
            .expect("an [repository.s3] example in docs/SERVER.md")
            + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("its end");
        let config = repository(&doc[start..end]).expect("the documented example parses");
        let settings = config
            .s3_settings_from(|_| Some("secret".into()))
            .expect("settings")
            .expect("S3");
        assert!(matches!(settings.sse, Some(Sse::Kms { .. })));
    }
}
