//! [`ResponseUsage`]: the usage of one response, read as its body passes.

use bytes::Bytes;

use super::estimate::{by_length, estimate_tokens};
use super::{StreamUsage, Usage, prompt_text, usage_from_json};
use crate::{Operation, SseEvent, SseParser, StreamEnd, UsageSlot, WireFormat};

/// JSON bodies larger than this are passed on but not parsed for usage.
const MAX_JSON: usize = 16 * 1024 * 1024;
/// A JSON answer without usage is parsed for its text (into a `serde_json::Value`) only
/// up to this size (1 MiB); a larger one is estimated from its length.
const MAX_ANSWER_PARSE: usize = 1024 * 1024;

/// Where a response's usage comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// Reported by the provider.
    Reported,
    /// Counted by the gateway with a tokenizer (the provider reported nothing, or the
    /// stream was cut before it did), in whole or in part.
    Estimated,
    /// Known without asking the provider (a cache hit carries its stored usage).
    Known,
    /// Not known.
    Unknown,
}

impl UsageSource {
    /// `reported`, `estimated`, `known` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reported => "reported",
            Self::Estimated => "estimated",
            Self::Known => "known",
            Self::Unknown => "unknown",
        }
    }
}

/// The usage of a finished response, as the first layer that read it left it in the
/// [`UsageSlot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinalUsage {
    /// The tokens, when known.
    pub usage: Option<Usage>,
    /// Where they come from.
    pub source: UsageSource,
    /// For a stream: whether its protocol's terminal event arrived (a stream that ends
    /// cleanly without it was cut short). Always true for other bodies.
    pub terminal: bool,
}

impl FinalUsage {
    /// The usage of a whole JSON answer (`ok`: a 2xx) to a request with
    /// `request_body`: reported where the answer has it, else estimated from its text,
    /// else unknown. What [`ResponseUsage`] settles for a JSON body that arrived whole,
    /// for a layer that holds the body itself (the cache, capturing it).
    pub fn of_json(
        format: WireFormat,
        operation: Operation,
        request_body: &[u8],
        ok: bool,
        body: &[u8],
    ) -> Self {
        let estimate_input = || estimate_tokens(&prompt_text(format, operation, request_body));
        let (usage, source) = match usage_from_json(format, operation, body) {
            Some(u) => (Some(u), UsageSource::Reported),
            // A big answer without usage: not worth a JSON tree of it, about one token
            // per four bytes of the whole body.
            None if ok && body.len() > MAX_ANSWER_PARSE => (
                Some(Usage {
                    input_tokens: estimate_input(),
                    output_tokens: by_length(body.len()),
                    ..Usage::default()
                }),
                UsageSource::Estimated,
            ),
            None if ok => match answer_text(body) {
                // An answer without usage: count it ourselves.
                Some(text) => (
                    Some(Usage {
                        input_tokens: estimate_input(),
                        output_tokens: estimate_tokens(&text),
                        ..Usage::default()
                    }),
                    UsageSource::Estimated,
                ),
                None => (None, UsageSource::Unknown),
            },
            None => (None, UsageSource::Unknown),
        };
        Self {
            usage,
            source,
            terminal: true,
        }
    }
}

enum Mode {
    Sse {
        parser: SseParser,
        usage: Box<StreamUsage>,
    },
    Json {
        chunks: Vec<Bytes>,
        len: usize,
    },
    Opaque,
}

/// Reads the usage of one response as its frames pass (feed it from an
/// [`Observer`](crate::Observer)), and at the end settles it: reported where the
/// provider reported it, estimated with the tokenizer where it did not (or the stream
/// was cut before it did), and puts the result in the [`UsageSlot`] for every other
/// layer that wants it, so no response is parsed twice.
pub struct ResponseUsage {
    format: WireFormat,
    operation: Operation,
    request_body: Bytes,
    ok: bool,
    mode: Mode,
    slot: UsageSlot,
}

impl std::fmt::Debug for ResponseUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseUsage")
            .field("format", &self.format)
            .field("operation", &self.operation)
            .finish_non_exhaustive()
    }
}

impl ResponseUsage {
    /// Reads a response of `status` and `content_type` to a request with `request_body`.
    pub fn new(
        format: WireFormat,
        operation: Operation,
        request_body: Bytes,
        status: u16,
        content_type: &str,
        slot: UsageSlot,
    ) -> Self {
        let mode = if content_type.starts_with("text/event-stream") {
            Mode::Sse {
                parser: SseParser::new(),
                usage: Box::new(StreamUsage::new(format, operation)),
            }
        } else if content_type.starts_with("application/json") || content_type.contains("+json") {
            Mode::Json {
                chunks: Vec::new(),
                len: 0,
            }
        } else {
            Mode::Opaque
        };
        Self {
            format,
            operation,
            request_body,
            ok: (200..300).contains(&status),
            mode,
            slot,
        }
    }

    /// Whether the response is a server-sent-event stream.
    pub fn is_stream(&self) -> bool {
        matches!(self.mode, Mode::Sse { .. })
    }

    /// One data frame of the body.
    pub fn on_data(&mut self, data: &Bytes) {
        match &mut self.mode {
            Mode::Sse { parser, usage } => parser.feed(data, |e| usage.on_event(&e)),
            Mode::Json { chunks, len } => {
                *len += data.len();
                if *len <= MAX_JSON {
                    // A refcount, not a copy.
                    chunks.push(data.clone());
                } else {
                    chunks.clear();
                }
            }
            Mode::Opaque => {}
        }
    }

    /// One event of a stream the caller parses itself (a layer that reads every event
    /// anyway, to translate it), instead of [`on_data`](Self::on_data): the stream is
    /// parsed once. Ignored for a body that is not a stream.
    pub fn on_event(&mut self, event: &SseEvent<'_>) {
        if let Mode::Sse { usage, .. } = &mut self.mode {
            usage.on_event(event);
        }
    }

    /// For a stream: whether its protocol's terminal event arrived, and the usage it
    /// reported so far (no estimate made); `None` for any other body.
    pub fn stream_report(&self) -> Option<(bool, Option<Usage>)> {
        match &self.mode {
            Mode::Sse { usage, .. } => Some((usage.completed(), usage.usage())),
            _ => None,
        }
    }

    /// Settles the usage once the body ended as `end`, and fills the slot.
    pub fn finish(self, end: StreamEnd) -> FinalUsage {
        self.fill(end)
    }

    /// Settles the usage of the body as far as it has been read, as if it ended there
    /// as `end`, and fills the slot (once: a later fill is ignored). Reading may go on:
    /// a layer that keeps reading for itself after the layers above are done with the
    /// response (the cache, finishing an entry for other clients) fills it when those
    /// layers end, not when it does.
    pub fn fill(&self, end: StreamEnd) -> FinalUsage {
        let result = self.settle(end);
        self.slot.set(result);
        result
    }

    fn settle(&self, end: StreamEnd) -> FinalUsage {
        let estimate_input = || {
            estimate_tokens(&prompt_text(
                self.format,
                self.operation,
                &self.request_body,
            ))
        };
        match &self.mode {
            Mode::Sse { usage, .. } => {
                let terminal = usage.completed();
                let (u, source) = match usage.usage() {
                    Some(u) if terminal => (Some(u), UsageSource::Reported),
                    Some(mut u) => {
                        // Cut before the final figures: count what was streamed.
                        let streamed = estimate_tokens(usage.output_text());
                        if streamed > u.output_tokens {
                            u.output_tokens = streamed;
                            (Some(u), UsageSource::Estimated)
                        } else {
                            (Some(u), UsageSource::Reported)
                        }
                    }
                    None if self.ok => {
                        let u = Usage {
                            input_tokens: estimate_input(),
                            output_tokens: estimate_tokens(usage.output_text()),
                            ..Usage::default()
                        };
                        (Some(u), UsageSource::Estimated)
                    }
                    None => (None, UsageSource::Unknown),
                };
                FinalUsage {
                    usage: u,
                    source,
                    terminal,
                }
            }
            Mode::Json { chunks, len } if *len <= MAX_JSON && end == StreamEnd::Complete => {
                let body = concat(chunks, *len);
                FinalUsage::of_json(
                    self.format,
                    self.operation,
                    &self.request_body,
                    self.ok,
                    &body,
                )
            }
            _ => FinalUsage {
                usage: None,
                source: UsageSource::Unknown,
                terminal: true,
            },
        }
    }
}

/// The generated text of a JSON answer in any of the wire formats (OpenAI chat and
/// completions, Responses, Anthropic, Gemini, Workers AI), when it has one.
fn answer_text(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut out = String::new();
    let mut push = |t: Option<&str>| {
        if let Some(t) = t {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(t);
        }
    };
    let items = |v: &serde_json::Value| v.as_array().cloned().unwrap_or_default();
    for c in items(&v["choices"]) {
        push(c["message"]["content"].as_str());
        push(c["text"].as_str());
    }
    for o in items(&v["output"]) {
        for c in items(&o["content"]) {
            push(c["text"].as_str());
        }
    }
    if v["type"] == "message" {
        for c in items(&v["content"]) {
            push(c["text"].as_str());
        }
    }
    for c in items(&v["candidates"]) {
        for p in items(&c["content"]["parts"]) {
            push(p["text"].as_str());
        }
    }
    push(v["result"]["response"].as_str());
    push(v["response"].as_str());
    (!out.is_empty()).then_some(out)
}

fn concat(chunks: &[Bytes], len: usize) -> Bytes {
    match chunks {
        [] => Bytes::new(),
        // A refcount, not a copy.
        [one] => one.clone(),
        _ => {
            let mut v = Vec::with_capacity(len);
            for c in chunks {
                v.extend_from_slice(c);
            }
            Bytes::from(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_text_of_each_format() {
        let cases = [
            (r#"{"choices":[{"message":{"content":"a b"}}]}"#, "a b"),
            (r#"{"choices":[{"text":"legacy"}]}"#, "legacy"),
            (
                r#"{"output":[{"content":[{"type":"output_text","text":"resp"}]}]}"#,
                "resp",
            ),
            (
                r#"{"type":"message","content":[{"type":"text","text":"claude"}]}"#,
                "claude",
            ),
            (
                r#"{"candidates":[{"content":{"parts":[{"text":"gem"}]}}]}"#,
                "gem",
            ),
            (r#"{"result":{"response":"workers"}}"#, "workers"),
        ];
        for (body, want) in cases {
            assert_eq!(
                answer_text(body.as_bytes()).as_deref(),
                Some(want),
                "{body}"
            );
        }
        assert_eq!(answer_text(b"{}"), None);
        assert_eq!(answer_text(b"nope"), None);
    }

    #[test]
    fn settles_and_fills_the_slot() {
        let slot = UsageSlot::new();
        let mut r = ResponseUsage::new(
            WireFormat::OpenAi,
            Operation::ChatCompletions,
            Bytes::from_static(br#"{"messages":[{"role":"user","content":"hi"}]}"#),
            200,
            "application/json",
            slot.clone(),
        );
        r.on_data(&Bytes::from_static(br#"{"usage":{"prompt_tokens":3,"#));
        r.on_data(&Bytes::from_static(br#""completion_tokens":4}}"#));
        let f = r.finish(StreamEnd::Complete);
        assert_eq!(f.source, UsageSource::Reported);
        assert_eq!(f.usage.unwrap().output_tokens, 4);
        assert_eq!(slot.get(), Some(f));
    }

    #[test]
    fn a_big_answer_without_usage_is_estimated_from_its_length() {
        let text = "word ".repeat(MAX_ANSWER_PARSE / 5 + 10);
        let body = serde_json::json!({"choices":[{"message":{"content":text}}]}).to_string();
        assert!(body.len() > MAX_ANSWER_PARSE);
        let mut r = ResponseUsage::new(
            WireFormat::OpenAi,
            Operation::ChatCompletions,
            Bytes::from_static(br#"{"messages":[{"role":"user","content":"hi"}]}"#),
            200,
            "application/json",
            UsageSlot::new(),
        );
        // Fed in pieces, as frames come.
        let body = Bytes::from(body);
        for piece in body.chunks(64 * 1024) {
            r.on_data(&body.slice_ref(piece));
        }
        let f = r.finish(StreamEnd::Complete);
        assert_eq!(f.source, UsageSource::Estimated);
        // bytes/4 of the whole body, not the tokens of the text (one per `word `).
        assert_eq!(
            f.usage.unwrap().output_tokens,
            body.len().div_ceil(4) as u64
        );

        // Under the bound the text is still tokenized.
        let mut r = ResponseUsage::new(
            WireFormat::OpenAi,
            Operation::ChatCompletions,
            Bytes::from_static(br#"{"messages":[{"role":"user","content":"hi"}]}"#),
            200,
            "application/json",
            UsageSlot::new(),
        );
        r.on_data(&Bytes::from_static(
            br#"{"choices":[{"message":{"content":"one two three"}}]}"#,
        ));
        let u = r.finish(StreamEnd::Complete).usage.unwrap();
        assert!((3..=4).contains(&u.output_tokens), "{u:?}");
    }

    #[test]
    fn a_cut_stream_without_usage_is_estimated_and_not_terminal() {
        let slot = UsageSlot::new();
        let mut r = ResponseUsage::new(
            WireFormat::OpenAi,
            Operation::ChatCompletions,
            Bytes::from_static(br#"{"messages":[{"role":"user","content":"hello there friend"}]}"#),
            200,
            "text/event-stream",
            slot,
        );
        assert!(r.is_stream());
        r.on_data(&Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"one two three\"}}]}\n\n",
        ));
        let f = r.finish(StreamEnd::Cancelled);
        assert_eq!(f.source, UsageSource::Estimated);
        assert!(!f.terminal);
        let u = f.usage.unwrap();
        assert!(u.output_tokens >= 3 && u.input_tokens >= 3, "{u:?}");
    }
}
