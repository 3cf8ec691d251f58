//! Shared helpers for the integration tests: a mock provider, a gateway pointed at it,
//! and a plain hyper client that reads frames as they come.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower_ai_gateway::{Config, RunningGateway};
use tower_ai_mock::MockProvider;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(http)
}

/// A gateway whose `openai`, `anthropic` and `azure-openai` providers point at `mock`,
/// with `extra` TOML appended (it may add sections, not repeat these).
pub async fn gateway_for(mock: &MockProvider, extra: &str) -> RunningGateway {
    start(&gateway_toml(mock, extra)).await
}

/// Starts a gateway from `toml`, with the request log in memory unless `toml` has a
/// `[meter]` section.
pub async fn start(toml: &str) -> RunningGateway {
    RunningGateway::start(config(toml))
        .await
        .expect("gateway starts")
}

/// Starts a gateway from `toml` as the `gateway` binary serves: two threads with a
/// runtime each, connections handed to them (`RunningGateway::start_per_thread`).
pub async fn start_per_thread(toml: &str) -> RunningGateway {
    let mut config = config(toml);
    config.server.threads = 2;
    RunningGateway::start_per_thread(config)
        .await
        .expect("gateway starts")
}

/// [`start_per_thread`] when `per_thread`, else [`start`].
pub async fn start_as(toml: &str, per_thread: bool) -> RunningGateway {
    if per_thread {
        start_per_thread(toml).await
    } else {
        start(toml).await
    }
}

/// The configuration [`start`] runs.
pub fn config(toml: &str) -> Config {
    let toml = if toml.contains("[meter]") {
        toml.to_owned()
    } else {
        format!("{toml}\n[meter]\nlog_path = \":memory:\"\n")
    };
    Config::from_toml(&toml).expect("test config is valid")
}

/// The `toml` [`gateway_for`] runs against `mock`.
pub fn gateway_toml(mock: &MockProvider, extra: &str) -> String {
    format!(
        r#"
        listen = "127.0.0.1:0"
        [providers.openai]
        base_url = "{url}/v1"
        [providers.anthropic]
        base_url = "{url}"
        [providers.azure-openai]
        base_url = "{url}/openai/deployments"
        {extra}
        "#,
        url = mock.url()
    )
}

pub struct Sent {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Sent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

pub fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::new(body.into())).unwrap()
}

pub async fn send(client: &HttpClient, req: Request<Full<Bytes>>) -> Sent {
    let res = client.request(req).await.expect("request sent");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("body read").to_bytes();
    Sent {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn post_json(
    client: &HttpClient,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Sent {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    send(client, request(Method::POST, url, &h, body.to_owned())).await
}

/// Every data frame of a response with the time it arrived.
pub async fn frames(res: Response<Incoming>) -> (Vec<(Instant, Bytes)>, Result<(), String>) {
    let mut body = res.into_body();
    let mut out = Vec::new();
    loop {
        match body.frame().await {
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    out.push((Instant::now(), d));
                }
            }
            Some(Err(e)) => return (out, Err(e.to_string())),
            None => return (out, Ok(())),
        }
    }
}

pub fn concat(frames: &[(Instant, Bytes)]) -> Vec<u8> {
    frames.iter().flat_map(|(_, b)| b.iter().copied()).collect()
}

/// Runs `fut` with a generous upper bound so a hang fails the test instead of CI.
pub async fn within<F: std::future::Future>(secs: u64, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .expect("timed out: something hung")
}

/// A request body fed from a channel: chunked, no length.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

pub fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    (tx, ChannelBody(rx))
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|c| c.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// The request [`flood`] sends.
pub const FLOOD_CHAT: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"count my words please"}]}"#;

/// Sends `n` chat requests from `tasks` concurrent tasks (each with a client, so a
/// connection, of its own) spread over `urls`; counts the answers: (200s, 429s, others).
pub async fn flood(urls: Vec<String>, n: u64, tasks: u64, key: &str) -> (u64, u64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let auth = format!("Bearer {key}");
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (ok, limited, other, next) = (ok.clone(), limited.clone(), other.clone(), next.clone());
        let url = urls[t as usize % urls.len()].clone();
        let auth = auth.clone();
        handles.push(tokio::spawn(async move {
            let c = client();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let r = post_json(
                    &c,
                    &format!("{url}/openai/chat/completions"),
                    &[("authorization", &auth)],
                    FLOOD_CHAT,
                )
                .await;
                match r.status {
                    StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                    StatusCode::TOO_MANY_REQUESTS => limited.fetch_add(1, Ordering::Relaxed),
                    _ => other.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for h in handles {
        within(120, h).await.unwrap();
    }
    (
        ok.load(Ordering::Relaxed),
        limited.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
    )
}

/// A request limit of 100 per hour per API key, in `store` (`memory` or `redis`, keys
/// under `prefix`).
pub fn limits(store: &str, prefix: &str) -> String {
    format!(
        r#"
        [ratelimit]
        store = "{store}"
        redis_prefix = "{prefix}"
        [[ratelimit.limits]]
        name = "per-key"
        key = "api_key"
        requests = 100
        period = "1h"
        "#
    )
}
