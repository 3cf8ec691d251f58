//! The attempt loop: steps in order, retries with backoff, breakers, stream peeking.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, LengthLimitError};
use tokio::time::{Instant, sleep, timeout_at};
use tower::ServiceExt;
use tower_ai_core::{
    AuthStyle, Body, BoxError, ErrorResponse, FallbackStep, GatewayGenerated, LlmRequest,
    ProviderPath, ResolvedRoute, ServedRequest, SseParser, WireFormat, headers,
};
use tower_service::Service;

use crate::body::{ErrorFormat, EventKind, Guarded, ResponseBody, classify};
use crate::breaker::Admit;
use crate::layer::{Shared, Stats};
use crate::policy::{RetryPolicy, retry_after};
use crate::step::Step;

type Res<B> = Response<ResponseBody<B>>;

/// How one attempt went.
enum Outcome<B, E> {
    /// Served: the response goes to the client.
    Served(Res<B>),
    /// Failed in a way that moves on: a trigger status, an error, a timeout, a stream
    /// that failed before it was committed.
    Failed(Failure<B, E>),
}

struct Failure<B, E> {
    /// What the client gets if this was the last attempt.
    last: Last<B, E>,
    /// Whether it counts against the target's breaker (the provider is failing, not
    /// the gateway refusing or the provider rate limiting).
    breaker: bool,
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
}

enum Last<B, E> {
    Response(Res<B>),
    Error(E),
    Timeout,
}

static SEED: AtomicU64 = AtomicU64::new(0);

fn rng(shared: &Shared) -> fastrand::Rng {
    match shared.seed {
        Some(seed) => {
            fastrand::Rng::with_seed(seed.wrapping_add(SEED.fetch_add(1, Ordering::Relaxed)))
        }
        None => fastrand::Rng::new(),
    }
}

fn own<B>(e: ErrorResponse) -> Res<B> {
    e.into_response()
}

/// Runs a request that has steps or retries: see the crate docs for the rules.
pub(crate) async fn run<S, B>(
    shared: Arc<Shared>,
    ready: S,
    parts: Parts,
    body: Body,
    universal: bool,
) -> Result<Res<B>, S::Error>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let start = Instant::now();
    // The body is buffered once and replayed for every attempt.
    let bytes = match body.as_bytes() {
        Some(b) => b.clone(),
        None => match read_body(body, shared.max_body_bytes).await {
            Ok(b) => b,
            Err(e) => return Ok(own(e)),
        },
    };
    let path = parts.uri.path();
    let mut rng = rng(&shared);

    let (steps, policy, single) = if universal {
        let prefix = path.trim_end_matches('/');
        match crate::step::parse_universal(&bytes, prefix) {
            Ok(steps) => (steps, shared.policy.clone(), false),
            Err(e) => return Ok(own(e)),
        }
    } else if let Some(route) = route_for(&shared, &parts, &bytes) {
        match route.expand(path, parts.uri.query(), &bytes, &mut rng) {
            Ok(steps) => (
                steps,
                route
                    .policy
                    .clone()
                    .unwrap_or_else(|| shared.policy.clone()),
                false,
            ),
            Err(e) => return Ok(own(e)),
        }
    } else if shared.plain_retries || RetryPolicy::has_overrides(&parts.headers) {
        let provider = ProviderPath::parse(path).map_or("", |p| p.provider);
        let step = Step {
            index: 0,
            provider: Arc::from(provider),
            path: String::new(),
            headers: http::HeaderMap::new(),
            body: bytes.clone(),
            keys: None,
            strip_credentials: false,
        };
        (vec![step], shared.policy.clone(), true)
    } else {
        // A routed layer reads every POST body for its model; this one named no route.
        let req = Request::from_parts(parts, Body::full(bytes));
        return ready.oneshot(req).await.map(|r| r.map(ResponseBody::inner));
    };
    let policy = match policy.with_headers(&parts.headers) {
        Ok(p) => p,
        Err(e) => return Ok(own(e)),
    };
    Stats::add(&shared.stats.requests);
    let total = policy.total_timeout.map(|d| start + d);
    let proto = ready.clone();
    let mut ready = Some(ready);
    let mut last: Option<(u32, Last<B, S::Error>)> = None;
    let mut skipped_for: Option<Duration> = None;

    'steps: for (pos, step) in steps.iter().enumerate() {
        let admit = shared.breakers.admit(&step.provider, Instant::now());
        if let Admit::No(wait) = admit {
            Stats::add(&shared.stats.skipped);
            tracing::debug!(target: "tower_ai_fallback", step = step.index, provider = &*step.provider, "circuit open: step skipped");
            skipped_for = Some(skipped_for.map_or(wait, |w| w.min(wait)));
            continue;
        }
        let format = error_format(&shared, step, path, single);
        for attempt in 1..=policy.max_attempts {
            let now = Instant::now();
            if total.is_some_and(|t| now >= t) {
                break 'steps;
            }
            let key = match &step.keys {
                Some(ring) => match ring.pick(now) {
                    Some((i, k)) => Some((i, k.to_owned())),
                    None => {
                        tracing::warn!(target: "tower_ai_fallback", step = step.index, "every key of the target is benched");
                        break;
                    }
                },
                None => None,
            };
            let req = match request(
                &shared,
                step,
                &parts,
                single,
                key.as_ref().map(|(_, k)| &**k),
            ) {
                Ok(r) => r,
                Err(e) => return Ok(own(e)),
            };
            let mut svc = match ready.take() {
                Some(s) => s,
                None => {
                    let mut s = proto.clone();
                    s.ready().await?;
                    s
                }
            };
            Stats::add(&shared.stats.attempts);
            shared.breakers.sent(&step.provider, now);
            if attempt > 1 {
                Stats::add(&shared.stats.retries);
            }
            let deadline = earliest(policy.attempt_timeout.map(|d| now + d), total);
            let fut = svc.call(req);
            let outcome = attempt_once(fut, deadline, &policy, format).await;
            let failure = match outcome {
                Outcome::Served(mut res) => {
                    // The target answered (a success, or the caller's own error).
                    let keyed_refusal = key.is_some()
                        && matches!(res.status().as_u16(), 401..=403)
                        && res.extensions().get::<GatewayGenerated>().is_none();
                    if !keyed_refusal {
                        if res.status().is_server_error() {
                            shared.breakers.failure(&step.provider, Instant::now());
                        } else {
                            shared.breakers.success(&step.provider, Instant::now());
                        }
                        if pos > 0 {
                            Stats::add(&shared.stats.fallbacks);
                        }
                        if let Some((_, Last::Response(old))) = last.take() {
                            tokio::spawn(discard(old));
                        }
                        mark(&mut res, step.index);
                        if !single {
                            served(&mut res, step);
                        }
                        return Ok(res);
                    }
                    // The target's own key was refused: bench it, try the next.
                    let (i, _) = key.as_ref().expect("keyed");
                    step.keys.as_ref().expect("keyed").kill(*i, Instant::now());
                    tracing::warn!(target: "tower_ai_fallback", step = step.index, key = i, status = res.status().as_u16(), "provider key refused: benched");
                    Failure {
                        status: Some(res.status()),
                        last: Last::Response(res),
                        breaker: false,
                        retry_after: None,
                    }
                }
                Outcome::Failed(f) => f,
            };
            if failure.breaker {
                shared.breakers.failure(&step.provider, Instant::now());
            } else if matches!(admit, Admit::Probe) {
                // A probe that met no provider failure does not leave the circuit stuck.
                shared.breakers.success(&step.provider, Instant::now());
            }
            if let (Some(StatusCode::TOO_MANY_REQUESTS), Some((i, _)), Some(ring)) =
                (failure.status, &key, &step.keys)
            {
                ring.rotate(*i);
            }
            tracing::info!(
                target: "tower_ai_fallback",
                step = step.index,
                provider = &*step.provider,
                attempt,
                status = failure.status.map(|s| s.as_u16()),
                "attempt failed"
            );
            let retry_after = failure.retry_after;
            if let Some((_, Last::Response(old))) = last.replace((step.index, failure.last)) {
                tokio::spawn(discard(old));
            }
            if attempt == policy.max_attempts || matches!(admit, Admit::Probe) {
                break;
            }
            let mut delay = policy.delay(attempt);
            if policy.jitter {
                delay = Duration::from_millis(rng.u64(0..=delay.as_millis() as u64));
            }
            if let Some(ra) = retry_after {
                if ra > policy.max_retry_delay {
                    // The provider asks for longer than a retry may wait: next step.
                    break;
                }
                delay = delay.max(ra);
            }
            if total.is_some_and(|t| Instant::now() + delay >= t) {
                // The wait does not fit the deadline: try the next step now.
                break;
            }
            sleep(delay).await;
        }
    }

    Stats::add(&shared.stats.exhausted);
    Ok(match last {
        Some((index, Last::Response(mut res))) => {
            mark(&mut res, index);
            if let Some(step) = steps.iter().find(|s| s.index == index).filter(|_| !single) {
                served(&mut res, step);
            }
            res
        }
        Some((_, Last::Error(e))) => return Err(e),
        Some((_, Last::Timeout)) => own(ErrorResponse::gateway_timeout(
            "the provider did not answer in time",
        )),
        None if total.is_some_and(|t| Instant::now() >= t) => own(ErrorResponse::gateway_timeout(
            "the request's deadline passed before any provider answered",
        )),
        None => {
            let mut res: Res<B> = own(ErrorResponse::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "no target can take the request: their circuits are open (they failed repeatedly) or their keys were refused",
            ));
            if let Some(wait) = skipped_for {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                res.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            res
        }
    })
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Reads the client's body, at most `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ErrorResponse> {
    body.read(limit).await.map_err(|e| body_error(&*e, limit))
}

fn body_error(e: &(dyn std::error::Error + 'static), limit: usize) -> ErrorResponse {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<LengthLimitError>() {
            return ErrorResponse::payload_too_large(limit);
        }
        cur = e.source();
    }
    ErrorResponse::bad_request("could not read the request body")
}

/// The configured route a request's `model` names, if any.
fn route_for<'a>(shared: &'a Shared, parts: &Parts, body: &Bytes) -> Option<&'a Arc<crate::Route>> {
    if shared.routes.is_empty() || parts.method != Method::POST {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Model<'a> {
        #[serde(borrow)]
        model: Option<std::borrow::Cow<'a, str>>,
    }
    let model = serde_json::from_slice::<Model<'_>>(body).ok()?.model?;
    shared.routes.get(&*model)
}

fn mark<B>(res: &mut Res<B>, index: u32) {
    res.headers_mut()
        .insert(headers::STEP.name.clone(), HeaderValue::from(index));
    res.extensions_mut().insert(FallbackStep(index));
}

/// Tells the layers above which provider and model a step went to (a meter above the
/// fallback layer records the step that served, not the client's request).
fn served<B>(res: &mut Res<B>, step: &Step) {
    if let Some(p) = ProviderPath::parse(step.path.split('?').next().unwrap_or("")) {
        res.extensions_mut().insert(ServedRequest {
            provider: Arc::from(p.provider),
            path: Arc::from(p.rest),
            body: step.body.clone(),
        });
    }
}

/// Reads a superseded failure's small body in the background, so its connection goes
/// back to the pool and the layers below see it end (the meter records it complete); a
/// large or slow one is dropped.
async fn discard<B>(res: Res<B>)
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let body = res.into_body();
    let small = http_body::Body::size_hint(&body)
        .upper()
        .is_some_and(|n| n <= 64 * 1024);
    if small {
        let _ = tokio::time::timeout(Duration::from_secs(1), body.collect()).await;
    }
}

fn error_format(shared: &Shared, step: &Step, path: &str, single: bool) -> ErrorFormat {
    let provider = if single {
        ProviderPath::parse(path)
    } else {
        ProviderPath::parse(&step.path)
    };
    let Some(p) = provider else {
        return ErrorFormat::OpenAi;
    };
    if p.provider == "compat" {
        return if p.rest.starts_with("/v1/messages") {
            ErrorFormat::Anthropic
        } else {
            ErrorFormat::OpenAi
        };
    }
    match shared.providers.get(p.provider).map(|p| p.format()) {
        Some(WireFormat::Anthropic) => ErrorFormat::Anthropic,
        _ => ErrorFormat::OpenAi,
    }
}

/// The request for one attempt of `step`.
fn request(
    shared: &Shared,
    step: &Step,
    parts: &Parts,
    single: bool,
    key: Option<&str>,
) -> Result<Request<Body>, ErrorResponse> {
    let mut req = Request::new(Body::full(step.body.clone()));
    *req.version_mut() = parts.version;
    *req.extensions_mut() = parts.extensions.clone();
    let mut h = parts.headers.clone();
    if single {
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = parts.uri.clone();
    } else {
        *req.method_mut() = Method::POST;
        *req.uri_mut() = Uri::try_from(step.path.as_str()).map_err(|_| {
            ErrorResponse::bad_request(format!("step {}: invalid endpoint", step.index))
        })?;
        h.remove(CONTENT_LENGTH);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if step.strip_credentials {
            for name in AuthStyle::CREDENTIAL_HEADERS {
                h.remove(name);
            }
        }
        for (name, value) in &step.headers {
            h.insert(name.clone(), value.clone());
        }
        // What a layer above parsed was the client's request, not this step's.
        req.extensions_mut().remove::<LlmRequest>();
        req.extensions_mut().remove::<ResolvedRoute>();
    }
    *req.headers_mut() = h;
    // The layers below record which step an attempt was (the meter's `fallback_step`).
    req.extensions_mut().insert(FallbackStep(step.index));
    if let Some(key) = key {
        let auth = shared
            .providers
            .get(&step.provider)
            .map_or(AuthStyle::Bearer, |p| p.auth());
        let value = auth.header_value(key).map_err(|_| {
            ErrorResponse::bad_request("a configured key is not a valid header value")
        })?;
        let h = req.headers_mut();
        for name in AuthStyle::CREDENTIAL_HEADERS {
            h.remove(name);
        }
        h.insert(auth.header_name(), value);
    }
    Ok(req)
}

/// One attempt: the call within its deadline, then, for a stream, its first events.
async fn attempt_once<F, B, E>(
    fut: F,
    deadline: Option<Instant>,
    policy: &RetryPolicy,
    format: ErrorFormat,
) -> Outcome<B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let res = match deadline {
        Some(d) => match timeout_at(d, fut).await {
            Ok(r) => r,
            Err(_) => return failed(Last::Timeout, true, None, None),
        },
        None => fut.await,
    };
    let res = match res {
        Ok(r) => r,
        Err(e) => return failed(Last::Error(e), true, None, None),
    };
    let status = res.status();
    let generated = res.extensions().get::<GatewayGenerated>().is_some();
    if policy.triggers.matches(status) {
        let retry_after = retry_after(res.headers());
        // A 429 is the provider pacing us, not failing; the gateway's own refusals
        // say nothing about the provider.
        let breaker = !generated && status != StatusCode::TOO_MANY_REQUESTS;
        return failed(
            Last::Response(res.map(ResponseBody::inner)),
            breaker,
            Some(status),
            retry_after,
        );
    }
    if !status.is_success() || !is_event_stream(&res) {
        return Outcome::Served(res.map(ResponseBody::inner));
    }
    peek(res, deadline, policy, format).await
}

fn failed<B, E>(
    last: Last<B, E>,
    breaker: bool,
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
) -> Outcome<B, E> {
    Outcome::Failed(Failure {
        last,
        breaker,
        status,
        retry_after,
    })
}

/// A stream that ended before any content and without its own end event.
#[derive(Debug)]
struct EndedEarly;

impl std::fmt::Display for EndedEarly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the provider's stream ended before any content")
    }
}

impl std::error::Error for EndedEarly {}

fn is_event_stream<B>(res: &Response<B>) -> bool {
    res.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// The most a stream's held start-up events may take before they are committed anyway.
const MAX_HELD_BYTES: usize = 256 * 1024;

/// Reads a stream's first events before committing it: content-free start-up events are
/// held (for at most `stream_hold`), the first content commits, an error event or a
/// failure before it moves on to the next attempt.
async fn peek<B, E>(
    res: Response<B>,
    deadline: Option<Instant>,
    policy: &RetryPolicy,
    format: ErrorFormat,
) -> Outcome<B, E>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = res.into_parts();
    let mut body = Box::pin(body);
    let mut parser = SseParser::new();
    let mut held = VecDeque::new();
    let mut hold_until: Option<Instant> = None;
    let mut seen_end = false;
    let mut held_bytes = 0usize;
    let guarded = |held: VecDeque<http_body::Frame<Bytes>>,
                   body: Option<std::pin::Pin<Box<B>>>,
                   error: Option<BoxError>,
                   ended: bool| Guarded {
        held,
        body,
        idle: policy.stream_idle_timeout.map(|d| (d, Box::pin(sleep(d)))),
        format,
        error,
        ended,
    };
    loop {
        // Before the first byte the attempt's deadline applies; after it, the hold.
        let wait = if held.is_empty() {
            deadline
        } else {
            hold_until
        };
        let frame = match wait {
            Some(t) => match timeout_at(t, body.frame()).await {
                Ok(f) => f,
                Err(_) if held.is_empty() => return failed(Last::Timeout, true, None, None),
                Err(_) => break,
            },
            None => body.frame().await,
        };
        match frame {
            None if seen_end => {
                let res = Response::from_parts(
                    parts,
                    ResponseBody::guarded(guarded(held, None, None, true)),
                );
                return Outcome::Served(res);
            }
            None => {
                // Ended before any content and without its own end: a truncated stream.
                let e: BoxError = Box::new(EndedEarly);
                let res = Response::from_parts(
                    parts,
                    ResponseBody::guarded(guarded(held, None, Some(e), true)),
                );
                return failed(Last::Response(res), true, None, None);
            }
            Some(Err(e)) => {
                let res = Response::from_parts(
                    parts,
                    ResponseBody::guarded(guarded(held, None, Some(e.into()), true)),
                );
                return failed(Last::Response(res), true, None, None);
            }
            Some(Ok(frame)) => {
                let mut verdict = EventKind::Preamble;
                match frame.data_ref() {
                    Some(data) => parser.feed(data, |e| {
                        verdict = match (verdict, classify(&e)) {
                            (EventKind::Error, _) | (_, EventKind::Error) => EventKind::Error,
                            (EventKind::Content, _) | (_, EventKind::Content) => EventKind::Content,
                            (EventKind::End, _) | (_, EventKind::End) => EventKind::End,
                            _ => EventKind::Preamble,
                        };
                    }),
                    // Trailers: the stream is over.
                    None => verdict = EventKind::End,
                }
                held_bytes += frame.data_ref().map_or(0, |d| d.len());
                held.push_back(frame);
                if held_bytes > MAX_HELD_BYTES {
                    // A provider sending start-up events without end: hold no more.
                    break;
                }
                if hold_until.is_none() {
                    hold_until = Some(Instant::now() + policy.stream_hold);
                }
                match verdict {
                    EventKind::Error => {
                        let res = Response::from_parts(
                            parts,
                            ResponseBody::guarded(guarded(held, Some(body), None, false)),
                        );
                        return failed(Last::Response(res), true, None, None);
                    }
                    EventKind::Content => break,
                    EventKind::End => seen_end = true,
                    EventKind::Preamble => {}
                }
            }
        }
    }
    Outcome::Served(Response::from_parts(
        parts,
        ResponseBody::guarded(guarded(held, Some(body), None, false)),
    ))
}
