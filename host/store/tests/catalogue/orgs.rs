//! Organisations, their tokens (only the hash stored), the KEK deletion guard and LKM settings.

use tapeseal_store::catalogue::{AuditEvent, AuditFilter, CatalogueError, Role, TOKEN_PREFIX};

use super::Store;

pub(crate) fn tokens_authenticate_only_while_valid_and_only_their_hash_is_stored(store: &Store) {
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

pub(crate) fn a_kek_named_by_an_unfinished_job_cannot_be_deleted(store: &Store) {
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

pub(crate) fn lkm_settings_switch_an_organisation_to_lkm_mode_with_an_audit_entry(store: &Store) {
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
