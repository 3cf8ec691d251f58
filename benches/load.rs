//! The load benchmark: what the gateway adds to every LLM call, held against the floor.
//!
//! ```text
//! cargo bench --bench load                     # the full run, under 15 minutes
//! cargo bench --bench load -- --quick          # a first look, under 2 minutes
//! cargo bench --bench load -- --arms direct,bare,route
//! ```
//!
//! One run measures, on loopback, each arm against the same mock provider
//! (`mock-provider`, its own process):
//!
//! - **direct**: the client straight to the mock;
//! - **bare**: a minimal hyper-util pass-through proxy (its own process: this binary
//!   re-executed, see `load/bare.rs`), the floor any proxy pays;
//! - **gateway**: the real `gateway` binary, once per rung of the ladder of stacks in
//!   `load/ladder.rs` (route only, + meter, + rate limits, + cache, + fallback). A rung
//!   whose layers the gateway does not have yet is reported as "not built yet".
//!
//! Scenarios (`load/plan.rs`): added latency at 1 connection; the throughput frontier
//! over 1…256 connections; sustained throughput with a 50 ms mock at 256 and 1,024
//! connections; SSE streams at 1…512 concurrent streams; request bodies of 1, 10 and
//! 100 KiB; the proxy's RSS and CPU per request from `/proc`. The client (`load/client.rs`)
//! runs in this process: one task per HTTP/1 connection, closed loop, `TCP_NODELAY`,
//! latencies in HDR histograms.
//!
//! Output (`load/report.rs`): markdown tables on stdout, the same figures as JSON in
//! `target/load-bench/results-{quick,full}.json`. See `benches/README.md`.

#[path = "load/bare.rs"]
mod bare;
#[path = "load/client.rs"]
mod client;
#[path = "load/ladder.rs"]
mod ladder;
#[path = "load/plan.rs"]
mod plan;
#[path = "load/procs.rs"]
mod procs;
#[path = "load/report.rs"]
mod report;

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Shape, Target, Window};
use ladder::{Arm, ArmKind, Fill, Rung, Zipf};
use plan::{Mode, Options, Plan, Timing};
use procs::ChildProc;
use report::{ArmResult, CpuPerRequest, Meta, Report, Status, StreamStats, UnaryStats};

/// How long a child process may take to say it is listening.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections the 1,024-connection phase needs per process, times three (client,
/// proxy's server side, proxy's upstream side), plus slack.
const FDS_NEEDED: u64 = 1024 * 3 + 256;
/// The rest of the machine counts as quiet below this many cores.
const QUIET_CORES: f64 = 0.25;
/// How long the machine is watched before a phase.
const QUIET_SAMPLE: Duration = Duration::from_millis(150);
/// How long to wait before looking again.
const QUIET_PAUSE: Duration = Duration::from_secs(1);
/// Overrides the Redis the Redis rung uses (else the bench starts `redis-server`).
const REDIS_URL_ENV: &str = "TOWER_AI_LOAD_REDIS_URL";

fn main() -> ExitCode {
    if std::env::var(bare::ROLE_ENV).is_ok_and(|role| role == bare::ROLE) {
        return bare::main();
    }
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let root = procs::workspace_root();
    if options.build
        && let Err(e) = procs::build_binaries(&root)
    {
        eprintln!("load: {e}");
        return ExitCode::FAILURE;
    }
    match procs::open_files_limit() {
        Some(limit) if limit < FDS_NEEDED => eprintln!(
            "load: warning: the open-files limit is {limit}; 1,024 connections through a \
             proxy need about {FDS_NEEDED} (raise it with `ulimit -n`)"
        ),
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Dropping `run` (on a signal) drops its child-process guards, which kill them.
    runtime.block_on(async {
        tokio::select! {
            result = run(options, root) => match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("load: {e}");
                    ExitCode::FAILURE
                }
            },
            () = interrupted() => {
                eprintln!("load: interrupted; stopping the child processes");
                ExitCode::from(130)
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(()) = async { term.as_mut()?.recv().await } => {}
    }
}

/// One arm, its process and what it measured.
struct Lane {
    result: ArmResult,
    target: Option<Arc<Target>>,
    /// The proxy in front of the mock (none for direct).
    proxy: Option<ChildProc>,
    /// A process the arm's proxy relies on (Redis), whose CPU is the arm's too.
    helper: Option<u32>,
}

impl Lane {
    /// The target to load, if the arm runs and its proxy is still alive.
    fn ready(&mut self) -> Option<Arc<Target>> {
        if !matches!(self.result.status, Status::Measured) {
            return None;
        }
        if let Some(why) = self.proxy.as_mut().and_then(ChildProc::exited) {
            eprintln!("load: {}: {why}", self.result.arm.label());
            self.result.status = Status::Failed(why);
            return None;
        }
        self.target.clone()
    }

    fn proxy_pid(&self) -> Option<u32> {
        self.proxy.as_ref().map(ChildProc::pid)
    }

    fn rss(&self) -> Option<u64> {
        self.proxy_pid().and_then(procs::rss_kib)
    }

    fn fail(&mut self, why: String) {
        eprintln!("load: {}: {why}", self.result.arm.label());
        self.result.status = Status::Failed(why);
    }
}

/// What every phase needs.
struct Bench {
    plan: Plan,
    began: Instant,
    clock_ticks: u64,
    mock_pid: u32,
    /// What is left of the time the run may spend waiting for a quiet machine.
    quiet_budget: Cell<Duration>,
}

impl Bench {
    /// Waits (within the plan's budget) until the rest of the machine uses less than
    /// [`QUIET_CORES`]: the machine may be shared, and a compile next door would be
    /// measured as the gateway's cost.
    async fn quiet(&self, lane: &Lane) {
        let mut announced = false;
        while !self.quiet_budget.get().is_zero() {
            let busy = match self.foreign_cores(&self.ours(lane), QUIET_SAMPLE).await {
                Some(busy) if busy >= QUIET_CORES => busy,
                _ => return,
            };
            let left = self.quiet_budget.get().saturating_sub(QUIET_SAMPLE);
            if !announced {
                eprintln!(
                    "load: waiting for the machine to quiet down ({busy:.2} cores busy \
                     elsewhere; up to {:.0} s more)",
                    left.as_secs_f64()
                );
                announced = true;
            }
            let pause = QUIET_PAUSE.min(left);
            tokio::time::sleep(pause).await;
            self.quiet_budget.set(left - pause);
            if self.quiet_budget.get().is_zero() {
                eprintln!("load: the machine is still busy; measuring anyway (flagged)");
            }
        }
    }

    /// Cores the rest of the machine used over `span` (stolen time included).
    async fn foreign_cores(&self, ours: &[u32], span: Duration) -> Option<f64> {
        let before = procs::CpuSnapshot::take(ours)?;
        tokio::time::sleep(span).await;
        let (others, stolen) = procs::CpuSnapshot::take(ours)?.others_since(&before);
        Some((others + stolen) as f64 / self.clock_ticks as f64 / span.as_secs_f64())
    }

    /// The processes whose CPU is the arm's: this one, the mock, the arm's proxy and
    /// what it relies on.
    fn ours(&self, lane: &Lane) -> Vec<u32> {
        [
            Some(std::process::id()),
            Some(self.mock_pid),
            lane.proxy_pid(),
            lane.helper,
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Every scenario, on one arm.
    async fn measure(&self, lane: &mut Lane) {
        let plan = &self.plan;
        let arm = lane.result.arm;
        // The warm-up: connections, pools, caches. An arm that serves nothing fails here.
        let Some(target) = lane.ready() else { return };
        lane.result.rss_start_kib = lane.rss();
        if !self.warm_up(lane, &target).await {
            return;
        }
        tokio::time::sleep(plan.idle).await;
        lane.result.rss_idle_kib = lane.rss();

        // Added latency: 1 connection, instant mock.
        let Some(target) = lane.ready() else { return };
        let s = self
            .unary(lane, &target, &Shape::default(), 1, plan.latency)
            .await;
        self.progress("latency, 1 conn", &arm, &brief(&s));
        lane.result.latency = Some(s);

        // Request bodies: 1 connection, instant mock.
        for &size in plan.body_sizes {
            let Some(target) = lane.ready() else { return };
            let shape = Shape {
                body_bytes: Some(size),
                ..Shape::default()
            };
            let s = self.unary(lane, &target, &shape, 1, plan.bodies).await;
            self.progress(&format!("body {} KiB", size / 1024), &arm, &brief(&s));
            lane.result.bodies.push((size, s));
        }

        // The throughput frontier: instant mock.
        for &conns in plan.frontier_conns {
            let Some(target) = lane.ready() else { return };
            let s = self
                .unary(lane, &target, &Shape::default(), conns, plan.frontier)
                .await;
            self.progress(&format!("frontier, {conns} conns"), &arm, &brief(&s));
            lane.result.frontier.push(s);
        }

        // Sustained: a slow mock, many connections.
        for &conns in plan.sustained_conns {
            let Some(target) = lane.ready() else { return };
            let shape = Shape {
                latency_ms: Some(plan.sustained_latency_ms),
                ..Shape::default()
            };
            let s = self
                .unary(lane, &target, &shape, conns, plan.sustained)
                .await;
            self.progress(&format!("sustained, {conns} conns"), &arm, &brief(&s));
            lane.result.sustained.push(s);
        }

        // Streams.
        for &(concurrency, per_conn) in plan.streams {
            let Some(target) = lane.ready() else { return };
            self.quiet(lane).await;
            let outcome = client::streams(
                &target,
                concurrency,
                per_conn,
                plan.stream_chunks,
                plan.stream_delay_ms,
            )
            .await;
            let s = StreamStats::new(&outcome);
            self.progress(
                &format!("streams, {concurrency} concurrent"),
                &arm,
                &brief_stream(&s),
            );
            lane.result.streams.push(s);
        }

        // Memory after the load.
        tokio::time::sleep(plan.settle).await;
        if lane.ready().is_some() {
            lane.result.rss_after_kib = lane.rss();
        }
    }

    /// The warm-up: connections, pools, caches. An arm that serves nothing fails here
    /// (`false`).
    async fn warm_up(&self, lane: &mut Lane, target: &Arc<Target>) -> bool {
        let timing = Timing {
            warmup: self.plan.warmup,
            measure: Duration::from_millis(200),
        };
        let s = self
            .unary(
                lane,
                target,
                &Shape::default(),
                self.plan.warmup_conns,
                timing,
            )
            .await;
        self.progress("warm-up", &lane.result.arm, &brief(&s));
        if s.requests == 0 {
            lane.fail(format!(
                "no request succeeded in the warm-up: {}",
                s.first_error.unwrap_or_default()
            ));
        }
        s.requests > 0
    }

    /// Added latency at one connection, the arms taking turns round after round (the
    /// order rotating), each arm's histograms merged over its rounds: every arm sees the
    /// same drift of the machine's speed. One entry per lane, `None` where it failed.
    async fn interleaved(&self, lanes: &mut [Lane]) -> Vec<Option<UnaryStats>> {
        let plan = &self.plan;
        let mut merged: Vec<Option<client::UnaryOutcome>> = Vec::new();
        for lane in lanes.iter_mut() {
            let warmed = match lane.ready() {
                Some(target) => self.warm_up(lane, &target).await,
                None => false,
            };
            merged.push(warmed.then(|| client::UnaryOutcome::empty(1)));
        }
        if let Some(first) = lanes.first() {
            self.quiet(first).await;
        }
        let n = lanes.len();
        for round in 0..plan.interleaved_rounds {
            for k in 0..n {
                let i = (round + k) % n;
                let Some(target) = lanes[i].ready() else {
                    merged[i] = None;
                    continue;
                };
                let Some(total) = merged[i].as_mut() else {
                    continue;
                };
                let timing = plan.interleaved;
                let outcome = client::unary(
                    &target,
                    &Shape::default(),
                    1,
                    timing.warmup,
                    timing.measure,
                    |_| {},
                )
                .await;
                total.absorb(outcome);
            }
        }
        let out: Vec<Option<UnaryStats>> = merged
            .into_iter()
            .map(|m| m.map(|m| UnaryStats::new(&m, CpuPerRequest::default(), None)))
            .collect();
        for (lane, s) in lanes.iter().zip(&out) {
            if let Some(s) = s {
                self.progress("latency, interleaved", &lane.result.arm, &brief(s));
            }
        }
        out
    }

    fn progress(&self, scenario: &str, arm: &Arm, what: &str) {
        eprintln!(
            "[{:>6.1}s] {scenario:<26} {:<46} {what}",
            self.began.elapsed().as_secs_f64(),
            arm.label()
        );
    }

    /// One closed-loop phase, with the processes' CPU time sampled over its window and
    /// the proxy's RSS sampled during it.
    async fn unary(
        &self,
        lane: &Lane,
        target: &Arc<Target>,
        shape: &Shape,
        conns: usize,
        timing: Timing,
    ) -> UnaryStats {
        self.quiet(lane).await;
        let pids = Pids {
            client: std::process::id(),
            proxy: lane.proxy_pid(),
            mock: self.mock_pid,
        };
        let mut probe = None;
        let outcome = client::unary(target, shape, conns, timing.warmup, timing.measure, |w| {
            probe = Some(tokio::spawn(sample(w, pids, self.ours(lane))));
        })
        .await;
        let sampled = match probe {
            Some(handle) => handle.await.ok(),
            None => None,
        };
        let per_request = |ticks: Option<u64>| {
            let ticks = ticks?;
            (outcome.requests > 0)
                .then(|| ticks as f64 * 1e6 / self.clock_ticks as f64 / outcome.requests as f64)
        };
        let cpu = sampled
            .as_ref()
            .map_or_else(CpuPerRequest::default, |s| CpuPerRequest {
                client: per_request(s.client_ticks),
                proxy: per_request(s.proxy_ticks),
                mock: per_request(s.mock_ticks),
            });
        let cores = |ticks: Option<u64>| {
            ticks.map(|t| t as f64 / self.clock_ticks as f64 / timing.measure.as_secs_f64())
        };
        let mut stats =
            UnaryStats::new(&outcome, cpu, sampled.as_ref().and_then(|s| s.peak_rss_kib));
        stats.foreign_cores = sampled.as_ref().and_then(|s| cores(s.foreign_ticks));
        stats.steal_cores = sampled.as_ref().and_then(|s| cores(s.steal_ticks));
        stats
    }
}

#[derive(Clone, Copy, Debug)]
struct Pids {
    client: u32,
    proxy: Option<u32>,
    mock: u32,
}

#[derive(Debug)]
struct Sampled {
    client_ticks: Option<u64>,
    proxy_ticks: Option<u64>,
    mock_ticks: Option<u64>,
    /// Busy ticks of the whole machine not spent in the three processes.
    foreign_ticks: Option<u64>,
    /// Ticks the hypervisor stole.
    steal_ticks: Option<u64>,
    peak_rss_kib: Option<u64>,
}

/// CPU ticks of each process over `window`, the rest of the machine's (neither in
/// `ours` nor in the kernel's threads; and what the hypervisor stole), and the proxy's
/// peak RSS in it.
async fn sample(window: Window, pids: Pids, ours: Vec<u32>) -> Sampled {
    let ticks = |pid: Option<u32>| pid.and_then(procs::cpu_ticks);
    let processes = || {
        [
            ticks(Some(pids.client)),
            ticks(pids.proxy),
            ticks(Some(pids.mock)),
        ]
    };
    tokio::time::sleep_until(window.start.into()).await;
    let machine_before = procs::CpuSnapshot::take(&ours);
    let before = processes();
    let mut peak = pids.proxy.and_then(procs::rss_kib);
    loop {
        let next = Instant::now() + Duration::from_millis(250);
        tokio::time::sleep_until(next.min(window.end).into()).await;
        peak = peak.max(pids.proxy.and_then(procs::rss_kib));
        if Instant::now() >= window.end {
            break;
        }
    }
    let after = processes();
    let machine_after = procs::CpuSnapshot::take(&ours);
    let delta = |i: usize| Some(after[i]?.saturating_sub(before[i]?));
    let others = machine_before
        .zip(machine_after)
        .map(|(before, after)| after.others_since(&before));
    Sampled {
        client_ticks: delta(0),
        proxy_ticks: delta(1),
        mock_ticks: delta(2),
        foreign_ticks: others.map(|(busy, _)| busy),
        steal_ticks: others.map(|(_, stolen)| stolen),
        peak_rss_kib: peak,
    }
}

fn brief(s: &UnaryStats) -> String {
    let mut flags = String::new();
    if s.errors > 0 {
        flags = format!(
            "  ⚠ {} errors ({})",
            s.errors,
            s.first_error.as_deref().unwrap_or("")
        );
    }
    if let Some(why) = s.disturbed() {
        flags.push_str("  ⚠ ");
        flags.push_str(&why);
    }
    format!(
        "{:>8.0} req/s  p50 {:>6.0} µs  p99 {:>7.0} µs{flags}",
        s.rps, s.p50, s.p99
    )
}

fn brief_stream(s: &StreamStats) -> String {
    let errors = if s.errors > 0 {
        format!(
            "  ⚠ {} errors ({})",
            s.errors,
            s.first_error.as_deref().unwrap_or("")
        )
    } else {
        String::new()
    };
    format!(
        "TTFT p50 {:.0} µs  gap p99 {:.2} ms  lost {}{errors}",
        s.ttft_p50,
        s.gap_p99 / 1000.0,
        s.lost()
    )
}

async fn run(options: Options, root: PathBuf) -> Result<(), String> {
    let began = Instant::now();
    let plan = Plan::new(options.mode);
    let bin = procs::release_dir(&root);
    let out_dir = procs::target_dir(&root).join("load-bench");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;

    let mut mock_cmd = Command::new(bin.join("mock-provider"));
    mock_cmd
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null());
    let mock = ChildProc::spawn(
        "mock",
        mock_cmd,
        "listening on http://",
        READY_TIMEOUT,
        true,
    )?;
    let mock_url = mock.url().ok_or("the mock printed no URL")?.to_owned();
    let mock_addr = addr_of(&mock_url)?;
    eprintln!("load: mock provider at {mock_url}");

    let zipf = Arc::new(Zipf::new(Zipf::PROMPTS, Zipf::EXPONENT));
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let bench = Bench {
        quiet_budget: Cell::new(plan.quiet_budget),
        plan,
        began,
        clock_ticks: procs::clock_ticks_per_sec(),
        mock_pid: mock.pid(),
    };
    let plan = &bench.plan;

    let mut redis = Redis::default();
    let arms: Vec<Arm> = Arm::all().into_iter().filter(|a| options.runs(a)).collect();
    let start = |arm: Arm, redis: &mut Redis| {
        let mut lane = start_arm(
            arm, &bin, &out_dir, &mock_url, mock_addr, &zipf, nonce, redis,
        );
        if arm.rung().is_some_and(|r| r.needs_redis) {
            lane.helper = redis.process.as_ref().map(ChildProc::pid);
        }
        lane
    };

    // Added latency in interleaved rounds, every arm's proxy up at once (then stopped).
    let mut interleaved = if plan.interleaved_rounds > 0 && arms.len() > 1 {
        let mut lanes: Vec<Lane> = arms.iter().map(|&arm| start(arm, &mut redis)).collect();
        bench.interleaved(&mut lanes).await
    } else {
        Vec::new()
    };

    // Each arm in turn, its proxy started for it and stopped after it: an idle proxy
    // of another arm is not idle (its upstream pool expires, say) and would be measured.
    let mut results = Vec::new();
    for (i, &arm) in arms.iter().enumerate() {
        let mut lane = start(arm, &mut redis);
        bench.measure(&mut lane).await;
        lane.result.latency_interleaved = interleaved.get_mut(i).and_then(Option::take);
        results.push(lane.result);
        // `lane.proxy` is dropped here: the proxy is killed before the next arm.
    }

    let (cpus, cpu_model) = procs::machine();
    let mut command = "cargo bench --bench load".to_owned();
    if options.mode == Mode::Quick || options.arms.is_some() {
        command.push_str(" --");
        if options.mode == Mode::Quick {
            command.push_str(" --quick");
        }
        if let Some(arms) = &options.arms {
            command.push_str(" --arms ");
            command.push_str(&arms.join(","));
        }
    }
    let report = Report {
        meta: Meta {
            mode: options.mode.name(),
            command,
            timestamp: procs::utc_now(),
            commit: procs::git_commit(&root),
            cpus,
            cpu_model,
            clock_ticks_per_sec: bench.clock_ticks,
            duration_s: began.elapsed().as_secs_f64(),
            quiet_wait_s: bench
                .plan
                .quiet_budget
                .saturating_sub(bench.quiet_budget.get())
                .as_secs_f64(),
        },
        plan,
        arms: results,
    };
    println!("{}", report.markdown());
    let path = out_dir.join(format!("results-{}.json", options.mode.name()));
    let json = serde_json::to_string_pretty(&report.json()).map_err(|e| e.to_string())?;
    std::fs::write(&path, json + "\n")
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!(
        "load: done in {:.0} s; JSON in {}",
        began.elapsed().as_secs_f64(),
        path.display()
    );
    drop(redis);
    drop(mock);
    Ok(())
}

/// `http://HOST:PORT` to a socket address.
fn addr_of(url: &str) -> Result<SocketAddr, String> {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .map_err(|e| format!("bad address in {url}: {e}"))
}

/// The Redis server the Redis rung uses, started on first need.
#[derive(Debug, Default)]
struct Redis {
    url: Option<String>,
    process: Option<ChildProc>,
}

impl Redis {
    fn url(&mut self) -> Result<String, String> {
        if let Some(url) = &self.url {
            return Ok(url.clone());
        }
        if let Ok(url) = std::env::var(REDIS_URL_ENV) {
            self.url = Some(url.clone());
            return Ok(url);
        }
        let port = procs::free_port().map_err(|e| format!("no free port for Redis: {e}"))?;
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null());
        let process = ChildProc::spawn(
            "redis",
            command,
            "Ready to accept connections",
            READY_TIMEOUT,
            false,
        )
        .map_err(|e| format!("{e} (set {REDIS_URL_ENV} to use a running Redis)"))?;
        let url = format!("redis://127.0.0.1:{port}");
        self.url = Some(url.clone());
        self.process = Some(process);
        Ok(url)
    }
}

/// Starts what an arm needs; a lane that cannot run carries its reason.
#[allow(clippy::too_many_arguments)]
fn start_arm(
    arm: Arm,
    bin: &Path,
    out_dir: &Path,
    mock_url: &str,
    mock_addr: SocketAddr,
    zipf: &Arc<Zipf>,
    nonce: u64,
    redis: &mut Redis,
) -> Lane {
    let target = |addr, rung: Option<&Rung>| {
        Some(Arc::new(Target::new(
            addr,
            arm.path(),
            rung.map_or(ladder::Prompts::Distinct, |r| r.prompts),
            zipf.clone(),
            rung.and_then(|r| r.fail_one_in),
            nonce,
        )))
    };
    let lane = |status, target, proxy| Lane {
        result: ArmResult::new(arm, status),
        target,
        proxy,
        helper: None,
    };
    let started = match arm.kind {
        ArmKind::Direct => return lane(Status::Measured, target(mock_addr, None), None),
        ArmKind::Bare => start_bare(mock_url),
        ArmKind::Gateway(rung) => match gateway_config(rung, out_dir, mock_url, redis) {
            Ok(config) => start_gateway(bin, &config, rung),
            Err(status) => return lane(status, None, None),
        },
    };
    let result = started.and_then(|proxy| {
        let url = proxy.url().ok_or("no URL in its ready line")?;
        let addr = addr_of(url)?;
        eprintln!("load: {} at {url}", arm.label());
        Ok((proxy, addr))
    });
    match result {
        Ok((proxy, addr)) => lane(Status::Measured, target(addr, arm.rung()), Some(proxy)),
        Err(why) => {
            eprintln!("load: {}: {why}", arm.label());
            lane(Status::Failed(why), None, None)
        }
    }
}

fn start_bare(mock_url: &str) -> Result<ChildProc, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut command = Command::new(exe);
    command
        .env(bare::ROLE_ENV, bare::ROLE)
        .env(bare::UPSTREAM_ENV, mock_url)
        // The bare proxy exits when its stdin closes, i.e. when the bench goes away.
        .stdin(Stdio::piped());
    ChildProc::spawn("bare", command, "listening on http://", READY_TIMEOUT, true)
}

/// Writes the rung's config, once the gateway's own parser accepts it.
fn gateway_config(
    rung: &Rung,
    out_dir: &Path,
    mock_url: &str,
    redis: &mut Redis,
) -> Result<PathBuf, Status> {
    let parse = |toml: &str| {
        tower_ai_gateway::Config::from_toml(toml)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let dir = out_dir.display().to_string();
    let probe_fill = Fill {
        mock: mock_url,
        redis: "redis://127.0.0.1:6379",
        dir: &dir,
    };
    // The layers the gateway has: those whose section its parser does not call unknown.
    let known: Vec<&str> = ladder::LAYERS
        .iter()
        .filter(|layer| match parse(&Rung::probe(layer, &probe_fill)) {
            Ok(()) => true,
            Err(e) => !e.contains(&format!("unknown field `{}`", layer.section)),
        })
        .map(|layer| layer.section)
        .collect();
    let missing: Vec<&str> = rung
        .layers
        .iter()
        .map(|l| l.section)
        .filter(|section| !known.contains(section))
        .collect();
    if !missing.is_empty() {
        return Err(Status::NotBuilt(format!(
            "the gateway has no [{}] section{}",
            missing.join("], ["),
            if missing.len() > 1 { "s" } else { "" }
        )));
    }
    let redis_url = if rung.needs_redis {
        redis.url().map_err(Status::Failed)?
    } else {
        String::new()
    };
    let fill = Fill {
        redis: &redis_url,
        ..probe_fill
    };
    let toml = rung.config(&fill, |section| known.contains(&section));
    if let Err(e) = parse(&toml) {
        let line = e
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("TOML parse error") && !l.contains('|'))
            .unwrap_or(&e);
        return Err(Status::Failed(format!(
            "the gateway rejects the rung's config (update its entry in \
             benches/load/ladder.rs): {line}"
        )));
    }
    // A fresh request log for the meter.
    for stale in ["db", "db-wal", "db-shm"] {
        let _ = std::fs::remove_file(out_dir.join(format!("meter-{}.{stale}", rung.key)));
    }
    let path = out_dir.join(format!("gateway-{}.toml", rung.key));
    std::fs::write(&path, toml)
        .map_err(|e| Status::Failed(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

fn start_gateway(bin: &Path, config: &Path, rung: &Rung) -> Result<ChildProc, String> {
    let mut command = Command::new(bin.join("gateway"));
    command
        .arg("--config")
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    ChildProc::spawn(
        &format!("gateway {}", rung.key),
        command,
        "listening on http://",
        READY_TIMEOUT,
        true,
    )
}
