//! [`Body`]: the one request body type layers hand inward.

use std::any::Any;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::future::Future;

use bytes::{Bytes, BytesMut};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};

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

    /// Reads the whole body, at most `limit` bytes: [`ReadBody`]. A buffered body
    /// answers at once without copying.
    ///
    /// Fails with [`LengthLimitError`](http_body_util::LengthLimitError) (inside the
    /// `BoxError`) when the body is longer than `limit`, or with the body's own error.
    pub fn read(self, limit: usize) -> ReadBody {
        let state = match self.kind {
            Kind::Full(b) => {
                let b = b.unwrap_or_default();
                if b.len() <= limit {
                    ReadState::Done(Some(b))
                } else {
                    // Let `Limited` produce its own `LengthLimitError`.
                    ReadState::Reading {
                        body: Limited::new(Full::new(b).map_err(Into::into).boxed_unsync(), limit),
                        first: None,
                        rest: BytesMut::new(),
                    }
                }
            }
            Kind::Boxed(inner) => ReadState::Reading {
                body: Limited::new(inner, limit),
                first: None,
                rest: BytesMut::new(),
            },
        };
        ReadBody { state }
    }

    /// [`read`](Self::read), as an `async fn`.
    pub async fn collect_limited(self, limit: usize) -> Result<Bytes, BoxError> {
        self.read(limit).await
    }
}

/// The future of [`Body::read`]: the whole body as one `Bytes` (the frame itself when
/// it came in one). Nameable and `Unpin`, for layers' hand-written futures.
///
/// It stops as soon as the body says it has ended (`is_end_stream`: on a hyper server,
/// once its `content-length` is read) instead of polling once more for the end, which
/// there would wait for the connection task to close the body.
#[must_use = "futures do nothing unless polled"]
pub struct ReadBody {
    state: ReadState,
}

enum ReadState {
    Reading {
        body: Limited<UnsyncBoxBody<Bytes, BoxError>>,
        first: Option<Bytes>,
        rest: BytesMut,
    },
    Done(Option<Bytes>),
}

impl fmt::Debug for ReadBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadBody").finish_non_exhaustive()
    }
}

impl Future for ReadBody {
    type Output = Result<Bytes, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let ReadState::Reading { body, first, rest } = &mut self.state else {
            let ReadState::Done(b) = &mut self.state else {
                unreachable!()
            };
            return Poll::Ready(Ok(b.take().expect("ReadBody polled after it finished")));
        };
        loop {
            if body.is_end_stream() {
                break;
            }
            match std::task::ready!(Pin::new(&mut *body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers: not part of the bytes
                    };
                    if data.is_empty() {
                        continue;
                    }
                    match first {
                        None if rest.is_empty() => *first = Some(data),
                        _ => {
                            if let Some(f) = first.take() {
                                rest.extend_from_slice(&f);
                            }
                            rest.extend_from_slice(&data);
                        }
                    }
                }
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => break,
            }
        }
        let out = match first.take() {
            Some(f) => f,
            None => std::mem::take(rest).freeze(),
        };
        self.state = ReadState::Done(None);
        Poll::Ready(Ok(out))
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

    /// A body that says it has ended after its data, and must not be polled again.
    struct EndsAfter(Option<Bytes>);

    impl http_body::Body for EndsAfter {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            match self.0.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => panic!("polled past its end"),
            }
        }
        fn is_end_stream(&self) -> bool {
            self.0.is_none()
        }
    }

    #[tokio::test]
    async fn read_stops_at_the_end_the_body_announces() {
        let one = Bytes::from_static(b"{\"model\":\"m\"}");
        let got = Body::new(EndsAfter(Some(one.clone())))
            .read(1024)
            .await
            .unwrap();
        // One frame: the bytes themselves, not a copy.
        assert_eq!(got, one);
        assert_eq!(got.as_ptr(), one.as_ptr());
    }

    #[tokio::test]
    async fn read_joins_frames_and_keeps_the_limit() {
        let chunks = crate::test_util::Chunks::new(["ab", "", "cd", "e"]);
        assert_eq!(Body::new(chunks).read(5).await.unwrap(), "abcde");
        let chunks = crate::test_util::Chunks::new(["ab", "cd", "e"]);
        let err = Body::new(chunks).read(4).await.unwrap_err();
        assert!(err.is::<http_body_util::LengthLimitError>());
        assert_eq!(Body::empty().read(0).await.unwrap(), "");
        let err = Body::full("12345").read(4).await.unwrap_err();
        assert!(err.is::<http_body_util::LengthLimitError>());
    }
}
