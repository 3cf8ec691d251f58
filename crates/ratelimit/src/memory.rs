//! [`MemoryStore`]: buckets in this process, sharded, idle ones evicted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

use crate::store::{BoxFuture, Bucket, Decision, RateLimitStore, Spec, StoreError};

/// Buckets in memory: a sharded map (no global lock; each decision locks only its
/// bucket's shard for a few instructions, so it is exact under any concurrency), with
/// idle buckets swept out every `sweep_interval` (default 10 s) so that memory stays
/// bounded under any number of distinct keys. Time is tokio's clock. Cheap to clone:
/// clones share the buckets.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Keyed with foldhash's per-process random seed: fast on the short keys limits use,
    /// and a client cannot pick keys that collide.
    buckets: DashMap<Box<str>, (Spec, Bucket), foldhash::fast::RandomState>,
    base: Instant,
    sweep_interval: u64,
    last_sweep: AtomicU64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("buckets", &self.inner.buckets.len())
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store that sweeps idle buckets every 10 s.
    pub fn new() -> Self {
        Self::with_sweep_interval(Duration::from_secs(10))
    }

    /// An empty store that sweeps idle buckets every `interval`.
    pub fn with_sweep_interval(interval: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                buckets: DashMap::with_hasher(foldhash::fast::RandomState::default()),
                base: Instant::now(),
                sweep_interval: u64::try_from(interval.as_nanos())
                    .unwrap_or(u64::MAX)
                    .max(1),
                last_sweep: AtomicU64::new(0),
            }),
        }
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.inner.buckets.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.inner.buckets.is_empty()
    }

    fn now(&self) -> u64 {
        // Offset by one so that 0 never means "now" for a fresh bucket.
        u64::try_from(self.inner.base.elapsed().as_nanos()).unwrap_or(u64::MAX) + 1
    }

    /// Drops every idle bucket now.
    pub fn sweep(&self) {
        let now = self.now();
        self.inner
            .buckets
            .retain(|_, (spec, b)| !b.idle(*spec, now));
    }

    fn maybe_sweep(&self, now: u64) {
        let last = self.inner.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < self.inner.sweep_interval {
            return;
        }
        if self
            .inner
            .last_sweep
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        // Off the request's path when there is a runtime to run it on.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let this = self.clone();
                rt.spawn_blocking(move || this.sweep());
            }
            Err(_) => self.sweep(),
        }
    }

    fn decide(&self, key: &str, spec: Spec, cost: u64) -> Decision {
        let now = self.now();
        let decision = match self.inner.buckets.get_mut(key) {
            Some(mut e) => {
                e.0 = spec;
                e.1.acquire(spec, cost, now)
            }
            None => {
                let mut e = self
                    .inner
                    .buckets
                    .entry(Box::from(key))
                    .or_insert_with(|| (spec, Bucket::default()));
                e.1.acquire(spec, cost, now)
            }
        };
        self.maybe_sweep(now);
        decision
    }

    fn change(&self, key: &str, spec: Spec, delta: i64) {
        let now = self.now();
        match self.inner.buckets.get_mut(key) {
            Some(mut e) => e.1.adjust(spec, delta, now),
            None if delta > 0 => {
                let mut e = self
                    .inner
                    .buckets
                    .entry(Box::from(key))
                    .or_insert_with(|| (spec, Bucket::default()));
                e.1.adjust(spec, delta, now);
            }
            None => {}
        }
    }
}

impl RateLimitStore for MemoryStore {
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        spec: Spec,
        cost: u64,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        let d = self.decide(key, spec, cost);
        Box::pin(std::future::ready(Ok(d)))
    }

    fn adjust<'a>(
        &'a self,
        key: &'a str,
        spec: Spec,
        delta: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.change(key, spec, delta);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl MemoryStore {
    /// The same decision as [`RateLimitStore::acquire`], without a future: for callers
    /// (and benchmarks) that hold a `MemoryStore` itself.
    pub fn acquire_now(&self, key: &str, spec: Spec, cost: u64) -> Decision {
        self.decide(key, spec, cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Kind;

    fn spec(amount: u64) -> Spec {
        Spec {
            kind: Kind::Gcra,
            amount,
            period: Duration::from_secs(1),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn exact_under_concurrency() {
        let store = MemoryStore::new();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut admitted = 0;
                for _ in 0..16 {
                    if store.acquire("k", spec(100), 1).await.unwrap().allowed {
                        admitted += 1;
                    }
                }
                admitted
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        // 1,024 attempts in far less than the period: exactly the burst of 100.
        assert_eq!(total, 100);
    }

    #[tokio::test(start_paused = true)]
    async fn a_million_keys_then_idle_leaves_nothing() {
        let store = MemoryStore::with_sweep_interval(Duration::from_secs(3600));
        for i in 0..1_000_000u32 {
            store.acquire_now(&i.to_string(), spec(10), 1);
        }
        assert_eq!(store.len(), 1_000_000);
        tokio::time::advance(Duration::from_secs(2)).await;
        store.sweep();
        assert_eq!(store.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn sweeps_by_itself() {
        let store = MemoryStore::with_sweep_interval(Duration::from_secs(5));
        for i in 0..1000 {
            store.acquire_now(&i.to_string(), spec(10), 1);
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        // The next decision notices the interval passed and sweeps off-thread.
        store.acquire_now("fresh", spec(10), 1);
        for _ in 0..100 {
            if store.len() <= 1 {
                break;
            }
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(store.len(), 1);
    }
}
