//! Versioned migrations: applied once, kept across reopening, a newer catalogue refused, and migration 2 renumbering existing audit entries.

use tapeseal_store::catalogue::{AuditEvent, AuditFilter, Catalogue, CatalogueError, Role};

use super::Store;

pub(crate) fn migrations_apply_once_and_survive_reopening(store: &Store) {
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

#[test]
fn migration_2_numbers_existing_audit_entries_per_organisation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalogue.sqlite3");
    // A catalogue as version 1 left it: one audit log numbered across organisations.
    let v1 = rusqlite::Connection::open(&path).expect("db");
    v1.execute_batch(include_str!("../../src/catalogue/schema.sql"))
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
