//! Managed key mode: KEKs generated in the host, private keys stored only sealed under
//! the master key, rotation that keeps old KEKs working, and the deletion guard.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use std::sync::Arc;
use tapeseal_core::{Dek, MediaKind, Recipient, SealParams, WrapAlgorithm};

use tapeseal_keys::{ManagedKeyError, ManagedKeys, MasterKey};
use tapeseal_store::catalogue::{AuditEvent, AuditFilter, Catalogue, RecordingRecord};

fn recording(org: &str, id: &str, kek: &str) -> RecordingRecord {
    RecordingRecord {
        id: id.into(),
        org_id: org.into(),
        kek_id: Some(kek.into()),
        media_kind: "call".into(),
        content_type: "audio/wav".into(),
        conversation_id: None,
        plaintext_len: 5,
        stored_len: 600,
        object_path: format!("{org}/{id}"),
        created_at: 0,
    }
}

#[test]
fn rotation_keeps_old_keks_unwrapping_and_the_guard_protects_referenced_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalogue =
        Arc::new(Catalogue::open(&dir.path().join("catalogue.sqlite3")).expect("catalogue"));
    let master =
        Arc::new(MasterKey::load_or_create(&dir.path().join("master.key"), true).expect("master"));
    let keys = ManagedKeys::new(catalogue.clone(), master.clone());
    let org = catalogue.create_org("Acme", "test").expect("org");
    let other = catalogue.create_org("Other", "test").expect("org");
    let mut rng = ChaCha20Rng::seed_from_u64(11);

    let first = keys.current(&org.id, "test").expect("created on first use");
    assert_eq!(keys.current(&org.id, "test").expect("same").id, first.id);
    let dek = Dek::generate(&mut rng);
    let params = SealParams::new(org.id.clone(), "rec-1", MediaKind::Call, "audio/wav", 0);
    let envelope = tapeseal_core::seal(
        &mut rng,
        &dek,
        &params,
        &[Recipient::new(first.id.clone(), first.public_key.clone())],
        b"hello",
    )
    .expect("seal");
    let header = tapeseal_core::Header::parse(&envelope).expect("header");
    let stanza = &header.stanzas()[0];
    let unwrapped = keys
        .unwrap(&org.id, &first.id, &stanza.wrapped_dek, stanza.algorithm)
        .expect("unwrap");
    assert_eq!(unwrapped.as_bytes(), dek.as_bytes());
    catalogue
        .insert_recording(&recording(&org.id, "rec-1", &first.id), "test")
        .expect("recording");

    let second = keys.rotate(&org.id, "test").expect("rotate");
    assert_ne!(second.id, first.id);
    assert_eq!(
        keys.current(&org.id, "test").expect("current").id,
        second.id,
        "new recordings use the newest KEK"
    );
    let again = keys
        .unwrap(&org.id, &first.id, &stanza.wrapped_dek, stanza.algorithm)
        .expect("old KEK still unwraps");
    assert_eq!(again.as_bytes(), dek.as_bytes());

    // Another organisation can neither use nor delete this organisation's KEK.
    assert!(matches!(
        keys.unwrap(&other.id, &first.id, &stanza.wrapped_dek, stanza.algorithm),
        Err(ManagedKeyError::NoSuchKek(_))
    ));
    assert!(matches!(
        keys.delete(&other.id, &first.id, "test"),
        Err(ManagedKeyError::NoSuchKek(_))
    ));

    let guarded = keys.delete(&org.id, &first.id, "test");
    assert!(
        matches!(guarded, Err(ManagedKeyError::InUse { recordings: 1, .. })),
        "{guarded:?}"
    );
    let err = keys
        .delete(&org.id, &first.id, "test")
        .expect_err("guarded");
    assert!(err.to_string().contains("1 recording"), "{err}");
    // Once the recording moves to the new KEK, the old one can go.
    assert!(
        catalogue
            .set_recording_kek(
                &org.id,
                "rec-1",
                &second.id,
                100,
                "test",
                &AuditEvent::RecordingRewrap {
                    recording_id: "rec-1",
                    to_kek_id: &second.id,
                    from_kek_id: &first.id,
                    job_id: "job-1",
                }
            )
            .expect("move")
    );
    keys.delete(&org.id, &first.id, "test")
        .expect("unreferenced KEK deletes");
    assert!(matches!(
        keys.unwrap(&org.id, &first.id, &stanza.wrapped_dek, stanza.algorithm),
        Err(ManagedKeyError::NoSuchKek(_))
    ));
    let actions: Vec<String> = catalogue
        .audit_log(&org.id, &AuditFilter::default())
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [
            "org.create",
            "kek.create",
            "recording.ingest",
            "kek.create",
            "recording.rewrap",
            "kek.delete"
        ]
    );
}

#[test]
fn private_keys_are_stored_only_sealed_and_only_the_master_key_opens_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("catalogue.sqlite3");
    let catalogue = Arc::new(Catalogue::open(&db).expect("catalogue"));
    let master_path = dir.path().join("master.key");
    let master = Arc::new(MasterKey::load_or_create(&master_path, true).expect("master"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&master_path)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(format!("{master:?}"), "MasterKey([redacted])");
    let org = catalogue.create_org("Acme", "test").expect("org");
    let keys = ManagedKeys::new(catalogue.clone(), master.clone());
    let kek = keys.current(&org.id, "test").expect("kek");
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let dek = Dek::generate(&mut rng);
    let wrapped = kek
        .public_key
        .wrap(&dek, WrapAlgorithm::RsaOaepSha1, &mut rng)
        .expect("wrap");
    assert_eq!(
        keys.unwrap(&org.id, &kek.id, &wrapped, WrapAlgorithm::RsaOaepSha1)
            .expect("unwrap")
            .as_bytes(),
        dek.as_bytes()
    );

    // The same master key file opens it after a restart; another master key does not.
    let reloaded = Arc::new(MasterKey::load_or_create(&master_path, true).expect("reload"));
    assert!(
        ManagedKeys::new(catalogue.clone(), reloaded.clone())
            .unwrap(&org.id, &kek.id, &wrapped, WrapAlgorithm::RsaOaepSha1)
            .is_ok()
    );
    let stranger = Arc::new(MasterKey::from_bytes(&[9u8; 32]).expect("key"));
    assert!(matches!(
        ManagedKeys::new(catalogue.clone(), stranger.clone()).unwrap(
            &org.id,
            &kek.id,
            &wrapped,
            WrapAlgorithm::RsaOaepSha1
        ),
        Err(ManagedKeyError::Unseal)
    ));
    assert!(MasterKey::from_bytes(&[1u8; 31]).is_err());
    assert!(MasterKey::from_base64("not base64!").is_err());

    // Keys are sealed under a master key now: a missing key file is an error, never
    // a new master key that would orphan them.
    std::fs::remove_file(&master_path).expect("remove");
    assert!(catalogue.has_sealed_keys().expect("check"));
    let refused = MasterKey::load_or_create(&master_path, false).expect_err("refused");
    assert!(refused.to_string().contains("missing"), "{refused}");
    assert!(!master_path.exists(), "no new master key was written");

    // The stored row is ciphertext: no PKCS#8 structure, and moving it to another
    // KEK id (the associated data) breaks it.
    let record = catalogue.kek(&org.id, &kek.id).expect("row").expect("kek");
    let sealed = record.sealed_private.clone().expect("sealed");
    assert!(
        !sealed
            .windows(5)
            .any(|w| w == [0x02, 0x01, 0x00, 0x30, 0x0d]),
        "looks like plaintext PKCS#8"
    );
    let mut moved = record.clone();
    moved.id = "kek-moved".into();
    let event = AuditEvent::KekCreate {
        kek_id: "kek-moved",
        detail: "test",
    };
    catalogue
        .insert_kek(&moved, "test", &event)
        .expect("insert");
    assert!(matches!(
        keys.unwrap(&org.id, "kek-moved", &wrapped, WrapAlgorithm::RsaOaepSha1),
        Err(ManagedKeyError::Unseal)
    ));
}

#[test]
fn a_due_schedule_rotates_once_and_persists_across_restarts() {
    use tapeseal_store::schedule::Period;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("catalogue.sqlite3");
    let master =
        Arc::new(MasterKey::load_or_create(&dir.path().join("master.key"), true).expect("master"));
    let org_id;
    let first;
    {
        let catalogue = Arc::new(Catalogue::open(&db).expect("catalogue"));
        let org = catalogue.create_org("Acme", "test").expect("org");
        org_id = org.id;
        assert_eq!(
            catalogue.schedule(&org_id).expect("schedule"),
            (Period::Disabled, None)
        );
        let keys = ManagedKeys::new(catalogue.clone(), master.clone());
        first = keys.current(&org_id, "test").expect("kek");
        let far_future = i64::MAX / 2;
        assert!(
            keys.rotate_if_due(&org_id, far_future)
                .expect("check")
                .is_none(),
            "disabled never rotates"
        );
        catalogue
            .set_schedule(&org_id, Period::Weekly, "test")
            .expect("set");
    }
    // After a restart the schedule is still there; a rotation missed while the
    // server was down happens at the first check.
    let catalogue = Arc::new(Catalogue::open(&db).expect("reopen"));
    assert_eq!(
        catalogue.schedule(&org_id).expect("schedule").0,
        Period::Weekly
    );
    let keys = ManagedKeys::new(catalogue.clone(), master.clone());
    let created = catalogue
        .current_kek_of_mode(&org_id)
        .expect("row")
        .expect("kek")
        .created_at;
    let week = 7 * 86_400_000;
    assert!(
        keys.rotate_if_due(&org_id, created + week - 1)
            .expect("check")
            .is_none()
    );
    let rotated = keys
        .rotate_if_due(&org_id, created + week)
        .expect("check")
        .expect("due");
    assert_ne!(rotated.id, first.id);
    assert_eq!(
        keys.current(&org_id, "test").expect("current").id,
        rotated.id
    );
    assert!(
        keys.rotate_if_due(&org_id, created + week)
            .expect("check")
            .is_none(),
        "the new KEK is not due yet"
    );
    assert_eq!(
        catalogue.schedule(&org_id).expect("schedule").1,
        Some(created + week)
    );
    assert!(
        catalogue
            .set_schedule("org-none", Period::Daily, "test")
            .is_err()
    );
}
