//! The per-request controls: `aigw-cache-ttl`, `aigw-skip-cache`, `aigw-cache-key`
//! (and their `cf-aig-` spellings).

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use tower_ai_core::{ErrorResponse, headers};

use crate::CacheLayer;

/// The longest custom key accepted, in bytes.
const MAX_CUSTOM_KEY: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct Controls {
    pub(crate) skip: bool,
    pub(crate) ttl: Option<Duration>,
    pub(crate) custom_key: Option<HeaderValue>,
}

pub(crate) fn parse(h: &HeaderMap) -> Result<Controls, ErrorResponse> {
    let mut c = Controls::default();
    if let Some(v) = headers::SKIP_CACHE.get(h) {
        let v = v.to_str().unwrap_or("").trim();
        c.skip = if v.eq_ignore_ascii_case("true") || v == "1" {
            true
        } else if v.eq_ignore_ascii_case("false") || v == "0" {
            false
        } else {
            return Err(ErrorResponse::bad_request(
                "aigw-skip-cache must be `true` or `false`",
            ));
        };
    }
    if let Some(v) = headers::CACHE_TTL.get(h) {
        c.ttl = Some(ttl(v.to_str().unwrap_or("").trim())?);
    }
    if let Some(v) = headers::CACHE_KEY.get(h) {
        if v.is_empty() || v.len() > MAX_CUSTOM_KEY {
            return Err(ErrorResponse::bad_request(format!(
                "aigw-cache-key must be 1 to {MAX_CUSTOM_KEY} bytes long"
            )));
        }
        c.custom_key = Some(v.clone());
    }
    Ok(c)
}

fn ttl(v: &str) -> Result<Duration, ErrorResponse> {
    let max = CacheLayer::MAX_TTL.as_secs();
    match v.parse::<i128>() {
        Ok(n) if n < 0 => Err(ErrorResponse::bad_request(
            "aigw-cache-ttl must not be negative (seconds, 0 to 31536000)",
        )),
        Ok(n) if n > i128::from(max) => Err(ErrorResponse::bad_request(format!(
            "aigw-cache-ttl must be at most {max} seconds (one year)"
        ))),
        Ok(n) => Ok(Duration::from_secs(n as u64)),
        Err(_) => Err(ErrorResponse::bad_request(
            "aigw-cache-ttl must be a whole number of seconds",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &'static str, value: &'static str) -> Result<Controls, ErrorResponse> {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        parse(&h)
    }

    #[test]
    fn ttl_values() {
        assert_eq!(
            with("aigw-cache-ttl", "60").unwrap().ttl,
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            with("cf-aig-cache-ttl", " 0 ").unwrap().ttl,
            Some(Duration::ZERO)
        );
        for bad in [
            "-1",
            "abc",
            "1.5",
            "31536001",
            "99999999999999999999999999",
            "",
        ] {
            let mut h = HeaderMap::new();
            h.insert("aigw-cache-ttl", HeaderValue::from_str(bad).unwrap());
            let e = parse(&h).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
            assert!(e.message().contains("aigw-cache-ttl"), "{bad}");
        }
    }

    #[test]
    fn skip_and_key() {
        assert!(with("aigw-skip-cache", "true").unwrap().skip);
        assert!(with("cf-aig-skip-cache", "TRUE").unwrap().skip);
        assert!(!with("aigw-skip-cache", "false").unwrap().skip);
        assert!(with("aigw-skip-cache", "maybe").is_err());
        assert_eq!(
            with("aigw-cache-key", "greeting")
                .unwrap()
                .custom_key
                .unwrap(),
            "greeting"
        );
        assert!(with("aigw-cache-key", "").is_err());
    }
}
