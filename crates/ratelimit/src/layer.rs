use std::fmt;
use std::sync::Arc;

use tower_ai_core::{PriceTable, Providers};
use tower_layer::Layer;

use crate::limit::Limit;
use crate::service::RateLimit;
use crate::store::RateLimitStore;

/// Request, token, spend and concurrency limits per key. See the [crate docs](crate).
///
/// The limits and the store are shared behind an `Arc`: cloning the layer or the service
/// (as axum does per connection) never multiplies a limit.
#[derive(Clone)]
pub struct RateLimitLayer {
    pub(crate) shared: Arc<Shared>,
}

/// A price function: USD for `usage` of a request, `None` when unknown.
pub type PriceFn =
    Arc<dyn Fn(&tower_ai_core::LlmRequest, &tower_ai_core::Usage) -> Option<f64> + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) price_fn: Option<PriceFn>,
    pub(crate) limits: Vec<Limit>,
    pub(crate) store: Arc<dyn RateLimitStore>,
    pub(crate) prices: PriceTable,
    pub(crate) providers: Providers,
    pub(crate) fail_open: bool,
    pub(crate) max_body_bytes: usize,
    pub(crate) default_max_tokens: u64,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limits", &self.shared.limits)
            .field("fail_open", &self.shared.fail_open)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// No limits yet, counted in `store`; fails open when the store cannot answer.
    pub fn new(store: impl RateLimitStore) -> Self {
        Self {
            shared: Arc::new(Shared {
                price_fn: None,
                limits: Vec::new(),
                store: Arc::new(store),
                prices: PriceTable::builtin(),
                providers: Providers::builtin(),
                fail_open: true,
                max_body_bytes: 32 * 1024 * 1024,
                default_max_tokens: 1024,
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.shared)
    }

    /// Adds a limit. Every limit whose key a request has applies; the strictest decides.
    pub fn with_limit(mut self, limit: Limit) -> Self {
        self.shared_mut().limits.push(limit);
        self
    }

    /// Adds several limits.
    pub fn with_limits(mut self, limits: impl IntoIterator<Item = Limit>) -> Self {
        self.shared_mut().limits.extend(limits);
        self
    }

    /// The prices spend limits are counted with.
    pub fn with_prices(mut self, prices: PriceTable) -> Self {
        self.shared_mut().prices = prices;
        self
    }

    /// Prices spend with `f` instead of the price table (e.g. negotiated rates).
    pub fn with_price_fn(
        mut self,
        f: impl Fn(&tower_ai_core::LlmRequest, &tower_ai_core::Usage) -> Option<f64>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.shared_mut().price_fn = Some(Arc::new(f));
        self
    }

    /// The providers (for each one's wire format, to read usage).
    pub fn with_providers(mut self, providers: Providers) -> Self {
        self.shared_mut().providers = providers;
        self
    }

    /// When the store cannot answer (Redis down): admit (`true`, the default) or refuse
    /// with a 503 (`false`). Either way a warning is logged.
    pub fn with_fail_open(mut self, yes: bool) -> Self {
        self.shared_mut().fail_open = yes;
        self
    }

    /// The largest request body the layer reads when no layer read it before.
    pub fn with_max_body_bytes(mut self, max: usize) -> Self {
        self.shared_mut().max_body_bytes = max;
        self
    }

    /// The output tokens reserved for a request that names no `max_tokens`. Default 1024.
    pub fn with_default_max_tokens(mut self, n: u64) -> Self {
        self.shared_mut().default_max_tokens = n;
        self
    }

    /// The limits.
    pub fn limits(&self) -> &[Limit] {
        &self.shared.limits
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            shared: self.shared.clone(),
        }
    }
}
