use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_ai_core::{
    Body, BoxError, CallerId, CallerTags, ClientAddr, LlmRequest, ProviderPath, ResolvedRoute,
};
use tower_service::Service;

use crate::body::RateLimitBody;
use crate::decide::Plan;
use crate::future::ResponseFuture;
use crate::key::RequestFacts;
use crate::layer::Shared;

/// Request, token, spend and concurrency limits per key. See the [crate docs](crate).
pub struct RateLimit<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S: Clone> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes>,
{
    type Response = Response<RateLimitBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let req = req.map(Body::new);
        if self.shared.limits.is_empty() {
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        let clone = self.inner.clone();
        let inner = mem::replace(&mut self.inner, clone);
        let (parts, body) = req.into_parts();
        // The bytes that go inward are the request's own (a layer above may have changed
        // them since `LlmRequest` was parsed: the meter asks streams for their usage).
        let buffered = body.as_bytes().cloned();
        match buffered {
            Some(bytes) => {
                let (req, plan, llm) = prepare(&self.shared, parts, bytes);
                ResponseFuture::deciding(self.shared.clone(), plan, inner, req, llm)
            }
            None => ResponseFuture::reading(
                self.shared.clone(),
                body.read(self.shared.max_body_bytes),
                inner,
                parts,
            ),
        }
    }
}

/// The request that goes inward, the plan of what to ask the store, and the request's
/// facts, once the body is in hand.
pub(crate) fn prepare(
    shared: &Arc<Shared>,
    mut parts: http::request::Parts,
    bytes: Bytes,
) -> (Request<Body>, Plan, Option<LlmRequest>) {
    let target = match parts.extensions.get::<ResolvedRoute>() {
        Some(r) => Some((r.provider.clone(), r.path.clone())),
        None => ProviderPath::parse(parts.uri.path())
            .filter(|p| shared.providers.get(p.provider).is_some())
            .map(|p| (Arc::<str>::from(p.provider), Arc::<str>::from(p.rest))),
    };
    let llm = match parts.extensions.get::<LlmRequest>() {
        Some(l) => Some(l.clone()),
        None => target.as_ref().map(|(provider, path)| {
            let l = LlmRequest::parse(provider, path, bytes.clone());
            parts.extensions.insert(l.clone());
            l
        }),
    };
    let mut metadata = metadata(&parts.headers);
    // The caller's own tags (a virtual key's) win: a client cannot leave its team's
    // budget by naming another team in `aigw-metadata`.
    if let Some(CallerTags(mine)) = parts.extensions.get::<CallerTags>() {
        metadata.retain(|(k, _)| !mine.iter().any(|(m, _)| m == k));
        metadata.extend(mine.iter().cloned());
    }
    // Who is calling (as provider routing or auth left it, else from the headers), hashed
    // once for every limit keyed on it and left for the layers below.
    if parts.extensions.get::<CallerId>().is_none()
        && let Some(c) = CallerId::from_headers(&parts.headers)
    {
        parts.extensions.insert(c);
    }
    let plan = {
        let facts = RequestFacts {
            headers: &parts.headers,
            llm: llm.as_ref(),
            provider: target.as_ref().map(|(p, _)| &**p),
            client: parts.extensions.get::<ClientAddr>().copied(),
            metadata: &metadata,
            caller: parts.extensions.get::<CallerId>(),
        };
        Plan::new(shared.clone(), &facts)
    };
    (Request::from_parts(parts, Body::full(bytes)), plan, llm)
}

/// The `aigw-metadata` tags, for limits keyed on one; a malformed header has none (the
/// meter answers it with a 400 of its own).
fn metadata(h: &http::HeaderMap) -> Vec<(String, String)> {
    let Some(v) = tower_ai_core::headers::METADATA.get(h) else {
        return Vec::new();
    };
    let Ok(map) =
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(v.as_bytes())
    else {
        return Vec::new();
    };
    map.into_iter()
        .take(16)
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            serde_json::Value::Number(n) => Some((k, n.to_string())),
            serde_json::Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use http_body_util::Full;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;
    use crate::store::{Decision, RateLimitStore, Spec, StoreError};
    use crate::{Algorithm, KeyPart, Limit, MemoryStore, Quantity, RateLimitLayer};

    fn req() -> Request<Body> {
        Request::post("/openai/chat/completions")
            .header("authorization", "Bearer sk-a")
            .body(Body::from(
                r#"{"model":"gpt-4o-mini","max_tokens":10,"messages":[]}"#,
            ))
            .unwrap()
    }

    fn ok_upstream()
    -> impl tower_service::Service<
        Request<Body>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
    > + Clone
    + Send
    + 'static {
        service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
        })
    }

    struct Down;

    impl RateLimitStore for Down {
        fn acquire<'a>(
            &'a self,
            _: &'a str,
            _: Spec,
            _: u64,
        ) -> crate::BoxFuture<'a, Result<Decision, StoreError>> {
            Box::pin(async { Err(StoreError("down".into())) })
        }
        fn adjust<'a>(
            &'a self,
            _: &'a str,
            _: Spec,
            _: i64,
        ) -> crate::BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(async { Err(StoreError("down".into())) })
        }
    }

    #[tokio::test]
    async fn a_store_that_cannot_answer_fails_open_or_closed() {
        let limit = Limit::requests("l", vec![], 1, Duration::from_secs(1)).unwrap();
        let open = ServiceBuilder::new()
            .layer(RateLimitLayer::new(Down).with_limit(limit.clone()))
            .service(ok_upstream());
        for _ in 0..3 {
            assert_eq!(open.clone().oneshot(req()).await.unwrap().status(), 200);
        }
        let closed = ServiceBuilder::new()
            .layer(
                RateLimitLayer::new(Down)
                    .with_limit(limit)
                    .with_fail_open(false),
            )
            .service(ok_upstream());
        let res = closed.oneshot(req()).await.unwrap();
        assert_eq!(res.status(), 503);
    }

    /// Answers every batch with a single admission, whatever was asked: short of its
    /// promise.
    struct Short;

    impl RateLimitStore for Short {
        fn acquire<'a>(
            &'a self,
            _: &'a str,
            _: Spec,
            _: u64,
        ) -> crate::BoxFuture<'a, Result<Decision, StoreError>> {
            Box::pin(async { Err(StoreError("unused".into())) })
        }
        fn adjust<'a>(
            &'a self,
            _: &'a str,
            _: Spec,
            _: i64,
        ) -> crate::BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn acquire_all<'a>(
            &'a self,
            _: &'a [crate::Ask],
        ) -> crate::BoxFuture<'a, Result<Vec<Decision>, StoreError>> {
            let d = Decision {
                allowed: true,
                limit: 1,
                remaining: 0,
                reset: Duration::ZERO,
                retry_after: Duration::ZERO,
            };
            Box::pin(async move { Ok(vec![d]) })
        }
    }

    #[tokio::test]
    async fn a_store_answering_fewer_decisions_than_limits_cannot_decide() {
        let limit = |name| Limit::requests(name, vec![], 1, Duration::from_secs(1)).unwrap();
        let closed = ServiceBuilder::new()
            .layer(
                RateLimitLayer::new(Short)
                    .with_limits([limit("a"), limit("b")])
                    .with_fail_open(false),
            )
            .service(ok_upstream());
        assert_eq!(closed.oneshot(req()).await.unwrap().status(), 503);
        let one = ServiceBuilder::new()
            .layer(
                RateLimitLayer::new(Short)
                    .with_limit(limit("a"))
                    .with_fail_open(false),
            )
            .service(ok_upstream());
        assert_eq!(one.oneshot(req()).await.unwrap().status(), 200);
    }

    #[tokio::test(start_paused = true)]
    async fn gcra_through_the_layer_under_a_paused_clock() {
        // 2 per 10 s: burst 2, then one every 5 s.
        let limit =
            Limit::requests("l", vec![KeyPart::ApiKey], 2, Duration::from_secs(10)).unwrap();
        let svc = ServiceBuilder::new()
            .layer(RateLimitLayer::new(MemoryStore::new()).with_limit(limit))
            .service(ok_upstream());
        let status = |svc: &_| {
            let svc: &RateLimit<_> = svc;
            let svc = svc.clone();
            async move { svc.oneshot(req()).await.unwrap().status().as_u16() }
        };
        assert_eq!(status(&svc).await, 200);
        assert_eq!(status(&svc).await, 200);
        assert_eq!(status(&svc).await, 429);
        tokio::time::advance(Duration::from_millis(4999)).await;
        assert_eq!(status(&svc).await, 429);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(status(&svc).await, 200);
        assert_eq!(status(&svc).await, 429);
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_for_one_caller_counts_only_its_requests() {
        // Tenant A: 1 per minute of its own; tenant B has no limit; both share the
        // credential header, as tenants behind one provider key do.
        let limit = Limit::requests("a-rpm", vec![KeyPart::ApiKey], 1, Duration::from_secs(60))
            .unwrap()
            .for_caller("key_aaaaaaaaaaaaaaaa");
        assert_eq!(limit.caller(), Some("key_aaaaaaaaaaaaaaaa"));
        let svc = ServiceBuilder::new()
            .layer(RateLimitLayer::new(MemoryStore::new()).with_limit(limit))
            .service(ok_upstream());
        let as_caller = |id: &'static str| {
            let svc = svc.clone();
            async move {
                let mut r = req();
                r.extensions_mut().insert(CallerId(id.into()));
                svc.oneshot(r).await.unwrap().status().as_u16()
            }
        };
        assert_eq!(as_caller("key_aaaaaaaaaaaaaaaa").await, 200);
        assert_eq!(as_caller("key_aaaaaaaaaaaaaaaa").await, 429);
        for _ in 0..5 {
            assert_eq!(as_caller("key_bbbbbbbbbbbbbbbb").await, 200);
        }
        // No caller set above: the one its credential names (`sk-a`), not tenant A.
        assert_eq!(svc.clone().oneshot(req()).await.unwrap().status(), 200);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(as_caller("key_aaaaaaaaaaaaaaaa").await, 200);
    }

    #[tokio::test]
    async fn without_a_caller_from_above_the_credential_names_it_once_for_every_layer() {
        let caller = tower_ai_core::key_id("sk-a");
        let limit = Limit::requests("mine", vec![KeyPart::ApiKey], 1, Duration::from_secs(60))
            .unwrap()
            .for_caller(caller.as_str());
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let below = seen.clone();
        let svc = ServiceBuilder::new()
            .layer(RateLimitLayer::new(MemoryStore::new()).with_limit(limit))
            .service(service_fn(move |req: Request<Body>| {
                below
                    .lock()
                    .unwrap()
                    .push(req.extensions().get::<CallerId>().cloned());
                async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}")))) }
            }));
        assert_eq!(svc.clone().oneshot(req()).await.unwrap().status(), 200);
        assert_eq!(svc.clone().oneshot(req()).await.unwrap().status(), 429);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].as_ref().map(|c| &*c.0), Some(caller.as_str()));
    }

    #[tokio::test]
    async fn a_callers_tags_key_metadata_limits_over_the_clients() {
        let limit = Limit::requests(
            "team",
            vec![KeyPart::Metadata("team".into())],
            1,
            Duration::from_secs(60),
        )
        .unwrap();
        let svc = ServiceBuilder::new()
            .layer(RateLimitLayer::new(MemoryStore::new()).with_limit(limit))
            .service(ok_upstream());
        let tagged = |claimed: &'static str| {
            let svc = svc.clone();
            async move {
                let mut r = req();
                r.headers_mut()
                    .insert("aigw-metadata", claimed.parse().unwrap());
                r.extensions_mut().insert(CallerTags(
                    vec![("team".to_owned(), "search".to_owned())].into(),
                ));
                svc.oneshot(r).await.unwrap().status().as_u16()
            }
        };
        assert_eq!(tagged(r#"{"team":"search"}"#).await, 200);
        // Claiming another team in the header does not leave the key's own bucket.
        assert_eq!(tagged(r#"{"team":"other"}"#).await, 429);
    }

    #[tokio::test(start_paused = true)]
    async fn fixed_and_sliding_windows_at_their_edges() {
        for (algorithm, after_edge) in [
            (Algorithm::FixedWindow, 200),
            (Algorithm::SlidingWindow, 429),
        ] {
            let limit = Limit::new(
                "l",
                vec![],
                Quantity::Requests(3),
                algorithm,
                Duration::from_secs(60),
            )
            .unwrap();
            let svc = ServiceBuilder::new()
                .layer(RateLimitLayer::new(MemoryStore::new()).with_limit(limit))
                .service(ok_upstream());
            // Start at a window's beginning, move to just before its end.
            tokio::time::advance(Duration::from_secs(59)).await;
            for _ in 0..3 {
                assert_eq!(svc.clone().oneshot(req()).await.unwrap().status(), 200);
            }
            assert_eq!(svc.clone().oneshot(req()).await.unwrap().status(), 429);
            // Just past the edge: a fixed window starts over (a burst of twice the limit);
            // a sliding one still counts the previous window almost whole.
            tokio::time::advance(Duration::from_secs(2)).await;
            assert_eq!(
                svc.clone().oneshot(req()).await.unwrap().status().as_u16(),
                after_edge,
                "{algorithm:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_by_the_second_limit_charges_nothing_and_names_it() {
        let limits = [
            Limit::requests("global", vec![], 2, Duration::from_secs(60)).unwrap(),
            Limit::requests("per-key", vec![KeyPart::ApiKey], 1, Duration::from_secs(60)).unwrap(),
            Limit::requests("third", vec![], 100, Duration::from_secs(60)).unwrap(),
        ];
        let svc = ServiceBuilder::new()
            .layer(RateLimitLayer::new(MemoryStore::new()).with_limits(limits))
            .service(ok_upstream());
        let from = |key: &str| {
            let mut r = req();
            let auth = format!("Bearer {key}").parse().unwrap();
            r.headers_mut().insert("authorization", auth);
            svc.clone().oneshot(r)
        };
        let res = from("sk-a").await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["ratelimit-policy"],
            "\"global\";q=2;w=60, \"per-key\";q=1;w=60, \"third\";q=100;w=60"
        );

        // Refused by `per-key`: the answer names it and the limits asked up to it.
        let res = from("sk-a").await.unwrap();
        assert_eq!(res.status(), 429);
        let h = res.headers();
        assert_eq!(
            h["ratelimit-policy"],
            "\"global\";q=2;w=60, \"per-key\";q=1;w=60"
        );
        assert_eq!(h["ratelimit"], "\"per-key\";r=0;t=60");
        assert_eq!(h["retry-after"], "60");
        assert_eq!(h["x-ratelimit-remaining-requests"], "0");
        use http_body_util::BodyExt;
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            error["error"]["message"],
            "Rate limit `per-key` reached (requests: 1 per 60s). Try again in 60.000s."
        );

        // `global` was not charged by the refusal: another key still has its last one.
        assert_eq!(from("sk-b").await.unwrap().status(), 200);
        let res = from("sk-c").await.unwrap();
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()["ratelimit"], "\"global\";r=0;t=60");
    }

    #[tokio::test]
    async fn an_upstream_error_gives_back_what_was_reserved() {
        let calls = std::sync::Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        let failing = service_fn(move |_req: Request<Body>| {
            let n = c.fetch_add(1, Ordering::Relaxed);
            async move {
                if n == 0 {
                    Err::<Response<Full<Bytes>>, &'static str>("connection refused")
                } else {
                    Ok(Response::new(Full::new(Bytes::from_static(b"{}"))))
                }
            }
        });
        let tokens = Limit::new(
            "t",
            vec![],
            Quantity::Tokens(15),
            Algorithm::FixedWindow,
            Duration::from_secs(60),
        )
        .unwrap();
        let conc = Limit::new(
            "c",
            vec![],
            Quantity::Concurrency(1),
            Algorithm::Gcra,
            Duration::from_secs(60),
        )
        .unwrap();
        let svc = ServiceBuilder::new()
            .layer(
                RateLimitLayer::new(MemoryStore::new())
                    .with_limit(tokens)
                    .with_limit(conc),
            )
            .service(failing);
        assert!(svc.clone().oneshot(req()).await.is_err());
        // Both the 10-token reservation and the slot came back: the next fits (had the
        // reservation stayed, 10 + 10 > 15 would be refused).
        let res = svc.clone().oneshot(req()).await.unwrap();
        assert_eq!(res.status(), 200);
    }

    #[tokio::test]
    async fn spend_is_reserved_and_trued_up_with_a_price_function() {
        // $1 per token, $25 a minute: a request reserves its max_tokens (10) = $10, the
        // answer reports 12 + 2 = 14 tokens = $14 spent.
        let upstream = service_fn(|_req: Request<Body>| async {
            let res = Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(
                    br#"{"usage":{"prompt_tokens":12,"completion_tokens":2}}"#,
                )))
                .unwrap();
            Ok::<_, Infallible>(res)
        });
        let spend = Limit::new(
            "spend",
            vec![],
            Quantity::CostUsd(25.0),
            Algorithm::FixedWindow,
            Duration::from_secs(60),
        )
        .unwrap();
        let svc = ServiceBuilder::new()
            .layer(
                RateLimitLayer::new(MemoryStore::new())
                    .with_limit(spend)
                    .with_price_fn(|_req, u| Some(u.total_tokens() as f64)),
            )
            .service(upstream);
        use http_body_util::BodyExt;
        let first = svc.clone().oneshot(req()).await.unwrap();
        first.into_body().collect().await.unwrap();
        // $14 spent; the next reserves $10: 24 <= 25.
        let second = svc.clone().oneshot(req()).await.unwrap();
        assert_eq!(second.status(), 200);
        second.into_body().collect().await.unwrap();
        // $28 spent: over.
        let third = svc.clone().oneshot(req()).await.unwrap();
        assert_eq!(third.status(), 429);
    }
}
