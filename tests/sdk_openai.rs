//! A real client written elsewhere, the `async-openai` crate, pointed at the gateway:
//! chat (plain and streamed) and embeddings, against the mock provider.

mod common;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, ChatCompletionStreamOptions,
    CreateChatCompletionRequestArgs,
};
use async_openai::types::embeddings::CreateEmbeddingRequestArgs;
use common::*;
use futures_util::StreamExt;
use tower_ai_mock::{MockProvider, reply_words};

fn sdk(base: String) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(base)
            .with_api_key("sk-sdk-client-key"),
    )
}

#[tokio::test]
async fn async_openai_chat_plain_and_streamed() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    let client = sdk(format!("{}/openai", gw.url()));

    let messages = vec![
        ChatCompletionRequestUserMessageArgs::default()
            .content("Tell me something nice")
            .build()
            .unwrap()
            .into(),
    ];
    let req = CreateChatCompletionRequestArgs::default()
        .model("gpt-4o-mini")
        .messages(messages.clone())
        .build()
        .unwrap();
    let res = within(20, client.chat().create(req)).await.unwrap();
    assert_eq!(
        res.choices[0].message.content.as_deref(),
        Some(reply_words(16).as_str())
    );
    let usage = res.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (4, 16));
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.uri.path(), "/v1/chat/completions");
    assert_eq!(seen.headers["authorization"], "Bearer sk-sdk-client-key");

    let req = CreateChatCompletionRequestArgs::default()
        .model("gpt-4o-mini")
        .messages(messages)
        .stream_options(ChatCompletionStreamOptions {
            include_usage: Some(true),
            include_obfuscation: None,
        })
        .build()
        .unwrap();
    let mut stream = within(20, client.chat().create_stream(req)).await.unwrap();
    let mut text = String::new();
    let mut chunks = 0;
    let mut usage = None;
    while let Some(chunk) = within(20, stream.next()).await {
        let chunk = chunk.expect("every chunk parses");
        chunks += 1;
        if let Some(choice) = chunk.choices.first()
            && let Some(delta) = &choice.delta.content
        {
            text.push_str(delta);
        }
        if chunk.usage.is_some() {
            usage = chunk.usage;
        }
    }
    assert_eq!(text, reply_words(16));
    assert!(chunks >= 18, "{chunks} chunks");
    let usage = usage.expect("the usage chunk arrived");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (4, 16));
}

#[tokio::test]
async fn async_openai_embeddings() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    let client = sdk(format!("{}/openai", gw.url()));
    let req = CreateEmbeddingRequestArgs::default()
        .model("text-embedding-3-small")
        .input(vec!["hello gateway", "second input here"])
        .build()
        .unwrap();
    let res = within(20, client.embeddings().create(req)).await.unwrap();
    assert_eq!(res.data.len(), 2);
    assert!(!res.data[0].embedding.is_empty());
    assert_eq!(res.usage.prompt_tokens, 5);
}

#[tokio::test]
async fn async_openai_sees_provider_errors_as_api_errors() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    // Unknown provider: the gateway's own JSON error, which the SDK parses.
    let client = sdk(format!("{}/no-such-provider", gw.url()));
    let req = CreateEmbeddingRequestArgs::default()
        .model("m")
        .input("x")
        .build()
        .unwrap();
    let err = within(20, client.embeddings().create(req))
        .await
        .unwrap_err();
    match err {
        async_openai::error::OpenAIError::ApiError(e) => {
            assert_eq!(e.status_code.as_u16(), 400);
            assert!(e.api_error.message.contains("unknown provider"), "{e:?}");
            assert_eq!(e.api_error.r#type.as_deref(), Some("invalid_request_error"));
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}
