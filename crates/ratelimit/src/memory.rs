//! [`MemoryStore`]: buckets in this process, sharded, idle ones evicted.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::store::{Ask, BoxFuture, Bucket, Change, Decision, RateLimitStore, Spec, StoreError};

/// Buckets in memory: a sharded map (no global lock; each decision locks only its
/// bucket's shard for a few instructions, so it is exact under any concurrency), with
/// idle buckets swept out every `sweep_interval` (default 10 s) so that memory stays
/// bounded under any number of distinct keys. A request's limits are taken all or none:
/// the shards of its buckets are locked together (in a fixed order, so two requests never
/// wait on each other), every bucket is checked, and they are charged only if all fit.
/// Time is tokio's clock. Cheap to clone: clones share the buckets.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

/// Shards, as a power of two: plenty for the cores of one machine.
const SHARD_BITS: u32 = 6;

/// Keyed with foldhash's per-process random seed: fast on the short keys limits use, and
/// a client cannot pick keys that collide.
type Buckets = HashMap<Box<str>, (Spec, Bucket), foldhash::fast::RandomState>;

/// One shard, on cache lines of its own.
#[repr(align(128))]
struct Shard(Mutex<Buckets>);

struct Inner {
    shards: Box<[Shard]>,
    /// Picks a key's shard (a seed of its own: the shards' maps use theirs).
    pick: foldhash::fast::RandomState,
    base: Instant,
    sweep_interval: u64,
    last_sweep: AtomicU64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("buckets", &self.len())
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
        let shards = (0..1usize << SHARD_BITS)
            .map(|_| Shard(Mutex::new(Buckets::default())))
            .collect();
        Self {
            inner: Arc::new(Inner {
                shards,
                pick: foldhash::fast::RandomState::default(),
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
        (0..self.inner.shards.len())
            .map(|i| self.lock(i).len())
            .sum()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        (0..self.inner.shards.len()).all(|i| self.lock(i).is_empty())
    }

    fn now(&self) -> u64 {
        // Offset by one so that 0 never means "now" for a fresh bucket.
        u64::try_from(self.inner.base.elapsed().as_nanos()).unwrap_or(u64::MAX) + 1
    }

    fn shard_of(&self, key: &str) -> usize {
        (self.inner.pick.hash_one(key) >> (u64::BITS - SHARD_BITS)) as usize
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Buckets> {
        // The buckets stay consistent whatever panicked while holding the lock.
        self.inner.shards[shard]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops every idle bucket now.
    pub fn sweep(&self) {
        let now = self.now();
        for i in 0..self.inner.shards.len() {
            self.lock(i).retain(|_, (spec, b)| !b.idle(*spec, now));
        }
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
        let decision = {
            let mut shard = self.lock(self.shard_of(key));
            match shard.get_mut(key) {
                Some(e) => {
                    e.0 = spec;
                    e.1.acquire(spec, cost, now)
                }
                None => {
                    let mut b = Bucket::default();
                    let d = b.acquire(spec, cost, now);
                    shard.insert(Box::from(key), (spec, b));
                    d
                }
            }
        };
        self.maybe_sweep(now);
        decision
    }

    fn decide_all(&self, asks: &[Ask]) -> Vec<Decision> {
        if let [one] = asks {
            return vec![self.decide(&one.key, one.spec, one.cost)];
        }
        let now = self.now();
        let shard_of: Vec<usize> = asks.iter().map(|a| self.shard_of(&a.key)).collect();
        let mut order = shard_of.clone();
        order.sort_unstable();
        order.dedup();
        // Every shard the asks touch, locked in ascending order: no cycle of waits.
        let mut locked: Vec<_> = order.iter().map(|&i| self.lock(i)).collect();
        let at = |j: usize| order.partition_point(|&i| i < shard_of[j]);
        // Check every ask on a copy of its bucket (the same key asked twice: the copy
        // the earlier ask left); nothing is written until all fit.
        let mut decisions = Vec::with_capacity(asks.len());
        let mut after: Vec<Bucket> = Vec::with_capacity(asks.len());
        for (j, ask) in asks.iter().enumerate() {
            let mut b = match asks[..j].iter().rposition(|e| e.key == ask.key) {
                Some(k) => after[k],
                None => locked[at(j)]
                    .get(ask.key.as_str())
                    .map_or_else(Bucket::default, |e| e.1),
            };
            let d = b.acquire(ask.spec, ask.cost, now);
            decisions.push(d);
            if !d.allowed {
                drop(locked);
                self.maybe_sweep(now);
                return decisions;
            }
            after.push(b);
        }
        for (j, (ask, b)) in asks.iter().zip(after).enumerate() {
            let shard = &mut locked[at(j)];
            match shard.get_mut(ask.key.as_str()) {
                Some(e) => *e = (ask.spec, b),
                None => {
                    shard.insert(Box::from(ask.key.as_str()), (ask.spec, b));
                }
            }
        }
        drop(locked);
        self.maybe_sweep(now);
        decisions
    }

    fn change(&self, key: &str, spec: Spec, delta: i64) {
        let now = self.now();
        let mut shard = self.lock(self.shard_of(key));
        match shard.get_mut(key) {
            Some(e) => e.1.adjust(spec, delta, now),
            None if delta > 0 => {
                let mut b = Bucket::default();
                b.adjust(spec, delta, now);
                shard.insert(Box::from(key), (spec, b));
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

    fn acquire_all<'a>(
        &'a self,
        asks: &'a [Ask],
    ) -> BoxFuture<'a, Result<Vec<Decision>, StoreError>> {
        let d = self.decide_all(asks);
        Box::pin(std::future::ready(Ok(d)))
    }

    fn adjust_all<'a>(&'a self, changes: &'a [Change]) -> BoxFuture<'a, Result<(), StoreError>> {
        for c in changes {
            self.change(&c.key, c.spec, c.delta);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

impl MemoryStore {
    /// The same decision as [`RateLimitStore::acquire`], without a future: for callers
    /// (and benchmarks) that hold a `MemoryStore` itself.
    pub fn acquire_now(&self, key: &str, spec: Spec, cost: u64) -> Decision {
        self.decide(key, spec, cost)
    }

    /// The same decisions as [`RateLimitStore::acquire_all`] (all or none), without a
    /// future.
    pub fn acquire_all_now(&self, asks: &[Ask]) -> Vec<Decision> {
        self.decide_all(asks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Kind;
    use crate::store::testing::take_both;

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

    fn ask(key: &str, kind: Kind, amount: u64, cost: u64) -> Ask {
        Ask {
            key: key.to_owned(),
            spec: Spec {
                kind,
                amount,
                period: Duration::from_secs(60),
            },
            cost,
        }
    }

    /// What is left of a bucket: what a fresh ask of 1 under a limit of `amount` answers,
    /// taken back at once.
    fn left(store: &MemoryStore, key: &str, kind: Kind, amount: u64) -> u64 {
        let d = store.acquire_now(key, ask(key, kind, amount, 1).spec, 1);
        store.change(key, ask(key, kind, amount, 1).spec, -1);
        if d.allowed { d.remaining + 1 } else { 0 }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_refused_by_its_second_limit_leaves_the_first_untouched() {
        for kind in [
            Kind::FixedWindow,
            Kind::SlidingWindow,
            Kind::Gcra,
            Kind::Concurrency,
        ] {
            let store = MemoryStore::new();
            assert!(
                store
                    .acquire_now("a", ask("a", kind, 10, 3).spec, 3)
                    .allowed
            );
            let before = store.inner.shards[store.shard_of("a")].0.lock().unwrap()["a"];
            let d = store.acquire_all_now(&[
                ask("a", kind, 10, 2),
                ask("b", kind, 4, 5),
                ask("c", kind, 10, 1),
            ]);
            assert_eq!(d.len(), 2, "{kind:?}: the decisions stop at the refusal");
            assert!(d[0].allowed && !d[1].allowed, "{kind:?}");
            assert_eq!(
                d[0].remaining, 5,
                "{kind:?}: as the first limit alone answers"
            );
            let after = store.inner.shards[store.shard_of("a")].0.lock().unwrap()["a"];
            assert_eq!(before, after, "{kind:?}");
            assert_eq!(store.len(), 1, "{kind:?}: no bucket made for the refused");

            // All fit: every bucket charged.
            let d = store.acquire_all_now(&[ask("a", kind, 10, 2), ask("b", kind, 4, 4)]);
            assert!(d.iter().all(|d| d.allowed) && d.len() == 2, "{kind:?}");
            assert_eq!(left(&store, "a", kind, 10), 5, "{kind:?}");
            assert_eq!(left(&store, "b", kind, 4), 0, "{kind:?}");
        }
    }

    #[test]
    fn one_key_asked_twice_counts_twice() {
        let store = MemoryStore::new();
        let twice = |cost| {
            store.acquire_all_now(&[
                ask("k", Kind::FixedWindow, 10, cost),
                ask("other", Kind::FixedWindow, 10, 1),
                ask("k", Kind::FixedWindow, 10, cost),
            ])
        };
        let d = twice(6);
        assert!(d[0].allowed && d[1].allowed && !d[2].allowed);
        assert_eq!(left(&store, "k", Kind::FixedWindow, 10), 10);
        let d = twice(4);
        assert_eq!(d.iter().map(|d| d.remaining).collect::<Vec<_>>(), [6, 9, 2]);
        assert_eq!(left(&store, "k", Kind::FixedWindow, 10), 2);
    }

    #[test]
    fn many_buckets_in_one_request_share_shards_without_deadlock() {
        // More keys than shards: some share one, which is locked once.
        let store = MemoryStore::new();
        let asks: Vec<Ask> = (0..200)
            .map(|i| ask(&format!("k{i}"), Kind::FixedWindow, 1, 1))
            .collect();
        assert!(store.acquire_all_now(&asks).iter().all(|d| d.allowed));
        assert_eq!(store.len(), 200);
        let mut again = asks.clone();
        again.rotate_left(100);
        let d = store.acquire_all_now(&again);
        assert_eq!(d.len(), 1);
        assert!(!d[0].allowed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn all_or_nothing_is_exact_under_concurrency() {
        // One shared limit of 100 and, per task, a limit of 3 of its own, asked in
        // either order: exactly 100 get through the shared one, and a task's own bucket
        // holds what the task got through, no more (a refusal charged nothing).
        let store = MemoryStore::new();
        let mut tasks = Vec::new();
        for t in 0..64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let shared = ask("shared", Kind::FixedWindow, 100, 1);
                let own = ask(&format!("own-{t}"), Kind::FixedWindow, 3, 1);
                let admitted = take_both(&store, &shared, &own, t, 16).await;
                (t, admitted)
            }));
        }
        let mut total = 0;
        for task in tasks {
            let (t, admitted) = task.await.unwrap();
            total += admitted;
            assert_eq!(
                3 - left(&store, &format!("own-{t}"), Kind::FixedWindow, 3),
                admitted
            );
        }
        assert_eq!(total, 100);
        assert_eq!(left(&store, "shared", Kind::FixedWindow, 100), 0);
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
