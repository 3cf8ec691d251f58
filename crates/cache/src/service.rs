use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use tower_ai_core::{
    Body, BoxError, CacheStatus, LlmRequest, Operation, ProviderPath, ResolvedRoute, WireFormat,
};
use tower_service::Service;

use crate::body::CachedBody;
use crate::control::{self, Controls};
use crate::flight::{CacheState, Plan};
use crate::future::ResponseFuture;
use crate::key::{CacheKey, Canonical, KeyParts, What};
use crate::layer::{Config, scope_of};

/// Caches LLM responses. See the [crate docs](crate).
pub struct Cache<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
    pub(crate) state: Arc<CacheState>,
}

impl<S: Clone> Clone for Cache<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
            state: self.state.clone(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Cache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Cache<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<CachedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let body = Body::new(body);
        if parts.method != Method::POST {
            return ResponseFuture::bypass(self.inner.call(Request::from_parts(parts, body)));
        }
        // The service that was made ready goes with this request; a fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        let controls = match control::parse(&parts.headers) {
            Ok(c) => c,
            Err(e) => return ResponseFuture::own(e),
        };
        if controls.skip || controls.ttl == Some(Duration::ZERO) {
            return ResponseFuture::bypass(inner.call(Request::from_parts(parts, body)));
        }
        let target = match (
            parts.extensions.get::<LlmRequest>(),
            parts.extensions.get::<ResolvedRoute>(),
        ) {
            (Some(l), _) => Some((l.provider.clone(), l.path.clone())),
            (None, Some(r)) => Some((r.provider.clone(), r.path.clone())),
            // Above a fallback layer, a universal request (`POST /`, a JSON array of
            // steps) is one entry, keyed on the whole array.
            (None, None) if ProviderPath::is_universal(parts.uri.path()) => {
                Some((Arc::<str>::from("universal"), Arc::<str>::from("/")))
            }
            (None, None) => ProviderPath::parse(parts.uri.path())
                .map(|p| (Arc::<str>::from(p.provider), Arc::<str>::from(p.rest))),
        };
        let Some((provider, path)) = target else {
            // Not an LLM request.
            return ResponseFuture::bypass(inner.call(Request::from_parts(parts, body)));
        };
        let pre = Pre {
            config: self.config.clone(),
            state: self.state.clone(),
            controls,
            provider,
            path,
        };
        // The bytes that go inward are the request's own (a layer above may have changed
        // them since `LlmRequest` was parsed: the meter asks streams for their usage).
        let buffered = body.as_bytes().cloned();
        match buffered {
            Some(bytes) => ResponseFuture::prepared(prepare(pre, parts, bytes), inner),
            None => {
                let limit = self.config.max_body_bytes;
                ResponseFuture::reading(body.read(limit), inner, parts, pre)
            }
        }
    }
}

/// What the layer knows of a request before it has its body.
pub(crate) struct Pre {
    pub(crate) config: Arc<Config>,
    pub(crate) state: Arc<CacheState>,
    pub(crate) controls: Controls,
    pub(crate) provider: Arc<str>,
    pub(crate) path: Arc<str>,
}

/// What a cacheable request carries through the layer.
pub(crate) struct Ctx {
    pub(crate) config: Arc<Config>,
    pub(crate) state: Arc<CacheState>,
    pub(crate) key: CacheKey,
    pub(crate) plan: Plan,
    pub(crate) status: CacheStatus,
    pub(crate) deadline: Option<tokio::time::Instant>,
    /// The request's body, for the usage of an answer that reports none (estimated).
    pub(crate) request_body: Bytes,
}

pub(crate) enum Prepared {
    /// The cache stands aside for this request.
    Bypass(Request<Body>),
    /// Look it up.
    Cached(Request<Body>, Ctx),
}

/// Builds the request that goes inward once the body is in hand, and its key.
pub(crate) fn prepare(pre: Pre, mut parts: http::request::Parts, bytes: Bytes) -> Prepared {
    let llm = match parts.extensions.get::<LlmRequest>() {
        Some(l) => l.clone(),
        None => {
            let l = LlmRequest::parse(&pre.provider, &pre.path, bytes.clone());
            parts.extensions.insert(l.clone());
            l
        }
    };
    let config = &*pre.config;
    // Parsed for the key only: the body that goes upstream is the client's bytes.
    let canonical = if llm.json {
        Canonical::of(&bytes)
    } else {
        None
    };
    if let Some(max) = config.max_temperature
        && samples(llm.operation)
    {
        let t = canonical
            .as_ref()
            .and_then(|c| c.temperature)
            .unwrap_or(1.0);
        if t > max {
            return Prepared::Bypass(Request::from_parts(parts, Body::full(bytes)));
        }
    }
    let what = match &pre.controls.custom_key {
        Some(k) => What::Custom(k.as_bytes()),
        None => What::Request {
            provider: &llm.provider,
            path: &llm.path,
            canonical: canonical.as_ref(),
            raw: &bytes,
            headers: &parts.headers,
            key_headers: &config.key_headers,
        },
    };
    let key = KeyParts {
        scope: scope_of(config, &parts.headers, &parts.extensions),
        stream: llm.stream,
        what,
    }
    .key();
    let format = config
        .providers
        .get(&llm.provider)
        .map_or(WireFormat::OpenAi, |p| p.format());
    let plan = Plan {
        ttl: pre.controls.ttl.unwrap_or(config.ttl),
        max_entry: config.max_entry_bytes,
        format,
        operation: llm.operation,
    };
    let ctx = Ctx {
        config: pre.config.clone(),
        state: pre.state,
        key,
        plan,
        status: CacheStatus::Miss,
        deadline: None,
        request_body: llm.body.clone(),
    };
    Prepared::Cached(Request::from_parts(parts, Body::full(bytes)), ctx)
}

/// Whether the operation samples (and so can be non-deterministic).
fn samples(op: Operation) -> bool {
    !matches!(op, Operation::Embeddings | Operation::EmbedContent)
}

/// The header and extensions every response that passed the layer carries.
pub(crate) fn mark<B>(res: &mut Response<B>, status: CacheStatus, key: Option<CacheKey>) {
    res.headers_mut().insert(
        tower_ai_core::headers::CACHE_STATUS.name,
        http::HeaderValue::from_static(status.as_str()),
    );
    res.extensions_mut().insert(status);
    if let Some(key) = key {
        res.extensions_mut().insert(key);
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::StatusCode;
    use http_body_util::{BodyExt, Full};
    use tokio_test::{assert_pending, assert_ready_ok};
    use tower::{ServiceExt, service_fn};
    use tower_ai_core::KnownUsage;
    use tower_layer::Layer;
    use tower_test::mock;

    use super::*;
    use crate::CacheLayer;

    const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

    fn req(body: &'static str) -> Request<Body> {
        Request::post("/openai/chat/completions")
            .header("authorization", "Bearer sk-1")
            .body(Body::from(body))
            .unwrap()
    }

    fn counting() -> (
        Arc<AtomicUsize>,
        impl Service<
            Request<Body>,
            Response = Response<Full<Bytes>>,
            Error = Infallible,
            Future = impl Send,
        > + Clone
        + Send,
    ) {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let svc = service_fn(move |_req: Request<Body>| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                let body = format!(
                    r#"{{"id":"{n}","usage":{{"prompt_tokens":3,"completion_tokens":2}}}}"#
                );
                let res = Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                Ok::<_, Infallible>(res)
            }
        });
        (calls, svc)
    }

    async fn send<S>(svc: &S, r: Request<Body>) -> (StatusCode, String, Response<()>)
    where
        S: Service<Request<Body>, Response = Response<CachedBody<Full<Bytes>>>> + Clone,
        S::Error: std::fmt::Debug,
    {
        let res = svc.clone().oneshot(r).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            String::from_utf8(bytes.to_vec()).unwrap(),
            Response::from_parts(parts, ()),
        )
    }

    fn status(r: &Response<()>) -> &str {
        r.headers()["aigw-cache-status"].to_str().unwrap()
    }

    #[tokio::test]
    async fn miss_then_hit_with_known_usage() {
        let (calls, upstream) = counting();
        let svc = CacheLayer::memory(1 << 20).layer(upstream);
        let (_, a, ra) = send(&svc, req(CHAT)).await;
        assert_eq!(status(&ra), "MISS");
        assert_eq!(
            ra.extensions().get::<CacheStatus>(),
            Some(&CacheStatus::Miss)
        );
        let (_, b, rb) = send(&svc, req(CHAT)).await;
        assert_eq!(status(&rb), "HIT");
        assert_eq!(a, b);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let usage = rb.extensions().get::<KnownUsage>().unwrap().0;
        assert_eq!((usage.input_tokens, usage.output_tokens), (3, 2));
        assert_eq!(rb.headers()["content-type"], "application/json");
        assert!(rb.extensions().get::<CacheKey>().is_some());
    }

    #[tokio::test]
    async fn bypasses_and_bad_controls() {
        let (calls, upstream) = counting();
        let svc = CacheLayer::memory(1 << 20)
            .with_max_temperature(Some(0.0))
            .layer(upstream);
        let mut r = req(CHAT);
        r.headers_mut()
            .insert("aigw-skip-cache", "true".parse().unwrap());
        let (_, _, res) = send(&svc, r).await;
        assert_eq!(status(&res), "BYPASS");
        // No temperature counts as 1.0: above the bound.
        let (_, _, res) = send(&svc, req(CHAT)).await;
        assert_eq!(status(&res), "BYPASS");
        let cold = r#"{"model":"m","temperature":0,"messages":[]}"#;
        let (_, _, res) = send(&svc, req(cold)).await;
        assert_eq!(status(&res), "MISS");
        let (_, _, res) = send(&svc, req(cold)).await;
        assert_eq!(status(&res), "HIT");
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let mut r = req(CHAT);
        r.headers_mut()
            .insert("aigw-cache-ttl", "-5".parse().unwrap());
        let (code, body, _) = send(&svc, r).await;
        assert_eq!(code, 400);
        assert!(body.contains("negative"), "{body}");
        let get = Request::get("/openai/models").body(Body::empty()).unwrap();
        let (_, _, res) = send(&svc, get).await;
        assert_eq!(status(&res), "BYPASS");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_413() {
        let (calls, upstream) = counting();
        let svc = CacheLayer::memory(1 << 20)
            .with_max_body_bytes(10)
            .layer(upstream);
        // A streaming body (not buffered by anyone yet).
        let r = Request::post("/openai/chat/completions")
            .body(Body::new(Full::new(Bytes::from_static(CHAT.as_bytes()))))
            .unwrap();
        let (code, body, _) = send(&svc, r).await;
        assert_eq!(code, 413);
        assert!(body.contains("request_too_large"));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn readiness_is_the_inner_services_and_the_ready_one_is_called() {
        let (inner, mut handle) = mock::pair::<Request<Body>, Response<Full<Bytes>>>();
        let mut svc = CacheLayer::memory(1 << 20).layer(inner);
        fn ready<S: Service<Request<Body>>>(
            s: &mut S,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), S::Error>> {
            s.poll_ready(cx)
        }
        let mut task = tokio_test::task::spawn(());
        handle.allow(0);
        assert_pending!(task.enter(|cx, _| ready(&mut svc, cx)));
        handle.allow(1);
        assert_ready_ok!(task.enter(|cx, _| ready(&mut svc, cx)));
        let fut = svc.call(req(CHAT));
        let fut = tokio::spawn(fut);
        let (r, send) = handle.next_request().await.unwrap();
        assert!(r.extensions().get::<LlmRequest>().is_some());
        assert_eq!(r.body().as_bytes().unwrap(), CHAT.as_bytes());
        send.send_response(Response::new(Full::new(Bytes::from_static(b"{}"))));
        let res = fut.await.unwrap().unwrap();
        assert_eq!(res.status(), 200);
    }
}
