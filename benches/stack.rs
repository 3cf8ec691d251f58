//! Criterion micro-benchmark of the whole layer stack in-process, over `service_fn`:
//! what the gateway's layers cost per request, with no sockets and no upstream.
//! The ladder grows as layers land.
//!
//! `cargo bench --bench stack`

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::BodyExt;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_ai_core::{Body, LlmRequest, Providers};
use tower_ai_provider_route::ProviderRouteLayer;

const CHAT: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about tower middleware."}],"temperature":0.2}"#;

fn request() -> Request<Body> {
    Request::post("/openai/chat/completions")
        .header(
            "authorization",
            "Bearer sk-proj-0123456789abcdef0123456789abcdef",
        )
        .header("content-type", "application/json")
        .header("user-agent", "OpenAI/Python 1.54.0")
        .header("accept", "application/json")
        .header("host", "127.0.0.1:8787")
        .body(Body::from(Bytes::from_static(CHAT)))
        .unwrap()
}

fn upstream() -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone
{
    service_fn(|req: Request<Body>| async move {
        black_box(req.uri());
        Ok::<_, Infallible>(Response::new(Body::from(Bytes::from_static(b"{}"))))
    })
}

/// An upstream answering a chat completion with usage, as a provider does.
fn upstream_json()
-> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
    service_fn(|req: Request<Body>| async move {
        black_box(req.uri());
        let res = Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(Bytes::from_static(br#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}"#)))
            .unwrap();
        Ok::<_, Infallible>(res)
    })
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("stack");
    g.bench_function("service_fn alone (baseline)", |b| {
        let svc = upstream();
        b.iter(|| {
            let res = svc
                .clone()
                .oneshot(request())
                .now_or_never()
                .unwrap()
                .unwrap();
            black_box(res)
        })
    });
    g.bench_function("route", |b| {
        let svc = ServiceBuilder::new()
            .layer(ProviderRouteLayer::new(Providers::builtin()))
            .service(upstream());
        b.iter(|| {
            let res = svc
                .clone()
                .oneshot(request())
                .now_or_never()
                .unwrap()
                .unwrap();
            black_box(res)
        })
    });
    g.bench_function("route, gateway-held key", |b| {
        let svc = ServiceBuilder::new()
            .layer(
                ProviderRouteLayer::new(Providers::builtin())
                    .with_key("openai", "sk-gateway-0123456789")
                    .unwrap(),
            )
            .service(upstream());
        b.iter(|| {
            let res = svc
                .clone()
                .oneshot(request())
                .now_or_never()
                .unwrap()
                .unwrap();
            black_box(res)
        })
    });
    g.bench_function("meter + route", |b| {
        let svc = ServiceBuilder::new()
            .layer(tower_ai_meter::MeterLayer::new(()))
            .layer(ProviderRouteLayer::new(Providers::builtin()))
            .service(upstream_json());
        b.iter(|| {
            let res = svc
                .clone()
                .oneshot(request())
                .now_or_never()
                .unwrap()
                .unwrap();
            // The request is metered when its body ends.
            let body = res.into_body().collect().now_or_never().unwrap().unwrap();
            black_box(body)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("stack");
    g.bench_function("cache hit (memory) + route", |b| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let svc = ServiceBuilder::new()
            .layer(tower_ai_cache::CacheLayer::memory(64 * 1024 * 1024))
            .layer(ProviderRouteLayer::new(Providers::builtin()))
            .service(upstream_json());
        // Warm the entry, then every iteration is a hit.
        let warm = rt.block_on(svc.clone().oneshot(request())).unwrap();
        rt.block_on(warm.into_body().collect()).unwrap();
        b.iter(|| {
            let res = rt.block_on(svc.clone().oneshot(request())).unwrap();
            assert_eq!(res.headers()["aigw-cache-status"], "HIT");
            let body = rt.block_on(res.into_body().collect()).unwrap();
            black_box(body)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("llm_request");
    g.bench_function("parse a chat request", |b| {
        let body = Bytes::from_static(CHAT);
        b.iter(|| {
            black_box(LlmRequest::parse(
                "openai",
                "/chat/completions",
                body.clone(),
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
