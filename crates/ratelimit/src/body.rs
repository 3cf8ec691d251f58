use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_ai_core::ObservedBody;

use crate::settle::Settlement;

pin_project! {
    /// Response body of [`RateLimit`](crate::RateLimit): the inner body untouched, holding
    /// the request's concurrency slot and token/spend reservation until it ends (or is
    /// dropped), then settling them; or the layer's own 429.
    pub struct RateLimitBody<B: http_body::Body> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B: http_body::Body> {
        Settled { #[pin] body: ObservedBody<B, Settlement> },
        Plain { #[pin] body: B },
        Own { body: Option<Bytes> },
    }
}

impl<B: http_body::Body> RateLimitBody<B> {
    pub(crate) fn settled(body: B, settlement: Settlement) -> Self {
        Self {
            kind: Kind::Settled {
                body: ObservedBody::new(body, settlement),
            },
        }
    }

    pub(crate) fn plain(body: B) -> Self {
        Self {
            kind: Kind::Plain { body },
        }
    }
}

impl<B: http_body::Body> From<Bytes> for RateLimitBody<B> {
    fn from(b: Bytes) -> Self {
        Self {
            kind: Kind::Own { body: Some(b) },
        }
    }
}

/// An empty body, as middleware that answers on its own needs (tower-http's `Timeout`).
impl<B: http_body::Body> Default for RateLimitBody<B> {
    fn default() -> Self {
        Self {
            kind: Kind::Own { body: None },
        }
    }
}

impl<B> http_body::Body for RateLimitBody<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Settled { body } => body.poll_frame(cx),
            KindProj::Plain { body } => body.poll_frame(cx),
            KindProj::Own { body } => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Settled { body } => body.is_end_stream(),
            Kind::Plain { body } => body.is_end_stream(),
            Kind::Own { body } => body.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Settled { body } => body.size_hint(),
            Kind::Plain { body } => body.size_hint(),
            Kind::Own { body } => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
