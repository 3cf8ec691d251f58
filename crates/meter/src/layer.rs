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
    pub(crate) stream_usage_providers: Arc<[Arc<str>]>,
    pub(crate) max_body_bytes: usize,
    pub(crate) gateway: Option<Arc<str>>,
    unknown_provider: Arc<str>,
}

/// Providers known to accept `stream_options.include_usage` on every API version: the
/// meter asks only them for a stream's usage. Others (Azure OpenAI's older API versions,
/// custom servers) may reject the field; their streams are estimated instead.
const STREAM_USAGE_PROVIDERS: [&str; 5] = ["openai", "groq", "deepseek", "openrouter", "xai"];

impl<R> Shared<R> {
    /// The provider as recorded: its name when the registry knows it, else `unknown`, so
    /// that whatever a client puts in the path, provider labels stay a bounded set.
    pub(crate) fn provider_label(&self, name: &str) -> Arc<str> {
        match self.providers.get(name) {
            Some(p) => p.name_arc().clone(),
            None => self.unknown_provider.clone(),
        }
    }

    /// Whether to ask `provider`'s streams for their usage.
    pub(crate) fn asks_stream_usage(&self, provider: &str) -> bool {
        self.inject_stream_usage && self.stream_usage_providers.iter().any(|p| &**p == provider)
    }
}

impl<R> Clone for Shared<R> {
    fn clone(&self) -> Self {
        Self {
            recorder: self.recorder.clone(),
            providers: self.providers.clone(),
            prices: self.prices.clone(),
            inject_stream_usage: self.inject_stream_usage,
            stream_usage_providers: self.stream_usage_providers.clone(),
            max_body_bytes: self.max_body_bytes,
            gateway: self.gateway.clone(),
            unknown_provider: self.unknown_provider.clone(),
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
            .field(
                "stream_usage_providers",
                &self.shared.stream_usage_providers,
            )
            .field("max_body_bytes", &self.shared.max_body_bytes)
            .field("gateway", &self.shared.gateway)
            .finish_non_exhaustive()
    }
}

impl<R: Recorder> MeterLayer<R> {
    /// Meters into `recorder` (shared by every clone), with the built-in providers and
    /// prices, injecting `stream_options.include_usage` into the OpenAI-format streams
    /// that lack it of providers known to accept it (`openai`, `groq`, `deepseek`,
    /// `openrouter`, `xai`), and a 32 MiB bound on request bodies it reads.
    pub fn new(recorder: R) -> Self {
        Self {
            shared: Arc::new(Shared {
                recorder: Arc::new(recorder),
                providers: Providers::builtin(),
                prices: PriceTable::builtin(),
                inject_stream_usage: true,
                stream_usage_providers: STREAM_USAGE_PROVIDERS
                    .iter()
                    .map(|&p| Arc::from(p))
                    .collect(),
                max_body_bytes: 32 * 1024 * 1024,
                gateway: None,
                unknown_provider: Arc::from("unknown"),
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared<R> {
        Arc::make_mut(&mut self.shared)
    }

    /// The providers (for each one's wire format). Use the gateway's own registry so that
    /// custom providers are read in their format. A request for a provider not in it is
    /// still metered, recorded as provider `unknown`: labels and totals stay bounded
    /// whatever path a client sends.
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

    /// The providers whose OpenAI-format streams are asked for their usage (replacing the
    /// default list: `openai`, `groq`, `deepseek`, `openrouter`, `xai`). Name only
    /// providers that accept `stream_options.include_usage`: one that rejects unknown
    /// fields (Azure OpenAI before API version 2024-09-01, some self-hosted servers)
    /// would fail the request. Streams of the others are estimated with the tokenizer.
    pub fn with_stream_usage_providers<I, S>(mut self, providers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        self.shared_mut().stream_usage_providers = providers.into_iter().map(Into::into).collect();
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
