use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_ai_core::{Body, GatewayGenerated, ReadBody};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::layer::Shared;
use crate::plan::{Endpoint, Plan, Refusal};
use crate::service::{body_refusal, prepare, respond};

pin_project! {
    /// Response future of [`Compat`](crate::Compat).
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
            endpoint: Endpoint,
            prefix: Option<String>,
            shared: Arc<Shared>,
        },
        Calling {
            #[pin]
            future: F,
            plan: Option<Plan>,
        },
        Refused {
            refusal: Option<Refusal>,
        },
    }
}

impl<S, F> ResponseFuture<S, F> {
    pub(crate) fn calling(future: F, plan: Option<Plan>) -> Self {
        Self {
            state: State::Calling { future, plan },
        }
    }

    pub(crate) fn refused(refusal: Refusal) -> Self {
        Self {
            state: State::Refused {
                refusal: Some(refusal),
            },
        }
    }

    pub(crate) fn reading(
        collect: ReadBody,
        service: S,
        parts: http::request::Parts,
        endpoint: Endpoint,
        prefix: Option<String>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            state: State::Reading {
                collect,
                service: Some(service),
                parts: Some(parts),
                endpoint,
                prefix,
                shared,
            },
        }
    }
}

fn refusal_response<B>(r: Refusal) -> Response<ResponseBody<B>> {
    let mut res = Response::new(ResponseBody::own(r.body));
    *res.status_mut() = r.status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.extensions_mut().insert(GatewayGenerated);
    res
}

impl<S, F, B, E> Future for ResponseFuture<S, F>
where
    S: Service<Request<Body>, Future = F, Error = E>,
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Refused { refusal } => {
                    let r = refusal.take().expect("polled after completion");
                    return Poll::Ready(Ok(refusal_response(r)));
                }
                StateProj::Calling { future, plan } => {
                    let res = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(respond(res, plan.take())));
                }
                StateProj::Reading {
                    collect,
                    service,
                    parts,
                    endpoint,
                    prefix,
                    shared,
                } => {
                    let collected = ready!(collect.poll(cx));
                    let endpoint = *endpoint;
                    let next = match collected {
                        Ok(c) => {
                            let bytes: Bytes = c;
                            let parts = parts.take().expect("polled after completion");
                            match prepare(shared, parts, &bytes, endpoint, prefix.as_deref()) {
                                Ok((req, plan)) => {
                                    let mut svc = service.take().expect("polled after completion");
                                    State::Calling {
                                        future: svc.call(req),
                                        plan: Some(plan),
                                    }
                                }
                                Err(r) => State::Refused { refusal: Some(r) },
                            }
                        }
                        Err(e) => State::Refused {
                            refusal: Some(body_refusal(endpoint, &e, shared.max_body_bytes)),
                        },
                    };
                    this.state.set(next);
                }
            }
        }
    }
}
