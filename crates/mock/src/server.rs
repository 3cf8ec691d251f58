//! The server: listener, accept loop, connections, routing and the request handler.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::Value;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::body::{MockBody, Pacing, Reply};
use crate::faults::Faults;
use crate::stats::{Counter, Counters, RecordedRequest, Stats, Tracker};
use crate::{anthropic, gemini, openai};

/// Request bodies above this size get a 413.
const MAX_REQUEST_BODY: usize = 32 * 1024 * 1024;
/// How long a graceful [`MockProvider::shutdown`] waits for in-flight responses.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Listen backlog: the mock serves load benchmarks with thousands of connections.
const BACKLOG: u32 = 4096;

/// How the mock behaves; see the [crate docs](crate).
#[derive(Clone, Debug, Default)]
pub struct MockConfig {
    /// Faults applied to every request; the `x-mock-*` request headers override them
    /// field by field.
    pub faults: Faults,
}

/// A running mock provider; see the [crate docs](crate).
///
/// Dropping it stops accepting and aborts every connection; [`shutdown`](Self::shutdown)
/// stops gracefully.
pub struct MockProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    config: MockConfig,
    counters: Arc<Counters>,
    /// `x-mock-fail-first` ids already failed once.
    failed_once: std::sync::Mutex<FailedOnce>,
    /// Source of the `<counter>` in response ids; never reset.
    ids: AtomicU64,
}

impl Shared {
    /// Whether `id` is seen for the first time (and remembers it).
    fn first_sight(&self, id: &[u8]) -> bool {
        self.failed_once
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first_sight(id)
    }
}

/// The `x-mock-fail-first` ids seen, bounded in two generations: when the newer is full
/// it becomes the older and the older is forgotten. So an id is remembered for at least
/// [`FailedOnce::GENERATION`] ids after it, however long the mock runs: the retry of a
/// request (a few milliseconds later) always finds it. (Clearing everything when full
/// would fail again the retries in flight at that moment: the load benchmark, sending
/// hundreds of thousands of ids, saw 95 of them.)
#[derive(Debug, Default)]
struct FailedOnce {
    newer: std::collections::HashSet<Vec<u8>>,
    older: std::collections::HashSet<Vec<u8>>,
}

impl FailedOnce {
    const GENERATION: usize = 1 << 15;

    fn first_sight(&mut self, id: &[u8]) -> bool {
        if self.newer.contains(id) || self.older.contains(id) {
            return false;
        }
        if self.newer.len() >= Self::GENERATION {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(id.to_vec());
        true
    }
}

impl fmt::Debug for MockProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockProvider")
            .field("addr", &self.addr)
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl MockProvider {
    /// Starts on `127.0.0.1` on a free port, with [`MockConfig::default`].
    pub async fn start() -> io::Result<MockProvider> {
        MockProvider::start_with(MockConfig::default()).await
    }

    /// Starts on `127.0.0.1` on a free port.
    pub async fn start_with(config: MockConfig) -> io::Result<MockProvider> {
        MockProvider::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts on `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, config: MockConfig) -> io::Result<MockProvider> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(BACKLOG)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            counters: Arc::new(Counters::default()),
            failed_once: Default::default(),
            ids: AtomicU64::new(0),
        });
        let (shutdown, shutdown_rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, shared.clone(), shutdown_rx));
        Ok(MockProvider {
            addr,
            shared,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far (every path except `/healthz`).
    pub fn requests(&self) -> u64 {
        self.shared.counters.requests()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// The last 1024 requests received (not `/healthz`), oldest first.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.shared.counters.recorded()
    }

    /// The most recent request received (not `/healthz`).
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.counters.last_request()
    }

    /// Sets every counter of [`stats`](Self::stats) back to zero (the recorded requests
    /// stay; see [`clear_recorded`](Self::clear_recorded)).
    pub fn reset_stats(&self) {
        self.shared.counters.reset();
    }

    /// Forgets the recorded requests.
    pub fn clear_recorded(&self) {
        self.shared.counters.clear_recorded();
    }

    /// Resolves once `stats().cancelled >= n`.
    pub async fn wait_for_cancelled(&self, n: u64) {
        self.wait_for(|stats| stats.cancelled >= n).await;
    }

    /// Resolves once `stats().requests >= n`; the request is then in
    /// [`recorded`](Self::recorded).
    pub async fn wait_for_requests(&self, n: u64) {
        self.wait_for(|stats| stats.requests >= n).await;
    }

    /// Resolves once `condition` holds for the counters; re-checked on every change.
    pub async fn wait_for(&self, condition: impl Fn(&Stats) -> bool) {
        self.shared.counters.wait_until(condition).await;
    }

    /// Stops accepting, lets in-flight responses finish (for up to a second), then
    /// closes every connection.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The accept loop. Connections live in a `JoinSet`, so aborting this task aborts them.
async fn serve(listener: TcpListener, shared: Arc<Shared>, mut shutdown: oneshot::Receiver<()>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    // Out of file descriptors and the like: back off instead of spinning.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                shared.counters.bump(Counter::Connections);
                let shared = shared.clone();
                let service = service_fn(move |request| handle(request, shared.clone()));
                let connection = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                connections.spawn(async move {
                    // A client hanging up mid-response is an error here; it is counted
                    // by the response body, nothing more to do.
                    let _ = connection.await;
                });
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    // Dropping `connections` aborts whatever is still running.
}

/// The wire format of a path: decides the error body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Format {
    fn error(self, status: StatusCode, message: &str) -> Bytes {
        match self {
            Format::OpenAi => openai::error(status, message),
            Format::Anthropic => anthropic::error(status, message),
            Format::Gemini => gemini::error(status, message),
        }
    }

    fn invalid_request(self, message: &str) -> Bytes {
        match self {
            Format::OpenAi => openai::invalid_request(message),
            Format::Anthropic => anthropic::invalid_request(message),
            Format::Gemini => gemini::invalid_request(message),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Healthz,
    Chat,
    Embeddings,
    Responses,
    Messages,
    CountTokens,
    /// Gemini `generateContent` (`true`: streamed).
    Generate(bool),
    /// Gemini `batchEmbedContents` (`true`) or `embedContent`.
    Embed(bool),
    Models(Format),
    MethodNotAllowed(Format, &'static str),
    NotFound,
}

impl Route {
    /// Routes by path suffix, so any prefix works.
    fn of(method: &Method, path: &str, headers: &HeaderMap) -> Route {
        let path = path.trim_end_matches('/');
        let get = *method == Method::GET;
        let post = *method == Method::POST;
        let (route, format) = if path.ends_with("/healthz") {
            if get {
                return Route::Healthz;
            }
            return Route::NotFound;
        } else if path.ends_with("/models") {
            let format = if headers.contains_key("anthropic-version") {
                Format::Anthropic
            } else {
                Format::OpenAi
            };
            if get {
                return Route::Models(format);
            }
            return Route::MethodNotAllowed(format, "GET");
        } else if let Some((_, verb)) = path
            .rsplit_once(':')
            .filter(|(p, _)| p.contains("/models/"))
        {
            let route = match verb {
                "generateContent" => Route::Generate(false),
                "streamGenerateContent" => Route::Generate(true),
                "batchEmbedContents" => Route::Embed(true),
                "embedContent" => Route::Embed(false),
                _ => return Route::NotFound,
            };
            (route, Format::Gemini)
        } else if path.ends_with("/chat/completions") {
            (Route::Chat, Format::OpenAi)
        } else if path.ends_with("/embeddings") {
            (Route::Embeddings, Format::OpenAi)
        } else if path.ends_with("/responses") {
            (Route::Responses, Format::OpenAi)
        } else if path.ends_with("/messages/count_tokens") {
            (Route::CountTokens, Format::Anthropic)
        } else if path.ends_with("/messages") {
            (Route::Messages, Format::Anthropic)
        } else {
            return Route::NotFound;
        };
        if post {
            route
        } else {
            Route::MethodNotAllowed(format, "POST")
        }
    }

    fn format(self) -> Format {
        match self {
            Route::Messages | Route::CountTokens => Format::Anthropic,
            Route::Generate(_) | Route::Embed(_) => Format::Gemini,
            Route::Models(format) | Route::MethodNotAllowed(format, _) => format,
            _ => Format::OpenAi,
        }
    }
}

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<MockBody>, Infallible> {
    let route = Route::of(request.method(), request.uri().path(), request.headers());
    if route == Route::Healthz {
        return Ok(response(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            MockBody::full(Bytes::from_static(b"ok"), Tracker::none()),
        ));
    }

    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let (body, body_error) = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => (collected.to_bytes(), None),
        Err(error) if error.is::<LengthLimitError>() => {
            (Bytes::new(), Some(StatusCode::PAYLOAD_TOO_LARGE))
        }
        Err(_) => (Bytes::new(), Some(StatusCode::BAD_REQUEST)),
    };
    let faults = shared.config.faults.with_headers(&parts.headers);
    let fail_first = parts
        .headers
        .get(&crate::faults::header::FAIL_FIRST)
        .is_some_and(|id| shared.first_sight(id.as_bytes()));
    let head = parts.method == Method::HEAD;
    let format = route.format();
    let not_found = matches!(route, Route::NotFound)
        .then(|| openai::unknown_url(&parts.method, parts.uri.path()));
    shared.counters.record(RecordedRequest {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body: body.clone(),
    });
    let mut tracker = Tracker::new(shared.counters.clone());
    if head {
        // hyper never polls a HEAD response's body.
        tracker.finish(Counter::Completed);
    }

    if let Some(status) = body_error {
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request body too large"
        } else {
            "could not read the request body"
        };
        return Ok(json(status, format.error(status, message), tracker));
    }
    match route {
        Route::NotFound => {
            let body = not_found.unwrap_or_default();
            return Ok(json(StatusCode::NOT_FOUND, body, tracker));
        }
        Route::MethodNotAllowed(format, allow) => {
            let status = StatusCode::METHOD_NOT_ALLOWED;
            let mut response = json(status, format.error(status, "method not allowed"), tracker);
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
            return Ok(response);
        }
        _ => {}
    }
    let faults = match faults {
        Ok(faults) => faults,
        Err(message) => {
            return Ok(json(
                StatusCode::BAD_REQUEST,
                format.invalid_request(&message),
                tracker,
            ));
        }
    };

    if let Some(latency) = faults.latency.filter(|d| !d.is_zero()) {
        tokio::time::sleep(latency).await;
    }
    if faults.hang {
        // Until hyper drops this future because the client went away; the tracker then
        // counts the request as cancelled.
        std::future::pending::<()>().await;
    }
    if fail_first {
        shared.counters.bump(Counter::Errors);
        let status = StatusCode::SERVICE_UNAVAILABLE;
        return Ok(json(
            status,
            format.error(status, "mock error (first attempt)"),
            tracker,
        ));
    }
    if let Some(status) = faults.status {
        shared.counters.bump(Counter::Errors);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = json(status, format.error(status, "mock error"), tracker);
        if let Some(seconds) = faults.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        return Ok(response);
    }

    let reply = match route {
        Route::Models(Format::OpenAi) => Reply::Json(openai::models()),
        Route::Models(Format::Anthropic) => Reply::Json(anthropic::models()),
        _ => {
            let request = match serde_json::from_slice::<Value>(&body) {
                Ok(request @ Value::Object(_)) => request,
                Ok(_) => {
                    let message = "the request body must be a JSON object";
                    return Ok(json(
                        StatusCode::BAD_REQUEST,
                        format.invalid_request(message),
                        tracker,
                    ));
                }
                Err(error) => {
                    let message =
                        format!("We could not parse the JSON body of your request: {error}");
                    return Ok(json(
                        StatusCode::BAD_REQUEST,
                        format.invalid_request(&message),
                        tracker,
                    ));
                }
            };
            let seq = shared.ids.fetch_add(1, Relaxed) + 1;
            match route {
                Route::Chat => openai::chat(&request, &faults, seq),
                Route::Responses => openai::responses(&request, &faults, seq),
                Route::Messages => anthropic::messages(&request, &faults, seq),
                Route::CountTokens => Reply::Json(anthropic::count_tokens(&request)),
                Route::Generate(stream) => {
                    gemini::generate(&request, &gemini_model(&path), stream, &faults, seq)
                }
                Route::Embed(batch) => match gemini::embed(&request, batch) {
                    Ok(reply) => reply,
                    Err(message) => {
                        return Ok(json(
                            StatusCode::BAD_REQUEST,
                            format.invalid_request(&message),
                            tracker,
                        ));
                    }
                },
                _ => match openai::embeddings(&request) {
                    Ok(reply) => reply,
                    Err(message) => {
                        return Ok(json(
                            StatusCode::BAD_REQUEST,
                            format.invalid_request(&message),
                            tracker,
                        ));
                    }
                },
            }
        }
    };
    Ok(respond(reply, &faults, tracker))
}

/// The model of a Gemini path: `.../models/{model}:verb`.
fn gemini_model(path: &str) -> String {
    path.rsplit_once("/models/")
        .map(|(_, rest)| rest.split(':').next().unwrap_or(rest))
        .unwrap_or("mock-model")
        .to_owned()
}

/// A successful reply, with `reset_after` applied.
fn respond(reply: Reply, faults: &Faults, tracker: Tracker) -> Response<MockBody> {
    match reply {
        Reply::Json(data) => {
            let body = match faults.reset_after {
                Some(k) => MockBody::truncated(data, k, tracker),
                None => MockBody::full(data, tracker),
            };
            response(StatusCode::OK, "application/json", body)
        }
        Reply::Stream(events) => {
            let pacing = Pacing {
                ttft: faults.ttft,
                chunk_delay: faults.chunk_delay,
                reset_after: faults.reset_after,
            };
            let mut response = response(
                StatusCode::OK,
                "text/event-stream",
                MockBody::stream(events, pacing, tracker),
            );
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
    }
}

fn json(status: StatusCode, body: Bytes, tracker: Tracker) -> Response<MockBody> {
    response(status, "application/json", MockBody::full(body, tracker))
}

fn response(status: StatusCode, content_type: &'static str, body: MockBody) -> Response<MockBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fail_first_id_is_remembered_for_a_generation_whatever_came_before() {
        let mut seen = FailedOnce::default();
        let id = |n: usize| n.to_le_bytes();
        // Far more ids than a generation, each retried at once: every retry is answered.
        for n in 0..5 * FailedOnce::GENERATION {
            assert!(seen.first_sight(&id(n)), "{n}");
            assert!(!seen.first_sight(&id(n)), "the retry of {n} failed again");
        }
        // An id is still known a whole generation of others later, then forgotten: the
        // memory is bounded.
        let old = 10 * FailedOnce::GENERATION;
        assert!(seen.first_sight(&id(old)));
        for n in 0..FailedOnce::GENERATION {
            seen.first_sight(&id(old + 1 + n));
        }
        assert!(!seen.first_sight(&id(old)));
        for n in 0..2 * FailedOnce::GENERATION {
            seen.first_sight(&id(old + 1 + FailedOnce::GENERATION + n));
        }
        assert!(seen.newer.len() + seen.older.len() <= 2 * FailedOnce::GENERATION);
        assert!(seen.first_sight(&id(old)), "never forgotten");
    }

    #[test]
    fn routes_by_suffix() {
        let none = HeaderMap::new();
        let post = |path| Route::of(&Method::POST, path, &none);
        assert_eq!(post("/v1/chat/completions"), Route::Chat);
        assert_eq!(post("/openai/v1/chat/completions"), Route::Chat);
        assert_eq!(post("/openai/deployments/x/chat/completions"), Route::Chat);
        assert_eq!(post("/v1/chat/completions/"), Route::Chat);
        assert_eq!(post("/v1/embeddings"), Route::Embeddings);
        assert_eq!(post("/v1/responses"), Route::Responses);
        assert_eq!(post("/anthropic/v1/messages"), Route::Messages);
        assert_eq!(post("/v1/messages/count_tokens"), Route::CountTokens);
        assert_eq!(post("/v1/completions"), Route::NotFound);
        assert_eq!(post("/"), Route::NotFound);
        assert_eq!(
            Route::of(&Method::GET, "/v1/chat/completions", &none),
            Route::MethodNotAllowed(Format::OpenAi, "POST")
        );
        assert_eq!(
            Route::of(&Method::GET, "/v1/models", &none),
            Route::Models(Format::OpenAi)
        );
        let mut anthropic = HeaderMap::new();
        anthropic.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        assert_eq!(
            Route::of(&Method::GET, "/v1/models", &anthropic),
            Route::Models(Format::Anthropic)
        );
        assert_eq!(Route::of(&Method::GET, "/healthz", &none), Route::Healthz);
    }
}
