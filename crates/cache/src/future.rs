use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_ai_core::{Body, BoxError, CacheStatus, ErrorResponse, KnownUsage, ReadBody, UsageSlot};
use tower_service::Service;

use crate::body::CachedBody;
use crate::flight::{Flight, Join, Leader, SharedUsage};
use crate::service::{Ctx, Pre, Prepared, mark, prepare};
use crate::store::{Entry, Lookup, StoreFuture};

pin_project! {
    /// Response future of [`Cache`](crate::Cache).
    ///
    /// A state machine: read the body (if no layer did), look the key up, then either
    /// answer from the store, follow the identical request in flight, or lead: call the
    /// inner service and share its response.
    pub struct ResponseFuture<S, F> {
        #[pin]
        state: State<S, F>,
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
            pre: Option<Pre>,
        },
        Lookup {
            lookup: StoreFuture<Lookup>,
            service: Option<S>,
            req: Option<Request<Body>>,
            ctx: Option<Ctx>,
            // Set when this request leads and looks again: another flight may have
            // stored the entry between the first look and taking the lead.
            leader: Option<Leader>,
        },
        Following {
            flight: Arc<Flight>,
            #[pin]
            timeout: Sleep,
            service: Option<S>,
            req: Option<Request<Body>>,
            ctx: Option<Ctx>,
        },
        Calling {
            #[pin]
            future: F,
            ctx: Option<Ctx>,
            leader: Option<Leader>,
        },
        Bypass {
            #[pin]
            future: F,
        },
        Own {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<S, F> ResponseFuture<S, F>
where
    S: Service<Request<Body>, Future = F>,
{
    pub(crate) fn bypass(future: F) -> Self {
        Self {
            state: State::Bypass { future },
        }
    }

    pub(crate) fn own(error: ErrorResponse) -> Self {
        Self {
            state: State::Own {
                response: Some(error.into_response()),
            },
        }
    }

    pub(crate) fn reading(
        collect: ReadBody,
        service: S,
        parts: http::request::Parts,
        pre: Pre,
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

    pub(crate) fn prepared(prepared: Prepared, service: S) -> Self {
        Self {
            state: after_prepare(prepared, service),
        }
    }
}

fn after_prepare<S>(prepared: Prepared, mut service: S) -> State<S, S::Future>
where
    S: Service<Request<Body>>,
{
    match prepared {
        Prepared::Bypass(req) => State::Bypass {
            future: service.call(req),
        },
        Prepared::Cached(req, ctx) => State::Lookup {
            lookup: ctx.state.store.get(&ctx.key),
            service: Some(service),
            req: Some(req),
            ctx: Some(ctx),
            leader: None,
        },
    }
}

/// After a miss: follow the flight for the key, or lead a new one (looking once more).
fn join<S>(service: S, req: Request<Body>, mut ctx: Ctx) -> State<S, S::Future>
where
    S: Service<Request<Body>>,
{
    if !ctx.config.single_flight {
        let flight = Flight::new(Arc::downgrade(&ctx.state), ctx.key, ctx.plan, false);
        return call(service, req, ctx, Leader::new(flight));
    }
    let (flight, lead) = ctx.state.join(ctx.key, ctx.plan);
    if lead {
        State::Lookup {
            lookup: ctx.state.store.get(&ctx.key),
            service: Some(service),
            req: Some(req),
            ctx: Some(ctx),
            leader: Some(Leader::new(flight)),
        }
    } else {
        let deadline = *ctx
            .deadline
            .get_or_insert_with(|| Instant::now() + ctx.config.wait_timeout);
        State::Following {
            flight,
            timeout: tokio::time::sleep_until(deadline),
            service: Some(service),
            req: Some(req),
            ctx: Some(ctx),
        }
    }
}

fn call<S>(mut service: S, req: Request<Body>, ctx: Ctx, leader: Leader) -> State<S, S::Future>
where
    S: Service<Request<Body>>,
{
    State::Calling {
        future: service.call(req),
        ctx: Some(ctx),
        leader: Some(leader),
    }
}

impl<S, F, ResBody> Future for ResponseFuture<S, F>
where
    S: Service<Request<Body>, Response = Response<ResBody>, Future = F>,
    F: Future<Output = Result<Response<ResBody>, S::Error>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response<CachedBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Reading {
                    collect,
                    service,
                    parts,
                    pre,
                } => {
                    let collected = ready!(collect.poll(cx));
                    let pre = pre.take().expect("polled after completion");
                    let parts = parts.take().expect("polled after completion");
                    let service = service.take().expect("polled after completion");
                    match collected {
                        Ok(c) => after_prepare(prepare(pre, parts, c), service),
                        Err(e) => {
                            let error = if e.is::<http_body_util::LengthLimitError>() {
                                ErrorResponse::payload_too_large(pre.config.max_body_bytes)
                            } else {
                                ErrorResponse::bad_request("the request body could not be read")
                            };
                            State::Own {
                                response: Some(error.into_response()),
                            }
                        }
                    }
                }
                StateProj::Lookup {
                    lookup,
                    service,
                    req,
                    ctx,
                    leader,
                } => {
                    let found = ready!(lookup.as_mut().poll(cx));
                    let mut ctx = ctx.take().expect("polled after completion");
                    let service = service.take().expect("polled after completion");
                    let req = req.take().expect("polled after completion");
                    match (found, leader.take()) {
                        (Lookup::Hit(entry), leader) => {
                            if let Some(leader) = leader {
                                // Found after all: the waiters replay it too.
                                leader.release().publish(&entry);
                            }
                            return Poll::Ready(Ok(hit(&entry, &ctx)));
                        }
                        (_, Some(leader)) => call(service, req, ctx, leader),
                        (miss, None) => {
                            if matches!(miss, Lookup::Expired) {
                                ctx.status = CacheStatus::Expired;
                            }
                            join(service, req, ctx)
                        }
                    }
                }
                StateProj::Following {
                    flight,
                    timeout,
                    service,
                    req,
                    ctx,
                } => {
                    let joined = match flight.poll_join(cx) {
                        Poll::Ready(j) => Some(j),
                        Poll::Pending => match timeout.poll(cx) {
                            Poll::Ready(()) => None,
                            Poll::Pending => return Poll::Pending,
                        },
                    };
                    let ctx = ctx.take().expect("polled after completion");
                    let service = service.take().expect("polled after completion");
                    let req = req.take().expect("polled after completion");
                    match joined {
                        Some(Join::Joined(status, headers, reader)) => {
                            let mut res = Response::new(CachedBody::flight(reader));
                            *res.status_mut() = status;
                            *res.headers_mut() = headers;
                            // Served without going upstream.
                            mark(&mut res, CacheStatus::Hit, Some(ctx.key));
                            return Poll::Ready(Ok(res));
                        }
                        Some(Join::Retry) => join(service, req, ctx),
                        None => {
                            // Waited long enough: go upstream alone.
                            tracing::debug!(key = %ctx.key, "cache: gave up waiting for the request in flight");
                            let flight =
                                Flight::new(Arc::downgrade(&ctx.state), ctx.key, ctx.plan, false);
                            call(service, req, ctx, Leader::new(flight))
                        }
                    }
                }
                StateProj::Calling {
                    future,
                    ctx,
                    leader,
                } => {
                    // An error drops the leader: the waiters retry.
                    let res = ready!(future.poll(cx))?;
                    let ctx = ctx.take().expect("polled after completion");
                    let leader = leader.take().expect("polled after completion");
                    return Poll::Ready(Ok(lead(res, ctx, leader)));
                }
                StateProj::Bypass { future } => {
                    let res = ready!(future.poll(cx))?;
                    let mut res = res.map(CachedBody::inner);
                    mark(&mut res, CacheStatus::Bypass, None);
                    return Poll::Ready(Ok(res));
                }
                StateProj::Own { response } => {
                    let res = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(res.map(CachedBody::full)));
                }
            };
            this.state.set(next);
        }
    }
}

/// A stored response, replayed.
fn hit<B>(entry: &Entry, ctx: &Ctx) -> Response<CachedBody<B>> {
    let mut res = Response::new(CachedBody::full(entry.body.clone()));
    *res.status_mut() = entry.status;
    *res.headers_mut() = entry.headers.clone();
    if !entry.sse {
        res.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
    }
    if let Some(usage) = entry.usage {
        res.extensions_mut().insert(KnownUsage(usage));
    }
    mark(&mut res, CacheStatus::Hit, Some(ctx.key));
    res
}

/// Whether a response is JSON, as the usage readers take it.
fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.contains("+json"))
}

/// The leader's response: shared and captured when it may be stored, else passed on.
fn lead<B>(res: Response<B>, ctx: Ctx, leader: Leader) -> Response<CachedBody<B>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = res.into_parts();
    let no_store = parts.headers.get_all(CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-store"))
        })
    });
    let too_large = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > ctx.plan.max_entry as u64);
    let body = if parts.status.is_success() && !no_store && !too_large {
        let sse = parts
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let below = parts.extensions.get::<UsageSlot>().cloned();
        let shared = if let Some(slot) = below {
            if sse {
                // The entry needs its own reading of the stream (did it end with its
                // terminal event?); the layers above read the slot from below.
                SharedUsage::Parse
            } else {
                SharedUsage::Below(slot)
            }
        } else if sse || (is_json(&parts.headers) && parts.headers.contains_key(CONTENT_LENGTH)) {
            // A stream, read event by event here anyway, or a JSON answer of a known
            // length within the entry bound, which arrives whole here: its usage is read
            // once, for the entry and for the layers above.
            let slot = UsageSlot::new();
            parts.extensions.insert(slot.clone());
            SharedUsage::Fill(slot, ctx.request_body.clone())
        } else {
            SharedUsage::Parse
        };
        let upstream = body.map_err(Into::into).boxed_unsync();
        let reader = leader
            .release()
            .start(parts.status, &parts.headers, upstream, sse, shared);
        CachedBody::flight(reader)
    } else {
        leader.flight().fail("the response is not one to store");
        CachedBody::inner(body)
    };
    parts.extensions.insert(ctx.key);
    let mut res = Response::from_parts(parts, body);
    mark(&mut res, ctx.status, Some(ctx.key));
    res
}
