//! The gateway's own header names (prefix `aigw-`, Cloudflare's `cf-aig-` accepted too).

use http::Extensions;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::GatewayHeaders;

/// An `aigw-` header and its Cloudflare AI Gateway alias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AigwHeader {
    /// The `aigw-` name, the one the gateway writes.
    pub name: HeaderName,
    /// The `cf-aig-` alias, also read.
    pub alias: HeaderName,
}

impl AigwHeader {
    const fn new(name: &'static str, alias: &'static str) -> Self {
        Self {
            name: HeaderName::from_static(name),
            alias: HeaderName::from_static(alias),
        }
    }

    /// The value a request carries under either spelling (`aigw-` first).
    pub fn get<'a>(&self, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
        headers.get(&self.name).or_else(|| headers.get(&self.alias))
    }

    /// The value a request carries under either spelling, in its headers or, when a layer
    /// in front (provider routing) already removed the gateway's headers, in the
    /// [`GatewayHeaders`] it left in the extensions. Layers read `aigw-` headers with
    /// this so they work in any position of the stack.
    pub fn get_in<'a>(
        &self,
        headers: &'a HeaderMap,
        extensions: &'a Extensions,
    ) -> Option<&'a HeaderValue> {
        self.get(headers).or_else(|| {
            extensions
                .get::<GatewayHeaders>()
                .and_then(|g| self.get(&g.0))
        })
    }

    /// Removes both spellings, returning the value [`get`](Self::get) would have.
    pub fn remove(&self, headers: &mut HeaderMap) -> Option<HeaderValue> {
        let a = headers.remove(&self.name);
        let b = headers.remove(&self.alias);
        a.or(b)
    }
}

macro_rules! aigw_headers {
    ($($(#[$doc:meta])* $id:ident = $suffix:literal;)*) => {
        $(
            $(#[$doc])*
            pub const $id: AigwHeader = AigwHeader::new(concat!("aigw-", $suffix), concat!("cf-aig-", $suffix));
        )*
        /// Every `aigw-` header, for stripping them before a request leaves for a provider.
        pub static ALL: [AigwHeader; [$(stringify!($id)),*].len()] = [$($id),*];
    };
}

aigw_headers! {
    /// Request: cache TTL in seconds.
    CACHE_TTL = "cache-ttl";
    /// Request: `true` to bypass the cache.
    SKIP_CACHE = "skip-cache";
    /// Request: a custom cache key.
    CACHE_KEY = "cache-key";
    /// Request: per-attempt timeout in milliseconds.
    REQUEST_TIMEOUT = "request-timeout";
    /// Request: the number of attempts.
    MAX_ATTEMPTS = "max-attempts";
    /// Request: delay between attempts in milliseconds.
    RETRY_DELAY = "retry-delay";
    /// Request: `constant`, `linear` or `exponential`.
    BACKOFF = "backoff";
    /// Request: a JSON object of tags for metering and logs.
    METADATA = "metadata";
    /// Request: the gateway's own token, when auth is on.
    AUTHORIZATION = "authorization";
    /// Response: `HIT`, `MISS`, `BYPASS` or `EXPIRED`.
    CACHE_STATUS = "cache-status";
    /// Response: index of the fallback step that served.
    STEP = "step";
    /// Request and response: the request id.
    REQUEST_ID = "request-id";
}

fn is_gateway_header(name: &HeaderName) -> bool {
    let k = name.as_str();
    k.starts_with("aigw-") || k.starts_with("cf-aig-")
}

/// Removes every `aigw-` / `cf-aig-` header: they are for the gateway, not the provider.
/// [`take_all`] does the same and returns them.
pub fn strip_all(headers: &mut HeaderMap) {
    take_all(headers);
}

/// Removes every `aigw-` / `cf-aig-` header and returns them (an empty map, without
/// allocating, when there were none), so that a layer that strips them can leave them
/// in [`GatewayHeaders`] for the layers after it. Values of `aigw-authorization` are
/// marked sensitive.
pub fn take_all(headers: &mut HeaderMap) -> HeaderMap {
    // Fast path: most requests carry none.
    if !headers.keys().any(is_gateway_header) {
        return HeaderMap::new();
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_gateway_header(k))
        .cloned()
        .collect();
    let mut taken = HeaderMap::with_capacity(names.len());
    for name in names {
        let secret = name == AUTHORIZATION.name || name == AUTHORIZATION.alias;
        for mut value in headers.get_all(&name).iter().cloned() {
            if secret {
                value.set_sensitive(true);
            }
            taken.append(name.clone(), value);
        }
        headers.remove(&name);
    }
    taken
}

/// Removes the hop-by-hop headers a proxy must not forward (RFC 9110 §7.6.1):
/// `connection` and every header it names, `keep-alive`, `proxy-connection`,
/// `proxy-authenticate`, `proxy-authorization`, `te`, `trailer`, `transfer-encoding` and
/// `upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    use http::header::{
        CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING,
        UPGRADE,
    };
    const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
    let hop = [
        CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ];
    // Most messages carry none: one pass to find out, no hashing.
    if !headers.keys().any(|k| hop.contains(k)) {
        return;
    }
    // Every `Connection` line counts: `Connection: a` then `Connection: b` names both.
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in hop {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn hop_by_hop_from_every_connection_line() {
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("keep-alive"));
        h.append("connection", HeaderValue::from_static("x-hop-one"));
        h.append("connection", HeaderValue::from_static("close, x-hop-two"));
        h.insert("x-hop-one", HeaderValue::from_static("1"));
        h.insert("x-hop-two", HeaderValue::from_static("2"));
        h.insert("x-kept", HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn taken_headers_stay_readable() {
        let mut h = HeaderMap::new();
        assert!(take_all(&mut h).is_empty());
        h.insert("aigw-request-id", HeaderValue::from_static("r-1"));
        h.append("cf-aig-metadata", HeaderValue::from_static("{}"));
        h.insert("aigw-authorization", HeaderValue::from_static("Bearer gw"));
        h.append("aigw-custom", HeaderValue::from_static("a"));
        h.append("aigw-custom", HeaderValue::from_static("b"));
        h.insert("x-other", HeaderValue::from_static("y"));
        let taken = take_all(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(taken.len(), 5);
        assert_eq!(taken.get_all("aigw-custom").iter().count(), 2);
        assert!(taken["aigw-authorization"].is_sensitive());

        let mut ext = Extensions::new();
        assert_eq!(REQUEST_ID.get_in(&h, &ext), None);
        ext.insert(GatewayHeaders(taken));
        assert_eq!(REQUEST_ID.get_in(&h, &ext).unwrap(), "r-1");
        assert_eq!(METADATA.get_in(&h, &ext).unwrap(), "{}");
        // The request's own headers win.
        h.insert("aigw-request-id", HeaderValue::from_static("r-2"));
        assert_eq!(REQUEST_ID.get_in(&h, &ext).unwrap(), "r-2");
    }

    #[test]
    fn alias_and_strip() {
        let mut h = HeaderMap::new();
        h.insert("cf-aig-cache-ttl", HeaderValue::from_static("60"));
        assert_eq!(CACHE_TTL.get(&h).unwrap(), "60");
        h.insert("aigw-cache-ttl", HeaderValue::from_static("30"));
        assert_eq!(CACHE_TTL.get(&h).unwrap(), "30");
        h.insert("aigw-custom-thing", HeaderValue::from_static("x"));
        h.insert("x-other", HeaderValue::from_static("y"));
        strip_all(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-other"));
    }
}
