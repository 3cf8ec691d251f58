//! The request-head limit: headers over `server.max_header_bytes` get a JSON 431.
//!
//! hyper has its own, larger, hard limits on a request head (its read buffer, about
//! 400 KiB, and 100 headers); a head over those is refused by hyper itself with a bare
//! 431 before any of the gateway's code runs, and no hyper setting changes that answer.
//! This limit sits below hyper's, so that every head a client can reasonably send over
//! the limit gets the gateway's JSON error instead.

use std::future::{Ready, ready};
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures_util::future::Either;
use http::StatusCode;
use tower::{Layer, Service};
use tower_ai_core::ErrorResponse;

/// The size of a request's headers as sent on HTTP/1.1: `name: value\r\n` each.
fn header_bytes(req: &Request) -> usize {
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// Refuses a request whose headers are over `limit` bytes with a JSON 431; passes the
/// others on as they are (no boxing, no clone of the service behind it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeadLimitLayer {
    pub(crate) limit: usize,
}

impl<S> Layer<S> for HeadLimitLayer {
    type Service = HeadLimit<S>;

    fn layer(&self, inner: S) -> HeadLimit<S> {
        HeadLimit {
            inner,
            limit: self.limit,
        }
    }
}

/// See [`HeadLimitLayer`].
#[derive(Clone, Debug)]
pub(crate) struct HeadLimit<S> {
    inner: S,
    limit: usize,
}

impl<S> Service<Request> for HeadLimit<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if header_bytes(&req) <= self.limit {
            return Either::Right(self.inner.call(req));
        }
        let limit = self.limit;
        Either::Left(ready(Ok(ErrorResponse::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request_header_fields_too_large",
            format!("request headers are larger than the limit of {limit} bytes"),
        )
        .into_response())))
    }
}
