//! The prebuilt tower-ai proxy: an axum app that sends `/{provider}/...` (and the
//! universal endpoint `POST /`) to LLM providers through fallback, the meter, the rate limiter, the cache (when enabled), provider routing and the
//! pooled HTTPS [`Client`](tower_ai_client::Client), and serves `/healthz`, `/metrics`,
//! `/usage`, `/logs` and `DELETE /cache`.
//!
//! Run it with `cargo run --release --bin gateway` (in-memory defaults, listens on
//! `127.0.0.1:8787`), or `gateway --config gateway.toml --listen 0.0.0.0:8787`. See the
//! repository README for the configuration reference and how to point the OpenAI and
//! Anthropic SDKs at it.
//!
//! As a library it gives tests and embedders the same gateway: [`Config`], [`router`]
//! (or [`Gateway`], to build routers over one shared state), [`serve`],
//! [`serve_per_thread`] and [`RunningGateway`].
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), tower_ai_gateway::BoxError> {
//! use tower_ai_gateway::{Config, RunningGateway};
//! let mut config = Config::from_toml(r#"
//!     [providers.openai]
//!     base_url = "http://127.0.0.1:9001/v1"
//! "#)?;
//! config.listen = "127.0.0.1:0".parse()?;
//! let gw = RunningGateway::start(config).await?;
//! println!("OpenAI SDK base URL: {}/openai", gw.url());
//! gw.shutdown().await?;
//! # Ok(()) }
//! ```

mod app;
pub mod auth;
pub mod cache;
pub mod compat;
pub mod config;
pub mod fallback;
mod limits;
mod metering;
pub mod ratelimit;
mod serve;
mod threads;

pub use app::{Gateway, router};
pub use config::{Config, ConfigError};
pub use serve::{RunningGateway, bind, serve, shutdown_signal};
pub use threads::serve_per_thread;
pub use tower_ai_core::BoxError;
