use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_ai_core::BoxError;

use crate::flight::FlightReader;

pin_project! {
    /// Response body of [`Cache`](crate::Cache): the upstream body teed into the cache
    /// (and shared with identical requests in flight), a stored response replayed, the
    /// inner body untouched when the cache stood aside, or an error of the layer's own.
    pub struct CachedBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Flight { reader: FlightReader },
        Full { bytes: Option<Bytes> },
    }
}

impl<B> CachedBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn flight(reader: FlightReader) -> Self {
        Self {
            kind: Kind::Flight { reader },
        }
    }

    pub(crate) fn full(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full {
                bytes: (!bytes.is_empty()).then_some(bytes),
            },
        }
    }
}

impl<B> From<Bytes> for CachedBody<B> {
    fn from(b: Bytes) -> Self {
        Self::full(b)
    }
}

/// An empty body, as middleware that answers on its own needs (tower-http's `Timeout`).
impl<B> Default for CachedBody<B> {
    fn default() -> Self {
        Self::full(Bytes::new())
    }
}

impl<B> fmt::Debug for CachedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Flight { .. } => "flight",
            Kind::Full { .. } => "full",
        };
        f.debug_struct("CachedBody").field("kind", &kind).finish()
    }
}

impl<B> http_body::Body for CachedBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Flight { reader } => reader.poll_frame(cx),
            KindProj::Full { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Flight { reader } => reader.is_end_stream(),
            Kind::Full { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Flight { .. } => SizeHint::default(),
            Kind::Full { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// The error a [`CachedBody`] ends with when the upstream response it carries failed
/// mid-way (the connection broke, or every reader of a shared response went away).
#[derive(Clone, Debug)]
pub struct StreamError {
    message: Arc<str>,
}

impl StreamError {
    pub(crate) fn new(message: impl Into<Arc<str>>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StreamError {}
