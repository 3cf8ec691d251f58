use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tower_ai_core::{Body, BoxError, ErrorResponse, LlmRequest, ProviderPath, headers};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::key::{TokenSource, VirtualKey, find_token};
use crate::layer::Shared;

/// Lets in only requests with a gateway token. See the [crate docs](crate).
pub struct Auth<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S: Clone> Clone for Auth<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Auth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Auth<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// What is left to check once the body is read: the key's models.
pub(crate) struct ModelCheck {
    pub(crate) key: Arc<VirtualKey>,
    pub(crate) provider: Arc<str>,
    pub(crate) path: Arc<str>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let check = match admit(&self.shared, &mut parts) {
            Ok(check) => check,
            Err(refusal) => return ResponseFuture::refused(refusal),
        };
        // The service that was made ready goes with this request; a fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        let body = Body::new(body);
        let Some(check) = check else {
            return ResponseFuture::calling(inner.call(Request::from_parts(parts, body)));
        };
        match body.as_bytes().cloned() {
            Some(bytes) => match check_models(&check, &mut parts, bytes) {
                Ok(body) => ResponseFuture::calling(inner.call(Request::from_parts(parts, body))),
                Err(refusal) => ResponseFuture::refused(refusal),
            },
            None => ResponseFuture::reading(
                body.read(self.shared.max_body_bytes),
                inner,
                parts,
                check,
                self.shared.max_body_bytes,
            ),
        }
    }
}

/// Finds the caller's virtual key, checks its provider, takes the token out of the
/// request and leaves the key's facts in the extensions. `Some` when its models are
/// still to be checked against the body.
fn admit(
    shared: &Shared,
    parts: &mut http::request::Parts,
) -> Result<Option<ModelCheck>, ErrorResponse> {
    let (token, source) = find_token(&parts.headers).ok_or_else(|| {
        ErrorResponse::unauthorized(
            "this gateway needs a token: send `aigw-authorization: Bearer <token>`",
        )
    })?;
    let key = shared
        .store
        .authenticate(token)
        .ok_or_else(|| ErrorResponse::unauthorized("the gateway token is not valid"))?
        .clone();
    let target = ProviderPath::parse(parts.uri.path());
    if key.restricts_providers() || key.restricts_models() {
        match &target {
            Some(t) if key.allows_provider(t.provider) => {}
            Some(t) => {
                return Err(forbidden(format!(
                    "this gateway token may not use provider `{}`",
                    t.provider.chars().take(64).collect::<String>()
                )));
            }
            None => {
                return Err(forbidden(
                    "this gateway token may only call /{provider}/... paths",
                ));
            }
        }
    }
    // Only a key with a model list needs the path again, once the body is in.
    let check = match target {
        Some(t) if key.restricts_models() => Some(ModelCheck {
            key: key.clone(),
            provider: Arc::from(t.provider),
            path: Arc::from(t.rest),
        }),
        _ => None,
    };
    // The token goes no further: not to a provider, not into any layer's keys.
    headers::AUTHORIZATION.remove(&mut parts.headers);
    if let TokenSource::Credential(name) = source {
        parts.headers.remove(name);
    }
    let ext = &mut parts.extensions;
    ext.insert(key.id().clone());
    if !key.provider_keys().is_empty() {
        ext.insert(key.provider_keys().clone());
    }
    if !key.tags().0.is_empty() {
        ext.insert(key.tags().clone());
    }
    Ok(check)
}

/// The body again once its model is allowed: both the model the body names and the one
/// the path names (Gemini, Workers AI, Azure deployments), so neither can smuggle in the
/// other. The parsed request is left in the extensions for the layers below.
pub(crate) fn check_models(
    check: &ModelCheck,
    parts: &mut http::request::Parts,
    bytes: Bytes,
) -> Result<Body, ErrorResponse> {
    let llm = LlmRequest::parse(&check.provider, &check.path, bytes.clone());
    let in_path = LlmRequest::parse(&check.provider, &check.path, Bytes::new()).model;
    if llm.model.is_none() {
        return Err(forbidden("this gateway token must name one of its models"));
    }
    for model in [llm.model.as_deref(), in_path.as_deref()]
        .into_iter()
        .flatten()
    {
        if !check.key.allows_model(Some(model)) {
            return Err(forbidden(format!(
                "this gateway token may not use model `{}`",
                model.chars().take(64).collect::<String>()
            )));
        }
    }
    parts.extensions.insert(llm);
    Ok(Body::full(bytes))
}

pub(crate) fn forbidden(message: impl Into<std::borrow::Cow<'static, str>>) -> ErrorResponse {
    ErrorResponse::new(StatusCode::FORBIDDEN, "permission_error", message)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;

    use http_body_util::{BodyExt, Full, StreamBody};
    use tokio_test::{assert_pending, assert_ready_ok};
    use tower::{ServiceBuilder, ServiceExt, service_fn};
    use tower_ai_core::{CallerId, CallerTags, ProviderKeys, Providers};
    use tower_layer::Layer;
    use tower_test::mock;

    use super::*;
    use crate::{AuthLayer, KeyStore, TokenHash};

    type Seen = Arc<Mutex<Vec<Request<Body>>>>;

    fn layer() -> AuthLayer {
        let providers = Providers::builtin();
        let keys = ProviderKeys::new()
            .with_key(providers.get("openai").unwrap(), "sk-tenant")
            .unwrap();
        let store = KeyStore::new()
            .with_key(
                VirtualKey::new("open", TokenHash::of("tok-open"))
                    .with_provider_keys(keys)
                    .with_tags([("team", "search")]),
            )
            .unwrap()
            .with_key(
                VirtualKey::new("narrow", TokenHash::of("tok-narrow"))
                    .with_providers(["openai", "google-ai-studio"])
                    .with_models(["gpt-4o-mini", "gemini-2.5-flash"]),
            )
            .unwrap();
        AuthLayer::new(store).with_max_body_bytes(1024)
    }

    async fn call<B>(req: Request<B>) -> (Seen, Response<ResponseBody<Full<Bytes>>>)
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let seen: Seen = Arc::default();
        let s = seen.clone();
        let svc =
            ServiceBuilder::new()
                .layer(layer())
                .service(service_fn(move |req: Request<Body>| {
                    let s = s.clone();
                    async move {
                        s.lock().unwrap().push(req);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
                    }
                }));
        let res = svc.oneshot(req).await.unwrap();
        (seen, res)
    }

    fn post(path: &str, headers: &[(&str, &str)], body: &'static str) -> Request<Full<Bytes>> {
        let mut req = Request::post(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    }

    async fn error_type(res: Response<ResponseBody<Full<Bytes>>>) -> String {
        assert!(res.body().is_own());
        assert_eq!(res.headers()["content-type"], "application/json");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["error"]["type"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn no_token_or_a_wrong_one_never_reaches_inward() {
        for headers in [
            &[][..],
            &[("aigw-authorization", "Bearer tok-wrong")][..],
            &[("authorization", "Bearer sk-a-provider-key")][..],
            &[("aigw-authorization", "tok-ope")][..],
            &[("aigw-authorization", "")][..],
        ] {
            let (seen, res) = call(post("/openai/chat/completions", headers, "{}")).await;
            assert!(seen.lock().unwrap().is_empty(), "{headers:?}");
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"aigw\"");
            assert_eq!(error_type(res).await, "authentication_error");
        }
    }

    #[tokio::test]
    async fn a_valid_token_is_taken_out_and_the_key_left_behind() {
        for (name, value) in [
            ("aigw-authorization", "Bearer tok-open"),
            ("cf-aig-authorization", "Bearer tok-open"),
            ("authorization", "Bearer tok-open"),
            ("x-api-key", "tok-open"),
        ] {
            let (seen, res) = call(post("/openai/chat/completions", &[(name, value)], "{}")).await;
            assert_eq!(res.status(), StatusCode::OK, "{name}");
            let req = seen.lock().unwrap().pop().unwrap();
            assert!(!req.headers().contains_key(name), "{name} went on");
            let ext = req.extensions();
            assert_eq!(
                ext.get::<CallerId>().unwrap().0.as_ref(),
                tower_ai_core::key_id("tok-open")
            );
            assert!(ext.get::<ProviderKeys>().unwrap().get("openai").is_some());
            assert_eq!(
                ext.get::<CallerTags>().unwrap().0[0],
                ("team".to_owned(), "search".to_owned())
            );
        }
        // The client's own provider key, next to a gateway token, stays.
        let (seen, _) = call(post(
            "/openai/chat/completions",
            &[
                ("aigw-authorization", "Bearer tok-open"),
                ("authorization", "Bearer sk-own"),
            ],
            "{}",
        ))
        .await;
        let req = seen.lock().unwrap().pop().unwrap();
        assert_eq!(req.headers()["authorization"], "Bearer sk-own");
        assert!(!req.headers().contains_key("aigw-authorization"));
    }

    #[tokio::test]
    async fn providers_and_models_a_key_may_not_use_are_403() {
        let narrow = [("aigw-authorization", "Bearer tok-narrow")];
        for (path, body) in [
            ("/anthropic/v1/messages", r#"{"model":"gpt-4o-mini"}"#),
            ("/openai/chat/completions", r#"{"model":"gpt-4o"}"#),
            ("/openai/chat/completions", r#"{"messages":[]}"#),
            ("/openai/chat/completions", "not json"),
            ("/", r#"[{"provider":"openai"}]"#),
            // The path's model counts too: no smuggling a model past the check.
            (
                "/google-ai-studio/v1beta/models/gemini-2.5-pro:generateContent",
                r#"{"model":"gemini-2.5-flash"}"#,
            ),
        ] {
            let (seen, res) = call(post(path, &narrow, body)).await;
            assert!(seen.lock().unwrap().is_empty(), "{path} {body}");
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path} {body}");
            assert_eq!(error_type(res).await, "permission_error");
        }
        for (path, body) in [
            ("/openai/chat/completions", r#"{"model":"gpt-4o-mini"}"#),
            (
                "/google-ai-studio/v1beta/models/gemini-2.5-flash:generateContent",
                r#"{"contents":[]}"#,
            ),
        ] {
            let (seen, res) = call(post(path, &narrow, body)).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            let req = seen.lock().unwrap().pop().unwrap();
            // Parsed once, here, for the layers below; the body goes on whole.
            assert!(req.extensions().get::<LlmRequest>().is_some());
            let got = req.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(got, body.as_bytes());
        }
    }

    #[tokio::test]
    async fn a_streamed_body_is_read_to_check_the_model_and_bounded() {
        let stream = |chunks: Vec<&'static str>| {
            let frames = chunks.into_iter().map(|c| {
                Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(c.as_bytes())))
            });
            Request::post("/openai/chat/completions")
                .header("aigw-authorization", "Bearer tok-narrow")
                .body(StreamBody::new(futures_util::stream::iter(frames)))
                .unwrap()
        };
        let (seen, res) = call(stream(vec![r#"{"model":"#, r#""gpt-4o-mini"}"#])).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(seen.lock().unwrap().len(), 1);
        let (seen, res) = call(stream(vec![r#"{"model":"#, r#""gpt-4"}"#])).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(seen.lock().unwrap().is_empty());
        let big: &'static str = Box::leak("x".repeat(2000).into_boxed_str());
        let (seen, res) = call(stream(vec![r#"{"model":"gpt-4o-mini","x":""#, big])).await;
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn readiness_is_the_inner_services() {
        let (inner, mut handle) = mock::pair::<Request<Body>, Response<Full<Bytes>>>();
        let mut svc = layer().layer(inner);
        let mut task = tokio_test::task::spawn(());
        handle.allow(0);
        assert_pending!(
            task.enter(|cx, _| Service::<Request<Full<Bytes>>>::poll_ready(&mut svc, cx))
        );
        handle.allow(1);
        assert_ready_ok!(
            task.enter(|cx, _| Service::<Request<Full<Bytes>>>::poll_ready(&mut svc, cx))
        );
    }
}
