//! What every tower-ai layer shares, and no layer logic.
//!
//! - [`Providers`] / [`Provider`]: the registry of LLM providers (name, base URL, auth
//!   style, [`WireFormat`]), with the built-in ones and custom OpenAI-compatible ones.
//! - [`ProviderPath`]: the gateway's path conventions, `/{provider}/{rest}` and
//!   Cloudflare's `/v1/{account}/{gateway}/{provider}/{rest}`.
//! - [`LlmRequest`]: provider, [`Operation`], model, stream flag and body, parsed once and
//!   kept in request extensions so that no later layer parses the body again.
//!   [`ResolvedRoute`] says where provider routing sent a request.
//! - [`Body`]: the one request body type layers hand inward: buffered bytes when a layer
//!   had to read them, the client's stream otherwise; never re-buffered, never boxed twice.
//! - [`SseParser`]: an incremental server-sent-events parser, and [`ObservedBody`]: the
//!   tee, a body wrapper that forwards every frame untouched and at once while an
//!   [`Observer`] (e.g. an [`SseObserver`]) watches it, told exactly once how it ended.
//! - [`headers`]: the `aigw-` header names with their `cf-aig-` aliases; layers read them
//!   with [`AigwHeader::get_in`](headers::AigwHeader::get_in), which also finds those a
//!   layer in front removed and left in [`GatewayHeaders`].
//! - Extensions layers leave for each other: [`ResolvedRoute`], [`GatewayHeaders`] and
//!   [`CallerId`], [`ProviderKeys`] and [`CallerTags`] on requests; [`CacheStatus`], [`FallbackStep`], [`KnownUsage`],
//!   [`UsageSlot`], [`ServedRequest`] on responses.
//! - [`ErrorResponse`]: the JSON error every layer answers with, and [`LayerBody`]: the
//!   response body of a layer that passes the inner body on or answers itself.
//!
//! # Examples
//!
//! Teeing a stream: the client gets every frame as it was, the handler sees each event.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use tower_ai_core::{ObservedBody, SseEvent, SseHandler, SseObserver, StreamEnd};
//!
//! #[derive(Default)]
//! struct CountDeltas(usize);
//!
//! impl SseHandler for CountDeltas {
//!     fn on_event(&mut self, event: SseEvent<'_>) {
//!         if !event.is_done() {
//!             self.0 += 1;
//!         }
//!     }
//!     fn on_end(self, end: StreamEnd, partial: bool) {
//!         assert_eq!((self.0, end, partial), (2, StreamEnd::Complete, false));
//!     }
//! }
//!
//! # tokio_test_block_on(async {
//! let upstream = Full::new(Bytes::from_static(b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n"));
//! let body = ObservedBody::new(upstream, SseObserver::new(CountDeltas::default()));
//! let bytes = body.collect().await.unwrap().to_bytes();
//! assert!(bytes.ends_with(b"[DONE]\n\n"));
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

mod body;
mod error;
mod ext;
pub mod headers;
mod layer_body;
mod observe;
mod path;
mod price;
mod provider;
mod request;
mod route;
mod secret;
mod sse;
#[cfg(test)]
mod test_util;
mod usage;

pub use body::{Body, BoxError, ReadBody};
pub use error::ErrorResponse;
pub use ext::{
    CacheStatus, CallerId, CallerTags, ClientAddr, FallbackStep, GatewayGenerated, GatewayHeaders,
    KnownUsage, ProviderKeys, ServedRequest, UsageSlot,
};
pub use layer_body::LayerBody;
pub use observe::{ObservedBody, Observer, SseHandler, SseObserver, StreamEnd};
pub use path::ProviderPath;
pub use price::{InvalidPriceTable, Price, PriceTable};
pub use provider::{AuthStyle, BaseUrl, InvalidProvider, Provider, Providers, WireFormat};
pub use request::{LlmRequest, Operation};
pub use route::ResolvedRoute;
pub use secret::{credential, key_id};
pub use sse::{DEFAULT_MAX_EVENT_LEN, SseEvent, SseParser};
pub use usage::{
    FinalUsage, PromptSize, ResponseUsage, StreamUsage, Usage, UsageSource, estimate_tokens,
    load_tokenizer_in_background, prompt_size, prompt_text, usage_from_json, warm_up_tokenizer,
};
