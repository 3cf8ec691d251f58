//! The fallback rules in-process, over scripted inner services, time under tokio's paused
//! clock. (Real sockets, the mock provider and SDK clients: the root package's
//! `tests/fallback.rs`.)

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_ai_core::{Body, BoxError};
use tower_ai_fallback::{
    Backoff, BreakerConfig, BreakerState, FallbackLayer, RetryPolicy, Route, Target, Triggers,
};

type TestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// What the scripted provider does for one call.
enum Reply {
    Status(u16),
    StatusWith(u16, &'static str, &'static str),
    Fail,
    Hang,
    /// A stream: frames, each after a delay; then a clean end, an error, or a stall.
    Stream(Vec<(u64, &'static str)>, End),
}

#[derive(Clone, Copy)]
enum End {
    Clean,
    Reset,
    Stall,
}

#[derive(Clone, Debug)]
struct Call {
    path: String,
    headers: http::HeaderMap,
    body: Bytes,
    at: Instant,
}

#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Script {
    fn new(replies: impl IntoIterator<Item = Reply>) -> Self {
        let s = Self::default();
        s.replies.lock().unwrap().extend(replies);
        s
    }
    fn push(&self, r: Reply) {
        self.replies.lock().unwrap().push_back(r);
    }
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    fn paths(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.path).collect()
    }
}

/// The scripted provider: it also insists on being made ready before every call.
#[derive(Clone)]
struct Provider {
    script: Script,
    ready: bool,
}

impl Service<Request<Body>> for Provider {
    type Response = Response<TestBody>;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        assert!(std::mem::take(&mut self.ready), "called without poll_ready");
        let script = self.script.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            script.calls.lock().unwrap().push(Call {
                path: parts.uri.to_string(),
                headers: parts.headers,
                body,
                at: Instant::now(),
            });
            let reply = script
                .replies
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Reply::Status(200));
            match reply {
                Reply::Status(s) => Ok(json(s, &[])),
                Reply::StatusWith(s, h, v) => Ok(json(s, &[(h, v)])),
                Reply::Fail => Err("connection refused".into()),
                Reply::Hang => std::future::pending().await,
                Reply::Stream(frames, end) => Ok(stream(frames, end)),
            }
        })
    }
}

fn json(status: u16, headers: &[(&'static str, &'static str)]) -> Response<TestBody> {
    let body = format!("{{\"status\":{status}}}");
    let mut res = Response::new(
        http_body_util::Full::new(Bytes::from(body))
            .map_err(|e: Infallible| match e {})
            .boxed_unsync(),
    );
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    res.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    for (h, v) in headers {
        res.headers_mut().insert(*h, v.parse().unwrap());
    }
    res
}

fn stream(frames: Vec<(u64, &'static str)>, end: End) -> Response<TestBody> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(64);
    tokio::spawn(async move {
        for (delay, f) in frames {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            if tx
                .send(Ok(Frame::data(Bytes::from_static(f.as_bytes()))))
                .await
                .is_err()
            {
                return;
            }
        }
        match end {
            End::Clean => {}
            End::Reset => {
                let _ = tx.send(Err("connection reset".into())).await;
            }
            End::Stall => {
                tx.closed().await;
            }
        }
    });
    let body = StreamBody::new(ReceiverStream(rx)).boxed_unsync();
    let mut res = Response::new(body);
    res.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    res
}

struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

fn svc(
    layer: FallbackLayer,
    script: &Script,
) -> impl Service<
    Request<Body>,
    Response = Response<tower_ai_fallback::ResponseBody<TestBody>>,
    Error = BoxError,
    Future: Send,
> + Clone {
    ServiceBuilder::new().layer(layer).service(Provider {
        script: script.clone(),
        ready: false,
    })
}

const TWO_STEPS: &str = r#"[
  {"provider":"openai","endpoint":"chat/completions","headers":{"authorization":"Bearer sk-openai"},"query":{"model":"a"}},
  {"provider":"anthropic","endpoint":"v1/messages","headers":{"x-api-key":"sk-ant"},"query":{"model":"b"}}
]"#;

fn universal(body: &'static str) -> Request<Body> {
    Request::post("/")
        .header("authorization", "Bearer client-key")
        .body(Body::from(body))
        .unwrap()
}

async fn text(res: Response<tower_ai_fallback::ResponseBody<TestBody>>) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn universal_falls_back_and_says_which_step_served() {
    let script = Script::new([Reply::Status(503), Reply::Status(200)]);
    let res = svc(FallbackLayer::new(), &script)
        .oneshot(universal(TWO_STEPS))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["aigw-step"], "1");
    assert_eq!(
        res.extensions().get::<tower_ai_core::FallbackStep>(),
        Some(&tower_ai_core::FallbackStep(1))
    );
    let calls = script.calls();
    assert_eq!(
        script.paths(),
        ["/openai/chat/completions", "/anthropic/v1/messages"]
    );
    // Each step's body is its `query`, its headers its own; the outer credential stays out.
    assert_eq!(&calls[0].body[..], br#"{"model":"a"}"#);
    assert_eq!(calls[0].headers["authorization"], "Bearer sk-openai");
    assert_eq!(calls[1].headers["x-api-key"], "sk-ant");
    assert!(calls[1].headers.get("authorization").is_none());
    assert_eq!(calls[1].headers["content-type"], "application/json");
}

#[tokio::test]
async fn every_trigger_moves_on() {
    for reply in [
        Reply::Status(429),
        Reply::Status(500),
        Reply::Status(502),
        Reply::Status(503),
        Reply::Status(504),
        Reply::Fail,
    ] {
        let script = Script::new([reply, Reply::Status(200)]);
        let res = svc(FallbackLayer::new(), &script)
            .oneshot(universal(TWO_STEPS))
            .await
            .unwrap();
        assert_eq!((res.status(), script.calls().len()), (StatusCode::OK, 2));
        assert_eq!(res.headers()["aigw-step"], "1");
    }
}

#[tokio::test]
async fn the_callers_errors_come_back_as_they_are() {
    for status in [400, 401, 403, 404, 422] {
        let script = Script::new([Reply::Status(status)]);
        let res = svc(FallbackLayer::new(), &script)
            .oneshot(universal(TWO_STEPS))
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status);
        assert_eq!(res.headers()["aigw-step"], "0");
        assert_eq!(script.calls().len(), 1, "{status} is never retried");
        assert_eq!(text(res).await, format!("{{\"status\":{status}}}"));
    }
}

#[tokio::test]
async fn triggers_are_configurable() {
    let layer = FallbackLayer::new().with_policy(RetryPolicy {
        triggers: Triggers::parse(["503"]).unwrap(),
        ..RetryPolicy::default()
    });
    let script = Script::new([Reply::Status(500)]);
    let res = svc(layer.clone(), &script)
        .oneshot(universal(TWO_STEPS))
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), script.calls().len()), (500, 1));
    let script = Script::new([Reply::Status(503), Reply::Status(200)]);
    let res = svc(layer, &script)
        .oneshot(universal(TWO_STEPS))
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), script.calls().len()), (200, 2));
}

#[tokio::test]
async fn every_step_failing_gives_the_last_failure() {
    let script = Script::new([Reply::Status(503), Reply::Status(502)]);
    let res = svc(FallbackLayer::new(), &script)
        .oneshot(universal(TWO_STEPS))
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(res.headers()["aigw-step"], "1");
    assert_eq!(text(res).await, r#"{"status":502}"#);

    // The last failure an error: the error (the gateway turns it into a 502 JSON).
    let script = Script::new([Reply::Status(503), Reply::Fail]);
    let err = svc(FallbackLayer::new(), &script)
        .oneshot(universal(TWO_STEPS))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "connection refused");
}

/// Times between the attempts of one step, under the paused clock.
async fn gaps(policy: RetryPolicy, attempts: usize) -> Vec<Duration> {
    let script = Script::new((0..attempts).map(|_| Reply::Status(503)));
    let layer = FallbackLayer::new().with_policy(policy);
    let res = svc(layer, &script)
        .oneshot(
            Request::post("/openai/chat/completions")
                .header("aigw-max-attempts", attempts.to_string())
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let calls = script.calls();
    assert_eq!(calls.len(), attempts);
    calls.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[tokio::test(start_paused = true)]
async fn backoff_modes() {
    let ms = Duration::from_millis;
    let base = RetryPolicy {
        retry_delay: ms(100),
        ..RetryPolicy::default()
    };
    let constant = RetryPolicy {
        backoff: Backoff::Constant,
        ..base.clone()
    };
    assert_eq!(gaps(constant, 4).await, [ms(100), ms(100), ms(100)]);
    let linear = RetryPolicy {
        backoff: Backoff::Linear,
        ..base.clone()
    };
    assert_eq!(gaps(linear, 4).await, [ms(100), ms(200), ms(300)]);
    let exponential = RetryPolicy {
        backoff: Backoff::Exponential,
        ..base.clone()
    };
    assert_eq!(
        gaps(exponential, 5).await,
        [ms(100), ms(200), ms(400), ms(800)]
    );
    let capped = RetryPolicy {
        backoff: Backoff::Exponential,
        max_retry_delay: ms(300),
        ..base.clone()
    };
    assert_eq!(gaps(capped, 4).await, [ms(100), ms(200), ms(300)]);
    // Full jitter: each gap within [0, the backoff], and not all at the top.
    let jitter = RetryPolicy {
        backoff: Backoff::Exponential,
        jitter: true,
        ..base
    };
    let g = gaps(jitter, 6).await;
    for (n, d) in g.iter().enumerate() {
        assert!(*d <= ms(100 << n), "{g:?}");
    }
    assert_ne!(g, [ms(100), ms(200), ms(400), ms(800), ms(1600)]);
}

#[tokio::test(start_paused = true)]
async fn request_headers_set_the_policy() {
    let script = Script::new([Reply::Status(503), Reply::Status(503), Reply::Status(200)]);
    let res = svc(FallbackLayer::new(), &script)
        .oneshot(
            Request::post("/openai/chat/completions")
                .header("aigw-max-attempts", "3")
                .header("cf-aig-retry-delay", "250")
                .header("aigw-backoff", "linear")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let at: Vec<_> = script.calls().iter().map(|c| c.at).collect();
    assert_eq!(at[1] - at[0], Duration::from_millis(250));
    assert_eq!(at[2] - at[1], Duration::from_millis(500));
    // The retry of a plain request goes to the same place with the same body.
    assert!(
        script
            .paths()
            .iter()
            .all(|p| p == "/openai/chat/completions")
    );
    assert!(script.calls().iter().all(|c| &c.body[..] == b"{}"));

    // Absurd values are a 400 before anything is sent.
    let script = Script::default();
    let res = svc(FallbackLayer::new(), &script)
        .oneshot(
            Request::post("/openai/chat/completions")
                .header("aigw-max-attempts", "1000")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(text(res).await.contains("aigw-max-attempts"));
    assert!(script.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_when_it_fits() {
    let policy = RetryPolicy {
        max_attempts: 2,
        retry_delay: Duration::from_millis(10),
        total_timeout: Some(Duration::from_secs(10)),
        ..RetryPolicy::default()
    };
    // Fits: the retry waits what the provider asked for.
    let script = Script::new([
        Reply::StatusWith(429, "retry-after", "2"),
        Reply::Status(200),
    ]);
    let res = svc(FallbackLayer::new().with_policy(policy.clone()), &script)
        .oneshot(universal(TWO_STEPS))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let calls = script.calls();
    assert_eq!(
        calls[1].path, "/openai/chat/completions",
        "retried the same step"
    );
    assert_eq!(calls[1].at - calls[0].at, Duration::from_secs(2));

    let script = Script::new([
        Reply::StatusWith(503, "retry-after-ms", "1500"),
        Reply::Status(200),
    ]);
    svc(FallbackLayer::new().with_policy(policy.clone()), &script)
        .oneshot(universal(TWO_STEPS))
        .await
        .unwrap();
    let calls = script.calls();
    assert_eq!(calls[1].at - calls[0].at, Duration::from_millis(1500));

    // Does not fit the deadline: the next step at once.
    let script = Script::new([
        Reply::StatusWith(429, "retry-after", "60"),
        Reply::Status(200),
    ]);
    let res = svc(FallbackLayer::new().with_policy(policy), &script)
        .oneshot(universal(TWO_STEPS))
        .await
        .unwrap();
    assert_eq!(res.headers()["aigw-step"], "1");
    let calls = script.calls();
    assert_eq!(calls[1].path, "/anthropic/v1/messages");
    assert_eq!(calls[1].at, calls[0].at);
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_and_total_deadline() {
    // A hanging provider times out per attempt and the next step serves.
    let script = Script::new([Reply::Hang, Reply::Status(200)]);
    let start = Instant::now();
    let res = svc(FallbackLayer::new(), &script)
        .oneshot({
            let mut r = universal(TWO_STEPS);
            r.headers_mut()
                .insert("aigw-request-timeout", "1500".parse().unwrap());
            r
        })
        .await
        .unwrap();
    assert_eq!(
        (res.status(), res.headers()["aigw-step"].to_str().unwrap()),
        (StatusCode::OK, "1")
    );
    assert_eq!(start.elapsed(), Duration::from_millis(1500));

    // Every attempt hangs: the total deadline ends the chain with a 504 in JSON.
    let script = Script::new((0..20).map(|_| Reply::Hang));
    let layer = FallbackLayer::new().with_policy(RetryPolicy {
        max_attempts: 5,
        retry_delay: Duration::ZERO,
        attempt_timeout: Some(Duration::from_secs(1)),
        total_timeout: Some(Duration::from_millis(2500)),
        ..RetryPolicy::default()
    });
    let start = Instant::now();
    let res = svc(layer, &script)
        .oneshot(universal(TWO_STEPS))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(2500));
    assert_eq!(res.status(), 504);
    assert!(text(res).await.contains("did not answer in time"));
    assert_eq!(script.calls().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_skips_and_closes_after_one_probe() {
    let layer = FallbackLayer::new().with_breaker(BreakerConfig {
        failures: 3,
        cool_down: Duration::from_secs(30),
        ..BreakerConfig::default()
    });
    let handle = layer.handle();
    let script = Script::default();
    let svc = svc(layer, &script);
    for _ in 0..3 {
        script.push(Reply::Status(503));
        script.push(Reply::Status(200));
        let res = svc.clone().oneshot(universal(TWO_STEPS)).await.unwrap();
        assert_eq!(res.headers()["aigw-step"], "1");
    }
    let state = |name: &str| {
        handle
            .breakers()
            .into_iter()
            .find(|(t, _)| &**t == name)
            .map(|(_, s)| s)
    };
    assert_eq!(state("openai"), Some(BreakerState::Open));
    assert_eq!(
        state("anthropic"),
        Some(BreakerState::Closed { failures: 0 })
    );
    assert!(
        handle
            .prometheus()
            .contains("aigw_circuit_state{target=\"openai\"} 2")
    );

    // Open: openai gets no traffic at all.
    let before = script.calls().len();
    for _ in 0..5 {
        let res = svc.clone().oneshot(universal(TWO_STEPS)).await.unwrap();
        assert_eq!(res.headers()["aigw-step"], "1");
    }
    let calls = script.calls();
    assert_eq!(calls.len() - before, 5);
    assert!(
        calls[before..]
            .iter()
            .all(|c| c.path == "/anthropic/v1/messages")
    );

    // After the cool-down one probe goes; openai has recovered and the circuit closes.
    tokio::time::advance(Duration::from_secs(30)).await;
    let res = svc.clone().oneshot(universal(TWO_STEPS)).await.unwrap();
    assert_eq!(res.headers()["aigw-step"], "0");
    assert_eq!(state("openai"), Some(BreakerState::Closed { failures: 0 }));
    let res = svc.clone().oneshot(universal(TWO_STEPS)).await.unwrap();
    assert_eq!(res.headers()["aigw-step"], "0");
    assert!(
        handle
            .prometheus()
            .contains("aigw_fallback_skipped_total 5")
    );

    // Every circuit open: a 503 with retry-after, and no traffic.
    let solo = r#"[{"provider":"openai","endpoint":"x","query":{}}]"#;
    for _ in 0..3 {
        script.push(Reply::Status(500));
        svc.clone().oneshot(universal(solo)).await.unwrap();
    }
    let before = script.calls().len();
    let res = svc.clone().oneshot(universal(solo)).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "30");
    assert_eq!(script.calls().len(), before);
}

#[tokio::test(start_paused = true)]
async fn target_keys_rotate_on_429_and_bench_on_401() {
    let route = Route::new(vec![
        Target::new("openai")
            .with_model("gpt-4o-mini")
            .with_keys(["sk-one", "sk-two"]),
        Target::new("groq").with_model("llama"),
    ])
    .unwrap()
    .with_policy(RetryPolicy {
        max_attempts: 2,
        retry_delay: Duration::ZERO,
        ..RetryPolicy::default()
    });
    let layer = FallbackLayer::new().with_route("fast", route);
    let script = Script::default();
    let svc = svc(layer, &script);
    let req = || {
        Request::post("/openai/chat/completions")
            .header("authorization", "Bearer client")
            .body(Body::from(r#"{"model":"fast","messages":[]}"#))
            .unwrap()
    };
    script.push(Reply::Status(429));
    script.push(Reply::Status(200));
    let res = svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(res.headers()["aigw-step"], "0");
    let auth: Vec<_> = script
        .calls()
        .iter()
        .map(|c| c.headers["authorization"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(auth, ["Bearer sk-one", "Bearer sk-two"]);
    let body: serde_json::Value = serde_json::from_slice(&script.calls()[0].body).unwrap();
    assert_eq!(body["model"], "gpt-4o-mini");

    // sk-two refused: benched; the retry and the next request use sk-one.
    script.push(Reply::Status(401));
    script.push(Reply::Status(200));
    script.push(Reply::Status(200));
    svc.clone().oneshot(req()).await.unwrap();
    svc.clone().oneshot(req()).await.unwrap();
    let auth: Vec<_> = script.calls()[2..]
        .iter()
        .map(|c| c.headers["authorization"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(auth, ["Bearer sk-two", "Bearer sk-one", "Bearer sk-one"]);

    // Both refused: the target is out of keys and the next target serves.
    script.push(Reply::Status(403));
    script.push(Reply::Status(200));
    let res = svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(res.headers()["aigw-step"], "1");
    let last = script.calls().pop().unwrap();
    assert_eq!(last.path, "/groq/chat/completions");
    assert!(
        last.headers.get("authorization").is_none(),
        "the client's key stays with openai"
    );
}

const ROLE: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
const HELLO: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n";
const ERROR: &str = "data: {\"error\":{\"message\":\"overloaded\"}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

#[tokio::test(start_paused = true)]
async fn streams_fall_back_before_anything_is_committed() {
    for (first, why) in [
        (
            Reply::Stream(vec![(0, ROLE), (50, ERROR)], End::Clean),
            "error event after the role chunk",
        ),
        (
            Reply::Stream(vec![(0, ROLE)], End::Reset),
            "reset after the role chunk",
        ),
        (Reply::Stream(vec![], End::Clean), "ended with nothing"),
        (
            Reply::Stream(vec![(0, ROLE), (10, ROLE)], End::Clean),
            "ended without content or [DONE]",
        ),
    ] {
        let script = Script::new([
            first,
            Reply::Stream(vec![(0, ROLE), (5, HELLO), (5, DONE)], End::Clean),
        ]);
        let res = svc(FallbackLayer::new(), &script)
            .oneshot(universal(TWO_STEPS))
            .await
            .unwrap();
        assert_eq!(res.headers()["aigw-step"], "1", "{why}");
        assert_eq!(text(res).await, format!("{ROLE}{HELLO}{DONE}"), "{why}");
    }

    // A stall before the first byte counts against the attempt timeout.
    let script = Script::new([
        Reply::Stream(vec![], End::Stall),
        Reply::Stream(vec![(0, HELLO), (0, DONE)], End::Clean),
    ]);
    let mut req = universal(TWO_STEPS);
    req.headers_mut()
        .insert("aigw-request-timeout", "2000".parse().unwrap());
    let res = svc(FallbackLayer::new(), &script)
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.headers()["aigw-step"], "1");
}

#[tokio::test(start_paused = true)]
async fn held_events_are_released_with_the_first_content_or_after_the_hold() {
    // Held until the content arrives, then forwarded in order, untouched.
    let script = Script::new([Reply::Stream(
        vec![(0, ROLE), (300, HELLO), (0, DONE)],
        End::Clean,
    )]);
    let res = svc(FallbackLayer::new(), &script)
        .oneshot(universal(TWO_STEPS))
        .await
        .unwrap();
    assert_eq!(text(res).await, format!("{ROLE}{HELLO}{DONE}"));

    // Content-free for longer than the hold: committed at the hold, no fallback.
    let layer = FallbackLayer::new().with_policy(RetryPolicy {
        stream_hold: Duration::from_millis(100),
        ..RetryPolicy::default()
    });
    let script = Script::new([Reply::Stream(
        vec![(0, ROLE), (5000, HELLO), (0, DONE)],
        End::Clean,
    )]);
    let start = Instant::now();
    let res = svc(layer, &script)
        .oneshot(universal(TWO_STEPS))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(res.headers()["aigw-step"], "0");
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, ROLE);
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_fails_after_content_ends_in_error_never_clean() {
    // Reset after content: an error event, then a body error.
    let script = Script::new([Reply::Stream(
        vec![(0, ROLE), (0, HELLO), (10, HELLO)],
        End::Reset,
    )]);
    let res = svc(FallbackLayer::new(), &script)
        .oneshot(universal(TWO_STEPS))
        .await
        .unwrap();
    assert_eq!(res.headers()["aigw-step"], "0");
    let mut body = res.into_body();
    let mut seen = String::new();
    let err = loop {
        match body.frame().await {
            Some(Ok(f)) => seen.push_str(std::str::from_utf8(&f.into_data().unwrap()).unwrap()),
            Some(Err(e)) => break e,
            None => panic!("a failed stream ended cleanly: {seen}"),
        }
    };
    assert_eq!(err.to_string(), "connection reset");
    assert!(seen.starts_with(&format!("{ROLE}{HELLO}{HELLO}")));
    assert!(
        seen.ends_with(
            "data: {\"error\":{\"type\":\"upstream_error\",\"message\":\"connection reset\"}}\n\n"
        ),
        "{seen}"
    );
    assert!(!seen.contains("[DONE]"));
    assert_eq!(script.calls().len(), 1, "nothing committed is retried");

    // A stall after content with an idle timeout: the same, in Anthropic's format.
    let layer = FallbackLayer::new().with_policy(RetryPolicy {
        stream_idle_timeout: Some(Duration::from_secs(10)),
        ..RetryPolicy::default()
    });
    let script = Script::new([Reply::Stream(
        vec![
            (0, "event: message_start\ndata: {}\n\n"),
            (0, "event: content_block_delta\ndata: {}\n\n"),
        ],
        End::Stall,
    )]);
    let steps = r#"[{"provider":"anthropic","endpoint":"v1/messages","query":{}}]"#;
    let res = svc(layer, &script).oneshot(universal(steps)).await.unwrap();
    let start = Instant::now();
    let mut body = res.into_body();
    let mut seen = String::new();
    let err = loop {
        match body.frame().await {
            Some(Ok(f)) => seen.push_str(std::str::from_utf8(&f.into_data().unwrap()).unwrap()),
            Some(Err(e)) => break e,
            None => panic!("a stalled stream ended cleanly"),
        }
    };
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert!(err.is::<tower_ai_fallback::StreamIdle>());
    assert!(
        seen.ends_with("\n\n") && seen.contains("event: error\ndata: {\"type\":\"error\""),
        "{seen}"
    );
}

#[tokio::test]
async fn malformed_universal_requests_are_400_and_reach_nobody() {
    for body in [
        "",
        "{",
        "[]",
        "[{\"provider\":\"openai\"}]",
        "[{\"provider\":\"a b\",\"endpoint\":\"x\",\"query\":{}}]",
    ] {
        let script = Script::default();
        let res = svc(FallbackLayer::new(), &script)
            .oneshot(Request::post("/").body(Body::from(body)).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{body}");
        let v: serde_json::Value = serde_json::from_str(&text(res).await).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(script.calls().is_empty());
    }
}

#[tokio::test]
async fn plain_requests_pass_straight_through() {
    let script = Script::new([Reply::Status(503)]);
    let res = svc(FallbackLayer::new(), &script)
        .oneshot(
            Request::post("/openai/chat/completions")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().get("aigw-step").is_none());
    assert_eq!(script.calls().len(), 1);
}

#[tokio::test]
async fn routes_expand_by_model_and_others_pass() {
    let route = Route::new(vec![
        Target::new("openai").with_model("gpt-4o-mini"),
        Target::new("anthropic")
            .with_model("claude-haiku")
            .with_endpoint("v1/messages")
            .with_overrides(serde_json::from_str(r#"{"max_tokens":256}"#).unwrap()),
    ])
    .unwrap();
    let layer = FallbackLayer::new().with_route("cheap", route);
    let script = Script::new([Reply::Fail, Reply::Status(200), Reply::Status(200)]);
    let res = svc(layer.clone(), &script)
        .oneshot(
            Request::post("/openai/chat/completions")
                .body(Body::from(r#"{"model":"cheap","messages":[]}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.headers()["aigw-step"], "1");
    let calls = script.calls();
    assert_eq!(calls[1].path, "/anthropic/v1/messages");
    let v: serde_json::Value = serde_json::from_slice(&calls[1].body).unwrap();
    assert_eq!(
        (v["model"].as_str(), v["max_tokens"].as_u64()),
        (Some("claude-haiku"), Some(256))
    );

    // Another model: through as it is, once.
    let res = svc(layer, &script)
        .oneshot(
            Request::post("/openai/chat/completions")
                .body(Body::from(r#"{"model":"gpt-4o","messages":[]}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(res.headers().get("aigw-step").is_none());
    assert_eq!(
        &script.calls()[2].body[..],
        br#"{"model":"gpt-4o","messages":[]}"#
    );
}

#[tokio::test(start_paused = true)]
async fn a_retrying_layer_policy_covers_plain_requests() {
    let layer = FallbackLayer::new().with_policy(RetryPolicy {
        max_attempts: 3,
        retry_delay: Duration::from_millis(10),
        backoff: Backoff::Constant,
        ..RetryPolicy::default()
    });
    let script = Script::new([Reply::Status(503), Reply::Fail, Reply::Status(200)]);
    let res = svc(layer, &script)
        .oneshot(
            Request::post("/openai/chat/completions")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["aigw-step"], "0");
    assert_eq!(script.calls().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn held_start_up_events_are_bounded() {
    // A provider that sends content-free events without end: past 256 KiB held, the
    // stream is committed at once rather than held for the whole hold time.
    let pad = "x".repeat(100 * 1024);
    let big: &'static str = Box::leak(
        format!("data: {{\"choices\":[{{\"delta\":{{\"role\":\"assistant\",\"content\":\"\",\"pad\":\"{pad}\"}}}}]}}\n\n")
            .into_boxed_str(),
    );
    let layer = FallbackLayer::new().with_policy(RetryPolicy {
        stream_hold: Duration::from_secs(60),
        ..RetryPolicy::default()
    });
    let script = Script::new([Reply::Stream(
        vec![(0, big), (0, big), (0, big), (0, big)],
        End::Stall,
    )]);
    let start = Instant::now();
    let res = svc(layer, &script)
        .oneshot(universal(TWO_STEPS))
        .await
        .unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "committed without waiting for the hold"
    );
    assert_eq!(res.headers()["aigw-step"], "0");
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, big);
}
