//! The audit log: numbers unique and gap-free whoever writes, and entries from concurrent requests sharing commits, each durable.

use tapeseal_store::catalogue::{AuditEvent, AuditFilter, Catalogue};

use super::Store;

pub(crate) fn audit_numbers_stay_gap_free_across_instances(store: &Store) {
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

pub(crate) fn concurrent_audit_entries_share_commits_and_are_all_durable(store: &Store) {
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
