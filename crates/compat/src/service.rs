use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use tower_ai_core::{Body, BoxError};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::layer::Shared;
use crate::plan::{self, Endpoint, Plan, Refusal};

/// Serves `/compat/...` by translating to the provider `model` names; passes every
/// other request through. See the [crate docs](crate).
pub struct Compat<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S: Clone> Clone for Compat<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Compat<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compat")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Compat<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let Some((endpoint, prefix)) = plan::parse_path(req.uri().path()) else {
            // Not a `/compat/...` request: on to the service made ready, as it is.
            return ResponseFuture::calling(self.inner.call(req.map(Body::new)), None);
        };
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        let prefix = prefix.map(str::to_owned);
        let (parts, body) = req.into_parts();
        if parts.method != Method::POST {
            return ResponseFuture::refused(Refusal {
                status: StatusCode::METHOD_NOT_ALLOWED,
                body: crate::error::error_body(
                    endpoint.dialect(),
                    StatusCode::METHOD_NOT_ALLOWED,
                    None,
                    "this endpoint takes POST",
                    None,
                ),
            });
        }
        let body = Body::new(body);
        match body.as_bytes().cloned() {
            Some(bytes) => {
                match prepare(&self.shared, parts, &bytes, endpoint, prefix.as_deref()) {
                    Ok((req, plan)) => ResponseFuture::calling(inner.call(req), Some(plan)),
                    Err(refusal) => ResponseFuture::refused(refusal),
                }
            }
            None => {
                let limit = self.shared.max_body_bytes;
                ResponseFuture::reading(
                    body.read(limit),
                    inner,
                    parts,
                    endpoint,
                    prefix,
                    self.shared.clone(),
                )
            }
        }
    }
}

/// The native request, once the client's body is in hand.
pub(crate) fn prepare(
    shared: &Shared,
    mut parts: http::request::Parts,
    bytes: &Bytes,
    endpoint: Endpoint,
    prefix: Option<&str>,
) -> Result<(Request<Body>, Plan), Refusal> {
    let native = plan::native(&shared.providers, &shared.options, endpoint, prefix, bytes)?;
    plan::rewrite_head(&mut parts, &native).map_err(|_| Refusal {
        status: StatusCode::BAD_REQUEST,
        body: crate::error::error_body(
            endpoint.dialect(),
            StatusCode::BAD_REQUEST,
            None,
            "the model does not make a valid path",
            Some("model"),
        ),
    })?;
    // The facts of the request that goes on, for the layers below.
    parts.extensions.insert(native.plan.llm.clone());
    Ok((
        Request::from_parts(parts, Body::full(native.body)),
        native.plan,
    ))
}

pub(crate) fn body_refusal(endpoint: Endpoint, e: &BoxError, limit: usize) -> Refusal {
    let (status, message) = if e.is::<http_body_util::LengthLimitError>() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            "the request body could not be read".to_owned(),
        )
    };
    Refusal {
        status,
        body: crate::error::error_body(endpoint.dialect(), status, None, &message, None),
    }
}

pub(crate) fn respond<B>(res: Response<B>, plan: Option<Plan>) -> Response<ResponseBody<B>> {
    use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
    use tower_ai_core::{ResponseUsage, UsageSlot};

    use crate::body::{JsonKind, State};
    use crate::plan::Translation;
    use crate::stream::{AnthropicToOpenAi, GeminiToOpenAi, OpenAiToAnthropic, StreamTranslator};

    let Some(plan) = plan.filter(|p| !matches!(p.translation, Translation::Pass)) else {
        return res.map(ResponseBody::pass);
    };
    let (mut parts, body) = res.into_parts();
    let status = parts.status;
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // The native usage, for the layers above (unless a layer below already reads it).
    let usage = if parts.extensions.get::<UsageSlot>().is_some() {
        None
    } else {
        let slot = UsageSlot::new();
        let reader = ResponseUsage::new(
            plan.target,
            plan.llm.operation,
            plan.llm.body.clone(),
            status.as_u16(),
            &content_type,
            slot.clone(),
        );
        parts.extensions.insert(slot);
        Some(Box::new(reader))
    };
    let created = plan::created();
    let state = if !status.is_success() {
        parts
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        State::Json {
            buf: Default::default(),
            kind: JsonKind::Error {
                from: plan.target,
                to: plan.dialect,
                status,
            },
            done: false,
        }
    } else if plan.stream && content_type.starts_with("text/event-stream") {
        let model = &plan.model;
        let translator =
            match plan.translation {
                Translation::AnthropicToOpenAi => StreamTranslator::AnthropicToOpenAi(
                    AnthropicToOpenAi::new(model, created, plan.include_usage),
                ),
                Translation::GeminiToOpenAi => StreamTranslator::GeminiToOpenAi(
                    GeminiToOpenAi::new(model, created, plan.include_usage),
                ),
                Translation::OpenAiToAnthropic => {
                    StreamTranslator::OpenAiToAnthropic(OpenAiToAnthropic::new(model))
                }
                _ => StreamTranslator::GeminiToAnthropic(
                    GeminiToOpenAi::new(model, created, true),
                    OpenAiToAnthropic::new(model),
                ),
            };
        State::Stream {
            parser: Default::default(),
            translator: Box::new(translator),
            out: Default::default(),
            ended: false,
            truncated: false,
        }
    } else {
        parts
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        State::Json {
            buf: Default::default(),
            kind: JsonKind::Answer {
                translation: plan.translation,
                model: plan.model,
                created,
            },
            done: false,
        }
    };
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, ResponseBody::translated(body, usage, state))
}
