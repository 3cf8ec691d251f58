//! Fallback over real sockets: the gateway in front of mock providers that fail, an SDK
//! client, the universal endpoint, configured routes, breakers, streams that reset, and
//! the cache above and below the fallback layer.

mod common;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
};
use bytes::Bytes;
use common::*;
use http::Method;
use tower::{ServiceBuilder, ServiceExt};
use tower_ai_cache::CacheLayer;
use tower_ai_client::Client as Upstream;
use tower_ai_core::{Body, Providers};
use tower_ai_fallback::FallbackLayer;
use tower_ai_mock::{Faults, MockConfig, MockProvider, reply_words};
use tower_ai_provider_route::ProviderRouteLayer;

async fn failing(status: u16) -> MockProvider {
    MockProvider::start_with(MockConfig {
        faults: Faults {
            status: Some(status),
            ..Faults::default()
        },
    })
    .await
    .unwrap()
}

/// An address nothing listens on: connections are refused.
async fn refused() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// A gateway with `openai` at `first` and `groq` at `second`, and the route `resilient`
/// over them.
async fn two_providers(first: &str, second: &str, extra: &str) -> tower_ai_gateway::RunningGateway {
    start(&format!(
        r#"
        listen = "127.0.0.1:0"
        [providers.openai]
        base_url = "{first}/v1"
        [providers.groq]
        base_url = "{second}/v1"
        [fallback.routes.resilient]
        [[fallback.routes.resilient.targets]]
        provider = "openai"
        model = "gpt-4o-mini"
        [[fallback.routes.resilient.targets]]
        provider = "groq"
        model = "llama-3.3-70b"
        {extra}
        "#
    ))
    .await
}

fn sdk(base: String) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(base)
            .with_api_key("sk-app"),
    )
}

async fn ask(client: &Client<OpenAIConfig>, model: &str) -> String {
    let req = CreateChatCompletionRequestArgs::default()
        .model(model)
        .messages(vec![
            ChatCompletionRequestUserMessageArgs::default()
                .content("Say something")
                .build()
                .unwrap()
                .into(),
        ])
        .build()
        .unwrap();
    let res = within(20, client.chat().create(req)).await.unwrap();
    res.choices[0].message.content.clone().unwrap()
}

const CHAT: &str =
    r#"{"model":"resilient","messages":[{"role":"user","content":"Say something"}]}"#;

#[tokio::test]
async fn an_sdk_gets_the_second_providers_answer_when_the_first_returns_503() {
    let down = failing(503).await;
    let up = MockProvider::start().await.unwrap();
    let gw = two_providers(&down.url(), &up.url(), "").await;

    let answer = ask(&sdk(format!("{}/openai", gw.url())), "resilient").await;
    assert_eq!(answer, reply_words(16));
    assert_eq!(down.requests(), 1);
    let served = up.last_request().unwrap();
    assert_eq!(served.uri.path(), "/v1/chat/completions");
    let body: serde_json::Value = serde_json::from_slice(&served.body).unwrap();
    assert_eq!(body["model"], "llama-3.3-70b");
    // The app's OpenAI key is never sent to another provider.
    assert!(served.headers.get("authorization").is_none());

    let res = post_json(
        &client(),
        &format!("{}/openai/chat/completions", gw.url()),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.headers["aigw-step"], "1");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_sdk_gets_the_second_providers_answer_when_the_first_refuses_connections() {
    let up = MockProvider::start().await.unwrap();
    let gw = two_providers(&refused().await, &up.url(), "").await;
    let answer = ask(&sdk(format!("{}/openai", gw.url())), "resilient").await;
    assert_eq!(answer, reply_words(16));
    let res = post_json(
        &client(),
        &format!("{}/openai/chat/completions", gw.url()),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(
        (
            res.status.as_u16(),
            res.headers["aigw-step"].to_str().unwrap()
        ),
        (200, "1")
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_step_failing_gives_the_last_error_in_json() {
    let down = failing(503).await;
    let gw = two_providers(&down.url(), &refused().await, "").await;
    let res = post_json(
        &client(),
        &format!("{}/openai/chat/completions", gw.url()),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 502);
    assert_eq!(
        res.json()["error"]["message"],
        "could not connect to the provider"
    );

    let gw = two_providers(&refused().await, &down.url(), "").await;
    let res = post_json(
        &client(),
        &format!("{}/openai/chat/completions", gw.url()),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(res.status, 503);
    assert_eq!(res.headers["aigw-step"], "1");
    assert!(
        res.json()["error"].is_object(),
        "the provider's own JSON error"
    );
}

#[tokio::test]
async fn the_universal_endpoint_tries_steps_in_order() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    let steps = r#"[
      {"provider":"openai","endpoint":"chat/completions","headers":{"authorization":"Bearer sk-o","x-mock-status":"503"},
       "query":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi there"}]}},
      {"provider":"anthropic","endpoint":"v1/messages","headers":{"x-api-key":"sk-a","anthropic-version":"2023-06-01"},
       "query":{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi there"}]}}
    ]"#;
    for path in ["/", "/v1/acct/my-gateway"] {
        mock.clear_recorded();
        let res = post_json(&client(), &format!("{}{path}", gw.url()), &[], steps).await;
        assert_eq!(res.status, 200, "{path}");
        assert_eq!(res.headers["aigw-step"], "1");
        assert_eq!(res.json()["type"], "message", "Anthropic's answer");
        let seen = mock.recorded();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].uri.path(), "/v1/chat/completions");
        assert_eq!(seen[0].headers["authorization"], "Bearer sk-o");
        assert_eq!(seen[1].uri.path(), "/v1/messages");
        assert_eq!(seen[1].headers["x-api-key"], "sk-a");
        assert!(seen[1].headers.get("authorization").is_none());
    }

    // Malformed: a 400 in JSON that reaches no provider.
    mock.clear_recorded();
    for body in [
        "{}",
        "[]",
        "[1]",
        "not json",
        r#"[{"provider":"nope","endpoint":"x","query":{}}]"#,
    ] {
        let res = post_json(&client(), &format!("{}/", gw.url()), &[], body).await;
        assert_eq!(res.status, 400, "{body}");
        assert_eq!(res.json()["error"]["type"], "invalid_request_error");
    }
    assert!(mock.recorded().is_empty());
}

#[tokio::test]
async fn an_open_breaker_sends_no_traffic_and_shows_in_metrics() {
    let down = failing(500).await;
    let up = MockProvider::start().await.unwrap();
    let gw = two_providers(
        &down.url(),
        &up.url(),
        "[fallback]\nbreaker_failures = 2\nbreaker_cool_down_secs = 3600",
    )
    .await;
    let url = format!("{}/openai/chat/completions", gw.url());
    for _ in 0..2 {
        assert_eq!(
            post_json(&client(), &url, &[], CHAT).await.headers["aigw-step"],
            "1"
        );
    }
    assert_eq!(down.requests(), 2);
    for _ in 0..5 {
        let res = post_json(&client(), &url, &[], CHAT).await;
        assert_eq!(
            (
                res.status.as_u16(),
                res.headers["aigw-step"].to_str().unwrap()
            ),
            (200, "1")
        );
    }
    assert_eq!(
        down.requests(),
        2,
        "the open circuit sends the failing provider nothing"
    );
    let metrics = send(
        &client(),
        request(Method::GET, &format!("{}/metrics", gw.url()), &[], ""),
    )
    .await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("aigw_circuit_state{target=\"openai\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("aigw_circuit_state{target=\"groq\"} 0"),
        "{text}"
    );
    assert!(text.contains("aigw_fallback_skipped_total 5"), "{text}");
}

fn stream_body(model: &str) -> String {
    format!(
        r#"{{"model":"{model}","stream":true,"messages":[{{"role":"user","content":"Say something"}}]}}"#
    )
}

#[tokio::test]
async fn a_stream_that_resets_before_content_falls_back() {
    let flaky = MockProvider::start_with(MockConfig {
        faults: Faults {
            reset_after: Some(1),
            ..Faults::default()
        },
    })
    .await
    .unwrap();
    let up = MockProvider::start().await.unwrap();
    let gw = two_providers(&flaky.url(), &up.url(), "").await;
    let req = request(
        Method::POST,
        &format!("{}/openai/chat/completions", gw.url()),
        &[("content-type", "application/json")],
        stream_body("resilient"),
    );
    let res = within(20, client().request(req)).await.unwrap();
    assert_eq!(res.headers()["aigw-step"], "1");
    let (frames, end) = within(20, frames(res)).await;
    assert_eq!(end, Ok(()));
    let text = String::from_utf8(concat(&frames)).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(flaky.requests(), 1);
}

#[tokio::test]
async fn a_mid_stream_reset_ends_in_error_never_a_clean_done() {
    let mock = MockProvider::start().await.unwrap();
    // Through a route (so the fallback layer guards the stream) and plain.
    let gw = two_providers(&mock.url(), &mock.url(), "").await;
    for model in ["resilient", "gpt-4o-mini"] {
        let req = request(
            Method::POST,
            &format!("{}/openai/chat/completions", gw.url()),
            &[
                ("content-type", "application/json"),
                ("x-mock-reset-after", "5"),
            ],
            stream_body(model),
        );
        let res = within(20, client().request(req)).await.unwrap();
        assert_eq!(res.status(), 200);
        let (frames, end) = within(20, frames(res)).await;
        let text = String::from_utf8(concat(&frames)).unwrap();
        assert!(
            end.is_err(),
            "{model}: the body must end in an error: {text}"
        );
        assert!(!text.contains("[DONE]"), "{model}: {text}");
        assert!(
            text.contains("\"delta\""),
            "{model}: content was committed first: {text}"
        );
    }
}

#[tokio::test]
async fn retry_headers_retry_the_same_provider() {
    let down = failing(503).await;
    let gw = gateway_for(&down, "").await;
    let res = post_json(
        &client(),
        &format!("{}/openai/chat/completions", gw.url()),
        &[
            ("aigw-max-attempts", "3"),
            ("aigw-retry-delay", "1"),
            ("aigw-backoff", "constant"),
        ],
        r#"{"model":"gpt-4o-mini","messages":[]}"#,
    )
    .await;
    assert_eq!(res.status, 503);
    assert_eq!(down.requests(), 3);
    for (h, v) in [
        ("aigw-max-attempts", "1000"),
        ("cf-aig-retry-delay", "-5"),
        ("aigw-backoff", "sometimes"),
    ] {
        let res = post_json(
            &client(),
            &format!("{}/openai/chat/completions", gw.url()),
            &[(h, v)],
            r#"{"model":"gpt-4o-mini","messages":[]}"#,
        )
        .await;
        assert_eq!(res.status, 400, "{h}: {v}");
        assert_eq!(res.json()["error"]["type"], "invalid_request_error");
    }
    assert_eq!(down.requests(), 3, "bad headers reach no provider");
}

#[tokio::test]
async fn cache_below_fallback_caches_each_step() {
    let down = failing(503).await;
    let up = MockProvider::start().await.unwrap();
    let gw = two_providers(&down.url(), &up.url(), "[cache]\nenabled = true").await;
    let url = format!("{}/openai/chat/completions", gw.url());
    let first = post_json(&client(), &url, &[], CHAT).await;
    assert_eq!(first.headers["aigw-cache-status"], "MISS");
    let second = post_json(&client(), &url, &[], CHAT).await;
    assert_eq!(second.headers["aigw-step"], "1");
    assert_eq!(second.headers["aigw-cache-status"], "HIT");
    assert_eq!(second.body, first.body);
    assert_eq!(
        up.requests(),
        1,
        "the served step's answer came from the cache"
    );
}

#[tokio::test]
async fn cache_above_fallback_caches_the_whole_universal_request() {
    let mock = MockProvider::start().await.unwrap();
    let providers = Providers::builtin();
    let mut providers = providers;
    providers
        .set_base_url("openai", &format!("{}/v1", mock.url()))
        .unwrap();
    providers
        .set_base_url("groq", &format!("{}/v1", mock.url()))
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(CacheLayer::memory(1 << 20).with_providers(providers.clone()))
        .layer(FallbackLayer::new())
        .layer(ProviderRouteLayer::new(providers))
        .service(Upstream::builder().build().unwrap());
    let steps = r#"[
      {"provider":"openai","endpoint":"chat/completions","headers":{"x-mock-status":"500"},"query":{"model":"a","messages":[]}},
      {"provider":"groq","endpoint":"chat/completions","query":{"model":"b","messages":[]}}
    ]"#;
    let call = || {
        svc.clone().oneshot(
            http::Request::post("/")
                .header("content-type", "application/json")
                .body(Body::from(Bytes::from_static(steps.as_bytes())))
                .unwrap(),
        )
    };
    let first = within(20, call()).await.unwrap();
    assert_eq!(first.headers()["aigw-cache-status"], "MISS");
    assert_eq!(first.headers()["aigw-step"], "1");
    let first = http_body_util::BodyExt::collect(first.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(mock.requests(), 2);
    let second = within(20, call()).await.unwrap();
    assert_eq!(second.headers()["aigw-cache-status"], "HIT");
    let second = http_body_util::BodyExt::collect(second.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(second, first);
    assert_eq!(
        mock.requests(),
        2,
        "one entry for the whole universal request: no step ran"
    );
}

#[tokio::test]
async fn a_meter_above_fallback_records_the_step_that_served() {
    use std::sync::Arc;
    use tower_ai_meter::{Aggregates, MeterLayer};

    let mock = MockProvider::start().await.unwrap();
    let mut providers = Providers::builtin();
    providers
        .set_base_url("openai", &format!("{}/v1", mock.url()))
        .unwrap();
    providers
        .set_base_url("groq", &format!("{}/v1", mock.url()))
        .unwrap();
    let aggregates = Arc::new(Aggregates::new());
    let svc = ServiceBuilder::new()
        .layer(MeterLayer::new(aggregates.clone()).with_providers(providers.clone()))
        .layer(FallbackLayer::new())
        .layer(ProviderRouteLayer::new(providers))
        .service(Upstream::builder().build().unwrap());
    let steps = r#"[
      {"provider":"openai","endpoint":"chat/completions","headers":{"x-mock-status":"500"},"query":{"model":"a","messages":[{"role":"user","content":"one two three"}]}},
      {"provider":"groq","endpoint":"chat/completions","query":{"model":"b","messages":[{"role":"user","content":"one two three"}]}}
    ]"#;
    let res = within(
        20,
        svc.oneshot(
            http::Request::post("/")
                .header("content-type", "application/json")
                .body(Body::from(Bytes::from_static(steps.as_bytes())))
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(res.headers()["aigw-step"], "1");
    http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap();
    let by_model = aggregates.by_model();
    assert_eq!(by_model.len(), 1, "{by_model:?}");
    let (provider, model, totals) = &by_model[0];
    assert_eq!((&**provider, model.as_str()), ("groq", "b"));
    assert_eq!(
        (totals.requests, totals.input_tokens, totals.output_tokens),
        (1, 3, 16)
    );
}

#[tokio::test]
async fn a_route_mixes_providers_through_compat() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(
        &mock,
        r#"
        [fallback.routes.smart]
        [[fallback.routes.smart.targets]]
        provider = "anthropic"
        model = "claude-sonnet-4-5"
        headers = { "x-mock-status" = "529" }
        [[fallback.routes.smart.targets]]
        provider = "openai"
        model = "gpt-4o-mini"
        "#,
    )
    .await;
    // Anthropic is overloaded: the OpenAI-format client gets OpenAI's answer.
    let answer = ask(&sdk(format!("{}/compat", gw.url())), "smart").await;
    assert_eq!(answer, reply_words(16));
    let seen = mock.recorded();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].uri.path(),
        "/v1/messages",
        "translated for Anthropic"
    );
    let first: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(first["model"], "claude-sonnet-4-5");
    assert_eq!(seen[1].uri.path(), "/v1/chat/completions");

    // Anthropic up: its answer, translated into OpenAI's format, from step 0.
    let gw = gateway_for(
        &mock,
        r#"
        [fallback.routes.smart]
        [[fallback.routes.smart.targets]]
        provider = "anthropic"
        model = "claude-sonnet-4-5"
        [[fallback.routes.smart.targets]]
        provider = "openai"
        model = "gpt-4o-mini"
        "#,
    )
    .await;
    let res = post_json(
        &client(),
        &format!("{}/compat/chat/completions", gw.url()),
        &[],
        CHAT.replace("resilient", "smart").as_str(),
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.headers["aigw-step"], "0");
    assert_eq!(res.json()["object"], "chat.completion");
}

#[tokio::test]
async fn a_retrying_policy_recovers_from_a_failed_first_attempt() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "[fallback]\nmax_attempts = 2\nretry_delay_ms = 0").await;
    let url = format!("{}/openai/chat/completions", gw.url());
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let res = post_json(&client(), &url, &[("x-mock-fail-first", "req-1")], body).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.headers["aigw-step"], "0");
    assert_eq!(
        mock.requests(),
        2,
        "the first attempt failed, the retry was answered"
    );
    // Without the policy, the failure is the answer.
    let plain = gateway_for(&mock, "").await;
    let res = post_json(
        &client(),
        &format!("{}/openai/chat/completions", plain.url()),
        &[("x-mock-fail-first", "req-2")],
        body,
    )
    .await;
    assert_eq!(res.status, 503);
    assert!(res.headers.get("aigw-step").is_none());
}

#[tokio::test]
async fn below_fallback_the_meter_records_every_attempt_with_its_step() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    let steps = r#"[
      {"provider":"openai","endpoint":"chat/completions","headers":{"x-mock-status":"503"},"query":{"model":"gpt-4o-mini","messages":[]}},
      {"provider":"anthropic","endpoint":"v1/messages","query":{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}}
    ]"#;
    let res = post_json(&client(), &format!("{}/", gw.url()), &[], steps).await;
    assert_eq!(res.headers["aigw-step"], "1");
    let mut rows = Vec::new();
    for _ in 0..200 {
        let logs = send(
            &client(),
            request(Method::GET, &format!("{}/logs", gw.url()), &[], ""),
        )
        .await
        .json();
        rows = logs["logs"].as_array().unwrap().clone();
        if rows.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let mut seen: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r["provider"].as_str().unwrap().to_owned(),
                r["status"].as_u64(),
                r["fallback_step"].as_u64(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "anthropic".to_owned(),
                Some(200),
                Some(1),
                "complete".to_owned()
            ),
            (
                "openai".to_owned(),
                Some(503),
                Some(0),
                "complete".to_owned()
            ),
        ]
    );
}
