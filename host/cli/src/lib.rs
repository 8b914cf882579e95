//! `tapeseal`, the command: envelope files ([`envelope`], [`inspect`]), organisation
//! and token admin ([`admin`]), the recording server ([`serve`]) and the reference
//! Local Key Manager ([`lkm`]), and bulk export through a server ([`export`]). Clap definitions and thin functions over
//! `tapeseal-engine`, `tapeseal-keys`, `tapeseal-store`, `tapeseal-server` and
//! `tapeseal-lkm`; exit codes come from the core's error codes ([`exit`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;
mod envelope;
mod exit;
mod export;
mod inspect;
mod lkm;
pub mod samples;
mod serve;

use exit::Outcome;
pub use exit::exit_code;

/// tapeseal: envelope encryption for contact-centre recordings.
///
/// Each recording is sealed under its own AES-256 data key (DEK), which is wrapped
/// with an RSA key-encryption key (KEK). Sealing needs only the KEK's public key;
/// opening needs the private key (or the DEK itself, as a Local Key Manager returns it).
///
/// Exit codes: 0 success, 1 I/O or runtime failure, 2 usage error, 3 unreadable
/// input (not an envelope, unsupported version, unusable key), 4 could not decrypt
/// (wrong key or DEK, tampered or truncated envelope).
#[derive(Debug, Parser)]
#[command(name = "tapeseal", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a KEK pair: <ID>.private.pem (PKCS#8, mode 0600) and <ID>.public.pem.
    Keygen {
        /// Directory to write the two files into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Key id; default: kek- and 16 hex digits of the public key's SHA-256.
        #[arg(long)]
        id: Option<String>,
        /// Modulus size: 3072 or 4096.
        #[arg(long, default_value_t = 3072)]
        bits: usize,
    },
    /// Seal a recording for a KEK.
    Seal(envelope::SealArgs),
    /// Show what an envelope's header says (no key needed).
    Inspect {
        /// The envelope (or just its header).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Decrypt an envelope with the KEK's private key or with its DEK.
    Open(envelope::OpenArgs),
    /// Move an envelope to another KEK: rewrites the header only, the payload bytes stay.
    Rewrap(envelope::RewrapArgs),
    /// Run the recording server (HTTP API; see docs/API.md).
    Serve(serve::ServeArgs),
    /// Write sample recordings (a WAV call, an email, a chat) to try the server with;
    /// prints one line per file: name, media kind, MIME type.
    Samples {
        /// Directory to write them into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Manage organisations in a server's catalogue.
    Org {
        #[command(subcommand)]
        action: admin::OrgAction,
    },
    /// Manage API tokens in a server's catalogue.
    Token {
        #[command(subcommand)]
        action: admin::TokenAction,
    },
    /// The reference Local Key Manager: serve it, issue its Hawk credentials, import
    /// and list its key pairs (docs/LKM.md).
    Lkm {
        #[command(subcommand)]
        command: lkm::LkmCommand,
    },
    /// Bulk export through a running server: decrypt recordings and write them to a
    /// directory or an S3 bucket (SSE-S3/SSE-KMS), optionally OpenPGP-encrypted.
    Export {
        #[command(subcommand)]
        command: export::ExportCommand,
    },
}

/// Runs the CLI with the process's arguments.
pub fn main() -> ExitCode {
    #[cfg(feature = "failpoints")]
    let _failpoints = tapeseal_store::fail::FailScenario::setup();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("tapeseal: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Outcome {
    match cli.command {
        Command::Keygen { out, id, bits } => envelope::keygen(&out, id, bits),
        Command::Inspect { file, json } => inspect::inspect(&envelope::runtime()?, &file, json),
        Command::Seal(args) => envelope::seal(&envelope::runtime()?, &args),
        Command::Open(args) => envelope::open(&envelope::runtime()?, &args),
        Command::Rewrap(args) => envelope::rewrap(&envelope::runtime()?, &args),
        Command::Serve(args) => serve::serve(args),
        Command::Samples { out } => serve::samples(&out),
        Command::Org { action } => admin::org(action),
        Command::Token { action } => admin::token(action),
        Command::Lkm { command } => lkm::run(command),
        Command::Export { command } => export::run(command),
    }
}
