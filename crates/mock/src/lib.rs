//! A mock LLM provider for tests, benchmarks and demos.
//!
//! [`MockProvider`] is a real HTTP server (hyper, HTTP/1.1 and h2c, `TCP_NODELAY`) that
//! speaks the OpenAI and Anthropic wire formats, JSON and server-sent events, with
//! deterministic replies and token counts and with faults injected by configuration or per
//! request. It also ships as the binary `mock-provider`:
//!
//! ```text
//! mock-provider --listen 127.0.0.1:9001 [--latency-ms N] [--ttft-ms N] [--chunk-delay-ms N]
//!               [--chunks N] [--status N] [--retry-after N] [--hang] [--reset-after N]
//! ```
//!
//! # Routes
//!
//! Requests are routed by path **suffix**, so any prefix works (`/v1/chat/completions`,
//! `/openai/v1/chat/completions`, `/openai/deployments/x/chat/completions?api-version=..`):
//!
//! | method and path suffix        | answer                                                   |
//! |-------------------------------|----------------------------------------------------------|
//! | `GET /healthz`                | `200 ok` (not counted, not recorded)                     |
//! | `POST .../chat/completions`   | OpenAI chat completion, or its SSE stream (`"stream": true`) |
//! | `POST .../embeddings`         | OpenAI embeddings (`float` or `base64`, `dimensions`)    |
//! | `POST .../responses`          | OpenAI Responses API, or its SSE stream                  |
//! | `POST .../messages`           | Anthropic message, or its SSE stream                     |
//! | `POST .../messages/count_tokens` | Anthropic `{"input_tokens": N}`                       |
//! | `POST .../models/{m}:generateContent` | Gemini answer (`modelVersion` echoes `{m}`)        |
//! | `POST .../models/{m}:streamGenerateContent` | Gemini SSE stream (as with `?alt=sse`): one event per word, the last with `finishReason` and `usageMetadata` |
//! | `POST .../models/{m}:batchEmbedContents` / `:embedContent` | Gemini embeddings (same vectors as OpenAI's) |
//! | `GET .../models`              | a fixed model list (Anthropic's shape when the request has `anthropic-version`) |
//! | a known path, another method  | `405` with the format's JSON error and `allow`           |
//! | anything else                 | `404`, OpenAI-style JSON error (`code: unknown_url`)     |
//!
//! A POST body that is not a JSON object is a `400` with the format's error body:
//! `{"error":{"message":..,"type":"invalid_request_error","param":null,"code":null}}` on
//! OpenAI paths, `{"type":"error","error":{"type":"invalid_request_error","message":..}}`
//! on `/messages`. Bodies over 32 MiB get a `413`.
//!
//! # Determinism
//!
//! Tests can compute every number the mock returns:
//!
//! - **Input tokens** are the whitespace-separated words of the prompt, at least 1:
//!   - chat completions: `messages[].content`, a string or the `text` of parts of type
//!     `text`;
//!   - Anthropic messages: `system` (a string or text blocks) plus `messages[].content`
//!     (a string or blocks with `text`);
//!   - Responses API: `input` (a string, or items whose `content` is a string or parts
//!     with `text`) plus `instructions`;
//!   - embeddings: every `input` string, summed (a token array counts its length).
//! - **Output words** `n` (one output token each): the `chunks` fault if set; else the
//!   request's `max_completion_tokens` / `max_tokens` (chat), `max_output_tokens`
//!   (Responses) or `max_tokens` (Anthropic) when it is below 16, and then the reply
//!   counts as cut short (`finish_reason: "length"`, `stop_reason: "max_tokens"`,
//!   Responses `status: "incomplete"`); else 16. Never below 1.
//! - **Reply text** is [`reply_words(n)`](reply_words): `Hello from the mock provider.
//!   This reply is deterministic so tests can assert exact token counts.`, cycled, joined
//!   by single spaces.
//! - **Streams** send one content delta per word: the first word bare, each later one as
//!   `" " + word`, so the deltas concatenate to exactly the non-streamed text.
//! - **Ids** are `chatcmpl-mock-<k>`, `resp_mock_<k>` (message item `msg_mock_<k>`) and
//!   `msg_mock_<k>`, with `k` counting from 1 the requests that got past faults and JSON
//!   parsing (so the `k`th successful reply of a fresh mock); `created` is always
//!   `1700000000`. The request's `model` is echoed (default `mock-model`).
//! - **Embeddings** are unit vectors (8 dimensions unless `dimensions` says otherwise)
//!   derived from a hash of each input, so equal inputs get equal vectors.
//!
//! A stream is a sequence of events, each sent as its own body frame:
//!
//! | format           | events for `n` words                                                          |
//! |------------------|-------------------------------------------------------------------------------|
//! | chat completions | role chunk, `n` content chunks, finish chunk, usage chunk (only with `stream_options.include_usage`, and then every chunk carries `"usage": null`), `[DONE]`: `n + 3` (`n + 4`) |
//! | Responses API    | `response.created`, `.in_progress`, `.output_item.added`, `.content_part.added`, `n` × `.output_text.delta`, `.output_text.done`, `.content_part.done`, `.output_item.done`, `.completed` (or `.incomplete`): `n + 8` |
//! | Anthropic        | `message_start`, `content_block_start`, `ping`, `n` × `content_block_delta`, `content_block_stop`, `message_delta`, `message_stop`: `n + 6` |
//!
//! **Tool calls**: a request that offers tools (OpenAI `tools[].function`, Anthropic
//! `tools[]`, Gemini `functionDeclarations`), unless its tool choice is `none` or its
//! last message is a tool's result, is answered with a call of the named tool (else the
//! first one) with the arguments `{"location":"Paris","unit":"celsius"}` and 5 output
//! tokens: OpenAI `tool_calls` (`call_mock_<k>`, `finish_reason: "tool_calls"`; streamed
//! as the call's head then its arguments in two halves), Anthropic a `tool_use` block
//! (`toolu_mock_<k>`, `stop_reason: "tool_use"`; streamed as two `input_json_delta`s),
//! Gemini a `functionCall` part (one event when streamed). Errors on Gemini paths use
//! Google's shape `{"error":{"code","message","status"}}`.
//!
//! # Faults
//!
//! [`Faults`] in [`MockConfig`] apply to every request; these request headers (any case)
//! override them field by field. An invalid value is a `400` with the format's error body.
//!
//! | header                       | field         | effect |
//! |------------------------------|---------------|--------|
//! | `x-mock-latency-ms: N`       | `latency`     | wait before the response head |
//! | `x-mock-ttft-ms: N`          | `ttft`        | streams: wait before the first event (the head is already sent) |
//! | `x-mock-chunk-delay-ms: N`   | `chunk_delay` | streams: wait before every later event |
//! | `x-mock-chunks: N`           | `chunks`      | output words, overriding `max_tokens` |
//! | `x-mock-status: N`           | `status`      | answer with this status (400..=599) and the format's error body, `"message": "mock error"` |
//! | `x-mock-retry-after: N`      | `retry_after` | with `status`: send `retry-after: N` (no `retry-after` is sent unless asked for) |
//! | `x-mock-hang: true`          | `hang`        | never send a response head |
//! | `x-mock-reset-after: N`      | `reset_after` | streams: after `N` events (or after the last, if fewer) abort the connection; whole bodies: send the first half (nothing when `N` is 0), then abort |
//! | `x-mock-fail-first: ID`     | (header only) | the first request with this `ID` gets a 503; later ones (retries) are answered |
//!
//! Faults apply in this order: latency, hang, status, then the reply with its stream
//! timing and reset. Route, method and fault-header errors are answered first, without
//! delay. All delays use `tokio::time`, so they follow a paused test clock. Error statuses
//! map to fitting types: OpenAI `429` is `rate_limit_error` / `rate_limit_exceeded`,
//! `5xx` is `server_error`; Anthropic `429` is `rate_limit_error`, `503` and `529` are
//! `overloaded_error`, other `5xx` `api_error`.
//!
//! An aborted connection is what a client sees when an upstream dies mid-stream: over
//! HTTP/1.1 the chunked body ends without its terminating chunk; over HTTP/2 the stream
//! is reset.
//!
//! # Counters
//!
//! [`MockProvider::stats`] counts requests (every path but `/healthz`), connections,
//! injected errors, and how each request ended: `completed` (the whole body was handed to
//! hyper), `resets` (an injected abort) or `cancelled` (the client went away first:
//! during latency, a hang or mid-stream). Once nothing is in flight,
//! `requests == completed + cancelled + resets`. [`MockProvider::wait_for_requests`],
//! [`MockProvider::wait_for_cancelled`] and [`MockProvider::wait_for`] wake on every
//! change, without polling. Every request (method, path and query, headers, body) is
//! recorded; the last 1024 are kept.
//!
//! # Examples
//!
//! ```
//! use http_body_util::{BodyExt, Full};
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower_ai_mock::{MockProvider, reply_words};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let mock = MockProvider::start().await?;
//! let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
//!
//! let request = http::Request::post(format!("{}/v1/chat/completions", mock.url()))
//!     .header("content-type", "application/json")
//!     .body(Full::from(
//!         r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello"}],"max_tokens":5}"#,
//!     ))?;
//! let response = client.request(request).await?;
//! assert_eq!(response.status(), 200);
//!
//! let body = response.into_body().collect().await?.to_bytes();
//! let body: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!(body["model"], "gpt-4o");
//! assert_eq!(body["choices"][0]["message"]["content"], reply_words(5));
//! assert_eq!(body["choices"][0]["finish_reason"], "length");
//! assert_eq!(body["usage"]["prompt_tokens"], 2);
//! assert_eq!(body["usage"]["completion_tokens"], 5);
//!
//! // Every request is counted and recorded.
//! assert_eq!(mock.requests(), 1);
//! assert_eq!(mock.last_request().unwrap().uri.path(), "/v1/chat/completions");
//!
//! // A fault for one request: a 429 with `retry-after`.
//! let request = http::Request::post(format!("{}/v1/messages", mock.url()))
//!     .header("x-mock-status", "429")
//!     .header("x-mock-retry-after", "2")
//!     .body(Full::from("{}"))?;
//! let response = client.request(request).await?;
//! assert_eq!(response.status(), 429);
//! assert_eq!(response.headers()["retry-after"], "2");
//! assert_eq!(mock.stats().errors, 1);
//!
//! mock.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod anthropic;
mod body;
mod faults;
mod gemini;
mod openai;
mod server;
mod stats;
mod text;

pub use faults::{Faults, header};
pub use server::{MockConfig, MockProvider};
pub use stats::{RecordedRequest, Stats};
pub use text::reply_words;
