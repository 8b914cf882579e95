//! A cache of keys in memory only, bounded by entries and by the time since each
//! key was obtained (absolute: use does not extend it).
//!
//! - Parsed private KEKs: for KMS mode the time is since KMS decrypted the key, so
//!   that revoking tapeseal's access in KMS takes effect within it; for managed
//!   keys it spares the PKCS#8 parse (most of a managed unwrap) of a key the master
//!   key in memory opens anyway. aws-lc frees RSA keys with `BN_clear_free`, which
//!   zeroes the private numbers.
//! - The server's unwrapped DEKs, for the length of one playback (`Dek` zeroizes
//!   itself when dropped).
//!
//! An evicted or expired key is dropped at once (once no caller still holds it).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

/// The cache's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// How long a key is kept after it was obtained; zero: not at all.
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

struct Entry<V> {
    value: V,
    obtained_at: Instant,
    used: u64,
}

/// Keys of type `V` by `K` (for KEKs: organisation and KEK id). `V` is cheap to
/// clone (an `Arc`), so a caller keeps using a key that is evicted meanwhile.
pub struct KeyCache<K, V> {
    policy: CachePolicy,
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K, V> {
    entries: HashMap<K, Entry<V>>,
    clock: u64,
}

impl<K, V> Default for Inner<K, V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            clock: 0,
        }
    }
}

impl<K, V> KeyCache<K, V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K, V> std::fmt::Debug for KeyCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("policy", &self.policy)
            .field("len", &self.lock().entries.len())
            .finish()
    }
}

impl<K, V> KeyCache<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// An empty cache; with a tokio runtime at hand, a task also drops expired keys
    /// while nobody asks for them (it ends with the cache).
    pub fn new(policy: CachePolicy) -> Arc<Self> {
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

    /// The key, if cached and not expired.
    pub fn get(&self, key: &K) -> Option<V> {
        if !self.policy.enabled() {
            return None;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        let expired = match inner.entries.get_mut(key) {
            Some(entry) if entry.obtained_at.elapsed() < self.policy.ttl => {
                entry.used = clock;
                return Some(entry.value.clone());
            }
            Some(_) => true,
            None => false,
        };
        if expired {
            inner.entries.remove(key);
        }
        None
    }

    /// Keeps a key just obtained (decrypted by KMS, unsealed and parsed, or
    /// unwrapped), evicting the least recently used when full.
    pub fn insert(&self, key: K, value: V) {
        if !self.policy.enabled() {
            return;
        }
        let mut inner = self.lock();
        expire(&mut inner, self.policy.ttl);
        inner.clock += 1;
        let used = inner.clock;
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
                value,
                obtained_at: Instant::now(),
                used,
            },
        );
    }

    /// Drops every key for which `keep` says false.
    pub fn retain(&self, keep: impl Fn(&K) -> bool) {
        self.lock().entries.retain(|key, _| keep(key));
    }

    /// How many keys are held now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The KEK cache's key: organisation id and KEK id.
pub(crate) type KekCache = KeyCache<(String, String), Arc<crate::kek::KekPair>>;

/// The KEK cache's key for one KEK of an organisation.
pub(crate) fn kek_key(org_id: &str, kek_id: &str) -> (String, String) {
    (org_id.to_string(), kek_id.to_string())
}

/// Drops one key of an organisation (it was deleted), or all of them (its KMS key
/// changed).
pub(crate) fn forget_keks(cache: &KekCache, org_id: &str, kek_id: Option<&str>) {
    cache.retain(|(org, kek)| org != org_id || kek_id.is_some_and(|k| k != kek));
}

fn expire<K, V>(inner: &mut Inner<K, V>, ttl: Duration) {
    inner.entries.retain(|_, e| e.obtained_at.elapsed() < ttl);
}

async fn sweep<K, V>(cache: Weak<KeyCache<K, V>>, ttl: Duration)
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    let period = (ttl / 4).max(Duration::from_millis(250));
    loop {
        tokio::time::sleep(period).await;
        let Some(cache) = cache.upgrade() else {
            return;
        };
        expire(&mut cache.lock(), ttl);
    }
}
