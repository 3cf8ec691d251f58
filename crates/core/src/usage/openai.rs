//! OpenAI: chat completions (and every OpenAI-compatible provider), legacy completions,
//! embeddings and the Responses API.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use serde::Deserialize;

use super::de::{Count, First, Obj, Text};
use super::{State, Usage};
use crate::SseEvent;

/// An OpenAI-style usage object. Reads both spellings: chat's `prompt_tokens` /
/// `completion_tokens` and the Responses API's `input_tokens` / `output_tokens`, with
/// their details, and DeepSeek's `prompt_cache_hit_tokens`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct OpenAiUsage {
    prompt_tokens: Count,
    completion_tokens: Count,
    input_tokens: Count,
    output_tokens: Count,
    prompt_tokens_details: Obj<InputDetails>,
    input_tokens_details: Obj<InputDetails>,
    completion_tokens_details: Obj<OutputDetails>,
    output_tokens_details: Obj<OutputDetails>,
    prompt_cache_hit_tokens: Count,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct InputDetails {
    cached_tokens: Count,
    cache_write_tokens: Count,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OutputDetails {
    reasoning_tokens: Count,
}

impl OpenAiUsage {
    /// The normalised usage; `None` when neither an input nor an output count is there.
    pub(super) fn normalise(&self) -> Option<Usage> {
        let input = self.prompt_tokens.0.or(self.input_tokens.0);
        let output = self.completion_tokens.0.or(self.output_tokens.0);
        if input.is_none() && output.is_none() {
            return None;
        }
        let details = self
            .prompt_tokens_details
            .get()
            .or(self.input_tokens_details.get());
        let out_details = self
            .completion_tokens_details
            .get()
            .or(self.output_tokens_details.get());
        Some(Usage {
            input_tokens: input.unwrap_or(0),
            output_tokens: output.unwrap_or(0),
            cached_input_tokens: self
                .prompt_cache_hit_tokens
                .0
                .or(details.and_then(|d| d.cached_tokens.0))
                .unwrap_or(0),
            cache_write_tokens: details.and_then(|d| d.cache_write_tokens.0).unwrap_or(0),
            reasoning_tokens: out_details.and_then(|d| d.reasoning_tokens.0).unwrap_or(0),
        })
    }
}

/// Something with a `usage` object: a whole response body, or a Responses API
/// `response` object, or Groq's `x_groq`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct WithUsage {
    usage: Obj<OpenAiUsage>,
    /// Groq's older streams put the usage under `x_groq` on the last chunk.
    x_groq: Obj<WithUsageOnly>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WithUsageOnly {
    usage: Obj<OpenAiUsage>,
}

impl WithUsage {
    fn normalise(&self) -> Option<Usage> {
        normalise_either(&self.usage, &self.x_groq)
    }
}

fn normalise_either(usage: &Obj<OpenAiUsage>, x_groq: &Obj<WithUsageOnly>) -> Option<Usage> {
    usage.get().and_then(OpenAiUsage::normalise).or_else(|| {
        x_groq
            .get()
            .and_then(|g| g.usage.get())
            .and_then(OpenAiUsage::normalise)
    })
}

/// Usage from a whole chat completion, completion, embeddings or Responses body.
pub(super) fn usage_from_json(body: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<Obj<WithUsage>>(body)
        .ok()?
        .0?
        .normalise()
}

static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
static CHOICES: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"choices\""));
static DELTA: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"delta\":{"));
static CONTENT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"content\":\""));

/// The common content delta, found without a JSON parse: one `"delta":{...}` whose
/// `"content":"..."` string comes before any nested object and has no escapes. Anything
/// else (several choices, escapes, tool calls) answers `None` and takes the full parse.
fn fast_delta_content(data: &[u8]) -> Option<&str> {
    let d = DELTA.find(data)? + DELTA.needle().len();
    if DELTA.find(&data[d..]).is_some() {
        return None;
    }
    let delta = &data[d..];
    let c = CONTENT.find(delta)?;
    if delta[..c].contains(&b'}') || delta[..c].contains(&b'{') {
        return None;
    }
    let s = &delta[c + CONTENT.needle().len()..];
    let end = memchr::memchr2(b'"', b'\\', s)?;
    if s[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&s[..end]).ok()
}

/// Whether `data` has a key `key` (found by `finder`) whose value starts with `open`
/// (then, if `close` is given, is `open` `close` with only whitespace between). Cheap and
/// textual: a match inside a string is impossible, as a quote there is escaped.
fn has_key_with(finder: &Finder<'_>, data: &[u8], open: u8, close: Option<u8>) -> bool {
    finder.find_iter(data).any(|at| {
        let rest = skip_ws(&data[at + finder.needle().len()..]);
        let Some(rest) = rest.strip_prefix(b":") else {
            return false;
        };
        let Some(rest) = skip_ws(rest).strip_prefix(&[open]) else {
            return false;
        };
        close.is_none_or(|close| skip_ws(rest).first() == Some(&close))
    })
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    &s[n..]
}

/// Whether a chunk may carry a usage object (a `"usage"` key holding an object rather than
/// `null`).
pub(super) fn may_have_usage(data: &[u8]) -> bool {
    has_key_with(&USAGE, data, b'{', None)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChatChunk<'a> {
    #[serde(borrow)]
    choices: First<ChatChoice<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChatChunkWithUsage<'a> {
    #[serde(borrow)]
    choices: First<ChatChoice<'a>>,
    usage: Obj<OpenAiUsage>,
    x_groq: Obj<WithUsageOnly>,
}

impl ChatChunkWithUsage<'_> {
    fn normalise(&self) -> Option<Usage> {
        normalise_either(&self.usage, &self.x_groq)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ChatChoice<'a> {
    #[serde(borrow)]
    delta: Obj<ChatDelta<'a>>,
    /// Legacy completions stream `choices[].text`.
    #[serde(borrow)]
    text: Text<'a>,
}

impl ChatChoice<'_> {
    pub(super) fn text(&self) -> Option<&str> {
        self.delta
            .get()
            .and_then(|d| d.content.as_str())
            .or(self.text.as_str())
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChatDelta<'a> {
    #[serde(borrow)]
    content: Text<'a>,
}

/// One event of a chat completions stream.
pub(super) fn on_chat_event(state: &mut State, event: &SseEvent<'_>) {
    if event.is_done() {
        state.completed = true;
        return;
    }
    if may_have_usage(event.data) {
        // Rare: the usage chunk (or a last content chunk carrying usage).
        let Ok(chunk) = serde_json::from_slice::<ChatChunkWithUsage<'_>>(event.data) else {
            return;
        };
        if let Some(text) = chunk.choices.item.as_ref().and_then(ChatChoice::text) {
            state.push_text(text);
        }
        if let Some(usage) = chunk.normalise() {
            state.usage = Some(usage);
        }
    } else if !state.text_full() {
        if let Some(text) = fast_delta_content(event.data) {
            state.push_text(text);
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<ChatChunk<'_>>(event.data) else {
            return;
        };
        if let Some(text) = chunk.choices.item.as_ref().and_then(ChatChoice::text) {
            state.push_text(text);
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UsageOnly {
    choices: First<serde::de::IgnoredAny>,
    usage: Obj<serde::de::IgnoredAny>,
}

/// See [`StreamUsage::is_usage_only_chunk`](super::StreamUsage::is_usage_only_chunk).
pub(super) fn is_usage_only_chunk(event: &SseEvent<'_>) -> bool {
    // Textual prefilters first: almost every chunk fails one of them.
    if !may_have_usage(event.data) || !has_key_with(&CHOICES, event.data, b'[', Some(b']')) {
        return false;
    }
    // Then make sure both are top-level keys.
    serde_json::from_slice::<UsageOnly>(event.data)
        .is_ok_and(|c| c.choices.len == Some(0) && c.usage.0.is_some())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResponsesEvent<'a> {
    #[serde(borrow, rename = "type")]
    kind: Text<'a>,
    #[serde(borrow)]
    delta: Text<'a>,
    response: Obj<WithUsage>,
}

/// Whether a Responses API event type ends the stream.
fn is_responses_terminal(kind: &str) -> bool {
    matches!(
        kind,
        "response.completed" | "response.incomplete" | "response.failed"
    )
}

/// One event of a Responses API stream.
pub(super) fn on_responses_event(state: &mut State, event: &SseEvent<'_>) {
    let named = (event.event != "message").then_some(event.event);
    match named {
        Some("response.output_text.delta") if !state.text_full() => {}
        Some(kind) if is_responses_terminal(kind) => {}
        // Every other named event (created, in_progress, output_item.*, ...) carries
        // nothing we keep: skip it unparsed.
        Some(_) => return,
        None => {}
    }
    let Ok(parsed) = serde_json::from_slice::<ResponsesEvent<'_>>(event.data) else {
        if named.is_some_and(is_responses_terminal) {
            state.completed = true;
        }
        return;
    };
    let Some(kind) = named.or(parsed.kind.as_str()) else {
        return;
    };
    if kind == "response.output_text.delta" {
        if let Some(delta) = parsed.delta.as_str() {
            state.push_text(delta);
        }
    } else if is_responses_terminal(kind) {
        state.completed = true;
        if let Some(usage) = parsed.response.get().and_then(WithUsage::normalise) {
            state.usage = Some(usage);
        }
    }
}

#[cfg(test)]
mod fast_tests {
    use super::fast_delta_content;

    #[test]
    fn fast_path_only_for_the_plain_shape() {
        let f = |s: &str| fast_delta_content(s.as_bytes()).map(str::to_owned);
        assert_eq!(
            f(r#"{"choices":[{"index":0,"delta":{"content":" hi"},"finish_reason":null}]}"#)
                .as_deref(),
            Some(" hi")
        );
        assert_eq!(
            f(r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#).as_deref(),
            Some("")
        );
        // Escapes, several choices, tool calls, null content: the full parse decides.
        assert_eq!(f(r#"{"choices":[{"delta":{"content":"a\nb"}}]}"#), None);
        assert_eq!(
            f(r#"{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}"#),
            None
        );
        assert_eq!(
            f(
                r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{}"}}]},"logprobs":{"content":"x"}}]}"#
            ),
            None
        );
        assert_eq!(
            f(r#"{"choices":[{"delta":{"content":null}}],"x":{"content":"y"}}"#),
            None
        );
    }
}
