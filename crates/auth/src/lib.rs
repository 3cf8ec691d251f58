//! Gateway authentication: only callers with a gateway token get through, and each
//! token is a *virtual key* with rights of its own.
//!
//! [`AuthLayer`] goes in front of everything else (outermost). For each request it:
//!
//! - finds the gateway token: `aigw-authorization: Bearer <token>` (or Cloudflare's
//!   `cf-aig-authorization`), else the provider credential header an SDK sends
//!   (`authorization`, `x-api-key`, `api-key`, `x-goog-api-key`) for apps that only know
//!   one key: the gateway then sends the provider key itself;
//! - looks it up in the [`KeyStore`], which holds only SHA-256 hashes of tokens
//!   ([`TokenHash`]), and compares the whole hash in constant time;
//! - answers a missing or unknown token `401` and a provider or model the key may not
//!   use `403`, both as the JSON [`ErrorResponse`](tower_ai_core::ErrorResponse) marked
//!   gateway-generated, before anything below runs: no provider, cache entry or
//!   rate-limit bucket is touched;
//! - removes the token from the request (it never reaches a provider or any layer's
//!   keys) and leaves in the extensions who the caller is
//!   ([`CallerId`](tower_ai_core::CallerId), the key's id: the rate limiter's `api_key`
//!   buckets and the cache's per-credential scope use it, so each virtual key has its
//!   own), the provider keys the gateway holds for it
//!   ([`ProviderKeys`](tower_ai_core::ProviderKeys), which provider routing sends in
//!   place of any credential the client sent) and its tags
//!   ([`CallerTags`](tower_ai_core::CallerTags), which the meter records).
//!
//! A key's own limits and budget are rate-limit limits restricted to its id
//! (`Limit::for_caller` in `tower-ai-ratelimit`). New tokens come from
//! [`Token::generate`] (256 bits from the operating system's CSPRNG); only
//! [`Token::hash`] is kept.
//!
//! Caveats: a key that restricts models has its request body read (up to
//! [`AuthLayer::with_max_body_bytes`]) to find the model; the parsed
//! [`LlmRequest`](tower_ai_core::LlmRequest) is left for the layers below, so the body
//! is still parsed once. A key that restricts providers or models may only call
//! `/{provider}/...` paths.
//!
//! # Examples
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_ai_auth::{AuthLayer, KeyStore, Token, VirtualKey};
//! use tower_ai_core::{Body, CallerId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Made once (`gateway keys create`), shown to its owner, never stored.
//! let token = Token::generate().unwrap();
//! let store = KeyStore::new()
//!     .with_key(VirtualKey::new("search-team", token.hash()).with_providers(["openai"]))
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(AuthLayer::new(store))
//!     .service(service_fn(|req: Request<Body>| async move {
//!         // The token is gone; who the caller is stays.
//!         assert!(!req.headers().contains_key("aigw-authorization"));
//!         assert!(req.extensions().get::<CallerId>().is_some());
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("ok"))))
//!     }));
//!
//! let call = |path: &str, token: Option<&str>| {
//!     let mut req = Request::post(path);
//!     if let Some(t) = token {
//!         req = req.header("aigw-authorization", format!("Bearer {t}"));
//!     }
//!     svc.clone().oneshot(req.body(Full::new(Bytes::new())).unwrap())
//! };
//! let ok = call("/openai/chat/completions", Some(token.expose())).await.unwrap();
//! assert_eq!(ok.status(), StatusCode::OK);
//! let missing = call("/openai/chat/completions", None).await.unwrap();
//! assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
//! let wrong = call("/openai/chat/completions", Some("aigw_guess")).await.unwrap();
//! assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
//! let other = call("/anthropic/v1/messages", Some(token.expose())).await.unwrap();
//! assert_eq!(other.status(), StatusCode::FORBIDDEN);
//! # }
//! ```

mod body;
mod future;
mod key;
mod layer;
mod service;
mod token;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use getrandom::Error as RandomError;
pub use key::{DuplicateKey, KeyStore, TokenSource, VirtualKey, find_token};
pub use layer::AuthLayer;
pub use service::Auth;
pub use token::{InvalidTokenHash, TOKEN_PREFIX, Token, TokenHash};
