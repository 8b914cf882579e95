//! The catalogue: versioned migrations that survive restarts, organisations, and API
//! tokens whose secrets are never stored, KEKs, jobs, exports and the audit log.
//!
//! One suite, two databases: every case below `both!` runs against SQLite (a test
//! each) and against a real PostgreSQL (a throwaway cluster on loopback, a fresh
//! database per case), with the same assertions. A few cases look at SQLite's file
//! itself and run there only.

use std::path::PathBuf;

use tapeseal_store::catalogue::{Catalogue, KekRecord};
use tapeseal_testkit::Postgres;

mod audit;
mod exports;
mod instances;
mod migrations;
mod orgs;

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
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                fn $case() {
                    super::$module::$case(&super::Store::sqlite());
                }
            )*
        }

        #[test]
        fn every_case_on_postgres() {
            let dir = tempfile::tempdir().expect("tempdir");
            let cluster = Postgres::start(dir.path());
            $(
                eprintln!("case {}", stringify!($case));
                $module::$case(&Store::postgres(&cluster, stringify!($case)));
            )*
        }
    };
}

both!(
    migrations::migrations_apply_once_and_survive_reopening,
    orgs::tokens_authenticate_only_while_valid_and_only_their_hash_is_stored,
    orgs::a_kek_named_by_an_unfinished_job_cannot_be_deleted,
    orgs::lkm_settings_switch_an_organisation_to_lkm_mode_with_an_audit_entry,
    exports::an_export_selects_by_time_kind_and_conversation_and_resumes_where_outcomes_stop,
    audit::concurrent_audit_entries_share_commits_and_are_all_durable,
    instances::instances_rotating_from_the_same_kek_make_one_kek,
    audit::audit_numbers_stay_gap_free_across_instances,
    instances::instances_opening_a_new_catalogue_together_migrate_it_once,
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
