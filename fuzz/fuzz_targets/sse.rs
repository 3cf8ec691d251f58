//! The SSE parser and the tee (`ObservedBody` + `SseObserver`), fed the input cut into
//! frames at fuzzer-chosen points.
//!
//! Asserts: the tee forwards every frame byte for byte, in order, with nothing added
//! and nothing lost, and reports the end exactly once as `Complete`; the parser's events
//! do not depend on where the stream was cut (fed whole, fed in the fuzzer's frames,
//! fed through the tee) at the default bound and at a small bound (overflow paths).
#![no_main]

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame};
use libfuzzer_sys::fuzz_target;
use tower_ai_core::{ObservedBody, SseEvent, SseHandler, SseObserver, SseParser, StreamEnd};

mod split;

type Event = (String, Vec<u8>, Option<String>);

fn own(e: SseEvent<'_>) -> Event {
    (e.event.to_owned(), e.data.to_vec(), e.id.map(str::to_owned))
}

fn parse_frames(frames: &[&[u8]], max_len: usize) -> (Vec<Event>, bool, bool) {
    let mut p = SseParser::with_max_len(max_len);
    let mut events = Vec::new();
    for f in frames {
        p.feed(f, |e| events.push(own(e)));
    }
    (events, p.has_partial(), p.overflowed())
}

/// A body yielding the given frames, each at once.
struct Frames(VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

struct Collect<'a> {
    events: &'a mut Vec<Event>,
    end: &'a mut Vec<(StreamEnd, bool)>,
}

impl SseHandler for Collect<'_> {
    fn on_event(&mut self, event: SseEvent<'_>) {
        self.events.push(own(event));
    }
    fn on_end(self, end: StreamEnd, partial: bool) {
        self.end.push((end, partial));
    }
}

fuzz_target!(|data: &[u8]| {
    let frames = split::frames(data);
    let whole: Vec<u8> = frames.concat();

    for max_len in [tower_ai_core::DEFAULT_MAX_EVENT_LEN, 64] {
        let at_once = parse_frames(&[&whole], max_len);
        let cut = parse_frames(&frames, max_len);
        if max_len == tower_ai_core::DEFAULT_MAX_EVENT_LEN {
            // Within the bound, where the stream was cut changes nothing.
            assert_eq!(at_once, cut, "events depend on the frame boundaries");
        } else {
            // Over a small bound, at least nothing is dispatched over it.
            for (_, d, _) in &cut.0 {
                assert!(d.len() <= max_len);
            }
        }
    }

    // The tee: the client gets exactly the frames, the handler the same events.
    let mut events = Vec::new();
    let mut end = Vec::new();
    {
        let body = Frames(frames.iter().map(|f| Bytes::copy_from_slice(f)).collect());
        let handler = Collect { events: &mut events, end: &mut end };
        let mut tee = ObservedBody::new(body, SseObserver::new(handler));
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::with_capacity(whole.len());
        let mut n = 0;
        loop {
            match Pin::new(&mut tee).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let d = frame.into_data().expect("only data frames");
                    assert_eq!(&d[..], frames[n], "frame {n} changed");
                    out.extend_from_slice(&d);
                    n += 1;
                }
                Poll::Ready(Some(Err(e))) => match e {},
                Poll::Ready(None) => break,
                Poll::Pending => unreachable!("the frames are all ready"),
            }
            if tee.is_end_stream() {
                break;
            }
        }
        assert_eq!(n, frames.len());
        assert_eq!(out, whole);
    }
    let (expected, partial, _) = parse_frames(&[&whole], tower_ai_core::DEFAULT_MAX_EVENT_LEN);
    assert_eq!(events, expected);
    assert_eq!(end, vec![(StreamEnd::Complete, partial)], "end reported once");
});
