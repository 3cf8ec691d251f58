//! [`RetryPolicy`]: attempts, backoff, timeouts and which outcomes move on.

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use tower_ai_core::{ErrorResponse, headers};

/// How the delay between two attempts on one step grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    /// The same delay before every retry.
    Constant,
    /// `delay × n` before the n-th retry.
    Linear,
    /// `delay × 2^(n-1)` before the n-th retry.
    Exponential,
}

impl Backoff {
    /// Parses `constant`, `linear` or `exponential`, each with an optional `-jitter`
    /// suffix: the second value says whether jitter was asked for.
    pub fn parse(s: &str) -> Option<(Self, bool)> {
        let (name, jitter) = match s.trim().strip_suffix("-jitter") {
            Some(name) => (name, true),
            None => (s.trim(), false),
        };
        let backoff = match name {
            "constant" => Self::Constant,
            "linear" => Self::Linear,
            "exponential" => Self::Exponential,
            _ => return None,
        };
        Some((backoff, jitter))
    }
}

/// Which statuses move a request on to its next attempt or step. Connection errors and
/// timeouts always do.
///
/// The default is 429 and every 5xx: the provider is overloaded or failing. 400, 404,
/// 422 and the other 4xx are the caller's error and come back as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Triggers {
    ranges: Vec<(u16, u16)>,
}

impl Default for Triggers {
    fn default() -> Self {
        Self {
            ranges: vec![(429, 429), (500, 599)],
        }
    }
}

impl Triggers {
    /// No status triggers (only connection errors and timeouts do).
    pub fn none() -> Self {
        Self { ranges: Vec::new() }
    }

    /// Parses a list such as `["429", "5xx", "408"]`: a status, or a class `4xx`/`5xx`.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for item in items {
            let item = item.trim();
            let range = match item.as_bytes() {
                [c @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => {
                    let base = u16::from(c - b'0') * 100;
                    (base, base + 99)
                }
                _ => {
                    let n: u16 = item
                        .parse()
                        .map_err(|_| format!("`{item}` is not a status or a class like 5xx"))?;
                    if !(100..=599).contains(&n) {
                        return Err(format!("`{item}` is not an HTTP status"));
                    }
                    (n, n)
                }
            };
            ranges.push(range);
        }
        Ok(Self { ranges })
    }

    /// Whether `status` moves on.
    pub fn matches(&self, status: StatusCode) -> bool {
        let s = status.as_u16();
        self.ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&s))
    }
}

/// Attempts, backoff, timeouts and triggers for a request. The layer has one; a
/// configured route may have its own; a request may override parts with `aigw-` headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per step (1 = no retry on the same step). `aigw-max-attempts`.
    pub max_attempts: u32,
    /// Base delay between attempts on one step. `aigw-retry-delay` (ms).
    pub retry_delay: Duration,
    /// How the delay grows. `aigw-backoff`.
    pub backoff: Backoff,
    /// Randomise each delay in `[0, delay]` ("full jitter").
    pub jitter: bool,
    /// No delay is longer than this (backoff growth and `retry-after` alike).
    pub max_retry_delay: Duration,
    /// Per attempt: the time to the response head and, for a stream, to its first
    /// content. `aigw-request-timeout` (ms). `None`: unbounded.
    pub attempt_timeout: Option<Duration>,
    /// The whole chain of attempts and delays. `None`: unbounded.
    pub total_timeout: Option<Duration>,
    /// A stream with no frame for this long has failed: before anything was committed
    /// to the client the next attempt is made; after, the stream ends in an error.
    pub stream_idle_timeout: Option<Duration>,
    /// How long content-free start-up events of a stream (a role-only first delta,
    /// `message_start`, `response.created`) may be held back so that an error arriving
    /// just after them still falls back.
    pub stream_hold: Duration,
    /// Which statuses move on.
    pub triggers: Triggers,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            retry_delay: Duration::from_millis(100),
            backoff: Backoff::Exponential,
            jitter: false,
            max_retry_delay: Duration::from_secs(30),
            attempt_timeout: None,
            total_timeout: None,
            stream_idle_timeout: None,
            stream_hold: Duration::from_secs(2),
            triggers: Triggers::default(),
        }
    }
}

/// The most attempts per step a request may ask for.
pub const MAX_ATTEMPTS: u32 = 10;
/// The longest retry delay a request may ask for.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// The longest per-attempt timeout a request may ask for.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

impl RetryPolicy {
    /// The delay before retry number `n` (1 = the first retry), before jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let n = n.max(1);
        let d = match self.backoff {
            Backoff::Constant => self.retry_delay,
            Backoff::Linear => self.retry_delay.saturating_mul(n),
            Backoff::Exponential => self
                .retry_delay
                .saturating_mul(1u32.checked_shl(n - 1).unwrap_or(u32::MAX)),
        };
        d.min(self.max_retry_delay)
    }

    /// Whether any of the `aigw-` retry headers is on the request.
    pub(crate) fn has_overrides(h: &HeaderMap) -> bool {
        [
            headers::MAX_ATTEMPTS,
            headers::RETRY_DELAY,
            headers::BACKOFF,
            headers::REQUEST_TIMEOUT,
        ]
        .iter()
        .any(|x| x.get(h).is_some())
    }

    /// This policy with the request's `aigw-max-attempts`, `aigw-retry-delay`,
    /// `aigw-backoff` and `aigw-request-timeout` applied. A value out of range is a 400.
    pub fn with_headers(mut self, h: &HeaderMap) -> Result<Self, ErrorResponse> {
        if let Some(v) = headers::MAX_ATTEMPTS.get(h) {
            let n = int(v, "aigw-max-attempts")?;
            if !(1..=u64::from(MAX_ATTEMPTS)).contains(&n) {
                return Err(ErrorResponse::bad_request(format!(
                    "aigw-max-attempts must be between 1 and {MAX_ATTEMPTS}"
                )));
            }
            self.max_attempts = n as u32;
        }
        if let Some(v) = headers::RETRY_DELAY.get(h) {
            let ms = int(v, "aigw-retry-delay")?;
            if ms > MAX_RETRY_DELAY.as_millis() as u64 {
                return Err(ErrorResponse::bad_request(format!(
                    "aigw-retry-delay must be at most {} ms",
                    MAX_RETRY_DELAY.as_millis()
                )));
            }
            self.retry_delay = Duration::from_millis(ms);
        }
        if let Some(v) = headers::BACKOFF.get(h) {
            let (backoff, jitter) = v.to_str().ok().and_then(Backoff::parse).ok_or_else(|| {
                ErrorResponse::bad_request(
                    "aigw-backoff must be constant, linear or exponential (optionally with -jitter)",
                )
            })?;
            self.backoff = backoff;
            self.jitter = jitter;
        }
        if let Some(v) = headers::REQUEST_TIMEOUT.get(h) {
            let ms = int(v, "aigw-request-timeout")?;
            if ms == 0 || ms > MAX_REQUEST_TIMEOUT.as_millis() as u64 {
                return Err(ErrorResponse::bad_request(format!(
                    "aigw-request-timeout must be between 1 and {} ms",
                    MAX_REQUEST_TIMEOUT.as_millis()
                )));
            }
            self.attempt_timeout = Some(Duration::from_millis(ms));
        }
        Ok(self)
    }
}

fn int(v: &http::HeaderValue, name: &str) -> Result<u64, ErrorResponse> {
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| ErrorResponse::bad_request(format!("{name} must be a whole number")))
}

/// How long the provider asked the client to wait: `retry-after-ms`,
/// `x-ms-retry-after-ms` (Azure) or `retry-after` in seconds. (An HTTP-date
/// `retry-after` is not used: providers send seconds.)
pub(crate) fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let num = |name: &str| -> Option<f64> {
        h.get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    if let Some(ms) = num("retry-after-ms").or_else(|| num("x-ms-retry-after-ms")) {
        return Some(Duration::from_secs_f64((ms / 1000.0).min(86_400.0)));
    }
    num("retry-after").map(|s| Duration::from_secs_f64(s.min(86_400.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_delays() {
        let mut p = RetryPolicy {
            retry_delay: Duration::from_millis(100),
            backoff: Backoff::Constant,
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(3), Duration::from_millis(100));
        p.backoff = Backoff::Linear;
        assert_eq!(p.delay(3), Duration::from_millis(300));
        p.backoff = Backoff::Exponential;
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(4), Duration::from_millis(800));
        assert_eq!(p.delay(40), Duration::from_secs(30), "capped");
    }

    #[test]
    fn triggers() {
        let t = Triggers::default();
        assert!(t.matches(StatusCode::TOO_MANY_REQUESTS));
        assert!(t.matches(StatusCode::SERVICE_UNAVAILABLE));
        for s in [400, 401, 403, 404, 422, 200] {
            assert!(!t.matches(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        let t = Triggers::parse(["408", "5xx"]).unwrap();
        assert!(t.matches(StatusCode::REQUEST_TIMEOUT));
        assert!(!t.matches(StatusCode::TOO_MANY_REQUESTS));
        assert!(Triggers::parse(["6xx"]).is_err());
        assert!(Triggers::parse(["99"]).is_err());
        assert!(Triggers::parse(["abc"]).is_err());
    }

    #[test]
    fn headers_override_and_bounds() {
        let mut h = HeaderMap::new();
        h.insert("aigw-max-attempts", "3".parse().unwrap());
        h.insert("cf-aig-retry-delay", "250".parse().unwrap());
        h.insert("aigw-backoff", "linear-jitter".parse().unwrap());
        h.insert("aigw-request-timeout", "1500".parse().unwrap());
        let p = RetryPolicy::default().with_headers(&h).unwrap();
        assert_eq!(p.max_attempts, 3);
        assert_eq!(p.retry_delay, Duration::from_millis(250));
        assert_eq!((p.backoff, p.jitter), (Backoff::Linear, true));
        assert_eq!(p.attempt_timeout, Some(Duration::from_millis(1500)));

        for (name, value) in [
            ("aigw-max-attempts", "0"),
            ("aigw-max-attempts", "1000000"),
            ("aigw-max-attempts", "-1"),
            ("aigw-max-attempts", "three"),
            ("aigw-retry-delay", "99999999"),
            ("aigw-backoff", "fibonacci"),
            ("aigw-request-timeout", "0"),
            ("aigw-request-timeout", "99999999999"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, value.parse().unwrap());
            let e = RetryPolicy::default().with_headers(&h).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{name}: {value}");
            assert!(e.message().contains(name), "{}", e.message());
        }
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("x-ms-retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        h.insert("retry-after-ms", "20".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(20)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
