//! No provider key or gateway token appears in any log line: the whole tracing output of
//! a gateway at TRACE level, through passthrough, injected keys, errors and streams, is
//! captured and searched. Then the same for an authenticated gateway: virtual keys'
//! tokens (right and wrong, in either header), the provider keys they hold, the admin
//! token; the logs, `/logs`, `/usage`, `/metrics` and every error body are searched.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use http::{Method, StatusCode};
use tower_ai_mock::MockProvider;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_secret_reaches_a_log_line() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    const CLIENT_KEY: &str = "sk-client-SECRET-1111";
    const ANTHROPIC_KEY: &str = "sk-ant-client-SECRET-2222";
    const GATEWAY_KEY: &str = "sk-gateway-SECRET-3333";
    const GEMINI_QUERY_KEY: &str = "AIza-query-SECRET-4444";
    const VK_TOKEN: &str = "aigw_vk-SECRET-5555";
    const ADMIN_TOKEN: &str = "aigw_admin-SECRET-6666";
    const VK_PROVIDER_KEY: &str = "sk-vk-provider-SECRET-7777";
    const WRONG_TOKEN: &str = "aigw_wrong-SECRET-8888";

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut admin = String::new();
    rt.block_on(async {
        let mock = MockProvider::start().await.unwrap();
        let gw = gateway_for(
            &mock,
            &format!(
                "[providers.groq]\nbase_url = \"{}/v1\"\napi_key = \"{GATEWAY_KEY}\"\n[providers.google-ai-studio]\nbase_url = \"{}\"",
                mock.url(),
                mock.url()
            ),
        )
        .await;
        let c = client();
        let chat = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let auth = format!("Bearer {CLIENT_KEY}");
        let r = post_json(&c, &format!("{}/openai/chat/completions", gw.url()), &[("authorization", &auth)], chat).await;
        assert_eq!(r.status, StatusCode::OK);
        let r = post_json(
            &c,
            &format!("{}/anthropic/v1/messages", gw.url()),
            &[("x-api-key", ANTHROPIC_KEY)],
            r#"{"model":"c","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        // Injected key, client sends its own too.
        let r = post_json(&c, &format!("{}/groq/chat/completions", gw.url()), &[("authorization", &auth)], chat).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(mock.last_request().unwrap().headers["authorization"], format!("Bearer {GATEWAY_KEY}").as_str());
        // A key in the query string, and an upstream error.
        let r = post_json(
            &c,
            &format!("{}/google-ai-studio/v1beta/models/g:generateContent?key={GEMINI_QUERY_KEY}", gw.url()),
            &[("authorization", &auth), ("x-mock-status", "500")],
            r#"{"contents":[]}"#,
        )
        .await;
        assert!(r.status.is_client_error() || r.status.is_server_error());
        // An unknown provider and a refused upstream.
        let r = post_json(&c, &format!("{}/nope/x", gw.url()), &[("authorization", &auth)], "{}").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        // Nor does any reach the admin endpoints: the request log (once every request
        // is in it), the usage report and the metrics.
        let mut logs = String::new();
        for _ in 0..200 {
            let r = send(&c, request(Method::GET, &format!("{}/logs?limit=1000", gw.url()), &[], "")).await;
            logs = String::from_utf8(r.body.to_vec()).unwrap();
            if logs.matches("\"request_id\"").count() >= 5 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(logs.matches("\"request_id\"").count() >= 5, "every request logged: {logs}");
        for path in ["/metrics", "/usage"] {
            let r = send(&c, request(Method::GET, &format!("{}{path}", gw.url()), &[], "")).await;
            assert_eq!(r.status, StatusCode::OK, "{path}");
            admin.push_str(std::str::from_utf8(&r.body).unwrap());
        }
        admin.push_str(&logs);
        gw.shutdown().await.unwrap();

        // The authenticated gateway.
        let gw = gateway_for(
            &mock,
            &format!(
                r#"
                [cache]
                enabled = true
                [auth]
                enabled = true
                admin_token_hashes = ["{admin}"]
                [[auth.keys]]
                name = "tenant"
                token_hash = "{vk}"
                models = ["m", "c"]
                provider_keys = {{ openai = "{VK_PROVIDER_KEY}", anthropic = "{VK_PROVIDER_KEY}" }}
                [[auth.keys.limits]]
                name = "rpm"
                requests = 100
                "#,
                admin = tower_ai::auth::TokenHash::of(ADMIN_TOKEN).to_hex(),
                vk = tower_ai::auth::TokenHash::of(VK_TOKEN).to_hex(),
            ),
        )
        .await;
        let vk = format!("Bearer {VK_TOKEN}");
        let wrong = format!("Bearer {WRONG_TOKEN}");
        let admin_bearer = format!("Bearer {ADMIN_TOKEN}");
        let openai = format!("{}/openai/chat/completions", gw.url());
        let mut bodies = String::new();
        for (headers, body, want) in [
            (vec![("aigw-authorization", vk.as_str())], chat, StatusCode::OK),
            (vec![("authorization", vk.as_str())], chat, StatusCode::OK),
            (vec![("aigw-authorization", vk.as_str()), ("authorization", auth.as_str())], chat, StatusCode::OK),
            (vec![("aigw-authorization", wrong.as_str())], chat, StatusCode::UNAUTHORIZED),
            (vec![("authorization", wrong.as_str())], chat, StatusCode::UNAUTHORIZED),
            (vec![("aigw-authorization", admin_bearer.as_str())], chat, StatusCode::UNAUTHORIZED),
            (vec![("aigw-authorization", vk.as_str())], r#"{"model":"not-allowed"}"#, StatusCode::FORBIDDEN),
        ] {
            let r = post_json(&c, &openai, &headers, body).await;
            assert_eq!(r.status, want, "{headers:?}");
            bodies.push_str(std::str::from_utf8(&r.body).unwrap());
        }
        let r = post_json(
            &c,
            &format!("{}/anthropic/v1/messages", gw.url()),
            &[("x-api-key", VK_TOKEN)],
            r#"{"model":"c","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(mock.last_request().unwrap().headers["x-api-key"], VK_PROVIDER_KEY);
        // Admin endpoints: refused with a wrong token (the body is searched), then read.
        for path in ["/logs?limit=1000", "/usage", "/metrics"] {
            let r = send(&c, request(Method::GET, &format!("{}{path}", gw.url()), &[("aigw-authorization", &wrong)], "")).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            bodies.push_str(std::str::from_utf8(&r.body).unwrap());
        }
        let mut tenant_logs = String::new();
        for _ in 0..200 {
            let r = send(&c, request(Method::GET, &format!("{}/logs?limit=1000", gw.url()), &[("aigw-authorization", &admin_bearer)], "")).await;
            tenant_logs = String::from_utf8(r.body.to_vec()).unwrap();
            if tenant_logs.matches("\"request_id\"").count() >= 5 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(tenant_logs.contains(&tower_ai::core::key_id(VK_TOKEN)), "the tenant is in the log by id: {tenant_logs}");
        for path in ["/metrics", "/usage"] {
            let r = send(&c, request(Method::GET, &format!("{}{path}", gw.url()), &[("authorization", &admin_bearer)], "")).await;
            assert_eq!(r.status, StatusCode::OK, "{path}");
            admin.push_str(std::str::from_utf8(&r.body).unwrap());
        }
        admin.push_str(&tenant_logs);
        admin.push_str(&bodies);
        gw.shutdown().await.unwrap();
    });

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.lines().count() > 20,
        "the capture saw the requests:\n{logs}"
    );
    assert!(
        logs.contains("routing to provider"),
        "gateway spans captured"
    );
    for secret in [
        CLIENT_KEY,
        ANTHROPIC_KEY,
        GATEWAY_KEY,
        GEMINI_QUERY_KEY,
        VK_TOKEN,
        ADMIN_TOKEN,
        VK_PROVIDER_KEY,
        WRONG_TOKEN,
        "SECRET",
    ] {
        assert!(!logs.contains(secret), "`{secret}` leaked into the logs");
        assert!(
            !admin.contains(secret),
            "`{secret}` reached /logs, /usage or /metrics:\n{admin}"
        );
    }
}
