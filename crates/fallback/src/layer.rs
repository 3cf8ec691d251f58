//! [`FallbackLayer`]: configuration, and [`FallbackHandle`]: its live state.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;
use tower_ai_core::Providers;
use tower_layer::Layer;

use crate::breaker::{BreakerConfig, BreakerState, Breakers};
use crate::policy::RetryPolicy;
use crate::route::Route;
use crate::service::Fallback;

/// Tries a request's steps in order with retries, backoff and circuit breakers. See the
/// [crate docs](crate).
///
/// Every clone shares the breakers, the key rings and the counters.
#[derive(Clone, Debug)]
pub struct FallbackLayer {
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) policy: RetryPolicy,
    /// The policy retries or times plain requests too (not just universal and routed
    /// ones): every request runs the attempt loop.
    pub(crate) plain_retries: bool,
    pub(crate) routes: HashMap<Box<str>, Arc<Route>>,
    pub(crate) providers: Providers,
    pub(crate) breakers: Breakers,
    pub(crate) max_body_bytes: usize,
    pub(crate) seed: Option<u64>,
    pub(crate) stats: Stats,
}

/// Counters, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) requests: AtomicU64,
    pub(crate) attempts: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) fallbacks: AtomicU64,
    pub(crate) exhausted: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) stream_failures: AtomicU64,
}

impl Stats {
    pub(crate) fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

impl Default for FallbackLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl FallbackLayer {
    /// A layer with the default [`RetryPolicy`] (one attempt per step, triggers 429 and
    /// 5xx), default breakers (5 failures, 30 s), no routes, the built-in providers and a
    /// 32 MiB request body limit.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                policy: RetryPolicy::default(),
                plain_retries: false,
                routes: HashMap::new(),
                providers: Providers::builtin(),
                breakers: Breakers::new(BreakerConfig::default()),
                max_body_bytes: 32 * 1024 * 1024,
                seed: None,
                stats: Stats::default(),
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::get_mut(&mut self.shared).expect("configure the layer before cloning it")
    }

    /// The policy for every request (a route's own policy wins; `aigw-` headers override
    /// either).
    ///
    /// A policy with more than one attempt or any timeout applies to plain
    /// `/{provider}/...` requests too (retried on their own provider); the default one
    /// leaves them to pass straight through.
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        let shared = self.shared_mut();
        shared.plain_retries = policy.max_attempts > 1
            || policy.attempt_timeout.is_some()
            || policy.total_timeout.is_some()
            || policy.stream_idle_timeout.is_some();
        shared.policy = policy;
        self
    }

    /// Adds a configured route: a request whose `model` is `name` is expanded into the
    /// route's targets.
    pub fn with_route(mut self, name: impl Into<Box<str>>, mut route: Route) -> Self {
        let cool_down = self.shared.breakers.config().cool_down;
        route.build_rings(cool_down);
        self.shared_mut()
            .routes
            .insert(name.into(), Arc::new(route));
        self
    }

    /// The provider registry: which header a target's keys go in, and which error event
    /// format a failed stream ends with. Default: the built-in providers.
    pub fn with_providers(mut self, providers: Providers) -> Self {
        self.shared_mut().providers = providers;
        self
    }

    /// Breaker thresholds. Call before [`with_route`](Self::with_route) for the key
    /// cool-down to follow it too.
    pub fn with_breaker(mut self, config: BreakerConfig) -> Self {
        let shared = self.shared_mut();
        shared.breakers = Breakers::new(config);
        self
    }

    /// The largest request body the layer buffers for replay; larger ones get 413.
    pub fn with_max_body_bytes(mut self, limit: usize) -> Self {
        self.shared_mut().max_body_bytes = limit;
        self
    }

    /// A fixed seed for load balancing, so tests are repeatable.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.shared_mut().seed = Some(seed);
        self
    }

    /// A handle on the layer's live state: breakers and counters.
    pub fn handle(&self) -> FallbackHandle {
        FallbackHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<S> Layer<S> for FallbackLayer {
    type Service = Fallback<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The live state of a [`FallbackLayer`]: breaker states and counters.
#[derive(Clone, Debug)]
pub struct FallbackHandle {
    shared: Arc<Shared>,
}

impl FallbackHandle {
    /// Each target's breaker, by provider name, sorted.
    pub fn breakers(&self) -> Vec<(Arc<str>, BreakerState)> {
        self.shared.breakers.snapshot(Instant::now())
    }

    /// The counters and breaker states in Prometheus text format, to append to
    /// `/metrics`.
    pub fn prometheus(&self) -> String {
        let s = &self.shared.stats;
        let mut out = String::new();
        for (name, help, c) in [
            (
                "aigw_fallback_requests",
                "Requests the fallback layer planned attempts for.",
                &s.requests,
            ),
            (
                "aigw_fallback_attempts",
                "Attempts sent to providers.",
                &s.attempts,
            ),
            (
                "aigw_fallback_retries",
                "Attempts that retried the same step.",
                &s.retries,
            ),
            (
                "aigw_fallback_fallbacks",
                "Requests served by a step after the first.",
                &s.fallbacks,
            ),
            (
                "aigw_fallback_exhausted",
                "Requests whose every step failed.",
                &s.exhausted,
            ),
            (
                "aigw_fallback_skipped",
                "Steps skipped because their circuit was open.",
                &s.skipped,
            ),
            (
                "aigw_fallback_stream_failures",
                "Streams that failed after they were committed.",
                &s.stream_failures,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name}_total {}", c.load(Ordering::Relaxed));
        }
        out.push_str("# HELP aigw_circuit_state Circuit breaker per target: 0 closed, 1 half-open, 2 open.\n# TYPE aigw_circuit_state gauge\n");
        for (target, state) in self.breakers() {
            let _ = writeln!(
                out,
                "aigw_circuit_state{{target=\"{}\"}} {}",
                escape(&target),
                state.as_gauge()
            );
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
