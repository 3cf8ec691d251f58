//! Facts layers leave for each other in extensions: on responses for the layers above
//! them, on requests for the layers below.
//!
//! A layer reads these without depending on the layer that wrote them: the meter records
//! the cache status and the fallback step; the cache tells the meter what a hit saved;
//! provider routing leaves the gateway's headers it removed and who the caller was.

use std::sync::{Arc, OnceLock};

use http::HeaderMap;

use crate::Usage;
use crate::usage::FinalUsage;
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
