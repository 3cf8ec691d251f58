//! The load client: closed-loop HTTP/1 connections, one task each, with latencies in
//! HDR histograms (microseconds).
//!
//! A phase connects all its connections first, then runs a warm-up (not recorded) and a
//! measured window; a request counts when it completes inside the window. Every request
//! is bounded by a timeout and every phase by a hard deadline, so a phase always ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::ladder::{Prompts, SplitMix64, Zipf, write_prompt};

/// Latency histograms: 1 µs to 5 minutes, 3 significant digits.
pub(crate) type Histogram = hdrhistogram::Histogram<u64>;

pub(crate) fn histogram() -> Histogram {
    Histogram::new_with_bounds(1, 300_000_000, 3).expect("valid histogram bounds")
}

/// How long a single unary request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a single stream may take.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a phase may overrun its window before its tasks are aborted.
const OVERRUN: Duration = Duration::from_secs(20);
/// Connections opened at once (a listen backlog overflowing costs a 1 s SYN retry).
const CONNECTS_IN_FLIGHT: usize = 64;

/// Distinct prompts stay distinct across phases and runs.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);
/// Counts requests of arms that inject failures: one in `fail_one_in` fails, over all
/// connections and phases (streams included).
static FAILURE_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Where and how an arm's requests go.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    host: HeaderValue,
    path: &'static str,
    prompts: Prompts,
    zipf: Arc<Zipf>,
    fail_one_in: Option<u32>,
    /// Tells this run's distinct prompts from an earlier run's.
    nonce: u64,
}

impl Target {
    pub(crate) fn new(
        addr: SocketAddr,
        path: &'static str,
        prompts: Prompts,
        zipf: Arc<Zipf>,
        fail_one_in: Option<u32>,
        nonce: u64,
    ) -> Target {
        let host = HeaderValue::try_from(addr.to_string()).expect("an address is a valid header");
        Target {
            addr,
            host,
            path,
            prompts,
            zipf,
            fail_one_in,
            nonce,
        }
    }
}

/// What each request of a phase looks like.
#[derive(Clone, Debug, Default)]
pub(crate) struct Shape {
    /// `x-mock-latency-ms`: the mock waits this long before the response head.
    pub(crate) latency_ms: Option<u32>,
    /// A stream of this many content deltas, this many ms apart.
    pub(crate) stream: Option<(u32, u32)>,
    /// The request body is padded to about this many bytes.
    pub(crate) body_bytes: Option<usize>,
}

/// Builds one task's requests.
struct Requests {
    target: Arc<Target>,
    shape: Shape,
    padding: Arc<str>,
    rng: SplitMix64,
    body: String,
}

impl Requests {
    fn new(target: Arc<Target>, shape: Shape, padding: Arc<str>, seed: u64) -> Requests {
        Requests {
            target,
            shape,
            padding,
            rng: SplitMix64::new(seed),
            body: String::with_capacity(256),
        }
    }

    fn next(&mut self) -> Request<Full<Bytes>> {
        let t = &*self.target;
        let n = match t.prompts {
            Prompts::Distinct => SEQUENCE.fetch_add(1, Ordering::Relaxed),
            Prompts::Zipf => t.zipf.sample(&mut self.rng) as u64,
        };
        self.body.clear();
        self.body
            .push_str(r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":""#);
        write_prompt(&mut self.body, t.prompts, t.nonce, n);
        if !self.padding.is_empty() {
            self.body.push(' ');
            self.body.push_str(&self.padding);
        }
        self.body.push_str(r#""}]"#);
        if self.shape.stream.is_some() {
            self.body
                .push_str(r#","stream":true,"stream_options":{"include_usage":true}"#);
        }
        self.body.push('}');

        let mut request = Request::post(t.path)
            .header(HOST, t.host.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, "Bearer sk-load-bench");
        if let Some(ms) = self.shape.latency_ms {
            request = request.header("x-mock-latency-ms", ms);
        }
        if let Some((chunks, delay_ms)) = self.shape.stream {
            request = request
                .header("x-mock-chunks", chunks)
                .header("x-mock-chunk-delay-ms", delay_ms);
        }
        if let Some(k) = t.fail_one_in {
            let n = FAILURE_SEQUENCE.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(u64::from(k)) {
                // The mock fails the first attempt with this id and answers its retry.
                request = request.header("x-mock-fail-first", format!("{}-{n}", t.nonce));
            }
        }
        request
            .body(Full::new(Bytes::copy_from_slice(self.body.as_bytes())))
            .expect("a valid request")
    }
}

/// Filler that pads a request body to `bytes` (about: the JSON around it is ~100 bytes).
pub(crate) fn padding(bytes: Option<usize>) -> Arc<str> {
    let Some(bytes) = bytes else {
        return Arc::from("");
    };
    let want = bytes.saturating_sub(110);
    let words = "lorem ipsum dolor sit amet consectetur adipiscing elit ";
    let text: String = words.chars().cycle().take(want).collect();
    Arc::from(text.trim_end())
}

/// Opens one HTTP/1 connection (`TCP_NODELAY`), retrying a few times.
async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let mut last = String::new();
    for attempt in 0..5u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
        }
        let stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                last = format!("connect {addr}: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok((sender, connection)) => {
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                return Ok(sender);
            }
            Err(e) => last = format!("handshake {addr}: {e}"),
        }
    }
    Err(last)
}

/// Opens `n` connections, at most [`CONNECTS_IN_FLIGHT`] at a time.
async fn connect_all(
    addr: SocketAddr,
    n: usize,
) -> (Vec<SendRequest<Full<Bytes>>>, u64, Option<String>) {
    let gate = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let gate = gate.clone();
        set.spawn(async move {
            let _permit = gate.acquire().await;
            connect(addr).await
        });
    }
    let (mut senders, mut errors, mut first_error) = (Vec::with_capacity(n), 0, None);
    while let Some(joined) = set.join_next().await {
        match joined.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(sender) => senders.push(sender),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    (senders, errors, first_error)
}

/// The measured window of a phase.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub(crate) start: Instant,
    pub(crate) end: Instant,
}

/// What a unary phase measured.
#[derive(Debug)]
pub(crate) struct UnaryOutcome {
    pub(crate) conns: usize,
    /// Requests that completed with 200 inside the window.
    pub(crate) requests: u64,
    /// Failed connections and requests (non-200, I/O error, timeout), warm-up included.
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) window: Duration,
    pub(crate) latency: Histogram,
}

impl UnaryOutcome {
    /// Nothing measured yet, over `conns` connections: phases [`absorb`](Self::absorb)ed
    /// into it add up.
    pub(crate) fn empty(conns: usize) -> UnaryOutcome {
        UnaryOutcome {
            conns,
            requests: 0,
            errors: 0,
            first_error: None,
            window: Duration::ZERO,
            latency: histogram(),
        }
    }

    /// Adds another phase's requests, errors, window and latencies to these.
    pub(crate) fn absorb(&mut self, other: UnaryOutcome) {
        self.requests += other.requests;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.window += other.window;
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds");
    }
}

struct TaskTally {
    latency: Histogram,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
}

impl TaskTally {
    fn new() -> TaskTally {
        TaskTally {
            latency: histogram(),
            requests: 0,
            errors: 0,
            first_error: None,
        }
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

/// Runs `conns` closed-loop connections for `warmup` and then `measure`; `on_window` is
/// called with the measured window as soon as it is known (to sample `/proc` at its
/// ends).
pub(crate) async fn unary(
    target: &Arc<Target>,
    shape: &Shape,
    conns: usize,
    warmup: Duration,
    measure: Duration,
    on_window: impl FnOnce(Window),
) -> UnaryOutcome {
    let (senders, connect_errors, connect_error) = connect_all(target.addr, conns).await;
    let start = Instant::now() + warmup;
    let window = Window {
        start,
        end: start + measure,
    };
    on_window(window);
    let padding = padding(shape.body_bytes);
    let mut set = JoinSet::new();
    for (i, sender) in senders.into_iter().enumerate() {
        let requests = Requests::new(
            target.clone(),
            shape.clone(),
            padding.clone(),
            0x5EED ^ i as u64,
        );
        set.spawn(unary_loop(target.addr, sender, requests, window));
    }
    let mut total = TaskTally::new();
    total.errors = connect_errors;
    total.first_error = connect_error;
    collect(&mut set, window.end + OVERRUN, |tally: TaskTally| {
        total
            .latency
            .add(&tally.latency)
            .expect("histograms with equal bounds");
        total.requests += tally.requests;
        total.errors += tally.errors;
        if let Some(e) = tally.first_error {
            total.first_error.get_or_insert(e);
        }
    })
    .await
    .unwrap_or_else(|aborted| total.error(format!("{aborted} tasks overran and were aborted")));
    UnaryOutcome {
        conns,
        requests: total.requests,
        errors: total.errors,
        first_error: total.first_error,
        window: measure,
        latency: total.latency,
    }
}

/// Joins every task (aborting what is left at `deadline`), handing each result to `f`;
/// `Err(n)` when `n` tasks had to be aborted.
async fn collect<T: 'static>(
    set: &mut JoinSet<T>,
    deadline: Instant,
    mut f: impl FnMut(T),
) -> Result<(), usize> {
    loop {
        match tokio::time::timeout_at(deadline.into(), set.join_next()).await {
            Ok(Some(Ok(tally))) => f(tally),
            Ok(Some(Err(_))) => {}
            Ok(None) => return Ok(()),
            Err(_) => {
                let left = set.len();
                set.abort_all();
                return Err(left);
            }
        }
    }
}

async fn unary_loop(
    addr: SocketAddr,
    mut sender: SendRequest<Full<Bytes>>,
    mut requests: Requests,
    window: Window,
) -> TaskTally {
    let mut tally = TaskTally::new();
    while Instant::now() < window.end {
        let request = requests.next();
        let sent = Instant::now();
        let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
            sender.ready().await.map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                frame.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(status)
        })
        .await;
        let done = Instant::now();
        let broken = !matches!(result, Ok(Ok(_)));
        match result {
            Ok(Ok(status)) if status == 200 => {
                if done >= window.start && done <= window.end {
                    tally.latency.saturating_record(micros(done - sent));
                    tally.requests += 1;
                }
            }
            Ok(Ok(status)) => tally.error(format!("status {status}")),
            Ok(Err(e)) => tally.error(e),
            Err(_) => tally.error(format!("timed out after {REQUEST_TIMEOUT:?}")),
        }
        if broken || sender.is_closed() {
            match connect(addr).await {
                Ok(s) => sender = s,
                Err(e) => {
                    tally.error(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    tally
}

/// What a stream phase measured.
#[derive(Debug)]
pub(crate) struct StreamOutcome {
    pub(crate) concurrency: usize,
    /// Streams that ended with 200 and a complete body.
    pub(crate) streams: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// Time from sending the request to the first SSE event.
    pub(crate) ttft: Histogram,
    /// Time between consecutive SSE events of a stream.
    pub(crate) gaps: Histogram,
    pub(crate) events_expected: u64,
    pub(crate) events_received: u64,
}

struct StreamTally {
    ttft: Histogram,
    gaps: Histogram,
    streams: u64,
    errors: u64,
    first_error: Option<String>,
    expected: u64,
    received: u64,
}

/// Runs `concurrency` connections, each running `per_conn` streams in a row, with
/// `chunks` content deltas `delay_ms` apart; a stream carries `chunks + 4` events (role,
/// deltas, finish, usage, `[DONE]`). The connections start staggered over one
/// inter-chunk delay so their events do not all land in the same millisecond.
pub(crate) async fn streams(
    target: &Arc<Target>,
    concurrency: usize,
    per_conn: usize,
    chunks: u32,
    delay_ms: u32,
) -> StreamOutcome {
    let (senders, connect_errors, connect_error) = connect_all(target.addr, concurrency).await;
    let shape = Shape {
        stream: Some((chunks, delay_ms)),
        ..Shape::default()
    };
    let expected = u64::from(chunks) + 4;
    let padding = padding(None);
    let mut set = JoinSet::new();
    let stagger = Duration::from_millis(u64::from(delay_ms));
    for (i, sender) in senders.into_iter().enumerate() {
        let requests = Requests::new(
            target.clone(),
            shape.clone(),
            padding.clone(),
            0xC0FFEE ^ i as u64,
        );
        let offset = stagger.mul_f64(i as f64 / concurrency as f64);
        set.spawn(stream_loop(sender, requests, per_conn, expected, offset));
    }
    let deadline = Instant::now()
        + stagger
        + (STREAM_TIMEOUT + Duration::from_secs(1)) * per_conn as u32
        + OVERRUN;
    let mut total = StreamTally {
        ttft: histogram(),
        gaps: histogram(),
        streams: 0,
        errors: connect_errors,
        first_error: connect_error,
        expected: connect_errors * expected * per_conn as u64,
        received: 0,
    };
    let aborted = collect(&mut set, deadline, |t: StreamTally| {
        total.ttft.add(&t.ttft).expect("equal bounds");
        total.gaps.add(&t.gaps).expect("equal bounds");
        total.streams += t.streams;
        total.errors += t.errors;
        total.expected += t.expected;
        total.received += t.received;
        if let Some(e) = t.first_error {
            total.first_error.get_or_insert(e);
        }
    })
    .await;
    if let Err(n) = aborted {
        total.errors += n as u64;
        total.expected += n as u64 * expected * per_conn as u64;
        total
            .first_error
            .get_or_insert(format!("{n} stream tasks overran and were aborted"));
    }
    StreamOutcome {
        concurrency,
        streams: total.streams,
        errors: total.errors,
        first_error: total.first_error,
        ttft: total.ttft,
        gaps: total.gaps,
        events_expected: total.expected,
        events_received: total.received,
    }
}

async fn stream_loop(
    mut sender: SendRequest<Full<Bytes>>,
    mut requests: Requests,
    per_conn: usize,
    expected: u64,
    offset: Duration,
) -> StreamTally {
    let mut tally = StreamTally {
        ttft: histogram(),
        gaps: histogram(),
        streams: 0,
        errors: 0,
        first_error: None,
        expected: 0,
        received: 0,
    };
    tokio::time::sleep(offset).await;
    for _ in 0..per_conn {
        tally.expected += expected;
        let request = requests.next();
        let mut events = 0u64;
        let result = tokio::time::timeout(STREAM_TIMEOUT, async {
            sender.ready().await.map_err(|e| e.to_string())?;
            let sent = Instant::now();
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            if response.status() != 200 {
                return Err(format!("status {}", response.status()));
            }
            let mut body = response.into_body();
            let mut last: Option<Instant> = None;
            // Events end with a blank line; a "\n\n" may be split across frames.
            let mut after_newline = false;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| e.to_string())?;
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                let now = Instant::now();
                for &byte in data.iter() {
                    if byte != b'\n' {
                        after_newline = false;
                    } else if !after_newline {
                        after_newline = true;
                    } else {
                        after_newline = false;
                        events += 1;
                        match last {
                            None => tally.ttft.saturating_record(micros(now - sent)),
                            Some(previous) => tally.gaps.saturating_record(micros(now - previous)),
                        }
                        last = Some(now);
                    }
                }
            }
            Ok(())
        })
        .await;
        tally.received += events;
        let broken = !matches!(result, Ok(Ok(())));
        match result {
            Ok(Ok(())) if events == expected => tally.streams += 1,
            Ok(Ok(())) => {
                tally.errors += 1;
                tally
                    .first_error
                    .get_or_insert(format!("{events} events of {expected}"));
            }
            Ok(Err(e)) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
            }
            Err(_) => {
                tally.errors += 1;
                tally
                    .first_error
                    .get_or_insert(format!("stream timed out after {STREAM_TIMEOUT:?}"));
            }
        }
        if broken || sender.is_closed() {
            // The connection is in an unknown state: the next stream gets a new one.
            let Ok(fresh) = connect(requests.target.addr).await else {
                let left = (per_conn as u64).saturating_sub(tally.streams + tally.errors);
                tally.expected += left * expected;
                tally.errors += left;
                break;
            };
            sender = fresh;
        }
    }
    tally
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
