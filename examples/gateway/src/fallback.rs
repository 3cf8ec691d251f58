//! `[fallback]`: retries, breakers and configured routes in the gateway.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use tower_ai_core::Providers;
use tower_ai_fallback::{
    Backoff, BreakerConfig, FallbackLayer, MAX_ATTEMPTS, RetryPolicy, Route, Target, Triggers,
};

use crate::config::{ConfigError, Secret};

/// `[fallback]`: the policy for every request, breakers, and `[fallback.routes.NAME]`.
///
/// Every request's `aigw-max-attempts`, `aigw-retry-delay`, `aigw-backoff` and
/// `aigw-request-timeout` override the policy; the universal endpoint (`POST /`) is
/// always on.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FallbackConfig {
    /// The policy for every request (a route's own fields win).
    #[serde(flatten)]
    pub policy: PolicyConfig,
    /// Failures within `breaker_window_secs` that open a target's circuit (when they are
    /// also at least `breaker_failure_ratio` of its attempts); 0 = no breakers. Default 5.
    pub breaker_failures: u32,
    /// The share of a target's attempts in the window that must have failed. Default 0.5.
    pub breaker_failure_ratio: f64,
    /// The rolling window outcomes are counted over, s. Default 10.
    pub breaker_window_secs: u64,
    /// How long an open circuit skips its target before one probe, s. Default 30.
    pub breaker_cool_down_secs: u64,
    /// Named routes: a request whose `model` is the name goes to the route's targets.
    pub routes: BTreeMap<String, RouteConfig>,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        Self {
            policy: PolicyConfig::default(),
            breaker_failures: 5,
            breaker_failure_ratio: 0.5,
            breaker_window_secs: 10,
            breaker_cool_down_secs: 30,
            routes: BTreeMap::new(),
        }
    }
}

/// Retry and timing fields, at `[fallback]` and on each route. Unset fields inherit.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Attempts per step (1 = no retry). Default 1.
    pub max_attempts: Option<u32>,
    /// Base delay between attempts on one step, ms. Default 100.
    pub retry_delay_ms: Option<u64>,
    /// `constant`, `linear` or `exponential` (default), optionally with `-jitter`.
    pub backoff: Option<String>,
    /// No retry waits longer (backoff or `retry-after`), ms. Default 30000.
    pub max_retry_delay_ms: Option<u64>,
    /// Per attempt: time to the response head (for a stream, its first byte), ms.
    pub request_timeout_ms: Option<u64>,
    /// The whole chain of attempts, ms.
    pub total_timeout_ms: Option<u64>,
    /// A stream with no frame for this long has failed, ms.
    pub stream_idle_timeout_ms: Option<u64>,
    /// How long a stream's content-free start-up events may be held back, ms. Default 2000.
    pub stream_hold_ms: Option<u64>,
    /// Statuses that move on: codes or classes (`"5xx"`). Default `["429", "5xx"]`.
    pub retry_on: Option<Vec<String>>,
}

/// `[fallback.routes.NAME]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// The route's own policy fields.
    #[serde(flatten)]
    pub policy: PolicyConfig,
    /// The targets, tried in order (or by `rank`, weighted within a rank).
    pub targets: Vec<TargetConfig>,
}

/// `[[fallback.routes.NAME.targets]]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetConfig {
    /// The provider (a built-in or a `[providers.NAME]`).
    pub provider: String,
    /// The model to ask it for.
    pub model: Option<String>,
    /// The path at the provider, when not the client's (e.g. `v1/messages`).
    pub endpoint: Option<String>,
    /// Top-level body fields to set (`temperature`, `max_tokens`, ...).
    pub overrides: toml::Table,
    /// Headers to set.
    pub headers: BTreeMap<String, String>,
    /// Environment variables holding this target's provider keys (rotated on 429,
    /// benched on 401/402/403).
    pub keys_env: Vec<String>,
    /// Keys written in the file (prefer `keys_env`).
    pub keys: Vec<Secret>,
    /// Share of traffic among targets of the same rank. Default 1.
    pub weight: Option<u32>,
    /// Lower ranks are tried first; default: the target's position.
    pub rank: Option<u32>,
}

fn err(m: String) -> ConfigError {
    ConfigError::new(m)
}

impl PolicyConfig {
    fn apply(&self, mut p: RetryPolicy, at: &str) -> Result<RetryPolicy, ConfigError> {
        let ms = Duration::from_millis;
        if let Some(n) = self.max_attempts {
            if !(1..=MAX_ATTEMPTS).contains(&n) {
                return Err(err(format!(
                    "{at}.max_attempts must be between 1 and {MAX_ATTEMPTS}"
                )));
            }
            p.max_attempts = n;
        }
        if let Some(d) = self.retry_delay_ms {
            p.retry_delay = ms(d);
        }
        if let Some(b) = &self.backoff {
            let (backoff, jitter) = Backoff::parse(b).ok_or_else(|| {
                err(format!(
                    "{at}.backoff must be constant, linear or exponential (optionally -jitter), not `{b}`"
                ))
            })?;
            p.backoff = backoff;
            p.jitter = jitter;
        }
        if let Some(d) = self.max_retry_delay_ms {
            p.max_retry_delay = ms(d);
        }
        for (v, name, slot) in [
            (
                self.request_timeout_ms,
                "request_timeout_ms",
                &mut p.attempt_timeout,
            ),
            (
                self.total_timeout_ms,
                "total_timeout_ms",
                &mut p.total_timeout,
            ),
            (
                self.stream_idle_timeout_ms,
                "stream_idle_timeout_ms",
                &mut p.stream_idle_timeout,
            ),
        ] {
            if let Some(v) = v {
                if v == 0 {
                    return Err(err(format!(
                        "{at}.{name} must be > 0 (leave it out for none)"
                    )));
                }
                *slot = Some(ms(v));
            }
        }
        if let Some(h) = self.stream_hold_ms {
            p.stream_hold = ms(h);
        }
        if let Some(list) = &self.retry_on {
            p.triggers = Triggers::parse(list.iter().map(String::as_str))
                .map_err(|e| err(format!("{at}.retry_on: {e}")))?;
        }
        Ok(p)
    }
}

impl FallbackConfig {
    /// The layer this section describes. Routes' providers must be in `providers`.
    pub fn layer(&self, providers: &Providers) -> Result<FallbackLayer, ConfigError> {
        let policy = self.policy.apply(RetryPolicy::default(), "fallback")?;
        if !(0.0..=1.0).contains(&self.breaker_failure_ratio) {
            return Err(err(
                "fallback.breaker_failure_ratio must be between 0.0 and 1.0".into(),
            ));
        }
        if self.breaker_window_secs == 0 {
            return Err(err("fallback.breaker_window_secs must be > 0".into()));
        }
        let mut layer = FallbackLayer::new()
            .with_policy(policy.clone())
            .with_providers(providers.clone())
            .with_breaker(BreakerConfig {
                failures: self.breaker_failures,
                failure_ratio: self.breaker_failure_ratio,
                window: Duration::from_secs(self.breaker_window_secs),
                cool_down: Duration::from_secs(self.breaker_cool_down_secs),
            });
        for (name, rc) in &self.routes {
            let at = format!("fallback.routes.{name}");
            let mut targets = Vec::with_capacity(rc.targets.len());
            for (i, tc) in rc.targets.iter().enumerate() {
                targets.push(tc.target(&format!("{at}.targets[{i}]"), providers)?);
            }
            let route = Route::new(targets)
                .map_err(|e| err(format!("{at}: {e}")))?
                .with_policy(rc.policy.apply(policy.clone(), &at)?);
            layer = layer.with_route(name.as_str(), route);
        }
        Ok(layer)
    }
}

impl TargetConfig {
    fn target(&self, at: &str, providers: &Providers) -> Result<Target, ConfigError> {
        if providers.get(&self.provider).is_none() && self.provider != "compat" {
            return Err(err(format!(
                "{at}.provider: unknown provider `{}`",
                self.provider
            )));
        }
        let mut t = Target::new(self.provider.as_str());
        if let Some(m) = &self.model {
            t = t.with_model(m.clone());
        }
        if let Some(e) = &self.endpoint {
            t = t.with_endpoint(e.clone());
        }
        if !self.overrides.is_empty() {
            let v = serde_json::to_value(&self.overrides)
                .map_err(|e| err(format!("{at}.overrides: {e}")))?;
            if let serde_json::Value::Object(map) = v {
                t = t.with_overrides(map);
            }
        }
        for (k, v) in &self.headers {
            let name = HeaderName::try_from(k.as_str())
                .map_err(|_| err(format!("{at}.headers: `{k}` is not a header name")))?;
            let value = HeaderValue::try_from(v.as_str())
                .map_err(|_| err(format!("{at}.headers.{k}: not a valid header value")))?;
            t = t.with_header(name, value);
        }
        let mut keys: Vec<String> = self.keys.iter().map(|k| k.expose().to_owned()).collect();
        for var in &self.keys_env {
            keys.push(std::env::var(var).map_err(|_| {
                err(format!(
                    "{at}.keys_env: environment variable {var} is not set"
                ))
            })?);
        }
        if keys
            .iter()
            .any(|k| HeaderValue::try_from(k.as_str()).is_err())
        {
            return Err(err(format!("{at}: a key is not a valid header value")));
        }
        if !keys.is_empty() {
            t = t.with_keys(keys);
        }
        if let Some(w) = self.weight {
            t = t.with_weight(w);
        }
        if let Some(r) = self.rank {
            t = t.with_rank(r);
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn routes_and_policy_from_toml() {
        let c = Config::from_toml(
            r#"
            [fallback]
            max_attempts = 2
            backoff = "linear-jitter"
            retry_on = ["429", "5xx", "408"]
            breaker_failures = 3

            [fallback.routes.fast]
            request_timeout_ms = 1500
            [[fallback.routes.fast.targets]]
            provider = "openai"
            model = "gpt-4o-mini"
            overrides = { temperature = 0.2 }
            weight = 3
            rank = 0
            [[fallback.routes.fast.targets]]
            provider = "groq"
            model = "llama-3.3-70b"
            keys = ["gsk-1", "gsk-2"]
            headers = { "x-team" = "search" }
            rank = 0
            "#,
        )
        .unwrap();
        let providers = c.providers().unwrap();
        c.fallback.layer(&providers).unwrap();
    }

    #[test]
    fn bad_sections_say_what_is_wrong() {
        for (toml, says) in [
            ("[fallback]\nmax_attempts = 0", "fallback.max_attempts"),
            ("[fallback]\nmax_attempts = 99", "fallback.max_attempts"),
            ("[fallback]\nbackoff = \"fibonacci\"", "fallback.backoff"),
            ("[fallback]\nretry_on = [\"7xx\"]", "fallback.retry_on"),
            ("[fallback]\nrequest_timeout_ms = 0", "request_timeout_ms"),
            (
                "[fallback]\nbreaker_failure_ratio = 1.5",
                "breaker_failure_ratio",
            ),
            ("[fallback]\nbreaker_window_secs = 0", "breaker_window_secs"),
            ("[fallback.routes.r]\ntargets = []", "at least one target"),
            (
                "[[fallback.routes.r.targets]]\nprovider = \"nope\"",
                "unknown provider `nope`",
            ),
            (
                "[[fallback.routes.r.targets]]\nprovider = \"openai\"\nkeys_env = [\"TOWER_AI_SURELY_UNSET\"]",
                "TOWER_AI_SURELY_UNSET",
            ),
            (
                "[[fallback.routes.r.targets]]\nprovider = \"openai\"\nheaders = { \"a b\" = \"1\" }",
                "not a header name",
            ),
        ] {
            let c = Config::from_toml(toml).unwrap();
            let e = c.fallback.layer(&c.providers().unwrap()).unwrap_err();
            assert!(e.to_string().contains(says), "{toml}: {e}");
        }
    }
}
