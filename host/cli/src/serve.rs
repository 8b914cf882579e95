//! `tapeseal serve` and `tapeseal samples`.

use std::fs;

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use tapeseal_server::Config;
use tapeseal_server::config::TlsConfig;

use crate::exit::{Failure, Outcome};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file; flags override what it says.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8750].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Data directory: catalogue, master key, recordings [default: tapeseal-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// TLS certificate chain (PEM); serves HTTPS with --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Largest accepted upload in bytes [default: 4 GiB].
    #[arg(long)]
    max_upload_bytes: Option<u64>,
    /// Serve the browser pages from this directory at `/` (as `cargo xtask www`
    /// assembles it: www/ plus the npm package's web build in pkg/).
    #[arg(long)]
    www: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

pub(crate) fn samples(out: &Path) -> Outcome {
    fs::create_dir_all(out).map_err(|e| Failure::io("cannot create", out, e))?;
    for sample in crate::samples::all() {
        let path = out.join(sample.file_name);
        fs::write(&path, &sample.bytes).map_err(|e| Failure::io("cannot write", &path, e))?;
        println!(
            "{} {} {}",
            sample.file_name, sample.kind, sample.content_type
        );
    }
    Ok(())
}

pub(crate) fn serve(args: ServeArgs) -> Outcome {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path).map_err(|e| Failure::input(format!("{e:#}")))?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data) = args.data {
        config.data_dir = data;
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsConfig { cert, key });
    }
    if let Some(max) = args.max_upload_bytes {
        config.max_upload_bytes = max;
    }
    if let Some(www) = args.www {
        config.www.dir = Some(www);
    }
    config
        .validate()
        .map_err(|e| Failure::input(format!("{e:#}")))?;
    tapeseal_server::init_logging(matches!(args.log_format, LogFormat::Json));
    tapeseal_server::run(config).map_err(|e| Failure {
        code: 1,
        message: format!("{e:#}"),
    })
}
