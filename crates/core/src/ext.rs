//! Facts layers leave on responses for the layers above them, in response extensions.
//!
//! A layer reads these without depending on the layer that wrote them: the meter records
//! the cache status and the fallback step; the cache tells the meter what a hit saved.

use std::sync::{Arc, OnceLock};

use crate::Usage;
use crate::usage::FinalUsage;

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
