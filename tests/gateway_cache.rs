//! The cache in the prebuilt gateway: configured from TOML, hits served without the
//! provider and recorded by the meter with the usage they saved, `DELETE /cache`.

mod common;

use std::time::Duration;

use common::*;
use http::{Method, StatusCode};
use tower_ai_mock::MockProvider;

const CHAT: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"count my words please"}]}"#;

#[tokio::test]
async fn hits_are_served_metered_and_purged() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "[cache]\nenabled = true\nttl = 60\n").await;
    let c = client();
    let url = format!("{}/openai/chat/completions", gw.url());
    let auth = ("authorization", "Bearer sk-cache-user");
    let first = post_json(&c, &url, &[auth], CHAT).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.headers["aigw-cache-status"], "MISS");
    // Key order and whitespace do not matter.
    let same = r#"{ "messages":[{"content":"count my words please","role":"user"}], "model":"gpt-4o-mini" }"#;
    let second = post_json(&c, &url, &[auth], same).await;
    assert_eq!(second.headers["aigw-cache-status"], "HIT");
    assert_eq!(second.body, first.body);
    assert_eq!(mock.requests(), 1);
    // Another credential never shares the entry.
    let other = post_json(
        &c,
        &url,
        &[("authorization", "Bearer sk-someone-else")],
        CHAT,
    )
    .await;
    assert_eq!(other.headers["aigw-cache-status"], "MISS");
    assert_eq!(mock.requests(), 2);

    // The meter recorded the hit with the usage it saved.
    let mut hit = None;
    for _ in 0..200 {
        let logs = send(
            &c,
            request(Method::GET, &format!("{}/logs", gw.url()), &[], ""),
        )
        .await
        .json();
        hit = logs["logs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["cache_status"] == "HIT")
            .cloned();
        if hit.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let hit = hit.expect("the hit is in the request log");
    assert_eq!(hit["usage_source"], "known");
    assert_eq!(hit["input_tokens"], 4);
    assert_eq!(hit["output_tokens"], 16);
    // And the miss with the usage the provider reported: the cache parsed the answer
    // once, for its entry and for the meter and the limiter above it (its usage slot).
    let mut misses = Vec::new();
    for _ in 0..200 {
        let logs = send(
            &c,
            request(Method::GET, &format!("{}/logs", gw.url()), &[], ""),
        )
        .await
        .json();
        misses = logs["logs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["cache_status"] == "MISS")
            .cloned()
            .collect();
        if misses.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(misses.len(), 2, "{misses:?}");
    for miss in misses {
        assert_eq!(miss["usage_source"], "reported");
        assert_eq!(miss["input_tokens"], 4);
        assert_eq!(miss["output_tokens"], 16);
    }

    // Purge everything: the next request goes upstream again.
    let purged = send(
        &c,
        request(Method::DELETE, &format!("{}/cache", gw.url()), &[], ""),
    )
    .await;
    assert_eq!(purged.status, StatusCode::OK);
    let after = post_json(&c, &url, &[auth], CHAT).await;
    assert_eq!(after.headers["aigw-cache-status"], "MISS");
    assert_eq!(mock.requests(), 3);
    let bad = send(
        &c,
        request(
            Method::DELETE,
            &format!("{}/cache?key=zz", gw.url()),
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn with_the_cache_off_delete_is_404_and_nothing_is_cached() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    let c = client();
    let url = format!("{}/openai/chat/completions", gw.url());
    for _ in 0..2 {
        let r = post_json(&c, &url, &[], CHAT).await;
        assert!(!r.headers.contains_key("aigw-cache-status"));
    }
    assert_eq!(mock.requests(), 2);
    let r = send(
        &c,
        request(Method::DELETE, &format!("{}/cache", gw.url()), &[], ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[test]
fn bad_cache_config_is_refused() {
    for (toml, want) in [
        ("[cache]\nscope = \"everyone\"", "cache.scope"),
        ("[cache]\nstore = \"disk\"", "cache.store"),
        ("[cache]\nttl = 0", "cache.ttl"),
    ] {
        let err = tower_ai_gateway::Config::from_toml(toml)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{toml}: {err}");
    }
}

#[tokio::test]
async fn a_replayed_stream_parses_in_a_real_sdk_to_the_same_text_and_usage() {
    use async_openai::Client;
    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessageArgs, ChatCompletionStreamOptions,
        CreateChatCompletionRequestArgs,
    };
    use futures_util::StreamExt;

    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "[cache]\nenabled = true\n").await;
    let sdk = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/openai", gw.url()))
            .with_api_key("sk-sdk-cache"),
    );
    let req = CreateChatCompletionRequestArgs::default()
        .model("gpt-4o-mini")
        .messages(vec![
            ChatCompletionRequestUserMessageArgs::default()
                .content("Tell me something nice")
                .build()
                .unwrap()
                .into(),
        ])
        .stream_options(ChatCompletionStreamOptions {
            include_usage: Some(true),
            include_obfuscation: None,
        })
        .build()
        .unwrap();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut stream = within(20, sdk.chat().create_stream(req.clone()))
            .await
            .unwrap();
        let (mut text, mut usage) = (String::new(), None);
        while let Some(chunk) = within(20, stream.next()).await {
            let chunk = chunk.expect("every replayed chunk parses");
            if let Some(c) = chunk.choices.first()
                && let Some(d) = &c.delta.content
            {
                text.push_str(d);
            }
            if chunk.usage.is_some() {
                usage = chunk.usage;
            }
        }
        let usage = usage.expect("usage chunk");
        runs.push((text, usage.prompt_tokens, usage.completion_tokens));
    }
    assert_eq!(runs[0], runs[1], "the replay reads as the live stream did");
    assert_eq!(runs[0].0, tower_ai_mock::reply_words(16));
    assert_eq!(mock.requests(), 1, "the second stream came from the cache");
}
