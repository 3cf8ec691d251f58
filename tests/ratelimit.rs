//! Rate limits through the gateway over real sockets: exact under concurrency in memory
//! and in Redis (also across two gateway instances), token limits trued up with the
//! real usage of a stream, and the 429 an SDK understands.

mod common;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
};
use common::*;
use tower_ai_mock::MockProvider;

const CHAT: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"count my words please"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_100_of_1000_from_64_tasks_in_memory() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, &limits("memory", "")).await;
    let (ok, limited, other) = flood(vec![gw.url()], 1000, 64, "sk-flood-memory").await;
    assert_eq!((ok, limited, other), (100, 900, 0));
    assert_eq!(
        mock.requests(),
        100,
        "refused requests never reach the provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_100_across_two_gateways_on_one_redis() {
    let mock = MockProvider::start().await.unwrap();
    let prefix = format!("tower-ai-test:gw:{}:{}:", std::process::id(), line!());
    let a = gateway_for(&mock, &limits("redis", &prefix)).await;
    let b = gateway_for(&mock, &limits("redis", &prefix)).await;
    let (ok, limited, other) = flood(vec![a.url(), b.url()], 1000, 64, "sk-flood-redis").await;
    assert_eq!((ok, limited, other), (100, 900, 0));
    assert_eq!(mock.requests(), 100);
}

#[tokio::test]
async fn a_429_the_openai_sdk_understands() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(
        &mock,
        r#"
        [[ratelimit.limits]]
        name = "tiny"
        key = "api_key"
        requests = 1
        period = "1m"
        "#,
    )
    .await;
    // Retries off (the SDK's default retry would wait out `retry-after` and try again).
    let sdk = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/openai", gw.url()))
            .with_api_key("sk-sdk-limited"),
    )
    .with_http_service(async_openai::middleware::ReqwestService::new(
        reqwest::Client::new(),
    ));
    let req = CreateChatCompletionRequestArgs::default()
        .model("gpt-4o-mini")
        .messages(vec![
            ChatCompletionRequestUserMessageArgs::default()
                .content("hi")
                .build()
                .unwrap()
                .into(),
        ])
        .build()
        .unwrap();
    within(20, sdk.chat().create(req.clone())).await.unwrap();
    let err = within(20, sdk.chat().create(req)).await.unwrap_err();
    match err {
        async_openai::error::OpenAIError::ApiError(e) => {
            assert_eq!(e.status_code.as_u16(), 429);
            assert_eq!(e.api_error.r#type.as_deref(), Some("rate_limit_exceeded"));
            assert!(e.api_error.message.contains("tiny"), "{e:?}");
        }
        other => panic!("expected a rate-limit API error, got {other:?}"),
    }
    // The raw answer: retry-after matches the GCRA refill of one request per minute.
    let r = post_json(
        &client(),
        &format!("{}/openai/chat/completions", gw.url()),
        &[("authorization", "Bearer sk-sdk-limited")],
        CHAT,
    )
    .await;
    assert_eq!(r.status, 429);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((55..=60).contains(&retry), "{retry}");
    assert_eq!(r.headers["x-ratelimit-limit-requests"], "1");
    assert_eq!(r.headers["x-ratelimit-remaining-requests"], "0");
    assert!(
        r.headers["ratelimit-policy"]
            .to_str()
            .unwrap()
            .contains("\"tiny\";q=1;w=60")
    );
    assert!(r.headers.contains_key("ratelimit"));
    // Another key has its own bucket.
    let other = post_json(
        &client(),
        &format!("{}/openai/chat/completions", gw.url()),
        &[("authorization", "Bearer sk-someone-else")],
        CHAT,
    )
    .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.headers["x-ratelimit-remaining-requests"], "0");
}

#[tokio::test]
async fn a_stream_is_debited_its_real_usage_when_it_ends() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(
        &mock,
        r#"
        [[ratelimit.limits]]
        name = "tokens"
        key = "api_key"
        tokens = 100
        algorithm = "fixed"
        period = "1h"
        "#,
    )
    .await;
    let c = client();
    let url = format!("{}/openai/chat/completions", gw.url());
    // max_tokens 1: the reservation is tiny, but the mock streams 60 words.
    let stream = r#"{"model":"gpt-4o-mini","stream":true,"max_tokens":1,"messages":[{"role":"user","content":"count my words please"}]}"#;
    let auth = ("authorization", "Bearer sk-token-limited");
    let chunks = ("x-mock-chunks", "60");
    let first = post_json(&c, &url, &[auth, chunks], stream).await;
    assert_eq!(first.status, 200);
    assert!(first.body.ends_with(b"data: [DONE]\n\n"));
    // Real usage: 4 input + 60 output = 64 of 100. The next reservation (~6) fits.
    let second = post_json(&c, &url, &[auth, chunks], stream).await;
    assert_eq!(second.status, 200);
    let remaining: u64 = second.headers["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(remaining <= 36, "{remaining}");
    // 128 used: over. Refused, though each estimate alone was small.
    let third = post_json(&c, &url, &[auth, chunks], stream).await;
    assert_eq!(third.status, 429);
    assert_eq!(third.json()["error"]["type"], "rate_limit_exceeded");
    assert_eq!(mock.requests(), 2);
}

#[tokio::test]
async fn a_concurrency_slot_is_held_until_the_stream_ends() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(
        &mock,
        r#"
        [[ratelimit.limits]]
        name = "one-at-a-time"
        key = "api_key"
        concurrency = 1
        "#,
    )
    .await;
    let stream =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let url = format!("{}/openai/chat/completions", gw.url());
    let req = request(
        http::Method::POST,
        &url,
        &[
            ("authorization", "Bearer sk-conc"),
            ("x-mock-chunks", "8"),
            ("x-mock-chunk-delay-ms", "100"),
        ],
        stream,
    );
    let res = within(20, client().request(req)).await.unwrap();
    assert_eq!(res.status(), 200);
    // Headers are in, the stream is not over: the slot is still taken.
    let busy = post_json(
        &client(),
        &url,
        &[("authorization", "Bearer sk-conc")],
        CHAT,
    )
    .await;
    assert_eq!(busy.status, 429);
    let (_, end) = within(20, frames(res)).await;
    end.unwrap();
    let free = post_json(
        &client(),
        &url,
        &[("authorization", "Bearer sk-conc")],
        CHAT,
    )
    .await;
    assert_eq!(free.status, 200);
}

#[tokio::test]
async fn unreachable_redis_at_start_up_is_a_configuration_error() {
    let mock = MockProvider::start().await.unwrap();
    // Unreachable at start-up: a configuration error, never a limit quietly off.
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[meter]\nlog_path = \"\"\n[providers.openai]\nbase_url = \"{}/v1\"\n[ratelimit]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"\n[[ratelimit.limits]]\nname = \"x\"\nrequests = 5\n",
        mock.url()
    );
    let config = tower_ai_gateway::Config::from_toml(&toml).unwrap();
    let err = tower_ai_gateway::RunningGateway::start(config)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ratelimit.redis_url"), "{err}");
}
