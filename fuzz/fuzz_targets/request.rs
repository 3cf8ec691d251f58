//! The request side: `ProviderPath::parse` / `is_universal` on the path and
//! `LlmRequest::parse` on the provider, path and body.
//!
//! Input: the path, a NUL byte, the body (no NUL: the whole input is the body of
//! `/openai/chat/completions`).
//!
//! Asserts: no panic; a parsed path puts back together into the path it came from, its
//! provider is one non-empty segment and its rest empty or rooted; the model kept is at
//! most `MAX_MODEL_LEN` bytes; `json` is true only for a JSON object, and for every
//! valid one whose `model`, if any, is a string.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tower_ai_core::{LlmRequest, Operation, ProviderPath};

fuzz_target!(|data: &[u8]| {
    let (path, body) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"/openai/chat/completions"[..], data),
    };
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let _ = ProviderPath::is_universal(path);
    let _ = Operation::from_path(path).as_str();
    let (provider, rest) = match ProviderPath::parse(path) {
        Some(p) => {
            assert!(!p.provider.is_empty() && !p.provider.contains('/'));
            assert!(p.rest.is_empty() || p.rest.starts_with('/'));
            let rebuilt = match (p.account, p.gateway) {
                (Some(a), Some(g)) => format!("/v1/{a}/{g}/{}{}", p.provider, p.rest),
                (None, None) => format!("/{}{}", p.provider, p.rest),
                _ => panic!("account without gateway"),
            };
            assert_eq!(rebuilt, path);
            (p.provider, p.rest)
        }
        None => ("openai", path),
    };
    let r = LlmRequest::parse(provider, rest, Bytes::copy_from_slice(body));
    assert!(r.model.as_ref().is_none_or(|m| m.len() <= LlmRequest::MAX_MODEL_LEN));
    assert_eq!(&r.body[..], body);
    if r.json {
        // (Not necessarily valid JSON: the peek skips what it does not read.)
        assert_eq!(
            body.trim_ascii_start().first(),
            Some(&b'{'),
            "json: true for a body that is not an object"
        );
    }
    if matches!(
        serde_json::from_slice::<serde_json::Value>(body),
        Ok(serde_json::Value::Object(ref o)) if o.get("model").is_none_or(|m| m.is_string())
    ) {
        assert!(r.json, "a JSON object with a string model not seen as JSON");
    }
});
