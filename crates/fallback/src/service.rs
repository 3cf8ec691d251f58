//! [`Fallback`]: the service.

use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use tower_ai_core::{Body, BoxError, ProviderPath};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::layer::Shared;
use crate::policy::RetryPolicy;
use crate::run;

/// Tries a request's steps in order with retries, backoff and circuit breakers. See the
/// [crate docs](crate).
pub struct Fallback<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S: Clone> Clone for Fallback<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Fallback<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Fallback<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Fallback<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let post = req.method() == Method::POST;
        let universal = post && ProviderPath::is_universal(req.uri().path());
        let routed = post && !self.shared.routes.is_empty();
        if !universal
            && !routed
            && !self.shared.plain_retries
            && !RetryPolicy::has_overrides(req.headers())
        {
            // Nothing to fall back to and nothing to retry: the request as it is, to the
            // service made ready (no clone of the stack below).
            return ResponseFuture::inner(self.inner.call(req.map(Body::new)));
        }
        // The service that was made ready goes with this request; a fresh clone stays.
        let clone = self.inner.clone();
        let ready = mem::replace(&mut self.inner, clone);
        let (parts, body) = req.into_parts();
        ResponseFuture::attempts(Box::pin(run::run(
            self.shared.clone(),
            ready,
            parts,
            Body::new(body),
            universal,
        )))
    }
}
