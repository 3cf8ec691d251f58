//! What a limit is: a key, a quantity, an amount per period, an algorithm.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

/// What is counted against a limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Quantity {
    /// Requests per period.
    Requests(u64),
    /// Tokens (input + output) per period: reserved on an estimate before the call,
    /// trued up with the real usage when the response ends.
    Tokens(u64),
    /// Spend in USD per period, priced with the price table: reserved and trued up like
    /// tokens.
    CostUsd(f64),
    /// Requests in flight at once; a stream holds its slot until it ends.
    Concurrency(u64),
}

impl Quantity {
    /// The limit in the store's integer units (requests, tokens, micro-USD, slots).
    pub(crate) fn amount(&self) -> u64 {
        match *self {
            Self::Requests(n) | Self::Tokens(n) | Self::Concurrency(n) => n,
            Self::CostUsd(usd) => (usd * 1e6).round().max(0.0) as u64,
        }
    }

    /// The header family this quantity reports in (`requests`, `tokens`, `cost`, `concurrency`).
    pub fn unit(&self) -> &'static str {
        match self {
            Self::Requests(_) => "requests",
            Self::Tokens(_) => "tokens",
            Self::CostUsd(_) => "cost",
            Self::Concurrency(_) => "concurrency",
        }
    }
}

/// How a limit counts over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// A counter per aligned window of `period`; resets at each window's end (bursts of
    /// twice the limit are possible across a boundary).
    FixedWindow,
    /// The current window's count plus the previous window's, weighted by how much of it
    /// still overlaps the sliding period (Cloudflare's approximation).
    SlidingWindow,
    /// The generic cell rate algorithm: a smooth rate of `limit / period` with a burst of
    /// up to `limit`; no edges to game.
    Gcra,
}

impl Algorithm {
    /// Parses `fixed`, `sliding` or `gcra` (also `fixed_window`, `sliding_window`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "fixed" | "fixed_window" => Some(Self::FixedWindow),
            "sliding" | "sliding_window" => Some(Self::SlidingWindow),
            "gcra" => Some(Self::Gcra),
            _ => None,
        }
    }
}

/// One part of a limit's key: what makes two requests share a bucket.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyPart {
    /// The whole gateway: one bucket.
    Global,
    /// The caller's credential (the gateway token in `aigw-authorization`, else the
    /// provider key it sent), hashed.
    ApiKey,
    /// A request header's value, hashed (a header carrying a key is never kept in clear).
    Header(HeaderName),
    /// The client's IP address (from the connection; not from headers a client can forge).
    ClientIp,
    /// A field of the `aigw-metadata` tags.
    Metadata(String),
    /// The model asked for.
    Model,
    /// The provider.
    Provider,
}

impl KeyPart {
    /// Parses a key part as written in configuration: `global`, `api_key`, `ip`,
    /// `model`, `provider`, `header:NAME`, `metadata:FIELD`.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "global" => Self::Global,
            "api_key" | "key" => Self::ApiKey,
            "ip" | "client_ip" => Self::ClientIp,
            "model" => Self::Model,
            "provider" => Self::Provider,
            _ => {
                if let Some(h) = name.strip_prefix("header:") {
                    Self::Header(HeaderName::try_from(h).ok()?)
                } else if let Some(f) = name.strip_prefix("metadata:") {
                    if f.is_empty() {
                        return None;
                    }
                    Self::Metadata(f.to_owned())
                } else {
                    return None;
                }
            }
        })
    }
}

/// One limit. Several can apply to a request; the strictest decides.
#[derive(Clone, PartialEq)]
pub struct Limit {
    pub(crate) name: Arc<str>,
    pub(crate) key: Vec<KeyPart>,
    pub(crate) quantity: Quantity,
    pub(crate) algorithm: Algorithm,
    pub(crate) period: Duration,
    /// Counts only the requests of this caller ([`CallerId`](tower_ai_core::CallerId)).
    pub(crate) caller: Option<Arc<str>>,
}

impl fmt::Debug for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limit")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("quantity", &self.quantity)
            .field("algorithm", &self.algorithm)
            .field("period", &self.period)
            .field("caller", &self.caller)
            .finish()
    }
}

/// A limit that cannot be used.
#[derive(Clone, Debug)]
pub struct InvalidLimit(pub(crate) String);

impl fmt::Display for InvalidLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidLimit {}

impl Limit {
    /// `quantity` per `period`, per `key` (an empty key is global), counted with
    /// `algorithm`. The name appears in the `ratelimit-policy` header.
    pub fn new(
        name: &str,
        key: Vec<KeyPart>,
        quantity: Quantity,
        algorithm: Algorithm,
        period: Duration,
    ) -> Result<Self, InvalidLimit> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(InvalidLimit(format!(
                "limit name `{name}` must be letters, digits, `-` or `_`"
            )));
        }
        if period.is_zero() || period > Duration::from_secs(366 * 24 * 3600) {
            return Err(InvalidLimit(format!(
                "limit `{name}`: period must be between 1 ms and a year"
            )));
        }
        if quantity.amount() == 0 {
            return Err(InvalidLimit(format!(
                "limit `{name}`: the amount must be above zero"
            )));
        }
        if let Quantity::CostUsd(usd) = quantity
            && !(usd.is_finite() && usd > 0.0)
        {
            return Err(InvalidLimit(format!(
                "limit `{name}`: cost_usd must be a positive number"
            )));
        }
        let key = if key.is_empty() {
            vec![KeyPart::Global]
        } else {
            key
        };
        Ok(Self {
            name: Arc::from(name),
            key,
            quantity,
            algorithm,
            period,
            caller: None,
        })
    }

    /// `n` requests per `period` per key, GCRA.
    pub fn requests(
        name: &str,
        key: Vec<KeyPart>,
        n: u64,
        period: Duration,
    ) -> Result<Self, InvalidLimit> {
        Self::new(name, key, Quantity::Requests(n), Algorithm::Gcra, period)
    }

    /// The same limit counted with another algorithm.
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The same limit, counting only the requests of one caller: those whose
    /// [`CallerId`](tower_ai_core::CallerId) (left in the request extensions by an auth
    /// layer or provider routing) is `caller`; every other request passes it by. This is
    /// how one tenant (a virtual key) gets limits and a budget of its own.
    pub fn for_caller(mut self, caller: impl Into<Arc<str>>) -> Self {
        self.caller = Some(caller.into());
        self
    }

    /// The caller this limit is for, if only one.
    pub fn caller(&self) -> Option<&str> {
        self.caller.as_deref()
    }

    /// The limit's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it counts.
    pub fn quantity(&self) -> Quantity {
        self.quantity
    }

    /// Its period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}
