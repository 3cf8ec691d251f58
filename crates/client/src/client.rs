use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_ai_core::{Body, BoxError};
use tower_service::Service;

use crate::future::ResponseFuture;

type Inner<B> = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, B>;

/// The pooled HTTPS upstream client. See the [crate docs](crate).
///
/// Cheap to clone: clones share one connection pool.
pub struct Client<B = Body> {
    /// Behind an `Arc`: every layer in front clones its inner service per request, and
    /// hyper-util's client is a large value (its clone copies the builder's settings
    /// and clones half a dozen `Arc`s).
    inner: Arc<Inner<B>>,
    request_timeout: Option<Duration>,
}

impl<B> Clone for Client<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            request_timeout: self.request_timeout,
        }
    }
}

impl<B> fmt::Debug for Client<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder with the defaults: connect timeout 10 s, no response-head timeout,
    /// idle connections kept 90 s, up to 256 idle connections per host.
    pub fn builder() -> Builder<Body> {
        Builder::default()
    }
}

/// Configures a [`Client`].
pub struct Builder<B = Body> {
    connect_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    pool_idle_timeout: Option<Duration>,
    pool_max_idle_per_host: usize,
    http2_only: bool,
    _body: PhantomData<fn(B)>,
}

impl<B> fmt::Debug for Builder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("http2_only", &self.http2_only)
            .finish()
    }
}

impl<B> Clone for Builder<B> {
    fn clone(&self) -> Self {
        self.retyped()
    }
}

impl Default for Builder<Body> {
    fn default() -> Self {
        Self {
            connect_timeout: Some(Duration::from_secs(10)),
            request_timeout: None,
            pool_idle_timeout: Some(Duration::from_secs(90)),
            pool_max_idle_per_host: 256,
            http2_only: false,
            _body: PhantomData,
        }
    }
}

impl<B> Builder<B> {
    /// Uses another request body type (any `Unpin` body with `Bytes` frames).
    pub fn body<B2>(self) -> Builder<B2> {
        self.retyped()
    }

    /// The same settings for a body type `B2`.
    fn retyped<B2>(&self) -> Builder<B2> {
        Builder {
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            pool_idle_timeout: self.pool_idle_timeout,
            pool_max_idle_per_host: self.pool_max_idle_per_host,
            http2_only: self.http2_only,
            _body: PhantomData,
        }
    }

    /// How long establishing a connection (TCP and TLS) may take; `None` for no limit.
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the upstream may take to send the response head; `None` for no limit.
    /// A stream's body is not bounded by it.
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long an idle pooled connection is kept.
    pub fn pool_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How many idle connections are kept per host.
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// Speaks HTTP/2 only, also over plain HTTP (h2c with prior knowledge).
    pub fn http2_only(mut self, yes: bool) -> Self {
        self.http2_only = yes;
        self
    }

    /// Builds the client. Fails only if the TLS configuration cannot be made.
    pub fn build(self) -> Result<Client<B>, BoxError>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(self.connect_timeout);
        http.set_keepalive(Some(Duration::from_secs(60)));
        let https = HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))?
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let mut builder = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .http2_only(self.http2_only);
        Ok(Client {
            inner: Arc::new(builder.build(https)),
            request_timeout: self.request_timeout,
        })
    }
}

impl<B> Service<Request<B>> for Client<B>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // hyper-util's client is always ready: the pool queues checkouts.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        let sleep = self.request_timeout.map(tokio::time::sleep);
        ResponseFuture::new(self.inner.request(req), sleep)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use tower_ai_core::Body;
    use tower_ai_mock::MockProvider;

    use super::Client;
    use crate::{ConnectError, TimeoutError};

    #[tokio::test]
    async fn reuses_connections() {
        let mock = MockProvider::start().await.unwrap();
        let client = Client::builder().build().unwrap();
        for _ in 0..3 {
            let req = Request::post(format!("{}/v1/embeddings", mock.url()))
                .body(Body::from(r#"{"model":"m","input":"a b c"}"#))
                .unwrap();
            let res = client.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), 200);
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["usage"]["prompt_tokens"], 3);
        }
        assert_eq!(mock.stats().requests, 3);
        assert_eq!(mock.stats().connections, 1);
    }

    #[tokio::test]
    async fn refused_is_a_connect_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = Client::builder().build().unwrap();
        let req = Request::get(format!("http://127.0.0.1:{port}/"))
            .body(Body::empty())
            .unwrap();
        let err = client.oneshot(req).await.unwrap_err();
        assert!(err.is::<ConnectError>(), "{err}");
    }

    #[tokio::test]
    async fn head_timeout() {
        let mock = MockProvider::start().await.unwrap();
        let client = Client::builder()
            .request_timeout(Some(Duration::from_millis(50)))
            .build()
            .unwrap();
        let req = Request::post(format!("{}/v1/chat/completions", mock.url()))
            .header("x-mock-hang", "true")
            .body(Body::from(r#"{"model":"m","messages":[]}"#))
            .unwrap();
        let err = client.oneshot(req).await.unwrap_err();
        assert!(err.is::<TimeoutError>(), "{err}");
        // The abandoned request closes its connection; the mock sees it go.
        tokio::time::timeout(Duration::from_secs(5), mock.wait_for_cancelled(1))
            .await
            .unwrap();
    }
}
