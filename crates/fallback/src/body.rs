//! [`ResponseBody`]: what a fallback response's body is, and what a stream's events mean.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::time::{Instant, Sleep};
use tower_ai_core::{BoxError, SseEvent};

pin_project! {
    /// The body of a [`Fallback`](crate::Fallback) response: the inner body as it is, or
    /// a stream whose first events were read before it was committed (replayed first,
    /// then the rest as it arrives, watched for stalls), or the layer's own JSON.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Guarded { guard: Guarded<B> },
        Full { bytes: Option<Bytes> },
    }
}

/// A stream the layer looked into before committing it to the client.
pub(crate) struct Guarded<B> {
    pub(crate) held: VecDeque<Frame<Bytes>>,
    pub(crate) body: Option<Pin<Box<B>>>,
    pub(crate) idle: Option<(Duration, Pin<Box<Sleep>>)>,
    pub(crate) format: ErrorFormat,
    /// An error seen while peeking, delivered after the held frames.
    pub(crate) error: Option<BoxError>,
    pub(crate) ended: bool,
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn full(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full {
                bytes: (!bytes.is_empty()).then_some(bytes),
            },
        }
    }

    pub(crate) fn guarded(guard: Guarded<B>) -> Self {
        Self {
            kind: Kind::Guarded { guard },
        }
    }
}

impl<B> From<Bytes> for ResponseBody<B> {
    fn from(b: Bytes) -> Self {
        Self::full(b)
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

/// A committed stream went quiet for longer than the idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamIdle(pub Duration);

impl fmt::Display for StreamIdle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the provider's stream stalled for {:?}", self.0)
    }
}

impl std::error::Error for StreamIdle {}

impl<B> HttpBody for ResponseBody<B>
where
    B: HttpBody<Data = Bytes>,
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
            KindProj::Full { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            KindProj::Guarded { guard } => guard.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { bytes } => bytes.is_none(),
            Kind::Guarded { guard } => {
                guard.held.is_empty()
                    && guard.error.is_none()
                    && (guard.ended || guard.body.as_ref().is_none_or(|b| b.is_end_stream()))
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::Guarded { .. } => SizeHint::default(),
        }
    }
}

impl<B> Guarded<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(f) = self.held.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        if let Some(e) = self.error.take() {
            self.ended = true;
            self.body = None;
            return Poll::Ready(Some(Err(e)));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        match body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some((d, sleep)) = &mut self.idle {
                    sleep.as_mut().reset(Instant::now() + *d);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                // Committed and then failed: the client gets an error event in the
                // provider's format, then the error itself, never a clean end.
                let e: BoxError = e.into();
                Poll::Ready(Some(Ok(self.fail(e))))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some((d, sleep)) = &mut self.idle {
                    ready!(sleep.as_mut().poll(cx));
                    let d = *d;
                    return Poll::Ready(Some(Ok(self.fail(Box::new(StreamIdle(d))))));
                }
                Poll::Pending
            }
        }
    }

    fn fail(&mut self, e: BoxError) -> Frame<Bytes> {
        tracing::warn!(target: "tower_ai_fallback", error = %e, "stream failed after it was committed");
        self.body = None;
        let frame = Frame::data(self.format.event(&e.to_string()));
        self.error = Some(e);
        frame
    }
}

use std::future::Future as _;

/// The SSE error event a stream that failed after it was committed ends with, in the
/// format its client expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorFormat {
    /// `data: {"error": {...}}` (OpenAI and OpenAI-compatible, Gemini).
    OpenAi,
    /// `event: error` + `data: {"type":"error","error":{...}}` (Anthropic).
    Anthropic,
}

impl ErrorFormat {
    pub(crate) fn event(self, message: &str) -> Bytes {
        let msg = serde_json::Value::from(message);
        let s = match self {
            Self::OpenAi => {
                format!("data: {{\"error\":{{\"type\":\"upstream_error\",\"message\":{msg}}}}}\n\n")
            }
            Self::Anthropic => format!(
                "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"api_error\",\"message\":{msg}}}}}\n\n"
            ),
        };
        Bytes::from(s)
    }
}

/// What one event of a stream means for committing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// Start-up with no content: may be held back.
    Preamble,
    /// Content: the stream is committed from here.
    Content,
    /// The provider reports an error in the stream.
    Error,
    /// The stream's own end (`[DONE]`, `message_stop`, `response.completed`).
    End,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    error: Option<IgnoredAny>,
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    function_call: Option<IgnoredAny>,
}

/// Classifies one event, for any provider's stream format: OpenAI chat chunks, the
/// Responses API's typed events, Anthropic's messages events, Gemini's chunks.
pub(crate) fn classify(e: &SseEvent<'_>) -> EventKind {
    if e.is_done() {
        return EventKind::End;
    }
    match e.event {
        "error" | "response.failed" | "response.error" => return EventKind::Error,
        "message_start"
        | "ping"
        | "content_block_start"
        | "response.created"
        | "response.in_progress"
        | "response.output_item.added"
        | "response.content_part.added" => return EventKind::Preamble,
        "message_stop" | "response.completed" => return EventKind::End,
        "message" => {}
        _ => return EventKind::Content,
    }
    let Ok(chunk) = serde_json::from_slice::<Chunk>(e.data) else {
        return EventKind::Content;
    };
    if chunk.error.is_some() || chunk.kind.as_deref() == Some("error") {
        return EventKind::Error;
    }
    match chunk.choices {
        // A usage-only chunk, or an empty start.
        Some(choices) if choices.is_empty() => EventKind::Preamble,
        Some(choices) => {
            let content = choices.iter().any(|c| {
                c.finish_reason.is_some()
                    || c.delta.as_ref().is_some_and(|d| {
                        d.content.as_deref().is_some_and(|s| !s.is_empty())
                            || d.refusal.as_deref().is_some_and(|s| !s.is_empty())
                            || d.reasoning_content
                                .as_deref()
                                .is_some_and(|s| !s.is_empty())
                            || d.reasoning.as_deref().is_some_and(|s| !s.is_empty())
                            || d.tool_calls.is_some()
                            || d.function_call.is_some()
                    })
            });
            if content {
                EventKind::Content
            } else {
                EventKind::Preamble
            }
        }
        None => EventKind::Content,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower_ai_core::SseParser;

    fn kinds(stream: &str) -> Vec<EventKind> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(stream.as_bytes(), |e| out.push(classify(&e)));
        out
    }

    #[test]
    fn openai_chat_stream() {
        use EventKind::*;
        let s = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n",
            "data: {\"error\":{\"message\":\"overloaded\"}}\n\n",
            "data: [DONE]\n\n",
        );
        assert_eq!(
            kinds(s),
            vec![Preamble, Content, Content, Preamble, Error, End]
        );
    }

    #[test]
    fn anthropic_and_responses_streams() {
        use EventKind::*;
        let s = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\"}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            "event: content_block_start\ndata: {}\n\n",
            "event: content_block_delta\ndata: {}\n\n",
            "event: error\ndata: {\"type\":\"error\"}\n\n",
            "event: message_stop\ndata: {}\n\n",
            "event: response.created\ndata: {}\n\n",
            "event: response.output_text.delta\ndata: {}\n\n",
            "event: response.completed\ndata: {}\n\n",
        );
        assert_eq!(
            kinds(s),
            vec![
                Preamble, Preamble, Preamble, Content, Error, End, Preamble, Content, End
            ]
        );
        // Gemini's chunks and anything unknown count as content.
        assert_eq!(
            kinds("data: {\"candidates\":[]}\n\ndata: nope\n\n"),
            vec![Content, Content]
        );
    }

    /// A body fed from a channel, to stall on demand.
    struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

    impl HttpBody for ChannelBody {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    fn guarded(
        rx: tokio::sync::mpsc::Receiver<Bytes>,
        idle: Duration,
    ) -> ResponseBody<ChannelBody> {
        ResponseBody::guarded(Guarded {
            held: VecDeque::from([Frame::data(Bytes::from_static(b"data: 0\n\n"))]),
            body: Some(Box::pin(ChannelBody(rx))),
            idle: Some((idle, Box::pin(tokio::time::sleep(idle)))),
            format: ErrorFormat::Anthropic,
            error: None,
            ended: false,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_after_commit_ends_in_an_error_event_and_an_error() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(Bytes::from_static(b"data: 1\n\n")).await.unwrap();
        let d = Duration::from_secs(5);
        let mut body = guarded(rx, d);
        let f = body.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "data: 0\n\n", "held frames first");
        let f = body.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "data: 1\n\n");
        let start = Instant::now();
        let f = body.frame().await.unwrap().unwrap();
        assert_eq!(start.elapsed(), d);
        let ev = f.into_data().unwrap();
        assert!(ev.starts_with(b"event: error\n"), "{ev:?}");
        let e = body.frame().await.unwrap().unwrap_err();
        assert!(e.is::<StreamIdle>());
        assert!(body.frame().await.is_none());
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn frames_keep_a_stream_alive() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let d = Duration::from_secs(5);
        let mut body = guarded(rx, d);
        body.frame().await.unwrap().unwrap();
        for i in 0..4 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            tx.send(Bytes::from(format!("data: {i}\n\n")))
                .await
                .unwrap();
            let f = body.frame().await.unwrap().unwrap();
            assert_eq!(f.into_data().unwrap(), format!("data: {i}\n\n"));
        }
        drop(tx);
        assert!(body.frame().await.is_none(), "a clean end stays clean");
    }
}
