//! Admission control below the wasmtime instance pool: a global and a per-organisation
//! limit on operations that hold a guest instance (ingest, playback batches, rewrap).
//! A request that cannot get a place within a short wait is refused at once with 503
//! `busy` and `Retry-After`, never left to hang, and one organisation cannot take
//! every place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{ApiError, ApiResult};

/// The two limits and how long a request may wait for a place.
#[derive(Debug)]
pub struct Limiter {
    global: Arc<Semaphore>,
    per_org: Mutex<HashMap<String, Arc<Semaphore>>>,
    per_org_limit: usize,
    wait: Duration,
}

/// A place, given back when dropped.
#[derive(Debug)]
pub struct Permit {
    _org: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl Limiter {
    /// `global` places in all, `per_org` for any one organisation; a request waits at
    /// most `wait` for one.
    pub fn new(global: usize, per_org: usize, wait: Duration) -> Self {
        Self {
            global: Arc::new(Semaphore::new(global)),
            per_org: Mutex::new(HashMap::new()),
            per_org_limit: per_org,
            wait,
        }
    }

    fn org(&self, org_id: &str) -> Arc<Semaphore> {
        let mut map = self
            .per_org
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(org_id.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_org_limit)))
            .clone()
    }

    /// A place for `org_id`, or 503 `busy` if none frees up within the wait.
    pub async fn admit(&self, org_id: &str) -> ApiResult<Permit> {
        match tokio::time::timeout(self.wait, self.place(org_id)).await {
            Ok(Some(permit)) => Ok(permit),
            _ => Err(ApiError::busy(self.wait)),
        }
    }

    /// A place for `org_id`, waiting as long as it takes: for work already under way
    /// (the rest of a response that has started, a job).
    pub async fn wait_for(&self, org_id: &str) -> ApiResult<Permit> {
        self.place(org_id)
            .await
            .ok_or_else(|| ApiError::busy(self.wait))
    }

    /// The organisation's place first, then the global one, so an organisation at its
    /// own limit never holds global places while it waits.
    async fn place(&self, org_id: &str) -> Option<Permit> {
        let org = self.org(org_id).acquire_owned().await.ok()?;
        let global = self.global.clone().acquire_owned().await.ok()?;
        Some(Permit {
            _org: org,
            _global: global,
        })
    }
}
