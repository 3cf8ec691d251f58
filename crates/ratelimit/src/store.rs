//! Where buckets live: the [`RateLimitStore`] trait and what it answers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::limit::{Algorithm, Limit};

/// A boxed future, as stores return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a store needs to know of a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Spec {
    /// How to count.
    pub kind: Kind,
    /// The limit, in integer units (requests, tokens, micro-USD, slots).
    pub amount: u64,
    /// The period (unused for concurrency).
    pub period: Duration,
}

/// How a bucket counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// See [`Algorithm::FixedWindow`].
    FixedWindow,
    /// See [`Algorithm::SlidingWindow`].
    SlidingWindow,
    /// See [`Algorithm::Gcra`].
    Gcra,
    /// Slots in use at once: acquired, then released.
    Concurrency,
}

impl Kind {
    /// A short stable name, part of store keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FixedWindow => "fw",
            Self::SlidingWindow => "sw",
            Self::Gcra => "gcra",
            Self::Concurrency => "conc",
        }
    }
}

impl Spec {
    pub(crate) fn of(limit: &Limit) -> Self {
        let kind = match (limit.quantity, limit.algorithm) {
            (crate::Quantity::Concurrency(_), _) => Kind::Concurrency,
            (_, Algorithm::FixedWindow) => Kind::FixedWindow,
            (_, Algorithm::SlidingWindow) => Kind::SlidingWindow,
            (_, Algorithm::Gcra) => Kind::Gcra,
        };
        Self {
            kind,
            amount: limit.quantity.amount(),
            period: limit.period,
        }
    }
}

/// A store's answer to one acquisition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the amount was taken.
    pub allowed: bool,
    /// The limit.
    pub limit: u64,
    /// What is left after this decision.
    pub remaining: u64,
    /// Until the bucket is whole again (the window's end; GCRA: until it refills).
    pub reset: Duration,
    /// When denied: how long until the same amount would be allowed.
    pub retry_after: Duration,
}

/// A store could not decide (unreachable, timed out, bad answer).
#[derive(Debug)]
pub struct StoreError(pub(crate) String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate-limit store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// One limit's part of a request: take `cost` from the bucket `key` of `spec`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    /// The bucket.
    pub key: String,
    /// How it counts.
    pub spec: Spec,
    /// What to take, in the store's units.
    pub cost: u64,
}

/// One bucket's settlement: add `delta` to what it used (see [`RateLimitStore::adjust`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The bucket.
    pub key: String,
    /// How it counts.
    pub spec: Spec,
    /// What to add (negative: give back).
    pub delta: i64,
}

/// Where buckets live. Each call must be atomic on its bucket: concurrent acquisitions
/// never admit more than the limit, whatever the number of gateway replicas sharing the
/// store.
///
/// The layer asks for all of a request's limits at once ([`acquire_all`]) and settles
/// them at once ([`adjust_all`]); a store that can do either in one step (one round trip)
/// overrides them. The defaults call [`acquire`] and [`adjust`] in turn, so a store need
/// only implement those two.
///
/// [`acquire`]: RateLimitStore::acquire
/// [`adjust`]: RateLimitStore::adjust
/// [`acquire_all`]: RateLimitStore::acquire_all
/// [`adjust_all`]: RateLimitStore::adjust_all
pub trait RateLimitStore: Send + Sync + 'static {
    /// Takes `cost` from the bucket `key` of `spec` if it fits.
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        spec: Spec,
        cost: u64,
    ) -> BoxFuture<'a, Result<Decision, StoreError>>;

    /// Adds `delta` to what the bucket used (positive: a true-up of real usage over the
    /// estimate; negative: a refund, or a concurrency slot released), whatever the limit.
    fn adjust<'a>(
        &'a self,
        key: &'a str,
        spec: Spec,
        delta: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Takes every ask, or none: when all fit, every bucket is charged and the answer is
    /// one decision per ask, in order; otherwise nothing stays charged and the answer is
    /// the decisions up to and including the first that denies. An error charges
    /// nothing either.
    ///
    /// The default acquires in turn and gives back what was taken when an ask is denied
    /// or fails, so a concurrent request may see the buckets charged for a moment;
    /// stores that can check every bucket before charging any override it.
    fn acquire_all<'a>(
        &'a self,
        asks: &'a [Ask],
    ) -> BoxFuture<'a, Result<Vec<Decision>, StoreError>> {
        Box::pin(async move {
            let mut decisions = Vec::with_capacity(asks.len());
            for (i, ask) in asks.iter().enumerate() {
                let decision = self.acquire(&ask.key, ask.spec, ask.cost).await;
                if !matches!(decision, Ok(d) if d.allowed) {
                    for done in &asks[..i] {
                        let back = -i64::try_from(done.cost).unwrap_or(i64::MAX);
                        let _ = self.adjust(&done.key, done.spec, back).await;
                    }
                }
                let decision = decision?;
                decisions.push(decision);
                if !decision.allowed {
                    break;
                }
            }
            Ok(decisions)
        })
    }

    /// Applies every change. The default adjusts in turn, carries on past a failure, and
    /// answers the first error.
    fn adjust_all<'a>(&'a self, changes: &'a [Change]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut first = Ok(());
            for c in changes {
                let done = self.adjust(&c.key, c.spec, c.delta).await;
                if first.is_ok() {
                    first = done;
                }
            }
            first
        })
    }
}

/// `decisions` for `asked` asks as [`RateLimitStore::acquire_all`] promises them (one per
/// ask, or the first refusal last), or an error.
pub(crate) fn as_promised(
    decisions: Vec<Decision>,
    asked: usize,
) -> Result<Vec<Decision>, StoreError> {
    let refused = decisions.last().is_some_and(|d| !d.allowed);
    let kept = decisions.len() <= asked
        && decisions.iter().rev().skip(1).all(|d| d.allowed)
        && (refused || decisions.len() == asked);
    if kept {
        Ok(decisions)
    } else {
        Err(StoreError(format!(
            "{} decisions for {asked} limits",
            decisions.len()
        )))
    }
}

impl<S: RateLimitStore + ?Sized> RateLimitStore for std::sync::Arc<S> {
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        spec: Spec,
        cost: u64,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        (**self).acquire(key, spec, cost)
    }

    fn adjust<'a>(
        &'a self,
        key: &'a str,
        spec: Spec,
        delta: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).adjust(key, spec, delta)
    }

    fn acquire_all<'a>(
        &'a self,
        asks: &'a [Ask],
    ) -> BoxFuture<'a, Result<Vec<Decision>, StoreError>> {
        (**self).acquire_all(asks)
    }

    fn adjust_all<'a>(&'a self, changes: &'a [Change]) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).adjust_all(changes)
    }
}

/// The arithmetic of each algorithm on one bucket, shared by the memory store (and
/// mirrored by the Redis store's scripts). Times are nanoseconds on the store's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bucket {
    /// Window index (windows) / theoretical arrival time (GCRA) / unused.
    pub(crate) a: u64,
    /// Count in the current window / unused / slots in use.
    pub(crate) count: u64,
    /// Count in the previous window (sliding).
    pub(crate) prev: u64,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

impl Bucket {
    /// Moves window buckets to the window `now` falls in.
    fn roll(&mut self, spec: Spec, now: u64) {
        let win = now / ns(spec.period);
        if self.a != win {
            self.prev = if self.a + 1 == win { self.count } else { 0 };
            self.count = 0;
            self.a = win;
        }
    }

    pub(crate) fn acquire(&mut self, spec: Spec, cost: u64, now: u64) -> Decision {
        let p = ns(spec.period);
        let amount = spec.amount;
        match spec.kind {
            Kind::Concurrency => {
                let allowed = self.count + cost <= amount;
                if allowed {
                    self.count += cost;
                }
                Decision {
                    allowed,
                    limit: amount,
                    remaining: amount.saturating_sub(self.count),
                    reset: Duration::ZERO,
                    retry_after: if allowed {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(1)
                    },
                }
            }
            Kind::FixedWindow => {
                self.roll(spec, now);
                let allowed = self.count + cost <= amount;
                if allowed {
                    self.count += cost;
                }
                let reset = Duration::from_nanos((self.a + 1) * p - now);
                Decision {
                    allowed,
                    limit: amount,
                    remaining: amount.saturating_sub(self.count),
                    reset,
                    retry_after: if allowed { Duration::ZERO } else { reset },
                }
            }
            Kind::SlidingWindow => {
                self.roll(spec, now);
                // Exact integer arithmetic, scaled by the period: the previous window
                // weighs (p - into) / p.
                let into = now - self.a * p;
                let (p128, left) = (u128::from(p), u128::from(p - into));
                let used = |count: u64| u128::from(self.prev) * left + u128::from(count) * p128;
                let allowed = used(self.count + cost) <= u128::from(amount) * p128;
                if allowed {
                    self.count += cost;
                }
                let reset = Duration::from_nanos((self.a + 1) * p - now);
                let retry_after = if allowed {
                    Duration::ZERO
                } else if self.count + cost <= amount && self.prev > 0 {
                    // Wait until the previous window weighs at most room / prev.
                    let room = u128::from(amount - self.count - cost);
                    let keep = (room * p128 / u128::from(self.prev)) as u64;
                    Duration::from_nanos((p - keep).saturating_sub(into).max(1))
                } else {
                    reset
                };
                let used_after = used(self.count);
                let remaining = (u128::from(amount) * p128).saturating_sub(used_after) / p128;
                Decision {
                    allowed,
                    limit: amount,
                    remaining: remaining as u64,
                    reset,
                    retry_after,
                }
            }
            Kind::Gcra => {
                // Emission interval per unit; the bucket holds `amount` units (one period).
                let t = p as f64 / amount as f64;
                let tat = self.a.max(now);
                let new_tat = tat + (cost as f64 * t).ceil() as u64;
                let allowed = new_tat - now <= p;
                if allowed {
                    self.a = new_tat;
                }
                let level = self.a.max(now) - now;
                let remaining = ((p - level.min(p)) as f64 / t).floor() as u64;
                Decision {
                    allowed,
                    limit: amount,
                    remaining: remaining.min(amount),
                    reset: Duration::from_nanos(level),
                    retry_after: if allowed {
                        Duration::ZERO
                    } else {
                        Duration::from_nanos(new_tat - now - p)
                    },
                }
            }
        }
    }

    pub(crate) fn adjust(&mut self, spec: Spec, delta: i64, now: u64) {
        match spec.kind {
            Kind::Concurrency => self.count = self.count.saturating_add_signed(delta),
            Kind::FixedWindow | Kind::SlidingWindow => {
                self.roll(spec, now);
                self.count = self.count.saturating_add_signed(delta);
            }
            Kind::Gcra => {
                let t = ns(spec.period) as f64 / spec.amount as f64;
                let shift = (delta.unsigned_abs() as f64 * t).ceil() as u64;
                let tat = self.a.max(now);
                self.a = if delta >= 0 {
                    tat.saturating_add(shift)
                } else {
                    tat.saturating_sub(shift).max(now)
                };
            }
        }
    }

    /// Whether the bucket holds nothing worth keeping at `now`.
    pub(crate) fn idle(&self, spec: Spec, now: u64) -> bool {
        match spec.kind {
            Kind::Concurrency => self.count == 0,
            Kind::FixedWindow | Kind::SlidingWindow => now / ns(spec.period) > self.a + 1,
            Kind::Gcra => self.a <= now,
        }
    }
}

/// What the stores' all-or-nothing tests share.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Ask, RateLimitStore};

    /// Task `t` asks for `shared` and `own` together `rounds` times, in alternating
    /// order; how many times both were granted.
    pub(crate) async fn take_both(
        store: &impl RateLimitStore,
        shared: &Ask,
        own: &Ask,
        t: usize,
        rounds: usize,
    ) -> u64 {
        let mut admitted = 0;
        for i in 0..rounds {
            let asks = if (t + i).is_multiple_of(2) {
                [shared.clone(), own.clone()]
            } else {
                [own.clone(), shared.clone()]
            };
            let d = store.acquire_all(&asks).await.unwrap();
            if d.len() == 2 && d.iter().all(|d| d.allowed) {
                admitted += 1;
            }
        }
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn spec(kind: Kind, amount: u64, secs: u64) -> Spec {
        Spec {
            kind,
            amount,
            period: Duration::from_secs(secs),
        }
    }

    #[test]
    fn fixed_window_edges() {
        let s = spec(Kind::FixedWindow, 3, 10);
        let mut b = Bucket::default();
        for _ in 0..3 {
            assert!(b.acquire(s, 1, 9 * S).allowed);
        }
        let d = b.acquire(s, 1, 9 * S);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_secs(1));
        // The next window starts empty: a burst of 2x the limit across the edge.
        for _ in 0..3 {
            assert!(b.acquire(s, 1, 10 * S).allowed);
        }
        assert!(!b.acquire(s, 1, 19 * S + S / 2).allowed);
    }

    #[test]
    fn sliding_window_weighs_the_previous_window() {
        let s = spec(Kind::SlidingWindow, 10, 10);
        let mut b = Bucket::default();
        for _ in 0..10 {
            assert!(b.acquire(s, 1, 5 * S).allowed);
        }
        // 2 s into the next window, 80% of the previous 10 still count: 2 fit.
        assert!(b.acquire(s, 1, 12 * S).allowed);
        assert!(b.acquire(s, 1, 12 * S).allowed);
        let d = b.acquire(s, 1, 12 * S);
        assert!(!d.allowed);
        // One more fits once the previous window weighs 7: at 13 s.
        assert_eq!(d.retry_after, Duration::from_secs(1));
        assert!(b.acquire(s, 1, 13 * S).allowed);
    }

    #[test]
    fn gcra_is_smooth() {
        // 10 per 10 s: one per second, burst 10.
        let s = spec(Kind::Gcra, 10, 10);
        let mut b = Bucket::default();
        for _ in 0..10 {
            assert!(b.acquire(s, 1, 100 * S).allowed);
        }
        let d = b.acquire(s, 1, 100 * S);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_secs(1));
        assert_eq!(d.remaining, 0);
        // One per second after that, no burst at an edge.
        assert!(b.acquire(s, 1, 101 * S).allowed);
        assert!(!b.acquire(s, 1, 101 * S).allowed);
        assert!(b.acquire(s, 1, 102 * S).allowed);
        // Refill: after 10 s idle the whole burst is back.
        let d = b.acquire(s, 1, 112 * S);
        assert!(d.allowed);
        assert_eq!(d.remaining, 9);
    }

    #[test]
    fn adjust_trues_up_and_refunds() {
        let s = spec(Kind::FixedWindow, 100, 60);
        let mut b = Bucket::default();
        assert!(b.acquire(s, 30, S).allowed);
        b.adjust(s, 80, S); // used 110 in truth
        assert!(!b.acquire(s, 1, 2 * S).allowed);
        b.adjust(s, -20, 2 * S);
        assert!(b.acquire(s, 5, 2 * S).allowed);

        let g = spec(Kind::Gcra, 100, 100);
        let mut b = Bucket::default();
        assert!(b.acquire(g, 50, 10 * S).allowed);
        b.adjust(g, 60, 10 * S);
        assert!(!b.acquire(g, 1, 10 * S).allowed);
        b.adjust(g, -100, 10 * S);
        assert!(b.acquire(g, 90, 10 * S).allowed);

        let c = spec(Kind::Concurrency, 2, 1);
        let mut b = Bucket::default();
        assert!(b.acquire(c, 1, 0).allowed);
        assert!(b.acquire(c, 1, 0).allowed);
        assert!(!b.acquire(c, 1, 0).allowed);
        b.adjust(c, -1, 0);
        assert!(b.acquire(c, 1, 0).allowed);
    }

    /// A store with only the two methods it must have: the trait's defaults batch them.
    /// Its clock stands still; the key `down` always fails.
    #[derive(Default)]
    struct Plain(std::sync::Mutex<std::collections::HashMap<String, Bucket>>);

    impl Plain {
        fn count(&self, key: &str) -> u64 {
            self.0.lock().unwrap().get(key).map_or(0, |b| b.count)
        }
    }

    impl RateLimitStore for Plain {
        fn acquire<'a>(
            &'a self,
            key: &'a str,
            spec: Spec,
            cost: u64,
        ) -> BoxFuture<'a, Result<Decision, StoreError>> {
            let d = match key {
                "down" => Err(StoreError("down".into())),
                _ => Ok(self
                    .0
                    .lock()
                    .unwrap()
                    .entry(key.to_owned())
                    .or_default()
                    .acquire(spec, cost, S)),
            };
            Box::pin(std::future::ready(d))
        }

        fn adjust<'a>(
            &'a self,
            key: &'a str,
            spec: Spec,
            delta: i64,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            let done = match key {
                "down" => Err(StoreError("down".into())),
                _ => {
                    let mut buckets = self.0.lock().unwrap();
                    buckets
                        .entry(key.to_owned())
                        .or_default()
                        .adjust(spec, delta, S);
                    Ok(())
                }
            };
            Box::pin(std::future::ready(done))
        }
    }

    fn ask(key: &str, amount: u64, cost: u64) -> Ask {
        Ask {
            key: key.to_owned(),
            spec: spec(Kind::FixedWindow, amount, 60),
            cost,
        }
    }

    #[test]
    fn the_defaults_take_all_or_give_back() {
        let store = Plain::default();
        let run = |asks: &[Ask]| tokio_test::block_on(store.acquire_all(asks));

        // The second limit refuses: the first is given back, the decisions stop there.
        let d = run(&[ask("a", 10, 3), ask("b", 2, 5), ask("c", 10, 1)]).unwrap();
        assert_eq!(d.len(), 2);
        assert!(d[0].allowed && !d[1].allowed);
        assert_eq!(d[0].remaining, 7, "as the first limit alone would answer");
        assert_eq!((store.count("a"), store.count("c")), (0, 0));

        // All fit: all charged, one decision each.
        let d = run(&[ask("a", 10, 3), ask("c", 10, 4)]).unwrap();
        assert!(d.iter().all(|d| d.allowed) && d.len() == 2);
        assert_eq!((store.count("a"), store.count("c")), (3, 4));

        // A failure gives back what was taken before it.
        assert!(run(&[ask("a", 10, 3), ask("down", 10, 1)]).is_err());
        assert_eq!(store.count("a"), 3);

        // Settling carries on past a failure and answers it.
        let change = |key: &str, delta| Change {
            key: key.to_owned(),
            spec: spec(Kind::FixedWindow, 10, 60),
            delta,
        };
        let settled = tokio_test::block_on(store.adjust_all(&[
            change("a", -3),
            change("down", 1),
            change("c", -4),
        ]));
        assert!(settled.is_err());
        assert_eq!((store.count("a"), store.count("c")), (0, 0));

        // Through an `Arc`, as the layer holds its store.
        let shared = std::sync::Arc::new(store);
        let d = tokio_test::block_on(shared.acquire_all(&[ask("a", 1, 1), ask("a", 1, 1)]));
        assert_eq!(d.unwrap().len(), 2);
        assert_eq!(shared.count("a"), 0);
    }

    #[test]
    fn idle_buckets() {
        let s = spec(Kind::FixedWindow, 1, 10);
        let mut b = Bucket::default();
        b.acquire(s, 1, 5 * S);
        assert!(!b.idle(s, 15 * S));
        assert!(b.idle(s, 20 * S));
        let g = spec(Kind::Gcra, 1, 10);
        let mut b = Bucket::default();
        b.acquire(g, 1, 5 * S);
        assert!(!b.idle(g, 14 * S));
        assert!(b.idle(g, 15 * S));
    }
}
