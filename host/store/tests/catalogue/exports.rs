//! Export selections and their outcomes, resumed where the outcomes stop.

use tapeseal_store::catalogue::{AuditEvent, Catalogue};

use super::Store;

pub(crate) fn an_export_selects_by_time_kind_and_conversation_and_resumes_where_outcomes_stop(
    store: &Store,
) {
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
