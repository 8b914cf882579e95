//! `cargo xtask demo`: the recording server on 127.0.0.1 with its embedded defaults,
//! a demo organisation with one token per role, and sample recordings (a WAV call,
//! an email, a chat transcript) ingested over HTTP and played back. It prints what
//! to curl, then serves until Ctrl-C. `--check` stops after the playback check (CI
//! runs it, so the README's run command is proven on every change).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::ci::Res;

/// The address the demo asks for; when it is taken, any free loopback port.
const PREFERRED: &str = "127.0.0.1:8750";

/// How the demo gets its `tapeseal` binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binary {
    /// `cargo build -p tapeseal`: the least to compile on a fresh machine.
    Build,
    /// The one `cargo test --workspace` built (CI): `cargo build -p` alone would
    /// resolve features differently and compile the host crates again.
    FromTests,
}

pub(crate) fn run(root: &Path, check: bool, binary: Binary) -> Res<()> {
    crate::ci::step("build the tapeseal binary", || {
        crate::ci::install_targets(root)?;
        match binary {
            Binary::Build => crate::ci::cargo(root, &["build", "-p", "tapeseal"]),
            Binary::FromTests => {
                crate::ci::cargo(root, &[&crate::ci::TEST_BUILD[..], &["--no-run"]].concat())
            }
        }
    })?;
    let bin = root.join("target/debug/tapeseal");
    let dir = root.join("target/demo");
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    let data = dir.join("data");
    let samples_dir = dir.join("samples");
    let data_arg = data.to_str().ok_or("non-UTF-8 path")?;

    let listing = capture(
        &bin,
        &["samples", "--out", samples_dir.to_str().ok_or("path")?],
    )?;
    capture(&bin, &["org", "create", "--data", data_arg, "demo"])?;
    let mut tokens = Vec::new();
    for role in ["admin", "recorder", "player"] {
        let secret = capture(
            &bin,
            &[
                "token", "create", "--data", data_arg, "--org", "demo", "--role", role, "--label",
                "demo",
            ],
        )?;
        tokens.push((role, secret.trim().to_string()));
    }
    let token = |role: &str| {
        tokens
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    };
    let env_file = dir.join("tokens.env");
    write_private(
        &env_file,
        &tokens
            .iter()
            .map(|(role, t)| format!("export TAPESEAL_{}={t}\n", role.to_uppercase()))
            .collect::<String>(),
    )?;

    let server = Server::start(&bin, &data, PREFERRED)
        .or_else(|_| Server::start(&bin, &data, "127.0.0.1:0"))?;
    let url = server.url.clone();
    let addr = url.trim_start_matches("http://").to_string();
    println!(
        "\ntapeseal demo: the server is listening on {url} (data in {})",
        data.display()
    );

    println!(
        "\n{:<10} {:<6} {:>8}  {:<38} played back",
        "sample", "kind", "bytes", "recording id"
    );
    let mut first_id = String::new();
    for line in listing.lines() {
        let mut parts = line.split_whitespace();
        let (Some(file), Some(kind), Some(content_type)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let body = fs::read(samples_dir.join(file))?;
        let (status, reply) = http(
            &addr,
            "POST",
            &format!("/v1/recordings?kind={kind}&conversation_id=demo-conversation-1"),
            &token("recorder"),
            &[("Content-Type", content_type)],
            &body,
        )?;
        if status != 201 {
            return Err(format!(
                "ingest of {file} failed: {status} {}",
                String::from_utf8_lossy(&reply)
            )
            .into());
        }
        let meta: serde_json::Value = serde_json::from_slice(&reply)?;
        let id = meta["id"].as_str().ok_or("no recording id")?.to_string();
        let (status, played) = http(
            &addr,
            "GET",
            &format!("/v1/recordings/{id}/content"),
            &token("player"),
            &[],
            &[],
        )?;
        let same = status == 200 && played == body;
        if !same {
            return Err(format!("{file}: playback returned {status} and different bytes").into());
        }
        println!("{file:<10} {kind:<6} {:>8}  {id:<38} identical", body.len());
        if first_id.is_empty() {
            first_id = id;
        }
    }
    let (status, part) = http(
        &addr,
        "GET",
        &format!("/v1/recordings/{first_id}/content"),
        &token("player"),
        &[("Range", "bytes=44-1043")],
        &[],
    )?;
    println!(
        "range bytes=44-1043 of the call: HTTP {status}, {} bytes (only the chunks holding them were opened)",
        part.len()
    );

    let e = env_file.display();
    let auth = |role: &str| format!("-H \"Authorization: Bearer $TAPESEAL_{role}\"");
    let (admin, recorder, player) = (auth("ADMIN"), auth("RECORDER"), auth("PLAYER"));
    let commands = [
        format!("source {e}"),
        format!("curl -s {player} {url}/v1/recordings | python3 -m json.tool"),
        format!("curl -s {player} {url}/v1/recordings/{first_id}/content -o call.wav"),
        format!(
            "curl -s {player} -H 'Range: bytes=0-1023' {url}/v1/recordings/{first_id}/content | xxd | head"
        ),
        format!(
            "curl -s {recorder} -H 'Content-Type: text/plain' --data-binary hello '{url}/v1/recordings?kind=message'"
        ),
        format!("curl -s {admin} {url}/v1/keks | python3 -m json.tool"),
        format!("curl -s {admin} '{url}/v1/audit?action=recording.decrypt' | python3 -m json.tool"),
        format!("curl -s {url}/metrics | grep ^tapeseal_"),
        format!("curl -s {url}/openapi.json | head"),
    ];
    println!("\nTry it (tokens for each role are in {e}):");
    for command in commands {
        println!("  {command}");
    }
    println!("Rotation, rewrap and the deletion guard, step by step: docs/API.md.");
    if check {
        server.stop()?;
        println!("\ndemo check passed; the server stopped cleanly");
        return Ok(());
    }
    println!("\nServing until Ctrl-C.");
    server.wait()
}

fn capture(bin: &Path, args: &[&str]) -> Res<String> {
    let out = Command::new(bin).args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "tapeseal {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn write_private(path: &Path, text: &str) -> Res<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())?;
    Ok(())
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(bin: &Path, data: &Path, listen: &str) -> Res<Self> {
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", listen])
            .env(
                "TAPESEAL_LOG",
                std::env::var("TAPESEAL_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        match lines.next() {
            Some(Ok(line)) if line.starts_with("listening on ") => {
                std::thread::spawn(move || for _ in lines {});
                Ok(Self {
                    url: line.trim_start_matches("listening on ").to_string(),
                    child,
                })
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("the server did not start on {listen}").into())
            }
        }
    }

    /// Asks the server to shut down (SIGTERM) and waits for it.
    fn stop(mut self) -> Res<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            self.child.kill()?;
        }
        let exit = self.child.wait()?;
        if exit.success() {
            Ok(())
        } else {
            Err(format!("the server exited with {exit}").into())
        }
    }

    fn wait(mut self) -> Res<()> {
        self.child.wait()?;
        Ok(())
    }
}

/// One HTTP/1.1 request on loopback; returns the status and body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Res<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr)?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err("unexpected chunked response".into());
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no HTTP status")?;
    Ok((status, response[split + 4..].to_vec()))
}
