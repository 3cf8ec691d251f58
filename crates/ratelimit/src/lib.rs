//! Rate limits for LLM traffic: requests, tokens, spend and concurrency, per key,
//! exact under concurrency, in memory or shared by every gateway replica through Redis.
//!
//! [`RateLimitLayer`] applies every configured [`Limit`] to each request:
//!
//! - **Keys** ([`KeyPart`]): the whole gateway, the caller's credential (hashed), any
//!   request header (hashed), the client IP (from the connection, via
//!   [`ClientAddr`](tower_ai_core::ClientAddr)), an `aigw-metadata` field, the model,
//!   the provider, or a combination. Several limits can apply; the strictest decides.
//! - **Quantities** ([`Quantity`]): requests per period; tokens per period (reserved on
//!   an estimate, prompt bytes / 4 + `max_tokens`, before the call, then trued up with the
//!   real usage when the response or stream ends, given back when it fails); spend in USD
//!   per period (priced with the [`PriceTable`](tower_ai_core::PriceTable) or a price
//!   function of your own, reserved and trued up the same way; a model with no price
//!   counts nothing against a spend limit); requests in flight (a stream holds its slot until it ends).
//! - **Algorithms** ([`Algorithm`]): fixed window, sliding window, GCRA.
//! - **Answers**: over a limit, a `429` with an OpenAI-shaped JSON error
//!   (`rate_limit_exceeded`), `retry-after` (and `retry-after-ms`), the IETF
//!   `ratelimit-policy` / `ratelimit` headers and OpenAI's `x-ratelimit-limit-requests`,
//!   `x-ratelimit-remaining-requests`, `x-ratelimit-reset-requests` (and `-tokens`);
//!   admitted responses carry them too.
//! - **Stores** ([`RateLimitStore`]): [`MemoryStore`] (sharded, exact, idle buckets
//!   swept so memory stays bounded), and `RedisStore` (feature `redis`: one atomic script
//!   per request for all of its limits, one round trip, so every replica enforces one
//!   shared limit). A request's limits are taken all or none: one that is refused leaves
//!   the others' buckets as they were. When a store cannot answer, the layer fails open
//!   (default) or closed, and warns.
//!
//! Usage for the true-up comes from the [`UsageSlot`](tower_ai_core::UsageSlot) of a
//! layer below when there is one, else the layer reads the response itself and leaves
//! the slot for the layers above: a stream is parsed once.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_ai_core::Body;
//! use tower_ai_ratelimit::{KeyPart, Limit, MemoryStore, RateLimitLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let limit = Limit::requests("per-key", vec![KeyPart::ApiKey], 2, Duration::from_secs(60)).unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(MemoryStore::new()).with_limit(limit))
//!     .service(service_fn(|_req: Request<Body>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Body::from("ok")))
//!     }));
//!
//! let call = || {
//!     Request::post("/openai/chat/completions")
//!         .header("authorization", "Bearer sk-app-1")
//!         .body(Body::from("{}"))
//!         .unwrap()
//! };
//! assert_eq!(svc.clone().oneshot(call()).await.unwrap().status(), 200);
//! assert_eq!(svc.clone().oneshot(call()).await.unwrap().status(), 200);
//! let refused = svc.clone().oneshot(call()).await.unwrap();
//! assert_eq!(refused.status(), 429);
//! assert_eq!(refused.headers()["x-ratelimit-remaining-requests"], "0");
//! assert!(refused.headers().contains_key("retry-after"));
//! # }
//! ```

mod body;
mod decide;
mod future;
mod headers;
mod key;
mod layer;
mod limit;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod service;
mod settle;
mod store;

pub use body::RateLimitBody;
pub use future::ResponseFuture;
pub use layer::{PriceFn, RateLimitLayer};
pub use limit::{Algorithm, InvalidLimit, KeyPart, Limit, Quantity};
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;
pub use service::RateLimit;
pub use store::{Ask, BoxFuture, Change, Decision, Kind, RateLimitStore, Spec, StoreError};
