//! `tapeseal org` and `tapeseal token`: the admin commands on a real data directory.

use std::process::Command;

use tapeseal_store::catalogue::{Catalogue, Role};

#[test]
fn an_operator_bootstraps_an_organisation_and_tokens_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tapeseal"))
            .args(args)
            .env("TAPESEAL_CACHE_DIR", "")
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let d = data.to_str().expect("utf-8");
    let (code, out, err) = run(&["org", "create", "--data", d, "Demo Org"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Demo Org"), "{out}");
    assert_eq!(run(&["org", "create", "--data", d, "Demo Org"]).0, Some(3));
    let (code, secret, err) = run(&[
        "token", "create", "--data", d, "--org", "Demo Org", "--role", "recorder",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("shown once"), "{err}");
    let secret = secret.trim().to_string();
    let (_, list, _) = run(&["org", "list", "--data", d]);
    assert!(list.contains("Demo Org"), "{list}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&data).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the data directory is open to others");
    }
    let catalogue = Catalogue::open(&data.join("catalogue.sqlite3")).expect("open");
    let who = catalogue
        .authenticate(&secret)
        .expect("auth")
        .expect("the printed token works");
    assert_eq!(who.role, Role::Recorder);
    drop(catalogue);
    let revoke = [
        "token",
        "revoke",
        "--data",
        d,
        "--org",
        "Demo Org",
        &who.token_id,
    ];
    assert_eq!(run(&revoke).0, Some(0));
    assert_eq!(
        run(&revoke).0,
        Some(3),
        "a revoked token cannot be revoked again"
    );
    assert_eq!(
        run(&[
            "token", "create", "--data", d, "--org", "Nope", "--role", "admin"
        ])
        .0,
        Some(3)
    );
}
