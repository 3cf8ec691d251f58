//! Stream translation, one event at a time: each translator is a small state machine
//! fed one parsed server-sent event (its `data`) as it arrives, emitting the translated
//! events at once. Nothing is held back beyond the event being translated.

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde_json::Value;

use crate::response::{
    anthropic_finish_reason, anthropic_usage, gemini_call_id, gemini_finish_reason, gemini_usage,
    openai_stop_reason, openai_usage,
};
use crate::{anthropic as a, gemini as g, openai as o};

/// One event of an OpenAI chat completions stream.
#[derive(Clone, Debug)]
pub enum OpenAiEvent {
    /// A `chat.completion.chunk`.
    Chunk(o::Chunk),
    /// `data: [DONE]`.
    Done,
    /// An error object sent mid-stream (`{"error":{...}}`).
    Error(Value),
}

impl OpenAiEvent {
    /// Parses the `data` of one event of an OpenAI stream; `None` for anything else.
    pub fn parse(data: &[u8]) -> Option<Self> {
        if data == b"[DONE]" {
            return Some(Self::Done);
        }
        if let Ok(chunk) = serde_json::from_slice::<o::Chunk>(data) {
            return Some(Self::Chunk(chunk));
        }
        let v: Value = serde_json::from_slice(data).ok()?;
        v.get("error").is_some().then_some(Self::Error(v))
    }

    /// Writes the event as SSE: `data: {json}\n\n`.
    pub fn write(&self, out: &mut BytesMut) {
        match self {
            Self::Chunk(c) => write_data(out, None, c),
            Self::Done => out.put_slice(b"data: [DONE]\n\n"),
            Self::Error(v) => write_data(out, None, v),
        }
    }
}

/// Writes the event of an Anthropic stream as SSE: `event: {type}\ndata: {json}\n\n`.
pub fn write_anthropic(event: &a::StreamEvent, out: &mut BytesMut) {
    let name = match event {
        a::StreamEvent::MessageStart { .. } => "message_start",
        a::StreamEvent::ContentBlockStart { .. } => "content_block_start",
        a::StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
        a::StreamEvent::ContentBlockStop { .. } => "content_block_stop",
        a::StreamEvent::MessageDelta { .. } => "message_delta",
        a::StreamEvent::MessageStop => "message_stop",
        a::StreamEvent::Ping => "ping",
        a::StreamEvent::Error { .. } => "error",
    };
    write_data(out, Some(name), event);
}

fn write_data<T: Serialize>(out: &mut BytesMut, event: Option<&str>, value: &T) {
    if let Some(name) = event {
        out.put_slice(b"event: ");
        out.put_slice(name.as_bytes());
        out.put_slice(b"\n");
    }
    out.put_slice(b"data: ");
    serde_json::to_writer((&mut *out).writer(), value).expect("a wire type serialises");
    out.put_slice(b"\n\n");
}

fn chunk(id: &str, model: &str, created: u64, delta: o::Delta, finish: Option<&str>) -> o::Chunk {
    o::Chunk {
        id: id.to_owned(),
        object: "chat.completion.chunk".to_owned(),
        created,
        model: model.to_owned(),
        choices: vec![o::ChunkChoice {
            index: 0,
            delta,
            finish_reason: finish.map(str::to_owned),
        }],
        usage: None,
    }
}

fn usage_chunk(id: &str, model: &str, created: u64, usage: o::ChatUsage) -> o::Chunk {
    o::Chunk {
        id: id.to_owned(),
        object: "chat.completion.chunk".to_owned(),
        created,
        model: model.to_owned(),
        choices: Vec::new(),
        usage: Some(usage),
    }
}

// ---------------------------------------------------------------------------------------

/// Anthropic messages stream -> OpenAI chat completion chunks.
///
/// `message_start` gives the role chunk; text deltas become `content` deltas; a
/// `tool_use` block becomes a tool call (id and name on its first delta) whose
/// `input_json_delta` pieces are its `arguments` deltas; `message_delta` gives the
/// finish reason; `message_stop` the usage chunk (when asked for) and `[DONE]`.
/// Thinking is left out.
#[derive(Debug)]
pub struct AnthropicToOpenAi {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    /// Anthropic block index -> OpenAI tool call index.
    calls: Vec<(u32, u32)>,
    usage: a::MessageUsage,
    done: bool,
}

impl AnthropicToOpenAi {
    /// A translator for a stream the client asked for with `model`, created at `created`.
    pub fn new(model: &str, created: u64, include_usage: bool) -> Self {
        Self {
            id: String::new(),
            model: model.to_owned(),
            created,
            include_usage,
            calls: Vec::new(),
            usage: a::MessageUsage::default(),
            done: false,
        }
    }

    /// Whether `message_stop` arrived.
    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// Translates one event's `data`.
    pub fn on_event(&mut self, data: &[u8], emit: &mut impl FnMut(OpenAiEvent)) {
        let Ok(event) = serde_json::from_slice::<a::StreamEvent>(data) else {
            return;
        };
        let mk = |this: &Self, delta, finish| {
            OpenAiEvent::Chunk(chunk(&this.id, &this.model, this.created, delta, finish))
        };
        match event {
            a::StreamEvent::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.usage = message.usage;
                emit(mk(
                    self,
                    o::Delta {
                        role: Some("assistant".to_owned()),
                        content: Some(String::new()),
                        tool_calls: None,
                    },
                    None,
                ));
            }
            a::StreamEvent::ContentBlockStart {
                index,
                content_block: a::Block::ToolUse { id, name, .. },
            } => {
                let call = self.calls.len() as u32;
                self.calls.push((index, call));
                emit(mk(
                    self,
                    o::Delta {
                        tool_calls: Some(vec![o::ToolCallDelta {
                            index: call,
                            id: Some(id),
                            kind: Some("function".to_owned()),
                            function: Some(o::FunctionDelta {
                                name: Some(name),
                                arguments: Some(String::new()),
                            }),
                        }]),
                        ..o::Delta::default()
                    },
                    None,
                ));
            }
            a::StreamEvent::ContentBlockStart {
                content_block: a::Block::Text { text },
                ..
            } if !text.is_empty() => emit(mk(
                self,
                o::Delta {
                    content: Some(text),
                    ..o::Delta::default()
                },
                None,
            )),
            a::StreamEvent::ContentBlockDelta { index, delta } => match delta {
                a::BlockDelta::TextDelta { text } => emit(mk(
                    self,
                    o::Delta {
                        content: Some(text),
                        ..o::Delta::default()
                    },
                    None,
                )),
                a::BlockDelta::InputJsonDelta { partial_json } => {
                    if let Some(&(_, call)) = self.calls.iter().find(|(b, _)| *b == index) {
                        emit(mk(
                            self,
                            o::Delta {
                                tool_calls: Some(vec![o::ToolCallDelta {
                                    index: call,
                                    function: Some(o::FunctionDelta {
                                        name: None,
                                        arguments: Some(partial_json),
                                    }),
                                    ..o::ToolCallDelta::default()
                                }]),
                                ..o::Delta::default()
                            },
                            None,
                        ));
                    }
                }
                _ => {}
            },
            a::StreamEvent::MessageDelta { delta, usage } => {
                self.usage.output_tokens = usage.output_tokens;
                if usage.input_tokens > 0 {
                    self.usage.input_tokens = usage.input_tokens;
                }
                if usage.cache_read_input_tokens.is_some() {
                    self.usage.cache_read_input_tokens = usage.cache_read_input_tokens;
                }
                if usage.cache_creation_input_tokens.is_some() {
                    self.usage.cache_creation_input_tokens = usage.cache_creation_input_tokens;
                }
                let finish = anthropic_finish_reason(delta.stop_reason.as_deref().unwrap_or(""));
                emit(mk(self, o::Delta::default(), Some(finish)));
            }
            a::StreamEvent::MessageStop => {
                if self.include_usage {
                    emit(OpenAiEvent::Chunk(usage_chunk(
                        &self.id,
                        &self.model,
                        self.created,
                        anthropic_usage(&self.usage),
                    )));
                }
                self.done = true;
                emit(OpenAiEvent::Done);
            }
            a::StreamEvent::Error { error } => emit(OpenAiEvent::Error(serde_json::json!({
                "error": {"message": error.message, "type": error.kind, "param": null, "code": null}
            }))),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------

/// Gemini `streamGenerateContent?alt=sse` -> OpenAI chat completion chunks.
///
/// The first event gives the role chunk; text parts become `content` deltas (thoughts
/// are left out); each `functionCall` part is a whole tool call in one delta (Gemini
/// sends calls whole); the event with `finishReason` gives the finish chunk. At the end
/// of the stream come the usage chunk (when asked for) and `[DONE]`.
#[derive(Debug)]
pub struct GeminiToOpenAi {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    started: bool,
    calls: u32,
    usage: Option<g::UsageMetadata>,
    finished: bool,
    done: bool,
}

impl GeminiToOpenAi {
    /// A translator for a stream of `model`, created at `created`.
    pub fn new(model: &str, created: u64, include_usage: bool) -> Self {
        Self {
            id: format!("chatcmpl-{created}"),
            model: model.to_owned(),
            created,
            include_usage,
            started: false,
            calls: 0,
            usage: None,
            finished: false,
            done: false,
        }
    }

    /// Whether a finish reason arrived and the stream was closed with `[DONE]`.
    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// Translates one event's `data`.
    pub fn on_event(&mut self, data: &[u8], emit: &mut impl FnMut(OpenAiEvent)) {
        let Ok(resp) = serde_json::from_slice::<g::GenerateContentResponse>(data) else {
            return;
        };
        if let Some(u) = resp.usage_metadata {
            self.usage = Some(u);
        }
        if !self.started {
            self.started = true;
            if let Some(id) = resp.response_id {
                self.id = id;
            }
            if let Some(v) = resp.model_version {
                self.model = v;
            }
            emit(OpenAiEvent::Chunk(chunk(
                &self.id,
                &self.model,
                self.created,
                o::Delta {
                    role: Some("assistant".to_owned()),
                    content: Some(String::new()),
                    tool_calls: None,
                },
                None,
            )));
        }
        // The first candidate: a stream with `n > 1` is not translated further.
        let Some(c) = resp.candidates.into_iter().find(|c| c.index == 0) else {
            return;
        };
        for p in c.content.map(|c| c.parts).unwrap_or_default() {
            let delta = if let Some(call) = p.function_call {
                let index = self.calls;
                self.calls += 1;
                o::Delta {
                    tool_calls: Some(vec![o::ToolCallDelta {
                        index,
                        id: Some(gemini_call_id(&call, index as usize)),
                        kind: Some("function".to_owned()),
                        function: Some(o::FunctionDelta {
                            name: Some(call.name),
                            arguments: Some(call.args.to_string()),
                        }),
                    }]),
                    ..o::Delta::default()
                }
            } else if let Some(text) = p.text
                && p.thought != Some(true)
                && !text.is_empty()
            {
                o::Delta {
                    content: Some(text),
                    ..o::Delta::default()
                }
            } else {
                continue;
            };
            emit(OpenAiEvent::Chunk(chunk(
                &self.id,
                &self.model,
                self.created,
                delta,
                None,
            )));
        }
        if let Some(reason) = c.finish_reason.filter(|_| !self.finished) {
            self.finished = true;
            let finish = gemini_finish_reason(&reason, self.calls > 0);
            emit(OpenAiEvent::Chunk(chunk(
                &self.id,
                &self.model,
                self.created,
                o::Delta::default(),
                Some(finish),
            )));
        }
    }

    /// The upstream stream ended cleanly: closes the translated one if a finish reason
    /// arrived (else it was cut short and stays open: see
    /// [`is_complete`](Self::is_complete)).
    pub fn on_end(&mut self, emit: &mut impl FnMut(OpenAiEvent)) {
        if !self.finished || self.done {
            return;
        }
        if self.include_usage
            && let Some(u) = &self.usage
        {
            emit(OpenAiEvent::Chunk(usage_chunk(
                &self.id,
                &self.model,
                self.created,
                gemini_usage(u),
            )));
        }
        self.done = true;
        emit(OpenAiEvent::Done);
    }
}

// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(u32),
    Tool(u32),
}

/// OpenAI chat completion chunks -> Anthropic messages stream events.
///
/// The first chunk gives `message_start`; content deltas go into a text block, each new
/// tool call opens a `tool_use` block whose `arguments` deltas are `input_json_delta`s
/// (a block is stopped when the next one starts); `[DONE]` closes the open block and
/// sends `message_delta` (stop reason, usage) and `message_stop`. Only the first choice
/// is translated.
#[derive(Debug)]
pub struct OpenAiToAnthropic {
    model: String,
    started: bool,
    open: Option<Open>,
    next_block: u32,
    /// OpenAI tool call index -> Anthropic block index.
    calls: Vec<(u32, u32)>,
    stop: Option<&'static str>,
    usage: Option<o::ChatUsage>,
    done: bool,
}

impl OpenAiToAnthropic {
    /// A translator for a stream the client asked for with `model`.
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            started: false,
            open: None,
            next_block: 0,
            calls: Vec::new(),
            stop: None,
            usage: None,
            done: false,
        }
    }

    /// Whether `[DONE]` arrived and `message_stop` was sent.
    pub fn is_complete(&self) -> bool {
        self.done
    }

    fn start(&mut self, id: &str, model: &str, emit: &mut impl FnMut(a::StreamEvent)) {
        if self.started {
            return;
        }
        self.started = true;
        if !model.is_empty() {
            self.model = model.to_owned();
        }
        emit(a::StreamEvent::MessageStart {
            message: a::MessageResponse {
                id: id.to_owned(),
                kind: "message".to_owned(),
                role: "assistant".to_owned(),
                model: self.model.clone(),
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: a::MessageUsage::default(),
            },
        });
    }

    fn close(&mut self, emit: &mut impl FnMut(a::StreamEvent)) {
        if let Some(Open::Text(i) | Open::Tool(i)) = self.open.take() {
            emit(a::StreamEvent::ContentBlockStop { index: i });
        }
    }

    fn open(
        &mut self,
        kind: fn(u32) -> Open,
        block: a::Block,
        emit: &mut impl FnMut(a::StreamEvent),
    ) -> u32 {
        self.close(emit);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some(kind(index));
        emit(a::StreamEvent::ContentBlockStart {
            index,
            content_block: block,
        });
        index
    }

    /// Translates one OpenAI event.
    pub fn on_event(&mut self, event: OpenAiEvent, emit: &mut impl FnMut(a::StreamEvent)) {
        match event {
            OpenAiEvent::Chunk(c) => {
                self.start(&c.id, &c.model, emit);
                if let Some(u) = c.usage {
                    self.usage = Some(u);
                }
                let Some(choice) = c.choices.into_iter().find(|c| c.index == 0) else {
                    return;
                };
                if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                    let index = match self.open {
                        Some(Open::Text(i)) => i,
                        _ => self.open(
                            Open::Text,
                            a::Block::Text {
                                text: String::new(),
                            },
                            emit,
                        ),
                    };
                    emit(a::StreamEvent::ContentBlockDelta {
                        index,
                        delta: a::BlockDelta::TextDelta { text },
                    });
                }
                for tc in choice.delta.tool_calls.into_iter().flatten() {
                    let known = self.calls.iter().find(|(c, _)| *c == tc.index).map(|x| x.1);
                    let function = tc.function.unwrap_or_default();
                    let index = match (known, tc.id) {
                        (Some(i), None) => i,
                        (_, id) => {
                            let block = a::Block::ToolUse {
                                id: id.unwrap_or_else(|| format!("toolu_{}", tc.index)),
                                name: function.name.clone().unwrap_or_default(),
                                input: Value::Object(serde_json::Map::new()),
                            };
                            let i = self.open(Open::Tool, block, emit);
                            self.calls.retain(|(c, _)| *c != tc.index);
                            self.calls.push((tc.index, i));
                            i
                        }
                    };
                    if let Some(args) = function.arguments.filter(|a| !a.is_empty()) {
                        emit(a::StreamEvent::ContentBlockDelta {
                            index,
                            delta: a::BlockDelta::InputJsonDelta { partial_json: args },
                        });
                    }
                }
                if let Some(f) = choice.finish_reason {
                    self.stop = Some(openai_stop_reason(&f));
                }
            }
            OpenAiEvent::Done => {
                if self.done {
                    return;
                }
                self.start("msg_compat", "", emit);
                self.close(emit);
                let usage = self.usage.as_ref().map(openai_usage).unwrap_or_default();
                emit(a::StreamEvent::MessageDelta {
                    delta: a::MessageDeltaBody {
                        stop_reason: Some(self.stop.unwrap_or("end_turn").to_owned()),
                        stop_sequence: None,
                    },
                    usage,
                });
                emit(a::StreamEvent::MessageStop);
                self.done = true;
            }
            OpenAiEvent::Error(v) => {
                let message = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("the provider failed mid-stream")
                    .to_owned();
                emit(a::StreamEvent::Error {
                    error: a::ErrorDetail {
                        kind: "api_error".to_owned(),
                        message,
                    },
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------

/// Every stream translation the compat layer does, fed one SSE event's `data` at a time
/// and writing the translated SSE bytes.
#[derive(Debug)]
pub enum StreamTranslator {
    /// Anthropic upstream, OpenAI client.
    AnthropicToOpenAi(AnthropicToOpenAi),
    /// Gemini upstream, OpenAI client.
    GeminiToOpenAi(GeminiToOpenAi),
    /// OpenAI-format upstream, Anthropic client.
    OpenAiToAnthropic(OpenAiToAnthropic),
    /// Gemini upstream, Anthropic client: through the OpenAI dialect.
    GeminiToAnthropic(GeminiToOpenAi, OpenAiToAnthropic),
}

impl StreamTranslator {
    /// Translates one event's `data`, appending the translated events to `out`.
    pub fn on_event(&mut self, data: &[u8], out: &mut BytesMut) {
        match self {
            Self::AnthropicToOpenAi(t) => t.on_event(data, &mut |e| e.write(out)),
            Self::GeminiToOpenAi(t) => t.on_event(data, &mut |e| e.write(out)),
            Self::OpenAiToAnthropic(t) => {
                if let Some(e) = OpenAiEvent::parse(data) {
                    t.on_event(e, &mut |e| write_anthropic(&e, out));
                }
            }
            Self::GeminiToAnthropic(gm, an) => {
                gm.on_event(data, &mut |e| {
                    an.on_event(e, &mut |e| write_anthropic(&e, out))
                });
            }
        }
    }

    /// The upstream stream ended cleanly: appends whatever closes the translated one.
    pub fn on_end(&mut self, out: &mut BytesMut) {
        match self {
            Self::GeminiToOpenAi(t) => t.on_end(&mut |e| e.write(out)),
            Self::GeminiToAnthropic(gm, an) => {
                gm.on_end(&mut |e| an.on_event(e, &mut |e| write_anthropic(&e, out)));
            }
            Self::AnthropicToOpenAi(_) | Self::OpenAiToAnthropic(_) => {}
        }
    }

    /// Whether the upstream stream's terminal event arrived and the translated stream
    /// is closed: a stream that ends without it was cut short.
    pub fn is_complete(&self) -> bool {
        match self {
            Self::AnthropicToOpenAi(t) => t.is_complete(),
            Self::GeminiToOpenAi(t) => t.is_complete(),
            Self::OpenAiToAnthropic(t) => t.is_complete(),
            Self::GeminiToAnthropic(_, an) => an.is_complete(),
        }
    }
}
