//! The cache of parsed private KEKs: in memory only, bounded by entries and by the
//! time since each key was obtained (absolute: use does not extend it). For KMS
//! mode that is the time since KMS decrypted it, so that revoking tapeseal's access
//! in KMS takes effect within that time; for managed keys it spares the PKCS#8
//! parse (most of a managed unwrap) of a key the master key in memory opens anyway.
//! An evicted or expired key is dropped at once: aws-lc frees RSA keys with
//! `BN_clear_free`, which zeroes the private numbers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::kek::KekPair;

/// The cache's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// How long a decrypted key is kept after KMS decrypted it; zero: not at all.
    pub ttl: Duration,
    /// How many keys are kept at most; zero: none.
    pub entries: usize,
}

impl CachePolicy {
    /// No cache: every unwrap calls KMS `Decrypt`.
    pub const OFF: Self = Self {
        ttl: Duration::ZERO,
        entries: 0,
    };

    fn enabled(self) -> bool {
        !self.ttl.is_zero() && self.entries > 0
    }
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            entries: 1024,
        }
    }
}

struct Entry {
    pair: Arc<KekPair>,
    decrypted_at: Instant,
    used: u64,
}

/// Decrypted private KEKs by organisation and KEK id.
#[derive(Default)]
pub(crate) struct KeyCache {
    policy: CachePolicy,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<(String, String), Entry>,
    clock: u64,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("policy", &self.policy)
            .field("len", &self.len())
            .finish()
    }
}

impl KeyCache {
    /// An empty cache; with a tokio runtime at hand, a task also drops expired keys
    /// while nobody asks for them (it ends with the cache).
    pub(crate) fn new(policy: CachePolicy) -> Arc<Self> {
        let cache = Arc::new(Self {
            policy,
            inner: Mutex::default(),
        });
        if policy.enabled()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(sweep(Arc::downgrade(&cache), policy.ttl));
        }
        cache
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key, if cached and not expired.
    pub(crate) fn get(&self, org_id: &str, kek_id: &str) -> Option<Arc<KekPair>> {
        if !self.policy.enabled() {
            return None;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        let key = (org_id.to_string(), kek_id.to_string());
        let expired = match inner.entries.get_mut(&key) {
            Some(entry) if entry.decrypted_at.elapsed() < self.policy.ttl => {
                entry.used = clock;
                return Some(entry.pair.clone());
            }
            Some(_) => true,
            None => false,
        };
        if expired {
            inner.entries.remove(&key);
        }
        None
    }

    /// Keeps a key just obtained (decrypted by KMS, or unsealed and parsed),
    /// evicting the least recently used when full.
    pub(crate) fn insert(&self, org_id: &str, kek_id: &str, pair: Arc<KekPair>) {
        if !self.policy.enabled() {
            return;
        }
        let mut inner = self.lock();
        expire(&mut inner, self.policy.ttl);
        inner.clock += 1;
        let used = inner.clock;
        let key = (org_id.to_string(), kek_id.to_string());
        if !inner.entries.contains_key(&key) && inner.entries.len() >= self.policy.entries {
            let oldest = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                inner.entries.remove(&oldest);
            }
        }
        inner.entries.insert(
            key,
            Entry {
                pair,
                decrypted_at: Instant::now(),
                used,
            },
        );
    }

    /// Drops one key of an organisation (it was deleted), or all of them (its KMS
    /// key changed).
    pub(crate) fn forget(&self, org_id: &str, kek_id: Option<&str>) {
        self.lock()
            .entries
            .retain(|(org, kek), _| org != org_id || kek_id.is_some_and(|k| k != kek));
    }

    /// How many keys are held now.
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

fn expire(inner: &mut Inner, ttl: Duration) {
    inner.entries.retain(|_, e| e.decrypted_at.elapsed() < ttl);
}

async fn sweep(cache: Weak<KeyCache>, ttl: Duration) {
    let period = (ttl / 4).max(Duration::from_millis(250));
    loop {
        tokio::time::sleep(period).await;
        let Some(cache) = cache.upgrade() else {
            return;
        };
        expire(&mut cache.lock(), ttl);
    }
}
