//! Facts layers leave on responses for the layers above them, in response extensions.
//!
//! A layer reads these without depending on the layer that wrote them: the meter records
//! the cache status and the fallback step; the cache tells the meter what a hit saved.

use crate::Usage;

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
