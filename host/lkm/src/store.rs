//! The LKM's durable state in one SQLite file (WAL, `synchronous = FULL`, versioned
//! migrations): key pairs with their sealed private keys and first use, Hawk
//! credentials with their sealed keys, and the request log. Sealing and opening are
//! [`crate::keyring`]'s; this module stores bytes.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tapeseal_keys::lkm::wire::{Keypair, RequestLogEntry};

use crate::error::{LkmError, Result};

/// Migrations in order; the store records the highest it has applied.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("schema.sql")),
    (2, include_str!("002_request_nonces.sql")),
];

/// A key pair as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct KeypairRow {
    /// Its id (a UUID unless imported with another).
    pub id: String,
    /// DER PKCS#1 `RSAPublicKey`.
    pub public_pkcs1: Vec<u8>,
    /// The PKCS#8 private key sealed under the master key.
    pub sealed_private: Vec<u8>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// When it first decrypted a DEK (Unix milliseconds).
    pub first_used_at: Option<i64>,
}

impl KeypairRow {
    /// The key pair as the wire shows it.
    pub fn to_wire(&self) -> Keypair {
        Keypair {
            id: self.id.clone(),
            public_key: B64.encode(&self.public_pkcs1),
            date_created: self.created_at,
        }
    }
}

impl std::fmt::Debug for KeypairRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeypairRow")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .field("first_used_at", &self.first_used_at)
            .finish_non_exhaustive()
    }
}

/// A Hawk credential as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialRow {
    /// The Hawk id.
    pub id: String,
    /// The `authKey` sealed under the master key.
    pub sealed_auth_key: Vec<u8>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// When it was revoked (Unix milliseconds).
    pub revoked_at: Option<i64>,
}

impl std::fmt::Debug for CredentialRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialRow")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// A credential as listed: everything but its key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialInfo {
    /// The Hawk id.
    pub id: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// One request, as the request log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Unix milliseconds.
    pub time: i64,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The Hawk credential that authenticated it.
    pub credential_id: Option<String>,
    /// The `PureCloud-User-Id` header.
    pub user_id: Option<String>,
    /// The key pair it concerned.
    pub keypair_id: Option<String>,
    /// The status answered.
    pub status: u16,
    /// The Hawk nonce, once accepted (never shown; it seeds the replay check after a
    /// restart).
    pub nonce: Option<String>,
}

/// Which request-log entries to read (times inclusive, Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogQuery {
    /// At most this many, newest first.
    pub max_entries: u32,
    /// None before this.
    pub earliest: Option<i64>,
    /// None after this.
    pub latest: Option<i64>,
}

/// The LKM's SQLite store. Its methods block; async callers run them off the
/// runtime's workers.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the store at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = tapeseal_store::sqlite::open(path, MIGRATIONS).map_err(|e| match e {
            tapeseal_store::sqlite::OpenError::Database(e) => LkmError::Database(e),
            tapeseal_store::sqlite::OpenError::TooNew { found, known } => {
                LkmError::TooNew { found, known }
            }
        })?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether anything is sealed under a master key (so a missing master key file
    /// is an error, never a reason to make a new one).
    pub fn has_sealed_data(&self) -> Result<bool> {
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM keypairs) OR EXISTS (SELECT 1 FROM credentials)",
            [],
            |row| row.get(0),
        )?)
    }

    /// Adds a key pair; its id must be new.
    pub fn insert_keypair(&self, row: &KeypairRow) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let taken: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM keypairs WHERE id = ?1)",
            [&row.id],
            |r| r.get(0),
        )?;
        if taken {
            return Err(LkmError::Exists(format!("key pair '{}'", row.id)));
        }
        tx.execute(
            "INSERT INTO keypairs (id, public_pkcs1, sealed_private, created_at, first_used_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                row.id,
                row.public_pkcs1,
                row.sealed_private,
                row.created_at,
                row.first_used_at
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// One key pair.
    pub fn keypair(&self, id: &str) -> Result<Option<KeypairRow>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, public_pkcs1, sealed_private, created_at, first_used_at
                 FROM keypairs WHERE id = ?1",
                [id],
                keypair_row,
            )
            .optional()?)
    }

    /// Every key pair, oldest first.
    pub fn keypairs(&self) -> Result<Vec<KeypairRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, public_pkcs1, sealed_private, created_at, first_used_at
             FROM keypairs ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], keypair_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Records the first use of a key pair (a no-op after that). False if the key
    /// pair no longer exists: then the decrypt must not be answered.
    pub fn mark_used(&self, id: &str, at: i64) -> Result<bool> {
        let conn = self.conn();
        conn.execute(
            "UPDATE keypairs SET first_used_at = ?2 WHERE id = ?1 AND first_used_at IS NULL",
            params![id, at],
        )?;
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM keypairs WHERE id = ?1)",
            [id],
            |r| r.get(0),
        )?;
        Ok(exists)
    }

    /// Deletes a key pair that has never decrypted anything; checked in the same
    /// transaction as the delete.
    pub fn delete_keypair(&self, id: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let used: Option<Option<i64>> = tx
            .query_row(
                "SELECT first_used_at FROM keypairs WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        match used {
            None => return Err(LkmError::NotFound(format!("key pair '{id}'"))),
            Some(Some(_)) => return Err(LkmError::InUse(id.to_string())),
            Some(None) => {}
        }
        tx.execute(
            "DELETE FROM keypairs WHERE id = ?1 AND first_used_at IS NULL",
            [id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Adds a credential, or re-issues a revoked one; an active id is taken.
    pub fn insert_credential(&self, id: &str, sealed_auth_key: &[u8], at: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let existing: Option<Option<i64>> = tx
            .query_row(
                "SELECT revoked_at FROM credentials WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        match existing {
            Some(None) => return Err(LkmError::Exists(format!("active credential '{id}'"))),
            Some(Some(_)) => {
                tx.execute(
                    "UPDATE credentials SET sealed_auth_key = ?2, created_at = ?3,
                     revoked_at = NULL WHERE id = ?1",
                    params![id, sealed_auth_key, at],
                )?;
            }
            None => {
                tx.execute(
                    "INSERT INTO credentials (id, sealed_auth_key, created_at) VALUES (?1, ?2, ?3)",
                    params![id, sealed_auth_key, at],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// One credential, revoked or not.
    pub fn credential(&self, id: &str) -> Result<Option<CredentialRow>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, sealed_auth_key, created_at, revoked_at FROM credentials WHERE id = ?1",
                [id],
                |r| {
                    Ok(CredentialRow {
                        id: r.get(0)?,
                        sealed_auth_key: r.get(1)?,
                        created_at: r.get(2)?,
                        revoked_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Every credential, oldest first, without keys.
    pub fn credentials(&self) -> Result<Vec<CredentialInfo>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, created_at, revoked_at FROM credentials ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(CredentialInfo {
                id: r.get(0)?,
                created_at: r.get(1)?,
                revoked_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Revokes a credential (again is a no-op); it authenticates nothing after this.
    pub fn revoke_credential(&self, id: &str, at: i64) -> Result<()> {
        let conn = self.conn();
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM credentials WHERE id = ?1)",
            [id],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(LkmError::NotFound(format!("credential '{id}'")));
        }
        conn.execute(
            "UPDATE credentials SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, at],
        )?;
        Ok(())
    }

    /// Appends to the request log, dropping entries beyond the newest `keep`.
    pub fn append_log(&self, record: &LogRecord, keep: u64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO request_log (time, method, path, credential_id, user_id, keypair_id, status,
                                      nonce)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                record.time,
                record.method,
                record.path,
                record.credential_id,
                record.user_id,
                record.keypair_id,
                record.status,
                record.nonce
            ],
        )?;
        let newest = tx.last_insert_rowid();
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        tx.execute(
            "DELETE FROM request_log WHERE seq <= ?1",
            [newest.saturating_sub(keep)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Request-log entries, newest first.
    pub fn log(&self, query: &LogQuery) -> Result<Vec<RequestLogEntry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, time, method, path, credential_id, user_id, keypair_id, status
             FROM request_log
             WHERE time >= ?1 AND time <= ?2
             ORDER BY seq DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![
                query.earliest.unwrap_or(i64::MIN),
                query.latest.unwrap_or(i64::MAX),
                query.max_entries
            ],
            |r| {
                Ok(RequestLogEntry {
                    id: r.get(0)?,
                    time: r.get(1)?,
                    method: r.get(2)?,
                    path: r.get(3)?,
                    credential_id: r.get(4)?,
                    user_id: r.get(5)?,
                    keypair_id: r.get(6)?,
                    status: r.get(7)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The `(credential id, nonce, time)` of the authenticated requests logged at or
    /// after `since` (Unix milliseconds): what a restarted LKM must still refuse to
    /// see again.
    pub fn nonces_since(&self, since: i64) -> Result<Vec<(String, String, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT credential_id, nonce, time FROM request_log
             WHERE time >= ?1 AND credential_id IS NOT NULL AND nonce IS NOT NULL",
        )?;
        let rows = stmt.query_map(params![since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Empties the request log.
    pub fn clear_log(&self) -> Result<()> {
        self.conn().execute("DELETE FROM request_log", [])?;
        Ok(())
    }
}

fn keypair_row(r: &Row<'_>) -> rusqlite::Result<KeypairRow> {
    Ok(KeypairRow {
        id: r.get(0)?,
        public_pkcs1: r.get(1)?,
        sealed_private: r.get(2)?,
        created_at: r.get(3)?,
        first_used_at: r.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("lkm.sqlite3")).expect("open");
        (dir, store)
    }

    fn pair(id: &str) -> KeypairRow {
        KeypairRow {
            id: id.into(),
            public_pkcs1: vec![1, 2, 3],
            sealed_private: vec![4, 5, 6],
            created_at: 1,
            first_used_at: None,
        }
    }

    #[test]
    fn a_used_key_pair_is_never_deleted() {
        let (_dir, store) = store();
        store.insert_keypair(&pair("a")).expect("insert");
        store.insert_keypair(&pair("b")).expect("insert");
        assert!(matches!(
            store.insert_keypair(&pair("a")),
            Err(LkmError::Exists(_))
        ));
        assert!(store.mark_used("a", 5).expect("mark"));
        assert!(store.mark_used("a", 9).expect("again"));
        assert_eq!(
            store
                .keypair("a")
                .expect("get")
                .and_then(|r| r.first_used_at),
            Some(5)
        );
        assert!(matches!(store.delete_keypair("a"), Err(LkmError::InUse(_))));
        store.delete_keypair("b").expect("unused");
        assert!(matches!(
            store.delete_keypair("b"),
            Err(LkmError::NotFound(_))
        ));
        assert!(!store.mark_used("b", 10).expect("gone"));
        assert!(store.has_sealed_data().expect("sealed"));
    }

    #[test]
    fn credentials_are_issued_once_while_active() {
        let (_dir, store) = store();
        assert!(!store.has_sealed_data().expect("empty"));
        store.insert_credential("client", b"k1", 1).expect("issue");
        assert!(matches!(
            store.insert_credential("client", b"k2", 2),
            Err(LkmError::Exists(_))
        ));
        store.revoke_credential("client", 3).expect("revoke");
        store.revoke_credential("client", 4).expect("again");
        assert_eq!(store.credentials().expect("list")[0].revoked_at, Some(3));
        store
            .insert_credential("client", b"k3", 5)
            .expect("re-issue");
        let row = store.credential("client").expect("get").expect("row");
        assert_eq!(
            (row.sealed_auth_key.as_slice(), row.revoked_at),
            (&b"k3"[..], None)
        );
        assert!(matches!(
            store.revoke_credential("nobody", 1),
            Err(LkmError::NotFound(_))
        ));
    }

    #[test]
    fn the_request_log_is_bounded_filtered_and_newest_first() {
        let (_dir, store) = store();
        for time in 1..=5 {
            let record = LogRecord {
                time,
                method: "GET".into(),
                path: "/x".into(),
                credential_id: None,
                user_id: Some(format!("u{time}")),
                keypair_id: None,
                status: 200,
                nonce: None,
            };
            store.append_log(&record, 4).expect("append");
        }
        let all = LogQuery {
            max_entries: 100,
            earliest: None,
            latest: None,
        };
        let times: Vec<i64> = store
            .log(&all)
            .expect("log")
            .iter()
            .map(|e| e.time)
            .collect();
        assert_eq!(times, [5, 4, 3, 2]);
        let some = LogQuery {
            max_entries: 1,
            earliest: Some(3),
            latest: Some(4),
        };
        let entries = store.log(&some).expect("log");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].user_id.as_deref(), Some("u4"));
        store.clear_log().expect("clear");
        assert!(store.log(&all).expect("log").is_empty());
    }
}
