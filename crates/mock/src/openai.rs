//! OpenAI wire formats: chat completions, embeddings, the Responses API, models, errors.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use crate::body::{Events, Fill, Reply, Template, to_bytes};
use crate::faults::Faults;
use crate::text::{self, Output};

/// The fixed `created` timestamp of every object (2023-11-14T22:13:20Z).
pub(crate) const CREATED: u64 = 1_700_000_000;
const FINGERPRINT: &str = "fp_mock";
/// Embedding dimensions when the request does not ask for `dimensions`.
pub(crate) const DEFAULT_DIMENSIONS: usize = 8;
const MAX_DIMENSIONS: u64 = 4096;

/// `POST .../chat/completions`.
pub(crate) fn chat(request: &Value, faults: &Faults, seq: u64) -> Reply {
    let model = text::model(request);
    let input = chat_input_tokens(request);
    let output = Output::new(
        faults.chunks,
        text::first_u64(request, &["max_completion_tokens", "max_tokens"]),
    );
    let id = format!("chatcmpl-mock-{seq}");
    let finish_reason = if output.truncated { "length" } else { "stop" };
    let usage = chat_usage(input, output.words as u64);
    if let Some(name) = text::tool_to_call(request) {
        return chat_tool_call(request, model, &id, input, &name, seq);
    }

    if !text::is_stream(request) {
        return Reply::Json(to_bytes(&json!({
            "id": id,
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": output.text(), "refusal": null},
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
            "usage": usage,
            "system_fingerprint": FINGERPRINT,
        })));
    }

    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let chunk = |choices: Value| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    };
    let choice = |delta: Value, finish_reason: Option<&str>| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]);

    let mut events = Events::new();
    events.data(&chunk(choice(
        json!({"role": "assistant", "content": ""}),
        None,
    )));
    let word = Template::new(&chunk(choice(json!({"content": Template::HOLES[0]}), None)));
    for i in 0..output.words {
        events.data_from(&word, &[Fill::Str(text::delta(i))]);
    }
    events.data(&chunk(choice(json!({}), Some(finish_reason))));
    if include_usage {
        let mut last = chunk(json!([]));
        last["usage"] = usage;
        events.data(&last);
    }
    events.done();
    Reply::Stream(events)
}

/// A reply that calls `name` with [`text::TOOL_ARGS`], JSON or streamed (the id, name
/// and empty arguments first, then the arguments in two halves).
fn chat_tool_call(
    request: &Value,
    model: &str,
    id: &str,
    input: u64,
    name: &str,
    seq: u64,
) -> Reply {
    let call_id = format!("call_mock_{seq}");
    let args = text::TOOL_ARGS.to_string();
    let usage = chat_usage(input, text::TOOL_CALL_TOKENS);
    if !text::is_stream(request) {
        return Reply::Json(to_bytes(&json!({
            "id": id,
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
                ]},
                "logprobs": null,
                "finish_reason": "tool_calls",
            }],
            "usage": usage,
            "system_fingerprint": FINGERPRINT,
        })));
    }
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    };
    let mut events = Events::new();
    events.data(&chunk(json!({"role": "assistant", "content": null}), None));
    events.data(&chunk(
        json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
        None,
    ));
    let (a, b) = args.split_at(args.len() / 2);
    for piece in [a, b] {
        events.data(&chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            None,
        ));
    }
    events.data(&chunk(json!({}), Some("tool_calls")));
    if include_usage {
        events.data(&json!({
            "id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "system_fingerprint": FINGERPRINT, "choices": [], "usage": usage,
        }));
    }
    events.done();
    Reply::Stream(events)
}

/// Words in `messages[].content` (strings, or the `text` of `text` parts); at least 1.
fn chat_input_tokens(request: &Value) -> u64 {
    let words: u64 = request
        .get("messages")
        .and_then(Value::as_array)
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| m.get("content"))
                .map(|c| text::content_words(c, &["text"]))
                .sum()
        })
        .unwrap_or(0);
    words.max(1)
}

fn chat_usage(input: u64, output: u64) -> Value {
    json!({
        "prompt_tokens": input,
        "completion_tokens": output,
        "total_tokens": input + output,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    })
}

/// `POST .../embeddings`; `Err` is a message for a 400.
pub(crate) fn embeddings(request: &Value) -> Result<Reply, String> {
    const BAD_INPUT: &str =
        "'input' must be a non-empty string, array of strings, or array of token arrays";
    // (text the vector is derived from, tokens)
    let inputs: Vec<(String, u64)> = match request.get("input") {
        Some(Value::String(s)) => vec![(s.clone(), text::words(s))],
        Some(Value::Array(items)) if !items.is_empty() => {
            if items.iter().all(Value::is_u64) {
                vec![(Value::Array(items.clone()).to_string(), items.len() as u64)]
            } else {
                items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => Ok((s.clone(), text::words(s))),
                        Value::Array(tokens) if tokens.iter().all(Value::is_u64) => {
                            Ok((item.to_string(), tokens.len() as u64))
                        }
                        _ => Err(BAD_INPUT.to_owned()),
                    })
                    .collect::<Result<_, _>>()?
            }
        }
        _ => return Err(BAD_INPUT.to_owned()),
    };
    let dimensions = match request.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(d) => match d.as_u64() {
            Some(d @ 1..=MAX_DIMENSIONS) => d as usize,
            _ => {
                return Err(format!(
                    "'dimensions' must be an integer in 1..={MAX_DIMENSIONS}"
                ));
            }
        },
    };
    let base64 = match request.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(format!(
                "'encoding_format' must be 'float' or 'base64', not '{other}'"
            ));
        }
    };

    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, (text, _))| {
            let vector = embedding(text, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                Value::String(base64_encode(&bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens = inputs.iter().map(|(_, t)| t).sum::<u64>().max(1);
    Ok(Reply::Json(to_bytes(&json!({
        "object": "list",
        "data": data,
        "model": text::model(request),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))))
}

/// A deterministic unit vector derived from `text`; every value in `[-1, 1]`.
pub(crate) fn embedding(text: &str, dimensions: usize) -> Vec<f32> {
    // FNV-1a seeds splitmix64.
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut vector: Vec<f32> = (0..dimensions)
        .map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
        .collect();
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > f32::EPSILON {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
    vector
}

/// Standard base64 with padding.
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `POST .../responses` (the Responses API).
///
/// A reply cut by `max_output_tokens` is `"status": "incomplete"` with
/// `incomplete_details.reason = "max_output_tokens"`, and its stream ends with
/// `response.incomplete` instead of `response.completed`, as OpenAI does.
pub(crate) fn responses(request: &Value, faults: &Faults, seq: u64) -> Reply {
    let model = text::model(request);
    let input = responses_input_tokens(request);
    let output = Output::new(
        faults.chunks,
        text::first_u64(request, &["max_output_tokens"]),
    );
    let id = format!("resp_mock_{seq}");
    let item_id = format!("msg_mock_{seq}");
    let text = output.text();
    let status = if output.truncated {
        "incomplete"
    } else {
        "completed"
    };
    let output_tokens = output.words as u64;
    let usage = json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + output_tokens,
    });

    let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
    let message = |status: &str, content: Value| json!({"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content});
    let response = |status: &str, output: Value, usage: Value| {
        let mut response = json!({
            "id": id,
            "object": "response",
            "created_at": CREATED,
            "status": status,
            "background": false,
            "error": null,
            "incomplete_details": null,
            "instructions": request.get("instructions").cloned().unwrap_or(Value::Null),
            "max_output_tokens": request.get("max_output_tokens").cloned().unwrap_or(Value::Null),
            "model": model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": null,
            "reasoning": {"effort": null, "summary": null},
            "store": request.get("store").and_then(Value::as_bool).unwrap_or(true),
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "user": null,
            "metadata": {},
        });
        if status == "completed" {
            response["completed_at"] = json!(CREATED);
        } else if status == "incomplete" {
            response["incomplete_details"] = json!({"reason": "max_output_tokens"});
        }
        response
    };
    let final_output = || json!([message(status, json!([part(&text)]))]);

    if !text::is_stream(request) {
        return Reply::Json(to_bytes(&response(status, final_output(), usage)));
    }

    let mut events = ResponseEvents::default();
    let in_progress = response("in_progress", json!([]), Value::Null);
    events.push("response.created", json!({"response": in_progress}));
    events.push("response.in_progress", json!({"response": in_progress}));
    events.push(
        "response.output_item.added",
        json!({"output_index": 0, "item": message("in_progress", json!([]))}),
    );
    let at = |key: &str, value: Value| {
        let mut at = json!({"item_id": item_id, "output_index": 0, "content_index": 0});
        at[key] = value;
        at
    };
    events.push("response.content_part.added", at("part", part("")));
    let mut delta = at("delta", json!(Template::HOLES[0]));
    delta["logprobs"] = json!([]);
    let delta = events.template("response.output_text.delta", delta);
    for i in 0..output.words {
        events.push_from("response.output_text.delta", &delta, text::delta(i));
    }
    let mut done = at("text", json!(text));
    done["logprobs"] = json!([]);
    events.push("response.output_text.done", done);
    events.push("response.content_part.done", at("part", part(&text)));
    events.push(
        "response.output_item.done",
        json!({"output_index": 0, "item": message(status, json!([part(&text)]))}),
    );
    let last = if output.truncated {
        "response.incomplete"
    } else {
        "response.completed"
    };
    events.push(
        last,
        json!({"response": response(status, final_output(), usage)}),
    );
    Reply::Stream(events.events)
}

/// Responses API events: each with its `type` and the next `sequence_number`.
#[derive(Debug, Default)]
struct ResponseEvents {
    events: Events,
    next: u64,
}

impl ResponseEvents {
    fn push(&mut self, name: &str, mut body: Value) {
        body["type"] = json!(name);
        body["sequence_number"] = json!(self.next);
        self.next += 1;
        self.events.event(name, &body);
    }

    /// A template for `body` whose hole 0 is filled by [`push_from`](Self::push_from).
    fn template(&self, name: &str, mut body: Value) -> Template {
        body["type"] = json!(name);
        body["sequence_number"] = json!(Template::HOLES[1]);
        Template::new(&body)
    }

    fn push_from(&mut self, name: &str, template: &Template, fill: &str) {
        let fills = [Fill::Str(fill), Fill::Num(self.next)];
        self.next += 1;
        self.events.event_from(name, template, &fills);
    }
}

/// Words in `input` (a string, or message items whose `content` is a string or parts with
/// `text`) plus `instructions`; at least 1.
fn responses_input_tokens(request: &Value) -> u64 {
    let input = match request.get("input") {
        Some(Value::String(s)) => text::words(s),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.get("content"))
            .map(|content| text::content_words(content, &[]))
            .sum(),
        _ => 0,
    };
    let instructions = request
        .get("instructions")
        .and_then(Value::as_str)
        .map_or(0, text::words);
    (input + instructions).max(1)
}

/// `GET .../models`.
pub(crate) fn models() -> Bytes {
    let model = |id: &str| json!({"id": id, "object": "model", "created": CREATED, "owned_by": "tower-ai-mock"});
    to_bytes(&json!({
        "object": "list",
        "data": [model("mock-model"), model("mock-embedding")],
    }))
}

/// The error body for an injected status.
pub(crate) fn error(status: StatusCode, message: &str) -> Bytes {
    let (kind, code) = match status.as_u16() {
        400 => ("invalid_request_error", "bad_request"),
        401 => ("invalid_request_error", "invalid_api_key"),
        403 => ("permission_error", "permission_denied"),
        404 => ("invalid_request_error", "not_found"),
        408 => ("timeout_error", "timeout"),
        409 => ("invalid_request_error", "conflict"),
        413 => ("invalid_request_error", "request_too_large"),
        422 => ("invalid_request_error", "unprocessable_entity"),
        429 => ("rate_limit_error", "rate_limit_exceeded"),
        500 => ("server_error", "internal_error"),
        502 => ("server_error", "bad_gateway"),
        503 => ("server_error", "service_unavailable"),
        504 => ("server_error", "timeout"),
        s if s < 500 => ("invalid_request_error", "mock_error"),
        _ => ("server_error", "mock_error"),
    };
    to_bytes(&json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
}

/// A 400 body: `type: invalid_request_error`, `code: null`.
pub(crate) fn invalid_request(message: &str) -> Bytes {
    to_bytes(&json!({
        "error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}
    }))
}

/// The 404 body for an unknown path (`code: unknown_url`).
pub(crate) fn unknown_url(method: &http::Method, path: &str) -> Bytes {
    to_bytes(&json!({
        "error": {
            "message": format!("Unknown request URL: {method} {path}."),
            "type": "invalid_request_error",
            "param": null,
            "code": "unknown_url",
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), want);
        }
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding("hello world", 8);
        assert_eq!(a, embedding("hello world", 8));
        assert_ne!(a, embedding("hello world!", 8));
        assert_eq!(a.len(), 8);
        assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
        let norm: f32 = a.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(embedding("x", 3).len(), 3);
    }

    #[test]
    fn input_tokens() {
        let chat = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "one two three"}, {"type": "image_url", "image_url": {"url": "u"}}]}
        ]});
        assert_eq!(chat_input_tokens(&chat), 5);
        assert_eq!(chat_input_tokens(&json!({})), 1);
        let responses = json!({"instructions": "a b", "input": [
            {"role": "user", "content": "c d e"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "f"}]}
        ]});
        assert_eq!(responses_input_tokens(&responses), 6);
        assert_eq!(responses_input_tokens(&json!({"input": "x y"})), 2);
    }
}
