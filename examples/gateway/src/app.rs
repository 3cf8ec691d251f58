//! The gateway's axum app: routes, middleware and error mapping.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Request};
use http_body_util::{LengthLimitError, Limited};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tower_ai_auth::AuthLayer;
use tower_ai_client::{Client, ConnectError, TimeoutError};
use tower_ai_core::{Body, BoxError, ClientAddr, ErrorResponse, headers};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::config::{Config, ConfigError};
use crate::metering::Metering;

/// Builds the gateway's router from a configuration: [`Gateway::new`] and
/// [`Gateway::router`] in one step.
///
/// - `GET /healthz`: `{"status":"ok"}`; `GET /metrics`, `/usage`, `/logs`; `DELETE /cache`.
/// - everything else: fallback (the universal endpoint `POST /`, configured routes,
///   retries), meter, rate limits, cache (when enabled), compat (`/compat/...`
///   translated to the provider `model` names) and provider routing (`/{provider}/...`)
///   in front of the upstream client.
/// - with `[auth] enabled`: the auth layer in front of the proxy (a gateway token per
///   request), and the admin endpoints behind the admin token.
///
/// Around it: a request id (`aigw-request-id`, kept when the client sent one, echoed on
/// the response), tracing spans and access logs that never carry headers or queries, and
/// the body size limit (413).
pub async fn router(config: &Config) -> Result<Router, ConfigError> {
    Gateway::new(config).await?.router()
}

/// The gateway's shared state, built once from a configuration: every layer (with its
/// caches, counters, stores and recorders) and the admin endpoints. Each
/// [`router`](Self::router) serves from that one state over an upstream client of its own,
/// so a server with a runtime per thread ([`serve_per_thread`](crate::serve_per_thread))
/// gives each thread its own connection pool and shares everything else.
#[derive(Clone)]
pub struct Gateway {
    admin: Router,
    auth: Option<AuthLayer>,
    fallback: tower_ai_fallback::FallbackLayer,
    meter: Option<tower_ai_meter::MeterLayer<crate::metering::Recorders>>,
    ratelimit: tower_ai_ratelimit::RateLimitLayer,
    cache: Option<tower_ai_cache::CacheLayer>,
    compat: tower_ai_compat::CompatLayer,
    route: tower_ai_provider_route::ProviderRouteLayer,
    client: tower_ai_client::Builder,
    request_id: MakeId,
    max_body: usize,
    max_headers: usize,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("auth", &self.auth.is_some())
            .field("meter", &self.meter.is_some())
            .field("cache", &self.cache.is_some())
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds every layer from `config` (opening the request log, connecting to Redis
    /// when a store is there). Runtime tasks a store needs (Redis connections) run on the
    /// runtime this is called on, which must outlive the gateway.
    pub async fn new(config: &Config) -> Result<Self, ConfigError> {
        let mut meter = Metering::new(config)?;
        let providers = config.providers()?;
        let keys = config.auth.store(&providers)?;
        let auth = crate::auth::layer(&keys, config.server.max_body_bytes);
        let ratelimit = config
            .ratelimit
            .layer_with(config.auth.limits()?)
            .await?
            .with_providers(config.providers()?)
            .with_prices(config.prices()?)
            .with_max_body_bytes(config.server.max_body_bytes);
        let (connect, timeout) = config.upstream_timeouts();
        let client = Client::builder()
            .connect_timeout(Some(connect))
            .request_timeout(Some(timeout))
            .pool_idle_timeout(Some(Duration::from_secs(
                config.upstream.pool_idle_timeout_secs,
            )))
            .pool_max_idle_per_host(config.upstream.pool_max_idle_per_host);
        let route = config.route_layer()?;
        let fallback = config
            .fallback
            .layer(&providers)?
            .with_max_body_bytes(config.server.max_body_bytes);
        meter.fallback = Some(fallback.handle());
        let compat = crate::compat::layer(config)?;
        let limit = config.server.max_body_bytes;
        let cache = config.cache.layer().await?.map(|c| {
            c.with_providers(providers.clone())
                .with_max_body_bytes(limit)
        });
        let admin = Router::new()
            .route("/healthz", get(healthz))
            .merge(meter.admin_routes())
            .merge(crate::cache::routes(cache.as_ref().map(|c| c.handle())));
        // With auth on, the admin endpoints need the admin token.
        let admin = crate::auth::guard_admin(admin, &config.auth, &keys);
        Ok(Self {
            admin,
            auth,
            fallback,
            meter: meter.layer,
            ratelimit,
            cache,
            compat,
            route,
            client,
            request_id: MakeId::new(),
            max_body: limit,
            max_headers: config.server.max_header_bytes,
        })
    }

    /// The router (see [`router`](crate::router)) over a new upstream client. Its
    /// connection pool lives on the runtime that first sends through it.
    pub fn router(&self) -> Result<Router, ConfigError> {
        let client = self
            .client
            .clone()
            .build()
            .map_err(|e| ConfigError::new(format!("upstream client: {e}")))?;
        let (auth, limit) = (&self.auth, self.max_body);
        // Each optional layer changes the response body type, so each combination is its
        // own stack type and becomes the router's fallback in its own branch. From the
        // outside in: fallback (each attempt goes through everything below it: metered,
        // counted, cached per step), the meter (it records the gateway's own refusals
        // too), the rate limiter (every request counts, cache hits give their token
        // reservations back), the cache (keyed on the request as the client sent it),
        // compat (translates `/compat/...`), provider routing, the upstream client. The
        // rate limiter reads usage below the meter and leaves it in the usage slot, so a
        // response is parsed once.
        macro_rules! stack {
            ($($layer:expr),*) => {
                proxy_service(
                    ServiceBuilder::new()$(.layer($layer.clone()))*.service(client),
                    auth.clone(),
                    limit,
                )
            };
        }
        let (f, r, co, ro) = (&self.fallback, &self.ratelimit, &self.compat, &self.route);
        let app = self.admin.clone();
        let app = match (&self.meter, &self.cache) {
            (Some(m), Some(c)) => app.fallback_service(stack!(f, m, r, c, co, ro)),
            (Some(m), None) => app.fallback_service(stack!(f, m, r, co, ro)),
            (None, Some(c)) => app.fallback_service(stack!(f, r, c, co, ro)),
            (None, None) => app.fallback_service(stack!(f, r, co, ro)),
        };

        let request_id = headers::REQUEST_ID.name;
        Ok(app.layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(
                    request_id.clone(),
                    self.request_id.clone(),
                ))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(make_span)
                        .on_response(DefaultOnResponse::new().level(Level::INFO))
                        .on_failure(DefaultOnFailure::new().level(Level::WARN)),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(crate::limits::HeadLimitLayer {
                    limit: self.max_headers,
                }),
        ))
    }
}

/// The proxy as an axum service: the body limit, the stack, its errors as JSON.
fn proxy_service<S, B>(
    stack: S,
    auth: Option<AuthLayer>,
    limit: usize,
) -> impl tower::Service<
    Request<AxumBody>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send,
> + Clone
+ Send
+ 'static
where
    S: tower::Service<Request<Body>, Response = http::Response<B>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    service_fn(move |req: Request<AxumBody>| {
        let stack = stack.clone();
        let auth = auth.clone();
        async move {
            // Auth is outermost: a refused request reaches no layer below it.
            Ok::<_, Infallible>(match auth {
                Some(auth) => proxy(auth.layer(stack), req, limit).await,
                None => proxy(stack, req, limit).await,
            })
        }
    })
}

async fn healthz() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        r#"{"status":"ok"}"#,
    )
}

async fn proxy<S, B>(stack: S, req: Request<AxumBody>, limit: usize) -> Response
where
    S: tower::Service<Request<Body>, Response = http::Response<B>, Error = BoxError>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ErrorResponse::payload_too_large(limit).into_response();
    }
    let mut req = req.map(|b| Body::new(Limited::new(b, limit)));
    // The client's address, for limits keyed on it, as a type layers know.
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        req.extensions_mut().insert(ClientAddr(addr));
    }
    match stack.oneshot(req).await {
        Ok(res) => res.map(AxumBody::new),
        Err(err) => {
            let e = classify(&*err, limit);
            tracing::warn!(status = e.status().as_u16(), error = %ErrorChain(&*err), "request failed");
            e.into_response()
        }
    }
}

/// The error response for a failure of the stack below the gateway.
fn classify(err: &(dyn StdError + 'static), limit: usize) -> ErrorResponse {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<LengthLimitError>() {
            return ErrorResponse::payload_too_large(limit);
        }
        if e.is::<TimeoutError>() {
            return ErrorResponse::gateway_timeout("the provider did not answer in time");
        }
        if e.is::<ConnectError>() {
            return ErrorResponse::bad_gateway("could not connect to the provider");
        }
        cur = e.source();
    }
    ErrorResponse::bad_gateway("the request to the provider failed")
}

struct ErrorChain<'a>(&'a (dyn StdError + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(e) = cur {
            write!(f, ": {e}")?;
            cur = e.source();
        }
        Ok(())
    }
}

fn make_span<B>(req: &Request<B>) -> tracing::Span {
    let id = req
        .headers()
        .get(headers::REQUEST_ID.name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Only the path: queries can carry keys (Gemini's `?key=`), headers carry credentials.
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = req.uri().path(),
        request_id = id,
    )
}

/// Request ids: a per-process random prefix and a counter, cheap and unique:
/// `{16 hex digits}-{the counter in hex, at least 8 digits}`.
#[derive(Clone)]
struct MakeId {
    prefix: [u8; 16],
    next: Arc<AtomicU64>,
}

impl MakeId {
    fn new() -> Self {
        use std::hash::{BuildHasher, RandomState};
        let seed = RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()));
        let mut prefix = [0; 16];
        hex(seed, &mut prefix);
        Self {
            prefix,
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

/// Writes `n` as lowercase hex into all of `out` (zero-padded on the left).
fn hex(mut n: u64, out: &mut [u8]) {
    for b in out.iter_mut().rev() {
        *b = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
    }
}

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Formatted on the stack: one allocation per id (the header value's own).
        let digits = (16 - n.leading_zeros() as usize / 4).max(8);
        let mut id = [0u8; 33];
        id[..16].copy_from_slice(&self.prefix);
        id[16] = b'-';
        hex(n, &mut id[17..17 + digits]);
        HeaderValue::from_bytes(&id[..17 + digits])
            .ok()
            .map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_a_prefix_and_a_counter_in_hex() {
        let mut ids = MakeId::new();
        let req = Request::new(());
        let id = |ids: &mut MakeId| {
            let id = ids.make_request_id(&req).unwrap();
            id.header_value().to_str().unwrap().to_owned()
        };
        let first = id(&mut ids);
        let (prefix, n) = first.split_once('-').unwrap();
        assert_eq!(prefix.len(), 16);
        assert!(prefix.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(n, "00000001");
        assert_eq!(id(&mut ids), format!("{prefix}-00000002"));
        ids.next.store(0x1_2345_6789_abcd, Ordering::Relaxed);
        assert_eq!(id(&mut ids), format!("{prefix}-123456789abcd"));
        ids.next.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(id(&mut ids), format!("{prefix}-ffffffffffffffff"));
    }
}
