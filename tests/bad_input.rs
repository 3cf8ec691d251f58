//! Bad input over real sockets: each case gets a clear JSON error
//! `{"error":{"type":"...","message":"..."}}` with the right status, reaches no provider
//! (or reaches it untouched where no layer needs to understand it), and leaves the
//! gateway serving the next request as before: no panic, no hang, no state changed for
//! anyone else.

mod common;

use bytes::Bytes;
use common::*;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_ai_gateway::RunningGateway;
use tower_ai_mock::MockProvider;

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
const LIMIT: usize = 4096;

/// A gateway with every layer that reads requests on: the meter (request log in memory),
/// a rate limit, the cache; the body limit at 4 KiB.
async fn setup() -> (MockProvider, RunningGateway, HttpClient) {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(
        &mock,
        &format!(
            r#"
            [server]
            max_body_bytes = {LIMIT}
            [cache]
            enabled = true
            [[ratelimit.limits]]
            name = "rpm"
            requests = 1000
            [[ratelimit.limits]]
            name = "tokens"
            tokens = 1000000
            "#
        ),
    )
    .await;
    (mock, gw, client())
}

/// `sent` is a JSON error with `status` and `kind`, and a non-empty message; returns
/// the message.
fn assert_json_error(sent: &Sent, status: StatusCode, kind: &str) -> String {
    assert_eq!(
        sent.status,
        status,
        "{}",
        String::from_utf8_lossy(&sent.body)
    );
    assert!(
        sent.headers[http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "content-type {:?}",
        sent.headers.get(http::header::CONTENT_TYPE)
    );
    let v = sent.json();
    assert_eq!(v["error"]["type"], kind, "{v}");
    let message = v["error"]["message"]
        .as_str()
        .expect("a message")
        .to_owned();
    assert!(!message.is_empty());
    message
}

/// The gateway still serves a good request, and the mock sees exactly it.
async fn still_serves(mock: &MockProvider, gw: &RunningGateway, c: &HttpClient) {
    // A prompt no one sent before, so that the cache cannot answer it.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let body = CHAT.replace("Say hello", &format!("Say hello {n}"));
    let before = mock.requests();
    let ok = post_json(
        c,
        &format!("{}/openai/chat/completions", gw.url()),
        &[],
        &body,
    )
    .await;
    assert_eq!(
        ok.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&ok.body)
    );
    assert!(ok.json()["choices"][0]["message"]["content"].is_string());
    assert_eq!(mock.requests(), before + 1);
}

fn raw_request(url: &str, headers: &[(&str, HeaderValue)], body: Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v.clone());
    }
    req.body(Full::new(body)).unwrap()
}

#[tokio::test]
async fn invalid_json_in_a_header_a_layer_reads_is_a_400() {
    let (mock, gw, c) = setup().await;
    let url = format!("{}/openai/chat/completions", gw.url());
    for bad in [
        "{not json",
        "[1,2,3]",
        r#"{"team": {"nested": 1}}"#,
        "\"a string\"",
    ] {
        let sent = post_json(&c, &url, &[("aigw-metadata", bad)], CHAT).await;
        assert_json_error(&sent, StatusCode::BAD_REQUEST, "invalid_request_error");
    }
    assert_eq!(mock.requests(), 0, "a refused request reached the provider");
    still_serves(&mock, &gw, &c).await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_forwarded_untouched() {
    // No layer needs to understand it: the provider answers it, byte for byte as sent.
    let (mock, gw, c) = setup().await;
    let body = "{\"model\": \"gpt-4o-mini\", \"messages\": [ oops \u{0}";
    let sent = post_json(
        &c,
        &format!("{}/openai/chat/completions", gw.url()),
        &[],
        body,
    )
    .await;
    // The mock itself refuses it, in OpenAI's shape; the gateway passed it on.
    assert_eq!(sent.status, StatusCode::BAD_REQUEST);
    assert!(sent.json()["error"]["message"].is_string());
    assert_eq!(&mock.last_request().unwrap().body[..], body.as_bytes());
    still_serves(&mock, &gw, &c).await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_declared_or_streamed() {
    let (mock, gw, c) = setup().await;
    let url = format!("{}/openai/chat/completions", gw.url());
    let big = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(LIMIT)
    );
    // With a content-length.
    let sent = post_json(&c, &url, &[], &big).await;
    let msg = assert_json_error(&sent, StatusCode::PAYLOAD_TOO_LARGE, "request_too_large");
    assert!(msg.contains(&LIMIT.to_string()), "{msg}");
    // Chunked, no length: found while reading.
    let (tx, body) = channel_body();
    let req = Request::builder()
        .method(Method::POST)
        .uri(&url)
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let plain: hyper_util::client::legacy::Client<_, ChannelBody> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let feed = tokio::spawn(async move {
        for chunk in big.as_bytes().chunks(512) {
            if tx.send(Bytes::copy_from_slice(chunk)).await.is_err() {
                break;
            }
        }
    });
    let res = within(10, plain.request(req)).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    let sent = Sent {
        status: parts.status,
        headers: parts.headers,
        body,
    };
    assert_json_error(&sent, StatusCode::PAYLOAD_TOO_LARGE, "request_too_large");
    feed.abort();
    assert_eq!(
        mock.requests(),
        0,
        "an over-limit body reached the provider"
    );
    still_serves(&mock, &gw, &c).await;
}

#[tokio::test]
async fn an_unknown_provider_is_a_400_naming_it() {
    let (mock, gw, c) = setup().await;
    for path in [
        "/no-such-provider/chat/completions",
        "/v1/acct/gw/nope/v1/messages",
    ] {
        let sent = post_json(&c, &format!("{}{path}", gw.url()), &[], CHAT).await;
        let msg = assert_json_error(&sent, StatusCode::BAD_REQUEST, "invalid_request_error");
        assert!(msg.contains("unknown provider"), "{msg}");
    }
    // A long name is cut in the message, never echoed whole.
    let long = "p".repeat(2000);
    let sent = post_json(&c, &format!("{}/{long}/chat", gw.url()), &[], CHAT).await;
    let msg = assert_json_error(&sent, StatusCode::BAD_REQUEST, "invalid_request_error");
    assert!(msg.len() < 200, "{msg}");
    assert_eq!(mock.requests(), 0);
    still_serves(&mock, &gw, &c).await;
}

#[tokio::test]
async fn an_absurd_cache_ttl_is_a_400_and_caches_nothing() {
    let (mock, gw, c) = setup().await;
    let url = format!("{}/openai/chat/completions", gw.url());
    for ttl in [
        "-1",
        "99999999999999999999999999999999999999999",
        "31536001",
        "1e9",
        "NaN",
        "",
        "60s",
        " 1 2",
    ] {
        let sent = post_json(&c, &url, &[("aigw-cache-ttl", ttl)], CHAT).await;
        assert_json_error(&sent, StatusCode::BAD_REQUEST, "invalid_request_error");
    }
    for skip in ["maybe", "2"] {
        let sent = post_json(&c, &url, &[("aigw-skip-cache", skip)], CHAT).await;
        assert_json_error(&sent, StatusCode::BAD_REQUEST, "invalid_request_error");
    }
    let long_key = "k".repeat(2000);
    let sent = post_json(&c, &url, &[("aigw-cache-key", &long_key)], CHAT).await;
    assert_json_error(&sent, StatusCode::BAD_REQUEST, "invalid_request_error");
    assert_eq!(mock.requests(), 0);
    // Nothing was cached by the refused requests: the same request is now a miss that
    // reaches the provider, the one after it a hit.
    let miss = post_json(&c, &url, &[], CHAT).await;
    assert_eq!(miss.headers["aigw-cache-status"], "MISS");
    let hit = post_json(&c, &url, &[], CHAT).await;
    assert_eq!(hit.headers["aigw-cache-status"], "HIT");
    assert_eq!(mock.requests(), 1);
    still_serves(&mock, &gw, &c).await;
}

#[tokio::test]
async fn non_utf8_header_values_are_refused_or_passed_never_a_panic() {
    let (mock, gw, c) = setup().await;
    let url = format!("{}/openai/chat/completions", gw.url());
    let latin1 = HeaderValue::from_bytes(b"caf\xe9 \xff\xfe").unwrap();
    // Headers the gateway reads: a clear 400.
    for name in [
        "aigw-cache-ttl",
        "aigw-skip-cache",
        "aigw-metadata",
        "cf-aig-cache-ttl",
    ] {
        let sent = send(
            &c,
            raw_request(
                &url,
                &[(name, latin1.clone())],
                Bytes::from_static(CHAT.as_bytes()),
            ),
        )
        .await;
        let msg = assert_json_error(&sent, StatusCode::BAD_REQUEST, "invalid_request_error");
        assert!(!msg.contains('\u{fffd}'), "{msg}");
    }
    assert_eq!(mock.requests(), 0);
    // Headers it only passes on (or hashes, for the caller's key): forwarded as they are.
    for name in ["x-custom", "authorization", "user-agent"] {
        let sent = send(
            &c,
            raw_request(
                &url,
                &[(name, latin1.clone())],
                Bytes::from_static(CHAT.as_bytes()),
            ),
        )
        .await;
        assert!(
            sent.status.is_success() || sent.status.is_client_error(),
            "{name}: {}",
            sent.status
        );
        if sent.status.is_client_error() {
            assert!(sent.json()["error"]["message"].is_string());
        }
    }
    still_serves(&mock, &gw, &c).await;
}

/// Reads one HTTP/1.1 response off a raw connection: status and body.
async fn raw_exchange(addr: std::net::SocketAddr, head: &[u8]) -> (u16, Vec<u8>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer before it has read everything: a write error is fine.
    let _ = s.write_all(head).await;
    let mut buf = Vec::new();
    let _ = within(10, s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |i| i + 4);
    (status, buf[..split].to_vec(), buf[split..].to_vec())
}

#[tokio::test]
async fn a_header_over_the_limit_is_a_json_431() {
    let (mock, gw, c) = setup().await;
    // One huge header, and very many headers, both still under hyper's own hard cap.
    let huge = format!("x-big: {}\r\n", "a".repeat(80 * 1024));
    let many: String = (0..90)
        .map(|i| format!("x-h{i}: {}\r\n", "b".repeat(1000)))
        .collect();
    for extra in [huge, many] {
        let head = format!(
            "POST /openai/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n{extra}\r\n{CHAT}",
            CHAT.len()
        );
        let (status, head, body) = raw_exchange(gw.addr(), head.as_bytes()).await;
        assert_eq!(status, 431, "{}", String::from_utf8_lossy(&head));
        let v: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
        assert_eq!(v["error"]["type"], "request_header_fields_too_large", "{v}");
    }
    // Over hyper's own hard cap on a head (its ~400 KiB read buffer): hyper answers 431
    // itself, before any gateway code runs, with no body (no hyper setting changes that
    // answer; see examples/gateway/src/limits.rs). Still no hang, no harm.
    let head = format!(
        "POST /openai/chat/completions HTTP/1.1\r\nhost: x\r\nx-huge: {}\r\n\r\n",
        "c".repeat(600 * 1024)
    );
    let (status, _, body) = raw_exchange(gw.addr(), head.as_bytes()).await;
    assert_eq!(status, 431);
    assert!(body.is_empty());
    assert_eq!(mock.requests(), 0);
    still_serves(&mock, &gw, &c).await;
}

#[tokio::test]
async fn a_malformed_universal_request_is_a_400() {
    let (mock, gw, c) = setup().await;
    let step = r#"{"provider":"openai","endpoint":"chat/completions","headers":{},"query":{"model":"gpt-4o-mini","messages":[]}}"#;
    let too_many = format!("[{}]", vec![step; 17].join(","));
    for bad in [
        "",
        "not json",
        "[]",
        "[1, 2]",
        "{\"provider\": 1}",
        r#"[{"provider":"openai","endpoint":"chat/completions"}]"#,
        r#"[{"provider":"../x","endpoint":"chat/completions","query":{}}]"#,
        r#"[{"provider":"openai","endpoint":"a b","query":{}}]"#,
        r#"[{"provider":"openai","endpoint":"chat/completions","query":[1]}]"#,
        r#"[{"provider":"openai","endpoint":"chat/completions","headers":{"bad name":"x"},"query":{}}]"#,
        r#"[{"provider":"openai","endpoint":"chat/completions","query":{"#,
        &too_many,
    ] {
        let sent = post_json(&c, &format!("{}/", gw.url()), &[], bad).await;
        assert_json_error(&sent, StatusCode::BAD_REQUEST, "invalid_request_error");
    }
    assert_eq!(
        mock.requests(),
        0,
        "a malformed universal request reached a provider"
    );
    // A good one is served.
    let sent = post_json(&c, &format!("{}/", gw.url()), &[], &format!("[{step}]")).await;
    assert_eq!(
        sent.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&sent.body)
    );
    still_serves(&mock, &gw, &c).await;
}

#[tokio::test]
async fn an_absurd_max_attempts_is_a_400() {
    let (mock, gw, c) = setup().await;
    let url = format!("{}/openai/chat/completions", gw.url());
    for n in [
        "0",
        "-1",
        "11",
        "1000000000000",
        "99999999999999999999999",
        "two",
        "",
        "1.5",
    ] {
        let sent = post_json(&c, &url, &[("aigw-max-attempts", n)], CHAT).await;
        assert_json_error(&sent, StatusCode::BAD_REQUEST, "invalid_request_error");
    }
    let latin1 = HeaderValue::from_bytes(b"\xff").unwrap();
    let sent = send(
        &c,
        raw_request(
            &url,
            &[("aigw-max-attempts", latin1)],
            Bytes::from_static(CHAT.as_bytes()),
        ),
    )
    .await;
    assert_json_error(&sent, StatusCode::BAD_REQUEST, "invalid_request_error");
    assert_eq!(mock.requests(), 0);
    still_serves(&mock, &gw, &c).await;
}
