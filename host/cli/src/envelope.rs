//! `tapeseal keygen | seal | open | rewrap`: envelope files on disk. Payload work runs
//! in the WebAssembly guest; private keys stay in the host (aws-lc-rs). Files stream
//! through in 1 MiB pieces, and outputs appear only when complete.

use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tapeseal_core::{Dek, ErrorCode};
use tapeseal_engine::{
    Inspection, Limits, MediaKind, Recipient, RewrapMode, Runtime, SealParams, StreamOpener,
    StreamSealer, WrapAlgorithm,
};
use tapeseal_keys::KekPair;
use zeroize::Zeroizing;

use crate::exit::{Failure, Outcome};
use crate::inspect::read_header;

const PIECE: usize = 1 << 20;

#[derive(Debug, Args)]
pub(crate) struct SealArgs {
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
    #[arg(long, default_value = "other", value_parser = media_kinds())]
    media_kind: MediaKind,
    /// MIME type of the recording.
    #[arg(long, default_value = "application/octet-stream")]
    content_type: String,
    /// Organisation id.
    #[arg(long, default_value = "default")]
    org: String,
    /// Recording id; default: the input file's name.
    #[arg(long)]
    recording_id: Option<String>,
    /// Give the recording a new id in the server's format (rec- and 32 hex digits),
    /// printed on standard output: what `PUT /v1/recordings/{id}/envelope` takes.
    #[arg(long, conflicts_with = "recording_id")]
    new_recording_id: bool,
    /// Authenticated context entry KEY=VALUE (repeatable).
    #[arg(long = "context", value_name = "KEY=VALUE")]
    context: Vec<String>,
    /// Plaintext bytes per chunk.
    #[arg(long, default_value_t = 65_536)]
    chunk_size: u32,
}

#[derive(Debug, Args)]
pub(crate) struct OpenArgs {
    /// The KEK's private key (PEM PKCS#8 or PKCS#1, or DER).
    #[arg(long, group = "secret")]
    key: Option<PathBuf>,
    /// A file holding the DEK, base64 (as a Local Key Manager's decrypt returns it);
    /// `-` reads it from standard input.
    #[arg(long, group = "secret", value_name = "FILE")]
    dek_file: Option<PathBuf>,
    /// An environment variable holding the DEK, base64.
    #[arg(long, group = "secret", value_name = "VAR")]
    dek_env: Option<String>,
    /// The DEK itself, base64. Other users of this machine can read command lines:
    /// prefer --dek-file or --dek-env.
    #[arg(long, group = "secret")]
    dek: Option<String>,
    /// The envelope.
    #[arg(long = "in")]
    input: PathBuf,
    /// Where to write the recording (written only when every chunk verified).
    #[arg(long = "out")]
    output: PathBuf,
    /// Flush the recording to disk (fsync the file and its directory) before
    /// exiting. Off by default: the output can be made again from the envelope,
    /// and the flush costs about as long as the decryption. `seal` and `rewrap`
    /// always flush, since their output may become the only copy.
    #[arg(long)]
    sync: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RewrapArgs {
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

/// Parses a media kind from the core's own list of names.
fn media_kinds() -> impl clap::builder::TypedValueParser<Value = MediaKind> {
    let names = tapeseal_core::MediaKind::ALL.map(tapeseal_core::MediaKind::name);
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(names).try_map(|name: String| {
        MediaKind::from_name(&name).ok_or_else(|| format!("{name}: not a media kind"))
    })
}

/// The guest, compiled (or loaded from the cache) with the default limits.
pub(crate) fn runtime() -> Outcome<Runtime> {
    Runtime::one_shot(Limits::default()).map_err(Failure::from)
}

pub(crate) fn keygen(dir: &Path, id: Option<String>, bits: usize) -> Outcome {
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

/// Creates a file that must not exist yet, durably; private files are 0600 from the
/// start.
fn write_new(path: &Path, bytes: &[u8], private: bool) -> Outcome {
    tapeseal_store::durable::write_new_file(path, bytes, private)
        .map_err(|e| Failure::io("cannot create", path, e))
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

/// Whether [`stream_to`] makes its output durable before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// fsync the file and its directory.
    Sync,
    /// Leave the writing-back to the kernel.
    Lazy,
}

/// Writes `prefix`, then streams `input` through `transform`, into a temporary file
/// beside `output`, and moves it into place only if everything succeeded.
fn stream_to(
    input: &Path,
    output: &Path,
    mut transform: impl Transform,
    prefix: &[u8],
    flush: Flush,
) -> Outcome {
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
    match flush {
        Flush::Sync => tapeseal_store::durable::persist_synced(temp, output),
        Flush::Lazy => temp.persist(output).map(drop).map_err(|e| e.error),
    }
    .map_err(|e| Failure::io("cannot move the result to", output, e))?;
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

pub(crate) fn seal(runtime: &Runtime, args: &SealArgs) -> Outcome {
    let recipient = recipient(&args.kek, args.kek_id.clone(), args.wrap)?;
    let mut context = Vec::new();
    for entry in &args.context {
        let (k, v) = entry
            .split_once('=')
            .ok_or_else(|| Failure::input(format!("--context {entry}: expected KEY=VALUE")))?;
        context.push((k.to_string(), v.to_string()));
    }
    let recording_id = match (&args.recording_id, args.new_recording_id) {
        (Some(id), _) => id.clone(),
        (None, true) => tapeseal_store::ids::new_recording_id()
            .map_err(|_| Failure::coded(ErrorCode::RandomUnavailable, "no secure random source"))?,
        (None, false) => id_from_file(&args.input, &[]),
    };
    let params = SealParams {
        org_id: args.org.clone(),
        recording_id: recording_id.clone(),
        media_kind: args.media_kind,
        content_type: args.content_type.clone(),
        created_at_ms: u64::try_from(tapeseal_store::time::now_ms()).unwrap_or(0),
        context,
        chunk_size: args.chunk_size,
    };
    let dek = runtime.generate_dek()?;
    let sealer = runtime.sealer(&dek, &params, &[recipient])?;
    stream_to(&args.input, &args.output, sealer, &[], Flush::Sync)?;
    let size = fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "sealed {} -> {} ({size} bytes)",
        args.input.display(),
        args.output.display()
    );
    if args.new_recording_id {
        println!("{recording_id}");
    }
    Ok(())
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

/// The DEK from wherever `open` was told to find it.
fn given_dek(args: &OpenArgs) -> Outcome<Option<Dek>> {
    let text = if let Some(b64) = &args.dek {
        eprintln!(
            "tapeseal: warning: a DEK on the command line is visible to other users of this \
             machine; use --dek-file or --dek-env"
        );
        Zeroizing::new(b64.clone())
    } else if let Some(path) = &args.dek_file {
        let mut text = Zeroizing::new(String::new());
        let read = if path.as_os_str() == "-" {
            io::stdin().read_to_string(&mut text)
        } else {
            File::open(path).and_then(|mut f| f.read_to_string(&mut text))
        };
        read.map_err(|e| Failure::io("cannot read the DEK from", path, e))?;
        text
    } else if let Some(var) = &args.dek_env {
        Zeroizing::new(
            std::env::var(var)
                .map_err(|_| Failure::input(format!("the DEK variable {var} is not set")))?,
        )
    } else {
        return Ok(None);
    };
    let bytes = Zeroizing::new(
        B64.decode(text.trim())
            .map_err(|_| Failure::coded(ErrorCode::InvalidDek, "the DEK must be base64"))?,
    );
    Dek::from_slice(&bytes)
        .map(Some)
        .map_err(|_| Failure::coded(ErrorCode::InvalidDek, "the DEK must be 32 bytes"))
}

pub(crate) fn open(runtime: &Runtime, args: &OpenArgs) -> Outcome {
    let dek = match (given_dek(args)?, &args.key) {
        (Some(dek), _) => dek,
        (None, Some(key)) => {
            let pair = load_pair(key)?;
            let (header, _) = read_header(runtime, &args.input)?;
            let info = runtime.inspect(&header)?;
            unwrap_with(&pair, key, &info)?
        }
        (None, None) => {
            return Err(Failure::coded(
                ErrorCode::InvalidParameter,
                "give --key, --dek-file, --dek-env or --dek",
            ));
        }
    };
    let flush = if args.sync { Flush::Sync } else { Flush::Lazy };
    stream_to(&args.input, &args.output, runtime.opener(&dek)?, &[], flush)?;
    eprintln!(
        "opened {} -> {}",
        args.input.display(),
        args.output.display()
    );
    Ok(())
}

pub(crate) fn rewrap(runtime: &Runtime, args: &RewrapArgs) -> Outcome {
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
    stream_to(&args.input, &args.output, copy, &new_header, Flush::Sync)?;
    eprintln!(
        "rewrapped {} -> {}",
        args.input.display(),
        args.output.display()
    );
    Ok(())
}
