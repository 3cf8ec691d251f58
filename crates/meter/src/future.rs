use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_ai_core::{
    Body, BoxError, CacheStatus, ErrorResponse, FallbackStep, GatewayGenerated, KnownUsage,
    LlmRequest, Operation, ReadBody, ResponseUsage, ServedRequest, UsageSlot, WireFormat,
};
use tower_service::Service;

use crate::body::MeteredBody;
use crate::layer::Shared;
use crate::record::{ErrorOrigin, Outcome, Record, Recorder, UsageSource};
use crate::service::prepare;
use crate::tracker::{Ctx, Head, Source, Tracker, finish};

/// What the meter knows of a request before it has its body.
pub(crate) struct Pre<R> {
    /// The provider as recorded (see `Shared::provider_label`).
    pub(crate) label: Arc<str>,
    pub(crate) shared: Arc<Shared<R>>,
    pub(crate) start: Instant,
    pub(crate) started_at: SystemTime,
    pub(crate) request_id: Option<Arc<str>>,
    pub(crate) key_id: Option<Arc<str>>,
    pub(crate) metadata: Vec<(String, String)>,
    pub(crate) provider: Arc<str>,
    pub(crate) path: Arc<str>,
}

pin_project! {
    /// Response future of [`Meter`](crate::Meter).
    ///
    /// Dropped before the response head arrived (the client hung up, a timeout above
    /// fired), it records the request as cancelled, with no status and no usage.
    pub struct ResponseFuture<S, F, R: Recorder> {
        #[pin]
        state: State<S, F, R>,
    }

    impl<S, F, R: Recorder> PinnedDrop for ResponseFuture<S, F, R> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            let pending = match this.state.as_mut().project() {
                StateProj::Reading { pre, .. } => pre.take().map(Pending::Reading),
                StateProj::Calling { ctx, .. } => ctx.take().map(Pending::Calling),
                StateProj::Passthrough { .. } | StateProj::Own { .. } => None,
            };
            if let Some(pending) = pending {
                // The inner future goes first, as the inner body does on a cancel: layers
                // further in record before this one.
                this.state.set(State::Own { response: None });
                pending.cancelled();
            }
        }
    }
}

/// A request whose future was dropped before the response head.
enum Pending<R: Recorder> {
    Reading(Pre<R>),
    Calling(Ctx<R>),
}

impl<R: Recorder> Pending<R> {
    fn cancelled(self) {
        let record = match &self {
            Pending::Reading(pre) => Record {
                request_id: pre.request_id.clone(),
                started_at: pre.started_at,
                duration: pre.start.elapsed(),
                ttft: None,
                gateway: pre.shared.gateway.clone(),
                provider: pre.label.clone(),
                model: None,
                operation: Operation::from_path(&pre.path),
                stream: false,
                key_id: pre.key_id.clone(),
                metadata: pre.metadata.clone(),
                status: None,
                outcome: Outcome::Cancelled,
                error_origin: None,
                usage: None,
                usage_source: UsageSource::Unknown,
                cost_usd: None,
                cache_status: None,
                fallback_step: None,
            },
            Pending::Calling(ctx) => Record {
                request_id: ctx.request_id.clone(),
                started_at: ctx.started_at,
                duration: ctx.start.elapsed(),
                ttft: None,
                gateway: ctx.shared.gateway.clone(),
                provider: ctx.label.clone(),
                model: ctx.llm.model.clone(),
                operation: ctx.llm.operation,
                stream: ctx.llm.stream,
                key_id: ctx.key_id.clone(),
                metadata: ctx.metadata.clone(),
                status: None,
                outcome: Outcome::Cancelled,
                error_origin: None,
                usage: None,
                usage_source: UsageSource::Unknown,
                cost_usd: None,
                cache_status: None,
                fallback_step: None,
            },
        };
        match &self {
            Pending::Reading(pre) => finish(&pre.shared, &tracing::Span::none(), &record),
            Pending::Calling(ctx) => finish(&ctx.shared, &ctx.span, &record),
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, R: Recorder> {
        Reading {
            #[pin]
            collect: ReadBody,
            service: Option<S>,
            parts: Option<http::request::Parts>,
            pre: Option<Pre<R>>,
        },
        Calling {
            #[pin]
            future: F,
            ctx: Option<Ctx<R>>,
            strip: bool,
        },
        Passthrough {
            #[pin]
            future: F,
        },
        Own {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<S, F, R: Recorder> ResponseFuture<S, F, R> {
    pub(crate) fn passthrough(future: F) -> Self {
        Self {
            state: State::Passthrough { future },
        }
    }

    pub(crate) fn calling(future: F, ctx: Ctx<R>, strip: bool) -> Self {
        Self {
            state: State::Calling {
                future,
                ctx: Some(ctx),
                strip,
            },
        }
    }

    pub(crate) fn reading(
        collect: ReadBody,
        service: S,
        parts: http::request::Parts,
        pre: Pre<R>,
    ) -> Self {
        Self {
            state: State::Reading {
                collect,
                service: Some(service),
                parts: Some(parts),
                pre: Some(pre),
            },
        }
    }

    /// A response of the meter's own (bad input), recorded at once as the gateway's error.
    pub(crate) fn own(pre: Pre<R>, error: ErrorResponse) -> Self {
        Self {
            state: State::own(pre, error),
        }
    }
}

impl<S, F, R: Recorder> State<S, F, R> {
    /// See [`ResponseFuture::own`].
    fn own(pre: Pre<R>, error: ErrorResponse) -> Self {
        let record = Record {
            request_id: pre.request_id,
            started_at: pre.started_at,
            duration: pre.start.elapsed(),
            ttft: None,
            gateway: pre.shared.gateway.clone(),
            provider: pre.label,
            model: None,
            operation: Operation::from_path(&pre.path),
            stream: false,
            key_id: pre.key_id,
            metadata: pre.metadata,
            status: Some(error.status().as_u16()),
            outcome: Outcome::Complete,
            error_origin: Some(ErrorOrigin::Gateway),
            usage: None,
            usage_source: UsageSource::Unknown,
            cost_usd: None,
            cache_status: None,
            fallback_step: None,
        };
        finish(&pre.shared, &tracing::Span::none(), &record);
        State::Own {
            response: Some(error.into_response()),
        }
    }
}

impl<S, F, R, ResBody> Future for ResponseFuture<S, F, R>
where
    S: Service<Request<Body>, Response = Response<ResBody>, Future = F>,
    F: Future<Output = Result<Response<ResBody>, S::Error>>,
    R: Recorder,
    ResBody: http_body::Body<Data = Bytes>,
{
    type Output = Result<Response<MeteredBody<ResBody, R>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Reading {
                    collect,
                    service,
                    parts,
                    pre,
                } => {
                    let collected = ready!(collect.poll(cx));
                    let pre = pre.take().expect("polled after completion");
                    let parts = parts.take().expect("polled after completion");
                    let mut service = service.take().expect("polled after completion");
                    let next = match collected {
                        Ok(c) => {
                            let (req, ctx, strip) = prepare(pre, parts, c);
                            State::Calling {
                                future: service.call(req),
                                ctx: Some(ctx),
                                strip,
                            }
                        }
                        Err(e) => {
                            let limit = pre.shared.max_body_bytes;
                            let error = body_error(&e, limit);
                            State::own(pre, error)
                        }
                    };
                    this.state.set(next);
                }
                StateProj::Calling { future, ctx, strip } => {
                    let result = ready!(future.poll(cx));
                    let ctx = ctx.take().expect("polled after completion");
                    return Poll::Ready(match result {
                        Ok(res) => Ok(metered(res, ctx, *strip)),
                        Err(e) => {
                            upstream_failed(ctx);
                            Err(e)
                        }
                    });
                }
                StateProj::Passthrough { future } => {
                    let res = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(res.map(MeteredBody::plain)));
                }
                StateProj::Own { response } => {
                    let res = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(res.map(MeteredBody::own)));
                }
            }
        }
    }
}

fn body_error(e: &BoxError, limit: usize) -> ErrorResponse {
    if e.is::<http_body_util::LengthLimitError>() {
        ErrorResponse::payload_too_large(limit)
    } else {
        ErrorResponse::bad_request("the request body could not be read")
    }
}

fn metered<B, R: Recorder>(
    res: Response<B>,
    mut ctx: Ctx<R>,
    injected: bool,
) -> Response<MeteredBody<B, R>> {
    let (mut parts, body) = res.into_parts();
    // A layer below chose where the request went (a fallback step): record that.
    let served = parts
        .extensions
        .get::<ServedRequest>()
        .map(|s| LlmRequest::parse(&s.provider, &s.path, s.body.clone()));
    if let Some(served) = served
        && (served.provider != ctx.llm.provider || served.model != ctx.llm.model)
    {
        ctx.label = ctx.shared.provider_label(&served.provider);
        ctx.format = ctx
            .shared
            .providers
            .get(&served.provider)
            .map_or(WireFormat::OpenAi, |p| p.format());
        ctx.llm = served;
    }
    let status = parts.status.as_u16();
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let sse = content_type.starts_with("text/event-stream");
    let source = if let Some(known) = parts.extensions.get::<KnownUsage>() {
        Source::Known(known.0)
    } else if let Some(slot) = parts.extensions.get::<UsageSlot>() {
        Source::Slot(slot.clone())
    } else {
        let slot = UsageSlot::new();
        let reader = ResponseUsage::new(
            ctx.format,
            ctx.llm.operation,
            ctx.llm.body.clone(),
            status,
            content_type,
            slot.clone(),
        );
        parts.extensions.insert(slot);
        Source::Own(Box::new(reader))
    };
    let head = Head {
        status,
        cache_status: parts.extensions.get::<CacheStatus>().copied(),
        fallback_step: parts
            .extensions
            .get::<FallbackStep>()
            .map(|s| s.0)
            .or(ctx.fallback_step),
        gateway_generated: parts.extensions.get::<GatewayGenerated>().is_some(),
    };
    let strip = injected && sse && (200..300).contains(&status);
    if strip {
        parts.headers.remove(CONTENT_LENGTH);
    }
    let body = MeteredBody::observed(body, Tracker::new(ctx, head, source), strip);
    Response::from_parts(parts, body)
}

fn upstream_failed<R: Recorder>(ctx: Ctx<R>) {
    let record = Record {
        request_id: ctx.request_id,
        started_at: ctx.started_at,
        duration: ctx.start.elapsed(),
        ttft: None,
        gateway: ctx.shared.gateway.clone(),
        provider: ctx.label.clone(),
        model: ctx.llm.model.clone(),
        operation: ctx.llm.operation,
        stream: ctx.llm.stream,
        key_id: ctx.key_id,
        metadata: ctx.metadata,
        status: None,
        outcome: Outcome::Failed,
        error_origin: Some(ErrorOrigin::Provider),
        usage: None,
        usage_source: UsageSource::Unknown,
        cost_usd: None,
        cache_status: None,
        fallback_step: ctx.fallback_step,
    };
    finish(&ctx.shared, &ctx.span, &record);
}
