//! [`LayerBody`]: the inner body untouched, or the layer's own answer.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The response body of a layer that either passes its inner service's response on
    /// or answers itself (a JSON error, a refusal): the inner body untouched, or the
    /// layer's own bytes. Provider routing and auth use it as their `ResponseBody`.
    ///
    /// `Default` is an empty body of the layer's own (tower-http's `Timeout` needs one);
    /// `From<Bytes>` is the layer's own answer, so `ErrorResponse::into_response` makes one.
    pub struct LayerBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Own { body: Option<Bytes> },
    }
}

impl<B> LayerBody<B> {
    /// The inner service's body, passed on untouched.
    pub fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// Whether the layer answered this itself (rather than passing the inner body on).
    pub fn is_own(&self) -> bool {
        matches!(self.kind, Kind::Own { .. })
    }
}

/// An empty body, as middleware that answers on its own needs (tower-http's `Timeout`).
impl<B> Default for LayerBody<B> {
    fn default() -> Self {
        Self {
            kind: Kind::Own { body: None },
        }
    }
}

impl<B> From<Bytes> for LayerBody<B> {
    fn from(b: Bytes) -> Self {
        Self {
            kind: Kind::Own { body: Some(b) },
        }
    }
}

impl<B> http_body::Body for LayerBody<B>
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
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Own { body } => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Own { body } => body.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Own { body } => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body::Body as _;
    use http_body_util::{BodyExt, Full};

    use super::*;

    #[tokio::test]
    async fn own_or_inner() {
        let own: LayerBody<Full<Bytes>> = LayerBody::from(Bytes::from_static(b"{\"e\":1}"));
        assert!(own.is_own());
        assert_eq!(own.size_hint().exact(), Some(7));
        assert_eq!(own.collect().await.unwrap().to_bytes(), "{\"e\":1}");
        let empty: LayerBody<Full<Bytes>> = LayerBody::default();
        assert!(empty.is_end_stream());
        let inner = LayerBody::inner(Full::new(Bytes::from_static(b"abc")));
        assert!(!inner.is_own());
        assert_eq!(inner.size_hint().exact(), Some(3));
        assert_eq!(inner.collect().await.unwrap().to_bytes(), "abc");
    }
}
