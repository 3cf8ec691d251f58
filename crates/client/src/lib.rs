//! The upstream client of tower-ai: the innermost service of a gateway stack.
//!
//! [`Client`] is a tower [`Service`](tower_service::Service) over hyper-util's pooled
//! client with rustls (the `ring` provider, Mozilla's roots from `webpki-roots`): HTTPS
//! and plain HTTP, HTTP/2 by ALPN and HTTP/1.1, connections reused across requests,
//! `TCP_NODELAY` on, a connect timeout and a timeout for the response head. The
//! response body is hyper's [`Incoming`](hyper::body::Incoming): frames reach the caller
//! the moment they arrive.
//!
//! Its errors are `BoxError`s; downcast to tell what failed:
//! [`ConnectError`] (the upstream could not be reached: a gateway answers 502) and
//! [`TimeoutError`] (no response head in time: 504). Anything else is another upstream
//! failure (502).
//!
//! # Examples
//!
//! ```
//! use http::Request;
//! use tower::ServiceExt;
//! use tower_ai_client::Client;
//! use tower_ai_core::Body;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mock = tower_ai_mock::MockProvider::start().await.unwrap();
//!
//! let client = Client::builder().build().unwrap();
//! let req = Request::post(format!("{}/v1/embeddings", mock.url()))
//!     .body(Body::from(r#"{"model":"m","input":"hello world"}"#))
//!     .unwrap();
//! let res = client.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! # }
//! ```

mod client;
mod error;
mod future;

pub use client::{Builder, Client};
pub use error::{ConnectError, TimeoutError};
pub use future::ResponseFuture;
