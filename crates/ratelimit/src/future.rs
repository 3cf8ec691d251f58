use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_ai_core::{
    Body, BoxError, CacheStatus, ErrorResponse, KnownUsage, LlmRequest, ReadBody, ResponseUsage,
    UsageSlot, WireFormat,
};
use tower_service::Service;

use crate::body::RateLimitBody;
use crate::decide::{Admission, Plan};
use crate::headers;
use crate::layer::Shared;
use crate::limit::Quantity;
use crate::service::prepare;
use crate::settle::{Settlement, Source, settle};
use crate::store::BoxFuture;

type Decided = BoxFuture<'static, Result<Admission, Response<Bytes>>>;

pin_project! {
    /// Response future of [`RateLimit`](crate::RateLimit).
    pub struct ResponseFuture<S, F> {
        #[pin]
        state: State<S, F>,
        shared: Option<Arc<Shared>>,
    }

    impl<S, F> PinnedDrop for ResponseFuture<S, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Dropped before the response came (the client hung up, a timeout above):
            // give back what was taken.
            if let StateProj::Calling { admission, llm, .. } = this.state.project()
                && let (Some(a), Some(shared)) = (admission.take(), this.shared.as_ref())
            {
                settle(shared, a.reservations, llm.as_ref(), None);
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F> {
        Reading {
            #[pin]
            collect: ReadBody,
            service: Option<S>,
            parts: Option<http::request::Parts>,
        },
        Deciding {
            decided: Decided,
            service: Option<S>,
            req: Option<Request<Body>>,
            llm: Option<LlmRequest>,
        },
        Calling {
            #[pin]
            future: F,
            admission: Option<Admission>,
            llm: Option<LlmRequest>,
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

impl<S, F> ResponseFuture<S, F> {
    pub(crate) fn passthrough(future: F) -> Self {
        Self {
            state: State::Passthrough { future },
            shared: None,
        }
    }

    pub(crate) fn reading(
        shared: Arc<Shared>,
        collect: ReadBody,
        service: S,
        parts: http::request::Parts,
    ) -> Self {
        Self {
            state: State::Reading {
                collect,
                service: Some(service),
                parts: Some(parts),
            },
            shared: Some(shared),
        }
    }

    pub(crate) fn deciding(
        shared: Arc<Shared>,
        plan: Plan,
        service: S,
        req: Request<Body>,
        llm: Option<LlmRequest>,
    ) -> Self {
        Self {
            state: State::Deciding {
                decided: Box::pin(plan.decide()),
                service: Some(service),
                req: Some(req),
                llm,
            },
            shared: Some(shared),
        }
    }
}

impl<S, F, ResBody> Future for ResponseFuture<S, F>
where
    S: Service<Request<Body>, Response = Response<ResBody>, Future = F>,
    F: Future<Output = Result<Response<ResBody>, S::Error>>,
    ResBody: http_body::Body<Data = Bytes>,
{
    type Output = Result<Response<RateLimitBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Reading {
                    collect,
                    service,
                    parts,
                } => {
                    let collected = ready!(collect.poll(cx));
                    let shared = this.shared.as_ref().expect("set with the state").clone();
                    let parts = parts.take().expect("polled after completion");
                    let service = service.take().expect("polled after completion");
                    let next = match collected {
                        Ok(c) => {
                            let (req, plan, llm) = prepare(&shared, parts, c);
                            State::Deciding {
                                decided: Box::pin(plan.decide()),
                                service: Some(service),
                                req: Some(req),
                                llm,
                            }
                        }
                        Err(e) => State::Own {
                            response: Some(body_error(&e, shared.max_body_bytes)),
                        },
                    };
                    this.state.set(next);
                }
                StateProj::Deciding {
                    decided,
                    service,
                    req,
                    llm,
                } => {
                    let decided = ready!(decided.as_mut().poll(cx));
                    let next = match decided {
                        Ok(admission) => {
                            let mut service = service.take().expect("polled after completion");
                            let req = req.take().expect("polled after completion");
                            State::Calling {
                                future: service.call(req),
                                admission: Some(admission),
                                llm: llm.take(),
                            }
                        }
                        Err(response) => State::Own {
                            response: Some(response),
                        },
                    };
                    this.state.set(next);
                }
                StateProj::Calling {
                    future,
                    admission,
                    llm,
                } => {
                    let result = ready!(future.poll(cx));
                    let shared = this.shared.as_ref().expect("set with the state").clone();
                    let admission = admission.take().expect("polled after completion");
                    let llm = llm.take();
                    return Poll::Ready(match result {
                        Ok(res) => Ok(admitted(shared, res, admission, llm)),
                        Err(e) => {
                            settle(&shared, admission.reservations, llm.as_ref(), None);
                            Err(e)
                        }
                    });
                }
                StateProj::Passthrough { future } => {
                    let res = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(res.map(RateLimitBody::plain)));
                }
                StateProj::Own { response } => {
                    let res = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(res.map(RateLimitBody::from)));
                }
            }
        }
    }
}

fn body_error(e: &BoxError, limit: usize) -> Response<Bytes> {
    if e.is::<http_body_util::LengthLimitError>() {
        ErrorResponse::payload_too_large(limit).into_response()
    } else {
        ErrorResponse::bad_request("the request body could not be read").into_response()
    }
}

fn admitted<B: http_body::Body>(
    shared: Arc<Shared>,
    res: Response<B>,
    admission: Admission,
    llm: Option<LlmRequest>,
) -> Response<RateLimitBody<B>> {
    let (mut parts, body) = res.into_parts();
    headers::write(&mut parts.headers, &admission.applied, None);
    let needs_usage = admission
        .reservations
        .iter()
        .any(|r| matches!(r.quantity, Quantity::Tokens(_) | Quantity::CostUsd(_)));
    let settles = needs_usage
        || admission
            .reservations
            .iter()
            .any(crate::decide::is_concurrency);
    if !settles {
        return Response::from_parts(parts, RateLimitBody::plain(body));
    }
    let cache_hit = parts.extensions.get::<CacheStatus>() == Some(&CacheStatus::Hit);
    let source = if !needs_usage {
        Source::None
    } else if let Some(k) = parts.extensions.get::<KnownUsage>() {
        Source::Known(k.0)
    } else if let Some(slot) = parts.extensions.get::<UsageSlot>() {
        Source::Slot(slot.clone())
    } else if let Some(l) = &llm {
        let format = shared
            .providers
            .get(&l.provider)
            .map_or(WireFormat::OpenAi, |p| p.format());
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let slot = UsageSlot::new();
        let reader = ResponseUsage::new(
            format,
            l.operation,
            l.body.clone(),
            parts.status.as_u16(),
            content_type,
            slot.clone(),
        );
        parts.extensions.insert(slot);
        Source::Own(Box::new(reader))
    } else {
        Source::None
    };
    let settlement = Settlement {
        shared,
        reservations: admission.reservations,
        llm,
        source,
        cache_hit,
    };
    Response::from_parts(parts, RateLimitBody::settled(body, settlement))
}
