//! `[ratelimit]`: the gateway's limits, from configuration to a `RateLimitLayer`.

use std::time::Duration;

use serde::Deserialize;
use tower_ai_ratelimit::{
    Algorithm, KeyPart, Limit, MemoryStore, Quantity, RateLimitLayer, RedisStore,
};

use crate::config::ConfigError;

/// `[ratelimit]`
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// `memory` (default) or `redis` (limits shared by every replica).
    pub store: String,
    /// The Redis server, for `store = "redis"`.
    pub redis_url: String,
    /// Prefix of every Redis key.
    pub redis_prefix: String,
    /// When the store cannot answer: admit (true, default) or refuse with 503.
    pub fail_open: bool,
    /// Output tokens reserved for a request that names no `max_tokens`. Default 1024.
    pub default_max_tokens: u64,
    /// The limits.
    pub limits: Vec<LimitConfig>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            store: "memory".to_owned(),
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            redis_prefix: "aigw:rl:".to_owned(),
            fail_open: true,
            default_max_tokens: 1024,
            limits: Vec::new(),
        }
    }
}

/// `[[ratelimit.limits]]`: exactly one of `requests`, `tokens`, `cost_usd`, `concurrency`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Name, shown in `ratelimit-policy` and in 429 messages.
    pub name: String,
    /// What a bucket is per: `global`, `api_key`, `ip`, `model`, `provider`,
    /// `header:NAME`, `metadata:FIELD`, or a list of them. Default `global`.
    #[serde(default)]
    pub key: KeySpec,
    /// `fixed`, `sliding` or `gcra` (default).
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Requests per period.
    pub requests: Option<u64>,
    /// Tokens (input + output) per period.
    pub tokens: Option<u64>,
    /// USD per period.
    pub cost_usd: Option<f64>,
    /// Requests in flight at once.
    pub concurrency: Option<u64>,
    /// The period: `30s`, `1m`, `1h`, `1d` (or a number of seconds). Default `1m`.
    #[serde(default)]
    pub period: Option<toml::Value>,
}

/// One key part or a list of them.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum KeySpec {
    /// One part.
    One(String),
    /// Several parts: a bucket per combination.
    Many(Vec<String>),
}

impl Default for KeySpec {
    fn default() -> Self {
        Self::One("global".to_owned())
    }
}

fn period(name: &str, v: &Option<toml::Value>) -> Result<Duration, ConfigError> {
    let bad = || {
        ConfigError::new(format!(
            "ratelimit.limits `{name}`: period must be like 30s, 1m, 1h, 1d or seconds"
        ))
    };
    match v {
        None => Ok(Duration::from_secs(60)),
        Some(toml::Value::Integer(s)) if *s > 0 => Ok(Duration::from_secs(*s as u64)),
        Some(toml::Value::String(s)) => {
            let s = s.trim();
            let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
            let n: u64 = num.parse().map_err(|_| bad())?;
            let secs = match unit {
                "ms" => return Ok(Duration::from_millis(n)),
                "" | "s" => n,
                "m" => n * 60,
                "h" => n * 3600,
                "d" => n * 86_400,
                _ => return Err(bad()),
            };
            Ok(Duration::from_secs(secs))
        }
        _ => Err(bad()),
    }
}

impl LimitConfig {
    pub(crate) fn limit(&self) -> Result<Limit, ConfigError> {
        let err = |m: String| ConfigError::new(format!("ratelimit.limits `{}`: {m}", self.name));
        let quantities = [
            self.requests.map(Quantity::Requests),
            self.tokens.map(Quantity::Tokens),
            self.cost_usd.map(Quantity::CostUsd),
            self.concurrency.map(Quantity::Concurrency),
        ];
        let mut set = quantities.into_iter().flatten();
        let quantity = set
            .next()
            .ok_or_else(|| err("set one of requests, tokens, cost_usd, concurrency".into()))?;
        if set.next().is_some() {
            return Err(err(
                "set only one of requests, tokens, cost_usd, concurrency".into(),
            ));
        }
        let parts = match &self.key {
            KeySpec::One(k) => vec![k.clone()],
            KeySpec::Many(ks) => ks.clone(),
        };
        let key = parts
            .iter()
            .map(|p| KeyPart::from_name(p).ok_or_else(|| err(format!("unknown key part `{p}`"))))
            .collect::<Result<Vec<_>, _>>()?;
        let algorithm = match &self.algorithm {
            None => Algorithm::Gcra,
            Some(a) => {
                Algorithm::from_name(a).ok_or_else(|| err(format!("unknown algorithm `{a}`")))?
            }
        };
        Limit::new(
            &self.name,
            key,
            quantity,
            algorithm,
            period(&self.name, &self.period)?,
        )
        .map_err(|e| ConfigError::new(format!("ratelimit.limits: {e}")))
    }
}

impl RateLimitConfig {
    /// The limits, checked.
    pub fn parsed_limits(&self) -> Result<Vec<Limit>, ConfigError> {
        let limits: Vec<Limit> = self
            .limits
            .iter()
            .map(LimitConfig::limit)
            .collect::<Result<_, _>>()?;
        let mut names = std::collections::HashSet::new();
        for l in &limits {
            if !names.insert(l.name().to_owned()) {
                return Err(ConfigError::new(format!(
                    "ratelimit.limits: `{}` is named twice",
                    l.name()
                )));
            }
        }
        if !matches!(self.store.as_str(), "memory" | "redis") {
            return Err(ConfigError::new(format!(
                "ratelimit.store must be `memory` or `redis`, not `{}`",
                self.store
            )));
        }
        Ok(limits)
    }

    /// The layer: connects to Redis now when the store is Redis (an unreachable server
    /// is a start-up error, never a limit quietly off).
    pub async fn layer(&self) -> Result<RateLimitLayer, ConfigError> {
        self.layer_with(Vec::new()).await
    }

    /// The layer with `extra` limits too (the virtual keys' own).
    pub async fn layer_with(&self, extra: Vec<Limit>) -> Result<RateLimitLayer, ConfigError> {
        let mut limits = self.parsed_limits()?;
        limits.extend(extra);
        let layer = if self.store == "redis" && !limits.is_empty() {
            let store = RedisStore::connect(&self.redis_url, &self.redis_prefix)
                .await
                .map_err(|e| ConfigError::new(format!("ratelimit.redis_url: {e}")))?;
            RateLimitLayer::new(store)
        } else {
            RateLimitLayer::new(MemoryStore::new())
        };
        Ok(layer
            .with_limits(limits)
            .with_fail_open(self.fail_open)
            .with_default_max_tokens(self.default_max_tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<Vec<Limit>, ConfigError> {
        let c: RateLimitConfig =
            toml::from_str(toml).map_err(|e| ConfigError::new(e.message().to_owned()))?;
        c.parsed_limits()
    }

    #[test]
    fn limits_from_toml() {
        let l = parse(
            r#"
            [[limits]]
            name = "rpm"
            key = "api_key"
            requests = 60
            [[limits]]
            name = "tpd"
            key = ["api_key", "model"]
            algorithm = "sliding"
            tokens = 100000
            period = "1d"
            [[limits]]
            name = "spend"
            cost_usd = 5.0
            period = 3600
            "#,
        )
        .unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].period(), Duration::from_secs(60));
        assert_eq!(l[1].algorithm(), Algorithm::SlidingWindow);
        assert_eq!(l[1].period(), Duration::from_secs(86_400));
        assert_eq!(l[2].quantity(), Quantity::CostUsd(5.0));
        for (bad, want) in [
            ("[[limits]]\nname = \"x\"\n", "set one of"),
            (
                "[[limits]]\nname = \"x\"\nrequests = 1\ntokens = 2\n",
                "only one",
            ),
            (
                "[[limits]]\nname = \"x\"\nrequests = 1\nkey = \"nope\"\n",
                "unknown key part",
            ),
            (
                "[[limits]]\nname = \"x\"\nrequests = 1\nalgorithm = \"leaky\"\n",
                "unknown algorithm",
            ),
            (
                "[[limits]]\nname = \"x\"\nrequests = 1\nperiod = \"5 weeks\"\n",
                "period",
            ),
            ("[[limits]]\nname = \"x\"\nrequests = 0\n", "above zero"),
            (
                "[[limits]]\nname = \"x\"\nrequests = 1\n[[limits]]\nname = \"x\"\nrequests = 1\n",
                "twice",
            ),
            ("store = \"etcd\"\n", "memory"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
