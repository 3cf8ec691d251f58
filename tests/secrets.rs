//! No provider key or gateway token appears in any log line: the whole tracing output of
//! a gateway at TRACE level, through passthrough, injected keys, errors and streams, is
//! captured and searched.

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
        "SECRET",
    ] {
        assert!(!logs.contains(secret), "`{secret}` leaked into the logs");
        assert!(
            !admin.contains(secret),
            "`{secret}` reached /logs, /usage or /metrics:\n{admin}"
        );
    }
}
