//! Secrets every server instance needs alike, sealed by the caller under the master
//! key before they get here: the first instance to need one makes it, and every
//! other instance, then and later, gets that one.

use super::{Catalogue, Result};
use crate::db::params;
use crate::time::now_ms;

impl Catalogue {
    /// The sealed secret called `name`, if there is one.
    pub fn server_secret(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.read(|tx| {
            Ok(tx.query_opt(
                "SELECT sealed FROM server_secrets WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )?)
        })
    }

    /// Records `sealed` as the secret called `name` unless one is recorded already,
    /// and returns the one recorded: when instances make it at the same time, all
    /// of them end up with the same.
    pub fn insert_server_secret(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO server_secrets (name, sealed, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
                params![name, sealed, now_ms()],
            )?;
            Ok(tx.query_one(
                "SELECT sealed FROM server_secrets WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )?)
        })
    }
}
