//! The tee: a body wrapper that watches frames go by without touching them.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::sse::{SseEvent, SseParser};

/// How an observed body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The body ended cleanly (end of stream, or its exact length was reached).
    Complete,
    /// The body yielded an error (e.g. the upstream connection was reset).
    Failed,
    /// The body was dropped before its end: the client hung up.
    Cancelled,
}

/// Watches a body's frames. See [`ObservedBody`].
pub trait Observer {
    /// Called with every data frame, before it is passed on.
    fn on_data(&mut self, data: &Bytes);

    /// Called with the trailers, if the body has them.
    fn on_trailers(&mut self, _trailers: &HeaderMap) {}

    /// Called exactly once, when the body ends, fails or is dropped.
    fn on_end(self, end: StreamEnd);
}

/// `()` observes nothing.
impl Observer for () {
    fn on_data(&mut self, _: &Bytes) {}
    fn on_end(self, _: StreamEnd) {}
}

/// A closure is called once with how the body ended.
impl<F: FnOnce(StreamEnd)> Observer for F {
    fn on_data(&mut self, _: &Bytes) {}
    fn on_end(self, end: StreamEnd) {
        self(end)
    }
}

pin_project! {
    /// A body that passes every frame of `B` on unchanged and at once, showing each to an
    /// [`Observer`] first, and tells the observer exactly once how the body ended:
    /// at the end of the stream, on an error, as soon as `is_end_stream()` turns true
    /// after a frame (hyper stops polling at an exact `content-length`), or when the
    /// body is dropped: `Complete` if `is_end_stream()` had said true (hyper drops an
    /// empty body unpolled), `Cancelled` otherwise.
    ///
    /// `is_end_stream` and `size_hint` are those of `B`.
    pub struct ObservedBody<B, O: Observer> {
        // `None` only while dropping: the inner body goes first, so observers further
        // in finish before this one hears of the cancel.
        #[pin]
        inner: Option<B>,
        observer: Option<O>,
        // Set when `is_end_stream()` answered true: dropped then, the body was complete.
        at_end: AtomicBool,
    }

    impl<B, O: Observer> PinnedDrop for ObservedBody<B, O> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.observer.is_some() {
                // A body already at its end when dropped was complete: hyper asks
                // `is_end_stream()` first and never polls a body that says true (an
                // empty answer, a 204), it just drops it. (No `B: Body` bound here, so
                // the answer it was given is remembered rather than asked again.)
                let end = if *this.at_end.get_mut() {
                    StreamEnd::Complete
                } else {
                    StreamEnd::Cancelled
                };
                this.inner.set(None);
                if let Some(o) = this.observer.take() {
                    o.on_end(end);
                }
            }
        }
    }
}

impl<B, O: Observer> ObservedBody<B, O> {
    /// Wraps `inner`, reporting to `observer`.
    pub fn new(inner: B, observer: O) -> Self {
        Self {
            inner: Some(inner),
            observer: Some(observer),
            at_end: AtomicBool::new(false),
        }
    }
}

impl<B, O> http_body::Body for ObservedBody<B, O>
where
    B: http_body::Body<Data = Bytes>,
    O: Observer,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let Some(mut inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        let polled = ready!(inner.as_mut().poll_frame(cx));
        let end = match &polled {
            Some(Ok(frame)) => {
                if let Some(o) = this.observer.as_mut() {
                    if let Some(data) = frame.data_ref() {
                        o.on_data(data);
                    } else if let Some(trailers) = frame.trailers_ref() {
                        o.on_trailers(trailers);
                    }
                }
                inner.is_end_stream().then_some(StreamEnd::Complete)
            }
            Some(Err(_)) => Some(StreamEnd::Failed),
            None => Some(StreamEnd::Complete),
        };
        if let Some(end) = end
            && let Some(o) = this.observer.take()
        {
            o.on_end(end);
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.as_ref().is_none_or(|b| b.is_end_stream());
        if end {
            self.at_end.store(true, Ordering::Relaxed);
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

/// Receives the events of an SSE stream. See [`SseObserver`].
pub trait SseHandler {
    /// Called for each complete event, in order.
    fn on_event(&mut self, event: SseEvent<'_>);

    /// Called once at the end. `partial` is true when the stream stopped in the middle
    /// of an event.
    fn on_end(self, end: StreamEnd, partial: bool);
}

/// An [`Observer`] that parses the frames as server-sent events: put it in an
/// [`ObservedBody`] to tee an SSE stream into a handler while the client receives every
/// frame untouched.
#[derive(Debug)]
pub struct SseObserver<H> {
    parser: SseParser,
    handler: H,
}

impl<H: SseHandler> SseObserver<H> {
    /// Feeds `handler` from a fresh parser.
    pub fn new(handler: H) -> Self {
        Self::with_parser(SseParser::new(), handler)
    }

    /// Feeds `handler` from `parser` (e.g. one with another bound).
    pub fn with_parser(parser: SseParser, handler: H) -> Self {
        Self { parser, handler }
    }
}

impl<H: SseHandler> Observer for SseObserver<H> {
    fn on_data(&mut self, data: &Bytes) {
        let handler = &mut self.handler;
        self.parser.feed(data, |e| handler.on_event(e));
    }

    fn on_end(self, end: StreamEnd) {
        let partial = self.parser.has_partial();
        self.handler.on_end(end, partial);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body::Body as _;
    use http_body_util::BodyExt;

    use super::*;
    use crate::test_util::Chunks;

    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<String>>>);

    impl SseHandler for Log {
        fn on_event(&mut self, e: SseEvent<'_>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{}={}", e.event, e.data_str().unwrap()));
        }
        fn on_end(self, end: StreamEnd, partial: bool) {
            self.0
                .lock()
                .unwrap()
                .push(format!("end {end:?} partial={partial}"));
        }
    }

    impl Log {
        fn get(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    #[tokio::test]
    async fn frames_pass_untouched_and_events_are_seen() {
        let chunks = [
            "data: {\"a\":",
            "1}\n\nevent: x\nda",
            "ta: 2\n\ndata: [DONE]\n\n",
        ];
        let log = Log::default();
        let mut body = ObservedBody::new(Chunks::new(chunks), SseObserver::new(log.clone()));
        let mut got = Vec::new();
        while let Some(f) = body.frame().await {
            got.push(f.unwrap().into_data().unwrap());
        }
        assert_eq!(
            got,
            chunks.map(|c| Bytes::from_static(c.as_bytes())).to_vec()
        );
        assert_eq!(
            log.get(),
            vec![
                "message={\"a\":1}",
                "x=2",
                "message=[DONE]",
                "end Complete partial=false"
            ]
        );
        drop(body);
        assert_eq!(log.get().len(), 4, "finished exactly once");
    }

    #[tokio::test]
    async fn exact_length_finishes_without_a_final_poll() {
        let log = Log::default();
        let mut body = ObservedBody::new(
            Chunks::new(["data: 1\n\n"]).exact(),
            SseObserver::new(log.clone()),
        );
        body.frame().await.unwrap().unwrap();
        assert!(body.is_end_stream());
        // hyper would stop here; the observer already knows.
        assert_eq!(log.get(), vec!["message=1", "end Complete partial=false"]);
    }

    #[tokio::test]
    async fn error_and_cancel() {
        let log = Log::default();
        let mut body = ObservedBody::new(
            Chunks::new(["data: 1\n\ndata: 2"]).then_error(),
            SseObserver::new(log.clone()),
        );
        body.frame().await.unwrap().unwrap();
        assert!(body.frame().await.unwrap().is_err());
        assert_eq!(log.get(), vec!["message=1", "end Failed partial=true"]);
        drop(body);
        assert_eq!(log.get().len(), 2);

        let log = Log::default();
        let mut body = ObservedBody::new(
            Chunks::new(["data: 1\n\n", "data: 2\n\n"]),
            SseObserver::new(log.clone()),
        );
        body.frame().await.unwrap().unwrap();
        drop(body);
        assert_eq!(log.get(), vec!["message=1", "end Cancelled partial=false"]);
    }

    #[tokio::test]
    async fn on_cancel_inner_observers_finish_first() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let (a, b) = (order.clone(), order.clone());
        let inner = ObservedBody::new(Chunks::new(["x", "y"]), move |_| {
            a.lock().unwrap().push("inner")
        });
        let mut outer = ObservedBody::new(inner, move |_| b.lock().unwrap().push("outer"));
        outer.frame().await.unwrap().unwrap();
        drop(outer);
        assert_eq!(*order.lock().unwrap(), vec!["inner", "outer"]);
    }

    #[test]
    fn an_empty_body_dropped_unpolled_is_complete() {
        // What hyper does with a body whose `is_end_stream()` is already true: asks, then
        // drops it without a poll.
        let ended = Arc::new(Mutex::new(None));
        let e = ended.clone();
        let body = ObservedBody::new(http_body_util::Empty::<Bytes>::new(), move |end| {
            *e.lock().unwrap() = Some(end)
        });
        assert!(body.is_end_stream());
        drop(body);
        assert_eq!(*ended.lock().unwrap(), Some(StreamEnd::Complete));

        // Nested tees, asked through the outer one: both complete, inner first.
        let order = Arc::new(Mutex::new(Vec::new()));
        let (a, b) = (order.clone(), order.clone());
        let inner = ObservedBody::new(Chunks::new([""; 0]).exact(), move |end| {
            a.lock().unwrap().push(("inner", end))
        });
        let outer = ObservedBody::new(inner, move |end| b.lock().unwrap().push(("outer", end)));
        assert!(outer.is_end_stream());
        drop(outer);
        assert_eq!(
            *order.lock().unwrap(),
            vec![
                ("inner", StreamEnd::Complete),
                ("outer", StreamEnd::Complete)
            ]
        );

        // A body with more to come is still cancelled, asked or not.
        let ended = Arc::new(Mutex::new(None));
        let e = ended.clone();
        let body = ObservedBody::new(Chunks::new(["x"]), move |end| {
            *e.lock().unwrap() = Some(end)
        });
        assert!(!body.is_end_stream());
        drop(body);
        assert_eq!(*ended.lock().unwrap(), Some(StreamEnd::Cancelled));
    }

    #[tokio::test]
    async fn closure_observer() {
        let ended = Arc::new(Mutex::new(None));
        let e = ended.clone();
        let body = ObservedBody::new(Chunks::new(["a", "b"]), move |end| {
            *e.lock().unwrap() = Some(end)
        });
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "ab");
        assert_eq!(*ended.lock().unwrap(), Some(StreamEnd::Complete));
    }
}
