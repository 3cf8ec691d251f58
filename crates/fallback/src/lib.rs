//! `FallbackLayer`: one provider's outage never takes the application down.
//!
//! [`FallbackLayer`] turns several providers into one reliable one. It sits above
//! provider routing (and, in any order, the cache, the meter and the rate limiter) and
//! tries a request's **steps** in order:
//!
//! - **The universal endpoint**: `POST /` (or the Cloudflare-style `/v1/{account}/{gateway}`)
//!   with a JSON array of `{provider, endpoint, headers, query}`; each step becomes
//!   `POST /{provider}/{endpoint}` with `query` as its body ([`parse_universal`]).
//! - **Configured routes**: a request whose `model` names a [`Route`] is expanded into its
//!   [`Target`]s (provider, model, body overrides, keys), by rank, load-balanced by weight
//!   within a rank.
//! - **Retries**: any request with `aigw-max-attempts`, `aigw-retry-delay`, `aigw-backoff`
//!   or `aigw-request-timeout`, or every request when the layer's own policy retries or
//!   times out ([`FallbackLayer::with_policy`]), is retried on its own provider.
//!
//! Anything else passes straight through: the layer costs a few header lookups.
//!
//! # Rules
//!
//! - **Triggers** ([`Triggers`]): connection errors, timeouts, 429 and 5xx move on (the
//!   set is configurable); any other status (400, 404, 422, ...) is the caller's error and
//!   comes back as it is, never retried. A target with its own keys rotates to the next
//!   key on 429 and benches a key for a cool-down on 401/402/403.
//! - **Time** ([`RetryPolicy`]): `max_attempts` per step with [`Backoff`] (constant, linear,
//!   exponential, optional full jitter) between them; an upstream `retry-after`
//!   (`retry-after-ms`, `x-ms-retry-after-ms`) is waited for when it fits the budget, and
//!   otherwise the next step is tried at once; a per-attempt timeout (for a stream: to
//!   its first byte); a total deadline over the whole chain.
//! - **Breakers** ([`BreakerConfig`]): when at least N of a target's attempts failed in a
//!   rolling window, and they were at least half of them, the target is skipped for
//!   a cool-down, then one probe is let through; its outcome closes or re-opens the
//!   circuit. With every step's circuit open the answer is a 503 with `retry-after`.
//! - **Streams**: nothing is committed to the client before the stream's first content:
//!   content-free start-up events (a role-only delta, `message_start`, `response.created`)
//!   are held for up to `stream_hold`, so an error event or a reset right after them
//!   still falls back. A stream that fails after it was committed (an upstream error, or
//!   no frame for `stream_idle_timeout`) ends with an error event in the provider's SSE
//!   format and then a body error: never a clean end.
//! - The response says which step served in `aigw-step` and the [`FallbackStep`]
//!   extension; with every step failed, the client gets the last failure (the provider's
//!   response, the inner service's error, or a 504 JSON for a timeout).
//! - The request body is buffered once and replayed; before each call the inner service
//!   is cloned and driven to readiness.
//!
//! Breaker states and counters are in [`FallbackHandle::prometheus`].
//!
//! [`FallbackStep`]: tower_ai_core::FallbackStep
//!
//! # Examples
//!
//! The first provider is down; the second answers, and `aigw-step` says so:
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_ai_core::Body;
//! use tower_ai_fallback::FallbackLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let providers = service_fn(|req: Request<Body>| async move {
//!     let status = if req.uri().path().starts_with("/openai/") { 503 } else { 200 };
//!     let mut res = Response::new(Body::from(req.uri().path().to_owned()));
//!     *res.status_mut() = StatusCode::from_u16(status).unwrap();
//!     Ok::<_, std::convert::Infallible>(res)
//! });
//! let svc = ServiceBuilder::new().layer(FallbackLayer::new()).service(providers);
//!
//! let steps = r#"[
//!   {"provider": "openai", "endpoint": "chat/completions", "query": {"model": "gpt-4o-mini"}},
//!   {"provider": "groq", "endpoint": "chat/completions", "query": {"model": "llama-3.3-70b"}}
//! ]"#;
//! let res = svc.oneshot(Request::post("/").body(Body::from(steps)).unwrap()).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.headers()["aigw-step"], "1");
//! # }
//! ```

mod body;
mod breaker;
mod future;
mod keys;
mod layer;
mod policy;
mod route;
mod run;
mod service;
mod step;

pub use body::{ResponseBody, StreamIdle};
pub use breaker::{BreakerConfig, BreakerState};
pub use future::ResponseFuture;
pub use layer::{FallbackHandle, FallbackLayer};
pub use policy::{
    Backoff, MAX_ATTEMPTS, MAX_REQUEST_TIMEOUT, MAX_RETRY_DELAY, RetryPolicy, Triggers,
};
pub use route::{Route, Target};
pub use service::Fallback;
pub use step::{MAX_STEPS, Step, parse_universal};
