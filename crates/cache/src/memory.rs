//! [`MemoryStore`]: the in-process store, bounded by bytes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use quick_cache::sync::Cache as QuickCache;
use quick_cache::{OptionsBuilder, Weighter};
use tokio::time::Instant;

use crate::key::CacheKey;
use crate::store::{CacheStore, Entry, Lookup, StoreFuture};

/// An in-memory [`CacheStore`], bounded by bytes: the sum of its entries'
/// [`size`](Entry::size) never exceeds `max_bytes`. Eviction is S3-FIFO (by
/// [`quick_cache`]): a quarter of the space for new entries, the rest for entries read
/// again (or stored again soon after their eviction), so a flood of one-off responses
/// does not wash out the hot set. An entry larger than a shard of the
/// store is not kept.
///
/// TTLs are honoured on read with `tokio::time::Instant` (so they follow a paused test
/// clock): an expired entry is a [`Lookup::Expired`] once, then gone. Expired entries
/// still count towards the bound until they are read or evicted.
///
/// Cloning shares the store.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    cache: QuickCache<CacheKey, Stored, EntryWeight, foldhash::fast::RandomState>,
    max_bytes: u64,
}

#[derive(Clone)]
struct Stored {
    entry: Arc<Entry>,
    expires: Instant,
    weight: u64,
}

#[derive(Clone)]
struct EntryWeight;

impl Weighter<CacheKey, Stored> for EntryWeight {
    fn weight(&self, _key: &CacheKey, v: &Stored) -> u64 {
        v.weight
    }
}

/// Entries this large or larger are what the shards are sized for.
const TYPICAL_LARGE_ENTRY: u64 = 4 * 1024 * 1024;

impl MemoryStore {
    /// A store that holds at most `max_bytes` of entries.
    pub fn new(max_bytes: u64) -> Self {
        let max_bytes = max_bytes.max(1);
        // Few shards for small stores, so that one shard can still hold a large entry.
        let shards = (max_bytes / TYPICAL_LARGE_ENTRY).clamp(1, 16) as usize;
        let options = OptionsBuilder::new()
            .weight_capacity(max_bytes)
            .estimated_items_capacity(((max_bytes / 4096).clamp(16, 1 << 20)) as usize)
            .shards(shards)
            // A quarter for new entries: a prompt is often repeated soon after.
            .hot_allocation(0.75)
            .build()
            .expect("valid quick_cache options");
        let cache =
            QuickCache::with_options(options, EntryWeight, Default::default(), Default::default());
        Self {
            inner: Arc::new(Inner { cache, max_bytes }),
        }
    }

    /// The bound, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    /// The bytes the entries take now (by [`Entry::size`]).
    pub fn bytes_used(&self) -> u64 {
        self.inner.cache.weight()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.inner.cache.len()
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.inner.cache.is_empty()
    }

    /// Looks `key` up at once (what [`CacheStore::get`] answers).
    pub fn lookup(&self, key: &CacheKey) -> Lookup {
        match self.inner.cache.get(key) {
            Some(s) if Instant::now() < s.expires => Lookup::Hit(s.entry),
            Some(_) => {
                self.inner.cache.remove(key);
                Lookup::Expired
            }
            None => Lookup::Miss,
        }
    }

    /// Stores at once (what [`CacheStore::put`] does).
    pub fn insert(&self, key: CacheKey, entry: Entry, ttl: Duration) {
        let weight = entry.size() as u64 + 64;
        let expires = Instant::now()
            .checked_add(ttl)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400));
        self.inner.cache.insert(
            key,
            Stored {
                entry: Arc::new(entry),
                expires,
                weight,
            },
        );
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_bytes", &self.inner.max_bytes)
            .field("bytes_used", &self.bytes_used())
            .field("len", &self.len())
            .finish()
    }
}

impl CacheStore for MemoryStore {
    fn get(&self, key: &CacheKey) -> StoreFuture<Lookup> {
        Box::pin(std::future::ready(self.lookup(key)))
    }

    fn put(&self, key: &CacheKey, entry: Entry, ttl: Duration) -> StoreFuture<()> {
        self.insert(*key, entry, ttl);
        Box::pin(std::future::ready(()))
    }

    fn delete(&self, key: &CacheKey) -> StoreFuture<bool> {
        Box::pin(std::future::ready(self.inner.cache.remove(key).is_some()))
    }

    fn clear(&self) -> StoreFuture<()> {
        self.inner.cache.clear();
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;

    fn entry(len: usize) -> Entry {
        Entry {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(vec![b'x'; len]),
            usage: None,
            stored_at: SystemTime::now(),
            sse: false,
        }
    }

    fn k(i: u32) -> CacheKey {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_le_bytes());
        CacheKey::from_bytes(b)
    }

    #[test]
    fn stays_within_its_byte_bound_and_evicts() {
        let store = MemoryStore::new(64 * 1024);
        for i in 0..1000 {
            store.insert(k(i), entry(3000), Duration::from_secs(60));
            assert!(store.bytes_used() <= 64 * 1024, "{}", store.bytes_used());
        }
        assert!(store.len() < 1000 && store.len() > 5, "{}", store.len());
        // The newest entries are there.
        assert!(matches!(store.lookup(&k(999)), Lookup::Hit(_)));
        assert!(matches!(store.lookup(&k(998)), Lookup::Hit(_)));
    }

    #[test]
    fn frequently_read_entries_survive_a_flood() {
        let store = MemoryStore::new(256 * 1024);
        store.insert(k(0), entry(2000), Duration::from_secs(60));
        for i in 1..2000 {
            if i % 10 == 0 {
                assert!(matches!(store.lookup(&k(0)), Lookup::Hit(_)), "lost at {i}");
            }
            store.insert(k(i), entry(2000), Duration::from_secs(60));
        }
    }

    #[test]
    fn an_entry_over_the_bound_is_not_kept() {
        let store = MemoryStore::new(10_000);
        store.insert(k(1), entry(20_000), Duration::from_secs(60));
        assert!(matches!(store.lookup(&k(1)), Lookup::Miss));
        assert!(store.bytes_used() <= 10_000);
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_expires_once_then_misses() {
        let store = MemoryStore::new(1 << 20);
        store.insert(k(1), entry(10), Duration::from_secs(60));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(matches!(store.get(&k(1)).await, Lookup::Hit(_)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(store.get(&k(1)).await, Lookup::Expired));
        assert!(matches!(store.get(&k(1)).await, Lookup::Miss));
        assert_eq!(store.bytes_used(), 0);
    }

    #[tokio::test]
    async fn delete_and_clear() {
        let store = MemoryStore::new(1 << 20);
        store.insert(k(1), entry(10), Duration::from_secs(60));
        store.insert(k(2), entry(10), Duration::from_secs(60));
        assert!(store.delete(&k(1)).await);
        assert!(!store.delete(&k(1)).await);
        store.clear().await;
        assert!(store.is_empty());
        assert_eq!(store.bytes_used(), 0);
    }
}
