//! `moto_server`, the local stand-in for AWS KMS, S3 and IAM that the AWS tests run
//! against (through `tapeseal-testkit`): found where it is already installed (if it
//! is recent enough), or installed from PyPI into a virtual environment in
//! `target/tools/moto`. [`Server`] runs it as the S3 of `cargo xtask demo --cluster`.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ci::{Res, run_in};

/// The variable that names the program, for xtask and the testkit alike.
const ENV: &str = "TAPESEAL_MOTO_SERVER";
/// moto 5 is what the testkit's assumptions were checked against: its
/// `INITIAL_NO_AUTH_ACTION_COUNT`, `x-moto-account-id` and account-by-access-key rules.
/// Before 5.2.5 its S3 refuses the SigV4 signature of a PUT whose key holds `=`
/// (percent-encoded, as in the export layout's `year=2026/...`).
const REQUIREMENT: &str = "moto[server]>=5.2.5,<6";
/// The lowest version [`REQUIREMENT`] allows.
const MINIMUM: (u32, u32, u32) = (5, 2, 5);

/// The virtual environment the testkit looks in when `TAPESEAL_MOTO_SERVER` is unset.
fn venv(root: &Path) -> PathBuf {
    root.join("target/tools/moto")
}

/// Returns a `moto_server` that runs: `TAPESEAL_MOTO_SERVER`, else one on `PATH`,
/// else the one in `target/tools/moto`, installing it there if there is none.
pub(crate) fn ensure(root: &Path) -> Res<PathBuf> {
    if let Some(path) = std::env::var_os(ENV).map(PathBuf::from) {
        if path.is_file() {
            println!("moto_server: {} (from {ENV})", path.display());
            return Ok(path);
        }
        println!("{ENV}={} does not exist; looking elsewhere", path.display());
    }
    if let Some(path) = crate::npm::which("moto_server").filter(|p| runs(p)) {
        match version(&path) {
            Some(v) if v >= MINIMUM => {
                println!("moto_server: {} (on PATH, moto {v:?})", path.display());
                return Ok(path);
            }
            found => println!(
                "moto_server on PATH is moto {found:?}, older than {MINIMUM:?} (or unknown); not used"
            ),
        }
    }
    let dir = venv(root);
    let program = dir.join("bin/moto_server");
    if runs(&program) && version(&program).is_some_and(|v| v >= MINIMUM) {
        println!("moto_server: {}", program.display());
        return Ok(program);
    }
    install(root, &dir)?;
    if !runs(&program) {
        return Err(format!("{} was installed but does not run", program.display()).into());
    }
    println!("moto_server: {} (installed)", program.display());
    Ok(program)
}

/// Whether `moto_server --help` succeeds: the program exists and its Python can
/// import moto's server.
fn runs(program: &Path) -> bool {
    program.is_file()
        && Command::new(program)
            .arg("--help")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// The version of moto behind a `moto_server` script: asked of the Python its
/// `#!` line names, or of `python3` for a wrapper such as a pyenv shim.
fn version(program: &Path) -> Option<(u32, u32, u32)> {
    let script = std::fs::read(program).ok()?;
    let first = script.split(|b| *b == b'\n').next()?;
    let first = String::from_utf8_lossy(first);
    let python = first
        .strip_prefix("#!")
        .map(str::trim)
        .filter(|p| p.contains("python") && !p.contains(' '))
        .unwrap_or("python3")
        .to_string();
    let out = Command::new(&python)
        .args(["-c", "import moto; print(moto.__version__)"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.trim().split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .ok()
    });
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// `python3 -m venv target/tools/moto` (adding Debian's python3-venv if that is what
/// is missing), then pip installs moto's server into it.
fn install(root: &Path, dir: &Path) -> Res<()> {
    let dir_str = dir.to_string_lossy().to_string();
    // A half-made environment from an interrupted attempt would fail the same way.
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let venv_args = ["-m", "venv", dir_str.as_str()];
    if let Err(e) = run_in(root, "python3", &venv_args, &[]) {
        println!("python3 -m venv failed ({e}); installing Debian's python3-venv");
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        crate::npm::apt_install(root, &["python3-venv"])?;
        run_in(root, "python3", &venv_args, &[])?;
    }
    let pip = dir.join("bin/pip").to_string_lossy().to_string();
    run_in(
        root,
        &pip,
        &[
            "install",
            "--quiet",
            "--disable-pip-version-check",
            REQUIREMENT,
        ],
        &[],
    )
}

/// moto's S3 for `cargo xtask demo --cluster`: `moto_server` on 127.0.0.1 with no
/// IAM enforcement, in a process group of its own (Ctrl-C at the terminal does not
/// stop it under the tapeseal instances that write to it; dropping the [`Server`]
/// stops it). moto keeps everything in memory; so that the bucket outlives a run as
/// the PostgreSQL catalogue does, moto's recorder appends every request to
/// `<dir>/requests.jsonl`, and the next start replays the requests that changed
/// something (PUT, POST, DELETE; a multipart upload's parts under the id the new
/// upload gets), which moto records again: the file keeps only what is needed.
#[derive(Debug)]
pub(crate) struct Server {
    child: std::process::Child,
    port: u16,
    log: PathBuf,
}

/// How long moto gets to start listening, and to stop.
const MOTO_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// What one replay did.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    /// Requests replayed (those that changed something).
    pub(crate) requests: usize,
    /// Of which moto refused (as it may have the first time).
    pub(crate) refused: usize,
    /// Lines of the file that were not a request moto had recorded (a run killed
    /// while moto wrote one).
    pub(crate) unreadable: usize,
}

impl Server {
    /// Starts `program` (a `moto_server`) on `preferred` or the next free port, its
    /// output in `<dir>/moto.log`, and replays `<dir>/requests.jsonl` of the runs
    /// before.
    pub(crate) fn start(program: &Path, dir: &Path, preferred: u16) -> Res<(Server, Replayed)> {
        std::fs::create_dir_all(dir)?;
        let dir = std::path::absolute(dir)?;
        let recording = dir.join("requests.jsonl");
        // What the runs before left; an earlier replay that was cut short left
        // it here, the recording beside it then holding only part of it.
        let replay = dir.join("requests.replay.jsonl");
        if !replay.exists() && recording.exists() {
            std::fs::rename(&recording, &replay)?;
        }
        let log = dir.join("moto.log");
        let out = std::fs::File::create(&log)?;
        let port = crate::service::free_port(preferred, 20)?;
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_RECORDING", "true")
            .env("MOTO_RECORDER_FILEPATH", &recording)
            // Every request in the default account; no IAM enforcement.
            .env_remove("MOTO_ACCOUNT_ID")
            .env_remove("INITIAL_NO_AUTH_ACTION_COUNT")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()?;
        let mut server = Server { child, port, log };
        server.wait_listening()?;
        let replayed = if replay.exists() {
            let replayed = server.replay(&std::fs::read_to_string(&replay)?)?;
            std::fs::remove_file(&replay)?;
            replayed
        } else {
            Replayed::default()
        };
        Ok((server, replayed))
    }

    /// The process id of `moto_server`.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file moto's output goes to.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// The exit status if moto has exited (it should not, until stopped).
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Creates `bucket` unless it exists (moto takes the request unsigned); returns
    /// whether it did.
    pub(crate) fn ensure_bucket(&self, bucket: &str) -> Res<bool> {
        let path = format!("/{bucket}");
        let (status, _) = crate::loopback::http(&self.addr(), "HEAD", &path, "", &[], &[])?;
        match status {
            200 => Ok(false),
            404 => {
                let (status, body) =
                    crate::loopback::http(&self.addr(), "PUT", &path, "", &[], &[])?;
                if status != 200 {
                    return Err(format!(
                        "moto refused to create the bucket {bucket}: {status} {}",
                        String::from_utf8_lossy(&body)
                    )
                    .into());
                }
                Ok(true)
            }
            _ => Err(format!("HEAD {path} at moto: {status}").into()),
        }
    }

    /// Stops moto (SIGTERM); fails if it had exited before.
    pub(crate) fn stop(mut self) -> Res<()> {
        if let Some(status) = self.exited() {
            return Err(
                format!("moto had exited with {status}; see {}", self.log.display()).into(),
            );
        }
        crate::service::stop_child(&mut self.child, "TERM", MOTO_PATIENCE)?;
        Ok(())
    }

    fn wait_listening(&mut self) -> Res<()> {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(format!(
                    "moto_server exited with {status} before listening; see {}",
                    self.log.display()
                )
                .into());
            }
            if std::net::TcpStream::connect(self.addr()).is_ok() {
                return Ok(());
            }
            if started.elapsed() > MOTO_PATIENCE {
                return Err(format!(
                    "moto_server did not listen on {} within {} s; see {}",
                    self.addr(),
                    MOTO_PATIENCE.as_secs(),
                    self.log.display()
                )
                .into());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Sends again the requests of a recording that changed something, in order.
    /// A multipart upload gets a new id when it is created again: the parts and the
    /// completion that follow go to the new one.
    fn replay(&self, recording: &str) -> Res<Replayed> {
        use base64::Engine as _;
        let mut replayed = Replayed::default();
        // Object path -> the id of its upload created in this replay, until the
        // recorded requests name the id it had then.
        let mut created: std::collections::HashMap<String, String> = Default::default();
        // Upload id of the recording -> the id of the same upload now.
        let mut renamed: std::collections::HashMap<String, String> = Default::default();
        for line in recording.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
                replayed.unreadable += 1;
                continue;
            };
            let (Some(method), Some(url)) = (entry["method"].as_str(), entry["url"].as_str())
            else {
                replayed.unreadable += 1;
                continue;
            };
            if !matches!(method, "PUT" | "POST" | "DELETE") {
                continue;
            }
            // `http://host:port/path?query`: the path and query, for this server.
            let target = url
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|at| &rest[at..]))
                .unwrap_or("/");
            let (object, query) = target.split_once('?').unwrap_or((target, ""));
            let mut target = target.to_string();
            let old_upload = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("uploadId="))
                .map(str::to_string);
            if let Some(old) = old_upload {
                if !renamed.contains_key(&old)
                    && let Some(new) = created.remove(object)
                {
                    renamed.insert(old.clone(), new);
                }
                if let Some(new) = renamed.get(&old) {
                    target = target.replace(&format!("uploadId={old}"), &format!("uploadId={new}"));
                }
            }
            let body = match entry["body"].as_str() {
                Some(text) if entry["body_encoded"].as_bool() == Some(true) => {
                    base64::engine::general_purpose::STANDARD.decode(text)?
                }
                Some(text) => text.as_bytes().to_vec(),
                None => Vec::new(),
            };
            let headers: Vec<(&str, &str)> = entry["headers"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(name, _)| {
                    !matches!(
                        name.to_ascii_lowercase().as_str(),
                        "host" | "content-length" | "connection" | "transfer-encoding" | "expect"
                    )
                })
                .filter_map(|(name, value)| Some((name.as_str(), value.as_str()?)))
                .collect();
            replayed.requests += 1;
            let answer = crate::loopback::http(&self.addr(), method, &target, "", &headers, &body);
            let reply = match answer {
                Ok((status, reply)) if (200..300).contains(&status) => reply,
                _ => {
                    replayed.refused += 1;
                    continue;
                }
            };
            let is_create = method == "POST" && query.split('&').any(|pair| pair == "uploads");
            if is_create {
                let reply = String::from_utf8_lossy(&reply);
                if let Some(id) = reply
                    .split_once("<UploadId>")
                    .and_then(|(_, rest)| rest.split_once("</UploadId>"))
                    .map(|(id, _)| id.to_string())
                {
                    created.insert(object.to_string(), id);
                }
            }
        }
        Ok(replayed)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = crate::service::stop_child(&mut self.child, "TERM", MOTO_PATIENCE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loopback::http;

    /// The cluster demo's S3: a bucket with a small object and one made by a
    /// multipart upload comes back, byte for byte, after moto restarts, twice (the
    /// replayed requests are recorded again, under the new upload's id).
    #[test]
    fn demo_bucket_outlives_restarts() -> Res<()> {
        let program = std::env::var_os(ENV).map(PathBuf::from).unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/moto/bin/moto_server")
        });
        if !program.is_file() {
            return Err(
                format!("no moto_server at {} (cargo xtask moto)", program.display()).into(),
            );
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp/xtask-moto");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let small = b"a small envelope".to_vec();
        // One full part of 5 MiB (S3's least) and a short last one.
        let large: Vec<u8> = (0..(5 << 20) + 1000).map(|i| (i % 251) as u8).collect();

        let (server, replayed) = Server::start(&program, &dir, 18_780)?;
        assert_eq!(replayed.requests, 0);
        assert!(server.ensure_bucket("demo")?);
        assert!(!server.ensure_bucket("demo")?);
        let addr = server.addr();
        let (status, _) = http(&addr, "PUT", "/demo/rec/small", "", &[], &small)?;
        assert_eq!(status, 200);
        let (status, reply) = http(&addr, "POST", "/demo/rec/large?uploads", "", &[], &[])?;
        assert_eq!(status, 200);
        let reply = String::from_utf8_lossy(&reply).to_string();
        let id = reply
            .split_once("<UploadId>")
            .and_then(|(_, rest)| rest.split_once("</UploadId>"))
            .map(|(id, _)| id.to_string())
            .ok_or("no UploadId")?;
        let mut etags = Vec::new();
        for (number, part) in [&large[..5 << 20], &large[5 << 20..]].iter().enumerate() {
            let (status, head, _) = crate::loopback::http_full(
                &addr,
                "PUT",
                &format!("/demo/rec/large?partNumber={}&uploadId={id}", number + 1),
                "",
                &[],
                part,
            )?;
            assert_eq!(status, 200);
            let etag = head
                .lines()
                .find_map(|l| l.strip_prefix("ETag: ").or(l.strip_prefix("etag: ")))
                .ok_or("no ETag")?;
            etags.push(etag.trim().to_string());
        }
        let complete: String = etags
            .iter()
            .enumerate()
            .map(|(i, etag)| {
                format!(
                    "<Part><PartNumber>{}</PartNumber><ETag>{etag}</ETag></Part>",
                    i + 1
                )
            })
            .collect();
        let complete = format!("<CompleteMultipartUpload>{complete}</CompleteMultipartUpload>");
        let (status, _) = http(
            &addr,
            "POST",
            &format!("/demo/rec/large?uploadId={id}"),
            "",
            &[],
            complete.as_bytes(),
        )?;
        assert_eq!(status, 200);
        server.stop()?;

        for _ in 0..2 {
            let (server, replayed) = Server::start(&program, &dir, 18_780)?;
            // The bucket, the small object, the upload's creation, parts and completion.
            assert_eq!(
                (replayed.requests, replayed.refused),
                (6, 0),
                "{replayed:?}"
            );
            assert!(!server.ensure_bucket("demo")?);
            let addr = server.addr();
            // moto answers an unsigned GET of a private object 403; it checks no
            // signature.
            let signed = [(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=demo/20260101/us-east-1/s3/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )];
            assert_eq!(
                http(&addr, "GET", "/demo/rec/small", "", &signed, &[])?,
                (200, small.clone())
            );
            let (status, body) = http(&addr, "GET", "/demo/rec/large", "", &signed, &[])?;
            assert_eq!(status, 200);
            assert!(body == large, "the multipart object differs");
            drop(server);
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
