//! [`CacheKey`]: what makes two requests the same, hashed.

use std::fmt;
use std::io;

use http::{HeaderMap, HeaderName};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The key of a cache entry: a SHA-256 of the scope, the provider, the provider-relative
/// path, whether the answer is a stream, the request body in canonical form and the
/// request headers that change the answer (or, instead of provider, path, body and
/// headers, the request's `aigw-cache-key`). See the [crate docs](crate#the-key).
///
/// It reveals nothing of the request nor of the credential that scoped it. Displayed as
/// 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// A key from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from_digit((b >> 4) as u32, 16).expect("nibble"));
            s.push(char::from_digit((b & 0xf) as u32, 16).expect("nibble"));
        }
        s
    }

    /// Parses 64 hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi << 4 | lo) as u8;
        }
        Some(Self(out))
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.to_hex())
    }
}

/// Whose entries a request may read and write: see [`CacheScope`](crate::CacheScope).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scope<'a> {
    /// One cache for the whole gateway.
    Shared,
    /// The entries of one credential (hashed here, never stored).
    Credential(&'a str),
    /// The entries of a caller a layer in front identified (a virtual key's
    /// [`CallerId`](tower_ai_core::CallerId)).
    Caller(&'a str),
    /// Requests that carry no credential at all.
    Anonymous,
}

/// Everything the key is made of.
pub(crate) struct KeyParts<'a> {
    pub(crate) scope: Scope<'a>,
    pub(crate) stream: bool,
    pub(crate) what: What<'a>,
}

/// Either the request itself or the key the client named.
pub(crate) enum What<'a> {
    Request {
        provider: &'a str,
        path: &'a str,
        /// The parsed JSON body, or `None` for a body hashed as raw bytes.
        json: Option<&'a Value>,
        raw: &'a [u8],
        headers: &'a HeaderMap,
        key_headers: &'a [HeaderName],
    },
    Custom(&'a [u8]),
}

const VERSION: &[u8] = b"tower-ai-cache/1";

/// Body members that never change the answer: dropped from the canonical body.
const IGNORED_MEMBERS: [&str; 2] = ["stream", "stream_options"];

impl KeyParts<'_> {
    pub(crate) fn key(&self) -> CacheKey {
        let mut h = Sha256::new();
        field(&mut h, VERSION);
        match self.scope {
            Scope::Shared => field(&mut h, b"shared"),
            Scope::Credential(c) => {
                field(&mut h, b"credential");
                // The credential only ever enters a hash.
                field(&mut h, &Sha256::digest(c.as_bytes()));
            }
            Scope::Caller(id) => {
                field(&mut h, b"caller");
                field(&mut h, id.as_bytes());
            }
            Scope::Anonymous => field(&mut h, b"anonymous"),
        }
        field(&mut h, if self.stream { b"sse" } else { b"whole" });
        match &self.what {
            What::Custom(k) => {
                field(&mut h, b"custom");
                field(&mut h, k);
            }
            What::Request {
                provider,
                path,
                json,
                raw,
                headers,
                key_headers,
            } => {
                field(&mut h, b"request");
                field(&mut h, provider.as_bytes());
                field(&mut h, path.as_bytes());
                match json {
                    Some(v) => {
                        field(&mut h, b"json");
                        write_canonical_top(&mut HashWriter(&mut h), v)
                            .expect("hashing does not fail");
                        field(&mut h, b"");
                    }
                    None => {
                        field(&mut h, b"raw");
                        field(&mut h, raw);
                    }
                }
                for name in key_headers.iter() {
                    let mut values = headers.get_all(name).iter().peekable();
                    if values.peek().is_none() {
                        continue;
                    }
                    field(&mut h, name.as_str().as_bytes());
                    for v in values {
                        field(&mut h, v.as_bytes());
                    }
                }
            }
        }
        CacheKey(h.finalize().into())
    }
}

/// A length-prefixed field, so that no two sequences of fields hash alike.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The canonical form of a JSON request body, as the key sees it: members sorted by key
/// at every level, no whitespace, and the top-level `stream` and `stream_options` left
/// out (they change how the answer is delivered, not the answer). `None` when the body
/// is not JSON: such bodies are keyed by their raw bytes.
///
/// Only the key uses it: the body forwarded upstream stays the client's own bytes.
///
/// ```
/// use tower_ai_cache::canonical_json;
/// let a = canonical_json(br#"{ "b": [1, {"y":2, "x":1}], "a": "\u00e9", "stream": true }"#).unwrap();
/// assert_eq!(a, r#"{"a":"é","b":[1,{"x":1,"y":2}]}"#.as_bytes());
/// assert_eq!(canonical_json(b"not json"), None);
/// ```
pub fn canonical_json(body: &[u8]) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let mut out = Vec::with_capacity(body.len());
    write_canonical_top(&mut out, &v).expect("writing to a Vec does not fail");
    Some(out)
}

fn write_canonical_top<W: io::Write>(w: &mut W, v: &Value) -> io::Result<()> {
    match v {
        Value::Object(map) => write_object(w, map, true),
        _ => write_canonical(w, v),
    }
}

fn write_object<W: io::Write>(
    w: &mut W,
    map: &serde_json::Map<String, Value>,
    top: bool,
) -> io::Result<()> {
    let mut members: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| !(top && IGNORED_MEMBERS.contains(&k.as_str())))
        .collect();
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    w.write_all(b"{")?;
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        serde_json::to_writer(&mut *w, k)?;
        w.write_all(b":")?;
        write_canonical(w, v)?;
    }
    w.write_all(b"}")
}

fn write_canonical<W: io::Write>(w: &mut W, v: &Value) -> io::Result<()> {
    match v {
        Value::Object(map) => write_object(w, map, false),
        Value::Array(items) => {
            w.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                write_canonical(w, item)?;
            }
            w.write_all(b"]")
        }
        other => serde_json::to_writer(&mut *w, other).map_err(io::Error::other),
    }
}

/// The sampling temperature a request asks for: top-level `temperature`, or Gemini's
/// `generationConfig.temperature`.
pub(crate) fn temperature(v: &Value) -> Option<f64> {
    v.get("temperature")
        .or_else(|| v.get("generationConfig")?.get("temperature"))
        .and_then(Value::as_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(body: &str, stream: bool, scope: Scope<'_>, headers: &HeaderMap) -> CacheKey {
        let json: Option<Value> = serde_json::from_str(body).ok();
        let key_headers = [
            HeaderName::from_static("anthropic-version"),
            HeaderName::from_static("openai-organization"),
        ];
        KeyParts {
            scope,
            stream,
            what: What::Request {
                provider: "openai",
                path: "/chat/completions",
                json: json.as_ref(),
                raw: body.as_bytes(),
                headers,
                key_headers: &key_headers,
            },
        }
        .key()
    }

    fn key(body: &str) -> CacheKey {
        key_of(body, false, Scope::Shared, &HeaderMap::new())
    }

    const BODY: &str =
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}],"temperature":0}"#;

    /// Found by the `cache_key` fuzz target: a long number parsed a bit off, so the
    /// canonical form of a canonical form was not itself.
    #[test]
    fn canonical_form_is_idempotent_for_long_numbers() {
        for body in [
            &b"[1.5, 0 ,-12345678345678901234567890, -92232014e-308]"[..],
            b"{\"t\": 0.30000000000000004, \"x\": 2.2250738585072014e-308}",
            b"[9007199254740993, 1e23, 8.98846567431158e307]",
        ] {
            let c = canonical_json(body).unwrap();
            assert_eq!(
                canonical_json(&c).unwrap(),
                c,
                "{}",
                String::from_utf8_lossy(&c)
            );
        }
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let reordered = r#"{ "temperature" : 0,
            "messages": [ {"content": "Hi", "role": "user"} ],
            "model": "gpt-4o-mini" }"#;
        assert_eq!(key(BODY), key(reordered));
        // Another temperature is another answer.
        assert_ne!(key(BODY), key(&BODY.replace(":0}", ":0.5}")));
    }

    #[test]
    fn stream_members_do_not_split_the_body() {
        let streamed = BODY.replace(
            "{\"model\"",
            r#"{"stream":true,"stream_options":{"include_usage":true},"model""#,
        );
        assert_eq!(key(BODY), key(&streamed));
        // Nested members of the same name are the content, not the delivery.
        let nested = BODY.replace("\"Hi\"", r#"{"stream":true}"#);
        let nested2 = BODY.replace("\"Hi\"", r#"{"stream":false}"#);
        assert_ne!(key(&nested), key(&nested2));
        // The delivery is still told apart by the variant.
        let h = HeaderMap::new();
        assert_ne!(
            key_of(BODY, false, Scope::Shared, &h),
            key_of(&streamed, true, Scope::Shared, &h)
        );
    }

    /// Keys are stored (in Redis, by every replica): a change to how they are computed
    /// must be deliberate (and bump `VERSION`), never a side effect.
    #[test]
    fn keys_are_stable() {
        let mut h = HeaderMap::new();
        h.insert("anthropic-version", "2023-06-01".parse().unwrap());
        let body = r#"{"stream":true,"messages":[{"role":"user","content":"Hi \"there\" \u00e9"}],"model":"gpt-4o-mini","n":[1,2.5,{"b":null,"a":false}]}"#;
        assert_eq!(
            key_of(body, true, Scope::Credential("sk-x"), &h).to_hex(),
            "77ed2e28cb17e1d6a9437223490f8d23c59d2ef57e1a0efc8c397479246907c7"
        );
    }

    #[test]
    fn what_changes_the_answer_changes_the_key() {
        assert_ne!(key(BODY), key(&BODY.replace("gpt-4o-mini", "gpt-4o")));
        assert_ne!(key(BODY), key(&BODY.replace("Hi", "Hello")));
        let mut h = HeaderMap::new();
        h.insert("anthropic-version", "2023-06-01".parse().unwrap());
        let with = key_of(BODY, false, Scope::Shared, &h);
        assert_ne!(key(BODY), with);
        h.insert("anthropic-version", "2024-01-01".parse().unwrap());
        assert_ne!(with, key_of(BODY, false, Scope::Shared, &h));
        // A header that is not listed does not.
        let mut h = HeaderMap::new();
        h.insert("x-trace", "1".parse().unwrap());
        assert_eq!(key(BODY), key_of(BODY, false, Scope::Shared, &h));
    }

    #[test]
    fn scopes_never_share() {
        let h = HeaderMap::new();
        let a = key_of(BODY, false, Scope::Credential("sk-a"), &h);
        let b = key_of(BODY, false, Scope::Credential("sk-b"), &h);
        assert_ne!(a, b);
        assert_ne!(a, key(BODY));
        assert_ne!(key_of(BODY, false, Scope::Anonymous, &h), key(BODY));
        assert_eq!(a, key_of(BODY, false, Scope::Credential("sk-a"), &h));
        assert!(!a.to_hex().contains("sk-a"));
        // Virtual keys: one scope each, apart from any credential's.
        let va = key_of(BODY, false, Scope::Caller("key_a"), &h);
        assert_ne!(va, key_of(BODY, false, Scope::Caller("key_b"), &h));
        assert_ne!(va, key_of(BODY, false, Scope::Credential("key_a"), &h));
        assert_eq!(va, key_of(BODY, false, Scope::Caller("key_a"), &h));
    }

    #[test]
    fn raw_bodies_and_custom_keys() {
        assert_eq!(key("not json"), key("not json"));
        assert_ne!(key("not json"), key("not  json"));
        let custom = |k: &str, scope| {
            KeyParts {
                scope,
                stream: false,
                what: What::Custom(k.as_bytes()),
            }
            .key()
        };
        assert_eq!(custom("k", Scope::Shared), custom("k", Scope::Shared));
        assert_ne!(custom("k", Scope::Shared), custom("k2", Scope::Shared));
        assert_ne!(
            custom("k", Scope::Credential("a")),
            custom("k", Scope::Credential("b"))
        );
    }

    #[test]
    fn hex_round_trip() {
        let k = key(BODY);
        assert_eq!(CacheKey::from_hex(&k.to_hex()), Some(k));
        assert_eq!(CacheKey::from_hex("zz"), None);
    }

    #[test]
    fn temperature_is_read_where_providers_put_it() {
        let v: Value = serde_json::from_str(r#"{"temperature":0.7}"#).unwrap();
        assert_eq!(temperature(&v), Some(0.7));
        let v: Value = serde_json::from_str(r#"{"generationConfig":{"temperature":0}}"#).unwrap();
        assert_eq!(temperature(&v), Some(0.0));
        assert_eq!(temperature(&Value::Null), None);
    }
}
