//! Several catalogue handles on one database at once, as several server instances are: rotations from one KEK, and migrating a new catalogue together.

use tapeseal_store::catalogue::{AuditEvent, AuditFilter, Catalogue};

use super::{Store, kek};

pub(crate) fn instances_rotating_from_the_same_kek_make_one_kek(store: &Store) {
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

pub(crate) fn instances_opening_a_new_catalogue_together_migrate_it_once(store: &Store) {
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
