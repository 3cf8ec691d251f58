//! The gateway as the binary serves it: a runtime per thread (`serve_per_thread`), one
//! shared state. Connections are handed to the threads in turn, so clients on separate
//! connections land on different threads; limits, the cache and the meter must still be
//! one.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use http::{Method, StatusCode};
use tower_ai_gateway::RunningGateway;
use tower_ai_mock::MockProvider;

const CHAT: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello to the threads"}]}"#;
const CHAT_STREAM: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello to the threads"}]}"#;

async fn start_threads(mock: &MockProvider, extra: &str) -> RunningGateway {
    start_per_thread(&gateway_toml(mock, extra)).await
}

/// The names of this process's threads serving on `port` (`aigw-{port}-{i}`).
fn serving_threads(port: u16) -> BTreeSet<String> {
    let prefix = format!("aigw-{port}-");
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

/// The serving threads once there are `n` (a thread names itself as it starts).
async fn wait_for_threads(port: u16, n: usize) -> BTreeSet<String> {
    for _ in 0..200 {
        let names = serving_threads(port);
        if names.len() == n {
            return names;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("serving threads: {:?}, not {n}", serving_threads(port));
}

async fn usage_requests(gw: &RunningGateway, want: u64) -> u64 {
    let c = client();
    let url = format!("{}/usage", gw.url());
    let mut seen = 0;
    // The request log writes in batches; give it its moment.
    for _ in 0..200 {
        let u = send(&c, request(Method::GET, &url, &[], "")).await;
        assert_eq!(u.status, StatusCode::OK);
        seen = u.json()["totals"]["requests"].as_u64().unwrap();
        if seen >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_limit_and_one_meter_across_threads() {
    let mock = MockProvider::start().await.unwrap();
    let gw = start_threads(&mock, &limits("memory", "")).await;
    let names = wait_for_threads(gw.addr().port(), 2).await;
    let port = gw.addr().port();
    assert_eq!(
        names,
        BTreeSet::from([format!("aigw-{port}-0"), format!("aigw-{port}-1")])
    );
    let (ok, limited, other) = flood(vec![gw.url()], 1000, 32, "sk-threads-memory").await;
    assert_eq!((ok, limited, other), (100, 900, 0));
    assert_eq!(
        mock.requests(),
        100,
        "refused requests never reach the provider"
    );
    // Every request metered once, into the one log, whichever thread served it.
    assert_eq!(usage_requests(&gw, 1000).await, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limits_from_every_thread() {
    // The Redis connection lives on the accepting runtime; every thread's requests go
    // through it.
    let mock = MockProvider::start().await.unwrap();
    let prefix = format!("tower-ai-test:threads:{}:{}:", std::process::id(), line!());
    let gw = start_threads(&mock, &limits("redis", &prefix)).await;
    let (ok, limited, other) = flood(vec![gw.url()], 400, 32, "sk-threads-redis").await;
    assert_eq!((ok, limited, other), (100, 300, 0));
    assert_eq!(mock.requests(), 100);
}

#[tokio::test]
async fn one_cache_across_threads() {
    let mock = MockProvider::start().await.unwrap();
    let gw = start_threads(&mock, "[cache]\nenabled = true\nttl = 60\n").await;
    let url = format!("{}/openai/chat/completions", gw.url());
    // Two clients, two connections: handed to the two threads in turn.
    let (a, b) = (client(), client());
    let first = post_json(&a, &url, &[], CHAT).await;
    let second = post_json(&b, &url, &[], CHAT).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.headers["aigw-cache-status"], "MISS");
    assert_eq!(second.headers["aigw-cache-status"], "HIT");
    assert_eq!(second.body, first.body);
    assert_eq!(mock.requests(), 1);
}

#[tokio::test]
async fn streams_on_every_thread_and_a_graceful_shutdown_that_ends_them() {
    let mock = MockProvider::start().await.unwrap();
    let gw = start_threads(&mock, "").await;
    let url = format!("{}/openai/chat/completions", gw.url());
    wait_for_threads(gw.addr().port(), 2).await;
    // Four streams on four connections: two per thread, in flight when shutdown begins.
    let mut streams = Vec::new();
    for _ in 0..4 {
        let req = request(
            Method::POST,
            &url,
            &[("x-mock-chunks", "5"), ("x-mock-chunk-delay-ms", "100")],
            CHAT_STREAM,
        );
        let res = within(20, client().request(req)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        streams.push(tokio::spawn(frames(res)));
    }
    let addr = gw.addr();
    let port = addr.port();
    let stopping = gw.begin_shutdown();
    for s in streams {
        let (frames, end) = within(20, s).await.unwrap();
        end.unwrap();
        assert!(concat(&frames).ends_with(b"data: [DONE]\n\n"));
    }
    within(20, stopping).await.unwrap().unwrap();
    // Stopped: no new connections, and the threads are gone.
    let refused = client()
        .request(request(
            Method::GET,
            &format!("http://{addr}/healthz"),
            &[],
            "",
        ))
        .await;
    assert!(refused.is_err());
    // Joined before the shutdown returned.
    assert_eq!(serving_threads(port), BTreeSet::new());
}

#[tokio::test]
async fn identical_requests_on_both_threads_go_upstream_once() {
    // Followers on one thread read the stream the leader on the other is capturing.
    let mock = MockProvider::start().await.unwrap();
    let gw = start_threads(&mock, "[cache]\nenabled = true\nttl = 60\n").await;
    let url = format!("{}/openai/chat/completions", gw.url());
    let headers = [
        ("x-mock-latency-ms", "300"),
        ("x-mock-chunk-delay-ms", "10"),
    ];
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        // A client each: eight connections, four per thread.
        tasks.push(tokio::spawn(async move {
            post_json(&client(), &url, &headers, CHAT_STREAM).await
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(within(20, t).await.unwrap());
    }
    assert_eq!(mock.requests(), 1);
    let first = &got[0].body;
    assert!(first.ends_with(b"data: [DONE]\n\n"));
    let mut statuses: Vec<_> = got
        .iter()
        .map(|g| {
            assert_eq!(g.status, StatusCode::OK);
            assert_eq!(&g.body, first, "everyone gets the whole stream");
            g.headers["aigw-cache-status"].to_str().unwrap().to_owned()
        })
        .collect();
    statuses.sort();
    assert_eq!(statuses, [&["HIT"; 7][..], &["MISS"]].concat());
}
