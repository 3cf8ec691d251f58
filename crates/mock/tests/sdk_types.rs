//! What the mock sends parses into a real SDK's types (async-openai), field for field.

use async_openai::types::chat::{
    CreateChatCompletionResponse, CreateChatCompletionStreamResponse, FinishReason,
};
use async_openai::types::embeddings::{CreateBase64EmbeddingResponse, CreateEmbeddingResponse};
use async_openai::types::responses::{
    OutputItem, OutputMessageContent, Response, ResponseStreamEvent, Status,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower_ai_mock::{MockProvider, reply_words};

async fn post(mock: &MockProvider, path: &str, body: Value) -> Bytes {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::post(format!("{}{path}", mock.url()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap().to_bytes()
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> T {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

/// The `data:` of every SSE event but `[DONE]`.
fn sse_data(body: &[u8]) -> Vec<String> {
    std::str::from_utf8(body)
        .unwrap()
        .split_terminator("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|data| *data != "[DONE]")
        .map(str::to_owned)
        .collect()
}

fn chat(stream: bool) -> Value {
    json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hello there"}],
        "stream": stream,
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
    })
}

#[tokio::test]
async fn chat_completion_parses() {
    let mock = MockProvider::start().await.unwrap();
    let response: CreateChatCompletionResponse =
        parse(&post(&mock, "/v1/chat/completions", chat(false)).await);
    assert_eq!(
        response.choices[0].message.content.as_deref(),
        Some(&*reply_words(16))
    );
    assert_eq!(response.choices[0].finish_reason, Some(FinishReason::Stop));
    let usage = response.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (2, 16, 18)
    );

    let body = post(&mock, "/v1/chat/completions", chat(true)).await;
    let chunks: Vec<CreateChatCompletionStreamResponse> = sse_data(&body)
        .iter()
        .map(|d| parse(d.as_bytes()))
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c.choices.first())
        .filter_map(|c| c.delta.content.as_deref())
        .collect();
    assert_eq!(text, reply_words(16));
    let usage = chunks.last().unwrap().usage.clone().unwrap();
    assert_eq!(usage.total_tokens, 18);
}

#[tokio::test]
async fn embeddings_parse() {
    let mock = MockProvider::start().await.unwrap();
    let response: CreateEmbeddingResponse = parse(
        &post(
            &mock,
            "/v1/embeddings",
            json!({"model": "e", "input": ["a b", "c"]}),
        )
        .await,
    );
    assert_eq!(response.data.len(), 2);
    assert_eq!(response.data[1].embedding.len(), 8);
    assert_eq!(response.usage.prompt_tokens, 3);

    let response: CreateBase64EmbeddingResponse = parse(
        &post(
            &mock,
            "/v1/embeddings",
            json!({"input": "a b", "encoding_format": "base64"}),
        )
        .await,
    );
    assert_eq!(response.data.len(), 1);
}

#[tokio::test]
async fn responses_api_parses() {
    let mock = MockProvider::start().await.unwrap();
    let body = json!({"model": "gpt-4.1", "input": "hi there", "instructions": "be nice"});
    let response: Response = parse(&post(&mock, "/v1/responses", body.clone()).await);
    assert_eq!(response.status, Status::Completed);
    let usage = response.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (4, 16));
    let OutputItem::Message(message) = &response.output[0] else {
        panic!("{:?}", response.output[0]);
    };
    let OutputMessageContent::OutputText(text) = &message.content[0] else {
        panic!("{:?}", message.content[0]);
    };
    assert_eq!(text.text, reply_words(16));

    let mut stream = body;
    stream["stream"] = json!(true);
    let events: Vec<ResponseStreamEvent> = sse_data(&post(&mock, "/v1/responses", stream).await)
        .iter()
        .map(|d| parse(d.as_bytes()))
        .collect();
    assert_eq!(events.len(), 16 + 8);
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            ResponseStreamEvent::ResponseOutputTextDelta(delta) => Some(delta.delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, reply_words(16));
    let Some(ResponseStreamEvent::ResponseCompleted(completed)) = events.last() else {
        panic!("{:?}", events.last());
    };
    assert_eq!(completed.response.usage.as_ref().unwrap().total_tokens, 20);

    // Cut short by max_output_tokens: status incomplete, stream ends `response.incomplete`.
    let short = json!({"input": "hi", "max_output_tokens": 2});
    let response: Response = parse(&post(&mock, "/v1/responses", short.clone()).await);
    assert_eq!(response.status, Status::Incomplete);
    let mut stream = short;
    stream["stream"] = json!(true);
    let events: Vec<ResponseStreamEvent> = sse_data(&post(&mock, "/v1/responses", stream).await)
        .iter()
        .map(|d| parse(d.as_bytes()))
        .collect();
    let Some(ResponseStreamEvent::ResponseIncomplete(incomplete)) = events.last() else {
        panic!("{:?}", events.last());
    };
    assert_eq!(incomplete.response.usage.as_ref().unwrap().output_tokens, 2);
}

#[tokio::test]
async fn tool_calls_parse_plain_and_streamed() {
    let mock = MockProvider::start().await.unwrap();
    let mut body = chat(false);
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let response: CreateChatCompletionResponse =
        parse(&post(&mock, "/v1/chat/completions", body.clone()).await);
    assert_eq!(
        response.choices[0].finish_reason,
        Some(FinishReason::ToolCalls)
    );
    let calls = response.choices[0].message.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 1);

    body["stream"] = json!(true);
    let streamed = post(&mock, "/v1/chat/completions", body.clone()).await;
    let mut args = String::new();
    for data in sse_data(&streamed) {
        let chunk: CreateChatCompletionStreamResponse = parse(data.as_bytes());
        for call in chunk
            .choices
            .iter()
            .flat_map(|c| c.delta.tool_calls.iter().flatten())
        {
            args.push_str(
                call.function
                    .as_ref()
                    .and_then(|f| f.arguments.as_deref())
                    .unwrap_or(""),
            );
        }
    }
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"location": "Paris", "unit": "celsius"})
    );

    // Once the tool answered, or with `tool_choice: none`, the reply is text.
    body["stream"] = json!(false);
    body["tool_choice"] = json!("none");
    let response: CreateChatCompletionResponse =
        parse(&post(&mock, "/v1/chat/completions", body).await);
    assert_eq!(response.choices[0].finish_reason, Some(FinishReason::Stop));
}

#[tokio::test]
async fn gemini_generate_content_and_embeddings() {
    let mock = MockProvider::start().await.unwrap();
    let body = json!({
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [{"role": "user", "parts": [{"text": "hello there"}]}],
        "generationConfig": {"maxOutputTokens": 3}
    });
    let v: Value = parse(
        &post(
            &mock,
            "/v1beta/models/gemini-2.5-flash:generateContent",
            body.clone(),
        )
        .await,
    );
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        reply_words(3)
    );
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 4);
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 3);
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");

    let streamed = post(
        &mock,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        body,
    )
    .await;
    let events: Vec<Value> = sse_data(&streamed)
        .iter()
        .map(|d| parse(d.as_bytes()))
        .collect();
    assert_eq!(events.len(), 3);
    let text: String = events
        .iter()
        .map(|e| {
            e["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(text, reply_words(3));
    assert!(events[2]["usageMetadata"].is_object() && events[1].get("usageMetadata").is_none());

    let tools = json!({
        "contents": [{"role": "user", "parts": [{"text": "weather?"}]}],
        "tools": [{"functionDeclarations": [{"name": "get_weather"}]}]
    });
    let v: Value = parse(&post(&mock, "/v1beta/models/g:generateContent", tools).await);
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
        "get_weather"
    );

    let v: Value = parse(
        &post(
            &mock,
            "/v1beta/models/text-embedding-004:batchEmbedContents",
            json!({"requests": [{"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 4}]}),
        )
        .await,
    );
    assert_eq!(v["embeddings"][0]["values"].as_array().unwrap().len(), 4);
}
