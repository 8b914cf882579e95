//! The `tapeseal` binary end to end on real files: keygen, seal, inspect, open (with
//! the key and with the DEK), rewrap, exit codes, atomic outputs, and a 200 MB file
//! streamed with bounded memory.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use tapeseal_keys::KekPair;

/// A shared compilation cache for every child, filled once in this process so the
/// children measure streaming, not compiling.
fn cache_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("tapeseal-cli-test-cache-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("cache dir");
        let warm = Command::new(env!("CARGO_BIN_EXE_tapeseal"))
            .args(["inspect", "/nonexistent"])
            .env("TAPESEAL_CACHE_DIR", &dir)
            .output()
            .expect("run tapeseal");
        assert_eq!(warm.status.code(), Some(1));
        dir
    })
}

fn tapeseal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tapeseal"))
        .args(args)
        .env("TAPESEAL_CACHE_DIR", cache_dir())
        .output()
        .expect("run tapeseal")
}

fn ok(args: &[&str]) -> String {
    let out = tapeseal(args);
    assert!(
        out.status.success(),
        "tapeseal {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn code(args: &[&str]) -> (i32, String) {
    let out = tapeseal(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn keygen(dir: &Path, id: &str) -> (PathBuf, PathBuf) {
    ok(&["keygen", "--out", p(dir), "--id", id]);
    (
        dir.join(format!("{id}.private.pem")),
        dir.join(format!("{id}.public.pem")),
    )
}

#[test]
fn keygen_seal_inspect_open_rewrap_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (old_private, old_public) = keygen(d, "kek-old");
    let (new_private, new_public) = keygen(d, "kek-new");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&old_private)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "private key readable by others");
    }
    assert!(
        fs::read_to_string(&old_public)
            .expect("pub")
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    let (again, _) = code(&["keygen", "--out", p(d), "--id", "kek-old"]);
    assert_eq!(again, 1, "keygen must not overwrite a key");

    let plain: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let input = d.join("call.wav");
    fs::write(&input, &plain).expect("write");
    let sealed = d.join("call.tapeseal");
    ok(&[
        "seal",
        "--kek",
        p(&old_public),
        "--in",
        p(&input),
        "--out",
        p(&sealed),
        "--media-kind",
        "call",
        "--content-type",
        "audio/wav",
        "--org",
        "org-9",
        "--context",
        "conversation-id=c-1",
        "--wrap",
        "rsa-oaep-sha1",
    ]);
    let text = ok(&["inspect", p(&sealed)]);
    for needle in [
        "org-9",
        "call.wav",
        "audio/wav",
        "conversation-id=c-1",
        "kek-old",
        "rsa-oaep-sha1",
        "300000 bytes of plaintext",
    ] {
        assert!(
            text.contains(needle),
            "inspect output lacks {needle}:\n{text}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", "--json", p(&sealed)])).expect("json");
    assert_eq!(json["mediaKind"], "call");
    assert_eq!(json["plaintextLength"], 300_000);
    assert_eq!(json["stanzas"][0]["kekId"], "kek-old");

    // Flushed to disk before exit with --sync; the later opens leave it to the
    // kernel.
    let opened = d.join("opened.wav");
    ok(&[
        "open",
        "--sync",
        "--key",
        p(&old_private),
        "--in",
        p(&sealed),
        "--out",
        p(&opened),
    ]);
    assert_eq!(fs::read(&opened).expect("opened"), plain);

    // The DEK path, as a Local Key Manager's decrypt endpoint would return it.
    let pair = KekPair::from_pem_or_der(&fs::read(&old_private).expect("key")).expect("pair");
    let wrapped = B64
        .decode(json["stanzas"][0]["wrappedDek"].as_str().expect("b64"))
        .expect("b64");
    let dek = pair
        .unwrap(&wrapped, tapeseal_core::WrapAlgorithm::RsaOaepSha1)
        .expect("unwrap");
    let by_dek = d.join("by-dek.wav");
    ok(&[
        "open",
        "--dek",
        &B64.encode(dek.as_bytes()),
        "--in",
        p(&sealed),
        "--out",
        p(&by_dek),
    ]);
    assert_eq!(fs::read(&by_dek).expect("opened"), plain);

    // The DEK from a file, from standard input and from the environment, without
    // the warning that a DEK on the command line gets.
    let dek_b64 = B64.encode(dek.as_bytes());
    let dek_file = d.join("dek.b64");
    fs::write(&dek_file, format!("{dek_b64}\n")).expect("dek file");
    for (how, out) in [
        ("file", "by-dek-file.wav"),
        ("stdin", "by-dek-stdin.wav"),
        ("env", "by-dek-env.wav"),
    ] {
        let target = d.join(out);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tapeseal"));
        cmd.args(["open", "--in", p(&sealed), "--out", p(&target)])
            .env("TAPESEAL_CACHE_DIR", cache_dir())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        match how {
            "file" => cmd.args(["--dek-file", p(&dek_file)]),
            "stdin" => cmd.args(["--dek-file", "-"]),
            _ => cmd
                .args(["--dek-env", "TAPESEAL_TEST_DEK"])
                .env("TAPESEAL_TEST_DEK", &dek_b64),
        };
        let mut child = cmd.spawn().expect("spawn");
        // Standard input is closed at once unless it carries the DEK.
        if let Some(mut stdin) = child.stdin.take()
            && how == "stdin"
        {
            stdin.write_all(dek_b64.as_bytes()).expect("stdin");
        }
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{how}: {stderr}");
        assert!(!stderr.contains("warning"), "{how}: {stderr}");
        assert_eq!(fs::read(&target).expect("opened"), plain, "{how}");
    }
    let (status, stderr) = code(&[
        "open",
        "--dek",
        &dek_b64,
        "--in",
        p(&sealed),
        "--out",
        p(&d.join("again.wav")),
    ]);
    assert_eq!(status, 0, "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("--dek-file"),
        "{stderr}"
    );

    let moved = d.join("moved.tapeseal");
    ok(&[
        "rewrap",
        "--key",
        p(&old_private),
        "--to",
        p(&new_public),
        "--in",
        p(&sealed),
        "--out",
        p(&moved),
    ]);
    let old_bytes = fs::read(&sealed).expect("old");
    let new_bytes = fs::read(&moved).expect("new");
    let old_len = tapeseal_core::Header::parse(&old_bytes)
        .expect("h")
        .header_len();
    let new_len = tapeseal_core::Header::parse(&new_bytes)
        .expect("h")
        .header_len();
    assert_eq!(
        old_bytes[old_len..],
        new_bytes[new_len..],
        "rewrap touched the payload"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", "--json", p(&moved)])).expect("json");
    assert_eq!(json["stanzas"].as_array().map(Vec::len), Some(1));
    assert_eq!(json["stanzas"][0]["kekId"], "kek-new");
    let reopened = d.join("reopened.wav");
    ok(&[
        "open",
        "--key",
        p(&new_private),
        "--in",
        p(&moved),
        "--out",
        p(&reopened),
    ]);
    assert_eq!(fs::read(&reopened).expect("reopened"), plain);
    let refused = d.join("refused.wav");
    let (status, stderr) = code(&[
        "open",
        "--key",
        p(&old_private),
        "--in",
        p(&moved),
        "--out",
        p(&refused),
    ]);
    assert_eq!(status, 4, "{stderr}");
    assert!(
        stderr.contains("kek-new"),
        "the error should name the KEKs it is wrapped for: {stderr}"
    );
    assert!(!refused.exists());

    let both = d.join("both.tapeseal");
    ok(&[
        "rewrap",
        "--add",
        "--key",
        p(&new_private),
        "--to",
        p(&old_public),
        "--in",
        p(&moved),
        "--out",
        p(&both),
    ]);
    for key in [&old_private, &new_private] {
        let out = d.join("both.wav");
        ok(&["open", "--key", p(key), "--in", p(&both), "--out", p(&out)]);
        assert_eq!(fs::read(&out).expect("out"), plain);
        fs::remove_file(&out).expect("rm");
    }
}

#[test]
fn bad_input_gets_a_clear_error_an_exit_code_and_no_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (private, public) = keygen(d, "kek-x");
    let input = d.join("in.txt");
    fs::write(&input, vec![7u8; 200_000]).expect("write");
    let sealed = d.join("in.tapeseal");
    ok(&[
        "seal",
        "--kek",
        p(&public),
        "--in",
        p(&input),
        "--out",
        p(&sealed),
    ]);

    // Tampered payload: exit 4, and the output file never appears.
    let mut bytes = fs::read(&sealed).expect("read");
    let at = bytes.len() - 100;
    bytes[at] ^= 1;
    let tampered = d.join("tampered.tapeseal");
    fs::write(&tampered, &bytes).expect("write");
    let out = d.join("out.txt");
    let (status, stderr) = code(&[
        "open",
        "--key",
        p(&private),
        "--in",
        p(&tampered),
        "--out",
        p(&out),
    ]);
    assert_eq!(status, 4, "{stderr}");
    assert!(stderr.contains("could not decrypt"), "{stderr}");
    assert!(!out.exists(), "a failed open left an output file");
    let leftovers: Vec<_> = fs::read_dir(d)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tapeseal-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");

    // Truncated: exit 4.
    let truncated = d.join("truncated.tapeseal");
    fs::write(&truncated, &fs::read(&sealed).expect("read")[..150_000]).expect("write");
    assert_eq!(
        code(&[
            "open",
            "--key",
            p(&private),
            "--in",
            p(&truncated),
            "--out",
            p(&out)
        ])
        .0,
        4
    );

    // Not an envelope: exit 3 with a reason; a missing file: exit 1; bad usage: exit 2.
    let (status, stderr) = code(&["inspect", p(&input)]);
    assert_eq!(status, 3, "{stderr}");
    assert!(stderr.contains("not a tapeseal envelope"), "{stderr}");
    assert_eq!(code(&["inspect", p(&d.join("missing"))]).0, 1);
    assert_eq!(code(&["open", "--in", p(&sealed), "--out", p(&out)]).0, 2);
    assert_eq!(code(&["seal", "--kek", p(&public)]).0, 2);
    let (status, stderr) = code(&[
        "open",
        "--dek",
        "AAAA",
        "--in",
        p(&sealed),
        "--out",
        p(&out),
    ]);
    assert_eq!(status, 3, "{stderr}");
    let (status, stderr) = code(&[
        "seal",
        "--kek",
        p(&input),
        "--in",
        p(&input),
        "--out",
        p(&out),
    ]);
    assert_eq!(status, 3, "{stderr}");
    assert!(stderr.contains("KEK") || stderr.contains("key"), "{stderr}");
    let help = ok(&["--help"]);
    assert!(help.contains("Exit codes"), "{help}");
}

fn sha256_file(path: &Path) -> Vec<u8> {
    let mut file = fs::File::open(path).expect("open");
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher.finalize().to_vec()
}

#[test]
fn a_200_mb_recording_streams_through_in_bounded_memory() {
    const SIZE: usize = 200_000_000;
    const MAX_RSS_BYTES: i64 = 128 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (private, public) = keygen(d, "kek-big");
    let input = d.join("big.raw");
    {
        let mut file = std::io::BufWriter::new(fs::File::create(&input).expect("create"));
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..SIZE / block.len() {
            for b in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
            }
            file.write_all(&block).expect("write");
        }
        file.write_all(&block[..SIZE % block.len()]).expect("write");
    }
    let sealed = d.join("big.tapeseal");
    let opened = d.join("big.opened");
    ok(&[
        "seal",
        "--kek",
        p(&public),
        "--in",
        p(&input),
        "--out",
        p(&sealed),
        "--media-kind",
        "call",
    ]);
    ok(&[
        "open",
        "--key",
        p(&private),
        "--in",
        p(&sealed),
        "--out",
        p(&opened),
    ]);
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("rusage");
    // ru_maxrss is in KiB on Linux: the largest resident set of any child so far.
    let peak = usage.max_rss() * 1024;
    assert!(
        peak < MAX_RSS_BYTES,
        "a tapeseal process peaked at {} MiB",
        peak >> 20
    );
    eprintln!("peak RSS of the tapeseal processes: {} MiB", peak >> 20);
    assert_eq!(fs::metadata(&opened).expect("meta").len() as usize, SIZE);
    assert_eq!(sha256_file(&opened), sha256_file(&input));
}
