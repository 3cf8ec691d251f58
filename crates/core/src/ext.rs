//! Facts layers leave for each other in extensions: on responses for the layers above
//! them, on requests for the layers below.
//!
//! A layer reads these without depending on the layer that wrote them: the meter records
//! the cache status and the fallback step; the cache tells the meter what a hit saved;
//! provider routing leaves the gateway's headers it removed and who the caller was.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::usage::FinalUsage;
use crate::{InvalidProvider, Provider, Usage};
use crate::{credential, headers, key_id};

/// How the cache answered: `aigw-cache-status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// Served from the cache.
    Hit,
    /// Not in the cache: served upstream (and stored, if it could be).
    Miss,
    /// The cache was skipped for this request.
    Bypass,
    /// In the cache but expired: served upstream.
    Expired,
}

impl CacheStatus {
    /// `HIT`, `MISS`, `BYPASS` or `EXPIRED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Bypass => "BYPASS",
            Self::Expired => "EXPIRED",
        }
    }
}

/// The index of the fallback step that served: `aigw-step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FallbackStep(pub u32);

/// Usage already known for a response that did not come from the provider (a cache hit
/// carries the usage of the stored answer): the meter records it instead of parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownUsage(pub Usage);

/// Marks a response the gateway produced itself (an error of its own, a 429 of the rate
/// limiter): the meter tells those apart from the provider's own errors.
/// [`ErrorResponse::into_response`](crate::ErrorResponse::into_response) sets it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayGenerated;

/// The client's address, as the server that accepted the connection saw it: put in
/// request extensions by the server (the gateway does), read by layers that key on it.
/// Never taken from a header a client can forge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Request extension: the `aigw-` / `cf-aig-` headers a layer removed before the request
/// went on (provider routing strips them: they are for the gateway, not the provider),
/// so that the layers after it still see `aigw-metadata`, `aigw-request-id`, ... Read
/// them with [`AigwHeader::get_in`](crate::headers::AigwHeader::get_in), which looks in
/// the request headers first and here second. Values of `aigw-authorization` are marked
/// sensitive. Present only when a layer removed any.
#[derive(Clone, Debug, Default)]
pub struct GatewayHeaders(pub HeaderMap);

/// Request extension: who the caller is, as the [`key_id`] of its credential: the
/// `aigw-authorization` token when it sent one, else its provider credential
/// ([`credential`]). Provider routing computes it before it removes or replaces
/// credentials (with a gateway-held key the provider credential below it is the
/// gateway's, the same for every caller), so layers below it key on the real caller.
/// Never the credential itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CallerId(pub Arc<str>);

impl CallerId {
    /// The caller's id from a request's headers, as they came from the client:
    /// `aigw-authorization` (without `Bearer `), else the provider credential.
    pub fn from_headers(h: &HeaderMap) -> Option<Self> {
        let gateway_token = headers::AUTHORIZATION
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim())
            .filter(|v| !v.is_empty());
        gateway_token
            .or_else(|| credential(h))
            .map(|c| Self(Arc::from(key_id(c))))
    }
}

/// Request extension: provider keys the gateway holds for this caller (a virtual key's,
/// put there by an auth layer), by provider name. Provider routing honours it: for a
/// provider found here it removes every credential the client sent and puts this key in
/// the provider's own header, ahead of any key the gateway holds for everyone. The
/// client never holds these keys. The values are ready header values marked sensitive;
/// `Debug` names only the providers.
#[derive(Clone, Default)]
pub struct ProviderKeys(Arc<HashMap<Arc<str>, (HeaderName, HeaderValue)>>);

impl ProviderKeys {
    /// No keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds `key` for `provider`, in the header its auth style names. Fails for a key
    /// that cannot be a header value, and (as provider routing's own gateway keys do) for
    /// a provider whose requests name their `{resource}` (Azure OpenAI) without an
    /// allowlist of resources: a client could otherwise have the key sent to a host of
    /// its choosing.
    pub fn with_key(mut self, provider: &Provider, key: &str) -> Result<Self, InvalidProvider> {
        if provider.resource_segment() && provider.allowed_resources().is_none() {
            return Err(InvalidProvider::new(format!(
                "a key for `{}` needs the list of resources it may be sent to (resources = [...])",
                provider.name()
            )));
        }
        let value = provider.auth().header_value(key)?;
        Arc::make_mut(&mut self.0).insert(
            provider.name_arc().clone(),
            (provider.auth().header_name(), value),
        );
        Ok(self)
    }

    /// The header to send to `provider`, if a key is held for it.
    pub fn get(&self, provider: &str) -> Option<(&HeaderName, &HeaderValue)> {
        self.0.get(provider).map(|(n, v)| (n, v))
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.0.keys().map(|k| &**k).collect();
        names.sort_unstable();
        f.debug_tuple("ProviderKeys").field(&names).finish()
    }
}

/// Request extension: tags a layer in front attached to the caller (a virtual key's
/// tags, put there by an auth layer). The meter records them with the request's
/// `aigw-metadata` tags; on a clash these win, so a caller cannot pass itself off as
/// another tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerTags(pub Arc<[(String, String)]>);

/// Response extension: the request that actually served a response, when a layer below
/// chose it (a fallback step): its provider, its provider-relative path and the body it
/// sent. A layer above that records by provider and model (the meter) reads this instead
/// of the client's request, and parses the body only then: the layer that sets it never
/// does.
#[derive(Clone, Debug)]
pub struct ServedRequest {
    /// The provider's name (or `compat`, for a `/compat/...` step).
    pub provider: Arc<str>,
    /// The provider-relative path, e.g. `/chat/completions`.
    pub path: Arc<str>,
    /// The body sent.
    pub body: bytes::Bytes,
}

/// Where the first layer that reads a response's usage leaves it for every layer above
/// it, so that a stream is parsed for usage at most once however many layers want it.
///
/// The innermost layer that wants usage finds no slot in the response extensions,
/// inserts one, reads the body and fills the slot when the body ends; the layers above
/// find the slot and read it when their (outer) body ends, after the inner one did.
#[derive(Clone, Debug, Default)]
pub struct UsageSlot(Arc<OnceLock<FinalUsage>>);

impl UsageSlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fills the slot; a second fill is ignored.
    pub fn set(&self, usage: FinalUsage) {
        let _ = self.0.set(usage);
    }

    /// The usage, once the reading layer has settled it.
    pub fn get(&self) -> Option<FinalUsage> {
        self.0.get().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_keys_are_ready_headers_and_never_printed() {
        let providers = crate::Providers::builtin();
        let keys = ProviderKeys::new()
            .with_key(providers.get("anthropic").unwrap(), "sk-ant-SECRET")
            .unwrap()
            .with_key(providers.get("openai").unwrap(), "sk-SECRET")
            .unwrap();
        let (name, value) = keys.get("anthropic").unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("x-api-key", "sk-ant-SECRET")
        );
        assert!(value.is_sensitive());
        assert_eq!(keys.get("openai").unwrap().1, "Bearer sk-SECRET");
        assert!(keys.get("groq").is_none());
        let debug = format!("{keys:?}");
        assert!(
            !debug.contains("SECRET") && debug.contains("anthropic"),
            "{debug}"
        );
        assert!(
            ProviderKeys::new()
                .with_key(providers.get("azure-openai").unwrap(), "k")
                .is_err()
        );
    }

    #[test]
    fn caller_id_prefers_the_gateway_token() {
        let mut h = HeaderMap::new();
        assert_eq!(CallerId::from_headers(&h), None);
        h.insert("x-api-key", "sk-ant-client".parse().unwrap());
        let client = CallerId::from_headers(&h).unwrap();
        assert_eq!(&*client.0, key_id("sk-ant-client"));
        h.insert("cf-aig-authorization", "Bearer gw-token".parse().unwrap());
        assert_eq!(&*CallerId::from_headers(&h).unwrap().0, key_id("gw-token"));
    }
}
