//! Anthropic wire formats: messages (JSON and SSE), token counting, models, errors.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use crate::body::{Events, Fill, Reply, Template, to_bytes};
use crate::faults::Faults;
use crate::text::{self, Output};

/// `POST .../messages`.
pub(crate) fn messages(request: &Value, faults: &Faults, seq: u64) -> Reply {
    let model = text::model(request);
    let input = input_tokens(request);
    let output = Output::new(faults.chunks, text::first_u64(request, &["max_tokens"]));
    let id = format!("msg_mock_{seq}");
    let stop_reason = if output.truncated {
        "max_tokens"
    } else {
        "end_turn"
    };
    let usage = |output_tokens: u64| {
        json!({
            "input_tokens": input,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        })
    };
    let message = |content: Value, stop_reason: Option<&str>, usage: Value| {
        json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": usage,
        })
    };

    if let Some(name) = text::tool_to_call(request) {
        let tool_id = format!("toolu_mock_{seq}");
        let tokens = text::TOOL_CALL_TOKENS;
        if !text::is_stream(request) {
            return Reply::Json(to_bytes(&message(
                json!([{"type": "tool_use", "id": tool_id, "name": name, "input": *text::TOOL_ARGS}]),
                Some("tool_use"),
                usage(tokens),
            )));
        }
        let mut events = Events::new();
        events.event(
            "message_start",
            &json!({"type": "message_start", "message": message(json!([]), None, usage(1))}),
        );
        events.event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}),
        );
        events.event("ping", &json!({"type": "ping"}));
        let args = text::TOOL_ARGS.to_string();
        let (a, b) = args.split_at(args.len() / 2);
        for piece in [a, b] {
            events.event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}}),
            );
        }
        events.event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        );
        events.event(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"output_tokens": tokens},
            }),
        );
        events.event("message_stop", &json!({"type": "message_stop"}));
        return Reply::Stream(events);
    }

    if !text::is_stream(request) {
        return Reply::Json(to_bytes(&message(
            json!([{"type": "text", "text": output.text()}]),
            Some(stop_reason),
            usage(output.words as u64),
        )));
    }

    let mut events = Events::new();
    events.event(
        "message_start",
        &json!({"type": "message_start", "message": message(json!([]), None, usage(1))}),
    );
    events.event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    events.event("ping", &json!({"type": "ping"}));
    let word = Template::new(&json!({
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": Template::HOLES[0]},
    }));
    for i in 0..output.words {
        events.event_from("content_block_delta", &word, &[Fill::Str(text::delta(i))]);
    }
    events.event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    );
    events.event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": output.words},
        }),
    );
    events.event("message_stop", &json!({"type": "message_stop"}));
    Reply::Stream(events)
}

/// `POST .../messages/count_tokens`.
pub(crate) fn count_tokens(request: &Value) -> Bytes {
    to_bytes(&json!({"input_tokens": input_tokens(request)}))
}

/// Words in `system` (a string or text blocks) and `messages[].content` (a string or
/// blocks with `text`); at least 1.
fn input_tokens(request: &Value) -> u64 {
    let system = request
        .get("system")
        .map_or(0, |s| text::content_words(s, &[]));
    let messages: u64 = request
        .get("messages")
        .and_then(Value::as_array)
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| m.get("content"))
                .map(|c| text::content_words(c, &[]))
                .sum()
        })
        .unwrap_or(0);
    (system + messages).max(1)
}

/// `GET .../models` when the request carries `anthropic-version`.
pub(crate) fn models() -> Bytes {
    let model = |id: &str, name: &str| json!({"type": "model", "id": id, "display_name": name, "created_at": "2023-11-14T22:13:20Z"});
    to_bytes(&json!({
        "data": [model("mock-model", "Mock Model")],
        "has_more": false,
        "first_id": "mock-model",
        "last_id": "mock-model",
    }))
}

/// The error body for an injected status.
pub(crate) fn error(status: StatusCode, message: &str) -> Bytes {
    let kind = match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        s if s < 500 => "invalid_request_error",
        _ => "api_error",
    };
    to_bytes(&json!({"type": "error", "error": {"type": kind, "message": message}}))
}

/// A 400 body: `invalid_request_error`.
pub(crate) fn invalid_request(message: &str) -> Bytes {
    error(StatusCode::BAD_REQUEST, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_tokens_count_system_and_blocks() {
        let request = json!({
            "system": [{"type": "text", "text": "be brief"}],
            "messages": [
                {"role": "user", "content": "one two"},
                {"role": "user", "content": [{"type": "text", "text": "three"}, {"type": "image", "source": {}}]}
            ]
        });
        assert_eq!(input_tokens(&request), 5);
        assert_eq!(input_tokens(&json!({"system": "a b c"})), 3);
        assert_eq!(input_tokens(&json!({})), 1);
    }

    #[test]
    fn error_types() {
        let body = |s: u16| {
            serde_json::from_slice::<Value>(&error(StatusCode::from_u16(s).unwrap(), "m")).unwrap()
                ["error"]["type"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(body(429), "rate_limit_error");
        assert_eq!(body(529), "overloaded_error");
        assert_eq!(body(503), "overloaded_error");
        assert_eq!(body(500), "api_error");
        assert_eq!(body(418), "invalid_request_error");
    }
}
