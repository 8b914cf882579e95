//! Server configuration: a TOML file and/or command-line flags over embedded
//! defaults that need nothing installed (SQLite catalogue and a local recording
//! directory under the data directory, plain HTTP on 127.0.0.1).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tapeseal_store::DataDir;

mod repository;

pub use repository::{RepositoryConfig, S3RepositoryConfig, SseConfig};

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
