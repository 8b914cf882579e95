//! `tapeseal lkm`: the reference Local Key Manager (docs/LKM.md). `serve` runs it;
//! the other commands work offline on its data directory (also while it serves):
//! issue and revoke Hawk credentials, import private keys from another LKM, list.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use tapeseal_core::ErrorCode;
use tapeseal_lkm::config::{DEFAULT_DATA_DIR, DEFAULT_LISTEN};
use tapeseal_lkm::store::KeypairRow;
use tapeseal_lkm::{Config, DataDir, Keyring, Limits, LkmError, Rate, TlsFiles, TlsMode};
use zeroize::Zeroizing;

use crate::exit::{Failure, Outcome};

#[derive(Debug, Subcommand)]
pub(crate) enum LkmCommand {
    /// Serve the LKM over HTTPS (or plain HTTP on loopback, for a demo). Prints
    /// `listening on https://ADDR` on stdout, and the certificate fingerprint and
    /// where the admin token is on stderr.
    Serve(ServeArgs),
    /// Issue, revoke and list Hawk credentials.
    Credentials {
        #[command(subcommand)]
        action: CredentialsAction,
    },
    /// Import an RSA private key (PKCS#1 or PKCS#8, PEM or DER, 3072 or 4096 bits),
    /// keeping the id it had in another LKM; prints the key pair as JSON.
    Import {
        /// The private key file.
        file: PathBuf,
        /// The key pair's id [default: a new UUID].
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        data: DataArg,
    },
    /// List the key pairs as JSON (the same array `GET /keypair` answers).
    Keypairs {
        #[command(flatten)]
        data: DataArg,
    },
    /// Ask an LKM (this one or any Genesys-style LKM) to decrypt a wrapped DEK, as the
    /// server does: Hawk-authenticated HTTPS to its decrypt URL. Reads the RSA
    /// ciphertext (raw bytes) from --in or stdin; prints the DEK as base64.
    Decrypt(DecryptArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DecryptArgs {
    /// The LKM's decrypt URL (`https://…/key-management/v1/decrypt`).
    #[arg(long)]
    url: String,
    /// The Hawk id.
    #[arg(long)]
    hawk_id: String,
    /// Environment variable holding the Hawk key (`authKey`); never on the command
    /// line, where other users could see it.
    #[arg(long, value_name = "VAR")]
    hawk_key_env: String,
    /// Trust exactly the certificate with this SHA-256 fingerprint (hex).
    #[arg(long, conflicts_with = "ca")]
    fingerprint: Option<String>,
    /// Trust certificates issued by this CA (PEM file) [default: the system's roots].
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The key pair id.
    #[arg(long)]
    keypair: String,
    /// The OAEP hash the DEK was wrapped with.
    #[arg(long, value_enum, default_value_t = Oaep::Sha1)]
    oaep: Oaep,
    /// The `PureCloud-User-Id` to send.
    #[arg(long, default_value = "tapeseal-cli")]
    user_id: String,
    /// The wrapped DEK [default: stdin].
    #[arg(long = "in")]
    input: Option<PathBuf>,
    /// Seconds to wait for the LKM.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Oaep {
    /// RSA-OAEP with SHA-1 (sent without `decryptType`).
    Sha1,
    /// RSA-OAEP with SHA-256 (`decryptType: RSA-OAEP-256`).
    Sha256,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CredentialsAction {
    /// Issue credentials for ID (at least 6 characters); prints `{id, authKey,
    /// algorithm}` as JSON. The authKey is shown only here.
    Add {
        /// The Hawk id.
        id: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Revoke ID's credentials: refused from the next request on.
    Revoke {
        /// The Hawk id.
        id: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// List credentials (ids and dates, never keys) as JSON.
    List {
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DataArg {
    /// The LKM's data directory.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    data: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    data: DataArg,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// TLS certificate chain (PEM) [default: a self-signed certificate made once in
    /// the data directory].
    #[arg(long, requires = "tls_key", conflicts_with = "plain_http")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP instead of HTTPS: refused unless --listen is a loopback
    /// address. For a demo with the browser on the same host only.
    #[arg(long)]
    plain_http: bool,
    /// Let pages from ORIGIN (`scheme://host[:port]`, exactly as the browser sends
    /// it, e.g. `http://127.0.0.1:8750`) call browser decrypt; repeat for more.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// Environment variable holding the admin token [default: admin.token in the
    /// data directory, generated on first start].
    #[arg(long, value_name = "VAR")]
    admin_token_env: Option<String>,
    /// Decrypts per second per Hawk credential.
    #[arg(long, value_name = "N", default_value_t = 100.0)]
    decrypt_rate: f64,
    /// Decrypts a credential may make at once [default: twice the rate].
    #[arg(long, value_name = "N")]
    decrypt_burst: Option<u32>,
    /// Largest accepted difference between a Hawk timestamp and the LKM's clock.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    skew_secs: u64,
}

impl From<LkmError> for Failure {
    fn from(e: LkmError) -> Self {
        let code = match &e {
            LkmError::Key(_) => ErrorCode::InvalidKey,
            LkmError::Invalid(_) => ErrorCode::InvalidParameter,
            LkmError::Exists(_) | LkmError::InUse(_) => ErrorCode::Conflict,
            LkmError::NotFound(_) | LkmError::NoStore(_) => ErrorCode::NotFound,
            LkmError::Io { .. } | LkmError::Config(_) | LkmError::Tls(_) => ErrorCode::Io,
            _ => ErrorCode::Internal,
        };
        Self::coded(code, e.to_string())
    }
}

/// Runs one `tapeseal lkm` command.
pub(crate) fn run(command: LkmCommand) -> Outcome {
    match command {
        LkmCommand::Serve(args) => serve(args),
        LkmCommand::Credentials { action } => credentials(action),
        LkmCommand::Import { file, id, data } => import(&file, id.as_deref(), &data),
        LkmCommand::Decrypt(args) => decrypt(&args),
        LkmCommand::Keypairs { data } => {
            let rows = DataDir::new(&data.data).open_store(false)?.keypairs()?;
            let pairs: Vec<_> = rows.iter().map(KeypairRow::to_wire).collect();
            print_json(serde_json::to_string_pretty(&pairs))
        }
    }
}

fn serve(args: ServeArgs) -> Outcome {
    let burst = match args.decrypt_burst {
        Some(burst) => burst,
        None => (args.decrypt_rate * 2.0)
            .ceil()
            .clamp(1.0, f64::from(u32::MAX)) as u32,
    };
    let config = Config {
        data_dir: args.data.data,
        listen: args.listen,
        tls: match args.tls_cert.zip(args.tls_key) {
            _ if args.plain_http => TlsMode::Off,
            Some((cert, key)) => TlsMode::Files(TlsFiles { cert, key }),
            None => TlsMode::SelfSigned,
        },
        admin_token_env: args.admin_token_env,
        allowed_origins: args.allow_origins,
        limits: Limits {
            decrypt_rate: Rate {
                per_second: args.decrypt_rate,
                burst,
            },
            skew: Duration::from_secs(args.skew_secs),
            ..Limits::default()
        },
    };
    config
        .validate()
        .map_err(|e| Failure::coded(ErrorCode::InvalidParameter, e.to_string()))?;
    tapeseal_server::init_logging(false);
    Ok(tapeseal_lkm::run(config)?)
}

fn credentials(action: CredentialsAction) -> Outcome {
    match action {
        CredentialsAction::Add { id, data } => {
            let issued = Keyring::open(&DataDir::new(&data.data), true)?.issue_credential(&id)?;
            print_json(serde_json::to_string_pretty(&issued))
        }
        CredentialsAction::Revoke { id, data } => {
            let store = DataDir::new(&data.data).open_store(false)?;
            store.revoke_credential(&id, tapeseal_store::time::now_ms())?;
            eprintln!("revoked credentials '{id}'");
            Ok(())
        }
        CredentialsAction::List { data } => {
            let store = DataDir::new(&data.data).open_store(false)?;
            print_json(serde_json::to_string_pretty(&store.credentials()?))
        }
    }
}

fn import(file: &std::path::Path, id: Option<&str>, data: &DataArg) -> Outcome {
    let key = Zeroizing::new(std::fs::read(file).map_err(|e| Failure::io("cannot read", file, e))?);
    let keyring = Keyring::open(&DataDir::new(&data.data), true)?;
    print_json(serde_json::to_string_pretty(
        &keyring.import_keypair(&key, id)?,
    ))
}

fn decrypt(args: &DecryptArgs) -> Outcome {
    use base64::Engine;
    use std::io::Read;
    use tapeseal_keys::KeyServiceError;
    use tapeseal_keys::lkm::wire::DecryptType;
    use tapeseal_keys::lkm::{Client, Endpoint, Trust};

    let hawk_key = Zeroizing::new(std::env::var(&args.hawk_key_env).map_err(|_| {
        Failure::coded(
            ErrorCode::BadRequest,
            format!("the Hawk key variable {} is not set", args.hawk_key_env),
        )
    })?);
    let trust = match (&args.fingerprint, &args.ca) {
        (Some(f), _) => Trust::fingerprint(f).ok_or_else(|| {
            Failure::coded(
                ErrorCode::BadRequest,
                "the fingerprint is 64 hex digits (':' allowed)",
            )
        })?,
        (None, Some(ca)) => {
            Trust::Ca(std::fs::read_to_string(ca).map_err(|e| Failure::io("cannot read", ca, e))?)
        }
        (None, None) => Trust::System,
    };
    let wrapped = match &args.input {
        Some(path) => std::fs::read(path).map_err(|e| Failure::io("cannot read", path, e))?,
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| Failure::io("cannot read", std::path::Path::new("stdin"), e))?;
            bytes
        }
    };
    let endpoint = Endpoint {
        decrypt_url: args.url.clone(),
        hawk_id: args.hawk_id.clone(),
        hawk_key,
        trust,
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
    };
    let padding = match args.oaep {
        Oaep::Sha1 => DecryptType::OaepSha1,
        Oaep::Sha256 => DecryptType::OaepSha256,
    };
    let coded = |e: KeyServiceError| {
        let code = match &e {
            KeyServiceError::Unavailable(_) => ErrorCode::KeyServiceUnavailable,
            KeyServiceError::Timeout(_) => ErrorCode::Timeout,
            KeyServiceError::Failed(_) => ErrorCode::KeyServiceFailed,
            KeyServiceError::Refused(_) => ErrorCode::KeyRefused,
            _ => ErrorCode::Internal,
        };
        Failure::coded(code, e.to_string())
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::coded(ErrorCode::Internal, e.to_string()))?;
    let plain = runtime.block_on(async {
        let client = Client::new(&endpoint)?;
        client
            .decrypt(&args.keypair, &wrapped, padding, &args.user_id)
            .await
    });
    let plain = plain.map_err(coded)?;
    let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(plain.as_slice()));
    println!("{}", text.as_str());
    Ok(())
}

/// Prints JSON text (as `serde_json::to_string_pretty` made it) on stdout.
fn print_json(text: Result<String, serde_json::Error>) -> Outcome {
    let text = text.map_err(|e| Failure::coded(ErrorCode::Internal, e.to_string()))?;
    println!("{text}");
    Ok(())
}
