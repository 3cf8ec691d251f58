//! Criterion micro-benchmark of the whole layer stack in-process, over `service_fn`:
//! what the gateway's layers cost per request, with no sockets and no upstream.
//!
//! Two groups: `stack` (single layers over a fixed request) and `ladder` (the gateway's
//! layers added one at a time, in its order, up to the whole stack, every request a
//! distinct prompt as in the load benchmark's cache-miss rung; and the whole stack on a
//! cache hit). Allocations go through mimalloc, as in the `gateway` binary.
//!
//! `cargo bench --bench stack`

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Bencher, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_ai_cache::CacheLayer;
use tower_ai_compat::CompatLayer;
use tower_ai_core::{Body, LlmRequest, Providers};
use tower_ai_fallback::FallbackLayer;
use tower_ai_meter::{Aggregates, MeterLayer, PrometheusRecorder, SqliteLog};
use tower_ai_provider_route::ProviderRouteLayer;
use tower_ai_ratelimit::{Algorithm, KeyPart, Limit, Quantity, RateLimitLayer};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHAT: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about tower middleware."}],"temperature":0.2}"#;

fn request() -> Request<Body> {
    request_with(Bytes::from_static(CHAT))
}

/// The chat request with a prompt of its own: `n` makes it distinct.
fn distinct(n: u64) -> Request<Body> {
    request_with(Bytes::from(format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"system","content":"You are a helpful assistant."}},{{"role":"user","content":"Write haiku {n} about tower middleware."}}],"temperature":0.2}}"#
    )))
}

fn request_with(body: Bytes) -> Request<Body> {
    Request::post("/openai/chat/completions")
        .header(
            "authorization",
            "Bearer sk-proj-0123456789abcdef0123456789abcdef",
        )
        .header("content-type", "application/json")
        .header("user-agent", "OpenAI/Python 1.54.0")
        .header("accept", "application/json")
        .header("host", "127.0.0.1:8787")
        .body(Body::from(body))
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
-> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ 'static {
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

/// The gateway's layers as `examples/gateway` builds them for the load benchmark's full
/// stack: the meter records to the in-memory totals, Prometheus and the SQLite request log
/// (its rows are written by their own thread, off this one); the rate limiter holds a
/// request and a token limit per API key in memory, far above what is sent (paid for,
/// never refusing); the cache keeps up to 32 MiB in memory; fallback and compat in their
/// default shape (a pass-through for a plain `/openai/...` request).
///
/// The load benchmark's ladder is the same: its "route only" rung is fallback, a rate
/// limiter without limits, compat and provider routing.
struct Layers {
    fallback: FallbackLayer,
    meter: MeterLayer<Recorders>,
    /// The gateway always has a rate limiter: without limits, for every rung below "+ rate
    /// limit".
    no_limits: RateLimitLayer,
    ratelimit: RateLimitLayer,
    cache: CacheLayer,
    compat: CompatLayer,
    route: ProviderRouteLayer,
}

/// The gateway's recorders: in-memory totals, Prometheus, the request log.
type Recorders = (Arc<Aggregates>, (PrometheusRecorder, Option<SqliteLog>));

impl Layers {
    /// Needs a runtime entered (the stores' clocks are tokio's). The request log goes
    /// in `dir`.
    fn new(dir: &std::path::Path) -> Layers {
        let providers = Providers::builtin();
        let log = SqliteLog::open(dir.join("meter.db")).expect("the request log");
        let recorders = (
            Arc::new(Aggregates::new()),
            (PrometheusRecorder::new(), Some(log)),
        );
        let minute = Duration::from_secs(60);
        let limits = [
            Limit::requests("bench-rpm", vec![KeyPart::ApiKey], 1_000_000_000, minute),
            Limit::new(
                "bench-tpm",
                vec![KeyPart::ApiKey],
                Quantity::Tokens(1_000_000_000_000),
                Algorithm::Gcra,
                minute,
            ),
        ]
        .map(|l| l.expect("a valid limit"));
        Layers {
            fallback: FallbackLayer::new().with_providers(providers.clone()),
            meter: MeterLayer::new(recorders).with_providers(providers.clone()),
            no_limits: RateLimitLayer::new(tower_ai_ratelimit::MemoryStore::new())
                .with_providers(providers.clone()),
            ratelimit: RateLimitLayer::new(tower_ai_ratelimit::MemoryStore::new())
                .with_limits(limits)
                .with_providers(providers.clone()),
            cache: CacheLayer::memory(32 << 20).with_providers(providers.clone()),
            compat: CompatLayer::new().with_providers(providers.clone()),
            route: ProviderRouteLayer::new(providers),
        }
    }
}

/// One request through `svc` and its whole answer, on the runtime: what the gateway does
/// for each request (the meter records, the rate limiter settles and the cache stores
/// when the body ends).
fn drive<S, B>(
    b: &mut Bencher<'_>,
    rt: &tokio::runtime::Runtime,
    svc: S,
    mut next: impl FnMut() -> Request<Body>,
) where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    b.iter(|| {
        let req = next();
        rt.block_on(async {
            let res = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            black_box(res.into_body().collect().await.unwrap())
        })
    })
}

fn ladder(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let dir = std::env::temp_dir().join(format!("tower-ai-stack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let l = Layers::new(&dir);
    // Every request of every rung a prompt never seen before, over the whole run.
    let mut n = 0u64;
    let mut fresh = || {
        n += 1;
        distinct(n)
    };

    // A rung: its layers, outside in, over the JSON upstream, each request fresh.
    macro_rules! rung {
        ($g:expr, $name:expr, $($layer:expr),*) => {
            $g.bench_function($name, |b| {
                let svc = ServiceBuilder::new()$(.layer($layer.clone()))*.service(upstream_json());
                drive(b, &rt, svc, &mut fresh)
            })
        };
    }

    let mut g = c.benchmark_group("ladder");
    g.bench_function("service_fn alone (baseline)", |b| {
        drive(b, &rt, upstream_json(), &mut fresh)
    });
    rung!(g, "provider route", l.route);
    rung!(g, "provider route + compat", l.compat, l.route);
    rung!(g, "provider route + fallback", l.fallback, l.route);
    // From here on, the load benchmark's rungs, in the gateway's order: fallback, meter,
    // rate limit, cache, compat, provider route.
    rung!(
        g,
        "route only (fallback, no limits, compat, route)",
        l.fallback,
        l.no_limits,
        l.compat,
        l.route
    );
    rung!(
        g,
        "+ meter",
        l.fallback,
        l.meter,
        l.no_limits,
        l.compat,
        l.route
    );
    rung!(
        g,
        "+ rate limit (memory)",
        l.fallback,
        l.meter,
        l.ratelimit,
        l.compat,
        l.route
    );
    let whole = ServiceBuilder::new()
        .layer(l.fallback.clone())
        .layer(l.meter.clone())
        .layer(l.ratelimit.clone())
        .layer(l.cache.clone())
        .layer(l.compat.clone())
        .layer(l.route.clone())
        .service(upstream_json());
    g.bench_function("+ cache (miss): the whole stack", |b| {
        drive(b, &rt, whole.clone(), &mut fresh)
    });
    g.bench_function("the whole stack, cache hit", |b| {
        // The fixed request, stored once: every iteration is a hit.
        rt.block_on(async {
            let res = whole.clone().oneshot(request()).await.unwrap();
            res.into_body().collect().await.unwrap();
            let again = whole.clone().oneshot(request()).await.unwrap();
            assert_eq!(again.headers()["aigw-cache-status"], "HIT");
        });
        drive(b, &rt, whole.clone(), request)
    });
    g.finish();
    // The log's writer thread ends with the last of its layers.
    drop((whole, l));
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, bench, ladder);
criterion_main!(benches);
