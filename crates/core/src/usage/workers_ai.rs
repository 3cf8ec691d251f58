//! Cloudflare Workers AI `run`: `{"result":{"response":..,"usage":{..}}}`, and streams of
//! `data: {"response":"tok"}` ending with a usage event and `[DONE]`.

use serde::Deserialize;

use super::de::{First, Obj, Text};
use super::openai::{ChatChoice, OpenAiUsage};
use super::{State, Usage};
use crate::SseEvent;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Body {
    result: Obj<Result>,
    usage: Obj<OpenAiUsage>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Result {
    usage: Obj<OpenAiUsage>,
}

/// Usage from a whole `run` body: `result.usage`, else a top-level `usage`.
pub(super) fn usage_from_json(body: &[u8]) -> Option<Usage> {
    let body = serde_json::from_slice::<Obj<Body>>(body).ok()?.0?;
    body.result
        .get()
        .and_then(|r| r.usage.get())
        .and_then(OpenAiUsage::normalise)
        .or_else(|| body.usage.get().and_then(OpenAiUsage::normalise))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Event<'a> {
    #[serde(borrow)]
    response: Text<'a>,
    usage: Obj<OpenAiUsage>,
    /// Models served in OpenAI's shape stream chat chunks.
    #[serde(borrow)]
    choices: First<ChatChoice<'a>>,
}

/// One event of a `run` stream.
pub(super) fn on_event(state: &mut State, event: &SseEvent<'_>) {
    if event.is_done() {
        state.completed = true;
        return;
    }
    let Ok(parsed) = serde_json::from_slice::<Event<'_>>(event.data) else {
        return;
    };
    let text = parsed
        .response
        .as_str()
        .or_else(|| parsed.choices.item.as_ref().and_then(ChatChoice::text));
    if let Some(text) = text {
        state.push_text(text);
    }
    if let Some(usage) = parsed.usage.get().and_then(OpenAiUsage::normalise) {
        state.usage = Some(usage);
    }
}
