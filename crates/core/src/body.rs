//! [`Body`]: the one request body type layers hand inward.

use std::any::Any;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

/// A boxed error, the error type of [`Body`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body every tower-ai layer hands to its inner service: either bytes a layer
/// already buffered (so the next layer that needs them reads them for free), or the
/// client's body streaming through, boxed once.
///
/// [`Body::new`] never boxes a `Body` again: wrapping a `Body` returns it as it is, so
/// stacking layers never re-buffers nor double-boxes. `Body` is `Unpin`, as hyper-util's
/// client wants.
pub struct Body {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

impl Body {
    /// Wraps any body with `Bytes` frames. A [`Body`] comes back unchanged; anything else
    /// is boxed once.
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        match try_downcast::<Body, B>(body) {
            Ok(body) => body,
            Err(body) => Self {
                kind: Kind::Boxed(body.map_err(Into::into).boxed_unsync()),
            },
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self {
            kind: Kind::Full(None),
        }
    }

    /// A buffered body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// The bytes, when the body is buffered and not yet read.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        static EMPTY: Bytes = Bytes::new();
        match &self.kind {
            Kind::Full(Some(b)) => Some(b),
            Kind::Full(None) => Some(&EMPTY),
            Kind::Boxed(_) => None,
        }
    }

    /// Reads the whole body, at most `limit` bytes. A buffered body answers at once
    /// without copying.
    ///
    /// Fails with [`LengthLimitError`](http_body_util::LengthLimitError) (inside the
    /// `BoxError`) when the body is longer than `limit`, or with the body's own error.
    pub async fn collect_limited(self, limit: usize) -> Result<Bytes, BoxError> {
        match self.kind {
            Kind::Full(b) => {
                let b = b.unwrap_or_default();
                if b.len() <= limit {
                    return Ok(b);
                }
                // Let `Limited` produce its own `LengthLimitError`.
                Ok(
                    http_body_util::Limited::new(http_body_util::Full::new(b), limit)
                        .collect()
                        .await?
                        .to_bytes(),
                )
            }
            Kind::Boxed(inner) => Ok(http_body_util::Limited::new(inner, limit)
                .collect()
                .await?
                .to_bytes()),
        }
    }
}

fn try_downcast<T: 'static, K: 'static>(k: K) -> Result<T, K> {
    let mut k = Some(k);
    if let Some(k) = <dyn Any>::downcast_mut::<Option<T>>(&mut k) {
        Ok(k.take().expect("just checked"))
    } else {
        Err(k.expect("just checked"))
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(b) => f
                .debug_struct("Body")
                .field("buffered", &b.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Boxed(_) => f.debug_struct("Body").field("streaming", &true).finish(),
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Self::full(b)
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Self::full(s)
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Self::full(Bytes::from_static(s.as_bytes()))
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Self::full(v)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Boxed(inner) => Pin::new(inner).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Boxed(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Boxed(inner) => inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::Full;

    #[tokio::test]
    async fn new_does_not_rebox() {
        let b = Body::new(Body::full("abc"));
        assert_eq!(b.as_bytes().map(|b| &b[..]), Some(&b"abc"[..]));
        let b = Body::new(Body::new(Full::new(Bytes::from_static(b"xyz"))));
        assert!(b.as_bytes().is_none());
        assert_eq!(&b.collect_limited(10).await.unwrap()[..], b"xyz");
    }

    #[tokio::test]
    async fn full_body_frames() {
        let mut b = Body::full("hello");
        assert_eq!(b.size_hint().exact(), Some(5));
        assert!(!b.is_end_stream());
        let f = b.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "hello");
        assert!(b.is_end_stream());
        assert!(b.frame().await.is_none());
        assert!(Body::empty().is_end_stream());
        assert!(Body::full("").is_end_stream());
    }

    #[tokio::test]
    async fn limit() {
        assert!(Body::full("12345").collect_limited(4).await.is_err());
        assert_eq!(Body::full("1234").collect_limited(4).await.unwrap(), "1234");
        let chunks = crate::test_util::Chunks::new(["12", "34", "5"]);
        let err = Body::new(chunks).collect_limited(4).await.unwrap_err();
        assert!(err.is::<http_body_util::LengthLimitError>());
    }
}
