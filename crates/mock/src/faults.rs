//! Injected faults: the configured defaults and the per-request `x-mock-*` headers.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

/// The per-request fault headers; see the [crate docs](crate#faults).
pub mod header {
    use http::HeaderName;

    /// `x-mock-latency-ms`: milliseconds before the response head.
    pub const LATENCY_MS: HeaderName = HeaderName::from_static("x-mock-latency-ms");
    /// `x-mock-ttft-ms`: milliseconds before a stream's first event.
    pub const TTFT_MS: HeaderName = HeaderName::from_static("x-mock-ttft-ms");
    /// `x-mock-chunk-delay-ms`: milliseconds between a stream's events.
    pub const CHUNK_DELAY_MS: HeaderName = HeaderName::from_static("x-mock-chunk-delay-ms");
    /// `x-mock-chunks`: number of output words (content deltas).
    pub const CHUNKS: HeaderName = HeaderName::from_static("x-mock-chunks");
    /// `x-mock-status`: respond with this error status (400..=599).
    pub const STATUS: HeaderName = HeaderName::from_static("x-mock-status");
    /// `x-mock-retry-after`: seconds, sent back as `retry-after` with the error status.
    pub const RETRY_AFTER: HeaderName = HeaderName::from_static("x-mock-retry-after");
    /// `x-mock-hang`: `true` to never send a response head.
    pub const HANG: HeaderName = HeaderName::from_static("x-mock-hang");
    /// `x-mock-reset-after`: abort the connection after this many stream events.
    pub const RESET_AFTER: HeaderName = HeaderName::from_static("x-mock-reset-after");
    /// `x-mock-fail-first: ID`: the first request carrying this ID gets a 503, every
    /// later one (a retry) is answered normally. For failures a retry recovers from.
    pub const FAIL_FIRST: HeaderName = HeaderName::from_static("x-mock-fail-first");
}

/// Faults to inject; see the [crate docs](crate#faults).
///
/// Set in [`MockConfig`](crate::MockConfig) they apply to every request; the `x-mock-*`
/// request headers override them field by field.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Delay before the response head.
    pub latency: Option<Duration>,
    /// Streams: delay before the first event (after the head is sent).
    pub ttft: Option<Duration>,
    /// Streams: delay before every event after the first.
    pub chunk_delay: Option<Duration>,
    /// Number of output words (one content delta each); overrides the request's
    /// `max_tokens`.
    pub chunks: Option<usize>,
    /// Respond with this error status and the provider's JSON error body.
    pub status: Option<u16>,
    /// Seconds, sent as the `retry-after` header with an injected error status.
    pub retry_after: Option<u64>,
    /// Never send a response head; the request counts as cancelled when the client
    /// goes away.
    pub hang: bool,
    /// Streams: after this many events, abort the connection. Non-streamed responses:
    /// send the head and the first half of the body, then abort.
    pub reset_after: Option<usize>,
}

impl Faults {
    /// These faults as `x-mock-*` request headers, for a client that wants the mock behind
    /// a gateway to inject them into one request.
    pub fn to_headers(&self) -> HeaderMap {
        fn ms(d: Duration) -> u128 {
            d.as_millis()
        }
        let mut headers = HeaderMap::new();
        let mut put = |name: HeaderName, value: String| {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.insert(name, value);
            }
        };
        if let Some(d) = self.latency {
            put(header::LATENCY_MS, ms(d).to_string());
        }
        if let Some(d) = self.ttft {
            put(header::TTFT_MS, ms(d).to_string());
        }
        if let Some(d) = self.chunk_delay {
            put(header::CHUNK_DELAY_MS, ms(d).to_string());
        }
        if let Some(n) = self.chunks {
            put(header::CHUNKS, n.to_string());
        }
        if let Some(s) = self.status {
            put(header::STATUS, s.to_string());
        }
        if let Some(s) = self.retry_after {
            put(header::RETRY_AFTER, s.to_string());
        }
        if self.hang {
            put(header::HANG, "true".to_owned());
        }
        if let Some(n) = self.reset_after {
            put(header::RESET_AFTER, n.to_string());
        }
        headers
    }

    /// These faults overridden by the request's `x-mock-*` headers; `Err` names the
    /// invalid header.
    pub(crate) fn with_headers(&self, headers: &HeaderMap) -> Result<Faults, String> {
        let mut faults = self.clone();
        // Fast path: most requests carry no fault header at all.
        if !headers.keys().any(|k| k.as_str().starts_with("x-mock-")) {
            return Ok(faults);
        }
        if let Some(ms) = parse::<u64>(headers, &header::LATENCY_MS)? {
            faults.latency = Some(Duration::from_millis(ms));
        }
        if let Some(ms) = parse::<u64>(headers, &header::TTFT_MS)? {
            faults.ttft = Some(Duration::from_millis(ms));
        }
        if let Some(ms) = parse::<u64>(headers, &header::CHUNK_DELAY_MS)? {
            faults.chunk_delay = Some(Duration::from_millis(ms));
        }
        if let Some(n) = parse::<usize>(headers, &header::CHUNKS)? {
            faults.chunks = Some(n);
        }
        if let Some(status) = parse::<u16>(headers, &header::STATUS)? {
            if !(400..=599).contains(&status) {
                return Err(invalid(&header::STATUS, "an error status (400..=599)"));
            }
            faults.status = Some(status);
        }
        if let Some(secs) = parse::<u64>(headers, &header::RETRY_AFTER)? {
            faults.retry_after = Some(secs);
        }
        if let Some(value) = headers.get(&header::HANG) {
            let value = value.to_str().unwrap_or_default().trim();
            faults.hang = if value.eq_ignore_ascii_case("true") || value == "1" {
                true
            } else if value.eq_ignore_ascii_case("false") || value == "0" {
                false
            } else {
                return Err(invalid(&header::HANG, "`true` or `false`"));
            };
        }
        if let Some(n) = parse::<usize>(headers, &header::RESET_AFTER)? {
            faults.reset_after = Some(n);
        }
        Ok(faults)
    }
}

fn parse<T: std::str::FromStr>(
    headers: &HeaderMap,
    name: &HeaderName,
) -> Result<Option<T>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| invalid(name, "a non-negative integer")),
    }
}

fn invalid(name: &HeaderName, expected: &str) -> String {
    format!("invalid `{name}` header: expected {expected}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::try_from(*k).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn headers_override_field_by_field() {
        let config = Faults {
            latency: Some(Duration::from_millis(5)),
            chunks: Some(3),
            ..Faults::default()
        };
        let faults = config
            .with_headers(&headers(&[
                ("X-Mock-Chunks", "7"),
                ("x-mock-hang", "TRUE"),
                ("x-mock-status", "429"),
                ("x-mock-retry-after", "2"),
                ("x-mock-reset-after", "0"),
                ("x-mock-ttft-ms", "10"),
                ("x-mock-chunk-delay-ms", "20"),
            ]))
            .unwrap();
        assert_eq!(faults.latency, Some(Duration::from_millis(5)));
        assert_eq!(faults.chunks, Some(7));
        assert!(faults.hang);
        assert_eq!(faults.status, Some(429));
        assert_eq!(faults.retry_after, Some(2));
        assert_eq!(faults.reset_after, Some(0));
        assert_eq!(faults.ttft, Some(Duration::from_millis(10)));
        assert_eq!(faults.chunk_delay, Some(Duration::from_millis(20)));
    }

    #[test]
    fn invalid_values_are_errors() {
        let base = Faults::default();
        for (name, value) in [
            ("x-mock-latency-ms", "soon"),
            ("x-mock-chunks", "-1"),
            ("x-mock-status", "200"),
            ("x-mock-status", "abc"),
            ("x-mock-hang", "maybe"),
            ("x-mock-reset-after", "1.5"),
        ] {
            let err = base.with_headers(&headers(&[(name, value)])).unwrap_err();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn to_headers_round_trips() {
        let faults = Faults {
            latency: Some(Duration::from_millis(1)),
            ttft: Some(Duration::from_millis(2)),
            chunk_delay: Some(Duration::from_millis(3)),
            chunks: Some(4),
            status: Some(503),
            retry_after: Some(5),
            hang: true,
            reset_after: Some(6),
        };
        let back = Faults::default()
            .with_headers(&faults.to_headers())
            .unwrap();
        assert_eq!(format!("{back:?}"), format!("{faults:?}"));
    }
}
