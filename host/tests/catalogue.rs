//! The catalogue: versioned migrations that survive restarts, organisations, and API
//! tokens whose secrets are never stored; and the CLI that bootstraps them.

use std::process::Command;

use tapeseal_host::catalogue::{Catalogue, CatalogueError, Role, TOKEN_PREFIX};

#[test]
fn migrations_apply_once_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalogue.sqlite3");
    let catalogue = Catalogue::open(&path).expect("open");
    assert_eq!(catalogue.schema_version().expect("version"), 1);
    let org = catalogue.create_org("Acme Contact Centre").expect("org");
    let token = catalogue
        .create_token(&org.name, Role::Player, "web player")
        .expect("token");
    drop(catalogue);

    let reopened = Catalogue::open(&path).expect("reopen");
    assert_eq!(reopened.schema_version().expect("version"), 1);
    assert_eq!(reopened.find_org(&org.id).expect("by id"), org);
    assert_eq!(
        reopened
            .find_org("Acme Contact Centre")
            .expect("by name")
            .id,
        org.id
    );
    let who = reopened
        .authenticate(&token.secret)
        .expect("auth")
        .expect("known token");
    assert_eq!(
        (who.org_id.as_str(), who.role),
        (org.id.as_str(), Role::Player)
    );
}

#[test]
fn a_newer_catalogue_is_refused_rather_than_misread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalogue.sqlite3");
    drop(Catalogue::open(&path).expect("open"));
    let conn = rusqlite::Connection::open(&path).expect("sqlite");
    conn.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)",
        [],
    )
    .expect("insert");
    drop(conn);
    let err = Catalogue::open(&path).expect_err("refused");
    assert!(
        matches!(
            err,
            CatalogueError::TooNew {
                found: 99,
                known: 1
            }
        ),
        "{err}"
    );
}

#[test]
fn tokens_authenticate_only_while_valid_and_only_their_hash_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalogue.sqlite3");
    let catalogue = Catalogue::open(&path).expect("open");
    let a = catalogue.create_org("org-a name").expect("org");
    let b = catalogue.create_org("org-b name").expect("org");
    assert!(matches!(
        catalogue.create_org("org-a name"),
        Err(CatalogueError::Exists(_))
    ));
    assert!(matches!(
        catalogue.create_org("  "),
        Err(CatalogueError::Invalid(_))
    ));
    assert!(matches!(
        catalogue.create_token("nobody", Role::Admin, ""),
        Err(CatalogueError::NoSuchOrg(_))
    ));

    let admin = catalogue
        .create_token(&a.id, Role::Admin, "")
        .expect("token");
    let recorder = catalogue
        .create_token(&b.id, Role::Recorder, "")
        .expect("token");
    assert!(admin.secret.starts_with(TOKEN_PREFIX));
    assert_ne!(admin.secret.as_str(), recorder.secret.as_str());
    assert!(
        !format!("{admin:?}").contains(admin.secret.as_str()),
        "the secret shows in Debug"
    );
    assert_eq!(
        catalogue
            .authenticate(&admin.secret)
            .expect("auth")
            .map(|p| p.org_id),
        Some(a.id.clone())
    );
    assert_eq!(
        catalogue
            .authenticate(&recorder.secret)
            .expect("auth")
            .map(|p| p.role),
        Some(Role::Recorder)
    );
    let mut wrong = admin.secret.to_string();
    wrong.pop();
    wrong.push('A');
    for bad in [wrong.as_str(), "", "Bearer x", "tsk_"] {
        assert_eq!(catalogue.authenticate(bad).expect("auth"), None, "{bad}");
    }
    // Revoking needs the right organisation, and takes effect at once.
    assert!(!catalogue.revoke_token(&b.id, &admin.id).expect("revoke"));
    assert!(catalogue.revoke_token(&a.id, &admin.id).expect("revoke"));
    assert_eq!(catalogue.authenticate(&admin.secret).expect("auth"), None);
    assert!(!catalogue.revoke_token(&a.id, &admin.id).expect("again"));
    drop(catalogue);

    for file in std::fs::read_dir(dir.path()).expect("dir") {
        let bytes = std::fs::read(file.expect("entry").path()).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(recorder.secret.as_str()),
            "a token secret was stored"
        );
    }
}

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
