//! The catalogue's two databases behind one small interface: SQLite (embedded, the
//! default) and PostgreSQL (several server instances sharing one deployment).
//!
//! Statements are written once, in the dialect both share, with SQLite's numbered
//! parameters (`?1`, `?2`, ...); for PostgreSQL they become `$1`, `$2`, .... The few
//! places the dialects differ (JSON) ask the [`Tx`] for the expression.
//!
//! A write runs in a transaction that sees and leaves the catalogue as if it were
//! alone: SQLite takes its write lock when the transaction begins (`BEGIN
//! IMMEDIATE`), so writers queue; PostgreSQL runs it `SERIALIZABLE` and runs it again
//! when the server reports a serialization failure or a deadlock, which is why a
//! write is a closure. Code that reads, checks and then writes inside one
//! [`Db::write`] is therefore correct on both, with any number of server instances.
//!
//! PostgreSQL is reached with `tokio-postgres` through a `deadpool` pool; its
//! connections run on a small runtime of the catalogue's own, so the catalogue's
//! methods stay plain functions that callers run as blocking work (as with SQLite).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};

mod pg;
mod value;

pub use crate::db_params as params;
use pg::Guard;
pub use pg::Pg;
pub use value::{FromValue, Nullable, Row, ToValue, Value};

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("{}", postgres_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool.
    #[error("cannot reach the PostgreSQL catalogue: {0}")]
    Pool(String),
    /// A column held another type than the code reads.
    #[error("unexpected column type: {0}")]
    Type(String),
}

impl DbError {
    /// Whether running the transaction again may succeed: a serialization failure
    /// or a deadlock (PostgreSQL), or a busy database (SQLite, after its timeout).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Postgres(e) => e.code().is_some_and(|c| {
                *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
            }),
            _ => false,
        }
    }

    /// Whether a uniqueness constraint refused the statement.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Self::Postgres(e) => e
                .code()
                .is_some_and(|c| *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION),
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            _ => false,
        }
    }
}

/// What PostgreSQL said: its code and message when the server refused something,
/// else the client's error with its cause.
fn postgres_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Which SQL dialect a [`Tx`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Where statements run: a transaction, or (for reads) the connection itself.
pub struct Tx<'a> {
    inner: TxInner<'a>,
}

enum TxInner<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a tokio_postgres::Client),
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("dialect", &self.dialect())
            .finish()
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Self::Int(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Self::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Self::Blob(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            _ => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

fn sqlite_row(row: &rusqlite::Row<'_>, columns: usize) -> rusqlite::Result<Row> {
    let mut values = Vec::with_capacity(columns);
    for i in 0..columns {
        values.push(match row.get_ref(i)? {
            ValueRef::Null => Value::Text(None),
            ValueRef::Integer(v) => Value::Int(Some(v)),
            ValueRef::Real(v) => Value::Int(Some(v as i64)),
            ValueRef::Text(t) => Value::Text(Some(String::from_utf8_lossy(t).into_owned())),
            ValueRef::Blob(b) => Value::Blob(Some(b.to_vec())),
        });
    }
    Ok(Row { values })
}

/// `?N` becomes `$N`; everything else is left as it is.
fn postgres_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn pg_params(params: &[&dyn ToValue]) -> Vec<Value> {
    params.iter().map(|p| p.to_value()).collect()
}

fn pg_typed(
    values: &[Value],
) -> Vec<(
    &(dyn tokio_postgres::types::ToSql + Sync),
    tokio_postgres::types::Type,
)> {
    use tokio_postgres::types::Type;
    values
        .iter()
        .map(|v| match v {
            Value::Int(i) => (i as &(dyn tokio_postgres::types::ToSql + Sync), Type::INT8),
            Value::Text(t) => (t as &(dyn tokio_postgres::types::ToSql + Sync), Type::TEXT),
            Value::Blob(b) => (b as &(dyn tokio_postgres::types::ToSql + Sync), Type::BYTEA),
        })
        .collect()
}

fn pg_row(row: &tokio_postgres::Row) -> Result<Row, DbError> {
    use tokio_postgres::types::Type;
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::INT8 {
            Value::Int(row.try_get::<_, Option<i64>>(i)?)
        } else if *ty == Type::INT4 {
            Value::Int(row.try_get::<_, Option<i32>>(i)?.map(i64::from))
        } else if *ty == Type::INT2 {
            Value::Int(row.try_get::<_, Option<i16>>(i)?.map(i64::from))
        } else if *ty == Type::BOOL {
            Value::Int(row.try_get::<_, Option<bool>>(i)?.map(i64::from))
        } else if *ty == Type::BYTEA {
            Value::Blob(row.try_get::<_, Option<Vec<u8>>>(i)?)
        } else if *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::NAME {
            Value::Text(row.try_get::<_, Option<String>>(i)?)
        } else {
            return Err(DbError::Type(format!(
                "column {} is {ty}; cast it to BIGINT or TEXT",
                column.name()
            )));
        };
        values.push(value);
    }
    Ok(Row { values })
}

impl Tx<'_> {
    /// The dialect statements run in.
    pub fn dialect(&self) -> Dialect {
        match self.inner {
            TxInner::Sqlite(_) => Dialect::Sqlite,
            TxInner::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The text at `key` of the JSON object in `column`.
    pub fn json_text(&self, column: &str, key: &str) -> String {
        match self.dialect() {
            Dialect::Sqlite => format!("json_extract({column}, '$.{key}')"),
            Dialect::Postgres => format!("(CAST({column} AS jsonb) ->> '{key}')"),
        }
    }

    /// A condition: `expr` is one of the strings of the JSON array bound to the
    /// numbered parameter `param`, or that array is empty.
    pub fn in_json_array_or_empty(&self, expr: &str, param: u32) -> String {
        match self.dialect() {
            Dialect::Sqlite => format!(
                "(json_array_length(?{param}) = 0 OR {expr} IN (SELECT value FROM json_each(?{param})))"
            ),
            Dialect::Postgres => format!(
                "(jsonb_array_length(CAST(?{param} AS jsonb)) = 0 OR {expr} IN \
                 (SELECT jsonb_array_elements_text(CAST(?{param} AS jsonb))))"
            ),
        }
    }

    /// Runs a statement; returns how many rows it changed.
    pub fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64, DbError> {
        match self.inner {
            TxInner::Sqlite(conn) => {
                let values = pg_params(params);
                let n = conn
                    .prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(values.iter()))?;
                Ok(n as u64)
            }
            TxInner::Postgres(client) => {
                let values = pg_params(params);
                let sql = postgres_sql(sql);
                let typed = pg_typed(&values);
                Ok(block_on(client.execute_typed(&sql, &typed))?)
            }
        }
    }

    /// Every row of a query, each through `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
        mut f: impl FnMut(&Row) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        let rows = self.rows(sql, params)?;
        rows.iter().map(&mut f).collect()
    }

    /// The first row of a query through `f`, if there is one.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
        f: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        let rows = self.rows(sql, params)?;
        rows.first().map(f).transpose()
    }

    /// The first row of a query through `f`; a query that returns none is an error.
    pub fn query_one<T>(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
        f: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.query_opt(sql, params, f)?
            .ok_or_else(|| DbError::Type("the query returned no row".into()))
    }

    fn rows(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, DbError> {
        let values = pg_params(params);
        match self.inner {
            TxInner::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let rows = stmt.query_map(rusqlite::params_from_iter(values.iter()), |row| {
                    sqlite_row(row, columns)
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            }
            TxInner::Postgres(client) => {
                let sql = postgres_sql(sql);
                let typed = pg_typed(&values);
                let rows = block_on(client.query_typed(&sql, &typed))?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    /// Runs statements without parameters (a migration).
    pub fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
        match self.inner {
            TxInner::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            TxInner::Postgres(client) => Ok(block_on(client.batch_execute(sql))?),
        }
    }
}

/// Waits for a client call. The connection it talks through runs on the pool's own
/// runtime, so this needs none and works from any thread.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

/// The most times a write is run again after a serialization failure.
const MAX_ATTEMPTS: u32 = 20;

/// A database: SQLite behind one connection, or a PostgreSQL pool.
pub enum Db {
    /// SQLite: one connection, used by one caller at a time.
    Sqlite(Mutex<rusqlite::Connection>),
    /// PostgreSQL.
    Postgres(Pg),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(_) => f.write_str("Db::Sqlite"),
            Self::Postgres(_) => f.write_str("Db::Postgres"),
        }
    }
}

impl Db {
    fn sqlite(conn: &Mutex<rusqlite::Connection>) -> MutexGuard<'_, rusqlite::Connection> {
        conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the database without a transaction (each statement on its own):
    /// for reads.
    pub fn read<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        crate::blocking(|| match self {
            Self::Sqlite(conn) => {
                let conn = Self::sqlite(conn);
                f(&Tx {
                    inner: TxInner::Sqlite(&conn),
                })
            }
            Self::Postgres(pg) => {
                let client = pg.client()?;
                f(&Tx {
                    inner: TxInner::Postgres(&client),
                })
            }
        })
    }

    /// Runs `f` in a transaction that behaves as if it were alone (see the module
    /// documentation) and commits it if `f` succeeds. `f` may run more than once.
    pub fn write<T, E: From<DbError> + AsDbError>(
        &self,
        f: impl FnMut(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write_locked(&[], f)
    }

    /// Like [`Db::write`], with the locks `keys` held around the transaction (and
    /// its runs again): PostgreSQL session advisory locks, taken in order before
    /// the transaction begins, so that writers of one thing (an organisation, whose
    /// audit entries are numbered one after the other) queue for it instead of
    /// colliding and running again. SQLite's writers queue anyway.
    pub fn write_locked<T, E: From<DbError> + AsDbError>(
        &self,
        keys: &[i64],
        mut f: impl FnMut(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        crate::blocking(|| match self {
            Self::Sqlite(conn) => {
                let mut conn = Self::sqlite(conn);
                let tx = conn.transaction().map_err(DbError::from)?;
                let out = f(&Tx {
                    inner: TxInner::Sqlite(&tx),
                })?;
                tx.commit().map_err(DbError::from)?;
                Ok(out)
            }
            Self::Postgres(pg) => {
                // A connection is given back only once its transaction and locks
                // are let go; on any other way out (a panic, a failed ROLLBACK) it
                // is closed, which ends both on the server.
                let mut guard = Guard(Some(pg.client()?));
                let client: &tokio_postgres::Client = guard
                    .0
                    .as_deref()
                    .ok_or_else(|| DbError::Pool("no connection".into()))?;
                let mut keys = keys.to_vec();
                keys.sort_unstable();
                keys.dedup();
                for key in &keys {
                    block_on(client.execute_typed(
                        "SELECT pg_advisory_lock($1)",
                        &[(key, tokio_postgres::types::Type::INT8)],
                    ))
                    .map_err(DbError::from)?;
                }
                let mut attempt = 0;
                let mut healthy = true;
                let out = loop {
                    attempt += 1;
                    let run = Pg::transaction_on(
                        client,
                        "BEGIN ISOLATION LEVEL SERIALIZABLE",
                        &mut f,
                        &mut healthy,
                    );
                    match run {
                        Err(e)
                            if healthy
                                && attempt < MAX_ATTEMPTS
                                && e.as_db_error().is_some_and(DbError::is_retryable) =>
                        {
                            pg.retries
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            // Back off a little, more each time, so the writers that
                            // collided do not collide again.
                            let jitter = crate::ids::random_bytes::<1>().map_or(0, |b| b[0]);
                            std::thread::sleep(Duration::from_micros(
                                u64::from(attempt) * 500 + u64::from(jitter) * 8,
                            ));
                        }
                        other => break other,
                    }
                };
                if healthy
                    && !client.is_closed()
                    && (keys.is_empty()
                        || block_on(client.batch_execute("SELECT pg_advisory_unlock_all()"))
                            .is_ok())
                {
                    guard.release();
                }
                out
            }
        })
    }
}

impl Db {
    /// Runs `f` in a transaction while holding the lock `key` (PostgreSQL: a
    /// transaction-level advisory lock, taken first, in a READ COMMITTED
    /// transaction so that `f` sees what earlier holders committed; SQLite: its
    /// write lock). For work every instance may try at once, such as migrations.
    pub fn exclusive<T, E: From<DbError> + AsDbError>(
        &self,
        key: i64,
        mut f: impl FnMut(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Self::Sqlite(_) => self.write(f),
            Self::Postgres(pg) => crate::blocking(|| {
                pg.transaction_at(
                    "BEGIN ISOLATION LEVEL READ COMMITTED",
                    &mut |tx: &Tx<'_>| {
                        tx.query_one(
                            "SELECT 1 FROM pg_advisory_xact_lock(?1)",
                            params![key],
                            |_| Ok(()),
                        )?;
                        f(tx)
                    },
                )
            }),
        }
    }
}

/// An error that may carry a database error (to see whether it is worth retrying).
pub trait AsDbError {
    /// The database error inside, if any.
    fn as_db_error(&self) -> Option<&DbError>;
}

impl AsDbError for DbError {
    fn as_db_error(&self) -> Option<&DbError> {
        Some(self)
    }
}
