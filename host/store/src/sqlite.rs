//! SQLite as tapeseal keeps its databases (the catalogue, the reference LKM's
//! store): WAL, `synchronous = FULL` (a commit is on disk when it returns), a busy
//! timeout, and versioned migrations applied once each, in order, each in its own
//! transaction with its record. A database migrated by a newer tapeseal is refused.

use std::path::Path;

use rusqlite::{Connection, params};

use crate::time::now_ms;

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The database is at a schema version this build does not know.
    #[error("schema version {found} is newer than this tapeseal knows ({known})")]
    TooNew {
        /// Version in the database.
        found: u32,
        /// Highest version this build knows.
        known: u32,
    },
}

/// Opens (creating if needed) the database at `path` and applies the pending
/// `migrations`, `(version, SQL)` in ascending order.
pub fn open(path: &Path, migrations: &[(u32, &str)]) -> Result<Connection, OpenError> {
    let mut conn = connect(path)?;
    migrate(&mut conn, migrations)?;
    Ok(conn)
}

/// Another connection to a database [`open`] has opened, with the same settings:
/// for a writer of its own beside the first, whose readers it never blocks (WAL).
///
/// Every connection's transactions take the write lock when they begin
/// (`BEGIN IMMEDIATE`), so two writers queue for it under the busy timeout instead
/// of one failing at once when its read snapshot goes stale.
pub fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
    // Every statement the catalogue runs is kept parsed.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrate(conn: &mut Connection, migrations: &[(u32, &str)]) -> Result<(), OpenError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )?;
    let current = version(conn)?;
    let known = migrations.last().map_or(0, |(v, _)| *v);
    if current > known {
        return Err(OpenError::TooNew {
            found: current,
            known,
        });
    }
    for (version, sql) in migrations.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![version, now_ms()],
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// The highest migration applied.
pub fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )
}
