//! Soak and fault tests over loopback, bounded in time and count: thousands of
//! concurrent streams through a real gateway with clients hanging up and the provider
//! resetting connections at random points; afterwards nothing is left behind (no
//! connection, no task, no memory, no rate-limit slot, no single-flight waiter) and every
//! stream is metered as it really ended. Then a client that never reads a long stream.
//!
//! The figures are printed (`cargo test --test soak -- --nocapture`) and recorded in
//! SECURITY.md. The tests here measure the whole process (RSS, sockets), so they run
//! one at a time.

mod common;

/// The allocator the `gateway` binary uses (mimalloc), counted.
#[global_allocator]
static ALLOC: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower_ai_gateway::RunningGateway;
use tower_ai_mock::MockProvider;

/// The tests of this file measure the whole process: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const STREAMS: usize = 2000;
const WARM_UP: usize = 500;
const CONCURRENCY: usize = 200;
const CONCURRENCY_LIMIT: u64 = 10_000;

/// A small deterministic xorshift generator: the same run every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What one client of the soak does.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// Reads the whole stream.
    Complete,
    /// Hangs up after reading this many frames.
    HangUpAfter(usize),
    /// Hangs up before the response head (the provider is slow to answer).
    HangUpBeforeHead,
    /// The provider aborts the connection after this many events.
    ResetAfter(usize),
}

/// How one client's stream really ended, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Complete,
    HungUp,
    Reset,
}

fn plan(rng: &mut Rng, chunks: usize) -> Plan {
    match rng.below(10) {
        0..4 => Plan::Complete,
        4..7 => Plan::HangUpAfter(rng.below(chunks as u64 / 2) as usize),
        7 => Plan::HangUpBeforeHead,
        _ => Plan::ResetAfter(1 + rng.below(chunks as u64 - 2) as usize),
    }
}

fn body(i: usize) -> String {
    format!(
        r#"{{"model":"gpt-4o-mini","stream":true,"messages":[{{"role":"user","content":"soak request number {i}"}}]}}"#
    )
}

/// Runs one client's plan; returns how it ended.
async fn run_one(c: HttpClient, url: String, i: usize, chunks: usize, plan: Plan) -> Seen {
    let chunks_s = chunks.to_string();
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("x-mock-chunks", chunks_s),
        ("x-mock-chunk-delay-ms", "5".to_owned()),
    ];
    match plan {
        Plan::HangUpBeforeHead => headers.push(("x-mock-latency-ms", "2000".to_owned())),
        Plan::ResetAfter(j) => headers.push(("x-mock-reset-after", j.to_string())),
        _ => {}
    }
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let req = request(Method::POST, &url, &h, body(i));
    if let Plan::HangUpBeforeHead = plan {
        let r = tokio::time::timeout(Duration::from_millis(20), c.request(req)).await;
        assert!(r.is_err(), "request {i}: the head came before the hang-up");
        return Seen::HungUp;
    }
    let res = within(30, c.request(req)).await.expect("request sent");
    assert_eq!(res.status(), StatusCode::OK, "request {i}");
    let mut body = res.into_body();
    let mut n = 0;
    let mut bytes = Vec::new();
    loop {
        if let Plan::HangUpAfter(k) = plan
            && n == k
        {
            // Dropping the body closes the connection: the client is gone.
            return Seen::HungUp;
        }
        match within(30, body.frame()).await {
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    bytes.extend_from_slice(&d);
                    n += 1;
                }
            }
            Some(Err(_)) => return Seen::Reset,
            None => {
                assert!(
                    bytes.ends_with(b"data: [DONE]\n\n"),
                    "request {i} ({plan:?}): a stream that ended cleanly without its end"
                );
                return Seen::Complete;
            }
        }
    }
}

/// Runs `n` clients (`CONCURRENCY` at a time) from `first`; returns what each saw.
async fn run_batch(
    gw: &RunningGateway,
    first: usize,
    n: usize,
    rng: &mut Rng,
) -> Vec<(usize, Plan, Seen)> {
    let c = client();
    let url = format!("{}/openai/chat/completions", gw.url());
    let sem = Arc::new(Semaphore::new(CONCURRENCY));
    let mut set = JoinSet::new();
    for i in first..first + n {
        let chunks = 8 + rng.below(17) as usize;
        let plan = plan(rng, chunks);
        let permit = sem.clone().acquire_owned().await.unwrap();
        let (c, url) = (c.clone(), url.clone());
        set.spawn(async move {
            let seen = run_one(c, url, i, chunks, plan).await;
            drop(permit);
            (i, plan, seen)
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        out.push(r.expect("client task"));
    }
    out.sort_by_key(|r| r.0);
    out
}

/// Bytes allocated and not yet freed, by the allocator's own count, in KiB: the leak
/// measure, whatever the allocator keeps of freed memory.
fn live_kib() -> u64 {
    (ALLOC.allocated() / 1024) as u64
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// TCP sockets of this network namespace with one end on `port`, other than listening
/// ones and those in TIME_WAIT (closed by us, the kernel's to finish).
fn open_sockets(port: u16) -> usize {
    let mut n = 0;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 {
                continue;
            }
            let port_of = |a: &str| {
                a.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            let state = f[3];
            if (port_of(f[1]) == Some(port) || port_of(f[2]) == Some(port))
                && state != "0A"
                && state != "06"
            {
                n += 1;
            }
        }
    }
    n
}

/// `aigw_requests_total` summed by outcome (on a connection of its own, closed after).
async fn outcomes(gw: &RunningGateway) -> BTreeMap<String, u64> {
    let m = send(
        &client(),
        request(Method::GET, &format!("{}/metrics", gw.url()), &[], ""),
    )
    .await;
    let text = String::from_utf8(m.body.to_vec()).unwrap();
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("aigw_requests_total{"))
    {
        let outcome = line
            .split("outcome=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .to_owned();
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        *out.entry(outcome).or_insert(0) += v as u64;
    }
    out
}

/// Empties the cache: its entries are memory it keeps on purpose (bounded by
/// `cache.max_bytes`), not a leak, so RSS is compared without them.
async fn purge_cache(gw: &RunningGateway) {
    let purged = send(
        &client(),
        request(Method::DELETE, &format!("{}/cache", gw.url()), &[], ""),
    )
    .await;
    assert_eq!(purged.status, StatusCode::OK);
}

/// Polls `cond` every 20 ms until it holds or `secs` have passed; whether it held.
async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the gateway holds no client connection and no upstream connection (the
/// idle pool lets them go after a second), then until the runtime's alive tasks are at
/// most `tasks` (if given). Returns the alive tasks then.
async fn quiesce(gw: &RunningGateway, mock: &MockProvider, tasks: Option<usize>) -> usize {
    let (gw_port, mock_port) = (gw.addr().port(), mock.addr().port());
    assert!(
        eventually(20, || open_sockets(gw_port) == 0).await,
        "connections to the gateway left open: {}",
        open_sockets(gw_port)
    );
    assert!(
        eventually(20, || open_sockets(mock_port) == 0).await,
        "upstream connections left open: {}",
        open_sockets(mock_port)
    );
    let metrics = tokio::runtime::Handle::current().metrics();
    if let Some(max) = tasks {
        eventually(10, || metrics.num_alive_tasks() <= max).await;
    }
    metrics.num_alive_tasks()
}

fn tally(results: &[(usize, Plan, Seen)]) -> BTreeMap<Seen, u64> {
    let mut t = BTreeMap::new();
    for (_, _, seen) in results {
        *t.entry(*seen).or_insert(0) += 1;
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_streams_with_hang_ups_and_resets_leave_nothing_behind() {
    soak(false).await;
}

/// The same, served as the binary serves: a runtime per thread, connections handed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_streams_served_per_thread_leave_nothing_behind() {
    soak(true).await;
}

/// 2,000 streams with hang-ups and resets through a gateway (on this runtime, or on
/// threads of its own with `per_thread`), then: every stream ended as planned at the
/// client, the provider and the meter; no slot, waiter, connection, task (on this
/// runtime) or memory left behind.
async fn soak(per_thread: bool) {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let mock = MockProvider::start().await.unwrap();
    let toml = gateway_toml(
        &mock,
        &format!(
            r#"
            [upstream]
            pool_idle_timeout_secs = 1
            [meter]
            log_path = ""
            [cache]
            enabled = true
            scope = "shared"
            [[ratelimit.limits]]
            name = "conc"
            concurrency = {CONCURRENCY_LIMIT}
            "#
        ),
    );
    let gw = start_as(&toml, per_thread).await;
    let mut rng = Rng(0x5eed_1234_abcd_0001);

    // Warm up: allocator arenas, the tokenizer, pools; then let everything go idle.
    run_batch(&gw, 0, WARM_UP, &mut rng).await;
    let before_meter = outcomes(&gw).await;
    purge_cache(&gw).await;
    mock.clear_recorded();
    let tasks_before = quiesce(&gw, &mock, None).await;
    let rss_before = rss_kib();
    let live_before = live_kib();
    let mock_before = mock.stats();

    // The soak.
    let soak_started = Instant::now();
    let mut results = Vec::with_capacity(STREAMS);
    let mut rss_rounds = Vec::new();
    for round in 0..4 {
        let n = STREAMS / 4;
        results.extend(run_batch(&gw, WARM_UP + round * n, n, &mut rng).await);
        // (The last quarter's entries stay for the replays below.)
        if round < 3 {
            purge_cache(&gw).await;
        }
        mock.clear_recorded();
        rss_rounds.push(rss_kib());
        eprintln!(
            "soak: round {round}: RSS {} KiB, live {} KiB",
            rss_kib(),
            live_kib()
        );
    }
    let soak_time = soak_started.elapsed();
    eprintln!("soak: clients done in {soak_time:?}");
    let seen = tally(&results);
    let planned = |f: fn(&Plan) -> bool| results.iter().filter(|r| f(&r.1)).count();
    let hang_ups_mid_stream = planned(|p| matches!(p, Plan::HangUpAfter(_)));
    let hang_ups_before_head = planned(|p| matches!(p, Plan::HangUpBeforeHead));
    let resets = planned(|p| matches!(p, Plan::ResetAfter(_)));
    // Each plan ended as planned.
    for (i, plan, s) in &results {
        let want = match plan {
            Plan::Complete => Seen::Complete,
            Plan::HangUpAfter(_) | Plan::HangUpBeforeHead => Seen::HungUp,
            Plan::ResetAfter(_) => Seen::Reset,
        };
        assert_eq!(*s, want, "request {i}: {plan:?}");
    }

    // The provider saw every request it got end the way the client made it end: each
    // hang-up reached it as a cancel (a client that hung up before the head may have
    // gone before the gateway even asked), none of its streams is left running.
    let settled = tokio::time::timeout(
        Duration::from_secs(30),
        mock.wait_for(|s| s.completed + s.cancelled + s.resets == s.requests),
    )
    .await;
    let m = mock.stats();
    assert!(
        settled.is_ok(),
        "the provider's requests did not all end: {m:?} (before {mock_before:?}), clients saw {seen:?}"
    );
    let reached = m.requests - mock_before.requests;
    let never_sent = STREAMS as u64 - reached;
    assert!(never_sent <= hang_ups_before_head as u64, "{m:?}");
    // A client that hangs up mid-stream does so after half its stream at most, while
    // the provider paces events 5 ms apart: only a client far slower than the stream (a
    // loaded machine) can hang up after the provider sent its last event. Counted, and
    // bounded by the mid-stream hang-ups.
    let late = (m.completed - mock_before.completed)
        .checked_sub(seen[&Seen::Complete])
        .expect("the provider completed fewer streams than clients read in full");
    assert!(late <= hang_ups_mid_stream as u64, "{m:?}");
    assert_eq!(
        m.cancelled - mock_before.cancelled,
        seen[&Seen::HungUp] - never_sent - late,
        "{m:?}"
    );
    assert_eq!(m.resets - mock_before.resets, seen[&Seen::Reset], "{m:?}");

    // The meter recorded each stream as it ended: every hang-up the gateway saw as
    // cancelled (all those mid-stream, and those before the head that it got before the
    // client left: at least the ones it passed on), resets as failed.
    let cancelled_upstream = m.cancelled - mock_before.cancelled;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (after_meter, delta) = loop {
        let now = outcomes(&gw).await;
        let delta: BTreeMap<String, u64> = now
            .iter()
            .map(|(k, v)| (k.clone(), v - before_meter.get(k).copied().unwrap_or(0)))
            .collect();
        let get = |k: &str| delta.get(k).copied().unwrap_or(0);
        if (get("complete") >= seen[&Seen::Complete]
            && get("failed") >= seen[&Seen::Reset]
            && get("cancelled") >= cancelled_upstream)
            || Instant::now() > deadline
        {
            break (now, delta);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let get = |k: &str| delta.get(k).copied().unwrap_or(0);
    assert!(
        (seen[&Seen::Complete]..=seen[&Seen::Complete] + late).contains(&get("complete")),
        "{delta:?}, late hang-ups {late}"
    );
    assert_eq!(get("failed"), seen[&Seen::Reset], "{delta:?}");
    assert!(
        get("cancelled") >= cancelled_upstream.max(hang_ups_mid_stream as u64 - late)
            && get("cancelled") <= seen[&Seen::HungUp],
        "cancelled: metered {delta:?}, provider saw {cancelled_upstream}, clients {}",
        seen[&Seen::HungUp]
    );
    assert_eq!(
        delta.values().sum::<u64>(),
        get("complete") + get("failed") + get("cancelled")
    );

    // No rate-limit slot left taken: the only request in flight is this one.
    let c = client();
    let url = format!("{}/openai/chat/completions", gw.url());
    let probe = post_json(&c, &url, &[], &body(usize::MAX)).await;
    assert_eq!(probe.status, StatusCode::OK);
    let rl = probe.headers["ratelimit"].to_str().unwrap().to_owned();
    assert!(
        rl.starts_with(&format!("\"conc\";r={};", CONCURRENCY_LIMIT - 1)),
        "a concurrency slot was left taken: {rl}"
    );

    // No single-flight waiter or half-written entry left behind: every cancelled or
    // reset stream asked again is a fresh, complete miss; a completed one is a hit.
    let mut replays = BTreeMap::new();
    for (i, plan, _) in results[STREAMS * 3 / 4..].iter().step_by(5) {
        let req = request(
            Method::POST,
            &url,
            &[("content-type", "application/json"), ("x-mock-chunks", "4")],
            body(*i),
        );
        let res = within(10, c.request(req)).await.expect("replay sent");
        assert_eq!(res.status(), StatusCode::OK);
        let status = res.headers()["aigw-cache-status"]
            .to_str()
            .unwrap()
            .to_owned();
        let (frames, end) = within(10, frames(res)).await;
        end.unwrap();
        assert!(concat(&frames).ends_with(b"data: [DONE]\n\n"));
        let want = match plan {
            Plan::Complete => "HIT",
            _ => "MISS",
        };
        assert_eq!(status, want, "replay of request {i} ({plan:?})");
        *replays.entry(status).or_insert(0) += 1;
    }

    drop(c);

    // Nothing held: no connection either side, no task, memory back where it was (the
    // cache's entries, which it keeps on purpose, purged first; the mock's record of
    // requests, test fixture memory, cleared).
    purge_cache(&gw).await;
    mock.clear_recorded();
    let tasks_after = quiesce(&gw, &mock, Some(tasks_before)).await;
    let rss_after = rss_kib();
    let live_after = live_kib();

    println!(
        "soak: {STREAMS} streams ({WARM_UP} warm-up first), {CONCURRENCY} at a time, in {:.1}s \
         (test {:.1}s in all)\n\
         soak: completed {}, client hang-ups {} ({} mid-stream, {} before the head), provider resets {}\n\
         soak: provider got {reached} ({never_sent} hung up before it was asked): completed {}, cancelled {}, reset {}; connections accepted {}; hang-ups after the provider's last event {late}\n\
         soak: meter: {:?} (this run: complete {}, cancelled {}, failed {})\n\
         soak: per thread {per_thread}; alive tasks (this runtime) before {tasks_before}, after {tasks_after}; RSS before {} KiB, after {} KiB ({:+} KiB); after each quarter {rss_rounds:?} KiB\n\
         soak: memory in use (the allocator's count) before {live_before} KiB, after {live_after} KiB ({:+} KiB)\n\
         soak: ratelimit after: {rl}; replays {:?}",
        soak_time.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        seen[&Seen::Complete],
        seen[&Seen::HungUp],
        hang_ups_mid_stream,
        hang_ups_before_head,
        resets,
        m.completed - mock_before.completed,
        m.cancelled - mock_before.cancelled,
        m.resets - mock_before.resets,
        m.connections - mock_before.connections,
        after_meter,
        get("complete"),
        get("cancelled"),
        get("failed"),
        rss_before,
        rss_after,
        rss_after as i64 - rss_before as i64,
        live_after as i64 - live_before as i64,
        replays,
    );
    assert!(
        tasks_after <= tasks_before,
        "tasks leaked: {tasks_before} before, {tasks_after} after"
    );
    // No memory leaked: what is allocated after the soak is what was allocated before
    // it, by the allocator's own count (2,000 streams: a leak of 1 KiB per stream would
    // show as 2 MiB; measured: under 1 MiB).
    assert!(
        live_after <= live_before + 2 * 1024,
        "memory in use grew by {} KiB: a leak",
        live_after as i64 - live_before as i64
    );
    // And the process gives it back: RSS within a few MB of where it started (measured:
    // -5 to +7 MiB; mimalloc keeps some freed pages of idle threads for reuse). With
    // glibc's allocator it would not (+13 to +16 MiB, freed pages kept in its arenas;
    // SECURITY.md): that is why the binary allocates with mimalloc. Served per thread,
    // two long-lived serving threads keep pages in their own heaps, and RSS swings
    // more (measured: -17 to +9 MiB over eight runs; the allocator's count above stays
    // within +0.7 MiB): a looser bound, still far below what holding the soak's
    // buffers would take.
    let rss_bound = if per_thread { 16 } else { 8 } * 1024;
    assert!(
        rss_after <= rss_before + rss_bound,
        "RSS grew by {} KiB",
        rss_after as i64 - rss_before as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_cannot_make_the_gateway_buffer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let _serial = SERIAL.lock().await;
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "[meter]\nlog_path = \"\"\n").await;
    // 100,000 events, about 17 MB, all ready at once at the provider (which builds
    // the whole stream in memory up front).
    const CHUNKS: usize = 100_000;
    let body = body(0);
    let head = format!(
        "POST /openai/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-mock-chunks: {CHUNKS}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let rss_before = rss_kib();
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    // Read the head and a little of the stream, then nothing more.
    let mut first = vec![0u8; 4096];
    let n = within(10, s.read(&mut first)).await.unwrap();
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first[..n])
    );
    // The provider could send it all in milliseconds; the gateway takes only what the
    // sockets hold, so the provider's stream stalls.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stalled = mock.stats();
    let rss_stalled = rss_kib();
    assert_eq!(
        (stalled.requests, stalled.completed, stalled.cancelled),
        (1, 0, 0),
        "the provider's stream did not stall"
    );
    // Reading it all now: the stream was held back, not broken.
    let mut rest = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = n;
    let ends = loop {
        let k = within(30, s.read(&mut buf)).await.unwrap();
        if k == 0 {
            break false;
        }
        total += k;
        rest.extend_from_slice(&buf[..k]);
        if rest.len() > 64 {
            rest.drain(..rest.len() - 64);
        }
        if rest.ends_with(b"data: [DONE]\n\n\r\n0\r\n\r\n") {
            break true;
        }
    };
    assert!(
        ends,
        "the stream did not end with [DONE] and the last chunk"
    );
    within(10, mock.wait_for(|s| s.completed == 1)).await;
    println!(
        "slow reader: a {total}-byte stream held back by a client that did not read: the \
         provider stalled ({stalled:?}); RSS {rss_before} KiB before, {rss_stalled} KiB stalled \
         ({:+} KiB, the provider's own copy of the stream included)",
        rss_stalled as i64 - rss_before as i64
    );
    // RSS is printed, not asserted: the provider runs in this process and builds the
    // whole stream in memory up front (about twice its size while its buffer grows), so
    // RSS cannot tell its memory from the gateway's. The stall is the proof: a gateway
    // that buffered would have read the provider's stream to its end.
    let _ = rss_stalled;
}
