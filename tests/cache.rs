//! The cache over real sockets against the mock provider: hits byte for byte, canonical
//! keys, streams captured and replayed, identical requests coalesced, TTL, skip, custom
//! keys, scopes, no-store, purge, errors and cancelled streams left out, a failing
//! leader, the memory bound, and the Redis store (the same behaviour, shared by two
//! instances, unreachable).

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::within;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tower::util::BoxCloneService;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_ai_cache::{CacheKey, CacheLayer, CacheScope, MemoryStore, RedisStore};
use tower_ai_client::Client;
use tower_ai_core::{
    Body, BoxError, CacheStatus, KnownUsage, Operation, Providers, SseParser, StreamUsage,
    WireFormat,
};
use tower_ai_mock::MockProvider;
use tower_ai_provider_route::ProviderRouteLayer;

type Svc = BoxCloneService<Request<Body>, Response<UnsyncBoxBody<Bytes, BoxError>>, BoxError>;

const REDIS: &str = "redis://127.0.0.1:6379/";

const CHAT: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"cache me if you can"}]}"#;
const CHAT_REORDERED: &str = r#"{
    "messages" : [ { "content" : "cache me if you can", "role" : "user" } ],
    "model" : "gpt-4o-mini"
}"#;
const CHAT_STREAM: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"cache me if you can"}]}"#;
const MESSAGES_STREAM: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":12,"stream":true,"messages":[{"role":"user","content":"stream and store"}]}"#;

fn providers(mock: &MockProvider) -> Providers {
    let mut p = Providers::builtin();
    p.set_base_url("openai", &format!("{}/v1", mock.url()))
        .unwrap();
    p.set_base_url("anthropic", &mock.url()).unwrap();
    p
}

fn boxed<S, B>(svc: S) -> Svc
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    BoxCloneService::new(
        svc.map_response(|r: Response<B>| r.map(|b| b.map_err(Into::into).boxed_unsync()))
            .map_err(Into::into),
    )
}

/// CacheLayer + ProviderRouteLayer + the real upstream client, against `mock`.
fn stack(layer: CacheLayer, mock: &MockProvider) -> Svc {
    boxed(
        ServiceBuilder::new()
            .layer(layer)
            .layer(ProviderRouteLayer::new(providers(mock)))
            .service(Client::builder().build().unwrap()),
    )
}

fn post(path: &str, body: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut r = Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test-key");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Body::from(body.to_owned())).unwrap()
}

fn chat(body: &str, headers: &[(&str, &str)]) -> Request<Body> {
    post("/openai/chat/completions", body, headers)
}

struct Got {
    status: StatusCode,
    headers: HeaderMap,
    cache: Option<CacheStatus>,
    key: Option<CacheKey>,
    usage: Option<tower_ai_core::Usage>,
    body: Bytes,
}

impl Got {
    fn cache_header(&self) -> &str {
        self.headers
            .get("aigw-cache-status")
            .map_or("", |v| v.to_str().unwrap())
    }
}

fn send(svc: &Svc, req: Request<Body>) -> impl std::future::Future<Output = Got> + Send {
    let call = svc.clone().oneshot(req);
    async move {
        let res = within(20, call).await.unwrap();
        let (parts, body) = res.into_parts();
        let body = within(20, body.collect()).await.unwrap().to_bytes();
        Got {
            status: parts.status,
            cache: parts.extensions.get::<CacheStatus>().copied(),
            key: parts.extensions.get::<CacheKey>().copied(),
            usage: parts.extensions.get::<KnownUsage>().map(|k| k.0),
            headers: parts.headers,
            body,
        }
    }
}

/// The text and usage an SSE body parses to.
fn parse_stream(
    format: WireFormat,
    op: Operation,
    body: &[u8],
) -> (String, Option<tower_ai_core::Usage>, bool) {
    let mut usage = StreamUsage::new(format, op);
    let mut parser = SseParser::new();
    parser.feed(body, |e| usage.on_event(&e));
    (
        usage.output_text().to_owned(),
        usage.usage(),
        usage.completed(),
    )
}

/// A fresh Redis store with its own prefix, so parallel tests never meet.
async fn redis_store(test: &str) -> RedisStore {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    RedisStore::connect(
        REDIS,
        format!("tower-ai-test:{test}:{}:{nanos}:", std::process::id()),
    )
    .await
    .expect("the test Redis on 127.0.0.1:6379 is up")
}

// ---- behaviour shared by every store ---------------------------------------------

async fn same_request_hits_and_canonical_json_hits_too(layer: CacheLayer) {
    let mock = MockProvider::start().await.unwrap();
    let svc = stack(layer, &mock);
    let a = send(&svc, chat(CHAT, &[])).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.cache_header(), "MISS");
    assert_eq!(a.cache, Some(CacheStatus::Miss));
    let b = send(&svc, chat(CHAT, &[])).await;
    assert_eq!(b.cache_header(), "HIT");
    assert_eq!(a.body, b.body, "a hit is the same bytes");
    assert_eq!(b.headers["content-type"], a.headers["content-type"]);
    assert_eq!(mock.requests(), 1);
    // The meter learns what the hit saved.
    let u = b.usage.expect("usage of the stored response");
    assert_eq!((u.input_tokens, u.output_tokens), (5, 16));

    let c = send(&svc, chat(CHAT_REORDERED, &[])).await;
    assert_eq!(
        c.cache_header(),
        "HIT",
        "key order and whitespace do not matter"
    );
    assert_eq!(c.body, a.body);
    assert_eq!(mock.requests(), 1);

    let d = send(&svc, chat(&CHAT.replace("gpt-4o-mini", "gpt-4o"), &[])).await;
    assert_eq!(d.cache_header(), "MISS", "another model");
    let e = send(&svc, chat(&CHAT.replace("if you can", "if you may"), &[])).await;
    assert_eq!(e.cache_header(), "MISS", "another message");
    let f = send(&svc, chat(CHAT, &[("anthropic-version", "2023-06-01")])).await;
    assert_eq!(f.cache_header(), "MISS", "an answer-changing header");
    assert_eq!(mock.requests(), 4);
}

async fn streams_are_captured_and_replayed(layer: CacheLayer) {
    let mock = MockProvider::start().await.unwrap();
    let svc = stack(layer, &mock);
    for (path, body, format, op) in [
        (
            "/openai/chat/completions",
            CHAT_STREAM,
            WireFormat::OpenAi,
            Operation::ChatCompletions,
        ),
        (
            "/anthropic/v1/messages",
            MESSAGES_STREAM,
            WireFormat::Anthropic,
            Operation::Messages,
        ),
    ] {
        let live = send(&svc, post(path, body, &[])).await;
        assert_eq!(live.cache_header(), "MISS", "{path}");
        assert!(
            live.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let replay = send(&svc, post(path, body, &[])).await;
        assert_eq!(replay.cache_header(), "HIT", "{path}");
        assert_eq!(replay.headers["content-type"], live.headers["content-type"]);
        assert_eq!(
            replay.body, live.body,
            "{path}: the replay is the live stream"
        );
        let (text, usage, done) = parse_stream(format, op, &replay.body);
        assert_eq!(
            (text.clone(), usage, done),
            parse_stream(format, op, &live.body)
        );
        assert!(done && !text.is_empty() && usage.is_some(), "{path}");
        assert_eq!(
            replay.usage, usage,
            "{path}: known usage of a replayed stream"
        );
        // A streamed and a whole request are separate entries.
        let whole = body.replace(r#""stream":true,"#, "");
        let w = send(&svc, post(path, &whole, &[])).await;
        assert_eq!(w.cache_header(), "MISS", "{path}");
        assert!(
            w.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
    }
    assert_eq!(mock.requests(), 4);
}

async fn concurrent_identical_requests_go_upstream_once(layer: CacheLayer, stream: bool) {
    let mock = MockProvider::start().await.unwrap();
    let svc = stack(layer, &mock);
    let body = if stream { CHAT_STREAM } else { CHAT };
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            send(
                &svc,
                chat(
                    body,
                    &[
                        ("x-mock-latency-ms", "300"),
                        ("x-mock-chunk-delay-ms", "10"),
                    ],
                ),
            )
            .await
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    assert_eq!(mock.requests(), 1, "stream={stream}");
    let first = &got[0].body;
    let (mut hits, mut misses) = (0, 0);
    for g in &got {
        assert_eq!(g.status, 200);
        assert_eq!(&g.body, first, "everyone gets the whole answer");
        match g.cache_header() {
            "HIT" => hits += 1,
            "MISS" => misses += 1,
            other => panic!("{other}"),
        }
    }
    assert_eq!((hits, misses), (49, 1));
    if stream {
        let (text, usage, done) =
            parse_stream(WireFormat::OpenAi, Operation::ChatCompletions, first);
        assert!(
            done && usage.is_some() && text.split(' ').count() == 16,
            "{text}"
        );
    } else {
        let v: serde_json::Value = serde_json::from_slice(first).unwrap();
        assert!(v["choices"][0]["message"]["content"].is_string());
    }
    // And it was stored: one more is a hit from the store.
    assert_eq!(send(&svc, chat(body, &[])).await.cache_header(), "HIT");
    assert_eq!(mock.requests(), 1);
}

async fn skip_custom_key_and_scopes(layer: CacheLayer) {
    let mock = MockProvider::start().await.unwrap();
    let svc = stack(layer.clone(), &mock);
    send(&svc, chat(CHAT, &[])).await;
    let skipped = send(&svc, chat(CHAT, &[("aigw-skip-cache", "true")])).await;
    assert_eq!(skipped.cache_header(), "BYPASS");
    let aliased = send(&svc, chat(CHAT, &[("cf-aig-skip-cache", "true")])).await;
    assert_eq!(aliased.cache_header(), "BYPASS");
    assert_eq!(mock.requests(), 3);

    // A custom key replaces the computed one.
    let k = [("aigw-cache-key", "greeting-v1")];
    let a = send(&svc, chat(CHAT, &k)).await;
    assert_eq!(a.cache_header(), "MISS");
    let b = send(&svc, chat(&CHAT.replace("cache me", "anything else"), &k)).await;
    assert_eq!(b.cache_header(), "HIT");
    assert_eq!(a.body, b.body);
    assert_eq!(mock.requests(), 4);

    // Scope: another credential never gets this one's entries.
    let other = Request::post("/openai/chat/completions")
        .header("authorization", "Bearer sk-someone-else")
        .body(Body::from(CHAT))
        .unwrap();
    assert_eq!(send(&svc, other).await.cache_header(), "MISS");
    let gateway_token = chat(CHAT, &[("aigw-authorization", "Bearer gw-token-1")]);
    assert_eq!(send(&svc, gateway_token).await.cache_header(), "MISS");
    let gateway_token = chat(CHAT, &[("aigw-authorization", "Bearer gw-token-1")]);
    assert_eq!(send(&svc, gateway_token).await.cache_header(), "HIT");
    assert_eq!(mock.requests(), 6);

    // Shared scope: one cache for every caller.
    let shared = stack(layer.with_scope(CacheScope::Shared), &mock);
    let first = chat(CHAT, &[("x-unrelated", "1")]);
    assert_eq!(send(&shared, first).await.cache_header(), "MISS");
    let other = Request::post("/openai/chat/completions")
        .header("authorization", "Bearer sk-someone-else")
        .body(Body::from(CHAT))
        .unwrap();
    assert_eq!(send(&shared, other).await.cache_header(), "HIT");
    assert_eq!(mock.requests(), 7);
}

async fn errors_and_cancelled_streams_are_not_stored(layer: CacheLayer) {
    let mock = MockProvider::start().await.unwrap();
    let svc = stack(layer, &mock);
    // The fault header is not part of the key: the same key, first failing.
    let failed = send(&svc, chat(CHAT, &[("x-mock-status", "500")])).await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.cache_header(), "MISS");
    let ok = send(&svc, chat(CHAT, &[])).await;
    assert_eq!((ok.status, ok.cache_header()), (StatusCode::OK, "MISS"));
    assert_eq!(send(&svc, chat(CHAT, &[])).await.cache_header(), "HIT");

    // A stream reset by the provider.
    let reset = within(
        20,
        svc.clone()
            .oneshot(chat(CHAT_STREAM, &[("x-mock-reset-after", "4")])),
    )
    .await
    .unwrap();
    assert!(within(20, reset.into_body().collect()).await.is_err());
    // A client hanging up mid-stream.
    let res = within(
        20,
        svc.clone().oneshot(chat(
            CHAT_STREAM,
            &[("x-mock-chunks", "40"), ("x-mock-chunk-delay-ms", "30")],
        )),
    )
    .await
    .unwrap();
    let mut body = res.into_body();
    for _ in 0..4 {
        within(20, body.frame()).await.unwrap().unwrap();
    }
    drop(body);
    within(20, mock.wait_for_cancelled(1)).await;
    let after = send(&svc, chat(CHAT_STREAM, &[])).await;
    assert_eq!(
        after.cache_header(),
        "MISS",
        "neither broken stream was stored"
    );
    let (_, _, done) = parse_stream(WireFormat::OpenAi, Operation::ChatCompletions, &after.body);
    assert!(done);
    assert_eq!(
        send(&svc, chat(CHAT_STREAM, &[])).await.cache_header(),
        "HIT"
    );
    assert_eq!(mock.requests(), 5);
}

async fn purge_one_and_all(layer: CacheLayer) {
    let mock = MockProvider::start().await.unwrap();
    let handle = layer.handle();
    let svc = stack(layer, &mock);
    let a = send(&svc, chat(CHAT, &[])).await;
    let other = CHAT.replace("gpt-4o-mini", "gpt-4o");
    send(&svc, chat(&other, &[])).await;
    send(&svc, chat(CHAT, &[("aigw-cache-key", "mine")])).await;
    assert_eq!(send(&svc, chat(CHAT, &[])).await.cache_header(), "HIT");

    assert!(handle.purge(&a.key.unwrap()).await);
    assert_eq!(send(&svc, chat(CHAT, &[])).await.cache_header(), "MISS");
    assert_eq!(send(&svc, chat(&other, &[])).await.cache_header(), "HIT");

    let mut caller = HeaderMap::new();
    caller.insert("authorization", "Bearer sk-test-key".parse().unwrap());
    assert!(handle.purge_custom(&caller, "mine").await);
    let mine = send(&svc, chat(CHAT, &[("aigw-cache-key", "mine")])).await;
    assert_eq!(mine.cache_header(), "MISS");

    handle.purge_all().await;
    assert_eq!(send(&svc, chat(CHAT, &[])).await.cache_header(), "MISS");
    assert_eq!(send(&svc, chat(&other, &[])).await.cache_header(), "MISS");
}

async fn ttl_expires(layer: CacheLayer) {
    let mock = MockProvider::start().await.unwrap();
    let svc = stack(layer, &mock);
    let ttl = [("aigw-cache-ttl", "1")];
    assert_eq!(send(&svc, chat(CHAT, &ttl)).await.cache_header(), "MISS");
    assert_eq!(send(&svc, chat(CHAT, &ttl)).await.cache_header(), "HIT");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let expired = send(&svc, chat(CHAT, &ttl)).await;
    assert_eq!(expired.cache_header(), "EXPIRED");
    assert_eq!(expired.cache, Some(CacheStatus::Expired));
    assert_eq!(send(&svc, chat(CHAT, &ttl)).await.cache_header(), "HIT");
    assert_eq!(mock.requests(), 2);
    let bad = send(&svc, chat(CHAT, &[("aigw-cache-ttl", "forever")])).await;
    assert_eq!(bad.status, 400);
    assert!(String::from_utf8_lossy(&bad.body).contains("aigw-cache-ttl"));
}

// ---- the memory store --------------------------------------------------------------

fn memory() -> CacheLayer {
    CacheLayer::memory(64 * 1024 * 1024)
}

#[tokio::test]
async fn memory_hits_and_misses() {
    same_request_hits_and_canonical_json_hits_too(memory()).await;
}

#[tokio::test]
async fn memory_streams() {
    streams_are_captured_and_replayed(memory()).await;
}

#[tokio::test]
async fn memory_coalesces_whole_responses() {
    concurrent_identical_requests_go_upstream_once(memory(), false).await;
}

#[tokio::test]
async fn memory_coalesces_streams() {
    concurrent_identical_requests_go_upstream_once(memory(), true).await;
}

#[tokio::test]
async fn memory_skip_custom_key_and_scopes() {
    skip_custom_key_and_scopes(memory()).await;
}

#[tokio::test]
async fn memory_errors_and_cancelled_streams() {
    errors_and_cancelled_streams_are_not_stored(memory()).await;
}

#[tokio::test]
async fn memory_purge() {
    purge_one_and_all(memory()).await;
}

#[tokio::test]
async fn memory_ttl() {
    ttl_expires(memory()).await;
}

// ---- the Redis store -----------------------------------------------------------------

async fn with_redis<F, Fut>(test: &str, body: F)
where
    F: FnOnce(CacheLayer) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let store = redis_store(test).await;
    body(CacheLayer::new(store.clone())).await;
    tower_ai_cache::CacheStore::clear(&store).await;
}

#[tokio::test]
async fn redis_hits_and_misses() {
    with_redis("hits", same_request_hits_and_canonical_json_hits_too).await;
}

#[tokio::test]
async fn redis_streams() {
    with_redis("streams", streams_are_captured_and_replayed).await;
}

#[tokio::test]
async fn redis_coalesces_whole_responses() {
    with_redis("coalesce", |l| {
        concurrent_identical_requests_go_upstream_once(l, false)
    })
    .await;
}

#[tokio::test]
async fn redis_coalesces_streams() {
    with_redis("coalesce-sse", |l| {
        concurrent_identical_requests_go_upstream_once(l, true)
    })
    .await;
}

#[tokio::test]
async fn redis_skip_custom_key_and_scopes() {
    with_redis("controls", skip_custom_key_and_scopes).await;
}

#[tokio::test]
async fn redis_errors_and_cancelled_streams() {
    with_redis("errors", errors_and_cancelled_streams_are_not_stored).await;
}

#[tokio::test]
async fn redis_purge() {
    with_redis("purge", purge_one_and_all).await;
}

#[tokio::test]
async fn redis_ttl() {
    with_redis("ttl", ttl_expires).await;
}

#[tokio::test]
async fn two_gateway_instances_share_hits_through_redis() {
    let mock = MockProvider::start().await.unwrap();
    let a = redis_store("shared").await;
    let b = RedisStore::connect(REDIS, a.prefix().to_owned())
        .await
        .unwrap();
    let gw_a = stack(CacheLayer::new(a.clone()), &mock);
    let gw_b = stack(CacheLayer::new(b), &mock);
    let first = send(&gw_a, chat(CHAT_STREAM, &[])).await;
    assert_eq!(first.cache_header(), "MISS");
    let second = send(&gw_b, chat(CHAT_STREAM, &[])).await;
    assert_eq!(second.cache_header(), "HIT");
    assert_eq!(first.body, second.body);
    assert_eq!(mock.requests(), 1);
    tower_ai_cache::CacheStore::clear(&a).await;
}

#[tokio::test]
async fn redis_unreachable_is_a_miss_never_a_failure_nor_a_hang() {
    assert!(
        RedisStore::connect("redis://127.0.0.1:1/", "x:")
            .await
            .is_err()
    );
    let mock = MockProvider::start().await.unwrap();
    let store = RedisStore::lazy("redis://127.0.0.1:1/", "x:").unwrap();
    let svc = stack(CacheLayer::new(store), &mock);
    let start = Instant::now();
    for i in 0..3 {
        let body = CHAT.replace("cache me", &format!("attempt {i}"));
        let g = send(&svc, chat(&body, &[])).await;
        assert_eq!((g.status, g.cache_header()), (StatusCode::OK, "MISS"));
    }
    // Once the failed put has given up, the same request is a miss again (a request
    // arriving while it was still trying would have shared the response in flight).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let body = CHAT.replace("cache me", "attempt 0");
    let g = send(&svc, chat(&body, &[])).await;
    assert_eq!((g.status, g.cache_header()), (StatusCode::OK, "MISS"));
    assert_eq!(mock.requests(), 4);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

// ---- upstreams the mock cannot play ----------------------------------------------------

/// An upstream answering JSON after `delay`, with `status` for the first `fail_first`
/// calls; counts its calls.
fn upstream(
    calls: Arc<AtomicUsize>,
    delay: Duration,
    fail_first: usize,
    extra: Option<(&'static str, &'static str)>,
) -> Svc {
    boxed(service_fn(move |_req: Request<Body>| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(delay).await;
            let status = if n < fail_first { 500 } else { 200 };
            let mut res = Response::builder()
                .status(status)
                .header("content-type", "application/json");
            if let Some((k, v)) = extra {
                res = res.header(k, v);
            }
            let body =
                format!(r#"{{"call":{n},"usage":{{"prompt_tokens":1,"completion_tokens":1}}}}"#);
            Ok::<_, Infallible>(res.body(Full::new(Bytes::from(body))).unwrap())
        }
    }))
}

#[tokio::test]
async fn no_store_from_upstream_is_not_stored() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = boxed(ServiceBuilder::new().layer(memory()).service(upstream(
        calls.clone(),
        Duration::ZERO,
        0,
        Some(("cache-control", "private, no-store")),
    )));
    for _ in 0..2 {
        let g = send(&svc, chat(CHAT, &[])).await;
        assert_eq!(g.cache_header(), "MISS");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failing_leader_hands_over_to_a_waiter() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = boxed(ServiceBuilder::new().layer(memory()).service(upstream(
        calls.clone(),
        Duration::from_millis(200),
        1,
        None,
    )));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            // The first one leads.
            tokio::time::sleep(Duration::from_millis(if i == 0 { 0 } else { 50 })).await;
            send(&svc, chat(CHAT, &[])).await
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one failure, one retry: not ten"
    );
    assert_eq!(got[0].status, 500);
    for g in &got[1..] {
        assert_eq!(g.status, 200);
        assert_eq!(g.body, got[1].body);
    }
}

#[tokio::test]
async fn waiters_give_up_after_the_wait_timeout() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = boxed(
        ServiceBuilder::new()
            .layer(memory().with_wait_timeout(Duration::from_millis(100)))
            .service(upstream(calls.clone(), Duration::from_millis(500), 0, None)),
    );
    let a = tokio::spawn({
        let svc = svc.clone();
        async move { send(&svc, chat(CHAT, &[])).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let start = Instant::now();
    let b = send(&svc, chat(CHAT, &[])).await;
    assert_eq!(b.status, 200);
    assert_eq!(b.cache_header(), "MISS");
    assert!(start.elapsed() < Duration::from_millis(900));
    assert_eq!(a.await.unwrap().status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn memory_stays_within_max_bytes_under_a_flood() {
    let mock = MockProvider::start().await.unwrap();
    let max = 256 * 1024;
    let store = MemoryStore::new(max);
    let svc = stack(CacheLayer::new(store.clone()), &mock);
    for i in 0..60 {
        let body = CHAT.replace("cache me", &format!("flood {i}"));
        // ~2000 words: about 12 KiB a response.
        let g = send(&svc, chat(&body, &[("x-mock-chunks", "2000")])).await;
        assert_eq!(g.status, 200);
        assert!(g.body.len() > 10_000);
        assert!(store.bytes_used() <= max, "{} > {max}", store.bytes_used());
    }
    assert!(store.len() > 5 && store.len() < 60, "{}", store.len());
}
