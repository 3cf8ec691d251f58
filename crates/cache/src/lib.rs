//! Response caching for LLM APIs: exact-match, streaming, coalescing, shareable.
//!
//! [`CacheLayer`] answers a request that was answered before from a [`CacheStore`]
//! instead of the provider, and goes past what hosted gateways offer:
//!
//! - **Streams are cached and replayed.** On a miss the response is teed: every frame
//!   goes to the client untouched and at once while the layer keeps a copy (bounded by
//!   the entry size), stored once the stream's terminal event has arrived (`[DONE]`,
//!   `message_stop`, `response.completed`, ...). A hit on a streamed request replays
//!   the stored SSE bytes with the same content type, so client code needs no second
//!   path. A streamed and a whole request for the same prompt are separate entries.
//! - **Identical requests in flight are coalesced** (single flight): while one request
//!   for a key is upstream, identical ones wait for it and then share its response,
//!   following a live stream from its first frame. If the leader fails (an error, a
//!   non-2xx, a response that may not be stored, its client gone before the head), one
//!   waiter becomes the next leader; no waiter waits past
//!   [`with_wait_timeout`](CacheLayer::with_wait_timeout), then it goes upstream itself.
//!   Once a shared response streams, whichever reader has caught up polls the upstream
//!   body, so one client hanging up does not cut the others' streams.
//! - **Stores**: [`MemoryStore`] (bounded by bytes, S3-FIFO eviction, the default of
//!   [`CacheLayer::memory`]); `RedisStore` (feature `redis`) so that replicas share one
//!   cache; `()` to coalesce without storing; or your own [`CacheStore`]. A store that is
//!   down or slow is a miss and a warning, never a failed request.
//!
//! Only complete 2xx responses are stored: never an error, a stream that ended early,
//! failed or was cancelled, a response with `cache-control: no-store`, or one larger
//! than [`with_max_entry_bytes`](CacheLayer::with_max_entry_bytes). Only `POST`
//! requests to a provider path are cached.
//!
//! # The key
//!
//! A SHA-256 ([`CacheKey`]) of the scope, the provider, the provider-relative path,
//! whether the answer is a stream, the request body in canonical form
//! ([`canonical_json`]: key order and whitespace do not matter, `stream` and
//! `stream_options` are left out; a body that is not JSON counts as its raw bytes) and
//! the values of the request headers that change the answer (`anthropic-version`,
//! `anthropic-beta`, `openai-organization`, `openai-project`; see
//! [`with_key_headers`](CacheLayer::with_key_headers)). `aigw-metadata` tags and other
//! headers do not split the cache. The canonical form exists only inside the key: the
//! body sent upstream is the client's own bytes.
//!
//! The scope ([`CacheScope`]) is by default the caller's credential (its gateway token
//! `aigw-authorization`, else the provider key it sent), so one tenant never receives
//! another's answer; only a hash of it enters the key, which is itself a hash.
//! [`CacheScope::Shared`] opts into one cache for the whole gateway.
//!
//! # Request controls
//!
//! - `aigw-cache-ttl: SECONDS`: this entry's TTL (0 to one year; 0 skips the cache;
//!   anything else is a 400).
//! - `aigw-skip-cache: true`: neither read nor write the cache.
//! - `aigw-cache-key: KEY`: replaces the computed key, within the caller's scope.
//!
//! Cloudflare's `cf-aig-` spellings are accepted too. Every response that passed the
//! layer carries `aigw-cache-status: HIT | MISS | BYPASS | EXPIRED` and the same
//! [`CacheStatus`](tower_ai_core::CacheStatus) in its extensions; cached responses
//! carry their [`CacheKey`] too, and hits the stored response's usage as
//! [`KnownUsage`](tower_ai_core::KnownUsage), so the meter records what a hit saved.
//! A miss being stored (a JSON answer of known length, or a stream) is read for usage
//! once, by the cache, which leaves the result in a
//! [`UsageSlot`](tower_ai_core::UsageSlot) for the meter and the rate limiter above.
//! A request that waited for an identical one in flight is a `HIT`: it did not go
//! upstream.
//!
//! # Position
//!
//! Put the layer above provider routing: it reads the `aigw-` headers and the client's
//! credential, which routing removes. It reads the request body only when no layer
//! before it did (an [`LlmRequest`](tower_ai_core::LlmRequest) in the extensions says
//! one did), up to [`with_max_body_bytes`](CacheLayer::with_max_body_bytes) (413 past
//! it). [`CacheLayer::handle`] gives a [`CacheHandle`] to purge one key or everything.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_ai_cache::CacheLayer;
//! use tower_ai_core::Body;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let counter = calls.clone();
//! let provider = service_fn(move |_req: Request<Body>| {
//!     counter.fetch_add(1, Ordering::SeqCst);
//!     async {
//!         let body = r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5}}"#;
//!         let res = Response::builder()
//!             .header("content-type", "application/json")
//!             .body(Full::new(Bytes::from(body)))
//!             .unwrap();
//!         Ok::<_, std::convert::Infallible>(res)
//!     }
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(CacheLayer::memory(64 * 1024 * 1024))
//!     .service(provider);
//!
//! let ask = |body: &'static str| {
//!     Request::post("/openai/chat/completions")
//!         .header("authorization", "Bearer sk-my-key")
//!         .body(Body::from(body))
//!         .unwrap()
//! };
//! let first = svc.clone().oneshot(ask(r#"{"model":"gpt-4o-mini","messages":[]}"#)).await.unwrap();
//! assert_eq!(first.headers()["aigw-cache-status"], "MISS");
//! let first = first.into_body().collect().await.unwrap().to_bytes();
//!
//! // Same request, other key order and spacing: served from the cache.
//! let again = svc.clone().oneshot(ask(r#"{ "messages": [], "model": "gpt-4o-mini" }"#)).await.unwrap();
//! assert_eq!(again.headers()["aigw-cache-status"], "HIT");
//! assert_eq!(again.into_body().collect().await.unwrap().to_bytes(), first);
//! assert_eq!(calls.load(Ordering::SeqCst), 1);
//! # }
//! ```

mod body;
mod control;
mod flight;
mod future;
mod key;
mod layer;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod service;
mod store;

pub use body::{CachedBody, StreamError};
pub use future::ResponseFuture;
#[doc(hidden)]
pub use key::bench_request_key;
pub use key::{CacheKey, canonical_json};
pub use layer::{CacheHandle, CacheLayer, CacheScope};
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::{RedisStore, RedisStoreError};
pub use service::Cache;
pub use store::{CacheStore, Entry, Lookup, StoreFuture};
