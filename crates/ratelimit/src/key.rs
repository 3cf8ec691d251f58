//! A limit's bucket key for one request.

use std::fmt::Write as _;

use http::HeaderMap;
use tower_ai_core::{CallerId, ClientAddr, LlmRequest, key_id};

use crate::limit::{KeyPart, Limit};

/// What the key parts of a request are made of.
pub(crate) struct RequestFacts<'a> {
    pub(crate) headers: &'a HeaderMap,
    pub(crate) llm: Option<&'a LlmRequest>,
    pub(crate) provider: Option<&'a str>,
    pub(crate) client: Option<ClientAddr>,
    pub(crate) metadata: &'a [(String, String)],
    /// Who the caller is, when a layer in front (auth, provider routing) said so.
    pub(crate) caller: Option<&'a CallerId>,
}

/// The bucket of `limit` this request counts in. Values that could be secrets (the
/// credential, any header) are hashed; none is kept in clear.
pub(crate) fn bucket_key(limit: &Limit, spec_kind: &str, f: &RequestFacts<'_>) -> String {
    let mut k = String::with_capacity(64);
    k.push_str(&limit.name);
    k.push(':');
    k.push_str(spec_kind);
    for part in &limit.key {
        k.push('|');
        match part {
            KeyPart::Global => k.push('*'),
            // The caller as a layer in front identified it, or as the service found it
            // in the headers (`CallerId::from_headers`): never derived twice.
            KeyPart::ApiKey => match f.caller {
                Some(c) => k.push_str(&c.0),
                None => k.push_str("anonymous"),
            },
            KeyPart::Header(name) => match f.headers.get(name) {
                Some(v) => k.push_str(&key_id(&String::from_utf8_lossy(v.as_bytes()))),
                None => k.push('-'),
            },
            KeyPart::ClientIp => match f.client {
                Some(a) => {
                    let _ = write!(k, "{}", a.0.ip());
                }
                None => k.push('-'),
            },
            KeyPart::Metadata(field) => match f.metadata.iter().find(|(name, _)| name == field) {
                Some((_, v)) => push_escaped(&mut k, v),
                None => k.push('-'),
            },
            KeyPart::Model => match f.llm.and_then(|l| l.model.as_deref()) {
                Some(m) => push_escaped(&mut k, m),
                None => k.push('-'),
            },
            KeyPart::Provider => match f.provider {
                Some(p) => push_escaped(&mut k, p),
                None => k.push('-'),
            },
        }
    }
    k
}

/// Keeps `|` and `\` in values from forging another key's parts.
fn push_escaped(k: &mut String, v: &str) {
    for c in v.chars().take(256) {
        if c == '|' || c == '\\' {
            k.push('\\');
        }
        k.push(c);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http::HeaderValue;

    use super::*;

    fn limit(key: Vec<KeyPart>) -> Limit {
        Limit::requests("l", key, 10, Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn keys() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk-secret"),
        );
        h.insert("x-team", HeaderValue::from_static("search"));
        let llm = LlmRequest::parse(
            "openai",
            "/chat/completions",
            Bytes::from_static(br#"{"model":"m|x"}"#),
        );
        let meta = vec![("user".to_owned(), "u1".to_owned())];
        // As the service finds it: from the credential.
        let from_headers = CallerId::from_headers(&h);
        let f = RequestFacts {
            headers: &h,
            llm: Some(&llm),
            provider: Some("openai"),
            client: Some(ClientAddr("10.1.2.3:5555".parse().unwrap())),
            metadata: &meta,
            caller: from_headers.as_ref(),
        };
        let k = bucket_key(
            &limit(vec![
                KeyPart::ApiKey,
                KeyPart::Model,
                KeyPart::ClientIp,
                KeyPart::Metadata("user".into()),
                KeyPart::Header(http::HeaderName::from_static("x-team")),
            ]),
            "gcra",
            &f,
        );
        assert!(k.starts_with("l:gcra|key_"), "{k}");
        assert!(k.contains("|m\\|x|10.1.2.3|u1|key_"), "{k}");
        assert!(!k.contains("sk-secret") && !k.contains("search"));
        assert_eq!(bucket_key(&limit(vec![]), "fw", &f), "l:fw|*");
        // A caller a layer in front identified (a virtual key) wins over the headers.
        let caller = CallerId("key_0123456789abcdef".into());
        let f = RequestFacts {
            caller: Some(&caller),
            ..f
        };
        assert_eq!(
            bucket_key(&limit(vec![KeyPart::ApiKey]), "fw", &f),
            "l:fw|key_0123456789abcdef"
        );
    }
}
