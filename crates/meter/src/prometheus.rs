//! [`PrometheusRecorder`]: the meter's figures in Prometheus' text exposition format.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tower_ai_core::CacheStatus;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::record::{ErrorOrigin, Outcome, Record, Recorder};

/// Distinct model labels per provider before the rest are labelled `other`: label
/// cardinality stays bounded whatever names clients send.
const MAX_MODELS: usize = 256;
/// Distinct (provider, model) label pairs in all before the rest are folded: into
/// (provider, `other`) for a provider already labelled, else (`unknown`, `other`).
const MAX_PAIRS: usize = 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    provider: String,
    model: String,
    status: String,
    outcome: String,
    cache: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    provider: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    provider: String,
    model: String,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    provider: String,
    model: String,
    origin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

type Hist = Family<ProviderLabels, Histogram, fn() -> Histogram>;

/// Counters and histograms of every record, exposed in Prometheus' text format by
/// [`encode`](Self::encode) (the gateway serves it on `GET /metrics`):
///
/// - `aigw_requests_total{provider,model,status,outcome,cache}`
/// - `aigw_errors_total{provider,model,origin}`: `origin` is `gateway` or `provider`
/// - `aigw_tokens_total{provider,model,type}`: `type` is `input`, `output`,
///   `cached_input`, `cache_write` or `reasoning`
/// - `aigw_cost_usd_total{provider,model}`, and `aigw_unknown_cost_requests_total`
/// - `aigw_request_duration_seconds`, `aigw_time_to_first_token_seconds` and
///   `aigw_time_per_output_token_seconds` histograms by provider
///
/// Labels are bounded whatever clients send: past 256 distinct models a provider's others
/// are `other`, and past 1024 (provider, model) pairs in all, the rest are (provider,
/// `other`) for a provider already seen and (`unknown`, `other`) otherwise.
#[derive(Clone)]
pub struct PrometheusRecorder {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<ModelLabels, Counter<f64, AtomicU64>>,
    unknown_cost: Family<ModelLabels, Counter>,
    duration: Hist,
    ttft: Hist,
    tpot: Hist,
    labels: Mutex<Labels>,
    /// Each labelled (provider, model) pair's series, by the names records carry: a
    /// record finds its counters with two map lookups instead of building label sets
    /// (a dozen `String`s) and looking each family up. Pairs folded into `other` are not
    /// kept here (their names are unbounded); they take the long way.
    series: RwLock<HashMap<Arc<str>, ByModel, foldhash::fast::RandomState>>,
}

/// A provider's series, by the model names records carry.
type ByModel = HashMap<Arc<str>, Arc<Series>, foldhash::fast::RandomState>;

/// The series of one (provider, model) label pair, each made when first needed (a
/// series appears in the exposition once it is made).
struct Series {
    provider: String,
    model: String,
    /// By (status, outcome, cache status): a handful per pair.
    requests: RwLock<Vec<(RequestKey, Counter)>>,
    errors: [OnceLock<Counter>; 2],
    tokens: [OnceLock<Counter>; 5],
    cost: OnceLock<Counter<f64, AtomicU64>>,
    unknown_cost: OnceLock<Counter>,
    duration: OnceLock<Histogram>,
    ttft: OnceLock<Histogram>,
    tpot: OnceLock<Histogram>,
}

type RequestKey = (Option<u16>, Outcome, Option<CacheStatus>);

/// The `type` label of `tokens`, in the order of [`Series::tokens`].
const TOKEN_TYPES: [&str; 5] = [
    "input",
    "output",
    "cached_input",
    "cache_write",
    "reasoning",
];

impl Series {
    fn new((provider, model): (String, String)) -> Self {
        Self {
            provider,
            model,
            requests: RwLock::default(),
            errors: Default::default(),
            tokens: Default::default(),
            cost: OnceLock::new(),
            unknown_cost: OnceLock::new(),
            duration: OnceLock::new(),
            ttft: OnceLock::new(),
            tpot: OnceLock::new(),
        }
    }

    fn model_labels(&self) -> ModelLabels {
        ModelLabels {
            provider: self.provider.clone(),
            model: self.model.clone(),
        }
    }

    fn provider_labels(&self) -> ProviderLabels {
        ProviderLabels {
            provider: self.provider.clone(),
        }
    }

    fn requests(&self, family: &Family<RequestLabels, Counter>, key: RequestKey) -> Counter {
        let found = |v: &Vec<(RequestKey, Counter)>| {
            v.iter().find(|(k, _)| *k == key).map(|(_, c)| c.clone())
        };
        if let Some(c) = found(&self.requests.read().unwrap_or_else(|e| e.into_inner())) {
            return c;
        }
        let mut v = self.requests.write().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = found(&v) {
            return c;
        }
        let (status, outcome, cache) = key;
        let c = family
            .get_or_create(&RequestLabels {
                provider: self.provider.clone(),
                model: self.model.clone(),
                status: status.map_or_else(|| "none".to_owned(), |s| s.to_string()),
                outcome: outcome.as_str().to_owned(),
                cache: cache.map_or("none", |c| c.as_str()).to_owned(),
            })
            .clone();
        v.push((key, c.clone()));
        c
    }
}

/// The (provider, model) label pairs handed out so far.
#[derive(Default)]
struct Labels {
    models: HashMap<String, HashSet<String>>,
    pairs: usize,
}

impl Labels {
    /// The (provider, model) labels a record gets.
    fn get(&mut self, provider: &str, model: &str) -> (String, String) {
        const OTHER: &str = "other";
        if let Some(models) = self.models.get_mut(provider) {
            if models.contains(model) {
                return (provider.to_owned(), model.to_owned());
            }
            if models.len() >= MAX_MODELS || self.pairs >= MAX_PAIRS {
                return (provider.to_owned(), OTHER.to_owned());
            }
            models.insert(model.to_owned());
            self.pairs += 1;
            return (provider.to_owned(), model.to_owned());
        }
        if self.pairs >= MAX_PAIRS {
            return ("unknown".to_owned(), OTHER.to_owned());
        }
        self.models
            .insert(provider.to_owned(), HashSet::from([model.to_owned()]));
        self.pairs += 1;
        (provider.to_owned(), model.to_owned())
    }
}

impl std::fmt::Debug for PrometheusRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusRecorder").finish_non_exhaustive()
    }
}

impl Default for PrometheusRecorder {
    fn default() -> Self {
        Self::new()
    }
}

fn seconds_buckets() -> Histogram {
    // 5 ms .. ~80 s
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

fn per_token_buckets() -> Histogram {
    // 0.5 ms .. ~1 s per token
    Histogram::new(exponential_buckets(0.0005, 2.0, 12))
}

impl PrometheusRecorder {
    /// A recorder with its own registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("aigw");
        let requests = Family::<RequestLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let tokens = Family::<TokenLabels, Counter>::default();
        let cost = Family::<ModelLabels, Counter<f64, AtomicU64>>::default();
        let unknown_cost = Family::<ModelLabels, Counter>::default();
        let duration: Hist = Family::new_with_constructor(seconds_buckets);
        let ttft: Hist = Family::new_with_constructor(seconds_buckets);
        let tpot: Hist = Family::new_with_constructor(per_token_buckets);
        registry.register(
            "requests",
            "LLM requests that passed the meter",
            requests.clone(),
        );
        registry.register(
            "errors",
            "Failed requests, by who failed them (gateway or provider)",
            errors.clone(),
        );
        registry.register("tokens", "Tokens, by type", tokens.clone());
        registry.register(
            "cost_usd",
            "Cost in USD of requests whose cost is known",
            cost.clone(),
        );
        registry.register(
            "unknown_cost_requests",
            "Requests whose cost is unknown (no usage or no price for the model)",
            unknown_cost.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "From the request to the end of the response body",
            duration.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "From the request to the first byte of the response body",
            ttft.clone(),
        );
        registry.register(
            "time_per_output_token_seconds",
            "Generation time after the first byte, per output token",
            tpot.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                errors,
                tokens,
                cost,
                unknown_cost,
                duration,
                ttft,
                tpot,
                labels: Mutex::new(Labels::default()),
                series: RwLock::default(),
            }),
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The series a record with `provider` and `model` counts in.
    fn series(&self, provider: &Arc<str>, model: Option<&Arc<str>>) -> Arc<Series> {
        let model_name = model.map_or("", |m| m);
        {
            let series = self.inner.series.read().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = series.get(&**provider).and_then(|m| m.get(model_name)) {
                return s.clone();
            }
        }
        let labels = {
            let mut labels = self.inner.labels.lock().unwrap_or_else(|e| e.into_inner());
            labels.get(provider, model_name)
        };
        let kept = labels.0 == **provider && labels.1 == model_name;
        let s = Arc::new(Series::new(labels));
        if kept {
            let mut series = self.inner.series.write().unwrap_or_else(|e| e.into_inner());
            let by_model = series.entry(provider.clone()).or_default();
            let model: Arc<str> = model.cloned().unwrap_or_else(|| Arc::from(""));
            return by_model.entry(model).or_insert(s).clone();
        }
        s
    }
}

impl Recorder for PrometheusRecorder {
    fn record(&self, r: &Record) {
        let i = &self.inner;
        let s = self.series(&r.provider, r.model.as_ref());
        s.requests(&i.requests, (r.status, r.outcome, r.cache_status))
            .inc();
        if let Some(origin) = r.error_origin {
            let slot = match origin {
                ErrorOrigin::Gateway => 0,
                ErrorOrigin::Provider => 1,
            };
            s.errors[slot]
                .get_or_init(|| {
                    i.errors
                        .get_or_create(&ErrorLabels {
                            provider: s.provider.clone(),
                            model: s.model.clone(),
                            origin: origin.as_str(),
                        })
                        .clone()
                })
                .inc();
        }
        if let Some(u) = &r.usage {
            let counts = [
                u.input_tokens,
                u.output_tokens,
                u.cached_input_tokens,
                u.cache_write_tokens,
                u.reasoning_tokens,
            ];
            for ((slot, kind), n) in s.tokens.iter().zip(TOKEN_TYPES).zip(counts) {
                if n > 0 {
                    slot.get_or_init(|| {
                        i.tokens
                            .get_or_create(&TokenLabels {
                                provider: s.provider.clone(),
                                model: s.model.clone(),
                                r#type: kind,
                            })
                            .clone()
                    })
                    .inc_by(n);
                }
            }
        }
        match r.cost_usd {
            Some(c) if c.is_finite() && c >= 0.0 => {
                s.cost
                    .get_or_init(|| i.cost.get_or_create(&s.model_labels()).clone())
                    .inc_by(c);
            }
            _ => {
                s.unknown_cost
                    .get_or_init(|| i.unknown_cost.get_or_create(&s.model_labels()).clone())
                    .inc();
            }
        }
        s.duration
            .get_or_init(|| i.duration.get_or_create(&s.provider_labels()).clone())
            .observe(r.duration.as_secs_f64());
        if let Some(t) = r.ttft {
            s.ttft
                .get_or_init(|| i.ttft.get_or_create(&s.provider_labels()).clone())
                .observe(t.as_secs_f64());
        }
        if let Some(t) = r.time_per_output_token() {
            s.tpot
                .get_or_init(|| i.tpot.get_or_create(&s.provider_labels()).clone())
                .observe(t.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use tower_ai_core::Operation;

    use super::*;
    use crate::record::{Outcome, UsageSource};

    fn record(provider: &str, model: &str) -> Record {
        Record {
            request_id: None,
            started_at: SystemTime::now(),
            duration: Duration::from_millis(1),
            ttft: None,
            gateway: None,
            provider: Arc::from(provider),
            model: Some(Arc::from(model)),
            operation: Operation::ChatCompletions,
            stream: false,
            key_id: None,
            metadata: Vec::new(),
            status: Some(200),
            outcome: Outcome::Complete,
            error_origin: None,
            usage: None,
            usage_source: UsageSource::Unknown,
            cost_usd: None,
            cache_status: None,
            fallback_step: None,
        }
    }

    fn series(text: &str) -> HashSet<(String, String)> {
        text.lines()
            .filter(|l| l.starts_with("aigw_requests_total{"))
            .map(|l| {
                let p = l
                    .split("provider=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                let m = l
                    .split("model=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                (p.to_owned(), m.to_owned())
            })
            .collect()
    }

    #[test]
    fn models_per_provider_are_bounded() {
        let p = PrometheusRecorder::new();
        for i in 0..MAX_MODELS + 10 {
            p.record(&record("openai", &format!("m{i}")));
        }
        let s = series(&p.encode());
        assert_eq!(s.len(), MAX_MODELS + 1);
        assert!(s.contains(&("openai".into(), "other".into())));
    }

    #[test]
    fn label_pairs_are_bounded_in_all() {
        let p = PrometheusRecorder::new();
        // Many providers with a few models each: each provider is under its own cap,
        // the total is not.
        for prov in 0..200 {
            for m in 0..10 {
                p.record(&record(&format!("p{prov}"), &format!("m{m}")));
            }
        }
        let s = series(&p.encode());
        let real = s.iter().filter(|(_, m)| m != "other").count();
        assert_eq!(real, MAX_PAIRS);
        // Past the cap, a provider already labelled keeps its name ...
        assert!(s.contains(&("p102".into(), "other".into())), "{s:?}");
        // ... and a new one is `unknown`.
        assert!(s.contains(&("unknown".into(), "other".into())));
        assert!(!s.iter().any(|(p, _)| p == "p150"));
        assert!(s.len() <= MAX_PAIRS + 200 + 1);
        // Seen pairs still count under their own labels.
        p.record(&record("p0", "m0"));
        assert!(p.encode().contains(r#"aigw_requests_total{provider="p0",model="m0",status="200",outcome="complete",cache="none"} 2"#));
    }

    #[test]
    fn every_series_counts_across_records_and_appears_when_first_needed() {
        let p = PrometheusRecorder::new();
        let ok = || {
            let mut r = record("openai", "gpt-4o-mini");
            r.usage = Some(tower_ai_core::Usage {
                input_tokens: 10,
                output_tokens: 5,
                ..Default::default()
            });
            r.cost_usd = Some(0.25);
            r.ttft = Some(Duration::from_millis(2));
            r
        };
        p.record(&ok());
        p.record(&ok());
        let mut hit = ok();
        hit.cache_status = Some(CacheStatus::Hit);
        p.record(&hit);
        let mut failed = record("openai", "gpt-4o-mini");
        failed.status = Some(502);
        failed.outcome = Outcome::Failed;
        failed.error_origin = Some(ErrorOrigin::Provider);
        p.record(&failed);
        let mut refused = record("openai", "gpt-4o-mini");
        refused.status = Some(429);
        refused.error_origin = Some(ErrorOrigin::Gateway);
        p.record(&refused);
        let mut none = record("anthropic", "");
        none.model = None;
        none.status = None;
        p.record(&none);
        p.record(&none);

        let text = p.encode();
        let m = r#"provider="openai",model="gpt-4o-mini""#;
        for line in [
            format!(r#"aigw_requests_total{{{m},status="200",outcome="complete",cache="none"}} 2"#),
            format!(r#"aigw_requests_total{{{m},status="200",outcome="complete",cache="HIT"}} 1"#),
            format!(r#"aigw_requests_total{{{m},status="502",outcome="failed",cache="none"}} 1"#),
            format!(r#"aigw_requests_total{{{m},status="429",outcome="complete",cache="none"}} 1"#),
            r#"aigw_requests_total{provider="anthropic",model="",status="none",outcome="complete",cache="none"} 2"#.to_owned(),
            format!(r#"aigw_errors_total{{{m},origin="provider"}} 1"#),
            format!(r#"aigw_errors_total{{{m},origin="gateway"}} 1"#),
            format!(r#"aigw_tokens_total{{{m},type="input"}} 30"#),
            format!(r#"aigw_tokens_total{{{m},type="output"}} 15"#),
            format!(r#"aigw_cost_usd_total{{{m}}} 0.75"#),
            format!(r#"aigw_unknown_cost_requests_total{{{m}}} 2"#),
            r#"aigw_unknown_cost_requests_total{provider="anthropic",model=""} 2"#.to_owned(),
            r#"aigw_request_duration_seconds_count{provider="openai"} 5"#.to_owned(),
            r#"aigw_time_to_first_token_seconds_count{provider="openai"} 3"#.to_owned(),
        ] {
            assert!(text.contains(&line), "missing {line}\n{text}");
        }
        // Token kinds never counted have no series; nor has a provider without a ttft.
        assert!(!text.contains(r#"type="reasoning""#), "{text}");
        assert!(!text.contains(r#"aigw_time_to_first_token_seconds_count{provider="anthropic"}"#));
    }

    #[test]
    fn folded_pairs_count_in_their_folded_series() {
        let p = PrometheusRecorder::new();
        for i in 0..MAX_MODELS {
            p.record(&record("openai", &format!("m{i}")));
        }
        // Two new names past the cap: one `other` series, counted twice, and the
        // names are not kept.
        p.record(&record("openai", "late-1"));
        p.record(&record("openai", "late-2"));
        p.record(&record("openai", "late-1"));
        let text = p.encode();
        assert!(text.contains(r#"aigw_requests_total{provider="openai",model="other",status="200",outcome="complete",cache="none"} 3"#), "{text}");
        let series = p.inner.series.read().unwrap();
        assert_eq!(series["openai"].len(), MAX_MODELS);
        assert!(!series["openai"].contains_key("late-1"));
    }
}
