//! The cache in the prebuilt gateway: configured from TOML, hits served without the
//! provider and recorded by the meter with the usage they saved, `DELETE /cache`.

mod common;

use std::time::Duration;

use common::*;
use http::{Method, StatusCode};
use tower_ai_mock::MockProvider;

const CHAT: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"count my words please"}]}"#;

/// The request log's records with this cache status.
fn with_status<'a>(logs: &'a serde_json::Value, status: &str) -> Vec<&'a serde_json::Value> {
    logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["cache_status"] == status)
        .collect()
}

/// `GET /logs` until `done` holds (the request log is written in batches), 5 s at most.
async fn logs_until(
    c: &HttpClient,
    base: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut logs = serde_json::Value::Null;
    for _ in 0..200 {
        logs = send(c, request(Method::GET, &format!("{base}/logs"), &[], ""))
            .await
            .json();
        if done(&logs) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    logs
}

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

    // The meter recorded the hit with the usage it saved, and the misses with the usage
    // the provider reported (the cache parsed each answer once, for its entry and, through
    // its usage slot, for the meter above it).
    let logs = logs_until(&c, &gw.url(), |all| {
        with_status(all, "HIT").len() == 1 && with_status(all, "MISS").len() == 2
    })
    .await;
    let hit = with_status(&logs, "HIT")[0];
    assert_eq!(hit["usage_source"], "known");
    assert_eq!(hit["input_tokens"], 4);
    assert_eq!(hit["output_tokens"], 16);
    for miss in with_status(&logs, "MISS") {
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

#[tokio::test]
async fn a_stream_that_misses_is_read_once_for_the_entry_the_rate_limiter_and_the_meter() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(
        &mock,
        r#"
        [cache]
        enabled = true
        [[ratelimit.limits]]
        name = "tokens"
        key = "api_key"
        tokens = 1000
        algorithm = "fixed"
        period = "1h"
        "#,
    )
    .await;
    let c = client();
    let url = format!("{}/openai/chat/completions", gw.url());
    let auth = ("authorization", "Bearer sk-stream-cache");
    let chunks = ("x-mock-chunks", "60");
    // max_tokens 1: the rate limiter reserves little; what it is debited at the end is
    // what the stream reported, read from the cache's usage slot.
    let stream = |prompt: &str| {
        format!(
            r#"{{"model":"gpt-4o-mini","stream":true,"stream_options":{{"include_usage":true}},"max_tokens":1,"messages":[{{"role":"user","content":"{prompt}"}}]}}"#
        )
    };
    let first = post_json(&c, &url, &[auth, chunks], &stream("count my words please")).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.headers["aigw-cache-status"], "MISS");
    assert!(first.body.ends_with(b"data: [DONE]\n\n"));
    let second = post_json(&c, &url, &[auth, chunks], &stream("count these words")).await;
    assert_eq!(second.headers["aigw-cache-status"], "MISS");
    let remaining: u64 = second.headers["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // 4 input + 60 output debited for the first, a small reservation for the second.
    assert!((900..=936).contains(&remaining), "{remaining}");

    // The same stream again is a hit, replayed with the usage the entry kept.
    let hit = post_json(&c, &url, &[auth, chunks], &stream("count my words please")).await;
    assert_eq!(hit.headers["aigw-cache-status"], "HIT");
    assert_eq!(hit.body, first.body);

    // A stream the provider cuts: the layers above get the estimate of what was
    // streamed, from the slot the cache filled before the error reached them.
    let cut = c
        .request(request(
            Method::POST,
            &url,
            &[
                auth,
                chunks,
                ("content-type", "application/json"),
                ("x-mock-reset-after", "5"),
            ],
            stream("cut me short"),
        ))
        .await
        .unwrap();
    assert_eq!(cut.headers()["aigw-cache-status"], "MISS");
    let (got, end) = within(20, frames(cut)).await;
    assert_eq!(got.len(), 5, "the events before the reset");
    assert!(end.is_err());

    let logs = logs_until(&c, &gw.url(), |all| {
        all["logs"].as_array().is_some_and(|l| l.len() == 4)
    })
    .await;
    let logs = logs["logs"].as_array().unwrap();
    // Newest first: the cut stream, the hit, the two misses.
    let (cut, hit, misses) = (&logs[0], &logs[1], &logs[2..]);
    for miss in misses {
        assert_eq!(miss["cache_status"], "MISS");
        assert_eq!(miss["usage_source"], "reported");
        assert_eq!(miss["output_tokens"], 60);
    }
    assert_eq!(hit["usage_source"], "known");
    assert_eq!(hit["output_tokens"], 60);
    assert_eq!(cut["outcome"], "failed");
    assert_eq!(cut["usage_source"], "estimated");
    let streamed = cut["output_tokens"].as_u64().unwrap();
    assert!((1..60).contains(&streamed), "{streamed}");
    assert_eq!(mock.requests(), 3);
}
