//! Settling what a request reserved once its response ends: concurrency slots released,
//! token and spend reservations trued up with the real usage.

use std::sync::Arc;
use std::task::Context;

use bytes::Bytes;
use tower_ai_core::{LlmRequest, Observer, ResponseUsage, StreamEnd, Usage, UsageSlot};

use crate::decide::{Reservation, micro_usd};
use crate::layer::Shared;
use crate::limit::Quantity;
use crate::store::{Change, RateLimitStore};

/// How the settlement learns the usage.
pub(crate) enum Source {
    /// Nothing to true up (only request or concurrency limits).
    None,
    /// Known from the response head (a cache hit: no tokens were spent upstream).
    Known(Usage),
    /// A layer below reads the body and leaves the usage in this slot.
    Slot(UsageSlot),
    /// This layer reads the body (and fills the slot for the layers above).
    Own(Box<ResponseUsage>),
}

/// The [`Observer`] on an admitted request's response body.
pub(crate) struct Settlement {
    pub(crate) shared: Arc<Shared>,
    pub(crate) reservations: Vec<Reservation>,
    pub(crate) llm: Option<LlmRequest>,
    pub(crate) source: Source,
    pub(crate) cache_hit: bool,
}

impl Observer for Settlement {
    fn on_data(&mut self, data: &Bytes) {
        if let Source::Own(r) = &mut self.source {
            r.on_data(data);
        }
    }

    fn on_end(self, end: StreamEnd) {
        let usage = match self.source {
            Source::None => None,
            Source::Known(u) => Some(u),
            Source::Slot(slot) => slot.get().and_then(|f| f.usage),
            Source::Own(r) => r.finish(end).usage,
        };
        // A cache hit spent nothing upstream: give back what was reserved.
        let usage = if self.cache_hit {
            Some(Usage::default())
        } else {
            usage
        };
        settle(&self.shared, self.reservations, self.llm.as_ref(), usage);
    }
}

/// Gives back or charges the difference between what each limit reserved and what the
/// request used; `usage` is `None` when it failed or is unknown (everything reserved is
/// given back).
pub(crate) fn settle(
    shared: &Arc<Shared>,
    reservations: Vec<Reservation>,
    llm: Option<&LlmRequest>,
    usage: Option<Usage>,
) {
    let mut changes: Vec<Change> = Vec::new();
    for r in reservations {
        let taken = r.ask.cost as i64;
        let delta = match r.quantity {
            Quantity::Requests(_) => continue,
            Quantity::Concurrency(_) => -taken,
            Quantity::Tokens(_) => {
                let used = usage.map_or(0, |u| u.total_tokens());
                used as i64 - taken
            }
            Quantity::CostUsd(_) => {
                let used = usage.map_or(0, |u| micro_usd(shared, llm, &u));
                used as i64 - taken
            }
        };
        if delta != 0 {
            changes.push(Change {
                key: r.ask.key,
                spec: r.ask.spec,
                delta,
            });
        }
    }
    if changes.is_empty() {
        return;
    }
    let store: Arc<dyn RateLimitStore> = shared.store.clone();
    // Every change in one call (one round trip to a remote store).
    let mut fut = Box::pin(async move {
        if let Err(e) = store.adjust_all(&changes).await {
            tracing::warn!(error = %e, "rate-limit settlement lost");
        }
    });
    // The memory store answers at once; a remote one finishes on the runtime.
    let mut cx = Context::from_waker(std::task::Waker::noop());
    if fut.as_mut().poll(&mut cx).is_pending() {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(fut);
            }
            Err(_) => tracing::warn!("rate-limit settlement lost: no runtime"),
        }
    }
}
