//! Criterion micro-benchmarks of the SSE parser and the tee (`ObservedBody` +
//! `SseObserver`): the per-chunk cost every metered stream pays.
//!
//! `cargo bench --bench sse`

use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt;
use http_body::Frame;
use http_body_util::BodyExt;
use tower_ai_core::{
    ObservedBody, Operation, SseEvent, SseHandler, SseObserver, SseParser, StreamEnd, StreamUsage,
    WireFormat,
};

/// One OpenAI chat-completion chunk event, as providers send them (~230 bytes).
fn openai_event(i: usize) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-AbCdEf123456\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" word{i}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
    )
}

/// A stream of 64 events, as whole-event chunks and as 61-byte slices that split lines.
fn stream() -> (Vec<Bytes>, Vec<Bytes>) {
    let events: Vec<Bytes> = (0..64).map(|i| Bytes::from(openai_event(i))).collect();
    let all: Vec<u8> = events.iter().flat_map(|b| b.iter().copied()).collect();
    let split = all.chunks(61).map(Bytes::copy_from_slice).collect();
    (events, split)
}

/// An Anthropic stream: message_start, 64 text deltas, message_delta, message_stop.
fn anthropic_events() -> Vec<Bytes> {
    let mut v = vec![Bytes::from_static(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n")];
    for i in 0..64 {
        v.push(Bytes::from(format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\" word{i}\"}}}}\n\n"
        )));
    }
    v.push(Bytes::from_static(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":64}}\n\n"));
    v.push(Bytes::from_static(
        b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ));
    v
}

/// Usage extraction as the meter runs it: every event into a `StreamUsage`.
struct Meter(StreamUsage);

impl SseHandler for Meter {
    fn on_event(&mut self, e: SseEvent<'_>) {
        self.0.on_event(&e);
    }
    fn on_end(self, _: StreamEnd, _: bool) {
        black_box(self.0.usage());
    }
}

struct Count(usize);

impl SseHandler for Count {
    fn on_event(&mut self, e: SseEvent<'_>) {
        self.0 += e.data.len();
    }
    fn on_end(self, _: StreamEnd, _: bool) {
        black_box(self.0);
    }
}

/// A body yielding prepared frames, always ready.
struct Frames(std::vec::IntoIter<Bytes>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.next().map(|b| Ok(Frame::data(b))))
    }
}

fn bench(c: &mut Criterion) {
    let (events, split) = stream();
    let bytes: u64 = events.iter().map(|b| b.len() as u64).sum();

    let mut g = c.benchmark_group("sse_parse");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("64 events, one per chunk", |b| {
        b.iter(|| {
            let mut p = SseParser::new();
            let mut n = 0usize;
            for chunk in &events {
                p.feed(chunk, |e| n += e.data.len());
            }
            black_box(n)
        })
    });
    g.bench_function("64 events, 61-byte chunks", |b| {
        b.iter(|| {
            let mut p = SseParser::new();
            let mut n = 0usize;
            for chunk in &split {
                p.feed(chunk, |e| n += e.data.len());
            }
            black_box(n)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("tee");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("plain body, 64 frames (baseline)", |b| {
        b.iter(|| {
            let body = Frames(events.clone().into_iter());
            black_box(drain(body))
        })
    });
    g.bench_function("ObservedBody+SseObserver, 64 frames", |b| {
        b.iter(|| {
            let body = ObservedBody::new(
                Frames(events.clone().into_iter()),
                SseObserver::new(Count(0)),
            );
            black_box(drain(body))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("usage_extraction");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("openai chat stream, 64 chunks, tee+parse+usage", |b| {
        b.iter(|| {
            let meter = Meter(StreamUsage::new(
                WireFormat::OpenAi,
                Operation::ChatCompletions,
            ));
            let body =
                ObservedBody::new(Frames(events.clone().into_iter()), SseObserver::new(meter));
            black_box(drain(body))
        })
    });
    let anthropic = anthropic_events();
    g.throughput(Throughput::Elements(anthropic.len() as u64));
    g.bench_function("anthropic stream, 67 events, tee+parse+usage", |b| {
        b.iter(|| {
            let meter = Meter(StreamUsage::new(WireFormat::Anthropic, Operation::Messages));
            let body = ObservedBody::new(
                Frames(anthropic.clone().into_iter()),
                SseObserver::new(meter),
            );
            black_box(drain(body))
        })
    });
    let json = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#;
    g.throughput(Throughput::Elements(1));
    g.bench_function("openai chat JSON body", |b| {
        b.iter(|| {
            black_box(tower_ai_core::usage_from_json(
                WireFormat::OpenAi,
                Operation::ChatCompletions,
                black_box(json),
            ))
        })
    });
    g.finish();
}

fn drain<B: http_body::Body<Data = Bytes> + Unpin>(mut body: B) -> usize
where
    B::Error: std::fmt::Debug,
{
    let mut n = 0;
    while let Some(f) = body.frame().now_or_never().flatten() {
        n += f.unwrap().into_data().map_or(0, |d| d.len());
    }
    debug_assert!(body.is_end_stream() || n > 0);
    n
}

criterion_group!(benches, bench);
criterion_main!(benches);
