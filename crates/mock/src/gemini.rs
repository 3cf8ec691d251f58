//! Gemini wire formats: `generateContent`, `streamGenerateContent` (SSE),
//! `batchEmbedContents` / `embedContent`, errors.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use crate::body::{Events, Reply, to_bytes};
use crate::faults::Faults;
use crate::openai::{DEFAULT_DIMENSIONS, embedding};
use crate::text::{self, Output};

/// `POST .../models/{model}:generateContent` and `:streamGenerateContent`.
pub(crate) fn generate(
    request: &Value,
    model: &str,
    stream: bool,
    faults: &Faults,
    seq: u64,
) -> Reply {
    let input = input_tokens(request);
    let id = format!("gemini_mock_{seq}");
    let config = request.get("generationConfig");
    let output = Output::new(
        faults.chunks,
        config
            .and_then(|c| c.get("maxOutputTokens"))
            .and_then(Value::as_u64),
    );
    let usage = |out: u64| json!({"promptTokenCount": input, "candidatesTokenCount": out, "totalTokenCount": input + out});
    let response = |parts: Value, finish: Option<&str>, usage: Option<Value>| {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        let mut r = json!({"candidates": [candidate], "modelVersion": model, "responseId": id});
        if let Some(u) = usage {
            r["usageMetadata"] = u;
        }
        r
    };

    if let Some(name) = tool_to_call(request) {
        let call =
            json!([{"functionCall": {"name": name, "args": crate::text::TOOL_ARGS.clone()}}]);
        let body = response(call, Some("STOP"), Some(usage(text::TOOL_CALL_TOKENS)));
        if !stream {
            return Reply::Json(to_bytes(&body));
        }
        let mut events = Events::new();
        events.data(&body);
        return Reply::Stream(events);
    }

    let finish = if output.truncated {
        "MAX_TOKENS"
    } else {
        "STOP"
    };
    if !stream {
        return Reply::Json(to_bytes(&response(
            json!([{"text": output.text()}]),
            Some(finish),
            Some(usage(output.words as u64)),
        )));
    }
    let mut events = Events::new();
    for i in 0..output.words {
        let last = i + 1 == output.words;
        events.data(&response(
            json!([{"text": text::delta(i)}]),
            last.then_some(finish),
            last.then(|| usage(output.words as u64)),
        ));
    }
    Reply::Stream(events)
}

/// The function the reply calls, when the request offers any and the last turn is not a
/// function's result: the first allowed one.
fn tool_to_call(request: &Value) -> Option<String> {
    let mode = request
        .pointer("/toolConfig/functionCallingConfig/mode")
        .and_then(Value::as_str);
    if mode == Some("NONE") {
        return None;
    }
    let answered = request
        .get("contents")
        .and_then(Value::as_array)
        .and_then(|c| c.last())
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .is_some_and(|parts| parts.iter().any(|p| p.get("functionResponse").is_some()));
    if answered {
        return None;
    }
    if let Some(name) = request
        .pointer("/toolConfig/functionCallingConfig/allowedFunctionNames/0")
        .and_then(Value::as_str)
    {
        return Some(name.to_owned());
    }
    request
        .get("tools")?
        .as_array()?
        .iter()
        .filter_map(|t| t.get("functionDeclarations").and_then(Value::as_array))
        .flatten()
        .find_map(|f| f.get("name").and_then(Value::as_str))
        .map(str::to_owned)
}

/// Words in `systemInstruction` and `contents[].parts[].text`; at least 1.
fn input_tokens(request: &Value) -> u64 {
    let parts_words = |content: &Value| -> u64 {
        content
            .get("parts")
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .map(text::words)
                    .sum()
            })
            .unwrap_or(0)
    };
    let system = request.get("systemInstruction").map_or(0, parts_words);
    let contents: u64 = request
        .get("contents")
        .and_then(Value::as_array)
        .map(|c| c.iter().map(parts_words).sum())
        .unwrap_or(0);
    (system + contents).max(1)
}

/// `POST .../models/{model}:batchEmbedContents` (`requests`) or `:embedContent`.
pub(crate) fn embed(request: &Value, batch: bool) -> Result<Reply, String> {
    let one = |r: &Value| -> Result<Value, String> {
        let text: String = r
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .ok_or_else(|| "each request needs content.parts".to_owned())?
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        let dims = r
            .get("outputDimensionality")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_DIMENSIONS, |d| d.clamp(1, 4096) as usize);
        Ok(json!({"values": embedding(&text, dims)}))
    };
    if !batch {
        return Ok(Reply::Json(to_bytes(&json!({"embedding": one(request)?}))));
    }
    let requests = request
        .get("requests")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| "'requests' must be a non-empty array".to_owned())?;
    let embeddings = requests.iter().map(one).collect::<Result<Vec<_>, _>>()?;
    Ok(Reply::Json(to_bytes(&json!({"embeddings": embeddings}))))
}

/// The error body: `{"error":{"code","message","status"}}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Bytes {
    let name = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if s < 500 => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    };
    to_bytes(&json!({"error": {"code": status.as_u16(), "message": message, "status": name}}))
}

/// A 400 body.
pub(crate) fn invalid_request(message: &str) -> Bytes {
    error(StatusCode::BAD_REQUEST, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_only_when_unanswered() {
        let tools = json!([{"functionDeclarations": [{"name": "f"}, {"name": "g"}]}]);
        let ask =
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "tools": tools});
        assert_eq!(tool_to_call(&ask).as_deref(), Some("f"));
        let mut named = ask.clone();
        named["toolConfig"] =
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["g"]}});
        assert_eq!(tool_to_call(&named).as_deref(), Some("g"));
        let answered = json!({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}], "tools": tools});
        assert_eq!(tool_to_call(&answered), None);
        assert_eq!(
            input_tokens(
                &json!({"systemInstruction": {"parts": [{"text": "a b"}]}, "contents": [{"parts": [{"text": "c"}]}]})
            ),
            3
        );
    }
}
