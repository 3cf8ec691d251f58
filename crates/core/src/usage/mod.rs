//! [`Usage`] and the extractors that read it from each wire format: from a whole JSON
//! body ([`usage_from_json`]), from an SSE stream event by event ([`StreamUsage`]), and
//! the prompt text of a request ([`prompt_text`]) for estimating tokens when a provider
//! reports none. The rules are in the docs of each.

mod anthropic;
mod de;
mod estimate;
mod gemini;
mod openai;
mod prompt;
mod response;
mod workers_ai;

use crate::{Operation, SseEvent, WireFormat};

pub use estimate::{estimate_tokens, load_tokenizer_in_background, warm_up_tokenizer};
pub use response::{FinalUsage, ResponseUsage, UsageSource};

/// Token usage of one request, normalised across wire formats.
///
/// `cached_input_tokens` and `cache_write_tokens` are parts of `input_tokens`, and
/// `reasoning_tokens` is part of `output_tokens`, whatever the provider reported: see
/// [`usage_from_json`] for how each format maps.
///
/// ```
/// use tower_ai_core::{Operation, Usage, WireFormat, usage_from_json};
/// let body = br#"{"type":"message","usage":{"input_tokens":10,"cache_read_input_tokens":90,"output_tokens":5}}"#;
/// let usage = usage_from_json(WireFormat::Anthropic, Operation::Messages, body).unwrap();
/// assert_eq!(
///     usage,
///     Usage { input_tokens: 100, output_tokens: 5, cached_input_tokens: 90, ..Usage::default() }
/// );
/// assert_eq!((usage.total_tokens(), usage.uncached_input_tokens()), (105, 10));
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Usage {
    /// Every input token: uncached, read from the provider's prompt cache and written to it.
    pub input_tokens: u64,
    /// Every output token, reasoning included.
    pub output_tokens: u64,
    /// Input tokens read from the provider's prompt cache (part of `input_tokens`).
    pub cached_input_tokens: u64,
    /// Input tokens written to the provider's prompt cache (part of `input_tokens`).
    pub cache_write_tokens: u64,
    /// Output tokens spent on reasoning (part of `output_tokens`).
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Input plus output tokens (saturating).
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Input tokens neither read from nor written to the prompt cache (saturating at 0).
    pub fn uncached_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_sub(self.cached_input_tokens)
            .saturating_sub(self.cache_write_tokens)
    }
}

/// The shape a body is read in: see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Chat,
    Embeddings,
    Responses,
    Anthropic,
    Gemini,
    WorkersAi,
    /// An OpenAI-format provider's other operations: either OpenAI spelling.
    OpenAiOther,
}

impl Dialect {
    fn new(format: WireFormat, operation: Operation) -> Self {
        match operation {
            Operation::ChatCompletions | Operation::Completions => Self::Chat,
            Operation::Embeddings => Self::Embeddings,
            Operation::Responses => Self::Responses,
            Operation::Messages => Self::Anthropic,
            Operation::GenerateContent | Operation::EmbedContent => Self::Gemini,
            Operation::Run => Self::WorkersAi,
            Operation::Other => match format {
                WireFormat::OpenAi => Self::OpenAiOther,
                WireFormat::Anthropic => Self::Anthropic,
                WireFormat::Gemini => Self::Gemini,
                WireFormat::WorkersAi => Self::WorkersAi,
            },
        }
    }
}

/// Reads usage from a whole (non-streamed) JSON response body.
///
/// `None` when the body is not JSON or reports no usage (no input nor output count).
///
/// # Which shape is read
///
/// The [`Operation`] decides first, as providers serve each other's APIs (Gemini and
/// Anthropic serve OpenAI's chat completions, Workers AI `/v1/chat/completions`,
/// DeepSeek Anthropic's messages): chat and legacy completions, embeddings and the
/// Responses API are read as OpenAI's, messages as Anthropic's, `generateContent` and
/// `embedContent` as Gemini's, `run` as Workers AI's. Any other operation is read in the
/// provider's [`WireFormat`] (for OpenAI, either spelling below).
///
/// | shape | input | output | cached | cache write | reasoning |
/// |---|---|---|---|---|---|
/// | OpenAI chat (and compatible) | `prompt_tokens` | `completion_tokens` | `prompt_tokens_details.cached_tokens` (DeepSeek: `prompt_cache_hit_tokens`, preferred when present) | `prompt_tokens_details.cache_write_tokens` (OpenRouter) | `completion_tokens_details.reasoning_tokens` |
/// | OpenAI Responses | `input_tokens` | `output_tokens` | `input_tokens_details.cached_tokens` | 0 | `output_tokens_details.reasoning_tokens` |
/// | OpenAI embeddings | `prompt_tokens` | 0 | 0 | 0 | 0 |
/// | Anthropic | `input_tokens` + `cache_creation_input_tokens` + `cache_read_input_tokens` | `output_tokens` | `cache_read_input_tokens` | `cache_creation_input_tokens` | 0 |
/// | Gemini | `promptTokenCount` + `toolUsePromptTokenCount` | `candidatesTokenCount` + `thoughtsTokenCount` | `cachedContentTokenCount` | 0 | `thoughtsTokenCount` |
/// | Workers AI | `result.usage.prompt_tokens` (or a top-level `usage`) | `completion_tokens` | 0 | 0 | 0 |
///
/// The usage object is the top-level `usage` (OpenAI; Groq's `x_groq.usage` too;
/// Anthropic), `usageMetadata` (Gemini; for a `streamGenerateContent` body without
/// `alt=sse`, a JSON array of chunks, the last one's) or `result.usage` (Workers AI).
/// A count that is not a non-negative integer fitting a `u64` (null, negative, a float, a
/// string) is absent; no input makes this panic.
///
/// ```
/// use tower_ai_core::{Operation, WireFormat, usage_from_json};
/// let body = br#"{"usage":{"prompt_tokens":12,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":8}}}"#;
/// let usage = usage_from_json(WireFormat::OpenAi, Operation::ChatCompletions, body).unwrap();
/// assert_eq!((usage.input_tokens, usage.cached_input_tokens, usage.output_tokens), (12, 8, 3));
/// assert_eq!(usage_from_json(WireFormat::OpenAi, Operation::ChatCompletions, b"oops"), None);
/// ```
pub fn usage_from_json(format: WireFormat, operation: Operation, body: &[u8]) -> Option<Usage> {
    match Dialect::new(format, operation) {
        Dialect::Chat | Dialect::Responses | Dialect::OpenAiOther => openai::usage_from_json(body),
        Dialect::Embeddings => openai::usage_from_json(body).map(|u| Usage {
            output_tokens: 0,
            reasoning_tokens: 0,
            ..u
        }),
        Dialect::Anthropic => anthropic::usage_from_json(body),
        Dialect::Gemini => gemini::usage_from_json(body),
        Dialect::WorkersAi => workers_ai::usage_from_json(body),
    }
}

/// The prompt text of a request body (messages' text contents, system, instructions,
/// input, prompt, Gemini's contents...), its pieces joined with newlines, for estimating
/// input tokens. Images, tool definitions and other non-text content are left out.
///
/// Empty when the body is not JSON.
///
/// ```
/// use tower_ai_core::{Operation, WireFormat, prompt_text};
/// let body = br#"{"model":"m","system":"Be brief.","messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}]}"#;
/// assert_eq!(prompt_text(WireFormat::Anthropic, Operation::Messages, body), "Be brief.\nHi");
/// ```
pub fn prompt_text(format: WireFormat, operation: Operation, body: &[u8]) -> String {
    prompt::prompt_text(Dialect::new(format, operation), body)
}

/// What a token estimate needs of a request body, read in one pass without copying
/// the prompt: see [`prompt_size`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PromptSize {
    /// The length in bytes of [`prompt_text`]'s text.
    pub text_len: usize,
    /// The output cap the request asks for: the top-level `max_tokens`, else
    /// `max_completion_tokens`, else `max_output_tokens` (the Responses API's).
    pub max_output_tokens: Option<u64>,
}

/// The size of a request's prompt and its output cap, for estimating the tokens it may
/// use before it is sent: one pass over the body, the text counted but not collected.
/// Zero and `None` when the body is not JSON.
///
/// ```
/// use tower_ai_core::{Operation, PromptSize, WireFormat, prompt_size};
/// let body = br#"{"model":"m","max_tokens":50,"messages":[{"role":"user","content":"Hello"},{"role":"user","content":"there"}]}"#;
/// assert_eq!(
///     prompt_size(WireFormat::OpenAi, Operation::ChatCompletions, body),
///     PromptSize { text_len: "Hello\nthere".len(), max_output_tokens: Some(50) },
/// );
/// ```
pub fn prompt_size(format: WireFormat, operation: Operation, body: &[u8]) -> PromptSize {
    prompt::prompt_size(Dialect::new(format, operation), body)
}

/// The bound on [`StreamUsage::output_text`]: 1 MiB.
const MAX_OUTPUT_TEXT: usize = 1024 * 1024;

/// What a stream told so far; shared by the format modules.
#[derive(Debug, Default)]
struct State {
    /// The last usage reported (every format but Anthropic).
    usage: Option<Usage>,
    /// Anthropic's figures, field by field.
    anthropic: anthropic::Counts,
    completed: bool,
    text: String,
    /// Whether `text` reached [`MAX_OUTPUT_TEXT`]: later text is dropped.
    text_full: bool,
}

impl State {
    fn text_full(&self) -> bool {
        self.text_full
    }

    fn push_text(&mut self, s: &str) {
        if self.text_full {
            return;
        }
        let room = MAX_OUTPUT_TEXT - self.text.len();
        if s.len() < room {
            self.text.push_str(s);
            return;
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.text.push_str(&s[..end]);
        self.text_full = true;
    }
}

/// Follows an SSE response event by event (feed it from an
/// [`SseHandler`](crate::SseHandler)) and keeps the usage it reports, whether the
/// protocol's terminal event arrived, and the output text (bounded to 1 MiB) for
/// estimating tokens when the provider reports none.
///
/// Usage is read as [`usage_from_json`] reads it, from these events:
///
/// - OpenAI chat: the last chunk with a non-null `usage` (the `choices: []` chunk sent
///   with `stream_options.include_usage`, or a last content chunk for compatible providers
///   that put it there; Groq's `x_groq.usage` too). Text: `choices[0].delta.content` (or
///   legacy completions' `choices[0].text`). Terminal: `[DONE]`.
/// - Responses API: `response.usage` of `response.completed`, `response.incomplete` or
///   `response.failed`, which are terminal. Text: `response.output_text.delta`.
/// - Anthropic: `message_start`'s `message.usage`, then `message_delta`'s `usage`, which
///   is cumulative: each field it carries replaces the earlier figure, never adds to it,
///   and a field only it carries (some compatible vendors report input there) is taken
///   from it. A zero does not erase an input or cache figure already known. Text:
///   `content_block_delta`s of type `text_delta`. Terminal: `message_stop`.
/// - Gemini: every chunk's `usageMetadata` is cumulative, the last wins. Text:
///   `candidates[0].content.parts[*].text`. Terminal: a candidate with a `finishReason`
///   (or a prompt blocked with `promptFeedback.blockReason`).
/// - Workers AI: the last `usage`; text from `response`. Terminal: `[DONE]`.
///
/// Events that carry nothing kept are skipped by name when the stream names them; a
/// chunk is searched for `"usage": {` before its usage is parsed; a content delta costs
/// one borrowed parse, with no allocation beyond growing the text.
///
/// ```
/// use tower_ai_core::{Operation, SseParser, StreamUsage, WireFormat};
/// let stream = concat!(
///     "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
///     "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\n",
///     "data: [DONE]\n\n",
/// );
/// let mut usage = StreamUsage::new(WireFormat::OpenAi, Operation::ChatCompletions);
/// SseParser::new().feed(stream.as_bytes(), |e| usage.on_event(&e));
/// assert_eq!(usage.usage().map(|u| u.total_tokens()), Some(6));
/// assert_eq!(usage.output_text(), "Hi");
/// assert!(usage.completed());
/// ```
#[derive(Debug)]
pub struct StreamUsage {
    dialect: Dialect,
    state: State,
}

impl StreamUsage {
    /// Follows a stream of `operation` from a provider speaking `format`.
    pub fn new(format: WireFormat, operation: Operation) -> Self {
        Self {
            dialect: Dialect::new(format, operation),
            state: State::default(),
        }
    }

    /// Takes one event of the stream.
    pub fn on_event(&mut self, event: &SseEvent<'_>) {
        let state = &mut self.state;
        match self.dialect {
            Dialect::Chat | Dialect::Embeddings => openai::on_chat_event(state, event),
            Dialect::Responses => openai::on_responses_event(state, event),
            Dialect::OpenAiOther if event.event.starts_with("response.") => {
                openai::on_responses_event(state, event)
            }
            Dialect::OpenAiOther => openai::on_chat_event(state, event),
            Dialect::Anthropic => anthropic::on_event(state, event),
            Dialect::Gemini => gemini::on_event(state, event),
            Dialect::WorkersAi => workers_ai::on_event(state, event),
        }
    }

    /// The usage reported so far (`None` if the stream reported none yet).
    pub fn usage(&self) -> Option<Usage> {
        match self.dialect {
            Dialect::Anthropic => self.state.anthropic.usage(),
            _ => self.state.usage,
        }
    }

    /// Whether the protocol's terminal event arrived: OpenAI chat's `[DONE]`; the
    /// Responses API's `response.completed`, `response.incomplete` or `response.failed`;
    /// Anthropic's `message_stop`; Gemini's chunk with a `finishReason`; Workers AI's
    /// `[DONE]`. A stream that ends without it was cut short.
    pub fn completed(&self) -> bool {
        self.state.completed
    }

    /// The output text streamed so far (the content deltas concatenated), kept up to
    /// 1 MiB: for estimating output tokens when a stream is cancelled or the provider
    /// reports nothing.
    pub fn output_text(&self) -> &str {
        &self.state.text
    }

    /// Whether `event` is an OpenAI-format usage-only chunk (`"choices": []` with a
    /// non-null `usage`), which a meter that injected `stream_options.include_usage`
    /// removes before the client sees it. A cheap textual check on most events.
    ///
    /// ```
    /// use tower_ai_core::{SseEvent, StreamUsage};
    /// let event = |data: &'static str| SseEvent { event: "message", data: data.as_bytes(), id: None };
    /// assert!(StreamUsage::is_usage_only_chunk(&event(r#"{"choices":[],"usage":{"prompt_tokens":1}}"#)));
    /// assert!(!StreamUsage::is_usage_only_chunk(&event(r#"{"choices":[],"usage":null}"#)));
    /// ```
    pub fn is_usage_only_chunk(event: &SseEvent<'_>) -> bool {
        openai::is_usage_only_chunk(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_text_is_bounded_on_a_char_boundary() {
        let mut state = State::default();
        let chunk = "é".repeat(1000); // 2000 bytes
        for _ in 0..600 {
            state.push_text(&chunk);
        }
        assert!(state.text.len() <= MAX_OUTPUT_TEXT);
        assert!(state.text.len() > MAX_OUTPUT_TEXT - 4);
        let len = state.text.len();
        state.push_text("x");
        assert_eq!(state.text.len(), len);
    }

    #[test]
    fn usage_arithmetic_saturates() {
        let u = Usage {
            input_tokens: 5,
            output_tokens: u64::MAX,
            cached_input_tokens: 4,
            cache_write_tokens: 4,
            reasoning_tokens: 0,
        };
        assert_eq!(u.total_tokens(), u64::MAX);
        assert_eq!(u.uncached_input_tokens(), 0);
    }
}
