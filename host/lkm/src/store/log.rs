//! The request log's rows: every request as the LKM answered it, and (never shown)
//! the Hawk nonces and grant ids it accepted, which a restarted LKM reloads so that
//! it still refuses them.

use rusqlite::params;
use tapeseal_keys::lkm::wire::RequestLogEntry;

use super::Store;
use crate::error::Result;

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
    /// The recording a browser decrypt was for (from its grant).
    pub recording_id: Option<String>,
    /// The status answered.
    pub status: u16,
    /// The Hawk nonce, once accepted (never shown; it seeds the replay check after a
    /// restart).
    pub nonce: Option<String>,
    /// The accepted grant's id and expiry (Unix milliseconds): never shown; they seed
    /// the grant replay check after a restart.
    pub grant: Option<(String, i64)>,
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

impl Store {
    /// Appends to the request log, dropping entries beyond the newest `keep`.
    pub fn append_log(&self, record: &LogRecord, keep: u64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO request_log (time, method, path, credential_id, user_id, keypair_id,
                                      recording_id, status, nonce, grant_id, grant_expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                record.time,
                record.method,
                record.path,
                record.credential_id,
                record.user_id,
                record.keypair_id,
                record.recording_id,
                record.status,
                record.nonce,
                record.grant.as_ref().map(|(id, _)| id),
                record.grant.as_ref().map(|(_, expires)| expires)
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
            "SELECT seq, time, method, path, credential_id, user_id, keypair_id, recording_id,
                    status
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
                    recording_id: r.get(7)?,
                    status: r.get(8)?,
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

    /// The `(issuer, grant id, expiry)` of the grants accepted that expire at or after
    /// `since` (Unix milliseconds): what a restarted LKM must still refuse to see
    /// again.
    pub fn grant_ids_since(&self, since: i64) -> Result<Vec<(String, String, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT credential_id, grant_id, grant_expires_at FROM request_log
             WHERE grant_id IS NOT NULL AND grant_expires_at >= ?1
               AND credential_id IS NOT NULL",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::store;

    #[test]
    fn accepted_grant_ids_are_read_back_until_they_expire() {
        let (_dir, store) = store();
        for (time, grant) in [
            (1, Some(("old", 5_000))),
            (2, Some(("live", 9_000))),
            (3, None),
        ] {
            let record = LogRecord {
                time,
                method: "POST".into(),
                path: "/key-management/v1/browser-decrypt".into(),
                credential_id: Some("server".into()),
                user_id: Some("agent".into()),
                keypair_id: None,
                recording_id: Some("rec".into()),
                status: 200,
                nonce: None,
                grant: grant.map(|(id, at)| (id.to_string(), at)),
            };
            store.append_log(&record, 10).expect("append");
        }
        assert_eq!(
            store.grant_ids_since(6_000).expect("read"),
            [("server".to_string(), "live".to_string(), 9_000)]
        );
        assert_eq!(store.grant_ids_since(1).expect("read").len(), 2);
        assert!(store.nonces_since(0).expect("read").is_empty());
        let all = LogQuery {
            max_entries: 1,
            earliest: None,
            latest: None,
        };
        assert_eq!(
            store.log(&all).expect("log")[0].recording_id.as_deref(),
            Some("rec")
        );
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
                recording_id: None,
                status: 200,
                nonce: None,
                grant: None,
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
