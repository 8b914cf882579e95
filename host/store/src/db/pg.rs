//! The PostgreSQL pool: tokio-postgres connections through deadpool, running on a
//! small runtime of their own, and transactions on them.

use std::time::Duration;

use super::{DbError, Tx, TxInner, block_on};

/// A PostgreSQL connection pool, with the runtime its connections run on.
pub struct Pg {
    pool: deadpool_postgres::Pool,
    /// Writes run again after a conflict, counted with the other pools that share
    /// the counter.
    pub(super) retries: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Pg {
    /// The pool may be dropped on an async task (the last handle to the server's
    /// state often is): the runtime is let go without waiting for its threads,
    /// which a runtime must not do there.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("Pg")
            .field("size", &status.size)
            .field("max_size", &status.max_size)
            .finish_non_exhaustive()
    }
}

impl Pg {
    /// A pool of at most `size` connections to the database at `url`
    /// (`postgres://user[:password]@host[:port]/database[?options]`); `password`,
    /// when given, overrides one in the URL. TLS as the URL's `sslmode` says
    /// (`prefer` by default), verifying the server against `ca_file`'s
    /// certificates or the system's roots. Connects once to check.
    pub fn connect(
        url: &str,
        password: Option<&str>,
        ca_file: Option<&std::path::Path>,
        size: usize,
        retries: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<Self, DbError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| DbError::Pool(format!("bad catalogue URL: {e}")))?;
        if let Some(password) = password {
            config.password(password);
        }
        config.application_name("tapeseal");
        config.connect_timeout(Duration::from_secs(10));
        // TLS whenever the URL's `sslmode` asks for or allows it, always verified.
        let manager = deadpool_postgres::Manager::from_config(
            config,
            crate::pgtls::connector(ca_file)?,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("catalogue-pg")
            .enable_all()
            .build()
            .map_err(|e| DbError::Pool(format!("cannot start the catalogue's runtime: {e}")))?;
        let pool = {
            let _guard = runtime.enter();
            deadpool_postgres::Pool::builder(manager)
                .max_size(size)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(30)))
                .create_timeout(Some(Duration::from_secs(10)))
                .build()
                .map_err(|e| DbError::Pool(e.to_string()))?
        };
        let pg = Self {
            pool,
            retries,
            runtime: Some(runtime),
        };
        drop(pg.client()?);
        Ok(pg)
    }

    /// A connection from the pool (made on the pool's runtime when none is idle).
    pub(super) fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        let pool = self.pool.clone();
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| DbError::Pool("the catalogue is closed".into()))?;
        let task = runtime.spawn(async move { pool.get().await });
        match block_on(task) {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(DbError::Pool(e.to_string())),
            Err(e) => Err(DbError::Pool(e.to_string())),
        }
    }

    /// Runs `f` in a transaction on a connection of its own from the pool.
    pub(super) fn transaction_at<T, E: From<DbError>>(
        &self,
        begin: &str,
        f: &mut impl FnMut(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        // A connection is given back only after COMMIT or ROLLBACK went through; on
        // any other way out (a panic, a failed ROLLBACK) it is closed, which ends
        // the transaction on the server.
        let mut guard = Guard(Some(self.client()?));
        let client: &tokio_postgres::Client = guard
            .0
            .as_deref()
            .ok_or_else(|| DbError::Pool("no connection".into()))?;
        let mut healthy = true;
        let out = Self::transaction_on(client, begin, f, &mut healthy);
        if healthy && !client.is_closed() {
            guard.release();
        }
        out
    }

    /// Runs `f` in a transaction on `client`: `begin`, then COMMIT if `f` succeeds
    /// and ROLLBACK if not. A connection whose ROLLBACK failed is closed.
    pub(super) fn transaction_on<T, E: From<DbError>>(
        client: &tokio_postgres::Client,
        begin: &str,
        f: &mut impl FnMut(&Tx<'_>) -> Result<T, E>,
        healthy: &mut bool,
    ) -> Result<T, E> {
        block_on(client.batch_execute(begin)).map_err(DbError::from)?;
        let out = f(&Tx {
            inner: TxInner::Postgres(client),
        });
        match out {
            Ok(value) => match block_on(client.batch_execute("COMMIT")) {
                Ok(()) => Ok(value),
                Err(e) => {
                    // A failed COMMIT has ended the transaction; make sure of it.
                    let _ = block_on(client.batch_execute("ROLLBACK"));
                    Err(DbError::from(e).into())
                }
            },
            Err(e) => {
                if block_on(client.batch_execute("ROLLBACK")).is_err() {
                    // A connection with a transaction that may still be open must
                    // not go back to the pool: its guard closes it.
                    *healthy = false;
                }
                Err(e)
            }
        }
    }
}

pub(super) struct Guard(pub(super) Option<deadpool_postgres::Object>);

impl Guard {
    pub(super) fn release(&mut self) {
        self.0.take();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}
