use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use http_body_util::LengthLimitError;
use pin_project_lite::pin_project;
use tower_ai_core::{Body, ErrorResponse, ReadBody};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::service::{ModelCheck, check_models};

pin_project! {
    /// Response future of [`Auth`](crate::Auth).
    pub struct ResponseFuture<S, F> {
        #[pin]
        state: State<S, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F> {
        Refused { refusal: Option<ErrorResponse> },
        Reading {
            #[pin]
            collect: ReadBody,
            service: Option<S>,
            parts: Option<http::request::Parts>,
            check: ModelCheck,
            limit: usize,
        },
        Calling { #[pin] future: F },
    }
}

impl<S, F> ResponseFuture<S, F> {
    pub(crate) fn refused(refusal: ErrorResponse) -> Self {
        Self {
            state: State::Refused {
                refusal: Some(refusal),
            },
        }
    }

    pub(crate) fn calling(future: F) -> Self {
        Self {
            state: State::Calling { future },
        }
    }

    pub(crate) fn reading(
        collect: ReadBody,
        service: S,
        parts: http::request::Parts,
        check: ModelCheck,
        limit: usize,
    ) -> Self {
        Self {
            state: State::Reading {
                collect,
                service: Some(service),
                parts: Some(parts),
                check,
                limit,
            },
        }
    }
}

fn refusal<B>(e: ErrorResponse) -> Response<ResponseBody<B>> {
    let unauthorized = e.status() == StatusCode::UNAUTHORIZED;
    let mut res: Response<ResponseBody<B>> = e.into_response();
    if unauthorized {
        res.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"aigw\""),
        );
    }
    res
}

impl<S, B> Future for ResponseFuture<S, S::Future>
where
    S: Service<Request<Body>, Response = Response<B>>,
{
    type Output = Result<Response<ResponseBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Refused { refusal: r } => {
                    let e = r.take().expect("polled after completion");
                    return Poll::Ready(Ok(refusal(e)));
                }
                StateProj::Calling { future } => {
                    let res = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(res.map(ResponseBody::inner)));
                }
                StateProj::Reading {
                    collect,
                    service,
                    parts,
                    check,
                    limit,
                } => {
                    let bytes: Bytes = match ready!(collect.poll(cx)) {
                        Ok(c) => c,
                        Err(e) if e.is::<LengthLimitError>() => {
                            return Poll::Ready(Ok(refusal(ErrorResponse::payload_too_large(
                                *limit,
                            ))));
                        }
                        Err(_) => {
                            return Poll::Ready(Ok(refusal(ErrorResponse::bad_request(
                                "the request body could not be read",
                            ))));
                        }
                    };
                    let mut p = parts.take().expect("polled after completion");
                    let body = match check_models(check, &mut p, bytes) {
                        Ok(body) => body,
                        Err(e) => return Poll::Ready(Ok(refusal(e))),
                    };
                    let mut svc = service.take().expect("polled after completion");
                    let future = svc.call(Request::from_parts(p, body));
                    this.state.set(State::Calling { future });
                }
            }
        }
    }
}
