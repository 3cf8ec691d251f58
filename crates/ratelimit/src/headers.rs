//! The rate-limit response headers: `retry-after`, the IETF `ratelimit-policy` /
//! `ratelimit`, and OpenAI's `x-ratelimit-*`.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::store::Decision;

/// One limit's decision for this request.
#[derive(Clone, Debug)]
pub(crate) struct Applied {
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) unit: &'static str,
    pub(crate) period: Duration,
    pub(crate) decision: Decision,
}

/// OpenAI's duration format: `1s`, `6m0s`, `20ms`.
#[cfg(test)]
fn openai_duration(d: Duration) -> String {
    let mut out = String::new();
    write_openai_duration(&mut out, d);
    out
}

/// Appends `d` in OpenAI's duration format to `out`.
fn write_openai_duration(out: &mut String, d: Duration) {
    let ms = d.as_millis();
    if ms < 1000 {
        number(out, ms as u64);
        out.push_str("ms");
        return;
    }
    let total = secs_ceil(d);
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    if h > 0 {
        number(out, h);
        out.push('h');
    }
    if h > 0 || m > 0 {
        number(out, m);
        out.push('m');
    }
    number(out, s);
    out.push('s');
}

/// Appends `n` in decimal (without `fmt`'s machinery: these are written on every
/// response).
fn number(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Appends one item of a structured field list: `"name";a=x;b=y`.
fn item(out: &mut String, name: &str, params: [(&str, u64); 2]) {
    if !out.is_empty() {
        out.push_str(", ");
    }
    out.push('"');
    out.push_str(name);
    out.push('"');
    for (key, value) in params {
        out.push(';');
        out.push_str(key);
        out.push('=');
        number(out, value);
    }
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The strictest decision: the least remaining relative to its limit.
fn strictest<'a>(applied: impl Iterator<Item = &'a Applied>) -> Option<&'a Applied> {
    applied.min_by(|a, b| {
        let ra = a.decision.remaining as f64 / a.decision.limit.max(1) as f64;
        let rb = b.decision.remaining as f64 / b.decision.limit.max(1) as f64;
        ra.total_cmp(&rb)
    })
}

/// OpenAI's per-unit headers: limit, remaining, reset; requests then tokens.
const OPENAI: [(&str, [HeaderName; 3]); 2] = [
    (
        "requests",
        [
            HeaderName::from_static("x-ratelimit-limit-requests"),
            HeaderName::from_static("x-ratelimit-remaining-requests"),
            HeaderName::from_static("x-ratelimit-reset-requests"),
        ],
    ),
    (
        "tokens",
        [
            HeaderName::from_static("x-ratelimit-limit-tokens"),
            HeaderName::from_static("x-ratelimit-remaining-tokens"),
            HeaderName::from_static("x-ratelimit-reset-tokens"),
        ],
    ),
];

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");

/// Puts the headers for `applied` on a response; `denied` is the limit that refused.
/// (On every admitted request too: names are constants, numbers need no `String`, and
/// the text values are written in one buffer and copied once into their header value.)
pub(crate) fn write(h: &mut HeaderMap, applied: &[Applied], denied: Option<&Applied>) {
    if applied.is_empty() {
        return;
    }
    // One growth of the map for all of them.
    h.reserve(8);
    let mut buf = String::with_capacity(32 * applied.len());
    for a in applied {
        let window = secs_ceil(a.period).max(1);
        item(&mut buf, &a.name, [("q", a.decision.limit), ("w", window)]);
    }
    put(h, RATELIMIT_POLICY, &buf);
    if let Some(s) = denied.or_else(|| strictest(applied.iter())) {
        buf.clear();
        let reset = secs_ceil(s.decision.reset);
        item(
            &mut buf,
            &s.name,
            [("r", s.decision.remaining), ("t", reset)],
        );
        put(h, RATELIMIT, &buf);
    }
    for (unit, [limit, remaining, reset]) in OPENAI {
        if let Some(s) = strictest(applied.iter().filter(|a| a.unit == unit)) {
            h.insert(limit, HeaderValue::from(s.decision.limit));
            h.insert(remaining, HeaderValue::from(s.decision.remaining));
            buf.clear();
            write_openai_duration(&mut buf, s.decision.reset);
            put(h, reset, &buf);
        }
    }
    if let Some(d) = denied {
        let secs = secs_ceil(d.decision.retry_after).max(1);
        h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        let ms = u64::try_from(d.decision.retry_after.as_millis()).unwrap_or(u64::MAX);
        h.insert(RETRY_AFTER_MS, HeaderValue::from(ms.max(1)));
    }
}

/// A value made of a limit's name (from configuration) and numbers: always a valid
/// header value unless the name is not, and then the header is left out.
fn put(h: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(openai_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(openai_duration(Duration::from_secs(1)), "1s");
        assert_eq!(openai_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(openai_duration(Duration::from_millis(1500)), "2s");
        assert_eq!(openai_duration(Duration::from_secs(3661)), "1h1m1s");
    }

    #[test]
    fn headers() {
        let d = |remaining, limit| Decision {
            allowed: remaining > 0,
            limit,
            remaining,
            reset: Duration::from_millis(1500),
            retry_after: Duration::from_millis(250),
        };
        let applied = vec![
            Applied {
                name: "rpm".into(),
                unit: "requests",
                period: Duration::from_secs(60),
                decision: d(5, 10),
            },
            Applied {
                name: "tpm".into(),
                unit: "tokens",
                period: Duration::from_secs(60),
                decision: d(100, 1000),
            },
        ];
        let mut h = HeaderMap::new();
        write(&mut h, &applied, Some(&applied[0]));
        assert_eq!(
            h["ratelimit-policy"],
            "\"rpm\";q=10;w=60, \"tpm\";q=1000;w=60"
        );
        assert_eq!(h["ratelimit"], "\"rpm\";r=5;t=2");
        assert_eq!(h["x-ratelimit-limit-requests"], "10");
        assert_eq!(h["x-ratelimit-remaining-tokens"], "100");
        assert_eq!(h["x-ratelimit-reset-requests"], "2s");
        assert_eq!(h["retry-after"], "1");
        assert_eq!(h["retry-after-ms"], "250");
    }
}
