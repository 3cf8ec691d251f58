//! Provider routing: `/{provider}/{path}` to the provider's upstream, with the right auth.
//!
//! [`ProviderRouteLayer`] rewrites each request for its provider and hands it to the inner
//! service (normally the upstream [client]):
//!
//! - `/{provider}/{path}` and Cloudflare's `/v1/{account}/{gateway}/{provider}/{path}` go to
//!   `{base_url(provider)}/{path}`, query kept; the URI becomes absolute and `Host` is
//!   left to the client to set from it. Azure OpenAI's first segment names the resource
//!   (`/azure-openai/{resource}/{deployment}/chat/completions`); Workers AI's
//!   `{account_id}` comes from the Cloudflare-style path or the configured account, and a
//!   model path (`/workers-ai/@cf/...`) goes to its `run` endpoint.
//! - Auth, both ways: by default the client's own key passes through untouched. When the
//!   gateway holds a key for the provider ([`ProviderRouteLayer::with_key`]), every
//!   credential header the client sent is removed and the gateway's key is put in the
//!   provider's own header (`authorization: Bearer`, Anthropic's `x-api-key`, Azure's
//!   `api-key`, Gemini's `x-goog-api-key`), marked sensitive so it is never logged.
//! - Provider defaults: Anthropic gets `anthropic-version` when the client sent none.
//! - Hop-by-hop headers are dropped both ways, as a proxy must; so are the gateway's own
//!   `aigw-` / `cf-aig-` headers, and `accept-encoding` (so that layers can read the
//!   response: compress towards the client with tower-http if you want).
//! - Into the request extensions go a [`ResolvedRoute`](tower_ai_core::ResolvedRoute),
//!   the caller's [`CallerId`](tower_ai_core::CallerId) (computed before credentials are
//!   removed or replaced), and the `aigw-` headers it removed as
//!   [`GatewayHeaders`](tower_ai_core::GatewayHeaders), so that layers below it (a meter,
//!   a rate limiter) still see `aigw-metadata`, `aigw-request-id` and who is calling.
//! - Azure OpenAI: when the gateway holds its key, the provider must list the resources
//!   requests may name ([`Provider::with_allowed_resources`](tower_ai_core::Provider::with_allowed_resources));
//!   another resource is answered `400`, so the key never goes to a host a client chose.
//!
//! A path that names no known provider, or that tries to climb out of the base URL (a
//! segment that decodes to `.` or `..`, an encoded `/` or `\`, an empty segment), is
//! answered `400` with the JSON error body and never reaches the inner service.
//! The request body is never read: it streams through as it came.
//!
//! [client]: https://docs.rs/tower-ai-client
//!
//! # Examples
//!
//! ```
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_ai_core::{Providers, ResolvedRoute};
//! use tower_ai_provider_route::ProviderRouteLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let upstream = service_fn(|req: Request<String>| async move {
//!     // The inner service sees the upstream URI and the injected key.
//!     assert_eq!(req.uri(), "https://api.anthropic.com/v1/messages");
//!     assert_eq!(req.headers()["x-api-key"], "sk-ant-gateway");
//!     assert_eq!(req.headers()["anthropic-version"], "2023-06-01");
//!     assert_eq!(&*req.extensions().get::<ResolvedRoute>().unwrap().provider, "anthropic");
//!     Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
//! });
//!
//! let svc = ServiceBuilder::new()
//!     .layer(ProviderRouteLayer::new(Providers::builtin()).with_key("anthropic", "sk-ant-gateway").unwrap())
//!     .service(upstream);
//!
//! let req = Request::post("/anthropic/v1/messages").body(String::new()).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! # }
//! ```

mod body;
mod future;
mod layer;
mod service;
mod upstream;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use layer::ProviderRouteLayer;
pub use service::ProviderRoute;
