//! [`Aggregates`]: running totals in memory, by provider and model, key and tag.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use dashmap::DashMap;
use serde::Serialize;

use crate::record::{Outcome, Record, Recorder};

/// Distinct keys and tags kept apart before the rest is folded into `other`: memory stays
/// bounded whatever the traffic.
const MAX_ENTRIES: usize = 10_000;

/// Running totals of every record, in memory: overall, by provider and model, by key id
/// and by metadata tag. Recording touches only atomics once an entry exists (a sharded
/// map lookup, no global lock). Cheap to share: wrap it in an `Arc`.
#[derive(Debug, Default)]
pub struct Aggregates {
    totals: Counters,
    by_model: DashMap<(Arc<str>, Arc<str>), Counters>,
    by_key: DashMap<Arc<str>, Counters>,
    by_tag: DashMap<(String, String), Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    cancelled: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    cached_input_tokens: AtomicU64,
    cache_write_tokens: AtomicU64,
    reasoning_tokens: AtomicU64,
    cost_nano_usd: AtomicU64,
    unknown_cost: AtomicU64,
}

/// A copy of some totals.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Requests recorded.
    pub requests: u64,
    /// Requests that failed (the gateway's or the provider's doing).
    pub errors: u64,
    /// Requests the client hung up on.
    pub cancelled: u64,
    /// Input tokens, cached and written included.
    pub input_tokens: u64,
    /// Output tokens, reasoning included.
    pub output_tokens: u64,
    /// Input tokens read from the provider's cache.
    pub cached_input_tokens: u64,
    /// Input tokens written to the provider's cache.
    pub cache_write_tokens: u64,
    /// Output tokens spent reasoning.
    pub reasoning_tokens: u64,
    /// USD of the requests whose cost is known.
    pub cost_usd: f64,
    /// Requests whose cost is not known (unknown usage or model price).
    pub unknown_cost_requests: u64,
}

impl Counters {
    fn add(&self, r: &Record) {
        self.requests.fetch_add(1, Relaxed);
        if r.is_error() {
            self.errors.fetch_add(1, Relaxed);
        }
        if r.outcome == Outcome::Cancelled {
            self.cancelled.fetch_add(1, Relaxed);
        }
        if let Some(u) = &r.usage {
            self.input_tokens.fetch_add(u.input_tokens, Relaxed);
            self.output_tokens.fetch_add(u.output_tokens, Relaxed);
            self.cached_input_tokens
                .fetch_add(u.cached_input_tokens, Relaxed);
            self.cache_write_tokens
                .fetch_add(u.cache_write_tokens, Relaxed);
            self.reasoning_tokens.fetch_add(u.reasoning_tokens, Relaxed);
        }
        match r.cost_usd {
            Some(c) if c.is_finite() && c >= 0.0 => {
                self.cost_nano_usd
                    .fetch_add((c * 1e9).round() as u64, Relaxed);
            }
            _ => {
                self.unknown_cost.fetch_add(1, Relaxed);
            }
        }
    }

    fn get(&self) -> Totals {
        Totals {
            requests: self.requests.load(Relaxed),
            errors: self.errors.load(Relaxed),
            cancelled: self.cancelled.load(Relaxed),
            input_tokens: self.input_tokens.load(Relaxed),
            output_tokens: self.output_tokens.load(Relaxed),
            cached_input_tokens: self.cached_input_tokens.load(Relaxed),
            cache_write_tokens: self.cache_write_tokens.load(Relaxed),
            reasoning_tokens: self.reasoning_tokens.load(Relaxed),
            cost_usd: self.cost_nano_usd.load(Relaxed) as f64 / 1e9,
            unknown_cost_requests: self.unknown_cost.load(Relaxed),
        }
    }
}

fn bump<K>(map: &DashMap<K, Counters>, key: K, other: impl FnOnce() -> K, r: &Record)
where
    K: std::hash::Hash + Eq,
{
    if let Some(c) = map.get(&key) {
        c.add(r);
        return;
    }
    let key = if map.len() >= MAX_ENTRIES {
        other()
    } else {
        key
    };
    map.entry(key).or_default().add(r);
}

impl Aggregates {
    /// Empty totals.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything recorded.
    pub fn totals(&self) -> Totals {
        self.totals.get()
    }

    /// By provider and model (`""` for requests without a model), largest first. Past
    /// 10,000 pairs, the rest are counted under (`other`, `other`).
    pub fn by_model(&self) -> Vec<(String, String, Totals)> {
        let mut v: Vec<_> = self
            .by_model
            .iter()
            .map(|e| {
                (
                    e.key().0.to_string(),
                    e.key().1.to_string(),
                    e.value().get(),
                )
            })
            .collect();
        v.sort_by(|a, b| {
            b.2.requests
                .cmp(&a.2.requests)
                .then_with(|| a.0.cmp(&b.0))
                .then_with(|| a.1.cmp(&b.1))
        });
        v
    }

    /// By hashed key id, largest first.
    pub fn by_key(&self) -> Vec<(String, Totals)> {
        let mut v: Vec<_> = self
            .by_key
            .iter()
            .map(|e| (e.key().to_string(), e.value().get()))
            .collect();
        v.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// By metadata tag (`key`, `value`), largest first.
    pub fn by_tag(&self) -> Vec<(String, String, Totals)> {
        let mut v: Vec<_> = self
            .by_tag
            .iter()
            .map(|e| (e.key().0.clone(), e.key().1.clone(), e.value().get()))
            .collect();
        v.sort_by(|a, b| {
            b.2.requests
                .cmp(&a.2.requests)
                .then_with(|| a.0.cmp(&b.0))
                .then_with(|| a.1.cmp(&b.1))
        });
        v
    }
}

impl Recorder for Aggregates {
    fn record(&self, r: &Record) {
        self.totals.add(r);
        let model: Arc<str> = r.model.clone().unwrap_or_else(|| Arc::from(""));
        // One overflow entry for all: a per-provider one would grow with the providers.
        bump(
            &self.by_model,
            (r.provider.clone(), model),
            || (Arc::from("other"), Arc::from("other")),
            r,
        );
        if let Some(k) = &r.key_id {
            bump(&self.by_key, k.clone(), || Arc::from("other"), r);
        }
        for (k, v) in &r.metadata {
            bump(
                &self.by_tag,
                (k.clone(), v.clone()),
                || ("other".to_owned(), "other".to_owned()),
                r,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use tower_ai_core::{Operation, Usage};

    use super::*;
    use crate::record::{ErrorOrigin, UsageSource};

    pub(crate) fn record(model: &str, key: &str, input: u64, cost: Option<f64>) -> Record {
        Record {
            request_id: None,
            started_at: SystemTime::now(),
            duration: Duration::from_millis(10),
            ttft: Some(Duration::from_millis(2)),
            gateway: None,
            provider: Arc::from("openai"),
            model: Some(Arc::from(model)),
            operation: Operation::ChatCompletions,
            stream: false,
            key_id: Some(Arc::from(key)),
            metadata: vec![("team".into(), "a".into())],
            status: Some(200),
            outcome: Outcome::Complete,
            error_origin: None,
            usage: Some(Usage {
                input_tokens: input,
                output_tokens: 2,
                ..Usage::default()
            }),
            usage_source: UsageSource::Reported,
            cost_usd: cost,
            cache_status: None,
            fallback_step: None,
        }
    }

    #[test]
    fn totals_by_model_key_and_tag() {
        let a = Aggregates::new();
        a.record(&record("m1", "k1", 10, Some(0.5)));
        a.record(&record("m1", "k2", 5, Some(0.25)));
        let mut failed = record("m2", "k1", 1, None);
        failed.error_origin = Some(ErrorOrigin::Provider);
        failed.outcome = Outcome::Cancelled;
        a.record(&failed);
        let t = a.totals();
        assert_eq!((t.requests, t.errors, t.cancelled), (3, 1, 1));
        assert_eq!(t.input_tokens, 16);
        assert_eq!(t.output_tokens, 6);
        assert!((t.cost_usd - 0.75).abs() < 1e-9);
        assert_eq!(t.unknown_cost_requests, 1);
        let by_model = a.by_model();
        assert_eq!(by_model[0].1, "m1");
        assert_eq!(by_model[0].2.requests, 2);
        assert_eq!(a.by_key().len(), 2);
        assert_eq!(a.by_tag()[0].2.requests, 3);
    }

    #[test]
    fn provider_and_model_pairs_are_bounded() {
        let a = Aggregates::new();
        for i in 0..MAX_ENTRIES + 50 {
            // A new provider each time: past the cap, still one overflow entry.
            let mut r = record("m", "k", 1, None);
            r.provider = Arc::from(format!("p{i}"));
            a.record(&r);
        }
        let by_model = a.by_model();
        assert_eq!(by_model.len(), MAX_ENTRIES + 1);
        let other: Vec<_> = by_model.iter().filter(|(_, m, _)| m == "other").collect();
        assert_eq!(other.len(), 1);
        assert_eq!((other[0].0.as_str(), other[0].2.requests), ("other", 50));
    }

    #[test]
    fn distinct_keys_are_bounded() {
        let a = Aggregates::new();
        for i in 0..MAX_ENTRIES + 50 {
            a.record(&record("m", &format!("k{i}"), 1, None));
        }
        assert_eq!(a.by_key().len(), MAX_ENTRIES + 1);
        let other = a.by_key().into_iter().find(|(k, _)| k == "other").unwrap();
        assert_eq!(other.1.requests, 50);
    }
}
