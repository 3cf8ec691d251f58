//! Response translation (whole JSON bodies): Anthropic and Gemini answers into OpenAI
//! chat completions, OpenAI chat completions into Anthropic messages, Gemini embeddings
//! into OpenAI's.

use serde_json::{Map, Value};

use crate::{anthropic as a, gemini as g, openai as o};

/// Anthropic's `stop_reason` as an OpenAI `finish_reason`.
pub fn anthropic_finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Gemini's `finishReason` as an OpenAI `finish_reason`; `tool_calls` when the answer
/// called functions.
pub fn gemini_finish_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// An OpenAI `finish_reason` as Anthropic's `stop_reason`.
pub fn openai_stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic usage in OpenAI's terms: prompt tokens count cache reads and writes.
pub fn anthropic_usage(u: &a::MessageUsage) -> o::ChatUsage {
    let cached = u.cache_read_input_tokens.unwrap_or(0);
    let prompt = u.input_tokens + cached + u.cache_creation_input_tokens.unwrap_or(0);
    o::ChatUsage {
        prompt_tokens: prompt,
        completion_tokens: u.output_tokens,
        total_tokens: prompt + u.output_tokens,
        prompt_tokens_details: Some(o::PromptTokensDetails {
            cached_tokens: cached,
        }),
        completion_tokens_details: None,
    }
}

/// Gemini usage in OpenAI's terms: completion tokens count thoughts.
pub fn gemini_usage(u: &g::UsageMetadata) -> o::ChatUsage {
    let thoughts = u.thoughts_token_count.unwrap_or(0);
    let completion = u.candidates_token_count + thoughts;
    o::ChatUsage {
        prompt_tokens: u.prompt_token_count,
        completion_tokens: completion,
        total_tokens: u.prompt_token_count + completion,
        prompt_tokens_details: Some(o::PromptTokensDetails {
            cached_tokens: u.cached_content_token_count.unwrap_or(0),
        }),
        completion_tokens_details: Some(o::CompletionTokensDetails {
            reasoning_tokens: thoughts,
        }),
    }
}

/// OpenAI usage in Anthropic's terms: input tokens exclude cache reads.
pub fn openai_usage(u: &o::ChatUsage) -> a::MessageUsage {
    let cached = u
        .prompt_tokens_details
        .as_ref()
        .map_or(0, |d| d.cached_tokens);
    a::MessageUsage {
        input_tokens: u.prompt_tokens.saturating_sub(cached),
        output_tokens: u.completion_tokens,
        cache_creation_input_tokens: Some(0),
        cache_read_input_tokens: Some(cached),
    }
}

/// An Anthropic message as an OpenAI chat completion created at `created` (Unix s).
pub fn anthropic_to_chat(msg: a::MessageResponse, created: u64) -> o::ChatCompletion {
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    for b in msg.content {
        match b {
            a::Block::Text { text: t } => text.get_or_insert_with(String::new).push_str(&t),
            a::Block::ToolUse { id, name, input } => calls.push(o::ToolCall {
                id,
                kind: "function".to_owned(),
                function: o::FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            _ => {}
        }
    }
    let finish = msg.stop_reason.as_deref().map(anthropic_finish_reason);
    o::ChatCompletion {
        id: msg.id,
        object: "chat.completion".to_owned(),
        created,
        model: msg.model,
        choices: vec![o::Choice {
            index: 0,
            message: o::ResponseMessage {
                role: "assistant".to_owned(),
                content: text,
                tool_calls: (!calls.is_empty()).then_some(calls),
                refusal: None,
            },
            finish_reason: Some(finish.unwrap_or("stop").to_owned()),
            logprobs: None,
        }],
        usage: Some(anthropic_usage(&msg.usage)),
    }
}

/// The id a Gemini function call gets in OpenAI's dialect: its own, or one made from
/// the response and the call's position.
pub(crate) fn gemini_call_id(call: &g::FunctionCall, n: usize) -> String {
    match &call.id {
        Some(id) => id.clone(),
        None => format!("call_{n}"),
    }
}

/// A Gemini answer as an OpenAI chat completion; `model` when it names no version.
pub fn gemini_to_chat(
    resp: g::GenerateContentResponse,
    model: &str,
    created: u64,
) -> o::ChatCompletion {
    let mut choices = Vec::with_capacity(resp.candidates.len().max(1));
    let mut n = 0;
    for c in resp.candidates {
        let mut text: Option<String> = None;
        let mut calls = Vec::new();
        for p in c.content.map(|c| c.parts).unwrap_or_default() {
            if let Some(call) = p.function_call {
                calls.push(o::ToolCall {
                    id: gemini_call_id(&call, n),
                    kind: "function".to_owned(),
                    function: o::FunctionCall {
                        name: call.name,
                        arguments: call.args.to_string(),
                    },
                });
                n += 1;
            } else if let Some(t) = p.text
                && p.thought != Some(true)
            {
                text.get_or_insert_with(String::new).push_str(&t);
            }
        }
        let finish = gemini_finish_reason(
            c.finish_reason.as_deref().unwrap_or("STOP"),
            !calls.is_empty(),
        );
        choices.push(o::Choice {
            index: c.index,
            message: o::ResponseMessage {
                role: "assistant".to_owned(),
                content: text,
                tool_calls: (!calls.is_empty()).then_some(calls),
                refusal: None,
            },
            finish_reason: Some(finish.to_owned()),
            logprobs: None,
        });
    }
    if choices.is_empty() {
        // A prompt blocked before any candidate.
        choices.push(o::Choice {
            index: 0,
            message: o::ResponseMessage {
                role: "assistant".to_owned(),
                ..o::ResponseMessage::default()
            },
            finish_reason: Some("content_filter".to_owned()),
            logprobs: None,
        });
    }
    o::ChatCompletion {
        id: resp
            .response_id
            .unwrap_or_else(|| format!("chatcmpl-{created}")),
        object: "chat.completion".to_owned(),
        created,
        model: resp.model_version.unwrap_or_else(|| model.to_owned()),
        choices,
        usage: resp.usage_metadata.as_ref().map(gemini_usage),
    }
}

/// An OpenAI chat completion (its first choice) as an Anthropic message.
pub fn chat_to_anthropic(resp: o::ChatCompletion) -> a::MessageResponse {
    let mut content = Vec::new();
    let mut stop = "end_turn";
    if let Some(choice) = resp.choices.into_iter().next() {
        if let Some(t) = choice.message.content.filter(|t| !t.is_empty()) {
            content.push(a::Block::Text { text: t });
        }
        for call in choice.message.tool_calls.into_iter().flatten() {
            content.push(a::Block::ToolUse {
                id: call.id,
                name: call.function.name,
                input: parse_input(&call.function.arguments),
            });
        }
        stop = choice
            .finish_reason
            .as_deref()
            .map_or("end_turn", openai_stop_reason);
    }
    a::MessageResponse {
        id: resp.id,
        kind: "message".to_owned(),
        role: "assistant".to_owned(),
        model: resp.model,
        content,
        stop_reason: Some(stop.to_owned()),
        stop_sequence: None,
        usage: resp.usage.as_ref().map(openai_usage).unwrap_or_default(),
    }
}

/// Tool arguments as a JSON object; arguments that are not one are kept as a string
/// under `arguments`.
pub(crate) fn parse_input(args: &str) -> Value {
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => v,
        _ if args.trim().is_empty() => Value::Object(Map::new()),
        _ => {
            let mut m = Map::new();
            m.insert("arguments".to_owned(), Value::String(args.to_owned()));
            Value::Object(m)
        }
    }
}

/// Gemini embeddings as OpenAI's, for `model`. Gemini reports no token count: usage is 0.
pub fn gemini_to_embeddings(resp: g::BatchEmbedResponse, model: &str) -> o::EmbeddingsResponse {
    o::EmbeddingsResponse {
        object: "list".to_owned(),
        data: resp
            .embeddings
            .into_iter()
            .enumerate()
            .map(|(i, e)| o::Embedding {
                object: "embedding".to_owned(),
                index: i as u32,
                embedding: e.values,
            })
            .collect(),
        model: model.to_owned(),
        usage: o::EmbeddingsUsage::default(),
    }
}
