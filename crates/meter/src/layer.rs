use std::fmt;
use std::sync::Arc;

use tower_ai_core::{PriceTable, Providers};
use tower_layer::Layer;

use crate::record::Recorder;
use crate::service::Meter;

/// Meters every request: usage, cost, latency, outcome. See the [crate docs](crate).
///
/// The configuration and the recorder are shared behind an `Arc`: cloning the layer or
/// the service (as axum does per connection) shares one recorder.
pub struct MeterLayer<R> {
    pub(crate) shared: Arc<Shared<R>>,
}

pub(crate) struct Shared<R> {
    pub(crate) recorder: Arc<R>,
    pub(crate) providers: Providers,
    pub(crate) prices: PriceTable,
    pub(crate) inject_stream_usage: bool,
    pub(crate) max_body_bytes: usize,
    pub(crate) gateway: Option<Arc<str>>,
}

impl<R> Clone for Shared<R> {
    fn clone(&self) -> Self {
        Self {
            recorder: self.recorder.clone(),
            providers: self.providers.clone(),
            prices: self.prices.clone(),
            inject_stream_usage: self.inject_stream_usage,
            max_body_bytes: self.max_body_bytes,
            gateway: self.gateway.clone(),
        }
    }
}

impl<R> Clone for MeterLayer<R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<R> fmt::Debug for MeterLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeterLayer")
            .field("recorder", &std::any::type_name::<R>())
            .field("inject_stream_usage", &self.shared.inject_stream_usage)
            .field("max_body_bytes", &self.shared.max_body_bytes)
            .field("gateway", &self.shared.gateway)
            .finish_non_exhaustive()
    }
}

impl<R: Recorder> MeterLayer<R> {
    /// Meters into `recorder` (shared by every clone), with the built-in providers and prices, injecting
    /// `stream_options.include_usage` into OpenAI-format streams that lack it, and a
    /// 32 MiB bound on request bodies it reads.
    pub fn new(recorder: R) -> Self {
        Self {
            shared: Arc::new(Shared {
                recorder: Arc::new(recorder),
                providers: Providers::builtin(),
                prices: PriceTable::builtin(),
                inject_stream_usage: true,
                max_body_bytes: 32 * 1024 * 1024,
                gateway: None,
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared<R> {
        Arc::make_mut(&mut self.shared)
    }

    /// The providers (for each one's wire format). Use the gateway's own registry so that
    /// custom providers are read in their format.
    pub fn with_providers(mut self, providers: Providers) -> Self {
        self.shared_mut().providers = providers;
        self
    }

    /// The prices costs are computed with.
    pub fn with_prices(mut self, prices: PriceTable) -> Self {
        self.shared_mut().prices = prices;
        self
    }

    /// Whether to ask OpenAI-format streams for their usage when the client did not
    /// (the extra usage chunk is removed before the client sees it). Default on; off,
    /// such streams are estimated with the tokenizer.
    pub fn with_stream_usage_injection(mut self, yes: bool) -> Self {
        self.shared_mut().inject_stream_usage = yes;
        self
    }

    /// The largest request body the meter reads when no layer read it before (413 past it).
    pub fn with_max_body_bytes(mut self, max: usize) -> Self {
        self.shared_mut().max_body_bytes = max;
        self
    }

    /// The gateway's name, put on every record.
    pub fn with_gateway_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.shared_mut().gateway = Some(name.into());
        self
    }

    /// The recorder.
    pub fn recorder(&self) -> &Arc<R> {
        &self.shared.recorder
    }
}

impl<S, R> Layer<S> for MeterLayer<R> {
    type Service = Meter<S, R>;

    fn layer(&self, inner: S) -> Meter<S, R> {
        Meter {
            inner,
            shared: self.shared.clone(),
        }
    }
}
