//! Anthropic messages: `usage.input_tokens` excludes the prompt cache, which is reported
//! beside it; in a stream, `message_delta`'s usage is cumulative.

use serde::Deserialize;

use super::de::{Count, Obj, Text};
use super::{State, Usage};
use crate::SseEvent;

#[derive(Deserialize, Default)]
#[serde(default)]
struct AnthropicUsage {
    input_tokens: Count,
    cache_creation_input_tokens: Count,
    cache_read_input_tokens: Count,
    output_tokens: Count,
}

/// Anthropic's figures as last reported, field by field.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Counts {
    input: Option<u64>,
    cache_creation: Option<u64>,
    cache_read: Option<u64>,
    output: Option<u64>,
}

impl Counts {
    /// Takes the fields `usage` reports. Figures are cumulative, so a later one replaces an
    /// earlier one, never adds to it; but a zero does not erase an input or cache figure
    /// already known (a cumulative count cannot fall back to zero: that is a vendor
    /// leaving the field at its default).
    fn apply(&mut self, usage: &AnthropicUsage) {
        fn set(slot: &mut Option<u64>, new: Count, keep_nonzero: bool) {
            if let Some(new) = new.0
                && !(keep_nonzero && new == 0 && slot.is_some_and(|old| old > 0))
            {
                *slot = Some(new);
            }
        }
        set(&mut self.input, usage.input_tokens, true);
        set(
            &mut self.cache_creation,
            usage.cache_creation_input_tokens,
            true,
        );
        set(&mut self.cache_read, usage.cache_read_input_tokens, true);
        set(&mut self.output, usage.output_tokens, false);
    }

    /// The normalised usage; `None` until an input or output figure was reported.
    pub(super) fn usage(&self) -> Option<Usage> {
        if self.input.is_none() && self.output.is_none() {
            return None;
        }
        let cache_creation = self.cache_creation.unwrap_or(0);
        let cache_read = self.cache_read.unwrap_or(0);
        Some(Usage {
            input_tokens: self
                .input
                .unwrap_or(0)
                .saturating_add(cache_creation)
                .saturating_add(cache_read),
            output_tokens: self.output.unwrap_or(0),
            cached_input_tokens: cache_read,
            cache_write_tokens: cache_creation,
            reasoning_tokens: 0,
        })
    }
}

/// A message body, or `message_start`'s `message`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Message {
    usage: Obj<AnthropicUsage>,
}

/// Usage from a whole message body.
pub(super) fn usage_from_json(body: &[u8]) -> Option<Usage> {
    let message = serde_json::from_slice::<Obj<Message>>(body).ok()?.0?;
    let mut counts = Counts::default();
    counts.apply(message.usage.get()?);
    counts.usage()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Event<'a> {
    #[serde(borrow, rename = "type")]
    kind: Text<'a>,
    message: Obj<Message>,
    usage: Obj<AnthropicUsage>,
    #[serde(borrow)]
    delta: Obj<Delta<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Delta<'a> {
    #[serde(borrow, rename = "type")]
    kind: Text<'a>,
    #[serde(borrow)]
    text: Text<'a>,
}

/// One event of a messages stream.
pub(super) fn on_event(state: &mut State, event: &SseEvent<'_>) {
    let named = (event.event != "message").then_some(event.event);
    match named {
        Some("message_stop") => {
            state.completed = true;
            return;
        }
        Some("message_start" | "message_delta") => {}
        Some("content_block_delta") if !state.text_full() => {
            if let Some(text) = fast_text_delta(event.data) {
                state.push_text(text);
                return;
            }
        }
        // ping, content_block_start/stop, error, and deltas past the text bound.
        Some(_) => return,
        None => {}
    }
    let Ok(parsed) = serde_json::from_slice::<Event<'_>>(event.data) else {
        return;
    };
    let Some(kind) = named.or(parsed.kind.as_str()) else {
        return;
    };
    match kind {
        "message_start" => {
            if let Some(usage) = parsed.message.get().and_then(|m| m.usage.get()) {
                state.anthropic.apply(usage);
            }
        }
        "message_delta" => {
            if let Some(usage) = parsed.usage.get() {
                state.anthropic.apply(usage);
            }
        }
        "content_block_delta" => {
            if let Some(delta) = parsed.delta.get()
                && delta.kind.as_str() == Some("text_delta")
                && let Some(text) = delta.text.as_str()
            {
                state.push_text(text);
            }
        }
        "message_stop" => state.completed = true,
        _ => {}
    }
}

/// The common text delta, found without a JSON parse: a `"delta":{...}` object of type
/// `text_delta` (and no other object inside it) whose `"text":"..."` has no escapes.
/// Anything else answers `None` and takes the full parse.
fn fast_text_delta(data: &[u8]) -> Option<&str> {
    use std::sync::LazyLock;

    use memchr::memmem::Finder;
    static DELTA: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"delta\":{"));
    static TEXT_DELTA: LazyLock<Finder<'static>> =
        LazyLock::new(|| Finder::new(b"\"type\":\"text_delta\""));
    static TEXT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"text\":\""));
    let d = DELTA.find(data)? + DELTA.needle().len();
    let delta = &data[d..];
    let close = memchr::memchr(b'}', delta)?;
    let obj = &delta[..close];
    if obj.contains(&b'{') || TEXT_DELTA.find(obj).is_none() {
        return None;
    }
    let t = TEXT.find(obj)? + TEXT.needle().len();
    let s = &obj[t..];
    let end = memchr::memchr2(b'"', b'\\', s)?;
    if s[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&s[..end]).ok()
}

#[cfg(test)]
mod fast_tests {
    use super::fast_text_delta;

    #[test]
    fn fast_path_only_for_the_plain_shape() {
        let f = |s: &str| fast_text_delta(s.as_bytes()).map(str::to_owned);
        assert_eq!(
            f(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#).as_deref(),
            Some("Hi")
        );
        assert_eq!(
            f(r#"{"delta":{"text":" there","type":"text_delta"},"index":0}"#).as_deref(),
            Some(" there")
        );
        // A `}` inside the text ends the object early: the full parse decides.
        assert_eq!(f(r#"{"delta":{"type":"text_delta","text":"a}b"}}"#), None);
        assert_eq!(f(r#"{"delta":{"type":"text_delta","text":"a\"b"}}"#), None);
        assert_eq!(
            f(r#"{"delta":{"type":"input_json_delta","partial_json":"{\"text\":\"x\"}"}}"#),
            None
        );
        assert_eq!(
            f(r#"{"delta":{"type":"thinking_delta","thinking":"hm"}}"#),
            None
        );
    }
}
