//! Golden tests: each translation direction and feature, from request and response
//! samples in the providers' documented formats, compared whole with what is expected.

use bytes::BytesMut;
use serde_json::{Value, json};
use tower_ai_compat::stream::{
    AnthropicToOpenAi, GeminiToOpenAi, OpenAiEvent, OpenAiToAnthropic, StreamTranslator,
};
use tower_ai_compat::{Options, anthropic, gemini, openai, request, response};

fn strict() -> Options {
    Options::default()
}

fn lenient() -> Options {
    Options {
        drop_unsupported: true,
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

fn chat(v: Value) -> openai::ChatRequest {
    serde_json::from_value(v).unwrap()
}

/// A conversation with every request feature: system, developer, images by URL and
/// base64, a tool call and its result, tools, tool_choice, stop, sampling.
fn full_chat() -> Value {
    json!({
        "model": "anthropic/claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image, and the weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ", "detail": "low"}}
            ]},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\":21}"},
            {"role": "user", "content": "Thanks."}
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }}],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "stop": ["END"],
        "max_completion_tokens": 256,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "user-42",
        "stream": true,
        "stream_options": {"include_usage": true}
    })
}

#[test]
fn openai_request_to_anthropic() {
    let out =
        request::chat_to_anthropic(chat(full_chat()), "claude-sonnet-4-5", &strict()).unwrap();
    assert_eq!(
        to_value(&out),
        json!({
            "model": "claude-sonnet-4-5",
            "system": "You are terse.\nAnswer in French.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this image, and the weather in Paris?"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "{\"temp_c\":21}"},
                    {"type": "text", "text": "Thanks."}
                ]}
            ],
            "tools": [{
                "name": "get_weather",
                "description": "Weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
            }],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stop_sequences": ["END"],
            "max_tokens": 256,
            "temperature": 0.2,
            "top_p": 0.9,
            "stream": true,
            "metadata": {"user_id": "user-42"}
        })
    );
}

#[test]
fn openai_request_to_anthropic_defaults_and_named_tool_choice() {
    let req = chat(json!({
        "model": "x",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}}
    }));
    let out = to_value(&request::chat_to_anthropic(req, "claude", &strict()).unwrap());
    assert_eq!(out["max_tokens"], request::DEFAULT_MAX_TOKENS);
    assert_eq!(out["tool_choice"], json!({"type": "tool", "name": "f"}));
    assert_eq!(
        out["tools"][0]["input_schema"],
        json!({"type": "object", "properties": {}})
    );
    assert_eq!(
        out["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    );
}

#[test]
fn untranslatable_parameters_are_named_unless_dropped() {
    for (param, value) in [
        ("response_format", json!({"type": "json_object"})),
        ("logit_bias", json!({"50256": -100})),
        ("n", json!(2)),
        ("presence_penalty", json!(0.5)),
        ("seed", json!(7)),
        ("reasoning_effort", json!("high")),
    ] {
        let mut v = json!({"model": "x", "messages": [{"role": "user", "content": "hi"}]});
        v[param] = value;
        let err = request::chat_to_anthropic(chat(v.clone()), "c", &strict()).unwrap_err();
        assert_eq!(err.param(), Some(param), "{param}");
        assert!(err.message().contains(param), "{}", err.message());
        let ok = request::chat_to_anthropic(chat(v), "c", &lenient()).unwrap();
        assert!(to_value(&ok).get(param).is_none(), "{param} dropped");
    }
    // Harmless fields and null / false values pass.
    let v = json!({"model": "x", "messages": [{"role": "user", "content": "hi"}],
        "store": true, "metadata": {"a": "b"}, "logprobs": false, "logit_bias": null});
    request::chat_to_anthropic(chat(v), "c", &strict()).unwrap();
    // Gemini has penalties, seed and JSON mode, but not parallel_tool_calls=false.
    let v = json!({"model": "x", "messages": [{"role": "user", "content": "hi"}], "parallel_tool_calls": false});
    let err = request::chat_to_gemini(chat(v), &strict()).unwrap_err();
    assert_eq!(err.param(), Some("parallel_tool_calls"));
    // Bad tool arguments are named by position.
    let v = json!({"model": "x", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}
    ]});
    let err = request::chat_to_anthropic(chat(v), "c", &strict()).unwrap_err();
    assert_eq!(
        err.param(),
        Some("messages[0].tool_calls[0].function.arguments")
    );
}

#[test]
fn openai_request_to_gemini() {
    let mut v = full_chat();
    v["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});
    v.as_object_mut().unwrap().remove("parallel_tool_calls");
    v["response_format"] =
        json!({"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}});
    v["seed"] = json!(3);
    v["presence_penalty"] = json!(0.1);
    v["n"] = json!(2);
    let out = request::chat_to_gemini(chat(v), &strict()).unwrap();
    assert_eq!(
        to_value(&out),
        json!({
            "systemInstruction": {"parts": [{"text": "You are terse."}, {"text": "Answer in French."}]},
            "contents": [
                {"role": "user", "parts": [
                    {"text": "What is in this image, and the weather in Paris?"},
                    {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}},
                    {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}
                ]},
                {"role": "model", "parts": [
                    {"text": "Let me check."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}},
                    {"text": "Thanks."}
                ]}
            ],
            "tools": [{"functionDeclarations": [{
                "name": "get_weather",
                "description": "Weather for a city",
                "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
            }]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
            "generationConfig": {
                "stopSequences": ["END"],
                "maxOutputTokens": 256,
                "temperature": 0.2,
                "topP": 0.9,
                "candidateCount": 2,
                "responseMimeType": "application/json",
                "responseJsonSchema": {"type": "object"},
                "seed": 3,
                "presencePenalty": 0.1
            }
        })
    );
    // A tool result answering no known call is refused.
    let v = json!({"model": "x", "messages": [{"role": "tool", "tool_call_id": "nope", "content": "1"}]});
    let err = request::chat_to_gemini(chat(v), &strict()).unwrap_err();
    assert_eq!(err.param(), Some("messages[0].tool_call_id"));
    // JSON mode, plain-text tool results.
    let v = json!({"model": "x", "response_format": {"type": "json_object"}, "tool_choice": "none", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "c", "content": "sunny"}
    ]});
    let out = to_value(&request::chat_to_gemini(chat(v), &strict()).unwrap());
    assert_eq!(
        out["generationConfig"],
        json!({"responseMimeType": "application/json"})
    );
    assert_eq!(out["toolConfig"]["functionCallingConfig"]["mode"], "NONE");
    assert_eq!(
        out["contents"][0]["parts"][0]["functionCall"]["args"],
        json!({})
    );
    assert_eq!(
        out["contents"][1]["parts"][0]["functionResponse"]["response"],
        json!({"content": "sunny"})
    );
}

fn messages(v: Value) -> anthropic::MessagesRequest {
    serde_json::from_value(v).unwrap()
}

#[test]
fn anthropic_request_to_openai() {
    let req = messages(json!({
        "model": "openai/gpt-4o-mini",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris? See this."},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "21C"}]},
                {"type": "text", "text": "And tomorrow?"}
            ]}
        ],
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "top_p": 0.8,
        "top_k": 40,
        "metadata": {"user_id": "u1"},
        "stream": true
    }));
    let out = request::anthropic_to_chat(req, "gpt-4o-mini", &strict()).unwrap();
    assert_eq!(
        to_value(&out),
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather in Paris? See this."},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}
                ]},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "content": "21C", "tool_call_id": "toolu_1"},
                {"role": "user", "content": "And tomorrow?"}
            ],
            "max_tokens": 1024,
            "temperature": 0.5,
            "top_p": 0.8,
            "top_k": 40,
            "stop": ["END"],
            "stream": true,
            "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "user": "u1"
        })
    );
    // OpenAI itself has no top_k.
    let mut out = out;
    let err = request::check_for_openai(&mut out.clone(), &strict()).unwrap_err();
    assert_eq!(err.param(), Some("top_k"));
    request::check_for_openai(&mut out, &lenient()).unwrap();
    assert_eq!(out.top_k, None);
    // Extended thinking has no equivalent; disabled thinking is fine.
    let v = json!({"model": "m", "max_tokens": 5, "messages": [], "thinking": {"type": "enabled", "budget_tokens": 1024}});
    let err = request::anthropic_to_chat(messages(v), "m", &strict()).unwrap_err();
    assert_eq!(err.param(), Some("thinking"));
    let v =
        json!({"model": "m", "max_tokens": 5, "messages": [], "thinking": {"type": "disabled"}});
    request::anthropic_to_chat(messages(v), "m", &strict()).unwrap();
    // Server tools neither.
    let v = json!({"model": "m", "max_tokens": 5, "messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]});
    let err = request::anthropic_to_chat(messages(v), "m", &strict()).unwrap_err();
    assert_eq!(err.param(), Some("tools[0].type"));
}

#[test]
fn anthropic_request_to_gemini_through_openai() {
    let req = messages(json!({
        "model": "google-ai-studio/gemini-2.5-flash",
        "max_tokens": 100,
        "system": "Be brief.",
        "top_k": 20,
        "messages": [{"role": "user", "content": "Hi"}]
    }));
    let chat = request::anthropic_to_chat(req, "gemini-2.5-flash", &strict()).unwrap();
    let out = request::chat_to_gemini(chat, &strict()).unwrap();
    assert_eq!(
        to_value(&out),
        json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
            "generationConfig": {"maxOutputTokens": 100, "topK": 20}
        })
    );
}

#[test]
fn embeddings_to_gemini() {
    let req: openai::EmbeddingsRequest = serde_json::from_value(json!({
        "model": "google-ai-studio/text-embedding-004", "input": ["a", "b"], "dimensions": 8
    }))
    .unwrap();
    let out = request::embeddings_to_gemini(req, "text-embedding-004", &strict()).unwrap();
    assert_eq!(
        to_value(&out),
        json!({"requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 8},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 8}
        ]})
    );
    let resp: gemini::BatchEmbedResponse = serde_json::from_value(
        json!({"embeddings": [{"values": [0.5, 0.5]}, {"values": [1.0, 0.0]}]}),
    )
    .unwrap();
    assert_eq!(
        to_value(&response::gemini_to_embeddings(resp, "text-embedding-004")),
        json!({"object": "list", "model": "text-embedding-004",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.5]},
                     {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]}],
            "usage": {"prompt_tokens": 0, "total_tokens": 0}})
    );
}

#[test]
fn anthropic_response_to_openai() {
    let msg: anthropic::MessageResponse = serde_json::from_value(json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "text", "text": "I'll check."},
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 20}
    }))
    .unwrap();
    assert_eq!(
        to_value(&response::anthropic_to_chat(msg, 1_700_000_000)),
        json!({
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "object": "chat.completion",
            "created": 1_700_000_000u64,
            "model": "claude-sonnet-4-5",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "I'll check.",
                    "tool_calls": [{"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}],
                    "refusal": null
                },
                "finish_reason": "tool_calls",
                "logprobs": null
            }],
            "usage": {"prompt_tokens": 115, "completion_tokens": 20, "total_tokens": 135, "prompt_tokens_details": {"cached_tokens": 100}}
        })
    );
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
        ("refusal", "content_filter"),
    ] {
        assert_eq!(response::anthropic_finish_reason(stop), finish);
    }
}

#[test]
fn gemini_response_to_openai() {
    let resp: gemini::GenerateContentResponse = serde_json::from_value(json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "thinking...", "thought": true},
                {"text": "Sure."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
            ]},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 8, "thoughtsTokenCount": 4, "totalTokenCount": 24},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-1"
    }))
    .unwrap();
    assert_eq!(
        to_value(&response::gemini_to_chat(resp, "gemini-2.5-flash", 1)),
        json!({
            "id": "resp-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gemini-2.5-flash",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Sure.",
                    "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}],
                    "refusal": null
                },
                "finish_reason": "tool_calls",
                "logprobs": null
            }],
            "usage": {"prompt_tokens": 12, "completion_tokens": 12, "total_tokens": 24,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 4}}
        })
    );
    assert_eq!(
        response::gemini_finish_reason("MAX_TOKENS", false),
        "length"
    );
    assert_eq!(
        response::gemini_finish_reason("SAFETY", false),
        "content_filter"
    );
}

#[test]
fn openai_response_to_anthropic() {
    let c: openai::ChatCompletion = serde_json::from_value(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi.", "refusal": null,
            "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            "finish_reason": "tool_calls", "logprobs": null}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35, "prompt_tokens_details": {"cached_tokens": 10}}
    }))
    .unwrap();
    assert_eq!(
        to_value(&response::chat_to_anthropic(c)),
        json!({
            "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-4o-mini",
            "content": [{"type": "text", "text": "Hi."}, {"type": "tool_use", "id": "call_9", "name": "f", "input": {"a": 1}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 20, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10}
        })
    );
}

/// Runs a translator over SSE events and returns the translated events' data (and
/// `event:` names for Anthropic's).
fn run(mut t: StreamTranslator, events: &[&str]) -> (Vec<String>, bool) {
    let mut out = BytesMut::new();
    let mut parser = tower_ai_core::SseParser::new();
    let mut seen = Vec::new();
    for e in events {
        t.on_event(e.as_bytes(), &mut out);
    }
    t.on_end(&mut out);
    parser.feed(&out, |e| {
        seen.push(if e.event == "message" {
            e.data_str().unwrap().to_owned()
        } else {
            format!("{}|{}", e.event, e.data_str().unwrap())
        })
    });
    (seen, t.is_complete())
}

fn j(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

const ANTHROPIC_STREAM: &[&str] = &[
    r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
    r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    r#"{"type":"ping"}"#,
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}"#,
    r#"{"type":"content_block_stop","index":0}"#,
    r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}"#,
    r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
    r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Pa"}}"#,
    r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ris\"}"}}"#,
    r#"{"type":"content_block_stop","index":1}"#,
    r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":15}}"#,
    r#"{"type":"message_stop"}"#,
];

#[test]
fn anthropic_stream_to_openai() {
    let t = StreamTranslator::AnthropicToOpenAi(AnthropicToOpenAi::new("claude", 7, true));
    let (seen, complete) = run(t, ANTHROPIC_STREAM);
    assert!(complete);
    let head =
        r#""id":"msg_1","object":"chat.completion.chunk","created":7,"model":"claude-sonnet-4-5""#;
    let expected = [
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{"content":"Okay"}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"toolu_1","type":"function","function":{{"name":"get_weather","arguments":""}}}}]}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":""}}}}]}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":"{{\"city\": \"Pa"}}}}]}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":"ris\"}}"}}}}]}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{}},"finish_reason":"tool_calls"}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[],"usage":{{"prompt_tokens":25,"completion_tokens":15,"total_tokens":40,"prompt_tokens_details":{{"cached_tokens":0}}}}}}"#
        ),
        "[DONE]".to_owned(),
    ];
    assert_eq!(seen.len(), expected.len(), "{seen:#?}");
    for (got, want) in seen.iter().zip(&expected) {
        if want == "[DONE]" {
            assert_eq!(got, want);
        } else {
            assert_eq!(j(got), j(want));
        }
    }
    // Cut before message_stop: not complete, no [DONE].
    let t = StreamTranslator::AnthropicToOpenAi(AnthropicToOpenAi::new("claude", 7, false));
    let (seen, complete) = run(t, &ANTHROPIC_STREAM[..6]);
    assert!(!complete);
    assert!(!seen.iter().any(|s| s == "[DONE]"));
    // A mid-stream error becomes OpenAI's error object.
    let t = StreamTranslator::AnthropicToOpenAi(AnthropicToOpenAi::new("claude", 7, false));
    let (seen, _) = run(
        t,
        &[r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#],
    );
    assert_eq!(j(&seen[0])["error"]["message"], "Overloaded");
}

const GEMINI_STREAM: &[&str] = &[
    r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]},"index":0}],"modelVersion":"gemini-2.5-flash","responseId":"r1"}"#,
    r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"lo"}]},"index":0}],"modelVersion":"gemini-2.5-flash","responseId":"r1"}"#,
    r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"f","args":{"x":1}}}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":3,"totalTokenCount":7},"modelVersion":"gemini-2.5-flash","responseId":"r1"}"#,
];

#[test]
fn gemini_stream_to_openai() {
    let t = StreamTranslator::GeminiToOpenAi(GeminiToOpenAi::new("gemini-2.5-flash", 9, true));
    let (seen, complete) = run(t, GEMINI_STREAM);
    assert!(complete);
    let chunks: Vec<Value> = seen[..seen.len() - 1].iter().map(|s| j(s)).collect();
    assert_eq!(seen.last().unwrap(), "[DONE]");
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(chunks[0]["id"], "r1");
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hel");
    assert_eq!(chunks[2]["choices"][0]["delta"]["content"], "lo");
    assert_eq!(
        chunks[3]["choices"][0]["delta"]["tool_calls"],
        json!([{"index": 0, "id": "call_0", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}])
    );
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks[5]["usage"]["total_tokens"], 7);
    assert_eq!(chunks.len(), 6);
    // Without a finish reason the stream is cut short.
    let t = StreamTranslator::GeminiToOpenAi(GeminiToOpenAi::new("g", 9, true));
    let (seen, complete) = run(t, &GEMINI_STREAM[..2]);
    assert!(!complete);
    assert!(!seen.iter().any(|s| s == "[DONE]"));
}

const OPENAI_STREAM: &[&str] = &[
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":"}}]},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}"#,
    "[DONE]",
];

#[test]
fn openai_stream_to_anthropic() {
    let t = StreamTranslator::OpenAiToAnthropic(OpenAiToAnthropic::new("gpt-4o-mini"));
    let (seen, complete) = run(t, OPENAI_STREAM);
    assert!(complete);
    let expected = [
        r#"message_start|{"type":"message_start","message":{"id":"chatcmpl-1","type":"message","role":"assistant","model":"gpt-4o-mini","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}"#,
        r#"content_block_start|{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"content_block_delta|{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        r#"content_block_stop|{"type":"content_block_stop","index":0}"#,
        r#"content_block_start|{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"call_1","name":"f","input":{}}}"#,
        r#"content_block_delta|{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
        r#"content_block_delta|{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"1}"}}"#,
        r#"content_block_stop|{"type":"content_block_stop","index":1}"#,
        r#"message_delta|{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":9,"output_tokens":4,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}"#,
        r#"message_stop|{"type":"message_stop"}"#,
    ];
    assert_eq!(seen.len(), expected.len(), "{seen:#?}");
    for (got, want) in seen.iter().zip(expected) {
        let (gn, gd) = got.split_once('|').unwrap();
        let (wn, wd) = want.split_once('|').unwrap();
        assert_eq!(gn, wn);
        assert_eq!(j(gd), j(wd), "{wn}");
    }
    // Cut before [DONE]: no message_stop.
    let t = StreamTranslator::OpenAiToAnthropic(OpenAiToAnthropic::new("gpt-4o-mini"));
    let (seen, complete) = run(t, &OPENAI_STREAM[..3]);
    assert!(!complete);
    assert!(!seen.iter().any(|s| s.starts_with("message_stop")));
}

#[test]
fn gemini_stream_to_anthropic() {
    let t = StreamTranslator::GeminiToAnthropic(
        GeminiToOpenAi::new("gemini-2.5-flash", 1, true),
        OpenAiToAnthropic::new("gemini-2.5-flash"),
    );
    let (seen, complete) = run(t, GEMINI_STREAM);
    assert!(complete);
    let names: Vec<&str> = seen.iter().map(|s| s.split_once('|').unwrap().0).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let delta = j(seen[8].split_once('|').unwrap().1);
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], 3);
    assert_eq!(delta["usage"]["input_tokens"], 4);
}

#[test]
fn openai_events_parse() {
    assert!(matches!(
        OpenAiEvent::parse(b"[DONE]"),
        Some(OpenAiEvent::Done)
    ));
    assert!(matches!(
        OpenAiEvent::parse(br#"{"error":{"message":"x"}}"#),
        Some(OpenAiEvent::Error(_))
    ));
    assert!(OpenAiEvent::parse(b"{not json").is_none());
}
