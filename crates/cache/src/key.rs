//! [`CacheKey`]: what makes two requests the same, hashed.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use http::{HeaderMap, HeaderName};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

/// The key of a cache entry: a SHA-256 of the scope, the provider, the provider-relative
/// path, whether the answer is a stream, the request body in canonical form and the
/// request headers that change the answer (or, instead of provider, path, body and
/// headers, the request's `aigw-cache-key`). See the [crate docs](crate#the-key).
///
/// It reveals nothing of the request nor of the credential that scoped it. Displayed as
/// 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

/// A SHA-256 is uniform already: a map needs only a word of it (the map's own seeded
/// hasher mixes it, so nobody can choose where keys land).
impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let (word, _) = self.0.split_first_chunk::<8>().expect("32 bytes");
        state.write_u64(u64::from_ne_bytes(*word));
    }
}

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
        /// The body in canonical form, or `None` for a body hashed as raw bytes.
        canonical: Option<&'a Canonical>,
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
                canonical,
                raw,
                headers,
                key_headers,
            } => {
                field(&mut h, b"request");
                field(&mut h, provider.as_bytes());
                field(&mut h, path.as_bytes());
                match canonical {
                    Some(c) => {
                        // Not a length-prefixed field: the keys stored before the
                        // canonical form was written in one buffer hashed it as written,
                        // followed by an empty field. JSON needs no prefix to end.
                        field(&mut h, b"json");
                        c.write(|piece| h.update(piece));
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

/// The key the layer gives a JSON chat request with this body (shared scope, no key
/// headers): what `cargo bench --bench decisions` measures. Not part of the API.
#[doc(hidden)]
pub fn bench_request_key(body: &[u8]) -> Option<CacheKey> {
    let canonical = Canonical::of(body)?;
    let parts = KeyParts {
        scope: Scope::Shared,
        stream: false,
        what: What::Request {
            provider: "openai",
            path: "/chat/completions",
            canonical: Some(&canonical),
            raw: body,
            headers: &HeaderMap::new(),
            key_headers: &[],
        },
    };
    Some(parts.key())
}

/// A length-prefixed field, so that no two sequences of fields hash alike.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// The canonical form of a JSON request body, as the key sees it: members sorted by key
/// at every level (the last of duplicate members kept), no whitespace, and the top-level
/// `stream` and `stream_options` left out (they change how the answer is delivered, not
/// the answer). `None` when the body is not JSON: such bodies are keyed by their raw
/// bytes.
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
    let c = Canonical::of(body)?;
    let mut out = Vec::with_capacity(c.len());
    c.write(|piece| out.extend_from_slice(piece));
    Some(out)
}

/// A JSON body in canonical form ([`canonical_json`]), and what the layer reads from it.
///
/// Written in the one pass that parses the body, without a `serde_json::Value`: each
/// scalar is written once to a buffer as it comes (a string without escapes straight
/// from the body), and the canonical form is a list of pieces of that buffer. Sorting
/// an object's members moves their pieces, never their bytes, so a large member (a long
/// prompt) is written once however deep it sits and however its object is ordered.
pub(crate) struct Canonical {
    bytes: Vec<u8>,
    pieces: Vec<Range<usize>>,
    /// The sampling temperature the request asks for: top-level `temperature`, or
    /// Gemini's `generationConfig.temperature`; `None` when absent or not a number.
    pub(crate) temperature: Option<f64>,
}

/// `bytes` starts with the punctuation an object's pieces need.
const PUNCTUATION: &[u8] = b"{},";
const OPEN: Range<usize> = 0..1;
const CLOSE: Range<usize> = 1..2;
const COMMA: Range<usize> = 2..3;

impl Canonical {
    pub(crate) fn of(body: &[u8]) -> Option<Self> {
        let mut bytes = Vec::with_capacity(body.len() + PUNCTUATION.len());
        bytes.extend_from_slice(PUNCTUATION);
        let mut w = Writer {
            bytes,
            pieces: Vec::new(),
            members: Vec::new(),
            split: true,
        };
        let mut top = Top::default();
        let mut de = serde_json::Deserializer::from_slice(body);
        Canon {
            w: &mut w,
            top: Some(&mut top),
        }
        .deserialize(&mut de)
        .ok()?;
        de.end().ok()?;
        Some(Self {
            bytes: w.bytes,
            pieces: w.pieces,
            temperature: top.temperature,
        })
    }

    /// Gives the canonical form to `f`, piece by piece.
    pub(crate) fn write(&self, mut f: impl FnMut(&[u8])) {
        for piece in &self.pieces {
            f(&self.bytes[piece.clone()]);
        }
    }

    /// The length of the canonical form.
    fn len(&self) -> usize {
        self.pieces.iter().map(ExactSizeIterator::len).sum()
    }
}

/// What the top-level object says about sampling.
#[derive(Default)]
struct Top {
    temperature: Option<f64>,
}

/// The buffer and the pieces being written.
struct Writer<'de> {
    bytes: Vec<u8>,
    pieces: Vec<Range<usize>>,
    /// A stack shared by the objects being written: a nested object uses the part above
    /// its parent's members and leaves it as it found it.
    members: Vec<Member<'de>>,
    /// The next piece starts a run of its own (a member, which may move): it is not
    /// joined to the piece before it.
    split: bool,
}

/// One member of an object being written: its key, its pieces (`"key":` first), and
/// the length of that `"key":`, after which its value starts.
struct Member<'de> {
    key: Cow<'de, str>,
    pieces: Range<usize>,
    key_len: usize,
}

impl Writer<'_> {
    /// Adds `range` of the buffer to the output, joined to the last piece when it
    /// follows it in the buffer too.
    fn piece(&mut self, range: Range<usize>) {
        if range.is_empty() {
            return;
        }
        match self.pieces.last_mut() {
            Some(last) if !self.split && last.end == range.start => last.end = range.end,
            _ => self.pieces.push(range),
        }
        self.split = false;
    }

    /// Writes with `f` and adds what it wrote.
    fn emit<E>(&mut self, f: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E> {
        let start = self.bytes.len();
        f(&mut self.bytes)?;
        self.piece(start..self.bytes.len());
        Ok(())
    }

    /// The bytes of `pieces`, borrowed when there is one.
    fn joined(&self, pieces: Range<usize>) -> Cow<'_, [u8]> {
        match &self.pieces[pieces] {
            [one] => Cow::Borrowed(&self.bytes[one.clone()]),
            many => Cow::Owned(
                many.iter()
                    .flat_map(|p| &self.bytes[p.clone()])
                    .copied()
                    .collect(),
            ),
        }
    }
}

/// Writes the canonical form of one JSON value as serde parses it; `top` is set for the
/// top-level value only.
struct Canon<'a, 'de> {
    w: &'a mut Writer<'de>,
    top: Option<&'a mut Top>,
}

impl<'de> Canon<'_, 'de> {
    fn nested(&mut self) -> Canon<'_, 'de> {
        Canon {
            w: self.w,
            top: None,
        }
    }

    /// A scalar, exactly as `serde_json` writes it (the form a `Value` would write).
    fn scalar<T: serde::Serialize + ?Sized, E: de::Error>(self, v: &T) -> Result<(), E> {
        self.w
            .emit(|out| serde_json::to_writer(out, v))
            .map_err(E::custom)
    }

    fn raw<E>(self, bytes: &[u8]) -> Result<(), E> {
        self.w.emit(|out| {
            out.extend_from_slice(bytes);
            Ok(())
        })
    }
}

impl<'de> DeserializeSeed<'de> for Canon<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Canon<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.raw(if v { b"true" } else { b"false" })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(&v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(&v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(&v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(v)
    }

    /// A string the body holds as it is: it had no escapes, so it needs none (a JSON
    /// string cannot hold a bare quote, backslash or control character) and is copied
    /// as it is, without the escaping writer's byte-by-byte look.
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.w.emit(|out| {
            quoted(out, v);
            Ok(())
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.raw(b"null")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        // Brackets and commas go in the buffer: an array of scalars is one piece.
        self.nested().raw(b"[")?;
        while seq.next_element_seed(self.nested())?.is_some() {
            self.nested().raw(b",")?;
        }
        // A value never ends in a comma: this one followed the last element.
        if self.w.bytes.last() == Some(&b',') {
            self.w.bytes.pop();
            let last = self.w.pieces.last_mut().expect("the comma's piece");
            last.end -= 1;
            if last.start == last.end {
                self.w.pieces.pop();
            }
        }
        self.raw(b"]")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let w = self.w;
        let base = w.members.len();
        let first = w.pieces.len();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if self.top.is_some() && IGNORED_MEMBERS.contains(&&*key) {
                map.next_value::<de::IgnoredAny>()?;
                continue;
            }
            let start = w.pieces.len();
            let key_start = w.bytes.len();
            w.split = true;
            w.emit(|out| {
                match &key {
                    Cow::Borrowed(k) => quoted(out, k),
                    Cow::Owned(k) => serde_json::to_writer(&mut *out, k)?,
                }
                out.push(b':');
                Ok::<_, serde_json::Error>(())
            })
            .map_err(de::Error::custom)?;
            let key_len = w.bytes.len() - key_start;
            map.next_value_seed(Canon {
                w: &mut *w,
                top: None,
            })?;
            let pieces = start..w.pieces.len();
            w.members.push(Member {
                key,
                pieces,
                key_len,
            });
        }
        // Stable: of duplicate keys, the last one written is last, and kept (as a
        // `Value` keeps it).
        let mut stack = std::mem::take(&mut w.members);
        let members = &mut stack[base..];
        members.sort_by(|a, b| a.key.cmp(&b.key));
        let end = w.pieces.len();
        w.split = true;
        w.piece(OPEN);
        let mut top = self.top;
        for (i, m) in members.iter().enumerate() {
            if members.get(i + 1).is_some_and(|next| next.key == m.key) {
                continue;
            }
            if let Some(top) = top.as_deref_mut()
                && Top::reads(&m.key)
            {
                top.read(&m.key, &w.joined(m.pieces.clone())[m.key_len..]);
            }
            if w.pieces.len() > end + 1 {
                w.piece(COMMA);
            }
            for i in m.pieces.clone() {
                w.piece(w.pieces[i].clone());
            }
        }
        w.piece(CLOSE);
        // The sorted pieces replace the members as they came.
        w.pieces.drain(first..end);
        stack.truncate(base);
        w.members = stack;
        Ok(())
    }
}

/// A string that needs no escapes, in quotes.
fn quoted(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

impl Top {
    /// Whether [`read`](Self::read) wants this top-level member.
    fn reads(key: &str) -> bool {
        matches!(key, "temperature" | "generationConfig")
    }

    /// A top-level member: `temperature`, or Gemini's `generationConfig` (whose
    /// temperature counts only when there is no top-level one: members come sorted, so
    /// `generationConfig` is read first and `temperature` overrides it).
    fn read(&mut self, key: &str, value: &[u8]) {
        #[derive(serde::Deserialize)]
        struct GenerationConfig {
            temperature: Option<f64>,
        }
        match key {
            "temperature" => self.temperature = serde_json::from_slice(value).ok(),
            // An object only: serde would also read the struct from an array.
            "generationConfig" if value.first() == Some(&b'{') => {
                self.temperature = serde_json::from_slice::<GenerationConfig>(value)
                    .ok()
                    .and_then(|g| g.temperature);
            }
            _ => {}
        }
    }
}

/// An object's key, borrowed from the body when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(body: &str, stream: bool, scope: Scope<'_>, headers: &HeaderMap) -> CacheKey {
        let canonical = Canonical::of(body.as_bytes());
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
                canonical: canonical.as_ref(),
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
        // Written in place when the members come sorted, in pieces when not: one key.
        let sorted = r#"{"messages":[{"content":"Hi","role":"user"}],"model":"gpt-4o-mini","temperature":0}"#;
        assert_eq!(canonical_json(BODY.as_bytes()).unwrap(), sorted.as_bytes());
        assert_eq!(key(BODY), key(sorted));
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

    fn temperature(body: &str) -> Option<f64> {
        Canonical::of(body.as_bytes()).and_then(|c| c.temperature)
    }

    #[test]
    fn temperature_is_read_where_providers_put_it() {
        assert_eq!(temperature(r#"{"temperature":0.7}"#), Some(0.7));
        assert_eq!(temperature(r#"{"temperature":2}"#), Some(2.0));
        assert_eq!(
            temperature(r#"{"generationConfig":{"temperature":0}}"#),
            Some(0.0)
        );
        // The top-level member decides when there is one, even when it is no number.
        let both = r#"{"temperature":1.5,"generationConfig":{"temperature":0}}"#;
        assert_eq!(temperature(both), Some(1.5));
        let odd = r#"{"temperature":"0","generationConfig":{"temperature":0}}"#;
        assert_eq!(temperature(odd), None);
        // The last of duplicates, as everywhere in the key.
        assert_eq!(
            temperature(r#"{"temperature":0,"temperature":1}"#),
            Some(1.0)
        );
        for none in [
            "null",
            "[0.5]",
            r#"{"generationConfig":[0.5]}"#,
            r#"{"generationConfig":{"temperature":null}}"#,
            r#"{"nested":{"temperature":0}}"#,
        ] {
            assert_eq!(temperature(none), None, "{none}");
        }
    }

    /// The form a `serde_json::Value` writes, sorted: what the key hashed before it was
    /// written in one pass, and must go on hashing (keys are stored).
    fn through_a_value(body: &[u8]) -> Option<Vec<u8>> {
        use serde_json::Value;
        fn write(out: &mut Vec<u8>, v: &Value, top: bool) {
            match v {
                Value::Object(map) => {
                    let mut members: Vec<_> = map
                        .iter()
                        .filter(|(k, _)| !(top && IGNORED_MEMBERS.contains(&k.as_str())))
                        .collect();
                    members.sort_by(|a, b| a.0.cmp(b.0));
                    out.push(b'{');
                    for (i, (k, v)) in members.into_iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        serde_json::to_writer(&mut *out, k).unwrap();
                        out.push(b':');
                        write(out, v, false);
                    }
                    out.push(b'}');
                }
                Value::Array(items) => {
                    out.push(b'[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        write(out, item, false);
                    }
                    out.push(b']');
                }
                other => serde_json::to_writer(&mut *out, other).unwrap(),
            }
        }
        let v: Value = serde_json::from_slice(body).ok()?;
        let mut out = Vec::new();
        write(&mut out, &v, true);
        Some(out)
    }

    #[test]
    fn one_pass_writes_what_a_value_wrote() {
        let bodies: &[&[u8]] = &[
            BODY.as_bytes(),
            br#"{"stream":true,"messages":[{"role":"user","content":"Hi \"there\" \u00e9"}],"model":"gpt-4o-mini","n":[1,2.5,{"b":null,"a":false}]}"#,
            br#"{}"#,
            br#"[]"#,
            br#"[{}, [], [[]], {"a":{}}]"#,
            br#"{"b":1,"a":2,"b":3,"a":{"z":1,"z":[2]}}"#,
            r#"{"\u0062":1,"a\n":2,"b":3,"\ud83d\ude00":4,"é":5,"e":6}"#.as_bytes(),
            br#"{"x":{"stream":true,"stream_options":1},"stream":{"a":[1,2]},"stream_options":null}"#,
            br#"[{"stream":true}]"#,
            br#"  {"a" : [ 1 , -2 , 3.0 , -0 , 0.1 , 1e23 , -1.5e-300 , 18446744073709551615 , 18446744073709551616 , -9223372036854775808 ] }  "#,
            br#""just a string""#,
            b"42",
            b"-0.0",
            b"true",
            b"null",
            br#"{"t": 0.30000000000000004, "x": 2.2250738585072014e-308}"#,
            br#"[1.5, 0 ,-12345678345678901234567890, -92232014e-308]"#,
            r#"{"control":"\u0001\u001f\t","slash":"\/","unicode":"\u2028\u2029","raw":" "}"#.as_bytes(),
        ];
        for body in bodies {
            assert_eq!(
                canonical_json(body),
                through_a_value(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Not JSON, or JSON followed by more: no canonical form, by either.
        for bad in [
            &b"not json"[..],
            b"{\"a\":1} x",
            b"{\"a\":1,}",
            b"[1,]",
            b"{\"a\" 1}",
            b"",
            b"[1e400]",
            b"\"\\ud800\"",
        ] {
            assert_eq!(
                canonical_json(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
            assert_eq!(
                through_a_value(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // And random documents: nested objects and arrays, duplicate and escaped keys,
        // every kind of number and string, in random layouts.
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..2000 {
            let mut doc = String::new();
            random_json(&mut rng, &mut doc, 0);
            let canonical = canonical_json(doc.as_bytes());
            assert!(canonical.is_some(), "{doc}");
            assert_eq!(canonical, through_a_value(doc.as_bytes()), "{doc}");
        }
        // Deep nesting: serde's recursion limit holds for both.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(canonical_json(deep.as_bytes()), None);
        let ok = format!("{}{}", "[{\"a\":".repeat(60), "1}]".repeat(60));
        assert_eq!(
            canonical_json(ok.as_bytes()),
            through_a_value(ok.as_bytes())
        );
    }

    fn next(rng: &mut u64) -> u64 {
        // xorshift64*: a fixed sequence, so a failure repeats.
        *rng ^= *rng >> 12;
        *rng ^= *rng << 25;
        *rng ^= *rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn random_json(rng: &mut u64, out: &mut String, depth: u32) {
        const KEYS: [&str; 8] = [
            "a",
            "b",
            "stream",
            "temperature",
            "\\u0061",
            "é",
            "a\\n",
            "",
        ];
        const SCALARS: [&str; 14] = [
            "0",
            "-0",
            "1",
            "-1",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "0.5",
            "1e23",
            "-2.5E-3",
            "true",
            "null",
            r#""x\"y""#,
            r#""\ud83d\ude00 é""#,
        ];
        let space = |rng: &mut u64, out: &mut String| {
            if next(rng).is_multiple_of(4) {
                out.push_str(" \n\t");
            }
        };
        space(rng, out);
        match next(rng) % if depth > 4 { 1 } else { 3 } {
            0 => out.push_str(SCALARS[(next(rng) % SCALARS.len() as u64) as usize]),
            1 => {
                out.push('[');
                for i in 0..next(rng) % 4 {
                    if i > 0 {
                        out.push(',');
                    }
                    random_json(rng, out, depth + 1);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..next(rng) % 5 {
                    if i > 0 {
                        out.push(',');
                    }
                    space(rng, out);
                    let key = KEYS[(next(rng) % KEYS.len() as u64) as usize];
                    out.push('"');
                    out.push_str(key);
                    out.push_str("\":");
                    random_json(rng, out, depth + 1);
                }
                out.push('}');
            }
        }
        space(rng, out);
    }
}
