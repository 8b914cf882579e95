//! The catalogue: versioned migrations that survive restarts, organisations, and API
//! tokens whose secrets are never stored; and the CLI that bootstraps them.

use tapeseal_store::catalogue::{
    AuditEvent, AuditFilter, Catalogue, CatalogueError, Role, TOKEN_PREFIX,
};

#[test]
fn migrations_apply_once_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalogue.sqlite3");
    let catalogue = Catalogue::open(&path).expect("open");
    assert_eq!(catalogue.schema_version().expect("version"), 6);
    let org = catalogue
        .create_org("Acme Contact Centre", "test")
        .expect("org");
    let token = catalogue
        .create_token(&org.name, Role::Player, "web player", "test")
        .expect("token");
    drop(catalogue);

    let reopened = Catalogue::open(&path).expect("reopen");
    assert_eq!(reopened.schema_version().expect("version"), 6);
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
                known: 6
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
    assert_eq!(catalogue.schema_version().expect("version"), 6);
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

#[test]
fn a_kek_named_by_an_unfinished_job_cannot_be_deleted() {
    use tapeseal_store::catalogue::{JobState, KekRecord, KekUsers};
    let dir = tempfile::tempdir().expect("tempdir");
    let catalogue = Catalogue::open(&dir.path().join("catalogue.sqlite3")).expect("open");
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

#[test]
fn lkm_settings_switch_an_organisation_to_lkm_mode_with_an_audit_entry() {
    use tapeseal_store::catalogue::{GrantSettings, LkmSettings};
    let dir = tempfile::tempdir().expect("tempdir");
    let catalogue = Catalogue::open(&dir.path().join("catalogue.sqlite3")).expect("open");
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

#[test]
fn an_export_selects_by_time_kind_and_conversation_and_resumes_where_outcomes_stop() {
    use tapeseal_store::catalogue::{
        ExportItem, ExportOutcome, ExportSelection, ExportedFile, JobState, RecordingRecord,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let catalogue = Catalogue::open(&dir.path().join("catalogue.sqlite3")).expect("open");
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

#[test]
fn concurrent_audit_entries_share_commits_and_are_all_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalogue.sqlite3");
    let catalogue = Catalogue::open(&path).expect("open");
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
    let reopened = Catalogue::open(&path).expect("reopen");
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
