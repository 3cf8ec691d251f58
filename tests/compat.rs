//! `/compat`: one API for every provider, over real sockets against the mock provider.
//!
//! The OpenAI SDK (`async-openai`) talks to `/compat/chat/completions` with
//! `anthropic/...` and `google-ai-studio/...` models, streamed and not, tools included,
//! and parses every chunk. The Anthropic side here is a strict client (`reqwest` plus
//! serde types that follow Anthropic's documented message and event schemas with every
//! required field and `deny_unknown_fields`, so an answer off the schema fails); the
//! official Anthropic SDK (Python) runs against the same endpoint in `sdk_anthropic.rs`.
//! Metering, caching and errors are checked on translated traffic.

mod common;

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionMessageToolCalls, ChatCompletionRequestUserMessageArgs,
    ChatCompletionStreamOptions, ChatCompletionTool, ChatCompletionToolChoiceOption,
    ChatCompletionTools, CreateChatCompletionRequestArgs, FinishReason, FunctionObjectArgs,
    ToolChoiceOptions,
};
use common::*;
use futures_util::StreamExt;
use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tower_ai_gateway::RunningGateway;
use tower_ai_mock::{MockProvider, reply_words};

const TOOL_ARGS: &str = r#"{"location":"Paris","unit":"celsius"}"#;

async fn setup(extra: &str) -> (MockProvider, RunningGateway) {
    let mock = MockProvider::start().await.unwrap();
    let extra = format!(
        "[providers.google-ai-studio]\nbase_url = \"{}\"\n{extra}",
        mock.url()
    );
    let gw = gateway_for(&mock, &extra).await;
    (mock, gw)
}

fn sdk(gw: &RunningGateway) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/compat", gw.url()))
            .with_api_key("sk-client-key"),
    )
}

fn weather_tool() -> ChatCompletionTools {
    ChatCompletionTools::Function(ChatCompletionTool {
        function: FunctionObjectArgs::default()
            .name("get_weather")
            .description("Weather for a city")
            .parameters(json!({"type": "object", "properties": {"location": {"type": "string"}}}))
            .build()
            .unwrap(),
    })
}

fn user(text: &str) -> async_openai::types::chat::ChatCompletionRequestMessage {
    ChatCompletionRequestUserMessageArgs::default()
        .content(text)
        .build()
        .unwrap()
        .into()
}

#[tokio::test]
async fn openai_sdk_against_anthropic_and_gemini_plain() {
    let (mock, gw) = setup("").await;
    let client = sdk(&gw);
    for (model, native_path) in [
        ("anthropic/claude-sonnet-4-5", "/v1/messages"),
        (
            "google-ai-studio/gemini-2.5-flash",
            "/v1beta/models/gemini-2.5-flash:generateContent",
        ),
    ] {
        let req = CreateChatCompletionRequestArgs::default()
            .model(model)
            .messages(vec![user("Tell me something nice")])
            .build()
            .unwrap();
        let res = within(20, client.chat().create(req)).await.unwrap();
        assert_eq!(
            res.choices[0].message.content.as_deref(),
            Some(reply_words(16).as_str()),
            "{model}"
        );
        assert_eq!(res.choices[0].finish_reason, Some(FinishReason::Stop));
        let usage = res.usage.unwrap();
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens),
            (4, 16),
            "{model}"
        );
        let seen = mock.last_request().unwrap();
        assert_eq!(seen.uri.path(), native_path);
        let sent: Value = serde_json::from_slice(&seen.body).unwrap();
        if model.starts_with("anthropic") {
            // The key moved to Anthropic's header; the model lost its provider.
            assert_eq!(seen.headers["x-api-key"], "sk-client-key");
            assert!(!seen.headers.contains_key("authorization"));
            assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
            assert_eq!(sent["model"], "claude-sonnet-4-5");
            assert_eq!(sent["max_tokens"], 4096);
        } else {
            assert_eq!(seen.headers["x-goog-api-key"], "sk-client-key");
            assert_eq!(
                sent["contents"][0]["parts"][0]["text"],
                "Tell me something nice"
            );
        }
    }
}

#[tokio::test]
async fn openai_sdk_streams_from_anthropic_and_gemini() {
    let (mock, gw) = setup("").await;
    let client = sdk(&gw);
    for model in [
        "anthropic/claude-sonnet-4-5",
        "google-ai-studio/gemini-2.5-flash",
    ] {
        let req = CreateChatCompletionRequestArgs::default()
            .model(model)
            .messages(vec![user("Tell me something nice")])
            .max_tokens(8u32)
            .stream_options(ChatCompletionStreamOptions {
                include_usage: Some(true),
                include_obfuscation: None,
            })
            .build()
            .unwrap();
        let mut stream = within(20, client.chat().create_stream(req)).await.unwrap();
        let (mut text, mut finish, mut usage, mut chunks) = (String::new(), None, None, 0);
        while let Some(chunk) = within(20, stream.next()).await {
            let chunk = chunk.expect("every chunk parses");
            chunks += 1;
            if let Some(c) = chunk.choices.first() {
                text.push_str(c.delta.content.as_deref().unwrap_or(""));
                finish = finish.or(c.finish_reason);
            }
            usage = usage.or(chunk.usage);
        }
        assert_eq!(text, reply_words(8), "{model}");
        assert_eq!(finish, Some(FinishReason::Length), "{model}");
        let usage = usage.expect("a usage chunk");
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens),
            (4, 8),
            "{model}"
        );
        // role chunk, 8 words, finish, usage.
        assert_eq!(chunks, 11, "{model}");
        let seen = mock.last_request().unwrap();
        if model.starts_with("google") {
            assert_eq!(seen.uri.query(), Some("alt=sse"));
            assert!(seen.uri.path().ends_with(":streamGenerateContent"));
        }
    }
}

#[tokio::test]
async fn openai_sdk_tools_through_anthropic_and_gemini() {
    let (mock, gw) = setup("").await;
    let client = sdk(&gw);
    for model in [
        "anthropic/claude-sonnet-4-5",
        "google-ai-studio/gemini-2.5-flash",
    ] {
        // Plain.
        let req = CreateChatCompletionRequestArgs::default()
            .model(model)
            .messages(vec![user("Weather in Paris?")])
            .tools(vec![weather_tool()])
            .tool_choice(ChatCompletionToolChoiceOption::Mode(
                ToolChoiceOptions::Required,
            ))
            .build()
            .unwrap();
        let res = within(20, client.chat().create(req)).await.unwrap();
        let choice = &res.choices[0];
        assert_eq!(
            choice.finish_reason,
            Some(FinishReason::ToolCalls),
            "{model}"
        );
        let calls = choice.message.tool_calls.as_ref().unwrap();
        let ChatCompletionMessageToolCalls::Function(call) = &calls[0] else {
            panic!("a function call");
        };
        assert_eq!(call.function.name, "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(&call.function.arguments).unwrap(),
            serde_json::from_str::<Value>(TOOL_ARGS).unwrap()
        );
        let sent: Value = serde_json::from_slice(&mock.last_request().unwrap().body).unwrap();
        if model.starts_with("anthropic") {
            assert_eq!(sent["tools"][0]["name"], "get_weather");
            assert_eq!(sent["tool_choice"], json!({"type": "any"}));
        } else {
            assert_eq!(
                sent["tools"][0]["functionDeclarations"][0]["name"],
                "get_weather"
            );
            assert_eq!(sent["toolConfig"]["functionCallingConfig"]["mode"], "ANY");
        }

        // The result goes back; the model answers in text.
        let follow = json!({
            "model": model,
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": call.function.arguments}}]},
                {"role": "tool", "tool_call_id": call.id, "content": "{\"temp_c\":21}"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        });
        let r = post_json(
            &client_http(),
            &format!("{}/compat/chat/completions", gw.url()),
            &[("authorization", "Bearer sk-client-key")],
            &follow.to_string(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.json()["choices"][0]["message"]["content"],
            reply_words(16)
        );

        // Streamed: the arguments arrive in pieces and concatenate.
        let req = CreateChatCompletionRequestArgs::default()
            .model(model)
            .messages(vec![user("Weather in Paris?")])
            .tools(vec![weather_tool()])
            .build()
            .unwrap();
        let mut stream = within(20, client.chat().create_stream(req)).await.unwrap();
        let (mut name, mut args, mut id, mut finish) = (String::new(), String::new(), None, None);
        while let Some(chunk) = within(20, stream.next()).await {
            let chunk = chunk.expect("every chunk parses");
            let Some(c) = chunk.choices.first() else {
                continue;
            };
            for tc in c.delta.tool_calls.iter().flatten() {
                assert_eq!(tc.index, 0);
                id = id.or(tc.id.clone());
                if let Some(f) = &tc.function {
                    name.push_str(f.name.as_deref().unwrap_or(""));
                    args.push_str(f.arguments.as_deref().unwrap_or(""));
                }
            }
            finish = finish.or(c.finish_reason);
        }
        assert_eq!(name, "get_weather", "{model}");
        assert!(id.is_some());
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            serde_json::from_str::<Value>(TOOL_ARGS).unwrap(),
            "{model}"
        );
        assert_eq!(finish, Some(FinishReason::ToolCalls));
    }
}

fn client_http() -> HttpClient {
    client()
}

#[tokio::test]
async fn openai_models_pass_through_with_only_the_model_rewritten() {
    let (mock, gw) = setup("").await;
    let body = r#"{"messages":[{"role":"user","content":"hi there"}],  "model":"openai/gpt-4o-mini","max_tokens":3}"#;
    let r = post_json(
        &client(),
        &format!("{}/compat/chat/completions", gw.url()),
        &[("authorization", "Bearer sk-client-key")],
        body,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["model"], "gpt-4o-mini");
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.uri.path(), "/v1/chat/completions");
    assert_eq!(
        &seen.body[..],
        br#"{"messages":[{"role":"user","content":"hi there"}],  "model":"gpt-4o-mini","max_tokens":3}"#
    );
    // Cloudflare-style prefix, embeddings.
    let r = post_json(
        &client(),
        &format!("{}/v1/acct/gw/compat/embeddings", gw.url()),
        &[("authorization", "Bearer sk-client-key")],
        r#"{"model":"openai/text-embedding-3-small","input":"a b"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["usage"]["prompt_tokens"], 2);
    // Gemini embeddings, translated.
    let r = post_json(
        &client(),
        &format!("{}/compat/embeddings", gw.url()),
        &[("authorization", "Bearer sk-client-key")],
        r#"{"model":"google-ai-studio/text-embedding-004","input":["a","b"],"dimensions":4}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 4);
    assert!(
        mock.last_request()
            .unwrap()
            .uri
            .path()
            .ends_with(":batchEmbedContents")
    );
}

#[tokio::test]
async fn errors_come_back_in_the_clients_dialect() {
    let (mock, gw) = setup("").await;
    let url = format!("{}/compat/chat/completions", gw.url());
    let chat =
        r#"{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#;
    // A provider error: Anthropic's 429 as OpenAI's.
    let r = post_json(&client(), &url, &[("x-mock-status", "429")], chat).await;
    assert_eq!(r.status, 429);
    let v = r.json();
    assert_eq!(v["error"]["message"], "mock error");
    assert_eq!(v["error"]["type"], "rate_limit_exceeded");
    // Gemini's 400 as OpenAI's, and as Anthropic's.
    let gem = r#"{"model":"google-ai-studio/gemini-2.5-flash","messages":[{"role":"user","content":"hi"}]}"#;
    let r = post_json(&client(), &url, &[("x-mock-status", "400")], gem).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let r = post_json(
        &client(),
        &format!("{}/compat/v1/messages", gw.url()),
        &[("x-mock-status", "503")],
        r#"{"model":"google-ai-studio/gemini-2.5-flash","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(r.status, 503);
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert_eq!(v["error"]["message"], "mock error");

    // Untranslatable: a 400 naming the parameter, never sent.
    let before = mock.requests();
    let r = post_json(
        &client(),
        &url,
        &[],
        r#"{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}],"logit_bias":{"1":2}}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    let v = r.json();
    assert_eq!(v["error"]["param"], "logit_bias");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("logit_bias")
    );
    // Bad models, bad JSON, unknown providers.
    for (body, needle) in [
        (r#"{"model":"claude","messages":[]}"#, "provider/model"),
        (r#"{"model":"nope/x","messages":[]}"#, "unknown provider"),
        (r#"{"messages":[]}"#, "model"),
        ("{not json", "JSON"),
        (
            r#"{"model":"anthropic/c","messages":"x"}"#,
            "not a valid request",
        ),
    ] {
        let r = post_json(&client(), &url, &[], body).await;
        assert_eq!(r.status, 400, "{body}");
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    assert_eq!(mock.requests(), before);
    // A GET: 405 in the dialect.
    let r = send(&client(), request(Method::GET, &url, &[], "")).await;
    assert_eq!(r.status, 405);
    assert!(r.json()["error"]["message"].is_string());

    // The same parameter dropped when the config says so.
    let (mock, gw) = setup("[compat]\ndrop_unsupported = true").await;
    let r = post_json(
        &client(),
        &format!("{}/compat/chat/completions", gw.url()),
        &[],
        r#"{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}],"logit_bias":{"1":2}}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let sent: Value = serde_json::from_slice(&mock.last_request().unwrap().body).unwrap();
    assert!(sent.get("logit_bias").is_none());
}

#[tokio::test]
async fn a_cut_stream_is_never_passed_off_as_complete() {
    let (_mock, gw) = setup("").await;
    let url = format!("{}/compat/chat/completions", gw.url());
    let body = r#"{"model":"anthropic/claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let req = request(
        Method::POST,
        &url,
        &[
            ("content-type", "application/json"),
            ("x-mock-reset-after", "4"),
        ],
        body,
    );
    let res = within(20, client().request(req)).await.unwrap();
    assert_eq!(res.status(), 200);
    let (frames, end) = within(20, frames(res)).await;
    assert!(end.is_err(), "the stream ends in an error");
    let text = String::from_utf8(concat(&frames)).unwrap();
    assert!(text.contains("chat.completion.chunk"));
    assert!(!text.contains("[DONE]"), "{text}");
}

#[tokio::test]
async fn translated_streams_arrive_event_by_event() {
    let (_mock, gw) = setup("").await;
    let body = r#"{"model":"anthropic/claude-sonnet-4-5","stream":true,"max_tokens":4,"messages":[{"role":"user","content":"hi"}]}"#;
    let req = request(
        Method::POST,
        &format!("{}/compat/chat/completions", gw.url()),
        &[
            ("content-type", "application/json"),
            ("x-mock-chunk-delay-ms", "150"),
        ],
        body,
    );
    let res = within(20, client().request(req)).await.unwrap();
    let (frames, end) = within(20, frames(res)).await;
    end.unwrap();
    let words: Vec<_> = frames
        .iter()
        .filter(|(_, b)| std::str::from_utf8(b).unwrap().contains("\"content\":\""))
        .filter(|(_, b)| !std::str::from_utf8(b).unwrap().contains("\"content\":\"\""))
        .collect();
    assert_eq!(words.len(), 4);
    // Each word is its own frame, forwarded as the provider sent it (150 ms apart), not
    // held back to the end.
    assert!(words[3].0 - words[0].0 >= Duration::from_millis(300));
}

// --- A strict Anthropic client -------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AMessage {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    role: String,
    model: String,
    content: Vec<ABlock>,
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
    usage: AUsage,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ABlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AUsage {
    input_tokens: u64,
    output_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum AEvent {
    MessageStart {
        message: AMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: ABlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: ADelta,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: AMessageDelta,
        usage: ADeltaUsage,
    },
    MessageStop,
    Ping,
}

/// `message_delta.usage`: only `output_tokens` is required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ADeltaUsage {
    output_tokens: u64,
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ADelta {
    TextDelta { text: String },
    InputJsonDelta { partial_json: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AMessageDelta {
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
}

/// What a client makes of a stream: the message assembled from its events.
#[derive(Debug, Default)]
struct Assembled {
    text: String,
    tool: Option<(String, String, String)>,
    stop_reason: Option<String>,
    usage: Option<(Option<u64>, u64)>,
    events: Vec<String>,
}

async fn anthropic_post(url: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("x-api-key", "sk-ant-client")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn anthropic_stream(url: &str, body: Value) -> Assembled {
    let res = anthropic_post(url, body).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = String::from_utf8(res.bytes().await.unwrap().to_vec()).unwrap();
    let mut out = Assembled::default();
    let mut parser = tower_ai_core::SseParser::new();
    let mut events = Vec::new();
    parser.feed(text.as_bytes(), |e| {
        events.push((e.event.to_owned(), e.data_str().unwrap().to_owned()))
    });
    assert!(!parser.has_partial());
    let mut open: Option<u32> = None;
    for (name, data) in events {
        let event: AEvent = serde_json::from_str(&data)
            .unwrap_or_else(|e| panic!("event `{name}` off the schema ({e}): {data}"));
        out.events.push(name.clone());
        match event {
            AEvent::MessageStart { message } => {
                assert_eq!(name, "message_start");
                assert_eq!(
                    (message.kind.as_str(), message.role.as_str()),
                    ("message", "assistant")
                );
                assert!(message.content.is_empty() && !message.id.is_empty());
                let _ = (message.model, message.stop_reason, message.stop_sequence);
            }
            AEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                assert_eq!(open, None, "a block starts only after the last stopped");
                open = Some(index);
                if let ABlock::ToolUse { id, name, input } = content_block {
                    assert_eq!(input, json!({}));
                    out.tool = Some((id, name, String::new()));
                }
            }
            AEvent::ContentBlockDelta { index, delta } => {
                assert_eq!(open, Some(index));
                match delta {
                    ADelta::TextDelta { text } => out.text.push_str(&text),
                    ADelta::InputJsonDelta { partial_json } => {
                        out.tool.as_mut().unwrap().2.push_str(&partial_json)
                    }
                }
            }
            AEvent::ContentBlockStop { index } => {
                assert_eq!(open.take(), Some(index));
            }
            AEvent::MessageDelta { delta, usage } => {
                out.stop_reason = delta.stop_reason;
                let _ = delta.stop_sequence;
                out.usage = Some((usage.input_tokens, usage.output_tokens));
                let _ = (
                    usage.cache_creation_input_tokens,
                    usage.cache_read_input_tokens,
                );
            }
            AEvent::MessageStop => assert_eq!(open, None),
            AEvent::Ping => {}
        }
    }
    assert_eq!(out.events.last().map(String::as_str), Some("message_stop"));
    out
}

#[tokio::test]
async fn anthropic_client_against_openai_and_gemini_models() {
    let (mock, gw) = setup("").await;
    let url = format!("{}/compat/v1/messages", gw.url());
    for (model, native) in [
        ("openai/gpt-4o-mini", "/v1/chat/completions"),
        (
            "google-ai-studio/gemini-2.5-flash",
            "/v1beta/models/gemini-2.5-flash:generateContent",
        ),
        ("anthropic/claude-sonnet-4-5", "/v1/messages"),
    ] {
        // Plain.
        let res = anthropic_post(
            &url,
            json!({"model": model, "max_tokens": 6, "system": "Be nice.",
                   "messages": [{"role": "user", "content": "Tell me something"}]}),
        )
        .await;
        assert_eq!(res.status(), 200, "{model}");
        let msg: AMessage = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
        assert_eq!(msg.kind, "message");
        let [ABlock::Text { text }] = &msg.content[..] else {
            panic!("{model}: one text block: {msg:?}");
        };
        assert_eq!(text, &reply_words(6));
        assert_eq!(msg.stop_reason.as_deref(), Some("max_tokens"), "{model}");
        assert_eq!(
            (msg.usage.input_tokens, msg.usage.output_tokens),
            (5, 6),
            "{model}"
        );
        assert_eq!(msg.usage.cache_read_input_tokens, Some(0), "{model}");
        assert_eq!(msg.usage.cache_creation_input_tokens, Some(0), "{model}");
        let seen = mock.last_request().unwrap();
        assert_eq!(seen.uri.path(), native, "{model}");
        if model.starts_with("openai") {
            assert_eq!(seen.headers["authorization"], "Bearer sk-ant-client");
            assert!(!seen.headers.contains_key("anthropic-version"));
            let sent: Value = serde_json::from_slice(&seen.body).unwrap();
            assert_eq!(
                sent["messages"][0],
                json!({"role": "system", "content": "Be nice."})
            );
        }

        // Streamed.
        let s = anthropic_stream(
            &url,
            json!({"model": model, "max_tokens": 6, "stream": true,
                   "messages": [{"role": "user", "content": "Tell me something"}]}),
        )
        .await;
        assert_eq!(s.text, reply_words(6), "{model}");
        assert_eq!(s.stop_reason.as_deref(), Some("max_tokens"), "{model}");
        assert_eq!(s.usage.map(|u| u.1), Some(6), "{model}");
        if !model.starts_with("anthropic") {
            assert_eq!(
                s.usage.map(|u| u.0),
                Some(Some(3)),
                "{model}: input in message_delta"
            );
        }

        // Tools, streamed.
        let s = anthropic_stream(
            &url,
            json!({"model": model, "max_tokens": 100, "stream": true,
                   "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
                   "messages": [{"role": "user", "content": "Weather?"}]}),
        )
        .await;
        let (id, name, args) = s.tool.expect("a tool_use block");
        assert!(!id.is_empty());
        assert_eq!(name, "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            serde_json::from_str::<Value>(TOOL_ARGS).unwrap(),
            "{model}"
        );
        assert_eq!(s.stop_reason.as_deref(), Some("tool_use"), "{model}");

        // Tools, plain, then the result back.
        let res = anthropic_post(
            &url,
            json!({"model": model, "max_tokens": 100,
                   "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
                   "messages": [{"role": "user", "content": "Weather?"}]}),
        )
        .await;
        let msg: AMessage = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
        let Some(ABlock::ToolUse { id, name, input }) = msg.content.last() else {
            panic!("{model}: a tool_use block: {msg:?}");
        };
        assert_eq!(name, "get_weather");
        assert_eq!(*input, serde_json::from_str::<Value>(TOOL_ARGS).unwrap());
        let res = anthropic_post(
            &url,
            json!({"model": model, "max_tokens": 100,
                   "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
                   "messages": [
                       {"role": "user", "content": "Weather?"},
                       {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": name, "input": input}]},
                       {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "21C"}]}
                   ]}),
        )
        .await;
        assert_eq!(res.status(), 200);
        let msg: AMessage = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
        assert_eq!(msg.stop_reason.as_deref(), Some("end_turn"), "{model}");
    }
}

// --- Metering and caching on translated traffic ---------------------------------------

async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition never held");
}

#[tokio::test]
async fn the_meter_records_the_served_provider_and_its_usage() {
    let (_mock, gw) = setup("").await;
    let c = client();
    let chat = format!("{}/compat/chat/completions", gw.url());
    // Streamed without include_usage: the client gets no usage chunk, the meter still
    // gets Anthropic's.
    let r = post_json(
        &c,
        &chat,
        &[],
        r#"{"model":"anthropic/claude-sonnet-4-5","stream":true,"max_tokens":7,"messages":[{"role":"user","content":"count my words please"}]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(!String::from_utf8_lossy(&r.body).contains("\"usage\""));
    let r = post_json(
        &c,
        &chat,
        &[],
        r#"{"model":"google-ai-studio/gemini-2.5-flash","max_tokens":5,"messages":[{"role":"user","content":"one two"}]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = post_json(
        &c,
        &format!("{}/compat/v1/messages", gw.url()),
        &[],
        r#"{"model":"openai/gpt-4o-mini","max_tokens":3,"stream":true,"messages":[{"role":"user","content":"a b c"}]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let logs = eventually(|| async {
        let v = send(
            &c,
            request(Method::GET, &format!("{}/logs?limit=10", gw.url()), &[], ""),
        )
        .await
        .json();
        (v["logs"].as_array().map(Vec::len) == Some(3)).then_some(v)
    })
    .await;
    let rows = logs["logs"].as_array().unwrap();
    let row = |model: &str| {
        rows.iter()
            .find(|r| r["model"] == model)
            .unwrap_or_else(|| panic!("{model} in {logs}"))
            .clone()
    };
    let a = row("claude-sonnet-4-5");
    assert_eq!(a["provider"], "anthropic");
    assert_eq!(
        (a["input_tokens"].as_u64(), a["output_tokens"].as_u64()),
        (Some(4), Some(7)),
        "{a}"
    );
    assert_eq!(a["usage_source"], "reported");
    assert_eq!(a["outcome"], "complete");
    let g = row("gemini-2.5-flash");
    assert_eq!(g["provider"], "google-ai-studio");
    assert_eq!(
        (g["input_tokens"].as_u64(), g["output_tokens"].as_u64()),
        (Some(2), Some(5)),
        "{g}"
    );
    let o = row("gpt-4o-mini");
    assert_eq!(o["provider"], "openai");
    assert_eq!(
        (o["input_tokens"].as_u64(), o["output_tokens"].as_u64()),
        (Some(3), Some(3)),
        "{o}"
    );
    assert_eq!(o["usage_source"], "reported");
    // Priced by the provider that served.
    assert!(a["cost_usd"].as_f64().unwrap() > 0.0, "{a}");
}

#[tokio::test]
async fn the_cache_keys_on_the_request_as_the_client_sent_it() {
    let (mock, gw) = setup("[cache]\nenabled = true").await;
    let c = client();
    let url = format!("{}/compat/chat/completions", gw.url());
    let body = r#"{"model":"anthropic/claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"cache me"}]}"#;
    let first = post_json(&c, &url, &[], body).await;
    assert_eq!(first.headers["aigw-cache-status"], "MISS");
    let n = mock.requests();
    let second = post_json(&c, &url, &[], body).await;
    assert_eq!(second.headers["aigw-cache-status"], "HIT");
    assert_eq!(mock.requests(), n, "served from the cache");
    assert_eq!(first.body, second.body, "the translated stream replayed");
    // Another provider's model is another request.
    let other = body.replace(
        "anthropic/claude-sonnet-4-5",
        "google-ai-studio/gemini-2.5-flash",
    );
    let third = post_json(&c, &url, &[], &other).await;
    assert_eq!(third.headers["aigw-cache-status"], "MISS");
}
