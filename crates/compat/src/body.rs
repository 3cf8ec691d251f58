use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_ai_core::{BoxError, ResponseUsage, SseParser, StreamEnd, WireFormat};

use crate::plan::Translation;
use crate::stream::StreamTranslator;
use crate::{Dialect, anthropic as a, gemini as g, openai as o, response};

/// The largest whole (non-streamed) answer translated: 16 MiB.
const MAX_JSON: usize = 16 * 1024 * 1024;

/// A stream that ended without its terminal event: the translated stream is not
/// closed as if it were complete.
#[derive(Debug)]
pub struct TruncatedStream;

impl std::fmt::Display for TruncatedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the provider's stream ended before its last event")
    }
}

impl std::error::Error for TruncatedStream {}

/// A provider's answer that could not be translated.
#[derive(Debug)]
pub struct UntranslatableAnswer(pub(crate) &'static str);

impl std::fmt::Display for UntranslatableAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the provider's answer could not be translated: {}",
            self.0
        )
    }
}

impl std::error::Error for UntranslatableAnswer {}

/// What a whole JSON body becomes.
#[derive(Debug)]
pub(crate) enum JsonKind {
    Answer {
        translation: Translation,
        model: String,
        created: u64,
    },
    Error {
        from: WireFormat,
        to: Dialect,
        status: StatusCode,
    },
}

pub(crate) enum State {
    Pass,
    Own(Option<Bytes>),
    Stream {
        parser: SseParser,
        translator: Box<StreamTranslator>,
        out: BytesMut,
        ended: bool,
        truncated: bool,
    },
    Json {
        buf: BytesMut,
        kind: JsonKind,
        done: bool,
    },
}

pin_project! {
    /// Response body of [`Compat`](crate::Compat): the provider's answer as it came when
    /// it speaks the client's dialect, else translated, a stream event by event as it
    /// arrives. See the [crate docs](crate).
    ///
    /// A translated answer's native usage is read as it passes (a stream's events are
    /// parsed once, for translation and usage alike) and settled exactly once: at the
    /// end of the provider's body, on its error, or when the body is dropped first.
    pub struct ResponseBody<B> {
        // `None` only while dropping: the inner body goes first.
        #[pin]
        inner: Option<B>,
        state: State,
        usage: Option<Box<ResponseUsage>>,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if let Some(usage) = this.usage.take() {
                this.inner.set(None);
                usage.finish(StreamEnd::Cancelled);
            }
        }
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn pass(inner: B) -> Self {
        Self {
            inner: Some(inner),
            state: State::Pass,
            usage: None,
        }
    }

    pub(crate) fn own(bytes: Bytes) -> Self {
        Self {
            inner: None,
            state: State::Own(Some(bytes)),
            usage: None,
        }
    }

    pub(crate) fn translated(inner: B, usage: Option<Box<ResponseUsage>>, state: State) -> Self {
        Self {
            inner: Some(inner),
            state,
            usage,
        }
    }
}

fn settle(usage: &mut Option<Box<ResponseUsage>>, end: StreamEnd) {
    if let Some(u) = usage.take() {
        u.finish(end);
    }
}

impl<B> http_body::Body for ResponseBody<B>
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
        let this = self.project();
        let state = this.state;
        let usage = this.usage;
        if let State::Own(b) = state {
            return Poll::Ready(b.take().map(|b| Ok(Frame::data(b))));
        }
        let Some(mut inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match state {
                State::Own(_) => unreachable!("answered above"),
                State::Pass => {
                    return inner.as_mut().poll_frame(cx).map_err(Into::into);
                }
                State::Stream {
                    parser,
                    translator,
                    out,
                    ended,
                    truncated,
                } => {
                    if *ended {
                        if std::mem::take(truncated) {
                            return Poll::Ready(Some(Err(Box::new(TruncatedStream))));
                        }
                        return Poll::Ready(None);
                    }
                    match ready!(inner.as_mut().poll_frame(cx)) {
                        Some(Ok(frame)) => {
                            if let Some(data) = frame.data_ref() {
                                parser.feed(data, |e| {
                                    if let Some(u) = usage.as_mut() {
                                        u.on_event(&e);
                                    }
                                    translator.on_event(e.data, out);
                                });
                            }
                            if !out.is_empty() {
                                return Poll::Ready(Some(Ok(Frame::data(out.split().freeze()))));
                            }
                        }
                        Some(Err(e)) => {
                            *ended = true;
                            settle(usage, StreamEnd::Failed);
                            return Poll::Ready(Some(Err(e.into())));
                        }
                        None => {
                            *ended = true;
                            settle(usage, StreamEnd::Complete);
                            translator.on_end(out);
                            *truncated = !translator.is_complete();
                            if !out.is_empty() {
                                return Poll::Ready(Some(Ok(Frame::data(out.split().freeze()))));
                            }
                        }
                    }
                }
                State::Json { buf, kind, done } => {
                    if *done {
                        return Poll::Ready(None);
                    }
                    match ready!(inner.as_mut().poll_frame(cx)) {
                        Some(Ok(frame)) => {
                            if let Some(data) = frame.data_ref() {
                                if buf.len() + data.len() > MAX_JSON {
                                    *done = true;
                                    settle(usage, StreamEnd::Failed);
                                    return Poll::Ready(Some(Err(Box::new(UntranslatableAnswer(
                                        "it is too large",
                                    )))));
                                }
                                buf.extend_from_slice(data);
                                if let Some(u) = usage.as_mut() {
                                    u.on_data(data);
                                }
                            }
                        }
                        Some(Err(e)) => {
                            *done = true;
                            settle(usage, StreamEnd::Failed);
                            return Poll::Ready(Some(Err(e.into())));
                        }
                        None => {
                            *done = true;
                            settle(usage, StreamEnd::Complete);
                            return Poll::Ready(Some(
                                translate_json(kind, buf)
                                    .map(Frame::data)
                                    .map_err(|e| Box::new(e) as BoxError),
                            ));
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Pass => self.inner.as_ref().is_none_or(|b| b.is_end_stream()),
            State::Own(b) => b.is_none(),
            State::Stream {
                ended,
                truncated,
                out,
                ..
            } => *ended && !*truncated && out.is_empty(),
            State::Json { done, .. } => *done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Pass => self
                .inner
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint()),
            State::Own(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            _ => SizeHint::default(),
        }
    }
}

fn translate_json(kind: &JsonKind, body: &[u8]) -> Result<Bytes, UntranslatableAnswer> {
    fn to_bytes<T: serde::Serialize>(v: &T) -> Bytes {
        Bytes::from(serde_json::to_vec(v).expect("a wire type serialises"))
    }
    let bad = |_| UntranslatableAnswer("it is not the provider's documented format");
    match kind {
        JsonKind::Error { from, to, status } => {
            Ok(crate::error::translate_error(*from, *to, *status, body))
        }
        JsonKind::Answer {
            translation,
            model,
            created,
        } => Ok(match translation {
            Translation::Pass => Bytes::copy_from_slice(body),
            Translation::AnthropicToOpenAi => {
                let m: a::MessageResponse = serde_json::from_slice(body).map_err(bad)?;
                to_bytes(&response::anthropic_to_chat(m, *created))
            }
            Translation::GeminiToOpenAi => {
                let r: g::GenerateContentResponse = serde_json::from_slice(body).map_err(bad)?;
                to_bytes(&response::gemini_to_chat(r, model, *created))
            }
            Translation::OpenAiToAnthropic => {
                let c: o::ChatCompletion = serde_json::from_slice(body).map_err(bad)?;
                to_bytes(&response::chat_to_anthropic(c))
            }
            Translation::GeminiToAnthropic => {
                let r: g::GenerateContentResponse = serde_json::from_slice(body).map_err(bad)?;
                to_bytes(&response::chat_to_anthropic(response::gemini_to_chat(
                    r, model, *created,
                )))
            }
            Translation::GeminiEmbeddings => {
                let r: g::BatchEmbedResponse = serde_json::from_slice(body).map_err(bad)?;
                to_bytes(&response::gemini_to_embeddings(r, model))
            }
        }),
    }
}
