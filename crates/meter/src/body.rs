use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_ai_core::ObservedBody;

use crate::inject::StripUsage;
use crate::record::Recorder;
use crate::tracker::Tracker;

pin_project! {
    /// Response body of [`Meter`](crate::Meter): the inner body, every frame passed on
    /// untouched and at once while the meter reads usage from it; the request is
    /// recorded when the body ends, fails or is dropped.
    ///
    /// The one exception: when the meter asked an OpenAI stream for its usage itself, the
    /// usage it added is removed again, so the client gets the stream it asked for.
    pub struct MeteredBody<B, R: Recorder> {
        #[pin]
        kind: Kind<B, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B, R: Recorder> {
        Plain { #[pin] body: B },
        Observed { #[pin] body: ObservedBody<B, Tracker<R>> },
        Stripped { #[pin] body: StripUsage<ObservedBody<B, Tracker<R>>> },
        Own { body: Option<Bytes> },
    }
}

impl<B, R: Recorder> MeteredBody<B, R> {
    pub(crate) fn observed(body: B, tracker: Tracker<R>, strip_usage: bool) -> Self {
        let body = ObservedBody::new(body, tracker);
        let kind = if strip_usage {
            Kind::Stripped {
                body: StripUsage::new(body),
            }
        } else {
            Kind::Observed { body }
        };
        Self { kind }
    }

    pub(crate) fn plain(body: B) -> Self {
        Self {
            kind: Kind::Plain { body },
        }
    }

    pub(crate) fn own(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Own { body: Some(bytes) },
        }
    }
}

impl<B, R: Recorder> From<Bytes> for MeteredBody<B, R> {
    fn from(b: Bytes) -> Self {
        Self::own(b)
    }
}

/// An empty body, as middleware that answers on its own needs (tower-http's `Timeout`).
impl<B, R: Recorder> Default for MeteredBody<B, R> {
    fn default() -> Self {
        Self {
            kind: Kind::Own { body: None },
        }
    }
}

impl<B, R> http_body::Body for MeteredBody<B, R>
where
    B: http_body::Body<Data = Bytes>,
    R: Recorder,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Plain { body } => body.poll_frame(cx),
            KindProj::Observed { body } => body.poll_frame(cx),
            KindProj::Stripped { body } => body.poll_frame(cx),
            KindProj::Own { body } => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Plain { body } => body.is_end_stream(),
            Kind::Observed { body } => body.is_end_stream(),
            Kind::Stripped { body } => body.is_end_stream(),
            Kind::Own { body } => body.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Plain { body } => body.size_hint(),
            Kind::Observed { body } => body.size_hint(),
            Kind::Stripped { body } => body.size_hint(),
            Kind::Own { body } => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
