//! Export to OpenPGP: files encrypted to a key made by real GnuPG, which decrypts
//! them, through the `tapeseal export` CLI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::{ingest, manifest, sha256_hex};
use crate::support::{BIN, Server, expect_json, fixture, noise, read};

/// A GnuPG home with one generated key pair; its public key exported to a file.
struct Gpg {
    home: tempfile::TempDir,
    public_key: PathBuf,
}

impl Gpg {
    fn new(dir: &Path) -> Self {
        let home = tempfile::tempdir().expect("GNUPGHOME");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700))
                .expect("chmod");
        }
        let gpg = Self {
            home,
            public_key: dir.join("recipient.gpg"),
        };
        gpg.run(&[
            "--quick-gen-key",
            "Export Recipient <export@example.com>",
            "future-default",
            "default",
            "never",
        ]);
        let exported = gpg.run(&["--export", "export@example.com"]);
        std::fs::write(&gpg.public_key, exported).expect("public key");
        gpg
    }

    fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .env("GNUPGHOME", self.home.path())
            .output()
            .expect("gpg (install Debian's gnupg)");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn decrypt(&self, file: &Path) -> Vec<u8> {
        self.run(&["--decrypt", file.to_str().expect("utf-8 path")])
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", self.home.path())
            .status();
    }
}

#[test]
fn the_cli_exports_openpgp_files_that_gnupg_decrypts() {
    let (dir, data, acme) = fixture();
    let server = Server::start(&data, "");
    let api = server.api();
    let gpg = Gpg::new(dir.path());
    let mut originals = BTreeMap::new();
    for (i, kind) in ["call", "email", "chat"].iter().enumerate() {
        let body = noise(50_000 * i + 1, i as u64 + 3);
        let id = ingest(
            &api,
            &acme,
            kind,
            "application/octet-stream",
            Some("pgp"),
            &body,
        );
        originals.insert(id, body);
    }
    let big = noise(3 << 20, 99);
    let big_id = ingest(&api, &acme, "call", "audio/wav", Some("pgp"), &big);
    originals.insert(big_id, big);

    let out = Command::new(BIN)
        .args([
            "export",
            "start",
            "--server",
            &server.url,
            "--directory",
            "pgp",
        ])
        .arg("--openpgp-recipient")
        .arg(&gpg.public_key)
        .args(["--kind", "call", "--kind", "email", "--kind", "chat"])
        .args(["--from", "2000-01-01", "--parallel", "2"])
        .env("TAPESEAL_TOKEN", &acme.admin)
        .output()
        .expect("tapeseal export");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tapeseal export: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("done: 4 of 4 recordings exported"),
        "{stdout}"
    );
    let fingerprint = String::from_utf8_lossy(&gpg.run(&["--with-colons", "--fingerprint"]))
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .and_then(|l| l.split(':').nth(9))
        .expect("fingerprint")
        .to_string();
    assert!(stdout.contains(&fingerprint), "{stdout}");

    let job_id = stdout
        .split_whitespace()
        .find(|w| w.starts_with("job-"))
        .expect("job id");
    let job = expect_json(api.get(&acme.admin, &format!("/v1/jobs/{job_id}")), 200);
    let root = data.join("exports");
    let m = manifest(&root, &job);
    assert_eq!(m["openpgp_recipient"], fingerprint.as_str());
    for entry in m["files"].as_array().expect("files") {
        let id = entry["recording_id"].as_str().expect("id");
        let path = root.join(entry["path"].as_str().expect("path"));
        assert!(
            path.to_string_lossy().ends_with(".pgp"),
            "{}",
            path.display()
        );
        let sealed = read(&path);
        assert_eq!(entry["file_sha256"], sha256_hex(&sealed));
        assert_ne!(entry["file_sha256"], entry["plaintext_sha256"]);
        let plain = gpg.decrypt(&path);
        assert_eq!(plain, originals[id], "GnuPG's plaintext of {id}");
        assert_eq!(entry["plaintext_sha256"], sha256_hex(&plain));
        let metadata: Value = serde_json::from_slice(&read(
            &root.join(entry["metadata_path"].as_str().expect("metadata")),
        ))
        .expect("metadata");
        assert_eq!(metadata["encryption"], "openpgp");
        assert_eq!(metadata["openpgp_recipient"], fingerprint.as_str());
    }

    // A file that is not a public key is refused before any job exists.
    let junk = dir.path().join("junk.asc");
    std::fs::write(&junk, "not a key").expect("junk");
    let out = Command::new(BIN)
        .args([
            "export",
            "start",
            "--server",
            &server.url,
            "--directory",
            "x",
        ])
        .arg("--openpgp-recipient")
        .arg(&junk)
        .env("TAPESEAL_TOKEN", &acme.admin)
        .output()
        .expect("tapeseal export");
    assert_eq!(out.status.code(), Some(3));
    let jobs = expect_json(api.get(&acme.admin, "/v1/jobs"), 200);
    assert_eq!(jobs.as_array().map(Vec::len), Some(1));
}
