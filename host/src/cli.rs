//! The `tapeseal` command line: keygen, seal, inspect, open and rewrap. Payload work
//! runs in the WebAssembly guest; private keys stay in the host (aws-lc-rs). Files
//! stream through in 1 MiB pieces, and outputs appear only when complete.

use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tapeseal_core::Dek;
use zeroize::Zeroizing;

use crate::catalogue::{Catalogue, CatalogueError, Role};
use crate::engine::{
    ErrorCode, HostError, Inspection, Limits, MediaKind, Recipient, RewrapMode, Runtime,
    SealParams, StreamOpener, StreamSealer, WrapAlgorithm,
};
use crate::kek::{KekPair, KeyError};

const PIECE: usize = 1 << 20;

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
    Seal(SealArgs),
    /// Show what an envelope's header says (no key needed).
    Inspect {
        /// The envelope (or just its header).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Decrypt an envelope with the KEK's private key or with its DEK.
    Open(OpenArgs),
    /// Move an envelope to another KEK: rewrites the header only, the payload bytes stay.
    Rewrap(RewrapArgs),
    /// Run the recording server (HTTP API; see docs/API.md).
    Serve(ServeArgs),
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
        action: OrgAction,
    },
    /// Manage API tokens in a server's catalogue.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Debug, Args)]
struct DataDir {
    /// The server's data directory; the catalogue is catalogue.sqlite3 inside it.
    #[arg(long, default_value = "tapeseal-data")]
    data: PathBuf,
}

#[derive(Debug, Args)]
struct ServeArgs {
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

#[derive(Debug, Subcommand)]
enum OrgAction {
    /// Create an organisation (managed keys, rotation disabled).
    Create {
        #[command(flatten)]
        data: DataDir,
        /// Unique name.
        name: String,
    },
    /// List organisations.
    List {
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Create an API token; its secret is printed once and never stored.
    Create {
        #[command(flatten)]
        data: DataDir,
        /// Organisation name or id.
        #[arg(long)]
        org: String,
        /// What the token may do.
        #[arg(long, value_enum)]
        role: TokenRole,
        /// A note for whoever lists tokens later.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Revoke a token by its id.
    Revoke {
        #[command(flatten)]
        data: DataDir,
        /// Organisation name or id.
        #[arg(long)]
        org: String,
        /// The token's id (tok-...).
        token_id: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TokenRole {
    /// Keys, schedules, tokens and jobs.
    Admin,
    /// Ingest recordings.
    Recorder,
    /// Play back and download recordings.
    Player,
}

impl From<TokenRole> for Role {
    fn from(r: TokenRole) -> Self {
        match r {
            TokenRole::Admin => Role::Admin,
            TokenRole::Recorder => Role::Recorder,
            TokenRole::Player => Role::Player,
        }
    }
}

#[derive(Debug, Args)]
struct SealArgs {
    /// The KEK's public key (PEM "PUBLIC KEY"/"RSA PUBLIC KEY", or DER).
    #[arg(long)]
    kek: PathBuf,
    /// The KEK's id; default: the key file's name without ".public.pem".
    #[arg(long)]
    kek_id: Option<String>,
    /// How to wrap the DEK (rsa-oaep-sha1 for Genesys-style Local Key Managers).
    #[arg(long, value_enum, default_value_t = Wrap::RsaOaepSha256)]
    wrap: Wrap,
    /// The recording to seal.
    #[arg(long = "in")]
    input: PathBuf,
    /// Where to write the envelope (written only when complete).
    #[arg(long = "out")]
    output: PathBuf,
    /// What the recording is.
    #[arg(long, value_enum, default_value_t = Kind::Other)]
    media_kind: Kind,
    /// MIME type of the recording.
    #[arg(long, default_value = "application/octet-stream")]
    content_type: String,
    /// Organisation id.
    #[arg(long, default_value = "default")]
    org: String,
    /// Recording id; default: the input file's name.
    #[arg(long)]
    recording_id: Option<String>,
    /// Authenticated context entry KEY=VALUE (repeatable).
    #[arg(long = "context", value_name = "KEY=VALUE")]
    context: Vec<String>,
    /// Plaintext bytes per chunk.
    #[arg(long, default_value_t = 65_536)]
    chunk_size: u32,
}

#[derive(Debug, Args)]
struct OpenArgs {
    /// The KEK's private key (PEM PKCS#8 or PKCS#1, or DER).
    #[arg(long, conflicts_with = "dek", required_unless_present = "dek")]
    key: Option<PathBuf>,
    /// The DEK, base64 (as a Local Key Manager's decrypt returns it).
    #[arg(long)]
    dek: Option<String>,
    /// The envelope.
    #[arg(long = "in")]
    input: PathBuf,
    /// Where to write the recording (written only when every chunk verified).
    #[arg(long = "out")]
    output: PathBuf,
}

#[derive(Debug, Args)]
struct RewrapArgs {
    /// The private key of a KEK the envelope is wrapped for now.
    #[arg(long)]
    key: PathBuf,
    /// The new KEK's public key.
    #[arg(long)]
    to: PathBuf,
    /// The new KEK's id; default: its file name without ".public.pem".
    #[arg(long)]
    to_kek_id: Option<String>,
    /// How to wrap the DEK for the new KEK.
    #[arg(long, value_enum, default_value_t = Wrap::RsaOaepSha256)]
    wrap: Wrap,
    /// Keep the existing stanzas and add the new KEK (default: replace them).
    #[arg(long)]
    add: bool,
    /// The envelope.
    #[arg(long = "in")]
    input: PathBuf,
    /// Where to write the rewrapped envelope.
    #[arg(long = "out")]
    output: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Wrap {
    RsaOaepSha256,
    RsaOaepSha1,
}

impl From<Wrap> for WrapAlgorithm {
    fn from(w: Wrap) -> Self {
        match w {
            Wrap::RsaOaepSha256 => WrapAlgorithm::RsaOaepSha256,
            Wrap::RsaOaepSha1 => WrapAlgorithm::RsaOaepSha1,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Call,
    Email,
    Chat,
    Message,
    Transcript,
    Other,
}

impl From<Kind> for MediaKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Call => MediaKind::Call,
            Kind::Email => MediaKind::Email,
            Kind::Chat => MediaKind::Chat,
            Kind::Message => MediaKind::Message,
            Kind::Transcript => MediaKind::Transcript,
            Kind::Other => MediaKind::Other,
        }
    }
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn io(what: &str, path: &Path, e: io::Error) -> Self {
        Self {
            code: 1,
            message: format!("{what} {}: {e}", path.display()),
        }
    }

    fn input(message: impl Into<String>) -> Self {
        Self {
            code: 3,
            message: message.into(),
        }
    }
}

impl From<HostError> for Failure {
    fn from(e: HostError) -> Self {
        let code = match e.code() {
            Some(ErrorCode::DecryptFailed) => 4,
            Some(_) => 3,
            None => 1,
        };
        let hint = match e.code() {
            Some(ErrorCode::DecryptFailed) => {
                " (wrong key or DEK, or the envelope was altered or cut short)"
            }
            _ => "",
        };
        Self {
            code,
            message: format!("{e}{hint}"),
        }
    }
}

impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Self {
        let code = if matches!(e, KeyError::Unwrap) { 4 } else { 3 };
        Self {
            code,
            message: e.to_string(),
        }
    }
}

type Outcome<T = ()> = Result<T, Failure>;

/// Runs the CLI with the process's arguments.
pub fn main() -> ExitCode {
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
        Command::Keygen { out, id, bits } => keygen(&out, id, bits),
        Command::Inspect { file, json } => inspect(&runtime()?, &file, json),
        Command::Seal(args) => seal(&runtime()?, &args),
        Command::Open(args) => open(&runtime()?, &args),
        Command::Rewrap(args) => rewrap(&runtime()?, &args),
        Command::Serve(args) => serve(args),
        Command::Samples { out } => samples(&out),
        Command::Org { action } => org(action),
        Command::Token { action } => token(action),
    }
}

fn samples(out: &Path) -> Outcome {
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

fn serve(args: ServeArgs) -> Outcome {
    use crate::server::{Config, config::TlsConfig};
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
    config
        .validate()
        .map_err(|e| Failure::input(format!("{e:#}")))?;
    crate::server::init_logging(matches!(args.log_format, LogFormat::Json));
    crate::server::run(config).map_err(|e| Failure {
        code: 1,
        message: format!("{e:#}"),
    })
}

impl From<CatalogueError> for Failure {
    fn from(e: CatalogueError) -> Self {
        let code = match e {
            CatalogueError::Database(_) | CatalogueError::Random => 1,
            _ => 3,
        };
        Self {
            code,
            message: e.to_string(),
        }
    }
}

fn catalogue(data: &DataDir) -> Outcome<Catalogue> {
    let config = crate::server::Config {
        data_dir: data.data.clone(),
        ..crate::server::Config::default()
    };
    config
        .create_data_dir()
        .map_err(|e| Failure::io("cannot create", &data.data, e))?;
    Ok(Catalogue::open(&config.catalogue_path())?)
}

fn org(action: OrgAction) -> Outcome {
    match action {
        OrgAction::Create { data, name } => {
            let catalogue = catalogue(&data)?;
            let org = catalogue.create_org(&name)?;
            catalogue.audit(&org.id, "cli", "org.create", None, None, &org.name)?;
            println!("organisation {} created: id {}", org.name, org.id);
        }
        OrgAction::List { data } => {
            for org in catalogue(&data)?.list_orgs()? {
                println!("{}  {}  keys: {}", org.id, org.name, org.key_mode);
            }
        }
    }
    Ok(())
}

fn token(action: TokenAction) -> Outcome {
    match action {
        TokenAction::Create {
            data,
            org,
            role,
            label,
        } => {
            let catalogue = catalogue(&data)?;
            let token = catalogue.create_token(&org, role.into(), &label)?;
            catalogue.audit(
                &token.org_id,
                "cli",
                "token.create",
                None,
                None,
                &format!("{} ({})", token.id, token.role.name()),
            )?;
            eprintln!(
                "token {} ({}) for {}: the secret below is shown once and never stored",
                token.id,
                token.role.name(),
                token.org_id
            );
            println!("{}", token.secret.as_str());
        }
        TokenAction::Revoke {
            data,
            org,
            token_id,
        } => {
            let catalogue = catalogue(&data)?;
            let org = catalogue.find_org(&org)?;
            if !catalogue.revoke_token(&org.id, &token_id)? {
                return Err(Failure::input(format!(
                    "{token_id}: no such active token in {}",
                    org.name
                )));
            }
            catalogue.audit(&org.id, "cli", "token.revoke", None, None, &token_id)?;
            println!("token {token_id} revoked");
        }
    }
    Ok(())
}

fn runtime() -> Outcome<Runtime> {
    Runtime::new(Limits::default()).map_err(Failure::from)
}

fn keygen(dir: &Path, id: Option<String>, bits: usize) -> Outcome {
    let pair = KekPair::generate(bits)?;
    let id = id.unwrap_or_else(|| pair.fingerprint());
    if id.is_empty() || id.len() > 256 || id.contains(['/', '\\', '\0']) {
        return Err(Failure {
            code: 2,
            message: "a key id is 1 to 256 characters without '/', '\\' or NUL".into(),
        });
    }
    fs::create_dir_all(dir).map_err(|e| Failure::io("cannot create", dir, e))?;
    let private_path = dir.join(format!("{id}.private.pem"));
    let public_path = dir.join(format!("{id}.public.pem"));
    write_new(&private_path, pair.private_pkcs8_pem()?.as_bytes(), true)?;
    write_new(&public_path, pair.public_pem()?.as_bytes(), false)?;
    println!("KEK {id}: RSA-{bits}");
    println!("  private key  {} (keep it secret)", private_path.display());
    println!("  public key   {}", public_path.display());
    Ok(())
}

/// Creates a file that must not exist yet; private files get mode 0600 from the start.
fn write_new(path: &Path, bytes: &[u8], private: bool) -> Outcome {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = private;
    let mut file = options
        .open(path)
        .map_err(|e| Failure::io("cannot create", path, e))?;
    file.write_all(bytes)
        .map_err(|e| Failure::io("cannot write", path, e))
}

fn id_from_file(path: &Path, suffixes: &[&str]) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    suffixes
        .iter()
        .find_map(|s| name.strip_suffix(s).map(String::from))
        .unwrap_or(name)
}

fn read_file(path: &Path) -> Outcome<Vec<u8>> {
    fs::read(path).map_err(|e| Failure::io("cannot read", path, e))
}

fn recipient(path: &Path, id: Option<String>, wrap: Wrap) -> Outcome<Recipient> {
    let key = read_file(path)?;
    // Check it here for a clear message; the guest checks again.
    tapeseal_core::KekPublicKey::from_pem_or_der(&key)
        .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
    Ok(Recipient {
        kek_id: id.unwrap_or_else(|| id_from_file(path, &[".public.pem", ".pem", ".der"])),
        public_key: key,
        algorithm: wrap.into(),
    })
}

fn load_pair(path: &Path) -> Outcome<KekPair> {
    let bytes = Zeroizing::new(read_file(path)?);
    KekPair::from_pem_or_der(&bytes).map_err(|e| Failure::input(format!("{}: {e}", path.display())))
}

/// What [`stream_to`] drives: a guest stream, or a plain copy.
trait Transform {
    /// Takes the next piece of input; returns output that is final.
    fn push(&mut self, piece: &[u8]) -> Outcome<Vec<u8>>;
    /// Ends the input; returns the rest of the output.
    fn finish(self) -> Outcome<Vec<u8>>;
}

impl Transform for StreamSealer {
    fn push(&mut self, piece: &[u8]) -> Outcome<Vec<u8>> {
        Ok(StreamSealer::push(self, piece)?)
    }

    fn finish(self) -> Outcome<Vec<u8>> {
        Ok(StreamSealer::finish(self)?)
    }
}

impl Transform for StreamOpener {
    fn push(&mut self, piece: &[u8]) -> Outcome<Vec<u8>> {
        Ok(StreamOpener::push(self, piece)?)
    }

    fn finish(self) -> Outcome<Vec<u8>> {
        Ok(StreamOpener::finish(self)?)
    }
}

/// Drops the first `skip` bytes and copies the rest unchanged (rewrap's payload copy).
struct SkipPrefix {
    skip: usize,
}

impl Transform for SkipPrefix {
    fn push(&mut self, piece: &[u8]) -> Outcome<Vec<u8>> {
        let drop = self.skip.min(piece.len());
        self.skip -= drop;
        Ok(piece[drop..].to_vec())
    }

    fn finish(self) -> Outcome<Vec<u8>> {
        Ok(Vec::new())
    }
}

/// Writes `prefix`, then streams `input` through `transform`, into a temporary file
/// beside `output`, and moves it into place only if everything succeeded.
fn stream_to(input: &Path, output: &Path, mut transform: impl Transform, prefix: &[u8]) -> Outcome {
    let mut source = File::open(input).map_err(|e| Failure::io("cannot open", input, e))?;
    let total = source.metadata().map(|m| m.len()).unwrap_or(0);
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".tapeseal-")
        .tempfile_in(dir)
        .map_err(|e| Failure::io("cannot create a file in", dir, e))?;
    let progress = progress(total);
    let write = |temp: &mut tempfile::NamedTempFile, bytes: &[u8]| {
        temp.write_all(bytes)
            .map_err(|e| Failure::io("cannot write", output, e))
    };
    write(&mut temp, prefix)?;
    let mut buf = vec![0u8; PIECE];
    loop {
        let n = source
            .read(&mut buf)
            .map_err(|e| Failure::io("cannot read", input, e))?;
        if n == 0 {
            break;
        }
        let out = transform.push(&buf[..n])?;
        write(&mut temp, &out)?;
        progress.inc(n as u64);
    }
    let last = transform.finish()?;
    write(&mut temp, &last)?;
    temp.as_file()
        .sync_all()
        .map_err(|e| Failure::io("cannot flush", output, e))?;
    temp.persist(output)
        .map_err(|e| Failure::io("cannot move the result to", output, e.error))?;
    progress.finish_and_clear();
    Ok(())
}

fn progress(total: u64) -> ProgressBar {
    if !io::stderr().is_terminal() || total < 8 * PIECE as u64 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

fn seal(runtime: &Runtime, args: &SealArgs) -> Outcome {
    let recipient = recipient(&args.kek, args.kek_id.clone(), args.wrap)?;
    let mut context = Vec::new();
    for entry in &args.context {
        let (k, v) = entry
            .split_once('=')
            .ok_or_else(|| Failure::input(format!("--context {entry}: expected KEY=VALUE")))?;
        context.push((k.to_string(), v.to_string()));
    }
    let params = SealParams {
        org_id: args.org.clone(),
        recording_id: args
            .recording_id
            .clone()
            .unwrap_or_else(|| id_from_file(&args.input, &[])),
        media_kind: args.media_kind.into(),
        content_type: args.content_type.clone(),
        created_at_ms: u64::try_from(crate::catalogue::now_ms()).unwrap_or(0),
        context,
        chunk_size: args.chunk_size,
    };
    let dek = runtime.generate_dek()?;
    let sealer = runtime.sealer(&dek, &params, &[recipient])?;
    stream_to(&args.input, &args.output, sealer, &[])?;
    let size = fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "sealed {} -> {} ({size} bytes)",
        args.input.display(),
        args.output.display()
    );
    Ok(())
}

/// Reads just the header from the start of a file.
fn read_header(runtime: &Runtime, path: &Path) -> Outcome<(Vec<u8>, u64)> {
    let mut file = File::open(path).map_err(|e| Failure::io("cannot open", path, e))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut header = vec![0u8; 14];
    file.read_exact(&mut header).map_err(|_| {
        Failure::input(format!(
            "{}: too short to be a tapeseal envelope",
            path.display()
        ))
    })?;
    let total = runtime.header_length(&header)? as usize;
    header.resize(total, 0);
    file.read_exact(&mut header[14..]).map_err(|_| {
        Failure::input(format!(
            "{}: the file ends inside the header",
            path.display()
        ))
    })?;
    Ok((header, len))
}

fn inspect(runtime: &Runtime, path: &Path, json: bool) -> Outcome {
    let (header, len) = read_header(runtime, path)?;
    let mut info = runtime.inspect(&header)?;
    // The layout needs the length, not the payload bytes: recompute it from the file size.
    let layout = tapeseal_core::Header::parse(&header)
        .ok()
        .and_then(|h| tapeseal_core::Layout::new(&h, len).ok());
    info.payload_len = len.saturating_sub(header.len() as u64);
    info.plaintext_len = layout.map(|l| l.plaintext_len());
    info.chunk_count = layout.map(|l| l.chunk_count());
    if json {
        println!("{}", inspection_json(&info));
    } else {
        print!("{}", inspection_text(&info));
    }
    Ok(())
}

fn wrap_name(algorithm: WrapAlgorithm) -> &'static str {
    match algorithm {
        WrapAlgorithm::RsaOaepSha256 => "rsa-oaep-sha256",
        WrapAlgorithm::RsaOaepSha1 => "rsa-oaep-sha1",
    }
}

fn inspection_json(info: &Inspection) -> String {
    let h = &info.header;
    let value = serde_json::json!({
        "version": h.version,
        "suite": h.suite,
        "orgId": h.org_id,
        "recordingId": h.recording_id,
        "mediaKind": h.media_kind.name(),
        "contentType": h.content_type,
        "createdAt": h.created_at_ms,
        "chunkSize": h.chunk_size,
        "encryptionContext": h.context.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "stanzas": h.stanzas.iter().map(|s| serde_json::json!({
            "kekId": s.kek_id,
            "algorithm": wrap_name(s.algorithm),
            "wrappedDek": B64.encode(&s.wrapped_dek),
        })).collect::<Vec<_>>(),
        "headerLength": h.header_len,
        "payloadLength": info.payload_len,
        "plaintextLength": info.plaintext_len,
        "chunkCount": info.chunk_count,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

fn inspection_text(info: &Inspection) -> String {
    let h = &info.header;
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("  {k:<14} {v}\n"));
    line(
        "format",
        format!("tapeseal envelope v{} (suite {:#06x})", h.version, h.suite),
    );
    line("organisation", h.org_id.clone());
    line("recording", h.recording_id.clone());
    line("media kind", h.media_kind.name().into());
    line("content type", h.content_type.clone());
    line(
        "created",
        format!("{} ({} ms)", utc(h.created_at_ms), h.created_at_ms),
    );
    line("chunk size", format!("{} bytes", h.chunk_size));
    for (i, (k, v)) in h.context.iter().enumerate() {
        line(if i == 0 { "context" } else { "" }, format!("{k}={v}"));
    }
    line("header", format!("{} bytes", h.header_len));
    line(
        "payload",
        match (info.plaintext_len, info.chunk_count) {
            (Some(p), Some(c)) => format!(
                "{} bytes, {c} chunks, {p} bytes of plaintext",
                info.payload_len
            ),
            _ if info.payload_len == 0 => "none (header only)".into(),
            _ => format!(
                "{} bytes: not a length a complete envelope can have (truncated?)",
                info.payload_len
            ),
        },
    );
    line("key stanzas", h.stanzas.len().to_string());
    for st in &h.stanzas {
        line(
            "",
            format!(
                "{}  {}  {}-byte wrapped DEK",
                st.kek_id,
                wrap_name(st.algorithm),
                st.wrapped_dek.len()
            ),
        );
    }
    s
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix milliseconds (proleptic Gregorian, UTC).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let rem = secs % 86_400;
    let (year, month, day) = crate::schedule::civil_from_days((secs / 86_400) as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// Finds the stanza the key unwraps: the one named after the key file if any, else
/// every stanza in turn.
fn unwrap_with(pair: &KekPair, key_path: &Path, info: &Inspection) -> Outcome<Dek> {
    let id = id_from_file(key_path, &[".private.pem", ".pem", ".der"]);
    let stanzas = &info.header.stanzas;
    let ordered = stanzas
        .iter()
        .filter(|s| s.kek_id == id)
        .chain(stanzas.iter().filter(|s| s.kek_id != id));
    for stanza in ordered {
        if let Ok(dek) = pair.unwrap(&stanza.wrapped_dek, stanza.algorithm.into()) {
            return Ok(dek);
        }
    }
    let ids: Vec<&str> = stanzas.iter().map(|s| s.kek_id.as_str()).collect();
    Err(Failure {
        code: 4,
        message: format!(
            "could not unwrap the DEK with {}: the envelope is wrapped for {}",
            key_path.display(),
            ids.join(", ")
        ),
    })
}

fn open(runtime: &Runtime, args: &OpenArgs) -> Outcome {
    let dek = match (&args.key, &args.dek) {
        (_, Some(b64)) => {
            let bytes = Zeroizing::new(
                B64.decode(b64.trim())
                    .map_err(|_| Failure::input("--dek must be base64"))?,
            );
            Dek::from_slice(&bytes).map_err(|_| Failure::input("--dek must be 32 bytes"))?
        }
        (Some(key), None) => {
            let pair = load_pair(key)?;
            let (header, _) = read_header(runtime, &args.input)?;
            let info = runtime.inspect(&header)?;
            unwrap_with(&pair, key, &info)?
        }
        (None, None) => return Err(Failure::input("give --key or --dek")),
    };
    stream_to(&args.input, &args.output, runtime.opener(&dek)?, &[])?;
    eprintln!(
        "opened {} -> {}",
        args.input.display(),
        args.output.display()
    );
    Ok(())
}

fn rewrap(runtime: &Runtime, args: &RewrapArgs) -> Outcome {
    let pair = load_pair(&args.key)?;
    let (header, _) = read_header(runtime, &args.input)?;
    let info = runtime.inspect(&header)?;
    let dek = unwrap_with(&pair, &args.key, &info)?;
    let to = recipient(&args.to, args.to_kek_id.clone(), args.wrap)?;
    let mode = if args.add {
        RewrapMode::Add
    } else {
        RewrapMode::Replace
    };
    let new_header = runtime.rewrap_header(&header, &dek, &[to], mode)?;
    // The payload is copied byte for byte: skip the old header, prepend the new one.
    let copy = SkipPrefix { skip: header.len() };
    stream_to(&args.input, &args.output, copy, &new_header)?;
    eprintln!(
        "rewrapped {} -> {}",
        args.input.display(),
        args.output.display()
    );
    Ok(())
}
