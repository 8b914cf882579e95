//! `cargo xtask demo`: the recording server on 127.0.0.1 with its embedded defaults
//! and the browser pages, the reference Local Key Manager beside it, two demo
//! organisations with one token per role (`demo` with managed keys, `demo-lkm` with
//! its KEK in the LKM), and sample recordings (a WAV call, an email, a chat
//! transcript) ingested over HTTP and played back for each. It prints the page that
//! plays the sample call with a DEK straight from the LKM and what to curl, then
//! serves until Ctrl-C. `--check` stops after the playback checks (CI runs it, so
//! the README's run command is proven on every change). Its pieces (the build, the
//! organisations and tokens, the samples, the services) also make
//! `cargo xtask demo --cluster` (cluster.rs).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ci::Res;
use crate::loopback::{http, http_full};
use crate::service::Service;

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

/// Builds the `tapeseal` binary (the demo's and the cluster demo's); returns its path.
pub(crate) fn build(root: &Path, binary: Binary) -> Res<PathBuf> {
    crate::ci::step("build the tapeseal binary", || {
        crate::ci::install_targets(root)?;
        match binary {
            Binary::Build => crate::ci::cargo(root, &["build", "-p", "tapeseal"]),
            Binary::FromTests => {
                crate::ci::cargo(root, &[&crate::ci::TEST_BUILD[..], &["--no-run"]].concat())
            }
        }
    })?;
    Ok(root.join("target/debug/tapeseal"))
}

pub(crate) fn run(root: &Path, check: bool, binary: Binary) -> Res<()> {
    let bin = build(root, binary)?;
    let mut pages = None;
    crate::ci::step(
        "build the browser pages (the npm package's web build)",
        || {
            crate::npm::install_wasm_bindgen(root)?;
            pages = Some(crate::www::assemble(root, false)?);
            Ok(())
        },
    )?;
    let pages = pages.ok_or("no pages")?;
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
    let catalogue = ["--data", data_arg];
    let managed = DemoOrg::create(&bin, &catalogue, "demo", "")?;
    let lkm_org = DemoOrg::create(&bin, &catalogue, "demo-lkm", "LKM_")?;
    let env_file = dir.join("tokens.env");
    write_private(&env_file, &(managed.env_lines() + &lkm_org.env_lines()))?;

    let lkm_keys = LkmKeys::prepare(&bin, &dir)?;
    let server = Service::start(&bin, &serve_args(&data, &pages, PREFERRED))
        .or_else(|_| Service::start(&bin, &serve_args(&data, &pages, "127.0.0.1:0")))?;
    let url = server.url.clone();
    let addr = url.trim_start_matches("http://").to_string();
    // The page's origin, by address or by name, may ask the LKM for DEKs.
    let origins = [url.clone(), url.replace("127.0.0.1", "localhost")];
    let lkm = Service::start(&bin, &lkm_keys.serve_args(PREFERRED_LKM, &origins))
        .or_else(|_| Service::start(&bin, &lkm_keys.serve_args("127.0.0.1:0", &origins)))?;
    println!(
        "\ntapeseal demo: the server is listening on {url} (data in {})",
        data.display()
    );
    println!(
        "the reference LKM is listening on {} (data in {}; plain HTTP on loopback for this \
         demo, so that any browser on this machine reaches it)",
        lkm.url,
        lkm_keys.data.display(),
    );
    lkm_keys.connect(&addr, &lkm_org.admin, &lkm)?;
    println!(
        "organisation demo-lkm keeps its KEK in that LKM: key pair {} (imported from a PEM file), \
         Hawk id {}",
        lkm_keys.keypair_id, lkm_keys.hawk_id
    );

    let samples = read_samples(&listing, &samples_dir)?;
    let first_id = play_samples(&managed, &samples, &addr, &addr, "played back")?;
    let lkm_call = play_samples(&lkm_org, &samples, &addr, &addr, "played back")?;
    browser_path(&addr, &lkm_org, &lkm_call, &url)?;
    let (status, part) = http(
        &addr,
        "GET",
        &format!("/v1/recordings/{first_id}/content"),
        &managed.player,
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
    let (lkm_admin, lkm_player) = (auth("LKM_ADMIN"), auth("LKM_PLAYER"));
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
        format!("curl -s {lkm_admin} {url}/v1/lkm | python3 -m json.tool"),
        format!("curl -s {lkm_player} {url}/v1/recordings | python3 -m json.tool"),
        format!(
            "curl -sk -H \"Authorization: Bearer $(cat {})\" {}/key-management/v1/request-log | python3 -m json.tool",
            lkm_keys.admin_token_file().display(),
            lkm.url
        ),
        format!("curl -s {url}/metrics | grep ^tapeseal_"),
        format!("curl -s {url}/openapi.json | head"),
    ];
    println!(
        "\nHear the sample call in your browser, decrypted in the page with a DEK that the page \
         gets from the LKM itself:\n  {url}/#token={}&recording={lkm_call}\n\
         The Encryption Keys admin page (managed organisation demo):\n  {url}/admin.html#token={}",
        lkm_org.player, managed.admin
    );
    println!("\nTry it (tokens for each role are in {e}):");
    for command in commands {
        println!("  {command}");
    }
    println!(
        "Rotation, rewrap and the deletion guard, step by step: docs/API.md; the LKM: docs/LKM.md."
    );
    if check {
        server.stop()?;
        lkm.stop()?;
        println!("\ndemo check passed; the server and the LKM stopped cleanly");
        return Ok(());
    }
    println!("\nServing until Ctrl-C.");
    server.wait()
}

/// The address the demo asks for the reference LKM; when taken, any free port.
const PREFERRED_LKM: &str = "127.0.0.1:8760";

fn serve_args(data: &Path, pages: &Path, listen: &str) -> Vec<String> {
    vec![
        "serve".into(),
        "--data".into(),
        data.display().to_string(),
        "--www".into(),
        pages.display().to_string(),
        "--listen".into(),
        listen.into(),
    ]
}

/// What the playback page does, without a browser: the pages are served; a player
/// gets a grant for the LKM organisation's call; the LKM redeems it for the page's
/// origin (CORS) with the DEK.
fn browser_path(addr: &str, org: &DemoOrg, recording: &str, origin: &str) -> Res<()> {
    for page in ["/", "/admin.html", "/pkg/tapeseal_bg.wasm"] {
        let (status, _, _) = http_full(addr, "GET", page, "", &[], &[])?;
        if status != 200 {
            return Err(format!("GET {page}: {status}").into());
        }
    }
    let (status, reply) = http(
        addr,
        "POST",
        &format!("/v1/recordings/{recording}/playback"),
        &org.player,
        &[],
        &[],
    )?;
    let plan: serde_json::Value = serde_json::from_slice(&reply)?;
    if status != 200 || plan["mode"] != "lkm" {
        return Err(format!("the playback plan is not an LKM grant: {status} {plan}").into());
    }
    let grant = &plan["grant"];
    let lkm_url = grant["lkm_url"].as_str().ok_or("no lkm_url")?;
    let rest = lkm_url
        .strip_prefix("http://")
        .ok_or("the demo LKM is plain HTTP")?;
    let (lkm_addr, path) = rest.split_at(rest.find('/').ok_or("no path")?);
    let body = serde_json::json!({
        "grant": grant["token"],
        "keypairId": grant["keypair_id"],
        "body": grant["wrapped_dek"],
    });
    let (status, head, reply) = http_full(
        lkm_addr,
        "POST",
        path,
        "",
        &[("Content-Type", "application/json"), ("Origin", origin)],
        body.to_string().as_bytes(),
    )?;
    let allowed = head.to_ascii_lowercase().contains(&format!(
        "access-control-allow-origin: {}",
        origin.to_ascii_lowercase()
    ));
    let dek: serde_json::Value = serde_json::from_slice(&reply)?;
    if status != 200 || !allowed || dek["body"].as_str().is_none_or(|d| d.len() != 44) {
        return Err(format!(
            "the LKM did not release the DEK to the page's origin: {status} {}",
            dek["code"]
        )
        .into());
    }
    println!(
        "the pages are served; a grant for the demo-lkm call was redeemed at the LKM for the \
         page's origin (CORS) with its DEK"
    );
    Ok(())
}

/// A demo organisation with one token per role.
#[derive(Debug)]
pub(crate) struct DemoOrg {
    pub(crate) name: String,
    prefix: &'static str,
    pub(crate) admin: String,
    pub(crate) recorder: String,
    pub(crate) player: String,
}

impl DemoOrg {
    /// Creates organisation `name` in the catalogue `catalogue` names (`--data DIR`
    /// or `--catalogue URL`, as the `tapeseal org` and `token` commands take it),
    /// then its tokens.
    fn create(bin: &Path, catalogue: &[&str], name: &str, prefix: &'static str) -> Res<Self> {
        capture(bin, &[&["org", "create"], catalogue, &[name]].concat())?;
        Self::with_new_tokens(bin, catalogue, name, prefix, "demo")
    }

    /// Makes one new token per role, labelled `label`, for the existing
    /// organisation `name`.
    pub(crate) fn with_new_tokens(
        bin: &Path,
        catalogue: &[&str],
        name: &str,
        prefix: &'static str,
        label: &str,
    ) -> Res<Self> {
        let token = |role: &str| -> Res<String> {
            let secret = capture(
                bin,
                &[
                    &["token", "create"],
                    catalogue,
                    &["--org", name, "--role", role, "--label", label],
                ]
                .concat(),
            )?;
            Ok(secret.trim().to_string())
        };
        Ok(Self {
            name: name.to_string(),
            prefix,
            admin: token("admin")?,
            recorder: token("recorder")?,
            player: token("player")?,
        })
    }

    /// `export TAPESEAL_<PREFIX>ADMIN=…` lines.
    pub(crate) fn env_lines(&self) -> String {
        [
            ("ADMIN", &self.admin),
            ("RECORDER", &self.recorder),
            ("PLAYER", &self.player),
        ]
        .iter()
        .map(|(role, t)| format!("export TAPESEAL_{}{role}={t}\n", self.prefix))
        .collect()
    }
}

/// The reference LKM's data directory, with one imported key pair and Hawk
/// credentials for the server, made with the CLI before the LKM starts.
struct LkmKeys {
    data: std::path::PathBuf,
    keypair_id: String,
    public_key: String,
    hawk_id: String,
    hawk_key: String,
}

impl LkmKeys {
    fn prepare(bin: &Path, dir: &Path) -> Res<Self> {
        let data = dir.join("lkm");
        let data_arg = data.to_str().ok_or("non-UTF-8 path")?;
        // A key pair made elsewhere (here by `tapeseal keygen`), imported as an
        // organisation moving from another LKM would; the PEM file is removed after.
        let keys = dir.join("lkm-import");
        let keys_arg = keys.to_str().ok_or("non-UTF-8 path")?;
        capture(bin, &["keygen", "--out", keys_arg, "--id", "demo-lkm-kek"])?;
        let private = keys.join("demo-lkm-kek.private.pem");
        let keypair_id = uuid()?;
        let imported: serde_json::Value = serde_json::from_str(&capture(
            bin,
            &[
                "lkm",
                "import",
                private.to_str().ok_or("path")?,
                "--id",
                &keypair_id,
                "--data",
                data_arg,
            ],
        )?)?;
        fs::remove_dir_all(&keys)?;
        let credentials: serde_json::Value = serde_json::from_str(&capture(
            bin,
            &[
                "lkm",
                "credentials",
                "add",
                "tapeseal-demo",
                "--data",
                data_arg,
            ],
        )?)?;
        let text = |v: &serde_json::Value, field: &str| -> Res<String> {
            Ok(v[field]
                .as_str()
                .ok_or_else(|| format!("no {field} in {v}"))?
                .to_string())
        };
        Ok(Self {
            public_key: text(&imported, "publicKey")?,
            keypair_id,
            hawk_id: text(&credentials, "id")?,
            hawk_key: text(&credentials, "authKey")?,
            data,
        })
    }

    fn serve_args(&self, listen: &str, origins: &[String]) -> Vec<String> {
        let mut args = vec![
            "lkm".into(),
            "serve".into(),
            "--data".into(),
            self.data.display().to_string(),
            "--listen".into(),
            listen.into(),
            "--plain-http".into(),
        ];
        for origin in origins {
            args.push("--allow-origin".into());
            args.push(origin.clone());
        }
        args
    }

    fn admin_token_file(&self) -> std::path::PathBuf {
        self.data.join("admin.token")
    }

    /// Puts the organisation in LKM mode (pinning the LKM's certificate) and
    /// registers the key pair, which the server proves with a sample decrypt.
    fn connect(&self, addr: &str, admin: &str, lkm: &Service) -> Res<()> {
        let settings = serde_json::json!({
            "decrypt_url": format!("{}/key-management/v1/decrypt", lkm.url),
            "hawk_id": self.hawk_id,
            "hawk_key": self.hawk_key,
        });
        let json = [("Content-Type", "application/json")];
        let (status, reply) = http(
            addr,
            "PUT",
            "/v1/lkm",
            admin,
            &json,
            settings.to_string().as_bytes(),
        )?;
        if status != 200 {
            return Err(
                format!("PUT /v1/lkm: {status} {}", String::from_utf8_lossy(&reply)).into(),
            );
        }
        let keypair = serde_json::json!({"id": self.keypair_id, "public_key": self.public_key});
        let (status, reply) = http(
            addr,
            "POST",
            "/v1/lkm/keypairs",
            admin,
            &json,
            keypair.to_string().as_bytes(),
        )?;
        if status != 201 {
            return Err(format!(
                "POST /v1/lkm/keypairs: {status} {}",
                String::from_utf8_lossy(&reply)
            )
            .into());
        }
        Ok(())
    }
}

/// A random UUID (version 4), the form LKM key pair ids take.
fn uuid() -> Res<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| format!("no random source: {e}"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// (file name, kind, content type, bytes) of each sample `tapeseal samples` wrote.
pub(crate) type Sample = (String, String, String, Vec<u8>);

/// The samples `tapeseal samples --out dir` wrote, from its `listing`.
pub(crate) fn read_samples(listing: &str, dir: &Path) -> Res<Vec<Sample>> {
    let mut samples = Vec::new();
    for line in listing.lines() {
        let mut parts = line.split_whitespace();
        let (Some(file), Some(kind), Some(content_type)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let body = fs::read(dir.join(file))?;
        samples.push((file.into(), kind.into(), content_type.into(), body));
    }
    Ok(samples)
}

/// Ingests every sample for `org` through the server at `ingest` and plays each
/// back through the one at `playback` (the same server, or another instance of a
/// cluster), comparing the bytes; `played` heads that column. Returns the first id.
pub(crate) fn play_samples(
    org: &DemoOrg,
    samples: &[Sample],
    ingest: &str,
    playback: &str,
    played: &str,
) -> Res<String> {
    println!(
        "\norganisation {}:\n{:<10} {:<6} {:>8}  {:<38} {played}",
        org.name, "sample", "kind", "bytes", "recording id"
    );
    let mut first_id = String::new();
    for (file, kind, content_type, body) in samples {
        let (status, reply) = http(
            ingest,
            "POST",
            &format!("/v1/recordings?kind={kind}&conversation_id=demo-conversation-1"),
            &org.recorder,
            &[("Content-Type", content_type)],
            body,
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
            playback,
            "GET",
            &format!("/v1/recordings/{id}/content"),
            &org.player,
            &[],
            &[],
        )?;
        if status != 200 || played != *body {
            return Err(format!("{file}: playback returned {status} and different bytes").into());
        }
        println!("{file:<10} {kind:<6} {:>8}  {id:<38} identical", body.len());
        if first_id.is_empty() {
            first_id = id;
        }
    }
    Ok(first_id)
}

/// Runs `tapeseal args…`; returns its standard output, or fails with its error output.
pub(crate) fn capture(bin: &Path, args: &[&str]) -> Res<String> {
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

/// Writes `text` to `path`, which is created readable by its owner only.
pub(crate) fn write_private(path: &Path, text: &str) -> Res<()> {
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
