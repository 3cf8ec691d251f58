//! The authenticated gateway over real sockets: gateway tokens, virtual keys (provider
//! keys the client never holds, providers and models, limits, budgets, tags), the admin
//! token, and `gateway keys create`.

mod common;

use common::*;
use http::{Method, StatusCode};
use tower_ai::auth::TokenHash;
use tower_ai_mock::MockProvider;

const ALPHA: &str = "aigw_alpha-token-0001";
const BETA: &str = "aigw_beta-token-0002";
const ADMIN: &str = "aigw_admin-token-0003";
const ALPHA_OPENAI_KEY: &str = "sk-alpha-provider-key";

const CHAT: &str =
    r#"{"model":"gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

/// `alpha`: holds an OpenAI key, 2 requests a minute of its own. `beta`: OpenAI only,
/// `gpt-4o-mini` only, tagged. Cache on. `extra_auth` goes in `[auth]`.
async fn gateway(
    mock: &MockProvider,
    extra_auth: &str,
    extra: &str,
) -> tower_ai_gateway::RunningGateway {
    gateway_for(
        mock,
        &format!(
            r#"
            [cache]
            enabled = true
            [auth]
            enabled = true
            admin_token_hashes = ["{admin}"]
            {extra_auth}
            [[auth.keys]]
            name = "alpha"
            token_hash = "{alpha}"
            provider_keys = {{ openai = "{ALPHA_OPENAI_KEY}" }}
            [[auth.keys.limits]]
            name = "rpm"
            requests = 2
            period = "1m"
            [[auth.keys]]
            name = "beta"
            token_hash = "{beta}"
            providers = ["openai"]
            models = ["gpt-4o-mini"]
            tags = {{ team = "search" }}
            {extra}
            "#,
            admin = TokenHash::of(ADMIN).to_hex(),
            alpha = TokenHash::of(ALPHA).to_hex(),
            beta = TokenHash::of(BETA).to_hex(),
        ),
    )
    .await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn assert_error(r: &Sent, status: StatusCode, kind: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.json()["error"]["type"], kind);
}

#[tokio::test]
async fn without_a_valid_token_nothing_is_reached() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway(&mock, "", "").await;
    let c = client();
    let url = format!("{}/openai/chat/completions", gw.url());
    let wrong = bearer("aigw_wrong");
    let alpha_prefix = bearer(&ALPHA[..ALPHA.len() - 1]);
    let provider_key = bearer("sk-some-provider-key");
    let refused: [&[(&str, &str)]; 5] = [
        &[],
        &[("aigw-authorization", &wrong)],
        &[("aigw-authorization", &alpha_prefix)],
        // A provider key alone is not a gateway token.
        &[("authorization", &provider_key)],
        &[("x-api-key", "sk-ant-whatever")],
    ];
    // Each many times over: were any counted in a bucket, alpha's 2 a minute would go.
    for _ in 0..3 {
        for headers in refused {
            let r = post_json(&c, &url, headers, CHAT).await;
            assert_error(&r, StatusCode::UNAUTHORIZED, "authentication_error");
            assert!(r.headers.contains_key("www-authenticate"));
            let text = String::from_utf8_lossy(&r.body);
            assert!(
                !text.contains("wrong") && !text.contains("alpha-token"),
                "{text}"
            );
        }
    }
    assert_eq!(mock.requests(), 0, "a refused request reached the provider");

    // Alpha: its provider key reaches the mock, the client never sent it, the token
    // does not go upstream. The refusals left no cache entry: a MISS.
    let alpha = bearer(ALPHA);
    let r = post_json(&c, &url, &[("aigw-authorization", &alpha)], CHAT).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["aigw-cache-status"], "MISS");
    let seen = mock.last_request().unwrap();
    assert_eq!(
        seen.headers["authorization"],
        bearer(ALPHA_OPENAI_KEY).as_str()
    );
    for (name, value) in &seen.headers {
        assert!(!name.as_str().contains("aigw"), "{name} went upstream");
        assert!(
            !String::from_utf8_lossy(value.as_bytes()).contains(ALPHA),
            "the token went upstream in {name}"
        );
    }
    let r = post_json(&c, &url, &[("aigw-authorization", &alpha)], CHAT).await;
    assert_eq!(r.headers["aigw-cache-status"], "HIT");
    // Alpha's own limit: 2 a minute, none taken by the refusals above (the hit counted).
    let r = post_json(&c, &url, &[("aigw-authorization", &alpha)], CHAT).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded");
    assert_eq!(mock.requests(), 1);

    // Beta asks the same thing: its own cache scope (a MISS, not alpha's answer) and
    // no limit of alpha's.
    let beta = bearer(BETA);
    for _ in 0..3 {
        let r = post_json(
            &c,
            &url,
            &[
                ("aigw-authorization", &beta),
                ("authorization", "Bearer sk-beta-own"),
            ],
            CHAT,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(mock.requests(), 2, "beta's first was a miss, then hits");
    // Beta holds no provider key: its own went through, the token did not.
    assert_eq!(
        mock.last_request().unwrap().headers["authorization"],
        "Bearer sk-beta-own"
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_token_in_the_sdks_authorization_header_when_the_gateway_holds_the_key() {
    use async_openai::Client;
    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
    };

    let mock = MockProvider::start().await.unwrap();
    let gw = gateway(&mock, "", "").await;
    // The app knows one key, its gateway token, as if it were OpenAI's.
    let sdk = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/openai", gw.url()))
            .with_api_key(ALPHA),
    );
    let req = CreateChatCompletionRequestArgs::default()
        .model("gpt-4o-mini")
        .messages(vec![
            ChatCompletionRequestUserMessageArgs::default()
                .content("hello")
                .build()
                .unwrap()
                .into(),
        ])
        .build()
        .unwrap();
    let res = within(20, sdk.chat().create(req)).await.unwrap();
    assert!(res.choices[0].message.content.is_some());
    let seen = mock.last_request().unwrap();
    assert_eq!(
        seen.headers["authorization"],
        bearer(ALPHA_OPENAI_KEY).as_str()
    );

    // A wrong token there: 401 through the SDK, nothing upstream.
    let bad = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/openai", gw.url()))
            .with_api_key("aigw_not-a-token"),
    );
    let req = CreateChatCompletionRequestArgs::default()
        .model("gpt-4o-mini")
        .messages(vec![
            ChatCompletionRequestUserMessageArgs::default()
                .content("hello")
                .build()
                .unwrap()
                .into(),
        ])
        .build()
        .unwrap();
    assert!(within(20, bad.chat().create(req)).await.is_err());
    assert_eq!(mock.requests(), 1);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn providers_and_models_outside_a_key_are_403_and_reach_nothing() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway(&mock, "", "").await;
    let c = client();
    let beta = bearer(BETA);
    let h = [("aigw-authorization", beta.as_str())];
    let anthropic = format!("{}/anthropic/v1/messages", gw.url());
    let r = post_json(
        &c,
        &anthropic,
        &h,
        r#"{"model":"gpt-4o-mini","max_tokens":4,"messages":[]}"#,
    )
    .await;
    assert_error(&r, StatusCode::FORBIDDEN, "permission_error");
    let openai = format!("{}/openai/chat/completions", gw.url());
    for body in [
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"messages":[{"role":"user","content":"hi"}]}"#,
    ] {
        let r = post_json(&c, &openai, &h, body).await;
        assert_error(&r, StatusCode::FORBIDDEN, "permission_error");
    }
    assert_eq!(mock.requests(), 0);
    let r = post_json(&c, &openai, &h, CHAT).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(mock.requests(), 1);

    // Beta's tags are on its records in the request log.
    let admin = bearer(ADMIN);
    let mut rows = serde_json::Value::Null;
    for _ in 0..200 {
        let r = send(
            &c,
            request(
                Method::GET,
                &format!("{}/logs", gw.url()),
                &[("aigw-authorization", &admin)],
                "",
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        rows = r.json()["logs"].clone();
        if rows
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["status"] == 200))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let ok = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == 200)
        .expect("the request is logged");
    assert_eq!(ok["metadata"]["team"], "search", "{ok}");
    assert_eq!(ok["metadata"]["virtual_key"], "beta", "{ok}");
    assert_eq!(ok["key_id"], tower_ai_core_key_id(BETA), "{ok}");
    gw.shutdown().await.unwrap();
}

fn tower_ai_core_key_id(token: &str) -> String {
    tower_ai::core::key_id(token)
}

#[tokio::test]
async fn a_keys_budget_is_its_own() {
    let mock = MockProvider::start().await.unwrap();
    // Gamma: a budget of $0.0002 a day; each request costs gpt-4o-mini prices.
    let gamma = "aigw_gamma-token-0004";
    let gw = gateway(
        &mock,
        "",
        &format!(
            r#"
            [[auth.keys]]
            name = "gamma"
            token_hash = "{}"
            [[auth.keys.limits]]
            name = "budget"
            cost_usd = 0.0002
            period = "1d"
            "#,
            TokenHash::of(gamma).to_hex()
        ),
    )
    .await;
    let c = client();
    let url = format!("{}/openai/chat/completions", gw.url());
    let g = bearer(gamma);
    let mut admitted = 0;
    let mut refused = None;
    for i in 0..100 {
        // Distinct prompts: no cache hits.
        let body = format!(
            r#"{{"model":"gpt-4o-mini","max_tokens":16,"messages":[{{"role":"user","content":"q{i}"}}]}}"#
        );
        let r = post_json(
            &c,
            &url,
            &[("aigw-authorization", &g), ("authorization", "Bearer sk-x")],
            &body,
        )
        .await;
        if r.status == StatusCode::OK {
            admitted += 1;
        } else {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("the budget ran out");
    assert_error(
        &refused,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
    );
    assert!(admitted >= 1, "the budget let some through first");
    // Beta is not gamma: its requests still go.
    let b = bearer(BETA);
    let r = post_json(
        &c,
        &url,
        &[("aigw-authorization", &b), ("authorization", "Bearer sk-x")],
        r#"{"model":"gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"other"}]}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_token() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway(&mock, "", "").await;
    let c = client();
    let admin = bearer(ADMIN);
    let alpha = bearer(ALPHA);
    let cases = [
        (Method::GET, "/usage"),
        (Method::GET, "/logs"),
        (Method::DELETE, "/cache"),
        (Method::GET, "/metrics"),
    ];
    for (method, path) in &cases {
        let url = format!("{}{path}", gw.url());
        for headers in [
            &[][..],
            &[("aigw-authorization", alpha.as_str())][..],
            &[("authorization", "Bearer aigw_nope")][..],
        ] {
            let r = send(&c, request(method.clone(), &url, headers, "")).await;
            assert_error(&r, StatusCode::UNAUTHORIZED, "authentication_error");
        }
        for headers in [
            [("aigw-authorization", admin.as_str())],
            [("authorization", admin.as_str())],
        ] {
            let r = send(&c, request(method.clone(), &url, &headers, "")).await;
            assert_eq!(r.status, StatusCode::OK, "{method} {path}");
        }
    }
    // The admin token is not a virtual key: no proxying with it.
    let r = post_json(
        &c,
        &format!("{}/openai/chat/completions", gw.url()),
        &[("aigw-authorization", &admin)],
        CHAT,
    )
    .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "authentication_error");
    let r = send(
        &c,
        request(Method::GET, &format!("{}/healthz", gw.url()), &[], ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "healthz is public by default");
    assert_eq!(mock.requests(), 0);
    gw.shutdown().await.unwrap();

    // The other way round: public metrics, private health.
    let gw = gateway(&mock, "public_metrics = true\npublic_healthz = false", "").await;
    let r = send(
        &c,
        request(Method::GET, &format!("{}/metrics", gw.url()), &[], ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(
        &c,
        request(Method::GET, &format!("{}/healthz", gw.url()), &[], ""),
    )
    .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "authentication_error");
    let r = send(
        &c,
        request(
            Method::GET,
            &format!("{}/healthz", gw.url()),
            &[("aigw-authorization", &admin)],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn keys_create_makes_a_token_the_gateway_lets_in() {
    let printed = tower_ai_gateway::auth::create_key("new-team", false).unwrap();
    let token = printed
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .to_owned();
    let snippet = &printed[printed.find("[[auth.keys]]").unwrap()..];
    // The configuration holds the hash, never the token.
    assert!(!snippet.contains(&token));
    assert!(snippet.contains(&TokenHash::of(&token).to_hex()));
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, &format!("[auth]\nenabled = true\n{snippet}")).await;
    let c = client();
    let url = format!("{}/openai/chat/completions", gw.url());
    let t = bearer(&token);
    let r = post_json(
        &c,
        &url,
        &[("aigw-authorization", &t), ("authorization", "Bearer sk-x")],
        CHAT,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = post_json(&c, &url, &[("authorization", "Bearer sk-x")], CHAT).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(mock.requests(), 1);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn auth_is_off_by_default() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    let c = client();
    let r = post_json(
        &c,
        &format!("{}/openai/chat/completions", gw.url()),
        &[("authorization", "Bearer sk-x")],
        CHAT,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(
        &c,
        request(Method::GET, &format!("{}/usage", gw.url()), &[], ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    gw.shutdown().await.unwrap();
}
