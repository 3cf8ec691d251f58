use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderValue, Request, Response};
use tower_ai_core::{
    Body, BoxError, CallerId, ErrorResponse, FallbackStep, LlmRequest, Operation, ProviderPath,
    ResolvedRoute, WireFormat, headers,
};
use tower_service::Service;

use crate::body::MeteredBody;
use crate::future::{Pre, ResponseFuture};
use crate::inject;
use crate::layer::Shared;
use crate::metadata;
use crate::record::Recorder;
use crate::tracker::Ctx;

/// Meters every request: usage, cost, latency, outcome. See the [crate docs](crate).
pub struct Meter<S, R> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared<R>>,
}

impl<S: Clone, R> Clone for Meter<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug, R> std::fmt::Debug for Meter<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for Meter<S, R>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone,
    R: Recorder,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes>,
{
    type Response = Response<MeteredBody<ResBody, R>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The service that was made ready goes with this request; a fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        let start = Instant::now();
        let started_at = SystemTime::now();
        let (mut parts, body) = req.into_parts();
        let body = Body::new(body);

        // Where does it go? From the route layer below us, or the path above it.
        let target = match parts.extensions.get::<ResolvedRoute>() {
            Some(r) => Some((r.provider.clone(), r.path.clone())),
            // Above a fallback layer: the universal endpoint, labelled by the step that
            // served once the response says which (a `ServedRequest` response extension).
            None if ProviderPath::is_universal(parts.uri.path()) => {
                Some((Arc::<str>::from("universal"), Arc::<str>::from("/")))
            }
            None => ProviderPath::parse(parts.uri.path())
                .map(|p| (Arc::<str>::from(p.provider), Arc::<str>::from(p.rest))),
        };
        let Some((provider, path)) = target else {
            // Not an LLM request: nothing to meter.
            return ResponseFuture::passthrough(inner.call(Request::from_parts(parts, body)));
        };

        // The caller as provider routing saw it before it replaced credentials, or from
        // the headers when the meter is in front of it: then left for the layers below
        // (rate limits, provider routing), so the credential is hashed once.
        let caller = match parts.extensions.get::<CallerId>() {
            Some(c) => Some(c.clone()),
            None => {
                let c = CallerId::from_headers(&parts.headers);
                if let Some(c) = &c {
                    parts.extensions.insert(c.clone());
                }
                c
            }
        };
        let pre = Pre {
            label: self.shared.provider_label(&provider),
            shared: self.shared.clone(),
            start,
            started_at,
            // Read where they are: in the headers, or left by provider routing in front.
            request_id: headers::REQUEST_ID
                .get_in(&parts.headers, &parts.extensions)
                .and_then(|v| v.to_str().ok())
                .map(Arc::from),
            key_id: caller.map(|c| c.0),
            metadata: Vec::new(),
            provider,
            path,
        };
        let pre = match metadata::parse(&parts.headers, &parts.extensions) {
            Ok(metadata) => Pre { metadata, ..pre },
            Err(msg) => return ResponseFuture::own(pre, ErrorResponse::bad_request(msg)),
        };

        // The bytes that go inward are the request's own (a layer above may have changed
        // them since `LlmRequest` was parsed: the meter asks streams for their usage).
        let buffered = body.as_bytes().cloned();
        match buffered {
            Some(bytes) => {
                let (req, ctx, strip) = prepare(pre, parts, bytes);
                ResponseFuture::calling(inner.call(req), ctx, strip)
            }
            None => {
                let limit = self.shared.max_body_bytes;
                ResponseFuture::reading(body.read(limit), inner, parts, pre)
            }
        }
    }
}

/// Builds the request that goes inward once the body is in hand: the `LlmRequest` in
/// the extensions, the usage asked for, the meter's context.
pub(crate) fn prepare<R: Recorder>(
    pre: Pre<R>,
    mut parts: http::request::Parts,
    bytes: Bytes,
) -> (Request<Body>, Ctx<R>, bool) {
    let llm = match parts.extensions.get::<LlmRequest>() {
        Some(l) => l.clone(),
        None => {
            let l = LlmRequest::parse(&pre.provider, &pre.path, bytes.clone());
            parts.extensions.insert(l.clone());
            l
        }
    };
    let format = pre
        .shared
        .providers
        .get(&llm.provider)
        .map_or(WireFormat::OpenAi, |p| p.format());

    let mut body = bytes;
    let mut injected = false;
    if pre.shared.asks_stream_usage(&llm.provider)
        && llm.stream
        && format == WireFormat::OpenAi
        && matches!(
            llm.operation,
            Operation::ChatCompletions | Operation::Completions
        )
        && let Some(with_usage) = inject::include_usage(&body)
    {
        body = with_usage;
        injected = true;
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    }

    let span = tracing::info_span!(
        "gen_ai",
        gen_ai.system = &*llm.provider,
        gen_ai.operation.name = llm.operation.as_str(),
        gen_ai.request.model = llm.model.as_deref().unwrap_or(""),
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        gen_ai.usage.cost = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    // A `/compat` request is labelled by the provider its `model` names.
    let label = if llm.provider != pre.provider {
        pre.shared.provider_label(&llm.provider)
    } else {
        pre.label
    };
    let ctx = Ctx {
        label,
        shared: pre.shared,
        start: pre.start,
        started_at: pre.started_at,
        request_id: pre.request_id,
        key_id: pre.key_id,
        metadata: pre.metadata,
        llm,
        format,
        span,
        fallback_step: parts.extensions.get::<FallbackStep>().map(|s| s.0),
    };
    (Request::from_parts(parts, Body::full(body)), ctx, injected)
}

#[cfg(test)]
mod tests {
    use http::Request;
    use tokio_test::{assert_pending, assert_ready_ok};
    use tower_layer::Layer;
    use tower_test::mock;

    use super::*;
    use crate::MeterLayer;

    #[tokio::test]
    async fn readiness_is_the_inner_services_and_the_ready_one_is_called() {
        let (inner, mut handle) =
            mock::pair::<Request<Body>, Response<http_body_util::Full<Bytes>>>();
        let mut svc = MeterLayer::new(()).layer(inner);
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
        let fut = svc.call(
            Request::post("/openai/chat/completions")
                .body(Body::from("{}"))
                .unwrap(),
        );
        let (req, send) = handle.next_request().await.unwrap();
        assert!(req.extensions().get::<LlmRequest>().is_some());
        // No credential, no caller.
        assert!(req.extensions().get::<CallerId>().is_none());
        send.send_response(Response::new(http_body_util::Full::new(
            Bytes::from_static(b"{}"),
        )));
        let res = fut.await.unwrap();
        assert_eq!(res.status(), 200);
    }

    type Records = std::sync::Arc<std::sync::Mutex<Vec<crate::Record>>>;

    fn recording() -> (Records, MeterLayer<impl Recorder>) {
        let records = Records::default();
        let sink = records.clone();
        let layer = MeterLayer::new(move |r: &crate::Record| sink.lock().unwrap().push(r.clone()));
        (records, layer)
    }

    fn json_upstream() -> impl Service<
        Request<Body>,
        Response = Response<http_body_util::Full<Bytes>>,
        Error = std::convert::Infallible,
        Future = impl Future<
            Output = Result<Response<http_body_util::Full<Bytes>>, std::convert::Infallible>,
        >,
    > + Clone {
        tower::service_fn(|_req: Request<Body>| async {
            Ok(Response::builder()
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(Bytes::from_static(b"{}")))
                .unwrap())
        })
    }

    #[tokio::test]
    async fn providers_outside_the_registry_are_recorded_as_unknown() {
        use http_body_util::BodyExt;
        use tower::ServiceExt;

        let (records, layer) = recording();
        let svc = layer.layer(json_upstream());
        for path in ["/openai/chat/completions", "/made-up-1/x", "/made-up-2/x"] {
            let req = Request::post(path).body(Body::from("{}")).unwrap();
            let res = svc.clone().oneshot(req).await.unwrap();
            res.into_body().collect().await.unwrap();
        }
        let providers: Vec<_> = records
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.provider.to_string())
            .collect();
        assert_eq!(providers, ["openai", "unknown", "unknown"]);
    }

    #[tokio::test]
    async fn stream_usage_is_asked_only_of_providers_that_accept_it() {
        use tower::ServiceExt;

        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let upstream = tower::service_fn(move |req: Request<Body>| {
            let s = s.clone();
            async move {
                let body = req.into_body().as_bytes().cloned().unwrap_or_default();
                s.lock().unwrap().push(body);
                Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                    Bytes::new(),
                )))
            }
        });
        let stream = r#"{"model":"m","stream":true}"#;
        let send = |layer: MeterLayer<()>, path: &'static str| {
            let svc = layer.layer(upstream.clone());
            async move {
                let req = Request::post(path).body(Body::from(stream)).unwrap();
                drop(svc.oneshot(req).await.unwrap());
            }
        };
        let asked =
            |i: usize| memchr::memmem::find(&seen.lock().unwrap()[i], b"include_usage").is_some();
        send(MeterLayer::new(()), "/openai/chat/completions").await;
        send(MeterLayer::new(()), "/groq/chat/completions").await;
        // Old Azure API versions and custom servers may refuse the field.
        send(MeterLayer::new(()), "/azure-openai/r/d/chat/completions").await;
        send(MeterLayer::new(()), "/mistral/v1/chat/completions").await;
        assert_eq!(
            (asked(0), asked(1), asked(2), asked(3)),
            (true, true, false, false)
        );
        // Configurable.
        let layer = MeterLayer::new(()).with_stream_usage_providers(["azure-openai"]);
        send(layer.clone(), "/azure-openai/r/d/chat/completions").await;
        send(layer, "/openai/chat/completions").await;
        assert_eq!((asked(4), asked(5)), (true, false));
    }

    #[tokio::test]
    async fn a_future_dropped_before_the_response_head_is_recorded_cancelled() {
        let (records, layer) = recording();
        let upstream = tower::service_fn(|_req: Request<Body>| {
            std::future::pending::<
                Result<Response<http_body_util::Full<Bytes>>, std::convert::Infallible>,
            >()
        });
        let mut svc = layer.layer(upstream);
        let req = Request::post("/openai/chat/completions")
            .header("aigw-request-id", "r-1")
            .body(Body::from(r#"{"model":"gpt-4o-mini"}"#))
            .unwrap();
        let mut fut = Box::pin(svc.call(req));
        let waker = std::task::Waker::noop();
        assert!(
            fut.as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending()
        );
        assert!(records.lock().unwrap().is_empty());
        drop(fut);
        let records = records.lock().unwrap();
        assert_eq!(records.len(), 1, "{records:?}");
        let r = &records[0];
        assert_eq!(r.outcome, crate::Outcome::Cancelled);
        assert_eq!(r.status, None);
        assert_eq!(r.usage, None);
        assert_eq!(r.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(r.request_id.as_deref(), Some("r-1"));
    }

    #[tokio::test]
    async fn a_future_dropped_while_reading_the_body_is_recorded_cancelled() {
        let (records, layer) = recording();
        let mut svc = layer.layer(json_upstream());
        // A streaming body that never ends: the meter is still reading it.
        let (_tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        struct Never(tokio::sync::mpsc::Receiver<Bytes>);
        impl http_body::Body for Never {
            type Data = Bytes;
            type Error = std::convert::Infallible;
            fn poll_frame(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
                self.0
                    .poll_recv(cx)
                    .map(|c| c.map(|b| Ok(http_body::Frame::data(b))))
            }
        }
        let req = Request::post("/openai/chat/completions")
            .body(Never(rx))
            .unwrap();
        let mut fut = Box::pin(svc.call(req));
        let waker = std::task::Waker::noop();
        assert!(
            fut.as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending()
        );
        drop(fut);
        let records = records.lock().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].outcome, crate::Outcome::Cancelled);
        assert_eq!(records[0].status, None);
    }

    #[tokio::test]
    async fn the_caller_is_hashed_once_here_and_left_for_the_layers_below() {
        let (records, layer) = recording();
        let (inner, mut handle) =
            mock::pair::<Request<Body>, Response<http_body_util::Full<Bytes>>>();
        handle.allow(1);
        let mut svc = layer.layer(inner);
        std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut svc, cx))
            .await
            .unwrap();
        let fut = svc.call(
            Request::post("/openai/chat/completions")
                .header("authorization", "Bearer sk-client")
                .body(Body::from("{}"))
                .unwrap(),
        );
        let (req, send) = handle.next_request().await.unwrap();
        let below = req.extensions().get::<CallerId>().cloned();
        assert_eq!(
            below.unwrap().0.as_ref(),
            tower_ai_core::key_id("sk-client")
        );
        send.send_response(Response::new(http_body_util::Full::new(
            Bytes::from_static(b"{}"),
        )));
        let res = fut.await.unwrap();
        http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap();
        let records = records.lock().unwrap();
        assert_eq!(
            records[0].key_id.as_deref(),
            Some(tower_ai_core::key_id("sk-client").as_str())
        );
    }
}
