//! The mock provider over real sockets: every wire format, every fault, the counters and
//! the binary.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tower_ai_mock::{Faults, MockConfig, MockProvider, Stats, reply_words};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

fn request(
    mock: &MockProvider,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("{}{path}", mock.url()))
        .header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body.into())).unwrap()
}

/// A whole response.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// `(event name, data)` of every SSE event.
    fn events(&self) -> Vec<(Option<String>, String)> {
        sse(&self.body)
    }
}

async fn send(client: &HttpClient, request: Request<Full<Bytes>>) -> Reply {
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn post(mock: &MockProvider, path: &str, headers: &[(&str, &str)], body: Value) -> Reply {
    send(
        &client(),
        request(mock, Method::POST, path, headers, body.to_string()),
    )
    .await
}

fn sse(body: &[u8]) -> Vec<(Option<String>, String)> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.ends_with("\n\n"), "{text:?}");
    text.split_terminator("\n\n")
        .map(|event| {
            let mut name = None;
            let mut data = None;
            for line in event.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = Some(value.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = Some(value.to_owned());
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (name, data.expect("every event has data"))
        })
        .collect()
}

fn data_json(events: &[(Option<String>, String)]) -> Vec<Value> {
    events
        .iter()
        .filter(|(_, data)| data != "[DONE]")
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .collect()
}

/// Five input words across a system and a user message.
fn chat_body() -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Say hi"}, {"type": "image_url", "image_url": {"url": "http://x/y z"}}]}
        ]
    })
}

fn with(mut value: Value, key: &str, extra: Value) -> Value {
    value[key] = extra;
    value
}

// ---------------------------------------------------------------- OpenAI chat completions

#[tokio::test]
async fn chat_completion_exact_usage() {
    let mock = MockProvider::start().await.unwrap();
    let reply = post(&mock, "/v1/chat/completions", &[], chat_body()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/json");
    let body = reply.json();
    assert_eq!(
        body,
        json!({
            "id": "chatcmpl-mock-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": reply_words(16), "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": 5,
                "completion_tokens": 16,
                "total_tokens": 21,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "system_fingerprint": "fp_mock",
        })
    );

    // max_tokens below 16 cuts the reply: finish_reason "length"; ids count up.
    let reply = post(
        &mock,
        "/openai/v1/chat/completions",
        &[],
        with(chat_body(), "max_tokens", json!(4)),
    )
    .await;
    let body = reply.json();
    assert_eq!(body["id"], "chatcmpl-mock-2");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from the mock"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 4);

    // max_completion_tokens too; a model-less Azure-style request gets `mock-model`.
    let azure =
        json!({"messages": [{"role": "user", "content": "one"}], "max_completion_tokens": 2});
    let reply = post(
        &mock,
        "/openai/deployments/gpt/chat/completions?api-version=2024-10-21",
        &[],
        azure,
    )
    .await;
    let body = reply.json();
    assert_eq!(body["model"], "mock-model");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from");
    assert_eq!(body["usage"]["total_tokens"], 3);

    // The chunks fault wins over max_tokens and reads "stop".
    let reply = post(
        &mock,
        "/v1/chat/completions",
        &[("x-mock-chunks", "20")],
        with(chat_body(), "max_tokens", json!(4)),
    )
    .await;
    let body = reply.json();
    assert_eq!(body["choices"][0]["message"]["content"], reply_words(20));
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["completion_tokens"], 20);
}

#[tokio::test]
async fn chat_stream_concatenates_to_the_non_streamed_content() {
    let mock = MockProvider::start().await.unwrap();
    let plain = post(&mock, "/v1/chat/completions", &[], chat_body())
        .await
        .json();
    let reply = post(
        &mock,
        "/v1/chat/completions",
        &[],
        with(chat_body(), "stream", json!(true)),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "text/event-stream");
    assert_eq!(reply.headers["cache-control"], "no-cache");
    assert!(reply.headers.get("content-length").is_none());

    let events = reply.events();
    assert_eq!(events.len(), 16 + 3);
    assert!(events.iter().all(|(name, _)| name.is_none()));
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks = data_json(&events);
    for chunk in &chunks {
        assert_eq!(chunk["id"], "chatcmpl-mock-2");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gpt-4o-mini");
        assert_eq!(chunk["system_fingerprint"], "fp_mock");
        assert!(
            chunk.get("usage").is_none(),
            "no usage unless asked: {chunk}"
        );
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let content: String = chunks[1..17]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        content,
        plain["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hello");
    assert_eq!(chunks[2]["choices"][0]["delta"]["content"], " from");
    let last = &chunks[17]["choices"][0];
    assert_eq!(last["delta"], json!({}));
    assert_eq!(last["finish_reason"], "stop");
}

#[tokio::test]
async fn chat_stream_usage_chunk_only_when_asked() {
    let mock = MockProvider::start().await.unwrap();
    let body = with(
        with(chat_body(), "stream", json!(true)),
        "stream_options",
        json!({"include_usage": true}),
    );
    let reply = post(
        &mock,
        "/v1/chat/completions",
        &[("x-mock-chunks", "3")],
        body,
    )
    .await;
    let events = reply.events();
    assert_eq!(events.len(), 3 + 4);
    let chunks = data_json(&events);
    for chunk in &chunks[..chunks.len() - 1] {
        assert_eq!(chunk["usage"], Value::Null);
        assert!(chunk.get("usage").is_some());
    }
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 5);
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 3);
    assert_eq!(usage_chunk["usage"]["total_tokens"], 8);
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );

    // include_usage: false is the same as not asking.
    let body = with(
        with(chat_body(), "stream", json!(true)),
        "stream_options",
        json!({"include_usage": false}),
    );
    let chunks = data_json(
        &post(&mock, "/v1/chat/completions", &[], body)
            .await
            .events(),
    );
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
}

// ---------------------------------------------------------------- OpenAI embeddings

#[tokio::test]
async fn embeddings_float_base64_and_dimensions() {
    let mock = MockProvider::start().await.unwrap();
    let body =
        json!({"model": "text-embedding-3-small", "input": ["hello world", "one two three"]});
    let floats = post(&mock, "/v1/embeddings", &[], body.clone())
        .await
        .json();
    assert_eq!(floats["object"], "list");
    assert_eq!(floats["model"], "text-embedding-3-small");
    assert_eq!(
        floats["usage"],
        json!({"prompt_tokens": 5, "total_tokens": 5})
    );
    let data = floats["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        let vector = item["embedding"].as_array().unwrap();
        assert_eq!(vector.len(), 8);
        assert!(
            vector
                .iter()
                .all(|v| (-1.0..=1.0).contains(&v.as_f64().unwrap()))
        );
    }
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);

    // Deterministic: the same input gets the same vector.
    let again = post(
        &mock,
        "/v1/embeddings",
        &[],
        json!({"input": "hello world"}),
    )
    .await
    .json();
    assert_eq!(again["data"][0]["embedding"], data[0]["embedding"]);
    assert_eq!(again["usage"]["prompt_tokens"], 2);
    assert_eq!(again["model"], "mock-model");

    // base64: little-endian f32s of the same vector.
    let encoded = post(
        &mock,
        "/v1/embeddings",
        &[],
        with(body, "encoding_format", json!("base64")),
    )
    .await
    .json();
    let bytes = base64_decode(encoded["data"][0]["embedding"].as_str().unwrap());
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let expected: Vec<f32> = data[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(decoded, expected);

    let small = post(
        &mock,
        "/v1/embeddings",
        &[],
        json!({"input": "x", "dimensions": 3}),
    )
    .await
    .json();
    assert_eq!(small["data"][0]["embedding"].as_array().unwrap().len(), 3);

    let tokens = post(
        &mock,
        "/v1/embeddings",
        &[],
        json!({"input": [[1, 2, 3], [4]]}),
    )
    .await
    .json();
    assert_eq!(tokens["usage"]["prompt_tokens"], 4);
    assert_eq!(tokens["data"].as_array().unwrap().len(), 2);

    for bad in [
        json!({}),
        json!({"input": []}),
        json!({"input": [1, "a"]}),
        json!({"input": "a", "dimensions": 0}),
        json!({"input": "a", "encoding_format": "hex"}),
    ] {
        let reply = post(&mock, "/v1/embeddings", &[], bad.clone()).await;
        assert_eq!(reply.status, 400, "{bad}");
        assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|&c| c != b'=') {
        acc = acc << 6 | ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

// ---------------------------------------------------------------- OpenAI Responses API

#[tokio::test]
async fn responses_api_json_and_stream() {
    let mock = MockProvider::start().await.unwrap();
    let body = json!({"model": "gpt-4.1", "instructions": "Be brief.", "input": "Tell me a joke"});
    let plain = post(&mock, "/v1/responses", &[], body.clone()).await.json();
    assert_eq!(plain["id"], "resp_mock_1");
    assert_eq!(plain["object"], "response");
    assert_eq!(plain["status"], "completed");
    assert_eq!(plain["model"], "gpt-4.1");
    assert_eq!(plain["instructions"], "Be brief.");
    let item = &plain["output"][0];
    assert_eq!(item["type"], "message");
    assert_eq!(item["id"], "msg_mock_1");
    assert_eq!(item["status"], "completed");
    assert_eq!(item["role"], "assistant");
    assert_eq!(item["content"][0]["type"], "output_text");
    assert_eq!(item["content"][0]["text"], reply_words(16));
    assert_eq!(item["content"][0]["annotations"], json!([]));
    assert_eq!(
        plain["usage"],
        json!({
            "input_tokens": 6,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 16,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 22,
        })
    );

    let reply = post(
        &mock,
        "/v1/responses",
        &[],
        with(body.clone(), "stream", json!(true)),
    )
    .await;
    assert_eq!(reply.headers["content-type"], "text/event-stream");
    let events = reply.events();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected.extend(std::iter::repeat_n("response.output_text.delta", 16));
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names, expected);
    let data = data_json(&events);
    for (i, (event, (name, _))) in data.iter().zip(&events).enumerate() {
        assert_eq!(event["type"], name.as_deref().unwrap());
        assert_eq!(event["sequence_number"], i);
    }
    assert_eq!(data[0]["response"]["status"], "in_progress");
    assert_eq!(data[0]["response"]["usage"], Value::Null);
    let deltas: String = data[4..20]
        .iter()
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, reply_words(16));
    assert_eq!(data[20]["text"], reply_words(16));
    let completed = &data.last().unwrap()["response"];
    assert_eq!(completed["id"], "resp_mock_2");
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["usage"], plain["usage"]);
    assert_eq!(
        completed["output"][0]["content"][0]["text"],
        reply_words(16)
    );

    // Array input with content parts; max_output_tokens cuts it: "incomplete".
    let body = json!({
        "input": [
            {"role": "user", "content": "a b"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "c"}]}
        ],
        "max_output_tokens": 3,
    });
    let plain = post(&mock, "/v1/responses", &[], body.clone()).await.json();
    assert_eq!(plain["status"], "incomplete");
    assert_eq!(plain["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(plain["usage"]["input_tokens"], 3);
    assert_eq!(plain["usage"]["output_tokens"], 3);
    let events = post(
        &mock,
        "/v1/responses",
        &[],
        with(body, "stream", json!(true)),
    )
    .await
    .events();
    assert_eq!(events.len(), 3 + 8);
    assert_eq!(
        events.last().unwrap().0.as_deref(),
        Some("response.incomplete")
    );
    let last = &data_json(&events)[10];
    assert_eq!(last["response"]["usage"]["output_tokens"], 3);
}

// ---------------------------------------------------------------- Anthropic messages

fn anthropic_body() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi please"}]}]
    })
}

#[tokio::test]
async fn anthropic_message_json_and_stream() {
    let mock = MockProvider::start().await.unwrap();
    let plain = post(&mock, "/anthropic/v1/messages", &[], anthropic_body()).await;
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.json(),
        json!({
            "id": "msg_mock_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": reply_words(16)}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {
                "input_tokens": 6,
                "output_tokens": 16,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        })
    );

    let reply = post(
        &mock,
        "/v1/messages",
        &[],
        with(anthropic_body(), "stream", json!(true)),
    )
    .await;
    assert_eq!(reply.headers["content-type"], "text/event-stream");
    let events = reply.events();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", 16));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    let data = data_json(&events);
    for (event, (name, _)) in data.iter().zip(&events) {
        assert_eq!(event["type"], name.as_deref().unwrap());
    }
    let start = &data[0]["message"];
    assert_eq!(start["id"], "msg_mock_2");
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(start["usage"]["input_tokens"], 6);
    assert_eq!(start["usage"]["output_tokens"], 1);
    assert_eq!(
        data[1]["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = data[3..19]
        .iter()
        .map(|e| {
            assert_eq!(e["delta"]["type"], "text_delta");
            e["delta"]["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(text, reply_words(16));
    assert_eq!(
        data[20],
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": 16},
        })
    );

    // max_tokens below 16: stop_reason "max_tokens".
    let short = with(anthropic_body(), "max_tokens", json!(2));
    let plain = post(&mock, "/v1/messages", &[], short.clone()).await.json();
    assert_eq!(plain["stop_reason"], "max_tokens");
    assert_eq!(plain["content"][0]["text"], "Hello from");
    let data = data_json(
        &post(
            &mock,
            "/v1/messages",
            &[],
            with(short, "stream", json!(true)),
        )
        .await
        .events(),
    );
    assert_eq!(data.len(), 2 + 6);
    assert_eq!(data[6]["delta"]["stop_reason"], "max_tokens");
    assert_eq!(data[6]["usage"]["output_tokens"], 2);

    let count = post(&mock, "/v1/messages/count_tokens", &[], anthropic_body())
        .await
        .json();
    assert_eq!(count, json!({"input_tokens": 6}));
}

// ---------------------------------------------------------------- routes and errors

#[tokio::test]
async fn models_healthz_not_found_and_bad_json() {
    let mock = MockProvider::start().await.unwrap();
    let client = client();

    let health = send(&client, request(&mock, Method::GET, "/healthz", &[], "")).await;
    assert_eq!(
        (health.status, &health.body[..]),
        (StatusCode::OK, &b"ok"[..])
    );
    assert_eq!(mock.requests(), 0, "/healthz is not counted");
    assert!(mock.last_request().is_none());

    let models = send(&client, request(&mock, Method::GET, "/v1/models", &[], ""))
        .await
        .json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "mock-model");
    assert_eq!(models["data"][0]["object"], "model");
    let models = send(
        &client,
        request(
            &mock,
            Method::GET,
            "/anthropic/v1/models",
            &[("anthropic-version", "2023-06-01")],
            "",
        ),
    )
    .await
    .json();
    assert_eq!(models["data"][0]["type"], "model");
    assert_eq!(models["has_more"], false);

    let missing = send(&client, request(&mock, Method::POST, "/v1/nope", &[], "{}")).await;
    assert_eq!(missing.status, 404);
    let error = missing.json();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["code"], "unknown_url");
    assert_eq!(error["error"]["param"], Value::Null);

    let wrong_method = send(
        &client,
        request(&mock, Method::GET, "/v1/chat/completions", &[], ""),
    )
    .await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.headers["allow"], "POST");

    let bad = send(
        &client,
        request(
            &mock,
            Method::POST,
            "/v1/chat/completions",
            &[],
            "{not json",
        ),
    )
    .await;
    assert_eq!(bad.status, 400);
    let error = bad.json();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["code"], Value::Null);
    assert_eq!(error["error"]["param"], Value::Null);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("parse")
    );

    let bad = send(
        &client,
        request(&mock, Method::POST, "/v1/messages", &[], "[1,2]"),
    )
    .await;
    assert_eq!(bad.status, 400);
    let error = bad.json();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(error["error"]["message"].is_string());

    let bad_fault = send(
        &client,
        request(
            &mock,
            Method::POST,
            "/v1/chat/completions",
            &[("x-mock-latency-ms", "soon")],
            "{}",
        ),
    )
    .await;
    assert_eq!(bad_fault.status, 400);
    assert!(
        bad_fault.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-mock-latency-ms")
    );

    let stats = mock.stats();
    assert_eq!(stats.requests, 7);
    assert_eq!(stats.completed, 7);
    assert_eq!(stats.errors, 0, "only injected statuses count as errors");
}

#[tokio::test]
async fn records_every_request() {
    let mock = MockProvider::start().await.unwrap();
    post(
        &mock,
        "/openai/v1/chat/completions?trace=1",
        &[("authorization", "Bearer sk-test"), ("X-Custom", "yes")],
        chat_body(),
    )
    .await;
    post(&mock, "/v1/messages", &[], anthropic_body()).await;
    let recorded = mock.recorded();
    assert_eq!(recorded.len(), 2);
    let first = &recorded[0];
    assert_eq!(first.method, Method::POST);
    assert_eq!(first.uri.path(), "/openai/v1/chat/completions");
    assert_eq!(first.uri.query(), Some("trace=1"));
    assert_eq!(first.headers["authorization"], "Bearer sk-test");
    assert_eq!(first.headers["x-custom"], "yes");
    assert_eq!(
        serde_json::from_slice::<Value>(&first.body).unwrap(),
        chat_body()
    );
    assert_eq!(mock.last_request().unwrap().uri.path(), "/v1/messages");

    mock.reset_stats();
    assert_eq!(mock.stats(), Stats::default());
    assert_eq!(
        mock.recorded().len(),
        2,
        "reset_stats keeps the recorded requests"
    );
    mock.clear_recorded();
    assert!(mock.recorded().is_empty());
}

// ---------------------------------------------------------------- faults

#[tokio::test(start_paused = true)]
async fn latency_delays_the_head_under_a_paused_clock() {
    let mock = MockProvider::start().await.unwrap();
    let start = Instant::now();
    let reply = post(
        &mock,
        "/v1/chat/completions",
        &[("x-mock-latency-ms", "5000")],
        chat_body(),
    )
    .await;
    assert_eq!(reply.status, 200);
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(5) && elapsed < Duration::from_millis(5100),
        "{elapsed:?}"
    );

    // Configured latency applies to every request.
    let mock = MockProvider::start_with(MockConfig {
        faults: Faults {
            latency: Some(Duration::from_secs(2)),
            ..Faults::default()
        },
    })
    .await
    .unwrap();
    let start = Instant::now();
    post(&mock, "/v1/messages", &[], anthropic_body()).await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_millis(2100),
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn stream_timing_one_frame_per_event_under_a_paused_clock() {
    let mock = MockProvider::start().await.unwrap();
    let req = request(
        &mock,
        Method::POST,
        "/v1/chat/completions",
        &[
            ("x-mock-ttft-ms", "1000"),
            ("x-mock-chunk-delay-ms", "100"),
            ("x-mock-chunks", "4"),
        ],
        with(chat_body(), "stream", json!(true)).to_string(),
    );
    let start = Instant::now();
    let response = client().request(req).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(10),
        "the head comes before the ttft"
    );
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        frames.push((start.elapsed(), data));
    }
    // role, 4 words, finish, [DONE]
    assert_eq!(frames.len(), 7);
    for (i, (at, data)) in frames.iter().enumerate() {
        let want = Duration::from_millis(1000 + 100 * i as u64);
        assert!(
            *at >= want && *at < want + Duration::from_millis(20),
            "frame {i} at {at:?}"
        );
        assert_eq!(sse(data).len(), 1, "one event per frame: {data:?}");
    }
}

#[tokio::test]
async fn status_faults_use_each_format_error_body() {
    let mock = MockProvider::start().await.unwrap();
    let reply = post(
        &mock,
        "/v1/chat/completions",
        &[("x-mock-status", "429"), ("x-mock-retry-after", "7")],
        chat_body(),
    )
    .await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.headers["retry-after"], "7");
    assert_eq!(
        reply.json(),
        json!({"error": {"message": "mock error", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}})
    );

    let reply = post(
        &mock,
        "/v1/chat/completions",
        &[("x-mock-status", "500")],
        chat_body(),
    )
    .await;
    assert_eq!(reply.status, 500);
    assert!(reply.headers.get("retry-after").is_none());
    assert_eq!(reply.json()["error"]["type"], "server_error");

    let reply = post(
        &mock,
        "/v1/messages",
        &[("x-mock-status", "529")],
        anthropic_body(),
    )
    .await;
    assert_eq!(reply.status.as_u16(), 529);
    assert_eq!(
        reply.json(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "mock error"}})
    );
    let reply = post(
        &mock,
        "/v1/messages",
        &[("x-mock-status", "429")],
        anthropic_body(),
    )
    .await;
    assert_eq!(reply.json()["error"]["type"], "rate_limit_error");

    let stats = mock.stats();
    assert_eq!((stats.requests, stats.errors, stats.completed), (4, 4, 4));

    // Configured for every request; headers override field by field.
    let mock = MockProvider::start_with(MockConfig {
        faults: Faults {
            status: Some(503),
            retry_after: Some(1),
            ..Faults::default()
        },
    })
    .await
    .unwrap();
    let reply = post(&mock, "/v1/embeddings", &[], json!({"input": "x"})).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.headers["retry-after"], "1");
    let reply = post(
        &mock,
        "/v1/embeddings",
        &[("x-mock-status", "502")],
        json!({"input": "x"}),
    )
    .await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.headers["retry-after"], "1");
}

/// A raw HTTP/1.1 POST.
fn raw_request(path: &str, headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{headers}\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn hang_then_client_drop_counts_as_cancelled() {
    let mock = MockProvider::start().await.unwrap();
    let mut stream = TcpStream::connect(mock.addr()).await.unwrap();
    let body = chat_body().to_string();
    stream
        .write_all(raw_request("/v1/chat/completions", "x-mock-hang: true\r\n", &body).as_bytes())
        .await
        .unwrap();
    timeout(Duration::from_secs(5), mock.wait_for_requests(1))
        .await
        .unwrap();

    // No head arrives.
    let mut buf = [0u8; 64];
    assert!(
        timeout(Duration::from_millis(200), stream.read(&mut buf))
            .await
            .is_err()
    );
    assert_eq!(mock.stats().cancelled, 0);

    drop(stream);
    timeout(Duration::from_secs(5), mock.wait_for_cancelled(1))
        .await
        .unwrap();
    let stats = mock.stats();
    assert_eq!(
        (stats.requests, stats.cancelled, stats.completed),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn client_timeout_on_a_hang_counts_as_cancelled() {
    for client in [client(), h2_client()] {
        let mock = MockProvider::start().await.unwrap();
        let req = request(
            &mock,
            Method::POST,
            "/v1/chat/completions",
            &[("x-mock-hang", "true")],
            chat_body().to_string(),
        );
        let timed_out = timeout(Duration::from_millis(100), client.request(req)).await;
        assert!(timed_out.is_err());
        timeout(Duration::from_secs(5), mock.wait_for_cancelled(1))
            .await
            .expect("the mock sees the client give up");
        assert_eq!(mock.stats().requests, 1);
    }
}

#[tokio::test]
async fn client_drop_during_latency_or_mid_stream_counts_as_cancelled() {
    let mock = MockProvider::start().await.unwrap();

    // During latency.
    let mut stream = TcpStream::connect(mock.addr()).await.unwrap();
    let body = chat_body().to_string();
    stream
        .write_all(
            raw_request(
                "/v1/chat/completions",
                "x-mock-latency-ms: 60000\r\n",
                &body,
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    timeout(Duration::from_secs(5), mock.wait_for_requests(1))
        .await
        .unwrap();
    drop(stream);
    timeout(Duration::from_secs(5), mock.wait_for_cancelled(1))
        .await
        .unwrap();

    // Mid-stream, with hyper's client.
    let req = request(
        &mock,
        Method::POST,
        "/v1/messages",
        &[("x-mock-chunk-delay-ms", "60000")],
        with(anthropic_body(), "stream", json!(true)).to_string(),
    );
    let response = client().request(req).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(first.starts_with(b"event: message_start\n"));
    drop(body);
    timeout(Duration::from_secs(5), mock.wait_for_cancelled(2))
        .await
        .unwrap();
    let stats = mock.stats();
    assert_eq!(
        (
            stats.requests,
            stats.cancelled,
            stats.completed,
            stats.resets
        ),
        (2, 2, 0, 0)
    );
}

#[tokio::test]
async fn reset_after_aborts_the_stream() {
    let mock = MockProvider::start().await.unwrap();
    let req = request(
        &mock,
        Method::POST,
        "/v1/chat/completions",
        &[("x-mock-reset-after", "3")],
        with(chat_body(), "stream", json!(true)).to_string(),
    );
    let response = client().request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut events = 0;
    let error = loop {
        match body.frame().await {
            Some(Ok(frame)) => events += sse(&frame.into_data().unwrap()).len(),
            Some(Err(error)) => break error,
            None => panic!("the stream ended cleanly"),
        }
    };
    assert_eq!(events, 3);
    assert!(
        error.is_incomplete_message() || error.is_body_write_aborted() || error.source_is_io(),
        "{error:?}"
    );
    timeout(Duration::from_secs(5), mock.wait_for(|s| s.resets >= 1))
        .await
        .unwrap();

    // On the wire: a chunked body without its terminating chunk, then the socket closes.
    let mut stream = TcpStream::connect(mock.addr()).await.unwrap();
    let body = with(anthropic_body(), "stream", json!(true)).to_string();
    stream
        .write_all(raw_request("/v1/messages", "x-mock-reset-after: 1\r\n", &body).as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .ok();
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(raw.contains("transfer-encoding: chunked"), "{raw}");
    assert!(raw.contains("event: message_start"), "{raw}");
    assert!(!raw.contains("content_block_start"), "{raw}");
    assert!(!raw.ends_with("0\r\n\r\n"), "{raw}");

    // A whole JSON body is cut in half.
    let req = request(
        &mock,
        Method::POST,
        "/v1/chat/completions",
        &[("x-mock-reset-after", "1")],
        chat_body().to_string(),
    );
    let response = client().request(req).await.unwrap();
    assert!(response.into_body().collect().await.is_err());

    let stats = mock.stats();
    assert_eq!(
        (
            stats.requests,
            stats.resets,
            stats.completed,
            stats.cancelled
        ),
        (3, 3, 0, 0)
    );
}

trait HyperErrorExt {
    fn source_is_io(&self) -> bool;
}

impl HyperErrorExt for hyper::Error {
    fn source_is_io(&self) -> bool {
        std::error::Error::source(self).is_some_and(|s| s.is::<std::io::Error>())
    }
}

// ---------------------------------------------------------------- protocol and lifecycle

#[tokio::test]
async fn speaks_h2c() {
    let mock = MockProvider::start().await.unwrap();
    let client = h2_client();
    let reply = send(
        &client,
        request(
            &mock,
            Method::POST,
            "/v1/chat/completions",
            &[],
            chat_body().to_string(),
        ),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["usage"]["total_tokens"], 21);
    let reply = send(
        &client,
        request(
            &mock,
            Method::POST,
            "/v1/chat/completions",
            &[("x-mock-chunks", "2")],
            with(chat_body(), "stream", json!(true)).to_string(),
        ),
    )
    .await;
    assert_eq!(reply.events().len(), 2 + 3);

    // A reset over h2 resets the stream, not the connection.
    let req = request(
        &mock,
        Method::POST,
        "/v1/messages",
        &[("x-mock-reset-after", "2")],
        with(anthropic_body(), "stream", json!(true)).to_string(),
    );
    let response = client.request(req).await.unwrap();
    let mut body = response.into_body();
    let mut events = 0;
    let error = loop {
        match body.frame().await {
            Some(Ok(frame)) => events += sse(&frame.into_data().unwrap()).len(),
            Some(Err(error)) => break error,
            None => panic!("the stream ended cleanly"),
        }
    };
    assert_eq!(events, 2);
    assert!(format!("{error:?}").contains("Reset"), "{error:?}");
    let reply = send(
        &client,
        request(
            &mock,
            Method::POST,
            "/v1/messages",
            &[],
            anthropic_body().to_string(),
        ),
    )
    .await;
    assert_eq!(reply.status, 200);
    let stats = mock.stats();
    assert_eq!(
        (
            stats.connections,
            stats.requests,
            stats.completed,
            stats.resets
        ),
        (1, 4, 3, 1)
    );
}

#[tokio::test]
async fn counts_connections_and_shuts_down() {
    let mock = MockProvider::start().await.unwrap();
    assert!(mock.url().starts_with("http://127.0.0.1:"));
    assert!(!mock.url().ends_with('/'));
    let client = client();
    for _ in 0..3 {
        send(
            &client,
            request(
                &mock,
                Method::POST,
                "/v1/chat/completions",
                &[],
                chat_body().to_string(),
            ),
        )
        .await;
    }
    post(&mock, "/v1/chat/completions", &[], chat_body()).await;
    let stats = mock.stats();
    assert_eq!(
        (stats.requests, stats.completed, stats.connections),
        (4, 4, 2),
        "keep-alive reuses the first connection"
    );

    let addr = mock.addr();
    mock.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err());

    let mock = MockProvider::start().await.unwrap();
    let addr = mock.addr();
    drop(mock);
    tokio::task::yield_now().await;
    let refused = timeout(Duration::from_secs(5), async {
        loop {
            if TcpStream::connect(addr).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
    });
    refused.await.expect("dropping the mock stops accepting");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_streams() {
    let mock = MockProvider::start().await.unwrap();
    let req = request(
        &mock,
        Method::POST,
        "/v1/chat/completions",
        &[("x-mock-chunk-delay-ms", "20"), ("x-mock-chunks", "5")],
        with(chat_body(), "stream", json!(true)).to_string(),
    );
    let response = client().request(req).await.unwrap();
    let collect = tokio::spawn(response.into_body().collect());
    mock.wait_for_requests(1).await;
    mock.shutdown().await;
    let body = collect.await.unwrap().unwrap().to_bytes();
    assert_eq!(sse(&body).len(), 5 + 3);
}

#[tokio::test]
async fn binary_serves_until_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut child = Command::new(env!("CARGO_BIN_EXE_mock-provider"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--chunks",
            "3",
            "--latency-ms",
            "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("mock-provider listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let req = Request::post(format!("{url}/v1/chat/completions"))
        .body(Full::new(Bytes::from(chat_body().to_string())))
        .unwrap();
    let reply = send(&client(), req).await;
    assert_eq!(
        reply.json()["choices"][0]["message"]["content"],
        reply_words(3)
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}
