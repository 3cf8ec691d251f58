//! The response body: one frame per event, paced by tokio timers, tracked to its end.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde_json::Value;
use tokio::time::Sleep;

use crate::stats::{Counter, Tracker};

/// What a wire-format handler produced.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A whole JSON body.
    Json(Bytes),
    /// Server-sent events, sent one frame per event.
    Stream(Events),
}

/// Serializes a JSON value (infallible for a `Value` written to memory).
pub(crate) fn to_bytes(value: &Value) -> Bytes {
    let mut buf = BytesMut::with_capacity(256).writer();
    serde_json::to_writer(&mut buf, value).expect("a serde_json::Value always serializes");
    buf.into_inner().freeze()
}

/// A stream's events, serialized back to back into one buffer.
#[derive(Debug, Default)]
pub(crate) struct Events {
    buf: BytesMut,
    lens: Vec<usize>,
}

impl Events {
    pub(crate) fn new() -> Events {
        Events {
            buf: BytesMut::with_capacity(4096),
            lens: Vec::with_capacity(24),
        }
    }

    /// `data: {json}\n\n` (OpenAI chat completions).
    pub(crate) fn data(&mut self, json: &Value) {
        let start = self.buf.len();
        self.buf.put_slice(b"data: ");
        self.json(json);
        self.buf.put_slice(b"\n\n");
        self.lens.push(self.buf.len() - start);
    }

    /// `data: [DONE]\n\n`.
    pub(crate) fn done(&mut self) {
        self.buf.put_slice(b"data: [DONE]\n\n");
        self.lens.push(b"data: [DONE]\n\n".len());
    }

    /// `event: {name}\ndata: {json}\n\n` (Anthropic, OpenAI Responses).
    pub(crate) fn event(&mut self, name: &str, json: &Value) {
        let start = self.buf.len();
        self.buf.put_slice(b"event: ");
        self.buf.put_slice(name.as_bytes());
        self.buf.put_slice(b"\ndata: ");
        self.json(json);
        self.buf.put_slice(b"\n\n");
        self.lens.push(self.buf.len() - start);
    }

    /// `data: {template filled}\n\n`.
    pub(crate) fn data_from(&mut self, template: &Template, fills: &[Fill<'_>]) {
        let start = self.buf.len();
        self.buf.put_slice(b"data: ");
        self.fill(template, fills);
        self.buf.put_slice(b"\n\n");
        self.lens.push(self.buf.len() - start);
    }

    /// `event: {name}\ndata: {template filled}\n\n`.
    pub(crate) fn event_from(&mut self, name: &str, template: &Template, fills: &[Fill<'_>]) {
        let start = self.buf.len();
        self.buf.put_slice(b"event: ");
        self.buf.put_slice(name.as_bytes());
        self.buf.put_slice(b"\ndata: ");
        self.fill(template, fills);
        self.buf.put_slice(b"\n\n");
        self.lens.push(self.buf.len() - start);
    }

    fn fill(&mut self, template: &Template, fills: &[Fill<'_>]) {
        self.buf.put_slice(&template.first);
        for (hole, piece) in &template.rest {
            debug_assert!(*hole < fills.len(), "a fill for every hole");
            match fills.get(*hole).copied().unwrap_or(Fill::Num(0)) {
                Fill::Str(s) => serde_json::to_writer((&mut self.buf).writer(), s)
                    .expect("a str always serializes"),
                Fill::Num(n) => self.buf.put_slice(n.to_string().as_bytes()),
            }
            self.buf.put_slice(piece);
        }
    }

    fn json(&mut self, json: &Value) {
        serde_json::to_writer((&mut self.buf).writer(), json)
            .expect("a serde_json::Value always serializes");
    }
}

/// A JSON value serialized once, with holes to fill per event: the per-word events of a
/// stream cost a copy instead of building and serializing a JSON tree each.
///
/// A hole is a string value [`Template::HOLES`]`[i]` anywhere in the value; it is filled
/// with `fills[i]`.
#[derive(Debug)]
pub(crate) struct Template {
    first: Bytes,
    /// (hole index, the text after it)
    rest: Vec<(usize, Bytes)>,
}

impl Template {
    /// The placeholder string values: hole 0 and hole 1.
    pub(crate) const HOLES: [&'static str; 2] = ["\u{1}", "\u{2}"];

    pub(crate) fn new(value: &Value) -> Template {
        const HOLES: [&[u8]; 2] = [b"\"\\u0001\"", b"\"\\u0002\""];
        let json = to_bytes(value);
        // Cut at every string token that is exactly a hole, tracking string state so that
        // the same bytes inside another string never count.
        let mut cuts = Vec::new();
        let (mut in_string, mut escaped) = (false, false);
        let mut i = 0;
        while i < json.len() {
            let byte = json[i];
            if in_string {
                match (escaped, byte) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
            } else if byte == b'"' {
                if let Some(hole) = HOLES.iter().position(|h| json[i..].starts_with(h)) {
                    cuts.push((i, hole));
                    i += HOLES[hole].len();
                    continue;
                }
                in_string = true;
            }
            i += 1;
        }
        let mut end = cuts.first().map_or(json.len(), |(at, _)| *at);
        let first = json.slice(..end);
        let mut rest = Vec::with_capacity(cuts.len());
        for (n, (at, hole)) in cuts.iter().enumerate() {
            let from = at + HOLES[*hole].len();
            end = cuts.get(n + 1).map_or(json.len(), |(at, _)| *at);
            rest.push((*hole, json.slice(from..end)));
        }
        Template { first, rest }
    }
}

/// What fills a [`Template`] hole.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fill<'a> {
    /// A JSON string.
    Str(&'a str),
    /// A JSON number.
    Num(u64),
}

/// How a stream is paced and whether it is cut.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pacing {
    pub(crate) ttft: Option<Duration>,
    pub(crate) chunk_delay: Option<Duration>,
    pub(crate) reset_after: Option<usize>,
}

/// The error a body yields to make hyper abort the connection (`reset_after`).
#[derive(Debug)]
pub(crate) struct InjectedReset;

impl fmt::Display for InjectedReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("mock provider: injected reset")
    }
}

impl std::error::Error for InjectedReset {}

pin_project! {
    /// Every response body the mock sends.
    ///
    /// A whole body is one frame with an exact size. A stream yields one frame per event,
    /// sleeping `ttft` before the first and `chunk_delay` before each later one; with
    /// `reset_after = k` it yields an error after `k` events (or after the last one, if
    /// there are fewer), so hyper aborts the connection. The tracker counts the request as
    /// completed when the last frame is handed out, as reset on the error, and as cancelled
    /// if the body is dropped before either.
    #[derive(Debug)]
    pub(crate) struct MockBody {
        state: State,
        #[pin]
        sleep: Option<Sleep>,
        tracker: Tracker,
    }
}

#[derive(Debug)]
enum State {
    Full(Bytes),
    Stream(Stream),
    Done,
}

#[derive(Debug)]
struct Stream {
    buf: Bytes,
    lens: std::vec::IntoIter<usize>,
    emitted: usize,
    pacing: Pacing,
    /// The delay before the next event has been started (or was not needed).
    delayed: bool,
    /// Yielded once before the reset, so that hyper flushed what came before.
    flushed: bool,
}

impl MockBody {
    /// A whole body in one frame.
    pub(crate) fn full(data: Bytes, tracker: Tracker) -> MockBody {
        MockBody {
            state: State::Full(data),
            sleep: None,
            tracker,
        }
    }

    /// A stream of events.
    pub(crate) fn stream(events: Events, pacing: Pacing, tracker: Tracker) -> MockBody {
        MockBody {
            state: State::Stream(Stream {
                buf: events.buf.freeze(),
                lens: events.lens.into_iter(),
                emitted: 0,
                pacing,
                delayed: false,
                flushed: false,
            }),
            sleep: None,
            tracker,
        }
    }

    /// A whole body cut by `reset_after`: with 0, nothing is sent; otherwise the first
    /// half. Then the connection is aborted.
    pub(crate) fn truncated(data: Bytes, reset_after: usize, tracker: Tracker) -> MockBody {
        let mut events = Events::new();
        if reset_after > 0 {
            let half = data.len() / 2;
            events.buf.put_slice(&data[..half]);
            events.lens.push(half);
        }
        let pacing = Pacing {
            reset_after: Some(reset_after.min(1)),
            ..Pacing::default()
        };
        MockBody::stream(events, pacing, tracker)
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = InjectedReset;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, InjectedReset>>> {
        let mut this = self.project();
        let stream = match this.state {
            State::Done => return Poll::Ready(None),
            State::Full(data) => {
                let data = std::mem::take(data);
                *this.state = State::Done;
                this.tracker.finish(Counter::Completed);
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            State::Stream(stream) => stream,
        };

        if !stream.delayed {
            stream.delayed = true;
            let delay = if stream.emitted == 0 {
                stream.pacing.ttft
            } else {
                stream.pacing.chunk_delay
            };
            if let Some(delay) = delay.filter(|d| !d.is_zero()) {
                this.sleep.set(Some(tokio::time::sleep(delay)));
            }
        }
        if let Some(sleep) = this.sleep.as_mut().as_pin_mut() {
            ready!(sleep.poll(cx));
            this.sleep.set(None);
        }
        stream.delayed = false;

        if let Some(k) = stream.pacing.reset_after
            && (stream.emitted >= k || stream.lens.len() == 0)
        {
            if !stream.flushed {
                // Yield once so hyper flushes the head and the events already handed
                // out: on an error it drops whatever is still buffered.
                stream.flushed = true;
                stream.delayed = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            *this.state = State::Done;
            this.tracker.finish(Counter::Resets);
            return Poll::Ready(Some(Err(InjectedReset)));
        }

        let Some(len) = stream.lens.next() else {
            *this.state = State::Done;
            this.tracker.finish(Counter::Completed);
            return Poll::Ready(None);
        };
        let frame = stream.buf.split_to(len);
        stream.emitted += 1;
        if stream.lens.len() == 0 && stream.pacing.reset_after.is_none() {
            *this.state = State::Done;
            this.tracker.finish(Counter::Completed);
        }
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Full(data) => SizeHint::with_exact(data.len() as u64),
            State::Done => SizeHint::with_exact(0),
            State::Stream(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http_body_util::BodyExt;
    use serde_json::json;
    use tokio::time::Instant;

    use super::*;
    use crate::stats::Counters;

    fn three_events() -> Events {
        let mut events = Events::new();
        events.data(&json!({"a": 1}));
        events.event("x", &json!("y"));
        events.done();
        events
    }

    #[test]
    fn templates_fill_holes_in_order() {
        let [zero, one] = Template::HOLES;
        let template = Template::new(
            &json!({"a": zero, "b": [1, one], "c": "\u{1}x", "d": "\\u0001", "e": "q\"\u{1}"}),
        );
        let mut events = Events::new();
        events.data_from(&template, &[Fill::Str(" he said \"hi\""), Fill::Num(42)]);
        events.event_from("e", &template, &[Fill::Str("w"), Fill::Num(0)]);
        let filled = events.buf.freeze();
        assert_eq!(
            &filled[..],
            &b"data: {\"a\":\" he said \\\"hi\\\"\",\"b\":[1,42],\"c\":\"\\u0001x\",\"d\":\"\\\\u0001\",\"e\":\"q\\\"\\u0001\"}\n\nevent: e\ndata: {\"a\":\"w\",\"b\":[1,0],\"c\":\"\\u0001x\",\"d\":\"\\\\u0001\",\"e\":\"q\\\"\\u0001\"}\n\n"[..]
        );
        assert_eq!(events.lens.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stream_is_paced_one_frame_per_event() {
        let counters = Arc::new(Counters::default());
        let pacing = Pacing {
            ttft: Some(Duration::from_millis(100)),
            chunk_delay: Some(Duration::from_millis(10)),
            reset_after: None,
        };
        let mut body = Box::pin(MockBody::stream(
            three_events(),
            pacing,
            Tracker::new(counters.clone()),
        ));
        let start = Instant::now();
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            frames.push((start.elapsed(), frame.unwrap().into_data().unwrap()));
        }
        assert!(body.is_end_stream());
        let expected = [
            (100, &b"data: {\"a\":1}\n\n"[..]),
            (110, b"event: x\ndata: \"y\"\n\n"),
            (120, b"data: [DONE]\n\n"),
        ];
        assert_eq!(frames.len(), expected.len());
        for ((at, data), (ms, want)) in frames.iter().zip(expected) {
            assert_eq!(*at, Duration::from_millis(ms));
            assert_eq!(&data[..], want);
        }
        drop(body);
        let stats = counters.snapshot();
        assert_eq!((stats.completed, stats.cancelled), (1, 0));
    }

    #[tokio::test]
    async fn reset_after_yields_an_error() {
        let counters = Arc::new(Counters::default());
        let pacing = Pacing {
            reset_after: Some(2),
            ..Pacing::default()
        };
        let mut body = Box::pin(MockBody::stream(
            three_events(),
            pacing,
            Tracker::new(counters.clone()),
        ));
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.unwrap().is_err());
        assert!(body.frame().await.is_none());
        drop(body);
        let stats = counters.snapshot();
        assert_eq!((stats.completed, stats.resets, stats.cancelled), (0, 1, 0));
    }

    #[tokio::test]
    async fn reset_after_beyond_the_end_still_resets() {
        let counters = Arc::new(Counters::default());
        let pacing = Pacing {
            reset_after: Some(99),
            ..Pacing::default()
        };
        let body = Box::pin(MockBody::stream(
            three_events(),
            pacing,
            Tracker::new(counters.clone()),
        ));
        assert!(body.collect().await.is_err());
        assert_eq!(counters.snapshot().resets, 1);
    }

    #[tokio::test]
    async fn truncated_whole_body() {
        let counters = Arc::new(Counters::default());
        let data = Bytes::from_static(b"0123456789");
        let mut body = Box::pin(MockBody::truncated(
            data.clone(),
            3,
            Tracker::new(counters.clone()),
        ));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"01234");
        assert!(body.frame().await.unwrap().is_err());
        let body = Box::pin(MockBody::truncated(data, 0, Tracker::new(counters.clone())));
        assert!(body.collect().await.is_err());
        assert_eq!(counters.snapshot().resets, 2);
    }

    #[tokio::test]
    async fn dropped_midway_is_cancelled() {
        let counters = Arc::new(Counters::default());
        let mut body = Box::pin(MockBody::stream(
            three_events(),
            Pacing::default(),
            Tracker::new(counters.clone()),
        ));
        body.frame().await.unwrap().unwrap();
        drop(body);
        let body = Box::pin(MockBody::full(
            Bytes::from_static(b"{}"),
            Tracker::new(counters.clone()),
        ));
        assert_eq!(body.size_hint().exact(), Some(2));
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"{}");
        let stats = counters.snapshot();
        assert_eq!((stats.completed, stats.cancelled), (1, 1));
    }
}
