//! tower-ai's layers composed into your own axum app, mixed with tower-http middleware.
//!
//! The app serves its own routes and mounts an LLM proxy under `/llm`:
//! `/llm/{provider}/...` goes through tower-http's tracing and timeout, tower-ai's
//! provider routing, and the upstream client. Client errors become JSON through axum's
//! `HandleErrorLayer`.
//!
//! Run it against the mock provider:
//!
//! ```text
//! cargo run --bin mock-provider -- --listen 127.0.0.1:9001 &
//! UPSTREAM=http://127.0.0.1:9001 cargo run -p example-axum-app
//! curl -s localhost:3000/llm/openai/chat/completions -H 'content-type: application/json' \
//!      -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
//! ```
//!
//! Without `UPSTREAM` it talks to the real providers with the key your client sends.

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use http::{HeaderName, HeaderValue, StatusCode};
use tower::ServiceBuilder;
use tower_ai_client::{Client, ConnectError, TimeoutError};
use tower_ai_core::{BoxError, ErrorResponse, Providers};
use tower_ai_provider_route::ProviderRouteLayer;
use tower_http::set_header::SetRequestHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// The app: its own routes plus the LLM proxy under `/llm`.
fn app(providers: Providers, timeout: Duration) -> Result<Router, BoxError> {
    let client = Client::builder().body::<axum::body::Body>().build()?;
    let llm = ServiceBuilder::new()
        // Upstream failures (connect, timeouts) become JSON errors.
        .layer(HandleErrorLayer::new(|err: BoxError| async move {
            upstream_error(err)
        }))
        // tower-http middleware mixes in freely, above or below tower-ai's layers.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            timeout,
        ))
        .layer(SetRequestHeaderLayer::if_not_present(
            HeaderName::from_static("openai-project"),
            HeaderValue::from_static("my-app"),
        ))
        .layer(ProviderRouteLayer::new(providers))
        .service(client);
    Ok(Router::new()
        .route(
            "/",
            get(|| async { Json(serde_json::json!({"app": "mine"})) }),
        )
        .nest_service("/llm", llm)
        .layer(TraceLayer::new_for_http()))
}

fn upstream_error(err: BoxError) -> axum::response::Response {
    let e = if err.is::<TimeoutError>() {
        ErrorResponse::gateway_timeout("the provider did not answer in time")
    } else if err.is::<ConnectError>() {
        ErrorResponse::bad_gateway("could not connect to the provider")
    } else {
        ErrorResponse::bad_gateway("the request to the provider failed")
    };
    e.into_response::<axum::body::Body>().into_response()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut providers = Providers::builtin();
    if let Ok(upstream) = std::env::var("UPSTREAM") {
        providers.set_base_url("openai", &format!("{upstream}/v1"))?;
        providers.set_base_url("anthropic", &upstream)?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(providers, Duration::from_secs(120))?).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client as HttpClient;
    use hyper_util::rt::TokioExecutor;
    use tower_ai_mock::MockProvider;

    use super::*;

    async fn serve(mock: &MockProvider, timeout: Duration) -> String {
        let mut providers = Providers::builtin();
        providers
            .set_base_url("openai", &format!("{}/v1", mock.url()))
            .unwrap();
        let app = app(providers, timeout).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    async fn post(url: String, headers: &[(&str, &str)]) -> (StatusCode, Bytes) {
        let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut req = http::Request::post(url).header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from_static(
                br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            )))
            .unwrap();
        let res = client.request(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    }

    #[tokio::test]
    async fn proxies_under_llm_next_to_the_apps_own_routes() {
        let mock = MockProvider::start().await.unwrap();
        let url = serve(&mock, Duration::from_secs(10)).await;
        let (status, body) = post(format!("{url}/llm/openai/chat/completions"), &[]).await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["object"], "chat.completion");
        let seen = mock.last_request().unwrap();
        assert_eq!(seen.uri.path(), "/v1/chat/completions");
        assert_eq!(seen.headers["openai-project"], "my-app");
    }

    #[tokio::test]
    async fn tower_http_timeout_answers_504() {
        let mock = MockProvider::start().await.unwrap();
        let url = serve(&mock, Duration::from_millis(200)).await;
        let (status, body) = post(
            format!("{url}/llm/openai/chat/completions"),
            &[("x-mock-hang", "true")],
        )
        .await;
        // tower-http's Timeout answers on its own, with an empty body.
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert!(body.is_empty());
        // and the abandoned upstream request is closed.
        tokio::time::timeout(Duration::from_secs(10), mock.wait_for_cancelled(1))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn unreachable_upstream_is_a_json_502_through_handle_error() {
        let mut providers = Providers::builtin();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        providers
            .set_base_url("openai", &format!("http://127.0.0.1:{port}/v1"))
            .unwrap();
        let app = app(providers, Duration::from_secs(10)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let (status, body) = post(format!("{url}/llm/openai/chat/completions"), &[]).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "upstream_error");
    }
}
