//! The catalogue: versioned migrations that survive restarts, organisations, and API
//! tokens whose secrets are never stored, KEKs, jobs, exports and the audit log.
//!
//! One suite, two databases: every case below `both!` runs against SQLite (a test
//! each) and against a real PostgreSQL (a throwaway cluster on loopback, a fresh
//! database per case), with the same assertions. A few cases look at SQLite's file
//! itself and run there only.

use std::path::PathBuf;

use tapeseal_store::catalogue::{
    AuditEvent, AuditFilter, Catalogue, CatalogueError, KekRecord, Role, TOKEN_PREFIX,
};
use tapeseal_testkit::Postgres;

/// Where a case's catalogue lives; [`Store::open`] opens it (again).
struct Store {
    location: String,
    dir: tempfile::TempDir,
    /// The cluster's data directory, for PostgreSQL.
    cluster: Option<PathBuf>,
}

impl Store {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = dir.path().join("catalogue.sqlite3").display().to_string();
        Self {
            location,
            dir,
            cluster: None,
        }
    }

    fn postgres(cluster: &Postgres, case: &str) -> Self {
        // Database names are at most 63 bytes.
        let name: String = case.chars().take(60).collect();
        Self {
            location: cluster.create_database(&name),
            dir: tempfile::tempdir().expect("tempdir"),
            cluster: Some(cluster.data_dir().to_path_buf()),
        }
    }

    fn open(&self) -> Catalogue {
        Catalogue::open_location(&self.location, None).expect("open the catalogue")
    }

    /// Every file the database keeps its data in.
    fn files(&self) -> Vec<PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).expect("dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.is_file() {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        walk(
            self.cluster.as_deref().unwrap_or(self.dir.path()),
            &mut files,
        );
        assert!(!files.is_empty(), "no database files found");
        files
    }
}

/// Declares each case once, as a SQLite test of its own and as part of one
/// PostgreSQL test (which starts one cluster for all of them and stops it after).
macro_rules! both {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                fn $case() {
                    super::$case(&super::Store::sqlite());
                }
            )*
        }

        #[test]
        fn every_case_on_postgres() {
            let dir = tempfile::tempdir().expect("tempdir");
            let cluster = Postgres::start(dir.path());
            $(
                eprintln!("case {}", stringify!($case));
                $case(&Store::postgres(&cluster, stringify!($case)));
            )*
        }
    };
}

both!(
    migrations_apply_once_and_survive_reopening,
    tokens_authenticate_only_while_valid_and_only_their_hash_is_stored,
    a_kek_named_by_an_unfinished_job_cannot_be_deleted,
    lkm_settings_switch_an_organisation_to_lkm_mode_with_an_audit_entry,
    an_export_selects_by_time_kind_and_conversation_and_resumes_where_outcomes_stop,
    concurrent_audit_entries_share_commits_and_are_all_durable,
    instances_rotating_from_the_same_kek_make_one_kek,
    audit_numbers_stay_gap_free_across_instances,
    instances_opening_a_new_catalogue_together_migrate_it_once,
);

#[test]
fn the_postgres_catalogue_speaks_tls_and_verifies_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Postgres::start_with_tls(dir.path());
    let ca = cluster.ca_certificate().expect("a test CA");
    let required = format!("{}?sslmode=require", cluster.url());
    let catalogue = Catalogue::connect_postgres(&required, None, Some(ca)).expect("TLS");
    catalogue.create_org("Acme", "test").expect("usable");
    let encrypted = |cluster: &Postgres| -> u32 {
        cluster
            .psql(
                &cluster.url(),
                "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
                 WHERE ssl AND application_name = 'tapeseal'",
            )
            .trim()
            .parse()
            .expect("a count")
    };
    assert!(
        encrypted(&cluster) >= 1,
        "the catalogue's connections use TLS"
    );
    drop(catalogue);
    // Without sslmode (prefer), TLS is used whenever the server offers it.
    let preferred = Catalogue::connect_postgres(&cluster.url(), None, Some(ca)).expect("prefer");
    assert!(encrypted(&cluster) >= 1, "prefer encrypts too");
    drop(preferred);

    // A server whose certificate chains to another CA, or to none the system
    // knows, is refused, and the error says it is TLS.
    let other = Postgres::start_with_tls(dir.path());
    for ca in [other.ca_certificate(), None] {
        let err = Catalogue::connect_postgres(&required, None, ca).expect_err("refused");
        assert!(err.to_string().contains("TLS"), "{err}");
    }
    // sslmode=require against a server without TLS is refused rather than plain.
    let plain = Postgres::start(dir.path());
    let err = Catalogue::connect_postgres(&format!("{}?sslmode=require", plain.url()), None, None)
        .expect_err("no TLS there");
    assert!(err.to_string().contains("TLS"), "{err}");
}

fn kek(org_id: &str, id: &str) -> KekRecord {
    KekRecord {
        id: id.into(),
        org_id: org_id.into(),
        public_spki: vec![1, 2, 3],
        sealed_private: Some(vec![4, 5, 6]),
        state: "active".into(),
        created_at: 1,
        wrap_algorithm: "rsa-oaep-sha256".into(),
        kms_key_arn: None,
    }
}

fn instances_rotating_from_the_same_kek_make_one_kek(store: &Store) {
    use tapeseal_store::catalogue::KekHolder;
    // Three "instances", each with its own catalogue handle (its own connections).
    let instances: Vec<Catalogue> = (0..3).map(|_| store.open()).collect();
    let org = instances[0].create_org("Acme", "test").expect("org");
    let event = AuditEvent::KekCreate {
        kek_id: "kek-first",
        detail: "test",
    };
    assert!(
        instances[0]
            .insert_kek_replacing(&kek(&org.id, "kek-first"), None, None, "test", &event)
            .expect("first")
    );
    for round in 0..5 {
        let current = instances[0]
            .current_kek(&org.id, KekHolder::Managed)
            .expect("current")
            .expect("one");
        let barrier = std::sync::Barrier::new(instances.len() * 2);
        let won: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = instances
                .iter()
                .flat_map(|c| [c, c])
                .enumerate()
                .map(|(i, catalogue)| {
                    let (org, current, barrier) = (&org.id, &current.id, &barrier);
                    scope.spawn(move || {
                        let id = format!("kek-{round}-{i}");
                        let event = AuditEvent::KekCreate {
                            kek_id: &id,
                            detail: "scheduled",
                        };
                        barrier.wait();
                        catalogue
                            .insert_kek_replacing(
                                &kek(org, &id),
                                Some(current),
                                Some(1000 + round),
                                "scheduler",
                                &event,
                            )
                            .expect("rotate")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: {won:?}"
        );
        let keks = instances[1].list_keks(&org.id).expect("list");
        assert_eq!(keks.len(), 2 + round as usize, "one new KEK per round");
        let newest = instances[2]
            .current_kek(&org.id, KekHolder::Managed)
            .expect("current")
            .expect("one");
        assert_eq!(newest.id, keks[0].id, "the newest is current");
        assert_ne!(newest.id, current.id);
        assert_eq!(
            instances[2].schedule(&org.id).expect("schedule").1,
            Some(1000 + round),
            "the winner recorded the scheduled rotation"
        );
    }
    // A rotation from a KEK that is no longer current records nothing.
    let event = AuditEvent::KekCreate {
        kek_id: "kek-late",
        detail: "test",
    };
    assert!(
        !instances[0]
            .insert_kek_replacing(
                &kek(&org.id, "kek-late"),
                Some("kek-first"),
                None,
                "test",
                &event
            )
            .expect("late")
    );
    let created = instances[0]
        .audit_log(
            &org.id,
            &AuditFilter {
                action: Some("kek.create".into()),
                ..AuditFilter::default()
            },
        )
        .expect("audit");
    assert_eq!(created.len(), 6, "one audit entry per KEK made");
}

fn audit_numbers_stay_gap_free_across_instances(store: &Store) {
    let instances: Vec<Catalogue> = (0..3).map(|_| store.open()).collect();
    let org = instances[0].create_org("Acme", "test").expect("org");
    const PER_INSTANCE: usize = 60;
    std::thread::scope(|scope| {
        for (n, catalogue) in instances.iter().enumerate() {
            let org = &org.id;
            scope.spawn(move || {
                let waits: Vec<_> = (0..PER_INSTANCE)
                    .map(|i| {
                        let id = format!("rec-{n}-{i}");
                        catalogue.audit_async(
                            org,
                            "tok-player",
                            &AuditEvent::RecordingDecrypt {
                                recording_id: &id,
                                kek_id: "kek-1",
                                range: 0..10,
                                len: 10,
                            },
                        )
                    })
                    .collect();
                for result in futures::executor::block_on(futures::future::join_all(waits)) {
                    result.expect("durable");
                }
            });
        }
    });
    let log = instances[0]
        .audit_log(
            &org.id,
            &AuditFilter {
                limit: Some(1000),
                ..AuditFilter::default()
            },
        )
        .expect("log");
    assert_eq!(
        log.len(),
        1 + 3 * PER_INSTANCE,
        "org.create and every decrypt"
    );
    let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=log.len() as i64).collect::<Vec<_>>(),
        "unique and gap-free"
    );
}

fn instances_opening_a_new_catalogue_together_migrate_it_once(store: &Store) {
    let opened: Vec<Catalogue> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3).map(|_| scope.spawn(|| store.open())).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for catalogue in &opened {
        assert_eq!(catalogue.schema_version().expect("version"), 7);
    }
    opened[0].create_org("Acme", "test").expect("usable");
    assert_eq!(opened[2].list_orgs().expect("orgs").len(), 1);
}

fn migrations_apply_once_and_survive_reopening(store: &Store) {
    let catalogue = store.open();
    assert_eq!(catalogue.schema_version().expect("version"), 7);
    let org = catalogue
        .create_org("Acme Contact Centre", "test")
        .expect("org");
    let token = catalogue
        .create_token(&org.name, Role::Player, "web player", "test")
        .expect("token");
    drop(catalogue);

    let reopened = store.open();
    assert_eq!(reopened.schema_version().expect("version"), 7);
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
                known: 7
            }
        ),
        "{err}"
    );
}

fn tokens_authenticate_only_while_valid_and_only_their_hash_is_stored(store: &Store) {
    let catalogue = store.open();
    let a = catalogue.create_org("org-a name", "test").expect("org");
    let b = catalogue.create_org("org-b name", "test").expect("org");
    assert!(matches!(
        catalogue.create_org("org-a name", "test"),
        Err(CatalogueError::Exists(_))
    ));
    assert!(matches!(
        catalogue.create_org("  ", "test"),
        Err(CatalogueError::Invalid(_))
    ));
    assert!(matches!(
        catalogue.create_token("nobody", Role::Admin, "", "test"),
        Err(CatalogueError::NoSuchOrg(_))
    ));

    let admin = catalogue
        .create_token(&a.id, Role::Admin, "", "test")
        .expect("token");
    let recorder = catalogue
        .create_token(&b.id, Role::Recorder, "", "test")
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
    // The last character changed (to another one: a secret may end in 'A' already).
    let mut wrong = admin.secret.to_string();
    let last = wrong.pop();
    wrong.push(if last == Some('A') { 'B' } else { 'A' });
    for bad in [wrong.as_str(), "", "Bearer x", "tsk_"] {
        assert_eq!(catalogue.authenticate(bad).expect("auth"), None, "{bad}");
    }
    // Revoking needs the right organisation, and takes effect at once.
    // One validation for the CLI and the API: labels over 200 bytes are refused.
    assert!(matches!(
        catalogue.create_token(&a.id, Role::Admin, &"x".repeat(201), "test"),
        Err(CatalogueError::Invalid(_))
    ));
    assert!(
        !catalogue
            .revoke_token(&b.id, &admin.id, "test")
            .expect("revoke")
    );
    assert!(
        catalogue
            .revoke_token(&a.id, &admin.id, "test")
            .expect("revoke")
    );
    assert_eq!(catalogue.authenticate(&admin.secret).expect("auth"), None);
    assert!(
        !catalogue
            .revoke_token(&a.id, &admin.id, "test")
            .expect("again")
    );
    drop(catalogue);

    for file in store.files() {
        let bytes = std::fs::read(file).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(recorder.secret.as_str()),
            "a token secret was stored"
        );
    }
}

#[test]
fn migration_2_numbers_existing_audit_entries_per_organisation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalogue.sqlite3");
    // A catalogue as version 1 left it: one audit log numbered across organisations.
    let v1 = rusqlite::Connection::open(&path).expect("db");
    v1.execute_batch(include_str!("../src/catalogue/schema.sql"))
        .expect("schema 1");
    v1.execute_batch(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL);
         INSERT INTO schema_migrations VALUES (1, 0);
         INSERT INTO audit_log (at, org_id, actor, action) VALUES
             (1, 'org-a', 'x', 'a1'), (2, 'org-b', 'x', 'b1'), (3, 'org-a', 'x', 'a2'),
             (4, 'org-b', 'x', 'b2'), (5, 'org-a', 'x', 'a3');",
    )
    .expect("v1 rows");
    drop(v1);

    let catalogue = Catalogue::open(&path).expect("migrate");
    assert_eq!(catalogue.schema_version().expect("version"), 7);
    let seqs = |org: &str| -> Vec<(i64, String)> {
        catalogue
            .audit_log(org, &AuditFilter::default())
            .expect("audit")
            .into_iter()
            .map(|e| (e.seq, e.action))
            .collect()
    };
    let own = |pairs: &[(i64, &str)]| -> Vec<(i64, String)> {
        pairs.iter().map(|(n, a)| (*n, a.to_string())).collect()
    };
    assert_eq!(seqs("org-a"), own(&[(1, "a1"), (2, "a2"), (3, "a3")]));
    assert_eq!(seqs("org-b"), own(&[(1, "b1"), (2, "b2")]));
    // New entries continue each organisation's own numbering.
    catalogue
        .audit("org-b", "y", &AuditEvent::KekDelete { kek_id: "kek-1" })
        .expect("append");
    assert_eq!(
        seqs("org-b").last().expect("last"),
        &(3, "kek.delete".to_string())
    );
    let after = catalogue
        .audit_log(
            "org-a",
            &AuditFilter {
                after_seq: Some(1),
                ..AuditFilter::default()
            },
        )
        .expect("page");
    assert_eq!(after.len(), 2);
}

fn a_kek_named_by_an_unfinished_job_cannot_be_deleted(store: &Store) {
    use tapeseal_store::catalogue::{JobState, KekRecord, KekUsers};
    let catalogue = store.open();
    let org = catalogue.create_org("Acme", "test").expect("org");
    for id in ["kek-old", "kek-new"] {
        let kek = KekRecord {
            id: id.into(),
            org_id: org.id.clone(),
            public_spki: vec![1, 2, 3],
            sealed_private: None,
            state: "active".into(),
            created_at: 0,
            wrap_algorithm: "rsa-oaep-sha256".into(),
            kms_key_arn: None,
        };
        let event = AuditEvent::KekCreate {
            kek_id: id,
            detail: "test",
        };
        catalogue.insert_kek(&kek, "test", &event).expect("kek");
    }
    let params = serde_json::json!({"from_kek_id": "kek-old", "to_kek_id": "kek-new"});
    let event = AuditEvent::RewrapJobCreate {
        from_kek_id: "kek-old",
        to_kek_id: "kek-new",
        total: 0,
    };
    let job = catalogue
        .create_job(
            &org.id,
            "rewrap",
            &params,
            &serde_json::json!({}),
            "test",
            &event,
        )
        .expect("job");
    let users = KekUsers {
        recordings: 0,
        jobs: 1,
    };
    for id in ["kek-old", "kek-new"] {
        assert_eq!(
            catalogue.delete_kek(&org.id, id, "test").expect("check"),
            Err(users),
            "{id} is named by a queued job"
        );
    }
    catalogue
        .update_job(&org.id, &job.id, JobState::Running, &serde_json::json!({}))
        .expect("running");
    assert_eq!(
        catalogue
            .delete_kek(&org.id, "kek-new", "test")
            .expect("check"),
        Err(users)
    );
    catalogue
        .update_job(&org.id, &job.id, JobState::Done, &serde_json::json!({}))
        .expect("done");
    assert_eq!(
        catalogue
            .delete_kek(&org.id, "kek-old", "test")
            .expect("delete"),
        Ok(())
    );
    assert!(matches!(
        catalogue.delete_kek(&org.id, "kek-old", "test"),
        Err(CatalogueError::NoSuchKek)
    ));
}

fn lkm_settings_switch_an_organisation_to_lkm_mode_with_an_audit_entry(store: &Store) {
    use tapeseal_store::catalogue::{GrantSettings, LkmSettings};
    let catalogue = store.open();
    let org = catalogue.create_org("Acme", "test").expect("org");
    assert_eq!(org.key_mode, "managed");
    assert!(catalogue.lkm_settings(&org.id).expect("none").is_none());
    assert!(!catalogue.has_sealed_keys().expect("sealed"));
    let mut settings = LkmSettings {
        org_id: org.id.clone(),
        decrypt_url: "https://lkm.example/key-management/v1/decrypt".into(),
        hawk_id: "tapeseal".into(),
        sealed_hawk_key: vec![7; 40],
        ca_pem: None,
        fingerprint: Some("ab".repeat(32)),
        timeout_ms: 5000,
        updated_at: 0,
        grants: GrantSettings {
            browser_url: Some("https://lkm.example/key-management/v1/browser-decrypt".into()),
            sealed_key: Some(vec![9; 48]),
            key_id: Some("k1".into()),
            registered_at: None,
            error: None,
        },
    };
    let first = catalogue.set_lkm_settings(&settings, "admin").expect("set");
    settings.timeout_ms = 2000;
    let second = catalogue
        .set_lkm_settings(&settings, "admin")
        .expect("update");
    assert!(second > first, "each change is a new version");
    let stored = catalogue.lkm_settings(&org.id).expect("get").expect("some");
    assert_eq!((stored.timeout_ms, stored.updated_at), (2000, second));
    assert_eq!(catalogue.find_org(&org.id).expect("org").key_mode, "lkm");
    // The sealed Hawk key counts as sealed under the master key.
    assert!(catalogue.has_sealed_keys().expect("sealed"));
    let actions: Vec<String> = catalogue
        .audit_log(&org.id, &AuditFilter::default())
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "lkm.configure").count(), 2);
    assert_eq!(stored.grants, settings.grants);
    // A refusal keeps grants off and says why; a registration of a key that is no
    // longer the organisation's changes nothing; the current key's is audited.
    catalogue
        .set_lkm_grants_registered(&org.id, "k1", Err("404 from the LKM"), "admin")
        .expect("refused");
    let stored = catalogue.lkm_settings(&org.id).expect("get").expect("some");
    assert_eq!(stored.grants.error.as_deref(), Some("404 from the LKM"));
    assert_eq!(stored.grants.registered_at, None);
    catalogue
        .set_lkm_grants_registered(&org.id, "k0", Ok(()), "admin")
        .expect("stale");
    let stored = catalogue.lkm_settings(&org.id).expect("get").expect("some");
    assert_eq!(stored.grants.registered_at, None);
    catalogue
        .set_lkm_grants_registered(&org.id, "k1", Ok(()), "admin")
        .expect("registered");
    let stored = catalogue.lkm_settings(&org.id).expect("get").expect("some");
    assert!(stored.grants.registered_at.is_some());
    assert_eq!(stored.grants.error, None);
    let grant_keys = catalogue
        .audit_log(&org.id, &AuditFilter::default())
        .expect("audit")
        .into_iter()
        .filter(|e| e.action == "lkm.grant_key")
        .count();
    assert_eq!(grant_keys, 1);
    settings.org_id = "org-missing".into();
    assert!(matches!(
        catalogue.set_lkm_settings(&settings, "admin"),
        Err(CatalogueError::NoSuchOrg(_))
    ));
}

fn an_export_selects_by_time_kind_and_conversation_and_resumes_where_outcomes_stop(store: &Store) {
    use tapeseal_store::catalogue::{
        ExportItem, ExportOutcome, ExportSelection, ExportedFile, JobState, RecordingRecord,
    };
    let catalogue = store.open();
    let org = catalogue.create_org("Acme", "test").expect("org");
    let other = catalogue.create_org("Other", "test").expect("org");
    let record = |org_id: &str, n: i64, kind: &str, conversation: Option<&str>| RecordingRecord {
        id: format!("rec-{n:02}"),
        org_id: org_id.to_string(),
        kek_id: None,
        media_kind: kind.into(),
        content_type: "audio/wav".into(),
        conversation_id: conversation.map(str::to_string),
        plaintext_len: 10 * n as u64,
        stored_len: 100,
        object_path: format!("orgs/{org_id}/rec-{n:02}.tseal"),
        created_at: n * 1000,
    };
    for n in 0..10 {
        let kind = if n % 2 == 0 { "call" } else { "email" };
        let conversation = if n < 5 { Some("c1") } else { None };
        catalogue
            .insert_recording(&record(&org.id, n, kind, conversation), "test")
            .expect("recording");
    }
    catalogue
        .insert_recording(&record(&other.id, 50, "call", Some("c1")), "test")
        .expect("another organisation's");
    let ids = |select: &ExportSelection, job: &str| -> Vec<String> {
        catalogue
            .pending_exports(&org.id, job, select, None, 1000)
            .expect("pending")
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    let all = ExportSelection::default();
    assert_eq!(ids(&all, "job-x").len(), 10);
    let window = ExportSelection {
        from_ms: Some(2000),
        to_ms: Some(6000),
        media_kinds: vec!["call".into()],
        ..ExportSelection::default()
    };
    assert_eq!(ids(&window, "job-x"), ["rec-02", "rec-04"]);
    let conversation = ExportSelection {
        conversation_ids: vec!["c1".into()],
        recording_ids: vec!["rec-01".into(), "rec-03".into(), "rec-07".into()],
        ..ExportSelection::default()
    };
    assert_eq!(ids(&conversation, "job-x"), ["rec-01", "rec-03"]);
    let as_of = ExportSelection {
        as_of_ms: Some(3000),
        ..ExportSelection::default()
    };
    assert_eq!(
        catalogue
            .count_export_selection(&org.id, &as_of)
            .expect("count"),
        (4, 60)
    );

    let job = catalogue
        .create_job(
            &org.id,
            "export",
            &serde_json::json!({}),
            &serde_json::json!({}),
            "test",
            &AuditEvent::ExportJobCreate {
                destination: "test",
                total: 10,
            },
        )
        .expect("job");
    let file = ExportedFile {
        path: "p".into(),
        metadata_path: "m".into(),
        bytes: 7,
        plaintext_len: 20,
        plaintext_sha256: "00".into(),
        file_sha256: "11".into(),
        kek_id: "kek-1".into(),
    };
    let outcomes = [
        ("rec-02", ExportOutcome::Done(file.clone())),
        ("rec-05", ExportOutcome::Failed("refused".into())),
    ];
    for (id, outcome) in outcomes {
        let item = ExportItem {
            recording_id: id.into(),
            outcome,
        };
        catalogue
            .record_export_item(
                &org.id,
                &job.id,
                &item,
                &serde_json::json!({}),
                "test",
                None,
            )
            .expect("outcome");
    }
    let pending = ids(&all, &job.id);
    assert_eq!(pending.len(), 8);
    assert!(!pending.iter().any(|id| id == "rec-02" || id == "rec-05"));
    let totals = catalogue.export_totals(&job.id).expect("totals");
    assert_eq!(
        (totals.exported, totals.failed, totals.file_bytes),
        (1, 1, 7)
    );
    assert_eq!(catalogue.forget_failed_exports(&job.id).expect("forget"), 1);
    assert_eq!(ids(&all, &job.id).len(), 9);
    let items = catalogue.export_items(&job.id, None, 10).expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].outcome, ExportOutcome::Done(file));

    // A cancelled job stays cancelled whatever a worker saves, until queued again.
    let cancel = AuditEvent::JobCancel { job_id: &job.id };
    assert!(
        catalogue
            .transition_job(
                &org.id,
                &job.id,
                &[JobState::Queued],
                JobState::Cancelled,
                "t",
                &cancel
            )
            .expect("cancel")
    );
    catalogue
        .update_job(&org.id, &job.id, JobState::Running, &serde_json::json!({}))
        .expect("save");
    let state = |c: &Catalogue| c.job(&org.id, &job.id).expect("job").expect("exists").state;
    assert_eq!(state(&catalogue), JobState::Cancelled);
    assert!(
        !catalogue
            .transition_job(
                &org.id,
                &job.id,
                &[JobState::Queued],
                JobState::Cancelled,
                "t",
                &cancel
            )
            .expect("second cancel")
    );
    catalogue
        .update_job(&org.id, &job.id, JobState::Queued, &serde_json::json!({}))
        .expect("queue again");
    assert_eq!(state(&catalogue), JobState::Queued);
}

fn concurrent_audit_entries_share_commits_and_are_all_durable(store: &Store) {
    let catalogue = store.open();
    let org = catalogue.create_org("Acme", "test").expect("org");
    let before = catalogue.audit_commits();
    const ENTRIES: usize = 200;
    let ids: Vec<String> = (0..ENTRIES).map(|i| format!("rec-{i}")).collect();
    // Every entry is queued before any is awaited, as concurrent requests do.
    let waits = futures::future::join_all(ids.iter().map(|id| {
        catalogue.audit_async(
            &org.id,
            "tok-player",
            &AuditEvent::RecordingDecrypt {
                recording_id: id,
                kek_id: "kek-1",
                range: 0..10,
                len: 10,
            },
        )
    }));
    for result in futures::executor::block_on(waits) {
        result.expect("durable");
    }
    let commits = catalogue.audit_commits() - before;
    assert!(
        (1..ENTRIES as u64).contains(&commits),
        "{ENTRIES} concurrent entries took {commits} commits"
    );
    drop(catalogue);

    // All of them are on disk, numbered without gaps.
    let reopened = store.open();
    let log = reopened
        .audit_log(
            &org.id,
            &AuditFilter {
                action: Some("recording.decrypt".into()),
                limit: Some(1000),
                ..AuditFilter::default()
            },
        )
        .expect("log");
    assert_eq!(log.len(), ENTRIES);
    let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
    let first = seqs[0];
    assert_eq!(
        seqs,
        (first..first + ENTRIES as i64).collect::<Vec<_>>(),
        "one sequence, no gaps"
    );
}
