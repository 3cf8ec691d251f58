use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName};
use tower_ai_core::{Providers, credential, headers};
use tower_layer::Layer;

use crate::flight::CacheState;
use crate::key::{CacheKey, KeyParts, Scope, What};
use crate::memory::MemoryStore;
use crate::service::Cache;
use crate::store::CacheStore;

/// Whose cached answers a request may receive. See the [crate docs](crate#the-key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheScope {
    /// Each credential has its own entries (the default): the caller a layer in front
    /// identified ([`CallerId`](tower_ai_core::CallerId), e.g. a virtual key) when there
    /// is one, else the gateway token (`aigw-authorization`), else the provider key the
    /// request carries; requests with none share the anonymous entries. Only a hash of
    /// the credential enters the key.
    #[default]
    PerCredential,
    /// One cache for the whole gateway: any caller may get an answer first fetched by
    /// another.
    Shared,
}

/// Caches LLM responses. See the [crate docs](crate).
///
/// The store and the requests in flight are shared by every clone of the layer and of
/// the services it makes.
#[derive(Clone)]
pub struct CacheLayer {
    pub(crate) config: Arc<Config>,
    pub(crate) state: Arc<CacheState>,
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) ttl: Duration,
    pub(crate) scope: CacheScope,
    pub(crate) max_entry_bytes: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_temperature: Option<f64>,
    pub(crate) key_headers: Vec<HeaderName>,
    pub(crate) wait_timeout: Duration,
    pub(crate) single_flight: bool,
    pub(crate) providers: Providers,
}

impl fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("CacheLayer")
            .field("ttl", &c.ttl)
            .field("scope", &c.scope)
            .field("max_entry_bytes", &c.max_entry_bytes)
            .field("max_body_bytes", &c.max_body_bytes)
            .field("max_temperature", &c.max_temperature)
            .field("key_headers", &c.key_headers)
            .field("wait_timeout", &c.wait_timeout)
            .field("single_flight", &c.single_flight)
            .finish_non_exhaustive()
    }
}

impl CacheLayer {
    /// The longest TTL a request may ask for: one year.
    pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

    /// A cache over `store`, with a 5-minute TTL, per-credential scope, entries of at
    /// most 8 MiB, request bodies read up to 32 MiB, every temperature cached, the
    /// default answer-changing headers (`anthropic-version`, `anthropic-beta`,
    /// `openai-organization`, `openai-project`), and identical requests in flight
    /// coalesced with a 30-second wait.
    pub fn new(store: impl CacheStore) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// [`new`](Self::new) with a store already behind an `Arc`.
    pub fn from_arc(store: Arc<dyn CacheStore>) -> Self {
        Self {
            config: Arc::new(Config {
                ttl: Duration::from_secs(300),
                scope: CacheScope::PerCredential,
                max_entry_bytes: 8 * 1024 * 1024,
                max_body_bytes: 32 * 1024 * 1024,
                max_temperature: None,
                key_headers: [
                    "anthropic-version",
                    "anthropic-beta",
                    "openai-organization",
                    "openai-project",
                ]
                .into_iter()
                .map(HeaderName::from_static)
                .collect(),
                wait_timeout: Duration::from_secs(30),
                single_flight: true,
                providers: Providers::builtin(),
            }),
            state: Arc::new(CacheState::new(store)),
        }
    }

    /// A cache in memory, bounded to `max_bytes` ([`MemoryStore`]).
    pub fn memory(max_bytes: u64) -> Self {
        Self::new(MemoryStore::new(max_bytes))
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// How long entries live unless a request says otherwise (`aigw-cache-ttl`).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.config_mut().ttl = ttl.min(Self::MAX_TTL);
        self
    }

    /// Whose entries a request may read: see [`CacheScope`].
    pub fn with_scope(mut self, scope: CacheScope) -> Self {
        self.config_mut().scope = scope;
        self
    }

    /// The largest response stored; larger ones pass through, uncached.
    pub fn with_max_entry_bytes(mut self, max: usize) -> Self {
        self.config_mut().max_entry_bytes = max;
        self
    }

    /// The largest request body the layer reads when no layer before it did (413 past
    /// it).
    pub fn with_max_body_bytes(mut self, max: usize) -> Self {
        self.config_mut().max_body_bytes = max;
        self
    }

    /// Leaves non-deterministic requests out: a generation request whose `temperature`
    /// (or Gemini's `generationConfig.temperature`) is above `max` bypasses the cache; a
    /// request that sets none counts as `1.0`, the providers' default. Embeddings and
    /// other operations without sampling are always cached. `None` (the default) caches
    /// every temperature.
    pub fn with_max_temperature(mut self, max: Option<f64>) -> Self {
        self.config_mut().max_temperature = max;
        self
    }

    /// The request headers whose values change the answer, and so enter the key
    /// (replacing the default list).
    pub fn with_key_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.config_mut().key_headers = names.into_iter().collect();
        self
    }

    /// How long an identical request waits for the one in flight to answer before it
    /// goes upstream itself.
    pub fn with_wait_timeout(mut self, timeout: Duration) -> Self {
        self.config_mut().wait_timeout = timeout;
        self
    }

    /// Whether identical requests in flight are coalesced (default on).
    pub fn with_single_flight(mut self, yes: bool) -> Self {
        self.config_mut().single_flight = yes;
        self
    }

    /// The providers (for each one's wire format, to read usage). Use the gateway's own
    /// registry so that custom providers are read in their format.
    pub fn with_providers(mut self, providers: Providers) -> Self {
        self.config_mut().providers = providers;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn CacheStore> {
        &self.state.store
    }

    /// A handle to purge entries, e.g. from an admin endpoint.
    pub fn handle(&self) -> CacheHandle {
        CacheHandle {
            config: self.config.clone(),
            state: self.state.clone(),
        }
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = Cache<S>;

    fn layer(&self, inner: S) -> Cache<S> {
        Cache {
            inner,
            config: self.config.clone(),
            state: self.state.clone(),
        }
    }
}

/// Purges entries of a [`CacheLayer`]'s store: what the gateway's `DELETE /cache` calls.
#[derive(Clone)]
pub struct CacheHandle {
    config: Arc<Config>,
    state: Arc<CacheState>,
}

impl fmt::Debug for CacheHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheHandle").finish_non_exhaustive()
    }
}

impl CacheHandle {
    /// Removes the entry under `key` (a [`CacheKey`] a response carried in its
    /// extensions); whether there was one.
    pub async fn purge(&self, key: &CacheKey) -> bool {
        self.state.store.delete(key).await
    }

    /// Removes the entries stored under the custom key `custom` (`aigw-cache-key`) in
    /// the scope of the credential in `headers` (the caller's own request headers),
    /// streamed and not; whether there was one.
    pub async fn purge_custom(&self, headers: &HeaderMap, custom: &str) -> bool {
        let mut any = false;
        for stream in [false, true] {
            let key = custom_key(&self.config, headers, custom.as_bytes(), stream);
            any |= self.state.store.delete(&key).await;
        }
        any
    }

    /// Removes every entry of the store.
    pub async fn purge_all(&self) {
        self.state.store.clear().await
    }
}

/// The scope of a request: the caller a layer in front identified (a virtual key's
/// [`CallerId`](tower_ai_core::CallerId)), else from its headers.
pub(crate) fn scope_of<'a>(
    config: &Config,
    headers: &'a HeaderMap,
    extensions: &'a http::Extensions,
) -> Scope<'a> {
    match (config.scope, extensions.get::<tower_ai_core::CallerId>()) {
        (CacheScope::PerCredential, Some(caller)) => Scope::Caller(&caller.0),
        _ => scope(config, headers),
    }
}

/// The scope of a request, from its headers.
pub(crate) fn scope<'a>(config: &Config, headers: &'a HeaderMap) -> Scope<'a> {
    match config.scope {
        CacheScope::Shared => Scope::Shared,
        CacheScope::PerCredential => headers::AUTHORIZATION
            .get(headers)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim())
            .filter(|v| !v.is_empty())
            .or_else(|| credential(headers))
            .map_or(Scope::Anonymous, Scope::Credential),
    }
}

pub(crate) fn custom_key(
    config: &Config,
    headers: &HeaderMap,
    custom: &[u8],
    stream: bool,
) -> CacheKey {
    KeyParts {
        scope: scope(config, headers),
        stream,
        what: What::Custom(custom),
    }
    .key()
}
