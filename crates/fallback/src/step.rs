//! [`Step`]: one place a request can be served from, and the universal endpoint's body.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;
use tower_ai_core::ErrorResponse;

use crate::keys::KeyRing;

/// The most steps one universal request may carry.
pub const MAX_STEPS: usize = 16;

/// One place a request can be served from: a provider, the path at that provider, extra
/// headers and the body to send. The universal endpoint's array is a list of these; a
/// configured route expands into them.
#[derive(Clone, Debug)]
pub struct Step {
    /// Index reported in `aigw-step`: the position in the universal array, or the
    /// target's position in its route.
    pub index: u32,
    /// The provider, the first segment of the path the step is sent to.
    pub provider: Arc<str>,
    /// The path the step is sent to (`/{provider}/...`, possibly with a query), as the
    /// inner service (provider routing) expects it.
    pub path: String,
    /// Headers set on the step's request, over the client's.
    pub headers: HeaderMap,
    /// The step's JSON body.
    pub body: Bytes,
    /// Keys to rotate through (a configured target's own keys).
    pub(crate) keys: Option<Arc<KeyRing>>,
    /// Remove the client's provider credential (the step goes to another provider).
    pub(crate) strip_credentials: bool,
}

#[derive(Deserialize)]
struct RawStep<'a> {
    provider: String,
    endpoint: String,
    #[serde(default)]
    headers: HashMap<String, String>,
    #[serde(borrow)]
    query: &'a RawValue,
}

/// Parses the universal endpoint's body: a JSON array of
/// `{"provider", "endpoint", "headers", "query"}` (a single object is taken as an array of
/// one). `prefix` goes before each step's `/{provider}/{endpoint}` (the Cloudflare-style
/// `/v1/{account}/{gateway}`, or empty).
///
/// Each step's body is a slice of `body`: nothing is copied or re-serialised. Anything
/// malformed is a 400 that says what.
///
/// ```
/// use bytes::Bytes;
/// let body = Bytes::from_static(br#"[
///   {"provider": "openai", "endpoint": "chat/completions",
///    "headers": {"authorization": "Bearer sk-1"}, "query": {"model": "gpt-4o-mini"}},
///   {"provider": "anthropic", "endpoint": "v1/messages", "query": {"model": "claude"}}
/// ]"#);
/// let steps = tower_ai_fallback::parse_universal(&body, "").unwrap();
/// assert_eq!(steps[1].path, "/anthropic/v1/messages");
/// assert_eq!(&steps[0].body[..], br#"{"model": "gpt-4o-mini"}"#);
/// ```
pub fn parse_universal(body: &Bytes, prefix: &str) -> Result<Vec<Step>, ErrorResponse> {
    let bad = |m: String| ErrorResponse::bad_request(m);
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let raw: Vec<RawStep<'_>> = match first {
        Some(b'[') => serde_json::from_slice(body),
        Some(b'{') => serde_json::from_slice(body).map(|s| vec![s]),
        _ => {
            return Err(bad(
                "the universal endpoint takes a JSON array of steps {provider, endpoint, headers, query}"
                    .into(),
            ));
        }
    }
    .map_err(|e| bad(format!("invalid universal request: {e}")))?;
    if raw.is_empty() {
        return Err(bad("the universal request has no steps".into()));
    }
    if raw.len() > MAX_STEPS {
        return Err(bad(format!(
            "the universal request has {} steps; at most {MAX_STEPS} are allowed",
            raw.len()
        )));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, s)| {
            let at = |m: &str| bad(format!("step {i}: {m}"));
            if !valid_provider(&s.provider) {
                return Err(at("`provider` must be a provider name"));
            }
            let endpoint = s.endpoint.trim_start_matches('/');
            if endpoint.len() > 2048 || endpoint.chars().any(|c| c.is_control() || c == ' ') {
                return Err(at("`endpoint` is not a valid path"));
            }
            if !s.query.get().trim_start().starts_with('{') {
                return Err(at(
                    "`query` must be a JSON object: the provider's request body",
                ));
            }
            let mut headers = HeaderMap::new();
            for (k, v) in &s.headers {
                let name = HeaderName::try_from(k.as_str())
                    .map_err(|_| at("a header name is not valid"))?;
                let mut value = HeaderValue::try_from(v.as_str())
                    .map_err(|_| at("a header value is not valid"))?;
                value.set_sensitive(true);
                headers.append(name, value);
            }
            Ok(Step {
                index: i as u32,
                path: format!("{prefix}/{}/{endpoint}", s.provider),
                provider: Arc::from(s.provider),
                headers,
                body: body.slice_ref(s.query.get().as_bytes()),
                keys: None,
                strip_credentials: true,
            })
        })
        .collect()
}

pub(crate) fn valid_provider(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 64
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && p != "."
        && p != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_steps_without_copying() {
        let body = Bytes::from(
            r#"[{"provider":"workers-ai","endpoint":"/@cf/meta/llama","headers":{"x-a":"1"},"query":{"prompt":"hi \"x\""}}]"#,
        );
        let steps = parse_universal(&body, "/v1/acct/gw").unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].path, "/v1/acct/gw/workers-ai/@cf/meta/llama");
        assert_eq!(&steps[0].body[..], br#"{"prompt":"hi \"x\""}"#);
        assert_eq!(steps[0].headers["x-a"], "1");
        // A slice of the request's own buffer.
        let inside = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
        assert!(inside.contains(&(steps[0].body.as_ptr() as usize)));

        let one = Bytes::from(r#"{"provider":"openai","endpoint":"chat/completions","query":{}}"#);
        assert_eq!(
            parse_universal(&one, "").unwrap()[0].path,
            "/openai/chat/completions"
        );
    }

    #[test]
    fn malformed_is_a_clear_400() {
        let many = format!(
            "[{}]",
            vec![r#"{"provider":"openai","endpoint":"x","query":{}}"#; MAX_STEPS + 1].join(",")
        );
        for (body, says) in [
            ("", "JSON array"),
            ("42", "JSON array"),
            ("[]", "no steps"),
            ("[{}]", "missing field"),
            (r#"[{"provider":"openai","endpoint":"x"}]"#, "query"),
            (
                r#"[{"provider":"openai","endpoint":"x","query":[1]}]"#,
                "JSON object",
            ),
            (
                r#"[{"provider":"../x","endpoint":"x","query":{}}]"#,
                "provider",
            ),
            (r#"[{"provider":"","endpoint":"x","query":{}}]"#, "provider"),
            (
                r#"[{"provider":"a","endpoint":"x y","query":{}}]"#,
                "endpoint",
            ),
            (
                r#"[{"provider":"a","endpoint":"x","headers":{"bad name":"1"},"query":{}}]"#,
                "header",
            ),
            (
                r#"[{"provider":"a","endpoint":"x","headers":{"a":"\n"},"query":{}}]"#,
                "header",
            ),
            (
                r#"[{"provider":"a","endpoint":"x","headers":{"a":1},"query":{}}]"#,
                "invalid",
            ),
            (r#"[{"provider":"a","endpoint":"x","query":{"#, "invalid"),
            (many.as_str(), "at most"),
        ] {
            let e = parse_universal(&Bytes::from(body.to_owned()), "").unwrap_err();
            assert_eq!(e.status(), 400);
            assert!(e.message().contains(says), "{body}: {}", e.message());
        }
    }
}
