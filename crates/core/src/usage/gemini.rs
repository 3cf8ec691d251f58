//! Gemini `generateContent` / `streamGenerateContent`: `usageMetadata`, with thoughts
//! counted apart from candidates.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

use super::de::{Count, First, Obj, Text, Texts};
use super::{State, Usage};
use crate::SseEvent;

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct UsageMetadata {
    prompt_token_count: Count,
    candidates_token_count: Count,
    thoughts_token_count: Count,
    cached_content_token_count: Count,
    tool_use_prompt_token_count: Count,
}

impl UsageMetadata {
    fn normalise(&self) -> Option<Usage> {
        let prompt = self.prompt_token_count.0;
        let candidates = self.candidates_token_count.0;
        let thoughts = self.thoughts_token_count.0.unwrap_or(0);
        if prompt.is_none() && candidates.is_none() && thoughts == 0 {
            return None;
        }
        Some(Usage {
            // Tool-use prompts (e.g. search results fed back) are input the model read.
            input_tokens: prompt
                .unwrap_or(0)
                .saturating_add(self.tool_use_prompt_token_count.0.unwrap_or(0)),
            output_tokens: candidates.unwrap_or(0).saturating_add(thoughts),
            cached_input_tokens: self.cached_content_token_count.0.unwrap_or(0),
            cache_write_tokens: 0,
            reasoning_tokens: thoughts,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Chunk<'a> {
    #[serde(borrow)]
    candidates: First<Candidate<'a>>,
    usage_metadata: Obj<UsageMetadata>,
    #[serde(borrow)]
    prompt_feedback: Obj<PromptFeedback<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Candidate<'a> {
    #[serde(borrow)]
    content: Obj<Content<'a>>,
    #[serde(borrow)]
    finish_reason: Text<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Content<'a> {
    #[serde(borrow)]
    parts: Texts<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PromptFeedback<'a> {
    #[serde(borrow)]
    block_reason: Text<'a>,
}

impl Chunk<'_> {
    /// Whether the chunk ends the stream: a candidate with a `finishReason`, or a prompt
    /// blocked before any candidate.
    fn is_terminal(&self) -> bool {
        let finished = self
            .candidates
            .item
            .as_ref()
            .and_then(|c| c.finish_reason.as_str())
            .is_some_and(|r| !r.is_empty());
        let blocked = self
            .prompt_feedback
            .get()
            .and_then(|f| f.block_reason.as_str())
            .is_some_and(|r| !r.is_empty());
        finished || blocked
    }

    fn text(&self) -> Option<&str> {
        self.candidates
            .item
            .as_ref()?
            .content
            .get()?
            .parts
            .0
            .as_deref()
    }
}

/// A whole body: one response object, or (`streamGenerateContent` without `alt=sse`) a
/// JSON array of chunks, whose last usage wins.
struct Body(Option<Usage>);

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Body;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a response object or an array of them")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Body, A::Error> {
                let chunk = Obj::<UsageOnly>::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(Body(chunk.get().and_then(UsageOnly::normalise)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Body, A::Error> {
                let mut last = None;
                while let Some(chunk) = seq.next_element::<Obj<UsageOnly>>()? {
                    if let Some(usage) = chunk.get().and_then(UsageOnly::normalise) {
                        last = Some(usage);
                    }
                }
                Ok(Body(last))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct UsageOnly {
    usage_metadata: Obj<UsageMetadata>,
}

impl UsageOnly {
    fn normalise(&self) -> Option<Usage> {
        self.usage_metadata.get()?.normalise()
    }
}

/// Usage from a whole `generateContent` body.
pub(super) fn usage_from_json(body: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<Body>(body).ok()?.0
}

/// One event of a `streamGenerateContent?alt=sse` stream.
pub(super) fn on_event(state: &mut State, event: &SseEvent<'_>) {
    let Ok(chunk) = serde_json::from_slice::<Chunk<'_>>(event.data) else {
        return;
    };
    if let Some(text) = chunk.text() {
        state.push_text(text);
    }
    if let Some(usage) = chunk
        .usage_metadata
        .get()
        .and_then(UsageMetadata::normalise)
    {
        state.usage = Some(usage);
    }
    if chunk.is_terminal() {
        state.completed = true;
    }
}
