//! One API for every provider: OpenAI chat completions and Anthropic messages in,
//! whichever provider `model` names out.
//!
//! [`CompatLayer`] serves, also under the Cloudflare-style prefix
//! `/v1/{account}/{gateway}`:
//!
//! | path | the client speaks | `model` |
//! |---|---|---|
//! | `POST /compat/chat/completions` | OpenAI chat completions | `provider/model`, e.g. `anthropic/claude-sonnet-4-5` |
//! | `POST /compat/v1/messages` | Anthropic messages (Claude Code, the Anthropic SDKs) | `provider/model`, e.g. `openai/gpt-4o-mini` |
//! | `POST /compat/embeddings` | OpenAI embeddings | `provider/model` (OpenAI-format providers, Gemini) |
//!
//! It looks the provider up in the [`Providers`](tower_ai_core::Providers) registry and
//! rewrites the request to the provider's native path (`/anthropic/v1/messages`,
//! `/google-ai-studio/v1beta/models/{m}:generateContent` or
//! `:streamGenerateContent?alt=sse`, `/openai/chat/completions`, ...) with a translated
//! body, for the provider routing layer below it. When the provider already speaks the
//! client's dialect only `model` is rewritten (the rest of the bytes untouched) and the
//! answer passes through as it came. Any other path passes through untouched.
//!
//! - **Translation** covers system prompts, multi-turn messages, images (URL or
//!   base64), tools (definitions, calls, results), `tool_choice`, stop sequences,
//!   `max_tokens`, temperature, `top_p`, JSON mode / `response_format` (Gemini),
//!   finish reasons and usage. The translations are pure functions over the serde types
//!   of the three wire formats ([`openai`], [`anthropic`], [`gemini`]), in [`request`],
//!   [`response`] and [`stream`]; an Anthropic client served by Gemini goes through
//!   OpenAI's dialect.
//! - **Streams** are translated event by event as they arrive (a
//!   [`StreamTranslator`](stream::StreamTranslator) per direction fed by core's
//!   [`SseParser`](tower_ai_core::SseParser)), never buffered to the end. A stream that
//!   ends without its terminal event ends the translated one with an error, never with
//!   `[DONE]` / `message_stop`.
//! - **Errors** of the provider come back in the client's dialect with the provider's
//!   status; a parameter the target has no equivalent for is a `400` naming it, unless
//!   [`CompatLayer::with_drop_unsupported`] says to drop it.
//! - **Usage**: a translated answer's native usage is read as it passes (a stream's
//!   events are parsed once, for translation and usage alike) and left in the
//!   [`UsageSlot`](tower_ai_core::UsageSlot), so a meter or rate limiter above records
//!   it in the served provider's terms; core's
//!   [`LlmRequest`](tower_ai_core::LlmRequest) knows a `/compat` request's provider and
//!   model from its `model`, so layers above key, price and label it by the provider
//!   that serves it. A cache above keys on the request as the client sent it.
//!
//! The client's credential is moved into the header the target reads (`x-api-key` for
//! Anthropic, `x-goog-api-key` for Gemini); with a key held by the gateway, provider
//! routing replaces it anyway.
//!
//! # Examples
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_ai_compat::CompatLayer;
//! use tower_ai_core::Body;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Anthropic, as the provider routing layer below would reach it.
//! let anthropic = service_fn(|req: Request<Body>| async move {
//!     assert_eq!(req.uri().path(), "/anthropic/v1/messages");
//!     let body = req.into_body().collect_limited(1 << 20).await.unwrap();
//!     let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
//!     assert_eq!(sent["model"], "claude-sonnet-4-5");
//!     assert_eq!(sent["system"], "Be brief.");
//!     let answer = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5",
//!         "content":[{"type":"text","text":"Hi!"}],"stop_reason":"end_turn",
//!         "usage":{"input_tokens":9,"output_tokens":2}}"#;
//!     let res = Response::builder()
//!         .header("content-type", "application/json")
//!         .body(Full::new(Bytes::from_static(answer.as_bytes())))
//!         .unwrap();
//!     Ok::<_, std::convert::Infallible>(res)
//! });
//!
//! let svc = ServiceBuilder::new().layer(CompatLayer::new()).service(anthropic);
//! let req = Request::post("/compat/chat/completions")
//!     .body(Full::new(Bytes::from_static(br#"{"model":"anthropic/claude-sonnet-4-5",
//!         "messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello"}]}"#)))
//!     .unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(answer["object"], "chat.completion");
//! assert_eq!(answer["choices"][0]["message"]["content"], "Hi!");
//! assert_eq!(answer["choices"][0]["finish_reason"], "stop");
//! assert_eq!(answer["usage"]["total_tokens"], 11);
//! # }
//! ```

pub mod anthropic;
mod body;
mod error;
mod future;
pub mod gemini;
mod layer;
pub mod openai;
mod plan;
pub mod request;
pub mod response;
mod service;
pub mod stream;

pub use body::{ResponseBody, TruncatedStream, UntranslatableAnswer};
pub use error::{TranslateError, error_body, translate_error};
pub use future::ResponseFuture;
pub use layer::{CompatLayer, DEFAULT_MAX_BODY_BYTES};
pub use plan::{COMPAT_SEGMENT, Endpoint};
pub use request::Options;
pub use service::Compat;

/// The dialect a compat endpoint's clients speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI chat completions and embeddings.
    OpenAi,
    /// Anthropic messages.
    Anthropic,
}
