//! The real GnuPG these tests check against: a home of its own per test, keys
//! generated and exported by `gpg`, messages decrypted by it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// A throw-away GnuPG home (mode 0700) with its own agent, killed on drop.
pub(crate) struct Gpg {
    home: TempDir,
}

impl Gpg {
    pub(crate) fn new() -> Self {
        match Command::new("gpg").arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "`gpg --version` failed ({}): install Debian's GnuPG (`apt-get install gnupg`) \
                 to run these tests",
                out.status
            ),
            Err(e) => panic!(
                "cannot run `gpg` ({e}): install Debian's GnuPG (`apt-get install gnupg`) \
                 to run these tests"
            ),
        }
        let home = tempfile::Builder::new().prefix("gpg").tempdir().unwrap();
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        Self { home }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.home.path())
            .env_remove("GPG_AGENT_INFO")
            .args(["--batch", "--no-tty", "--pinentry-mode", "loopback"])
            .args(["--passphrase", ""]);
        cmd
    }

    /// Runs gpg with `args`, asserts success, returns stdout.
    pub(crate) fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run_raw(args);
        assert!(
            out.status.success(),
            "gpg {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    pub(crate) fn run_raw(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `gpg --quick-gen-key UID ALGO USAGE EXPIRE`; returns the new primary fingerprint.
    pub(crate) fn gen_key(&self, uid: &str, algo: &str, usage: &str, expire: &str) -> String {
        self.run(&["--quick-gen-key", uid, algo, usage, expire]);
        self.primary_fingerprint(uid)
    }

    pub(crate) fn add_key(&self, fpr: &str, algo: &str, usage: &str, expire: &str) {
        self.run(&["--quick-add-key", fpr, algo, usage, expire]);
    }

    /// `gpg --with-colons --fingerprint` output for `who`.
    pub(crate) fn colons(&self, who: &str) -> String {
        String::from_utf8(self.run(&["--with-colons", "--fingerprint", "--fingerprint", who]))
            .unwrap()
    }

    /// The `fpr` line following the `pub` line.
    pub(crate) fn primary_fingerprint(&self, who: &str) -> String {
        let colons = self.colons(who);
        let mut lines = colons.lines().skip_while(|l| !l.starts_with("pub:"));
        lines.next().expect("no pub line");
        let fpr = lines.next().expect("no fpr line");
        assert!(fpr.starts_with("fpr:"), "{colons}");
        fpr.split(':').nth(9).unwrap().to_owned()
    }

    /// The key ids (field 5) of the `sub` lines with the `e` capability (field 12).
    pub(crate) fn encryption_subkey_ids(&self, who: &str) -> Vec<String> {
        self.colons(who)
            .lines()
            .filter(|l| l.starts_with("sub:"))
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| f[11].contains('e'))
            .map(|f| f[4].to_owned())
            .collect()
    }

    pub(crate) fn export(&self, who: &str, armor: bool) -> Vec<u8> {
        let mut args = vec!["--export"];
        if armor {
            args.push("--armor");
        }
        args.push(who);
        let out = self.run(&args);
        assert!(!out.is_empty(), "empty export of {who}");
        out
    }

    /// Decrypts the file at `path` with gpg, returns the plaintext.
    pub(crate) fn decrypt(&self, path: &Path) -> Vec<u8> {
        let out = self.path("decrypted");
        let _ = std::fs::remove_file(&out);
        self.run(&[
            "--output",
            out.to_str().unwrap(),
            "--decrypt",
            path.to_str().unwrap(),
        ]);
        std::fs::read(&out).unwrap()
    }

    /// `gpg --list-packets` (with the secret key present, so it descends into the
    /// encrypted packet and shows the literal data packet too).
    pub(crate) fn list_packets(&self, path: &Path) -> String {
        let out = self.run_raw(&["--list-packets", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "gpg --list-packets failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
