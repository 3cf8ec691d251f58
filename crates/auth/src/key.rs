//! Virtual keys and the store that finds one from a token.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use http::HeaderMap;
use tower_ai_core::{AuthStyle, CallerId, CallerTags, ProviderKeys, headers};

use crate::token::TokenHash;

/// A gateway token's rights: who it is (name, [`CallerId`]), which providers and models
/// it may use, the provider keys the gateway holds for it and the tags its traffic
/// carries. Its limits and budget are rate-limit limits
/// [`for_caller`](https://docs.rs/tower-ai-ratelimit) its [`id`](Self::id).
#[derive(Clone)]
pub struct VirtualKey {
    name: Arc<str>,
    hash: TokenHash,
    id: CallerId,
    providers: Option<Vec<Arc<str>>>,
    models: Option<Vec<ModelPattern>>,
    tags: CallerTags,
    keys: ProviderKeys,
}

impl fmt::Debug for VirtualKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualKey")
            .field("name", &self.name)
            .field("id", &self.id.0)
            .field("providers", &self.providers)
            .field("models", &self.models)
            .field("tags", &self.tags.0)
            .field("keys", &self.keys)
            .finish()
    }
}

impl VirtualKey {
    /// The key named `name` whose token hashes to `hash`: any provider, any model, no
    /// provider keys of its own, no tags.
    pub fn new(name: impl Into<Arc<str>>, hash: TokenHash) -> Self {
        Self {
            name: name.into(),
            id: CallerId(Arc::from(hash.key_id())),
            hash,
            providers: None,
            models: None,
            tags: CallerTags::default(),
            keys: ProviderKeys::new(),
        }
    }

    /// Only these providers (by name); any other is answered 403.
    pub fn with_providers<I, S>(mut self, providers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        self.providers = Some(providers.into_iter().map(Into::into).collect());
        self
    }

    /// Only these models: exact names, or a prefix ending in `*` (`gpt-4o*`). A request
    /// that names no model, or another, is answered 403.
    pub fn with_models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.models = Some(
            models
                .into_iter()
                .map(|m| ModelPattern::new(m.as_ref()))
                .collect(),
        );
        self
    }

    /// Tags the meter records with every request of this key (they win over the
    /// client's `aigw-metadata` of the same name).
    pub fn with_tags<I, K, V>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let tags: Vec<(String, String)> = tags
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.tags = CallerTags(tags.into());
        self
    }

    /// The provider keys the gateway sends for this key's requests (built with
    /// [`ProviderKeys::with_key`]): the client never holds them.
    pub fn with_provider_keys(mut self, keys: ProviderKeys) -> Self {
        self.keys = keys;
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Who it is to the layers below: `key_` and 16 hex digits of its token's hash,
    /// the same as [`tower_ai_core::key_id`] of the token.
    pub fn id(&self) -> &CallerId {
        &self.id
    }

    /// Whether it may use `provider`.
    pub fn allows_provider(&self, provider: &str) -> bool {
        self.providers
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| &**p == provider))
    }

    /// Whether it may use `model` (`None`: the request names none).
    pub fn allows_model(&self, model: Option<&str>) -> bool {
        match (&self.models, model) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(ms), Some(m)) => ms.iter().any(|p| p.matches(m)),
        }
    }

    /// Whether it restricts models (the body must then be read).
    pub fn restricts_models(&self) -> bool {
        self.models.is_some()
    }

    /// Whether it restricts providers.
    pub fn restricts_providers(&self) -> bool {
        self.providers.is_some()
    }

    pub(crate) fn tags(&self) -> &CallerTags {
        &self.tags
    }

    pub(crate) fn provider_keys(&self) -> &ProviderKeys {
        &self.keys
    }
}

#[derive(Clone, Debug)]
enum ModelPattern {
    Exact(Box<str>),
    Prefix(Box<str>),
}

impl ModelPattern {
    fn new(s: &str) -> Self {
        match s.strip_suffix('*') {
            Some(p) => Self::Prefix(p.into()),
            None => Self::Exact(s.into()),
        }
    }

    fn matches(&self, model: &str) -> bool {
        match self {
            Self::Exact(m) => **m == *model,
            Self::Prefix(p) => model.starts_with(&**p),
        }
    }
}

/// The gateway's tokens, by hash: virtual keys for traffic, admin tokens for the admin
/// endpoints. Finding a token hashes it, looks the hash up, then compares the whole
/// hash in constant time.
#[derive(Clone, Debug, Default)]
pub struct KeyStore {
    keys: HashMap<u64, Arc<VirtualKey>>,
    admins: Vec<TokenHash>,
}

/// Two keys with one token (or one name): a configuration error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateKey(String);

impl fmt::Display for DuplicateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DuplicateKey {}

impl KeyStore {
    /// An empty store: every token is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a virtual key. Fails when its name or token is already in the store.
    pub fn with_key(mut self, key: VirtualKey) -> Result<Self, DuplicateKey> {
        if self.keys.values().any(|k| k.name == key.name) {
            return Err(DuplicateKey(format!("two keys are named `{}`", key.name)));
        }
        if self.keys.contains_key(&key.hash.prefix()) || self.admins.contains(&key.hash) {
            return Err(DuplicateKey(format!(
                "key `{}` has the token hash of another key",
                key.name
            )));
        }
        self.keys.insert(key.hash.prefix(), Arc::new(key));
        Ok(self)
    }

    /// Adds an admin token (by its hash): it opens the admin endpoints, not the proxy.
    pub fn with_admin(mut self, hash: TokenHash) -> Result<Self, DuplicateKey> {
        if self.keys.contains_key(&hash.prefix()) {
            return Err(DuplicateKey(
                "an admin token has the token hash of a virtual key".to_owned(),
            ));
        }
        self.admins.push(hash);
        Ok(self)
    }

    /// The virtual key `token` is the token of.
    pub fn authenticate(&self, token: &str) -> Option<&Arc<VirtualKey>> {
        let hash = TokenHash::of(token);
        self.keys
            .get(&hash.prefix())
            .filter(|k| k.hash.ct_eq(&hash))
    }

    /// Whether `token` is an admin token. Every admin hash is compared, in constant
    /// time each.
    pub fn is_admin(&self, token: &str) -> bool {
        let hash = TokenHash::of(token);
        self.admins
            .iter()
            .fold(false, |found, a| found | a.ct_eq(&hash))
    }

    /// Whether any admin token is set.
    pub fn has_admins(&self) -> bool {
        !self.admins.is_empty()
    }

    /// The virtual keys.
    pub fn keys(&self) -> impl Iterator<Item = &VirtualKey> {
        self.keys.values().map(|k| &**k)
    }
}

/// Where a request's gateway token was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// `aigw-authorization` (or `cf-aig-authorization`).
    Gateway,
    /// A provider credential header (`authorization`, `x-api-key`, `api-key`,
    /// `x-goog-api-key`), for SDKs that only send the one key they know: the gateway
    /// then sends the provider key itself.
    Credential(http::HeaderName),
}

/// The gateway token a request carries, and where: `aigw-authorization: Bearer ...`
/// first, else the provider credential header ([`TokenSource::Credential`]).
pub fn find_token(headers: &HeaderMap) -> Option<(&str, TokenSource)> {
    if let Some(v) = headers::AUTHORIZATION.get(headers) {
        return v
            .to_str()
            .ok()
            .map(bearer)
            .filter(|t| !t.is_empty())
            .map(|t| (t, TokenSource::Gateway));
    }
    for name in AuthStyle::CREDENTIAL_HEADERS {
        if let Some(t) = headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .map(bearer)
            .filter(|t| !t.is_empty())
        {
            return Some((t, TokenSource::Credential(name)));
        }
    }
    None
}

fn bearer(v: &str) -> &str {
    let v = v.trim();
    match (v.get(..6), v.as_bytes().get(6)) {
        (Some(p), None | Some(b' ')) if p.eq_ignore_ascii_case("bearer") => v[6..].trim_start(),
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_finds_keys_and_admins_by_token() {
        let store = KeyStore::new()
            .with_key(VirtualKey::new("a", TokenHash::of("tok-a")))
            .unwrap()
            .with_key(VirtualKey::new("b", TokenHash::of("tok-b")))
            .unwrap()
            .with_admin(TokenHash::of("tok-admin"))
            .unwrap();
        assert_eq!(store.authenticate("tok-a").unwrap().name(), "a");
        assert_eq!(store.authenticate("tok-b").unwrap().name(), "b");
        assert_eq!(
            &*store.authenticate("tok-b").unwrap().id().0,
            tower_ai_core::key_id("tok-b")
        );
        for wrong in ["", "tok-", "tok-c", "TOK-A", "tok-a ", "tok-admin"] {
            assert!(store.authenticate(wrong).is_none(), "{wrong}");
        }
        assert!(store.is_admin("tok-admin"));
        assert!(!store.is_admin("tok-a") && !store.is_admin(""));
        assert!(
            store
                .clone()
                .with_key(VirtualKey::new("a", TokenHash::of("x")))
                .is_err()
        );
        assert!(
            store
                .clone()
                .with_key(VirtualKey::new("c", TokenHash::of("tok-a")))
                .is_err()
        );
        assert!(store.with_admin(TokenHash::of("tok-a")).is_err());
    }

    #[test]
    fn providers_and_models() {
        let k = VirtualKey::new("k", TokenHash::of("t"))
            .with_providers(["openai", "anthropic"])
            .with_models(["gpt-4o-mini", "claude-*"]);
        assert!(k.allows_provider("openai") && !k.allows_provider("groq"));
        assert!(k.allows_model(Some("gpt-4o-mini")));
        assert!(!k.allows_model(Some("gpt-4o")));
        assert!(k.allows_model(Some("claude-3-5-haiku")));
        assert!(!k.allows_model(None));
        let open = VirtualKey::new("o", TokenHash::of("t2"));
        assert!(open.allows_provider("x") && open.allows_model(None));
        assert!(!format!("{k:?}").contains("\"t\""));
    }

    #[test]
    fn where_the_token_is() {
        let mut h = HeaderMap::new();
        assert_eq!(find_token(&h), None);
        h.insert("x-api-key", "aigw_1".parse().unwrap());
        assert_eq!(
            find_token(&h),
            Some((
                "aigw_1",
                TokenSource::Credential(http::HeaderName::from_static("x-api-key"))
            ))
        );
        h.insert("authorization", "bearer  aigw_2".parse().unwrap());
        assert_eq!(find_token(&h).unwrap().0, "aigw_2");
        h.insert("cf-aig-authorization", "Bearer aigw_3".parse().unwrap());
        assert_eq!(find_token(&h), Some(("aigw_3", TokenSource::Gateway)));
        // An empty gateway header is no token at all, not a fall back to the provider key.
        h.insert("aigw-authorization", "Bearer ".parse().unwrap());
        assert_eq!(find_token(&h), None);
    }
}
