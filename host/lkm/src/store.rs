//! The LKM's durable state in one SQLite file (WAL, `synchronous = FULL`, versioned
//! migrations): key pairs with their sealed private keys and first use, Hawk
//! credentials with their sealed keys, the grant issuers' public keys, and the
//! request log ([`LogRecord`]). Sealing and opening are [`crate::keyring`]'s; this
//! module stores bytes.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tapeseal_keys::grant;
use tapeseal_keys::lkm::wire::{GrantIssuer, Keypair};

use crate::error::{LkmError, Result};

mod log;

pub use log::{LogQuery, LogRecord};

/// Migrations in order; the store records the highest it has applied.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("schema.sql")),
    (2, include_str!("002_request_nonces.sql")),
    (3, include_str!("003_grant_issuers.sql")),
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

/// A grant issuer as stored: the public key that verifies a credential's grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantIssuerRow {
    /// The Hawk credential id (grants name it in `iss`).
    pub issuer: String,
    /// The raw 32-byte Ed25519 public key.
    pub public_key: Vec<u8>,
    /// Unix milliseconds.
    pub registered_at: i64,
}

impl GrantIssuerRow {
    /// The issuer as the wire shows it.
    pub fn to_wire(&self) -> GrantIssuer {
        GrantIssuer {
            issuer: self.issuer.clone(),
            public_key: B64.encode(&self.public_key),
            key_id: grant::key_id(&self.public_key),
            registered_at: self.registered_at,
        }
    }
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
        match credential_state(&tx, id)? {
            Some(None) => return Err(LkmError::Exists(format!("active credential '{id}'"))),
            Some(Some(_)) => {
                tx.execute(
                    "UPDATE credentials SET sealed_auth_key = ?2, created_at = ?3,
                     revoked_at = NULL WHERE id = ?1",
                    params![id, sealed_auth_key, at],
                )?;
                // Revoking removed it; a re-issued credential starts without one too.
                tx.execute("DELETE FROM grant_issuers WHERE issuer = ?1", [id])?;
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

    /// Revokes a credential (again is a no-op); it authenticates nothing after this,
    /// and its grant issuer goes with it, so the grants it signed stop working.
    pub fn revoke_credential(&self, id: &str, at: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if credential_state(&tx, id)?.is_none() {
            return Err(LkmError::NotFound(format!("credential '{id}'")));
        }
        tx.execute(
            "UPDATE credentials SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, at],
        )?;
        tx.execute("DELETE FROM grant_issuers WHERE issuer = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }

    /// Registers (or replaces) the grant key of active credential `issuer`; checked
    /// in the same transaction, so a credential revoked meanwhile gets none.
    pub fn put_grant_issuer(
        &self,
        issuer: &str,
        public_key: &[u8],
        at: i64,
    ) -> Result<GrantIssuerRow> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if credential_state(&tx, issuer)? != Some(None) {
            return Err(LkmError::NotFound(format!("active credential '{issuer}'")));
        }
        tx.execute(
            "INSERT INTO grant_issuers (issuer, public_key, registered_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (issuer) DO UPDATE SET public_key = excluded.public_key,
                                               registered_at = excluded.registered_at",
            params![issuer, public_key, at],
        )?;
        tx.commit()?;
        Ok(GrantIssuerRow {
            issuer: issuer.to_string(),
            public_key: public_key.to_vec(),
            registered_at: at,
        })
    }

    /// The grant key of `issuer`, if it is registered and its credential is active.
    pub fn grant_issuer(&self, issuer: &str) -> Result<Option<GrantIssuerRow>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT g.issuer, g.public_key, g.registered_at
                 FROM grant_issuers g JOIN credentials c ON c.id = g.issuer
                 WHERE g.issuer = ?1 AND c.revoked_at IS NULL",
                [issuer],
                |r| {
                    Ok(GrantIssuerRow {
                        issuer: r.get(0)?,
                        public_key: r.get(1)?,
                        registered_at: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }
}

/// Whether credential `id` exists (`Some`) and when it was revoked (`Some(Some(_))`).
fn credential_state(conn: &Connection, id: &str) -> Result<Option<Option<i64>>> {
    Ok(conn
        .query_row(
            "SELECT revoked_at FROM credentials WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?)
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

    /// A new store in a temporary directory.
    pub(super) fn store() -> (tempfile::TempDir, Store) {
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
    fn grant_issuers_belong_to_active_credentials() {
        let (_dir, store) = store();
        assert!(matches!(
            store.put_grant_issuer("nobody", &[1; 32], 1),
            Err(LkmError::NotFound(_))
        ));
        store.insert_credential("server", b"k1", 1).expect("issue");
        store.put_grant_issuer("server", &[1; 32], 2).expect("put");
        store
            .put_grant_issuer("server", &[2; 32], 3)
            .expect("replace");
        let row = store.grant_issuer("server").expect("get").expect("row");
        assert_eq!(
            (row.public_key.as_slice(), row.registered_at),
            (&[2u8; 32][..], 3)
        );
        assert_eq!(row.to_wire().key_id, grant::key_id(&[2; 32]));
        store.revoke_credential("server", 4).expect("revoke");
        assert_eq!(store.grant_issuer("server").expect("get"), None);
        assert!(store.put_grant_issuer("server", &[3; 32], 5).is_err());
        store
            .insert_credential("server", b"k2", 6)
            .expect("re-issue");
        assert_eq!(
            store.grant_issuer("server").expect("get"),
            None,
            "a re-issued credential starts without a grant key"
        );
    }
}
