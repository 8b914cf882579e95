//! Server configuration: a TOML file and/or command-line flags over embedded
//! defaults that need nothing installed (SQLite catalogue and a local recording
//! directory under the data directory, plain HTTP on 127.0.0.1).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tapeseal_store::DataDir;
use tapeseal_store::s3::{S3Settings, Secret, Sse};

/// Everything `tapeseal serve` can be told. Every field has a default.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory: the catalogue, the master key file and (by default) the
    /// recording repository live here.
    pub data_dir: PathBuf,
    /// The catalogue: a `postgres://user@host:port/database` URL for a deployment
    /// of several instances (all naming the same one); absent, SQLite in the data
    /// directory. The URL carries no password: name a variable in
    /// `catalogue_password_env`.
    pub catalogue: Option<String>,
    /// Name of an environment variable holding the PostgreSQL catalogue's password.
    pub catalogue_password_env: Option<String>,
    /// CA certificates (PEM) the PostgreSQL catalogue's server certificate must
    /// chain to; without it, the system's roots. Used whenever TLS is (the URL's
    /// `sslmode`: `require`, or `prefer`, the default, when the server offers it).
    pub catalogue_ca_file: Option<PathBuf>,
    /// The recording repository.
    pub repository: RepositoryConfig,
    /// The master key that seals managed private KEKs.
    pub master_key: MasterKeyConfig,
    /// TLS; plain HTTP when absent.
    pub tls: Option<TlsConfig>,
    /// Largest accepted upload, in plaintext bytes.
    pub max_upload_bytes: u64,
    /// Plaintext bytes per envelope chunk for new recordings.
    pub chunk_size: u32,
    /// Seconds in-flight requests get to finish at shutdown.
    pub shutdown_grace_secs: u64,
    /// Seconds between checks of the rotation schedules.
    pub scheduler_interval_secs: u64,
    /// Rewrap jobs.
    pub jobs: JobsConfig,
    /// Name of an environment variable holding the operator token, which may create
    /// organisations through the API. Without it, organisations are created with
    /// `tapeseal org create` only.
    pub operator_token_env: Option<String>,
    /// Name of an environment variable holding a token that `GET /metrics` then
    /// requires (`Authorization: Bearer ...`). Without it, metrics are open, for
    /// loopback or an internal network.
    pub metrics_token_env: Option<String>,
    /// Concurrency limits and timeouts.
    pub limits: LimitsConfig,
    /// Browser playback grants.
    pub grants: GrantsConfig,
    /// The browser pages.
    pub www: WwwConfig,
    /// AWS KMS, for organisations in KMS key mode.
    pub kms: KmsConfig,
    /// Bulk export jobs.
    pub export: ExportConfig,
    /// Playback through the server.
    pub playback: PlaybackConfig,
}

/// Playback through the server: how long an unwrapped DEK serves one playback.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct PlaybackConfig {
    /// How long a DEK unwrapped for a caller's playback serves that caller's further
    /// range requests on the same recording, in seconds (from the unwrap, not
    /// renewed by use; at most 3600); 0: every request unwraps. Every decrypt is
    /// audited either way.
    pub dek_cache_secs: u64,
    /// How many such DEKs are kept at most; 0: none.
    pub dek_cache_entries: usize,
}

impl Default for PlaybackConfig {
    fn default() -> Self {
        Self {
            dek_cache_secs: 60,
            dek_cache_entries: 4096,
        }
    }
}

impl PlaybackConfig {
    /// The DEK cache's bounds, checked.
    pub fn dek_cache(&self) -> anyhow::Result<tapeseal_keys::cache::CachePolicy> {
        if self.dek_cache_secs > 3600 {
            anyhow::bail!("[playback] dek_cache_secs is 0 to 3600");
        }
        Ok(tapeseal_keys::cache::CachePolicy {
            ttl: std::time::Duration::from_secs(self.dek_cache_secs),
            entries: self.dek_cache_entries,
        })
    }
}

/// Bulk export: where directory exports go, how S3 is reached, and how hard a job
/// works.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    /// The root of directory exports (a job names a prefix inside it); by default
    /// `exports` in the data directory.
    pub directory: Option<PathBuf>,
    /// Another S3 endpoint than AWS's (a VPC endpoint, an S3-compatible store, a
    /// test server; `http://` allowed).
    pub s3_endpoint_url: Option<String>,
    /// The region of buckets whose job names none.
    pub s3_region: String,
    /// Recordings a job exports at once when it does not say (1 to 16).
    pub parallel: u32,
    /// Pause after each recording of a job, in milliseconds, to bound the load an
    /// export puts on the repository and the key service.
    pub pause_ms: u64,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            directory: None,
            s3_endpoint_url: None,
            s3_region: "us-east-1".into(),
            parallel: 4,
            pause_ms: 0,
        }
    }
}

/// The most recordings one export job works on at once.
pub const MAX_EXPORT_PARALLEL: u32 = 16;

/// How the server reaches AWS KMS (organisations in `aws-kms` key mode). The
/// server's AWS credentials come from the standard AWS chain (environment, shared
/// files, web identity, ECS, EC2 instance metadata) unless an organisation gives
/// an access key of its own.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct KmsConfig {
    /// Any KMS-compatible endpoint (a VPC endpoint, a test server); AWS's own
    /// regional endpoint when absent.
    pub endpoint_url: Option<String>,
    /// The region of keys named without an ARN, when the organisation names none
    /// (then `AWS_REGION`).
    pub region: Option<String>,
    /// How long one KMS call may take, in milliseconds (1 to 30000).
    pub timeout_ms: u64,
    /// How long a private KEK decrypted by KMS stays in memory, in seconds (from
    /// the decrypt, not renewed by use); 0 turns the cache off.
    pub cache_ttl_secs: u64,
    /// How many decrypted private KEKs are kept at most; 0 turns the cache off.
    pub cache_entries: usize,
}

impl Default for KmsConfig {
    fn default() -> Self {
        let keys = tapeseal_keys::kms::KmsConfig::default();
        Self {
            endpoint_url: None,
            region: None,
            timeout_ms: u64::try_from(keys.timeout.as_millis()).unwrap_or(5000),
            cache_ttl_secs: keys.cache.ttl.as_secs(),
            cache_entries: keys.cache.entries,
        }
    }
}

impl KmsConfig {
    /// The key service's settings, checked.
    pub fn keys(&self) -> anyhow::Result<tapeseal_keys::kms::KmsConfig> {
        let timeout = std::time::Duration::from_millis(self.timeout_ms);
        if timeout.is_zero() || timeout > tapeseal_keys::kms::MAX_TIMEOUT {
            anyhow::bail!("[kms] timeout_ms is 1 to 30000");
        }
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            anyhow::bail!("[kms] endpoint_url is an http:// or https:// URL");
        }
        Ok(tapeseal_keys::kms::KmsConfig {
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            timeout,
            cache: tapeseal_keys::kms::CachePolicy {
                ttl: std::time::Duration::from_secs(self.cache_ttl_secs),
                entries: self.cache_entries,
            },
        })
    }
}

/// Browser playback grants (organisations whose LKM takes them).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct GrantsConfig {
    /// How long a grant lives, in seconds (1 to 600). The page uses it at once, so
    /// it only has to cover the round trip to the LKM and clock skew.
    pub ttl_secs: u64,
}

impl Default for GrantsConfig {
    fn default() -> Self {
        Self { ttl_secs: 60 }
    }
}

/// The browser pages (playback and Encryption Keys admin).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct WwwConfig {
    /// The directory of pages to serve at `/` (the `www/` folder with the npm
    /// package's web build in `pkg/`, as `cargo xtask www` assembles it); none:
    /// no pages, only the API.
    pub dir: Option<PathBuf>,
}

/// How much the server takes on at once, and how long it waits for slow clients.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Operations holding a guest instance at once, over all organisations (ingests,
    /// playback batches, rewraps). Below the instance pool of 256.
    pub guest_operations: usize,
    /// The same, for any one organisation.
    pub guest_operations_per_org: usize,
    /// How long a request waits for a place before it is refused with 503 `busy`.
    pub admission_wait_ms: u64,
    /// Seconds a client has to send a request's headers.
    pub header_read_timeout_secs: u64,
    /// Seconds an upload may send nothing before it is cut off (408 `timeout`).
    pub body_idle_timeout_secs: u64,
    /// Connections the kernel queues for the server before it accepts them (the
    /// listen backlog; Linux caps it at `net.core.somaxconn`). A burst larger than
    /// this waits for the client's SYN retry, a second or more.
    pub listen_backlog: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            guest_operations: 64,
            guest_operations_per_org: 16,
            admission_wait_ms: 250,
            header_read_timeout_secs: 10,
            body_idle_timeout_secs: 30,
            listen_backlog: 1024,
        }
    }
}

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

/// Where the master key comes from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MasterKeyConfig {
    /// A key file, created with mode 0600 on first start; default
    /// `<data_dir>/master.key`.
    pub file: Option<PathBuf>,
    /// Name of an environment variable holding the key as base64 (32 bytes); it
    /// takes precedence over the file.
    pub env: Option<String>,
}

/// TLS certificate and key (PEM).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How rewrap jobs run.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Pause between two recordings of a rewrap job, in milliseconds, to bound the
    /// load a job puts on the repository.
    pub rewrap_pause_ms: u64,
    /// How long a rewrap job waits for an unreachable or slow key service (an
    /// organisation's LKM or AWS KMS), retrying with backoff, before it stops, in seconds.
    pub key_service_patience_secs: u64,
    /// How long an instance's claim on a job lasts unless renewed, in seconds (2 to
    /// 600). It renews every third of that while it works; when it dies, another
    /// instance takes the job over within about one and a half times this.
    pub lease_secs: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            rewrap_pause_ms: 0,
            key_service_patience_secs: 120,
            lease_secs: 30,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8750)),
            data_dir: PathBuf::from("tapeseal-data"),
            catalogue: None,
            catalogue_password_env: None,
            catalogue_ca_file: None,
            repository: RepositoryConfig::default(),
            master_key: MasterKeyConfig::default(),
            tls: None,
            max_upload_bytes: 4 << 30,
            chunk_size: 64 << 10,
            shutdown_grace_secs: 30,
            scheduler_interval_secs: 60,
            jobs: JobsConfig::default(),
            operator_token_env: None,
            metrics_token_env: None,
            limits: LimitsConfig::default(),
            grants: GrantsConfig::default(),
            www: WwwConfig::default(),
            kms: KmsConfig::default(),
            export: ExportConfig::default(),
            playback: PlaybackConfig::default(),
        }
    }
}

impl Config {
    /// Reads a TOML configuration file; missing fields take their defaults.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Parses TOML configuration text.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (16..=16 << 20).contains(&self.chunk_size),
            "chunk_size must be between 16 bytes and 16 MiB"
        );
        anyhow::ensure!(
            self.max_upload_bytes > 0,
            "max_upload_bytes must be positive"
        );
        anyhow::ensure!(
            self.scheduler_interval_secs > 0,
            "scheduler_interval_secs must be positive"
        );
        anyhow::ensure!(
            (2..=600).contains(&self.jobs.lease_secs),
            "jobs: lease_secs must be 2 to 600"
        );
        if let Some(url) = &self.catalogue {
            anyhow::ensure!(
                tapeseal_store::catalogue::is_postgres_url(url),
                "catalogue is a postgres:// URL (leave it out for SQLite in the data directory)"
            );
            tapeseal_store::catalogue::check_postgres_url(url).map_err(anyhow::Error::msg)?;
        }
        let l = &self.limits;
        anyhow::ensure!(
            (1..=200).contains(&l.guest_operations)
                && (1..=l.guest_operations).contains(&l.guest_operations_per_org),
            "limits: guest_operations must be 1 to 200, and guest_operations_per_org 1 to guest_operations"
        );
        anyhow::ensure!(
            l.header_read_timeout_secs > 0 && l.body_idle_timeout_secs > 0,
            "limits: timeouts must be positive"
        );
        anyhow::ensure!(
            (1..=65_535).contains(&l.listen_backlog),
            "limits: listen_backlog must be 1 to 65535"
        );
        anyhow::ensure!(
            (1..=tapeseal_keys::grant::MAX_TTL_SECS).contains(&self.grants.ttl_secs),
            "grants: ttl_secs must be 1 to {}",
            tapeseal_keys::grant::MAX_TTL_SECS
        );
        anyhow::ensure!(
            (1..=MAX_EXPORT_PARALLEL).contains(&self.export.parallel),
            "export: parallel must be 1 to {MAX_EXPORT_PARALLEL}"
        );
        if let Some(url) = &self.export.s3_endpoint_url {
            anyhow::ensure!(
                url.starts_with("https://") || url.starts_with("http://"),
                "export: s3_endpoint_url is an http:// or https:// URL"
            );
        }
        self.repository.validate()?;
        Ok(())
    }

    /// The root of directory exports.
    pub fn export_path(&self) -> PathBuf {
        self.export
            .directory
            .clone()
            .unwrap_or_else(|| self.data_dir.join("exports"))
    }

    /// The data directory and the names in it.
    pub fn data(&self) -> DataDir {
        DataDir::new(&self.data_dir)
    }

    /// The recording repository directory (unused when `[repository.s3]` is set).
    pub fn repository_path(&self) -> PathBuf {
        self.repository
            .path
            .clone()
            .unwrap_or_else(|| self.data().repository_path())
    }

    /// The master key file.
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key
            .file
            .clone()
            .unwrap_or_else(|| self.data().master_key_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repository(text: &str) -> anyhow::Result<RepositoryConfig> {
        Config::from_toml(text).map(|c| c.repository)
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
        let doc = include_str!("../../../docs/SERVER.md");
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
