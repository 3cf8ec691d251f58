//! The gateway end to end over real sockets: routing, auth, byte-for-byte bodies,
//! streaming frame by frame, and every error path of the foundation.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use tower_ai_mock::{MockProvider, reply_words};

const CHAT: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello to the gateway"}]}"#;
const CHAT_STREAM: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello to the gateway"}]}"#;
const MESSAGES: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{"role":"user","content":"Hi there Claude"}]}"#;
const MESSAGES_STREAM: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"Hi there Claude"}]}"#;
const EMBED: &str = r#"{"model":"text-embedding-3-small","input":["one two","three"]}"#;

/// Sends `body` to the mock directly and through the gateway; returns both.
async fn direct_and_proxied(
    mock: &MockProvider,
    gw_path: &str,
    direct_path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (Sent, Sent) {
    let c = client();
    let direct = post_json(&c, &format!("{}{direct_path}", mock.url()), headers, body).await;
    let gw = gateway_for(mock, "").await;
    let proxied = post_json(&c, &format!("{}{gw_path}", gw.url()), headers, body).await;
    (direct, proxied)
}

/// The two bodies are the same bytes once the mock's per-response id is aligned.
fn assert_same_bytes_modulo_id(direct: &[u8], proxied: &[u8], id_field: &str) {
    let d = String::from_utf8(direct.to_vec()).unwrap();
    let p = String::from_utf8(proxied.to_vec()).unwrap();
    let id_of = |s: &str| {
        let start = s.find(id_field).expect("id present") + id_field.len();
        let end = start + s[start..].find('"').unwrap();
        s[start..end].to_owned()
    };
    let (di, pi) = (id_of(&d), id_of(&p));
    let aligned = d.replace(&format!("{id_field}{di}\""), &format!("{id_field}{pi}\""));
    assert_eq!(aligned, p, "bodies differ beyond the id");
}

#[tokio::test]
async fn openai_chat_arrives_right_and_comes_back_byte_for_byte() {
    let mock = MockProvider::start().await.unwrap();
    let auth = [
        ("authorization", "Bearer sk-client-key"),
        ("openai-organization", "org-1"),
    ];
    let (direct, proxied) = direct_and_proxied(
        &mock,
        "/openai/chat/completions",
        "/v1/chat/completions",
        &auth,
        CHAT,
    )
    .await;
    assert_eq!(proxied.status, StatusCode::OK);
    assert_same_bytes_modulo_id(&direct.body, &proxied.body, r#""id":"chatcmpl-mock-"#);
    assert_eq!(
        proxied.headers["content-type"],
        direct.headers["content-type"]
    );
    assert!(proxied.headers.contains_key("aigw-request-id"));

    let seen = mock.last_request().unwrap();
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.uri.path(), "/v1/chat/completions");
    assert_eq!(seen.headers["authorization"], "Bearer sk-client-key");
    assert_eq!(seen.headers["openai-organization"], "org-1");
    assert_eq!(seen.headers["content-type"], "application/json");
    assert_eq!(seen.headers["host"], mock.addr().to_string());
    assert!(!seen.headers.contains_key("aigw-request-id"));
    assert_eq!(&seen.body[..], CHAT.as_bytes());
    let v = proxied.json();
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["choices"][0]["message"]["content"], reply_words(16));
}

#[tokio::test]
async fn openai_chat_stream_comes_back_byte_for_byte() {
    let mock = MockProvider::start().await.unwrap();
    let auth = [("authorization", "Bearer sk-client-key")];
    let (direct, proxied) = direct_and_proxied(
        &mock,
        "/openai/chat/completions",
        "/v1/chat/completions",
        &auth,
        CHAT_STREAM,
    )
    .await;
    assert_eq!(proxied.status, StatusCode::OK);
    assert_eq!(proxied.headers["content-type"], "text/event-stream");
    assert_same_bytes_modulo_id(&direct.body, &proxied.body, r#""id":"chatcmpl-mock-"#);
    assert!(proxied.body.ends_with(b"data: [DONE]\n\n"));
    assert_eq!(
        &mock.last_request().unwrap().body[..],
        CHAT_STREAM.as_bytes()
    );
}

#[tokio::test]
async fn openai_embeddings_come_back_byte_for_byte() {
    let mock = MockProvider::start().await.unwrap();
    let (direct, proxied) =
        direct_and_proxied(&mock, "/openai/embeddings", "/v1/embeddings", &[], EMBED).await;
    assert_eq!(proxied.status, StatusCode::OK);
    // Embeddings carry no id: the bytes are the same outright.
    assert_eq!(direct.body, proxied.body);
    assert_eq!(proxied.json()["usage"]["prompt_tokens"], 3);
    assert_eq!(mock.last_request().unwrap().uri.path(), "/v1/embeddings");
}

#[tokio::test]
async fn anthropic_messages_arrive_right_and_come_back_byte_for_byte() {
    let mock = MockProvider::start().await.unwrap();
    let auth = [("x-api-key", "sk-ant-client")];
    let (direct, proxied) = direct_and_proxied(
        &mock,
        "/anthropic/v1/messages",
        "/v1/messages",
        &auth,
        MESSAGES,
    )
    .await;
    assert_eq!(proxied.status, StatusCode::OK);
    assert_same_bytes_modulo_id(&direct.body, &proxied.body, r#""id":"msg_mock_"#);
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.uri.path(), "/v1/messages");
    assert_eq!(seen.headers["x-api-key"], "sk-ant-client");
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    let v = proxied.json();
    assert_eq!(v["usage"]["input_tokens"], 3);
    assert_eq!(v["usage"]["output_tokens"], 8);
}

#[tokio::test]
async fn anthropic_stream_comes_back_byte_for_byte() {
    let mock = MockProvider::start().await.unwrap();
    let auth = [
        ("x-api-key", "sk-ant-client"),
        ("anthropic-version", "2023-06-01"),
    ];
    let (direct, proxied) = direct_and_proxied(
        &mock,
        "/anthropic/v1/messages",
        "/v1/messages",
        &auth,
        MESSAGES_STREAM,
    )
    .await;
    assert_eq!(proxied.status, StatusCode::OK);
    assert_same_bytes_modulo_id(&direct.body, &proxied.body, r#""id":"msg_mock_"#);
    let text = String::from_utf8(proxied.body.to_vec()).unwrap();
    assert!(text.starts_with("event: message_start\n"));
    assert!(text.contains("event: message_stop\n"));
}

#[tokio::test]
async fn cloudflare_style_and_azure_paths() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    let c = client();
    let res = post_json(
        &c,
        &format!("{}/v1/my-account/my-gw/openai/chat/completions", gw.url()),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        mock.last_request().unwrap().uri.path(),
        "/v1/chat/completions"
    );

    let res = post_json(
        &c,
        &format!(
            "{}/azure-openai/my-resource/my-deploy/chat/completions?api-version=2024-10-21",
            gw.url()
        ),
        &[("api-key", "azure-client-key")],
        CHAT,
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let seen = mock.last_request().unwrap();
    assert_eq!(
        seen.uri.to_string(),
        "/openai/deployments/my-deploy/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(seen.headers["api-key"], "azure-client-key");
}

#[tokio::test]
async fn gateway_held_key_replaces_the_clients() {
    let mock = MockProvider::start().await.unwrap();
    // A key in the file.
    let gw = gateway_for(&mock, "").await;
    drop(gw);
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[providers.openai]\nbase_url = \"{}/v1\"\napi_key = \"sk-gateway-held\"",
        mock.url()
    );
    let gw = start(&toml).await;
    let res = post_json(
        &client(),
        &format!("{}/openai/chat/completions", gw.url()),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        mock.last_request().unwrap().headers["authorization"],
        "Bearer sk-gateway-held"
    );

    // A key from the environment.
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[providers.anthropic]\nbase_url = \"{}\"\napi_key_env = \"TOWER_AI_TEST_ANTHROPIC_KEY\"",
        mock.url()
    );
    // Set by .cargo/config.toml for every test process.
    let gw = start(&toml).await;
    let res = post_json(
        &client(),
        &format!("{}/anthropic/v1/messages", gw.url()),
        &[
            ("x-api-key", "sk-ant-client"),
            ("authorization", "Bearer app-token"),
        ],
        MESSAGES,
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.headers["x-api-key"], "sk-ant-from-env");
    assert!(!seen.headers.contains_key("authorization"));
}

#[tokio::test]
async fn streams_are_forwarded_chunk_by_chunk() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    let req = request(
        Method::POST,
        &format!("{}/openai/chat/completions", gw.url()),
        &[("x-mock-chunks", "6"), ("x-mock-chunk-delay-ms", "150")],
        CHAT_STREAM,
    );
    let started = Instant::now();
    let res = within(20, client().request(req)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (frames, end) = within(20, frames(res)).await;
    end.unwrap();
    // role chunk, 6 deltas, finish chunk, usage chunk, [DONE]: 9 chunk delays of 150 ms
    // on the mock's side. Each reached the client on its own, as it was produced.
    assert!(
        frames.len() >= 8,
        "{} frames: the stream was buffered",
        frames.len()
    );
    let first = frames.first().unwrap().0;
    let last = frames.last().unwrap().0;
    assert!(
        last - first >= Duration::from_millis(900),
        "the first event came {:?} before the last: the stream was held back",
        last - first
    );
    assert!(first - started < Duration::from_millis(1000));
    let body = concat(&frames);
    assert!(body.ends_with(b"data: [DONE]\n\n"));
}

#[tokio::test]
async fn a_mid_stream_reset_reaches_the_client_as_an_error() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    let req = request(
        Method::POST,
        &format!("{}/openai/chat/completions", gw.url()),
        &[("x-mock-reset-after", "3")],
        CHAT_STREAM,
    );
    let res = within(20, client().request(req)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (frames, end) = within(20, frames(res)).await;
    assert!(end.is_err(), "a cut stream must not end cleanly");
    assert!(!concat(&frames).ends_with(b"data: [DONE]\n\n"));
}

#[tokio::test]
async fn unknown_provider_is_400_json() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    for path in ["/nope/chat/completions", "/", "/openai/../admin"] {
        let res = post_json(&client(), &format!("{}{path}", gw.url()), &[], CHAT).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(res.headers["content-type"], "application/json");
        assert_eq!(res.json()["error"]["type"], "invalid_request_error");
    }
    assert_eq!(mock.requests(), 0);
}

#[tokio::test]
async fn body_over_the_limit_is_413_json_declared_or_streamed() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "[server]\nmax_body_bytes = 1024").await;
    let big = format!(r#"{{"model":"m","input":"{}"}}"#, "x".repeat(4096));
    // With a content-length: refused before anything is read.
    let res = post_json(
        &client(),
        &format!("{}/openai/embeddings", gw.url()),
        &[],
        &big,
    )
    .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.json()["error"]["type"], "request_too_large");
    assert_eq!(mock.requests(), 0);

    // Chunked, no length: refused once the limit is crossed.
    let (tx, body) = channel_body();
    let req = http::Request::post(format!("{}/openai/embeddings", gw.url()))
        .body(body)
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<ChannelBody>();
    let res = tokio::spawn(async move { client.request(req).await });
    for _ in 0..8 {
        if tx.send(Bytes::from(vec![b'x'; 512])).await.is_err() {
            break;
        }
    }
    drop(tx);
    let res = within(20, res).await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "request_too_large");
}

#[tokio::test]
async fn upstream_refusing_connections_is_502_json() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[providers.openai]\nbase_url = \"http://127.0.0.1:{port}/v1\""
    );
    let gw = start(&toml).await;
    let res = within(
        20,
        post_json(
            &client(),
            &format!("{}/openai/chat/completions", gw.url()),
            &[],
            CHAT,
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert_eq!(res.json()["error"]["type"], "upstream_error");
}

#[tokio::test]
async fn upstream_past_its_timeout_is_504_json() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "[upstream]\ntimeout_ms = 300").await;
    let res = within(
        20,
        post_json(
            &client(),
            &format!("{}/openai/chat/completions", gw.url()),
            &[("x-mock-hang", "true")],
            CHAT,
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.json()["error"]["type"], "upstream_timeout");
    // The abandoned upstream request is closed, not left hanging.
    within(10, mock.wait_for_cancelled(1)).await;
}

#[tokio::test]
async fn client_hanging_up_mid_stream_cancels_the_upstream_request() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    let req = request(
        Method::POST,
        &format!("{}/openai/chat/completions", gw.url()),
        &[("x-mock-chunks", "50"), ("x-mock-chunk-delay-ms", "100")],
        CHAT_STREAM,
    );
    let res = within(20, client().request(req)).await.unwrap();
    let mut body = res.into_body();
    // Read a couple of events, then hang up.
    for _ in 0..2 {
        within(20, http_body_util::BodyExt::frame(&mut body))
            .await
            .unwrap()
            .unwrap();
    }
    drop(body);
    within(20, mock.wait_for_cancelled(1)).await;
    assert_eq!(mock.stats().completed, 0);
}

#[tokio::test]
async fn malformed_json_is_forwarded_untouched() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    let bad = "{\"model\": \"gpt-4o-mini\", \"messages\": [ oops";
    let res = post_json(
        &client(),
        &format!("{}/openai/chat/completions", gw.url()),
        &[],
        bad,
    )
    .await;
    // The provider, not the gateway, judged it: its own error comes back as it is.
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.json()["error"]["type"], "invalid_request_error");
    assert_eq!(&mock.last_request().unwrap().body[..], bad.as_bytes());
}

#[tokio::test]
async fn request_id_is_set_or_kept() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    let c = client();
    let a = post_json(&c, &format!("{}/openai/embeddings", gw.url()), &[], EMBED).await;
    let b = post_json(&c, &format!("{}/openai/embeddings", gw.url()), &[], EMBED).await;
    assert_ne!(a.headers["aigw-request-id"], b.headers["aigw-request-id"]);
    let kept = post_json(
        &c,
        &format!("{}/openai/embeddings", gw.url()),
        &[("aigw-request-id", "from-the-client-42")],
        EMBED,
    )
    .await;
    assert_eq!(kept.headers["aigw-request-id"], "from-the-client-42");
}

#[tokio::test]
async fn healthz() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    let res = send(
        &client(),
        request(Method::GET, &format!("{}/healthz", gw.url()), &[], ""),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["status"], "ok");
}

#[tokio::test]
async fn http2_clients_are_served() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<Bytes>>();
    let res = send(
        &h2,
        request(
            Method::POST,
            &format!("{}/openai/chat/completions", gw.url()),
            &[],
            CHAT,
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["object"], "chat.completion");
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_streams_finish() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    let url = gw.url();
    let req = request(
        Method::POST,
        &format!("{url}/openai/chat/completions"),
        &[("x-mock-chunks", "5"), ("x-mock-chunk-delay-ms", "100")],
        CHAT_STREAM,
    );
    let res = within(20, client().request(req)).await.unwrap();
    let stopping = gw.begin_shutdown();
    let (frames, end) = within(20, frames(res)).await;
    end.unwrap();
    assert!(concat(&frames).ends_with(b"data: [DONE]\n\n"));
    within(20, stopping).await.unwrap().unwrap();
    // Stopped: no new connections.
    let refused = client()
        .request(request(Method::GET, &format!("{url}/healthz"), &[], ""))
        .await;
    assert!(refused.is_err());
}
