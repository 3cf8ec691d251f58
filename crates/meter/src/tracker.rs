//! The per-request state the meter carries from the request to the end of the response,
//! and the [`Observer`] that feeds on the response body.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tower_ai_core::{
    CacheStatus, FinalUsage, LlmRequest, Observer, ResponseUsage, StreamEnd, Usage, UsageSlot,
    UsageSource, WireFormat,
};

use crate::layer::Shared;
use crate::record::{ErrorOrigin, Outcome, Record, Recorder};

/// What the meter learnt from the request.
pub(crate) struct Ctx<R> {
    /// The provider as recorded (see `Shared::provider_label`).
    pub(crate) label: Arc<str>,
    pub(crate) shared: Arc<Shared<R>>,
    pub(crate) start: Instant,
    pub(crate) started_at: SystemTime,
    pub(crate) request_id: Option<Arc<str>>,
    pub(crate) key_id: Option<Arc<str>>,
    pub(crate) metadata: Vec<(String, String)>,
    pub(crate) llm: LlmRequest,
    pub(crate) format: WireFormat,
    pub(crate) span: tracing::Span,
    /// The fallback step this attempt is, when a fallback layer above said so.
    pub(crate) fallback_step: Option<u32>,
}

/// What the meter learnt from the response head.
pub(crate) struct Head {
    pub(crate) status: u16,
    pub(crate) cache_status: Option<CacheStatus>,
    pub(crate) fallback_step: Option<u32>,
    pub(crate) gateway_generated: bool,
}

/// How the meter learns the usage.
pub(crate) enum Source {
    /// Known from the response head (a cache hit).
    Known(Usage),
    /// A layer below reads the body and leaves the usage in this slot.
    Slot(UsageSlot),
    /// The meter reads the body itself (and fills the slot for the layers above).
    Own(Box<ResponseUsage>),
}

/// Watches one response body and records the request when it ends.
pub(crate) struct Tracker<R: Recorder> {
    ctx: Ctx<R>,
    head: Head,
    source: Source,
    ttft: Option<Duration>,
}

impl<R: Recorder> Tracker<R> {
    pub(crate) fn new(ctx: Ctx<R>, head: Head, source: Source) -> Self {
        Self {
            ctx,
            head,
            source,
            ttft: None,
        }
    }
}

impl<R: Recorder> Observer for Tracker<R> {
    fn on_data(&mut self, data: &Bytes) {
        if self.ttft.is_none() {
            self.ttft = Some(self.ctx.start.elapsed());
        }
        if let Source::Own(reader) = &mut self.source {
            reader.on_data(data);
        }
    }

    fn on_end(self, end: StreamEnd) {
        let Tracker {
            ctx,
            head,
            source,
            ttft,
        } = self;
        let mut outcome = match end {
            StreamEnd::Complete => Outcome::Complete,
            StreamEnd::Failed => Outcome::Failed,
            StreamEnd::Cancelled => Outcome::Cancelled,
        };
        let settled = match source {
            Source::Known(u) => FinalUsage {
                usage: Some(u),
                source: UsageSource::Known,
                terminal: true,
            },
            // The layer below finished first (its body ended, or was dropped, before ours).
            Source::Slot(slot) => slot.get().unwrap_or(FinalUsage {
                usage: None,
                source: UsageSource::Unknown,
                terminal: true,
            }),
            Source::Own(reader) => reader.finish(end),
        };
        let ok = (200..300).contains(&head.status);
        if ok && outcome == Outcome::Complete && !settled.terminal {
            // A clean end without the protocol's terminal event: cut short.
            outcome = Outcome::Failed;
        }
        let llm = &ctx.llm;
        let error_origin = if head.status >= 400 {
            Some(if head.gateway_generated {
                ErrorOrigin::Gateway
            } else {
                ErrorOrigin::Provider
            })
        } else if outcome == Outcome::Failed {
            Some(ErrorOrigin::Provider)
        } else {
            None
        };
        let cost_usd = match (&settled.usage, &llm.model) {
            (Some(u), Some(model)) if error_origin != Some(ErrorOrigin::Gateway) => {
                ctx.shared.prices.cost(&llm.provider, model, u)
            }
            _ => None,
        };
        let record = Record {
            request_id: ctx.request_id.clone(),
            started_at: ctx.started_at,
            duration: ctx.start.elapsed(),
            ttft,
            gateway: ctx.shared.gateway.clone(),
            provider: ctx.label.clone(),
            model: llm.model.clone(),
            operation: llm.operation,
            stream: llm.stream,
            key_id: ctx.key_id.clone(),
            metadata: ctx.metadata,
            status: Some(head.status),
            outcome,
            error_origin,
            usage: settled.usage,
            usage_source: settled.source,
            cost_usd,
            cache_status: head.cache_status,
            fallback_step: head.fallback_step,
        };
        finish(&ctx.shared, &ctx.span, &record);
    }
}

/// Records a finished request: the recorder, and the tracing span's GenAI attributes.
pub(crate) fn finish<R: Recorder>(shared: &Shared<R>, span: &tracing::Span, record: &Record) {
    if let Some(u) = &record.usage {
        span.record("gen_ai.usage.input_tokens", u.input_tokens);
        span.record("gen_ai.usage.output_tokens", u.output_tokens);
    }
    if let Some(cost) = record.cost_usd {
        span.record("gen_ai.usage.cost", cost);
    }
    span.record("http.response.status_code", record.status.unwrap_or(0));
    span.record("outcome", record.outcome.as_str());
    tracing::debug!(
        parent: span,
        usage_source = record.usage_source.as_str(),
        duration_ms = record.duration.as_secs_f64() * 1e3,
        "metered"
    );
    shared.recorder.record(record);
}
