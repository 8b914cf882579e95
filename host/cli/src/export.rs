//! `tapeseal export`: bulk export through a running server's API. `start` creates
//! an export job and follows it with a progress bar; `watch`, `cancel` and `resume`
//! act on a job by id. The job runs in the server (which holds the organisation's
//! key services), so stopping the command stops only the watching. The API token
//! is read from the environment (`TAPESEAL_TOKEN`), never from the command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tapeseal_core::ErrorCode;
use tapeseal_export::pgp::PgpRecipient;
use tapeseal_store::time::parse_utc;

use crate::exit::{Failure, Outcome};

/// How often a followed job is asked for its progress.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8750")]
    server: String,
    /// The environment variable holding an admin API token of the organisation.
    #[arg(long, default_value = "TAPESEAL_TOKEN")]
    token_env: String,
    /// A PEM CA certificate to trust for an https:// server (besides the system's).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ExportCommand {
    /// Create an export job and follow it until it ends.
    Start(Box<StartArgs>),
    /// Follow a job until it ends.
    Watch {
        #[command(flatten)]
        server: ServerArgs,
        /// The job id (job-...).
        job_id: String,
    },
    /// Cancel a job; the files it was writing are discarded.
    Cancel {
        #[command(flatten)]
        server: ServerArgs,
        /// The job id.
        job_id: String,
    },
    /// Queue a failed or cancelled job again (failed recordings are retried) and follow it.
    Resume {
        #[command(flatten)]
        server: ServerArgs,
        /// The job id.
        job_id: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Recordings created at or after this UTC time (2026-11-30, 2026-11-30T08:00).
    #[arg(long)]
    from: Option<String>,
    /// Recordings created before this UTC time.
    #[arg(long)]
    to: Option<String>,
    /// Only this media kind (repeatable): call, email, chat, message, transcript, other, screen.
    #[arg(long = "kind")]
    kinds: Vec<String>,
    /// Only this conversation (repeatable).
    #[arg(long = "conversation")]
    conversations: Vec<String>,
    /// Only this recording (repeatable).
    #[arg(long = "recording")]
    recordings: Vec<String>,
    /// Write under this prefix of the server's export directory.
    #[arg(long, conflicts_with = "s3")]
    directory: Option<String>,
    /// Write to this bucket and prefix: s3://bucket/prefix.
    #[arg(long)]
    s3: Option<String>,
    /// The bucket's region.
    #[arg(long, requires = "s3")]
    region: Option<String>,
    /// Server-side encryption: AES256 (SSE-S3) or aws:kms (SSE-KMS).
    #[arg(long, default_value = "AES256", requires = "s3")]
    sse: String,
    /// The KMS key for --sse aws:kms.
    #[arg(long, requires = "s3")]
    sse_kms_key_id: Option<String>,
    /// Use this access key for the bucket (its secret from AWS_SECRET_ACCESS_KEY);
    /// without it, the server's own AWS credentials.
    #[arg(long, requires = "s3")]
    access_key_id: Option<String>,
    /// Encrypt every file with OpenPGP to this public key (a `gpg --export` file).
    #[arg(long)]
    openpgp_recipient: Option<PathBuf>,
    /// Recordings exported at once (1 to 16; default: the server's).
    #[arg(long)]
    parallel: Option<u32>,
    /// Print the job and return instead of following it.
    #[arg(long)]
    detach: bool,
}

/// A client of one server with one token.
struct Client {
    http: reqwest::blocking::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(args: &ServerArgs) -> Outcome<Self> {
        let token = std::env::var(&args.token_env).map_err(|_| {
            Failure::coded(
                ErrorCode::InvalidParameter,
                format!(
                    "set {} to an admin API token of the organisation",
                    args.token_env
                ),
            )
        })?;
        let mut builder = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60));
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path).map_err(|e| Failure::io("cannot read", path, e))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Failure::input(format!("{} is not a PEM certificate: {e}", path.display()))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| Failure::coded(ErrorCode::Internal, e.to_string()))?;
        Ok(Self {
            http,
            base: args.server.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// Sends a request and returns its JSON body, or the server's error as a failure.
    fn send(&self, request: reqwest::blocking::RequestBuilder) -> Outcome<Value> {
        let response = request.bearer_auth(&self.token).send().map_err(|e| {
            Failure::coded(
                ErrorCode::Unavailable,
                format!("cannot reach the server at {}: {e}", self.base),
            )
        })?;
        let status = response.status();
        let body: Value = response.json().unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let code = body["error"]["code"]
            .as_str()
            .and_then(ErrorCode::from_name)
            .unwrap_or(ErrorCode::Internal);
        let message = body["error"]["message"]
            .as_str()
            .map_or_else(|| format!("the server answered {status}"), str::to_string);
        Err(Failure::coded(code, message))
    }

    fn get(&self, path: &str) -> Outcome<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    fn post(&self, path: &str, body: &Value) -> Outcome<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
    }
}

/// Runs an export command.
pub(crate) fn run(command: ExportCommand) -> Outcome {
    match command {
        ExportCommand::Start(args) => {
            let client = Client::new(&args.server)?;
            let request = request(&args)?;
            let job = client.post("/v1/jobs/export", &request)?;
            let id = job["id"].as_str().unwrap_or_default().to_string();
            println!("export job {id} queued");
            if args.detach {
                println!("follow it with: tapeseal export watch {id}");
                return Ok(());
            }
            follow(&client, &id)
        }
        ExportCommand::Watch { server, job_id } => follow(&Client::new(&server)?, &job_id),
        ExportCommand::Cancel { server, job_id } => {
            let job =
                Client::new(&server)?.post(&format!("/v1/jobs/{job_id}/cancel"), &json!({}))?;
            println!(
                "export job {job_id} {}",
                job["state"].as_str().unwrap_or("?")
            );
            Ok(())
        }
        ExportCommand::Resume { server, job_id } => {
            let client = Client::new(&server)?;
            client.post(&format!("/v1/jobs/{job_id}/resume"), &json!({}))?;
            println!("export job {job_id} queued again");
            follow(&client, &job_id)
        }
    }
}

fn time(flag: &str, text: &Option<String>) -> Outcome<Option<i64>> {
    text.as_deref()
        .map(|t| {
            parse_utc(t).ok_or_else(|| {
                Failure::coded(
                    ErrorCode::InvalidParameter,
                    format!("--{flag} takes a UTC date or time such as 2026-11-30 or 2026-11-30T08:00, not '{t}'"),
                )
            })
        })
        .transpose()
}

/// The API request `args` describe.
fn request(args: &StartArgs) -> Outcome<Value> {
    let usage = |m: &str| Failure::coded(ErrorCode::InvalidParameter, m.to_string());
    let destination = match (&args.directory, &args.s3) {
        (Some(prefix), None) => json!({ "type": "directory", "prefix": prefix }),
        (None, Some(url)) => {
            let rest = url
                .strip_prefix("s3://")
                .ok_or_else(|| usage("--s3 takes s3://bucket/prefix"))?;
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let mut d =
                json!({ "type": "s3", "bucket": bucket, "prefix": prefix, "sse": args.sse });
            if let Some(region) = &args.region {
                d["region"] = json!(region);
            }
            if let Some(key) = &args.sse_kms_key_id {
                d["sse_kms_key_id"] = json!(key);
            }
            if let Some(id) = &args.access_key_id {
                let secret = std::env::var("AWS_SECRET_ACCESS_KEY").map_err(|_| {
                    usage("--access-key-id needs its secret in AWS_SECRET_ACCESS_KEY")
                })?;
                d["access_key_id"] = json!(id);
                d["secret_access_key"] = json!(secret);
            }
            d
        }
        _ => return Err(usage("give --directory PREFIX or --s3 s3://bucket/prefix")),
    };
    let mut select = json!({
        "media_kinds": args.kinds,
        "conversation_ids": args.conversations,
        "recording_ids": args.recordings,
    });
    if let Some(from) = time("from", &args.from)? {
        select["from_ms"] = json!(from);
    }
    if let Some(to) = time("to", &args.to)? {
        select["to_ms"] = json!(to);
    }
    let mut request = json!({ "select": select, "destination": destination });
    if let Some(path) = &args.openpgp_recipient {
        let key = std::fs::read(path).map_err(|e| Failure::io("cannot read", path, e))?;
        // Checked here first, so a wrong file is refused before any job exists.
        let recipient = PgpRecipient::parse(&key)
            .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
        println!(
            "encrypting to OpenPGP key {} (encryption subkey {})",
            recipient.fingerprint(),
            recipient.encryption_key_id()
        );
        request["openpgp_public_key"] = json!(recipient.armored());
    }
    if let Some(parallel) = args.parallel {
        request["parallel"] = json!(parallel);
    }
    Ok(request)
}

/// Follows a job with a progress bar (bytes, and recordings written and failed)
/// until it ends; prints its outcome. A job that ends failed or cancelled is a
/// failure of the command.
fn follow(client: &Client, id: &str) -> Outcome {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let job = loop {
        let job = client.get(&format!("/v1/jobs/{id}"))?;
        let p = &job["progress"];
        let count = |name: &str| p[name].as_u64().unwrap_or(0);
        bar.set_length(count("total_bytes"));
        bar.set_position(count("bytes"));
        bar.set_message(format!(
            "{}/{} recordings, {} failed",
            count("exported"),
            count("total"),
            count("failed")
        ));
        let state = job["state"].as_str().unwrap_or("?");
        if !matches!(state, "queued" | "running") {
            break job;
        }
        std::thread::sleep(POLL);
    };
    bar.finish_and_clear();
    let p = &job["progress"];
    let state = job["state"].as_str().unwrap_or("?");
    println!(
        "export job {id} {state}: {} of {} recordings exported ({} bytes), {} failed",
        p["exported"].as_u64().unwrap_or(0),
        p["total"].as_u64().unwrap_or(0),
        p["bytes"].as_u64().unwrap_or(0),
        p["failed"].as_u64().unwrap_or(0),
    );
    if let Some(manifest) = p["manifest"].as_str() {
        println!("manifest: {manifest}");
    }
    match state {
        "done" => Ok(()),
        "cancelled" => Err(Failure::coded(
            ErrorCode::Conflict,
            format!("export job {id} was cancelled; resume it with: tapeseal export resume {id}"),
        )),
        _ => {
            let why = p["error"].as_str().map_or_else(
                || {
                    "some recordings could not be exported (see the manifest's failures)"
                        .to_string()
                },
                str::to_string,
            );
            Err(Failure::coded(
                ErrorCode::Internal,
                format!(
                    "export job {id} failed: {why}; after fixing the cause: tapeseal export resume {id}"
                ),
            ))
        }
    }
}
