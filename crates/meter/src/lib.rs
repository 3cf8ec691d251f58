//! Token and cost metering for every LLM request, streamed or not.
//!
//! [`MeterLayer`] watches each request and its response as they pass, without holding
//! anything back: frames go to the client untouched and at once while a tee reads the
//! usage the provider reports (JSON `usage`, the final SSE usage chunk, Anthropic's
//! `message_start` / `message_delta`, Gemini's `usageMetadata`, ...; the extractors live
//! in `tower-ai-core`). When the response ends, fails or is dropped, one [`Record`] goes
//! to the [`Recorder`]: provider, model, hashed key id, `aigw-metadata` tags, status,
//! outcome (complete, cancelled, failed), [`Usage`](tower_ai_core::Usage), cost from the
//! [`PriceTable`](tower_ai_core::PriceTable) (unknown when the model has no price, never
//! a silent zero), latency, time to first token, cache status and fallback step.
//!
//! - **Streams without usage**: an OpenAI-format stream whose client did not ask for
//!   `stream_options.include_usage` is asked for it (only at providers known to accept
//!   the field: see [`MeterLayer::with_stream_usage_providers`]; the body is otherwise
//!   kept byte for byte), and the extra usage chunk (and the `"usage":null` members it
//!   brings) is removed before the client sees the stream.
//! - **Bounded labels**: a provider not in the layer's registry is recorded as `unknown`,
//!   a model name over 256 bytes as none; recorders bound their label sets on top.
//! - **Below provider routing** it reads `aigw-metadata` and `aigw-request-id` from the
//!   [`GatewayHeaders`](tower_ai_core::GatewayHeaders) routing left, and the caller from
//!   its [`CallerId`](tower_ai_core::CallerId) (not the gateway's key that replaced it).
//! - **Dropped early**: a request whose response future is dropped before the head
//!   arrived is recorded `cancelled`, with no status.
//! - **Honest estimates**: where a provider reports nothing, or a client hangs up before
//!   the final figures, the tokens are counted with a real tokenizer (tiktoken's
//!   `o200k_base`) and the record says `estimated`.
//! - **Any position**: the layer reads the request body only when no layer before it
//!   did (an [`LlmRequest`](tower_ai_core::LlmRequest) in the extensions means one did),
//!   and works above or below provider routing.
//!
//! Built-in recorders: [`Aggregates`] (running totals in memory), `PrometheusRecorder`
//! (feature `prometheus`) and `SqliteLog` (feature `sqlite`, a persistent request log).
//! Combine them with a tuple: `(aggregates, (prometheus, log))`.
//!
//! # Examples
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_ai_core::Body;
//! use tower_ai_meter::{MeterLayer, Record};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let records = Arc::new(Mutex::new(Vec::<Record>::new()));
//! let sink = records.clone();
//! let provider = service_fn(|_req: Request<Body>| async {
//!     let body = r#"{"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#;
//!     let res = Response::builder()
//!         .header("content-type", "application/json")
//!         .body(Full::new(Bytes::from(body)))
//!         .unwrap();
//!     Ok::<_, std::convert::Infallible>(res)
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(MeterLayer::new(move |r: &Record| sink.lock().unwrap().push(r.clone())))
//!     .service(provider);
//!
//! let req = Request::post("/openai/chat/completions")
//!     .body(Body::from(r#"{"model":"gpt-4o-mini","messages":[]}"#))
//!     .unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! res.into_body().collect().await.unwrap();
//!
//! let r = records.lock().unwrap()[0].clone();
//! assert_eq!(r.model.as_deref(), Some("gpt-4o-mini"));
//! let usage = r.usage.unwrap();
//! assert_eq!((usage.input_tokens, usage.output_tokens), (12, 5));
//! assert!(r.cost_usd.unwrap() > 0.0);
//! # }
//! ```

mod body;
mod future;
mod inject;
mod layer;
mod memory;
mod metadata;
#[cfg(feature = "prometheus")]
mod prometheus;
mod record;
mod service;
#[cfg(feature = "sqlite")]
mod sqlite;
mod tracker;

pub use body::MeteredBody;
pub use future::ResponseFuture;
pub use layer::MeterLayer;
pub use memory::{Aggregates, Totals};
#[cfg(feature = "prometheus")]
pub use prometheus::PrometheusRecorder;
pub use record::{ErrorOrigin, Outcome, Record, Recorder, UsageSource};
pub use service::Meter;
#[cfg(feature = "sqlite")]
pub use sqlite::{LogEntry, LogQuery, ModelUsage, SqliteLog, UsageReport, UsageTotals};
pub use tower_ai_core::{estimate_tokens, load_tokenizer_in_background, warm_up_tokenizer};
