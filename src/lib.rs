//! tower-ai: an AI gateway built as tower middleware.
//!
//! A proxy layer between application code and LLM providers (OpenAI, Anthropic, Workers AI,
//! Azure OpenAI, Gemini, Groq, Mistral, DeepSeek, OpenRouter, any OpenAI-compatible
//! server). This facade re-exports each crate behind a feature, all on by default:
//!
//! | module | crate | feature |
//! |---|---|---|
//! | [`core`] | `tower-ai-core`: providers, `LlmRequest`, bodies, SSE parser and tee, errors | always |
//! | [`provider_route`] | `tower-ai-provider-route`: `ProviderRouteLayer` | `provider-route` |
//! | [`meter`] | `tower-ai-meter`: `MeterLayer` and its recorders | `meter` |
//! | [`ratelimit`] | `tower-ai-ratelimit`: `RateLimitLayer`, memory and Redis stores | `ratelimit` |
//! | [`cache`] | `tower-ai-cache`: `CacheLayer`, memory and Redis stores | `cache` |
//! | [`fallback`] | `tower-ai-fallback`: `FallbackLayer`: universal endpoint, routes, retries, breakers | `fallback` |
//! | [`compat`] | `tower-ai-compat`: `CompatLayer`, one API (OpenAI's or Anthropic's) for every provider | `compat` |
//! | [`client`] | `tower-ai-client`: the pooled HTTPS upstream client | `client` |
//! | [`auth`] | `tower-ai-auth`: `AuthLayer`, gateway tokens and virtual keys | `auth` |
//!
//! # Examples
//!
//! Routing in front of any inner service (here a stand-in for the upstream client):
//!
//! ```
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_ai::core::Providers;
//! use tower_ai::provider_route::ProviderRouteLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(ProviderRouteLayer::new(Providers::builtin()))
//!     .service(service_fn(|req: Request<String>| async move {
//!         Ok::<_, std::convert::Infallible>(Response::new(req.uri().to_string()))
//!     }));
//! let res = svc
//!     .oneshot(Request::post("/groq/chat/completions").body(String::new()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(res.status(), 200);
//! # }
//! ```

pub use tower_ai_core as core;

#[cfg(feature = "client")]
pub use tower_ai_client as client;

#[cfg(feature = "meter")]
pub use tower_ai_meter as meter;

#[cfg(feature = "ratelimit")]
pub use tower_ai_ratelimit as ratelimit;

#[cfg(feature = "cache")]
pub use tower_ai_cache as cache;

#[cfg(feature = "fallback")]
pub use tower_ai_fallback as fallback;

#[cfg(feature = "provider-route")]
pub use tower_ai_provider_route as provider_route;

#[cfg(feature = "auth")]
pub use tower_ai_auth as auth;

#[cfg(feature = "compat")]
pub use tower_ai_compat as compat;
