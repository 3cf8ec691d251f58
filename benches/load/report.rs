//! Results: what each arm measured, the markdown tables, the ratios, the goals and the
//! JSON.
//!
//! "Added" is an arm's figure minus direct's, in the same scenario at the same
//! concurrency: what the hop in between costs. Ratios compare added figures (latency)
//! or whole figures (throughput, gaps).

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::client::{Histogram, StreamOutcome, UnaryOutcome};
use crate::ladder::{Arm, ArmKind, Prompts};
use crate::plan::Plan;

/// Foreign plus stolen CPU, in cores, from which a window counts as disturbed.
const DISTURBED_CORES: f64 = 0.15;

/// CPU time per request of each process, in µs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuPerRequest {
    pub(crate) client: Option<f64>,
    pub(crate) proxy: Option<f64>,
    pub(crate) mock: Option<f64>,
}

/// A unary phase, summarised (latencies in µs).
#[derive(Clone, Debug)]
pub(crate) struct UnaryStats {
    pub(crate) conns: usize,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) rps: f64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
    pub(crate) cpu: CpuPerRequest,
    /// The proxy's largest RSS seen during the window, KiB.
    pub(crate) peak_rss_kib: Option<u64>,
    /// CPU the rest of the machine used during the window, in cores.
    pub(crate) foreign_cores: Option<f64>,
    /// CPU the hypervisor stole during the window, in cores.
    pub(crate) steal_cores: Option<f64>,
}

impl UnaryStats {
    pub(crate) fn new(
        outcome: &UnaryOutcome,
        cpu: CpuPerRequest,
        peak_rss_kib: Option<u64>,
    ) -> UnaryStats {
        let h = &outcome.latency;
        UnaryStats {
            conns: outcome.conns,
            requests: outcome.requests,
            errors: outcome.errors,
            first_error: outcome.first_error.clone(),
            rps: outcome.requests as f64 / outcome.window.as_secs_f64(),
            p50: q(h, 0.5),
            p90: q(h, 0.9),
            p99: q(h, 0.99),
            p999: q(h, 0.999),
            max: h.max() as f64,
            mean: if h.is_empty() { f64::NAN } else { h.mean() },
            cpu,
            peak_rss_kib,
            foreign_cores: None,
            steal_cores: None,
        }
    }

    /// Why the window's figures may not be clean: someone else used the CPU.
    pub(crate) fn disturbed(&self) -> Option<String> {
        let foreign = self.foreign_cores.unwrap_or(0.0);
        let steal = self.steal_cores.unwrap_or(0.0);
        (foreign + steal >= DISTURBED_CORES)
            .then(|| format!("{foreign:.2} cores busy elsewhere, {steal:.2} stolen"))
    }

    fn to_json(&self) -> Value {
        json!({
            "conns": self.conns,
            "requests": self.requests,
            "errors": self.errors,
            "first_error": self.first_error,
            "req_per_s": num(self.rps),
            "latency_us": {
                "p50": num(self.p50), "p90": num(self.p90), "p99": num(self.p99),
                "p99_9": num(self.p999), "max": num(self.max), "mean": num(self.mean),
            },
            "cpu_us_per_request": {
                "client": self.cpu.client.map(num),
                "proxy": self.cpu.proxy.map(num),
                "mock": self.cpu.mock.map(num),
            },
            "proxy_peak_rss_kib": self.peak_rss_kib,
            "machine_cores_elsewhere": self.foreign_cores.map(num),
            "machine_cores_stolen": self.steal_cores.map(num),
        })
    }
}

/// A stream phase, summarised (times in µs).
#[derive(Clone, Debug)]
pub(crate) struct StreamStats {
    pub(crate) concurrency: usize,
    pub(crate) streams: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) ttft_p50: f64,
    pub(crate) ttft_p99: f64,
    pub(crate) gap_p50: f64,
    pub(crate) gap_p99: f64,
    pub(crate) gap_p999: f64,
    pub(crate) gap_max: f64,
    pub(crate) events_expected: u64,
    pub(crate) events_received: u64,
}

impl StreamStats {
    pub(crate) fn new(outcome: &StreamOutcome) -> StreamStats {
        StreamStats {
            concurrency: outcome.concurrency,
            streams: outcome.streams,
            errors: outcome.errors,
            first_error: outcome.first_error.clone(),
            ttft_p50: q(&outcome.ttft, 0.5),
            ttft_p99: q(&outcome.ttft, 0.99),
            gap_p50: q(&outcome.gaps, 0.5),
            gap_p99: q(&outcome.gaps, 0.99),
            gap_p999: q(&outcome.gaps, 0.999),
            gap_max: outcome.gaps.max() as f64,
            events_expected: outcome.events_expected,
            events_received: outcome.events_received,
        }
    }

    pub(crate) fn lost(&self) -> u64 {
        self.events_expected.saturating_sub(self.events_received)
    }

    fn to_json(&self) -> Value {
        json!({
            "concurrency": self.concurrency,
            "streams": self.streams,
            "errors": self.errors,
            "first_error": self.first_error,
            "ttft_us": { "p50": num(self.ttft_p50), "p99": num(self.ttft_p99) },
            "gap_us": {
                "p50": num(self.gap_p50), "p99": num(self.gap_p99),
                "p99_9": num(self.gap_p999), "max": num(self.gap_max),
            },
            "events_expected": self.events_expected,
            "events_received": self.events_received,
            "frames_lost": self.lost(),
        })
    }
}

fn q(h: &Histogram, quantile: f64) -> f64 {
    if h.is_empty() {
        f64::NAN
    } else {
        h.value_at_quantile(quantile) as f64
    }
}

/// A JSON number, or `null` for NaN.
fn num(v: f64) -> Value {
    if v.is_finite() {
        json!((v * 100.0).round() / 100.0)
    } else {
        Value::Null
    }
}

/// Whether an arm was measured.
#[derive(Clone, Debug)]
pub(crate) enum Status {
    Measured,
    /// Its layers are not in the gateway yet (the gateway rejects their config).
    NotBuilt(String),
    /// It could not run, or stopped running (the reason).
    Failed(String),
}

/// Everything one arm measured.
#[derive(Debug)]
pub(crate) struct ArmResult {
    pub(crate) arm: Arm,
    pub(crate) status: Status,
    pub(crate) latency: Option<UnaryStats>,
    /// The same, measured in interleaved rounds with the other arms (see the plan).
    pub(crate) latency_interleaved: Option<UnaryStats>,
    pub(crate) frontier: Vec<UnaryStats>,
    pub(crate) sustained: Vec<UnaryStats>,
    pub(crate) streams: Vec<StreamStats>,
    pub(crate) bodies: Vec<(usize, UnaryStats)>,
    /// Started and answering, before any request was measured or warmed it up.
    pub(crate) rss_start_kib: Option<u64>,
    /// At rest after the warm-up (with what it filled: pools, a cache).
    pub(crate) rss_idle_kib: Option<u64>,
    pub(crate) rss_after_kib: Option<u64>,
}

impl ArmResult {
    pub(crate) fn new(arm: Arm, status: Status) -> ArmResult {
        ArmResult {
            arm,
            status,
            latency: None,
            latency_interleaved: None,
            frontier: Vec::new(),
            sustained: Vec::new(),
            streams: Vec::new(),
            bodies: Vec::new(),
            rss_start_kib: None,
            rss_idle_kib: None,
            rss_after_kib: None,
        }
    }

    fn is_proxy(&self) -> bool {
        !matches!(self.arm.kind, ArmKind::Direct)
    }

    /// Max req/s among frontier steps with p99 ≤ `bound_us`.
    fn frontier_max(&self, bound_us: u64) -> Option<&UnaryStats> {
        self.frontier
            .iter()
            .filter(|s| s.p99 <= bound_us as f64 && s.errors == 0)
            .max_by(|a, b| a.rps.total_cmp(&b.rps))
    }

    fn frontier_peak(&self) -> Option<&UnaryStats> {
        self.frontier.iter().max_by(|a, b| a.rps.total_cmp(&b.rps))
    }

    fn sustained_at(&self, conns: usize) -> Option<&UnaryStats> {
        self.sustained.iter().find(|s| s.conns == conns)
    }

    fn stream_at(&self, concurrency: usize) -> Option<&StreamStats> {
        self.streams.iter().find(|s| s.concurrency == concurrency)
    }

    fn body_at(&self, size: usize) -> Option<&UnaryStats> {
        self.bodies.iter().find(|(s, _)| *s == size).map(|(_, s)| s)
    }

    /// Every unary phase, named.
    fn phases(&self) -> Vec<(String, &UnaryStats)> {
        let mut phases = Vec::new();
        phases.extend(
            self.latency
                .iter()
                .map(|s| ("latency, 1 conn".to_owned(), s)),
        );
        phases.extend(
            self.bodies
                .iter()
                .map(|(size, s)| (format!("body {} KiB", size / 1024), s)),
        );
        phases.extend(
            self.frontier
                .iter()
                .map(|s| (format!("frontier, {} conns", s.conns), s)),
        );
        phases.extend(
            self.sustained
                .iter()
                .map(|s| (format!("sustained, {} conns", s.conns), s)),
        );
        phases
    }

    fn errors(&self) -> u64 {
        let unary = self.phases().into_iter().map(|(_, s)| s.errors);
        unary.chain(self.streams.iter().map(|s| s.errors)).sum()
    }

    /// The row label: the arm, flagged when something went wrong.
    fn row_label(&self) -> String {
        let mut label = self.arm.label();
        if self.errors() > 0 {
            label.push_str(" ⚠ errors");
        }
        if matches!(self.status, Status::Failed(_)) {
            label.push_str(" ⚠ failed");
        }
        label
    }

    /// What to print instead of figures, when the arm has none.
    fn placeholder(&self) -> Option<String> {
        match &self.status {
            Status::NotBuilt(_) => Some("not built yet".to_owned()),
            Status::Failed(why) => Some(format!("failed: {why}")),
            Status::Measured => None,
        }
    }
}

/// Run facts for the header and the JSON.
#[derive(Debug)]
pub(crate) struct Meta {
    pub(crate) mode: &'static str,
    pub(crate) command: String,
    pub(crate) timestamp: String,
    pub(crate) commit: Option<String>,
    pub(crate) cpus: usize,
    pub(crate) cpu_model: String,
    pub(crate) clock_ticks_per_sec: u64,
    pub(crate) duration_s: f64,
    /// Time spent waiting for a quiet machine.
    pub(crate) quiet_wait_s: f64,
}

/// The whole report.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    pub(crate) meta: Meta,
    pub(crate) plan: &'a Plan,
    pub(crate) arms: Vec<ArmResult>,
}

/// A markdown table with padded columns.
struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new<S: Into<String>>(head: impl IntoIterator<Item = S>) -> Table {
        Table {
            head: head.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// A row with the label and one cell saying why there are no figures.
    fn placeholder_row(&mut self, label: String, text: String) {
        let mut cells = vec![label, text];
        cells.resize(self.head.len(), String::new());
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let columns = self.head.len();
        let mut widths: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                let pad = width - cell.chars().count();
                if i == 0 {
                    let _ = write!(s, " {cell}{} |", " ".repeat(pad));
                } else {
                    let _ = write!(s, " {}{cell} |", " ".repeat(pad));
                }
            }
            s.push('\n');
            s
        };
        let mut out = line(&self.head);
        out.push('|');
        for (i, width) in widths.iter().enumerate() {
            if i == 0 {
                let _ = write!(out, "{}|", "-".repeat(width + 2));
            } else {
                let _ = write!(out, "{}:|", "-".repeat(width + 1));
            }
        }
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// µs, or ms with two decimals from 10 ms up.
fn us(v: f64) -> String {
    if !v.is_finite() {
        "–".to_owned()
    } else if v >= 10_000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

/// A signed difference in µs.
fn added(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => {
            if v.abs() >= 10_000.0 {
                format!("{v:+.2} ms", v = v / 1000.0)
            } else {
                format!("{v:+.0} µs")
            }
        }
        _ => "–".to_owned(),
    }
}

fn rate(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        "–".to_owned()
    }
}

fn times(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.2}×"),
        _ => "n/a".to_owned(),
    }
}

fn percent(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{:.1} %", v * 100.0),
        _ => "n/a".to_owned(),
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "–".to_owned(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

fn cpu(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| "–".to_owned(), |v| format!("{v:.0}"))
}

/// `a / b` when both are there and `b` is positive.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a.is_finite() && b.is_finite() && b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The figures the goals and ratios are about, for one gateway arm.
#[derive(Debug, Default)]
struct Ratios {
    added_p50_vs_bare: Option<f64>,
    added_p99_vs_bare: Option<f64>,
    /// The same two from the interleaved rounds.
    interleaved_p50_vs_bare: Option<f64>,
    interleaved_p99_vs_bare: Option<f64>,
    throughput_vs_bare: Option<f64>,
    peak_vs_bare: Option<f64>,
    sustained_vs_direct: Vec<(usize, Option<f64>)>,
    gap_p99_vs_bare: Option<f64>,
    added_ttft_p50_lowest: Option<f64>,
    worst_added_ttft_p50: Option<f64>,
    frames_lost: u64,
    /// Whether the arm ran the stream phases (else `frames_lost` means nothing).
    streamed: bool,
    rss_start_kib: Option<u64>,
    rss_idle_kib: Option<u64>,
    rss_1024_kib: Option<u64>,
}

impl Ratios {
    /// Sustained req/s ÷ direct's at `conns` connections.
    fn sustained_at(&self, conns: usize) -> Option<f64> {
        self.sustained_vs_direct
            .iter()
            .find(|(c, _)| *c == conns)
            .and_then(|(_, v)| *v)
    }
}

/// Whether a goal is also checked on the bare proxy's own reading.
#[derive(Clone, Copy, PartialEq)]
enum Floor {
    /// The goal is a ratio to the bare proxy: nothing to check there.
    IsBare,
    /// Against direct, or absolute: the bare proxy's reading is checked too.
    Checked,
}

/// One of the goals, as the report checks it.
struct Goal {
    name: String,
    target: String,
    /// The full stack's reading, as shown.
    shown: String,
    met: Option<bool>,
    /// The bare proxy's reading and verdict, for a goal that is not a ratio to it.
    bare: Option<(String, Option<bool>)>,
}

impl Report<'_> {
    fn find(&self, key: &str) -> Option<&ArmResult> {
        self.arms
            .iter()
            .find(|a| a.arm.key() == key && matches!(a.status, Status::Measured))
    }

    fn direct(&self) -> Option<&ArmResult> {
        self.find("direct")
    }

    fn bare(&self) -> Option<&ArmResult> {
        self.find("bare")
    }

    /// The throughput the ratios use: max req/s with p99 within the loosest bound.
    fn throughput_bound(&self) -> u64 {
        self.plan
            .frontier_bounds_us
            .iter()
            .copied()
            .max()
            .unwrap_or(10_000)
    }

    fn throughput(&self, arm: &ArmResult) -> Option<f64> {
        arm.frontier_max(self.throughput_bound()).map(|s| s.rps)
    }

    fn added_latency(&self, arm: &ArmResult, pick: fn(&UnaryStats) -> f64) -> Option<f64> {
        self.added_in(arm, |a| a.latency.as_ref(), pick)
    }

    /// What `arm` adds to going direct, in the latencies `of` picks (the sequential
    /// phase's or the interleaved rounds').
    fn added_in(
        &self,
        arm: &ArmResult,
        of: fn(&ArmResult) -> Option<&UnaryStats>,
        pick: fn(&UnaryStats) -> f64,
    ) -> Option<f64> {
        Some(pick(of(arm)?) - pick(of(self.direct()?)?))
    }

    /// Added latency ÷ the bare proxy's, from the interleaved rounds.
    fn interleaved_vs_bare(&self, arm: &ArmResult, pick: fn(&UnaryStats) -> f64) -> Option<f64> {
        let of: fn(&ArmResult) -> Option<&UnaryStats> = |a| a.latency_interleaved.as_ref();
        ratio(
            self.added_in(arm, of, pick),
            self.added_in(self.bare()?, of, pick),
        )
    }

    fn ratios(&self, arm: &ArmResult) -> Ratios {
        let bare = self.bare();
        let direct = self.direct();
        let bare_added =
            |pick: fn(&UnaryStats) -> f64| bare.and_then(|b| self.added_latency(b, pick));
        let gap_ratios = self.plan.stream_concurrency().filter_map(|c| {
            let mine = arm.stream_at(c)?.gap_p99;
            let floor = bare?.stream_at(c)?.gap_p99;
            ratio(Some(mine), Some(floor))
        });
        let added_ttft =
            |c: usize| Some(arm.stream_at(c)?.ttft_p50 - direct?.stream_at(c)?.ttft_p50);
        let lowest = self.plan.stream_concurrency().min();
        Ratios {
            added_p50_vs_bare: ratio(self.added_latency(arm, |s| s.p50), bare_added(|s| s.p50)),
            added_p99_vs_bare: ratio(self.added_latency(arm, |s| s.p99), bare_added(|s| s.p99)),
            interleaved_p50_vs_bare: self.interleaved_vs_bare(arm, |s| s.p50),
            interleaved_p99_vs_bare: self.interleaved_vs_bare(arm, |s| s.p99),
            throughput_vs_bare: ratio(self.throughput(arm), bare.and_then(|b| self.throughput(b))),
            peak_vs_bare: ratio(
                arm.frontier_peak().map(|s| s.rps),
                bare.and_then(|b| b.frontier_peak()).map(|s| s.rps),
            ),
            sustained_vs_direct: self
                .plan
                .sustained_conns
                .iter()
                .map(|&c| {
                    let mine = arm.sustained_at(c).map(|s| s.rps);
                    let floor = direct.and_then(|d| d.sustained_at(c)).map(|s| s.rps);
                    (c, ratio(mine, floor))
                })
                .collect(),
            gap_p99_vs_bare: gap_ratios.reduce(f64::max),
            added_ttft_p50_lowest: lowest.and_then(added_ttft),
            worst_added_ttft_p50: self
                .plan
                .stream_concurrency()
                .filter_map(added_ttft)
                .reduce(f64::max),
            frames_lost: arm.streams.iter().map(StreamStats::lost).sum(),
            streamed: !arm.streams.is_empty(),
            rss_start_kib: arm.rss_start_kib,
            rss_idle_kib: arm.rss_idle_kib,
            rss_1024_kib: arm
                .sustained
                .iter()
                .max_by_key(|s| s.conns)
                .and_then(|s| s.peak_rss_kib),
        }
    }

    /// The gateway arm the goals are checked on: the highest built rung that sends
    /// distinct prompts (cache miss) and injects no failures.
    fn full_stack(&self) -> Option<&ArmResult> {
        self.arms.iter().rev().find(|a| {
            matches!(a.status, Status::Measured)
                && a.arm
                    .rung()
                    .is_some_and(|r| r.prompts == Prompts::Distinct && r.fail_one_in.is_none())
        })
    }

    fn cache_hit_vs_direct(&self) -> Result<f64, String> {
        let hit = self
            .arms
            .iter()
            .find(|a| a.arm.rung().is_some_and(|r| r.is_cache_hit()));
        match hit.map(|a| &a.status) {
            None => Err("n/a (cache-hit arm not run)".to_owned()),
            Some(Status::NotBuilt(_)) => Err("n/a (no cache layer yet)".to_owned()),
            Some(Status::Failed(why)) => Err(format!("n/a (cache-hit arm failed: {why})")),
            Some(Status::Measured) => {
                let hit = hit.and_then(|a| self.throughput(a));
                let direct = self.direct().and_then(|d| self.throughput(d));
                ratio(hit, direct).ok_or_else(|| "n/a (no figure)".to_owned())
            }
        }
    }

    /// The whole report as markdown.
    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.meta;
        let _ = writeln!(out, "# tower-ai load benchmark ({} run)\n", m.mode);
        let _ = writeln!(
            out,
            "`{}` · {} · commit {} · {} × {} · {:.0} s (of which {:.0} s waiting for a quiet machine)\n",
            m.command,
            m.timestamp,
            m.commit.as_deref().unwrap_or("unknown"),
            m.cpus,
            m.cpu_model,
            m.duration_s,
            m.quiet_wait_s
        );
        out.push_str(&self.latency_table());
        out.push_str(&self.interleaved_table());
        out.push_str(&self.frontier_tables());
        out.push_str(&self.sustained_table());
        out.push_str(&self.stream_table());
        out.push_str(&self.body_table());
        out.push_str(&self.resource_table());
        out.push_str(&self.ratio_table());
        out.push_str(&self.goal_table());
        out.push_str(&self.notes());
        out
    }

    /// One row per arm: its one-connection latencies (`of`) and what they add to
    /// going direct.
    fn latency_rows(&self, of: fn(&ArmResult) -> Option<&UnaryStats>) -> Table {
        let mut t = Table::new([
            "arm",
            "req/s",
            "p50",
            "p99",
            "p99.9",
            "added p50",
            "added p99",
            "added p99.9",
            "errors",
        ]);
        for a in &self.arms {
            match (of(a), a.placeholder()) {
                (Some(s), _) => t.row(vec![
                    a.row_label(),
                    rate(s.rps),
                    us(s.p50),
                    us(s.p99),
                    us(s.p999),
                    added(self.added_in(a, of, |s| s.p50)),
                    added(self.added_in(a, of, |s| s.p99)),
                    added(self.added_in(a, of, |s| s.p999)),
                    s.errors.to_string(),
                ]),
                (None, p) => t.placeholder_row(a.row_label(), p.unwrap_or_default()),
            }
        }
        t
    }

    fn latency_table(&self) -> String {
        format!(
            "## Added latency: 1 connection, instant mock\n\n{}\n",
            self.latency_rows(|a| a.latency.as_ref()).render()
        )
    }

    fn interleaved_table(&self) -> String {
        if !self.arms.iter().any(|a| a.latency_interleaved.is_some()) {
            return String::new();
        }
        format!(
            "## Added latency, interleaved: 1 connection, instant mock, every arm up at once\n\n{} rounds; in each, every arm in turn (the order rotating) for {:.1} s after a {:.1} s warm-up. The machine's speed drifts over minutes: arms measured in turn share the drift, so their ratios hold better than those of the table above, where each arm is measured once, minutes apart.\n\n{}\n",
            self.plan.interleaved_rounds,
            self.plan.interleaved.measure.as_secs_f64(),
            self.plan.interleaved.warmup.as_secs_f64(),
            self.latency_rows(|a| a.latency_interleaved.as_ref())
                .render()
        )
    }

    fn frontier_tables(&self) -> String {
        let bounds = self.plan.frontier_bounds_us;
        let mut head = vec!["arm".to_owned()];
        head.extend(
            bounds
                .iter()
                .map(|b| format!("max req/s, p99 ≤ {} ms", b / 1000)),
        );
        head.push("peak req/s (conns, p99)".to_owned());
        let mut t = Table::new(head);
        let mut detail_head = vec!["arm".to_owned()];
        detail_head.extend(
            self.plan
                .frontier_conns
                .iter()
                .map(|c| format!("{c} conns")),
        );
        let mut detail = Table::new(detail_head);
        for a in &self.arms {
            if a.frontier.is_empty() {
                let p = a.placeholder().unwrap_or_default();
                t.placeholder_row(a.row_label(), p.clone());
                detail.placeholder_row(a.row_label(), p);
                continue;
            }
            let mut row = vec![a.row_label()];
            for &b in bounds {
                row.push(a.frontier_max(b).map_or_else(
                    || "–".to_owned(),
                    |s| format!("{} ({} c)", rate(s.rps), s.conns),
                ));
            }
            row.push(a.frontier_peak().map_or_else(String::new, |s| {
                format!("{} ({} c, {})", rate(s.rps), s.conns, us(s.p99))
            }));
            t.row(row);
            let mut row = vec![a.row_label()];
            for &c in self.plan.frontier_conns {
                row.push(a.frontier.iter().find(|s| s.conns == c).map_or_else(
                    || "–".to_owned(),
                    |s| {
                        let flag = if s.errors > 0 { " ⚠" } else { "" };
                        format!("{} / {}{flag}", rate(s.rps), us(s.p99))
                    },
                ));
            }
            detail.row(row);
        }
        format!(
            "## Throughput frontier: instant mock\n\nMax req/s over the connection counts whose p99 stays within the bound (the count that got it in parentheses).\n\n{}\nEvery step, req/s / p99:\n\n{}\n",
            t.render(),
            detail.render()
        )
    }

    fn sustained_table(&self) -> String {
        let ms = self.plan.sustained_latency_ms;
        let mut t = Table::new([
            "arm",
            "conns",
            "req/s",
            "of ideal",
            "p50",
            "p99",
            "p99.9",
            "÷ direct",
            "errors",
        ]);
        for a in &self.arms {
            if a.sustained.is_empty() {
                t.placeholder_row(a.row_label(), a.placeholder().unwrap_or_default());
                continue;
            }
            for s in &a.sustained {
                let ideal = s.conns as f64 * 1000.0 / f64::from(ms);
                let direct = self
                    .direct()
                    .and_then(|d| d.sustained_at(s.conns))
                    .map(|d| d.rps);
                t.row(vec![
                    a.row_label(),
                    s.conns.to_string(),
                    rate(s.rps),
                    percent(Some(s.rps / ideal)),
                    us(s.p50),
                    us(s.p99),
                    us(s.p999),
                    percent(ratio(Some(s.rps), direct)),
                    s.errors.to_string(),
                ]);
            }
        }
        format!(
            "## Sustained: the mock answers after {ms} ms\n\nClosed loop: ideal req/s = connections × 1000 / {ms}.\n\n{}\n",
            t.render()
        )
    }

    fn stream_table(&self) -> String {
        let p = self.plan;
        let mut t = Table::new([
            "arm",
            "streams",
            "TTFT p50",
            "TTFT p99",
            "added TTFT p50",
            "added TTFT p99",
            "gap p50",
            "gap p99",
            "added gap p99",
            "gap max",
            "frames lost",
            "errors",
        ]);
        for a in &self.arms {
            if a.streams.is_empty() {
                t.placeholder_row(a.row_label(), a.placeholder().unwrap_or_default());
                continue;
            }
            for s in &a.streams {
                let d = self.direct().and_then(|d| d.stream_at(s.concurrency));
                t.row(vec![
                    a.row_label(),
                    s.concurrency.to_string(),
                    us(s.ttft_p50),
                    us(s.ttft_p99),
                    added(d.map(|d| s.ttft_p50 - d.ttft_p50)),
                    added(d.map(|d| s.ttft_p99 - d.ttft_p99)),
                    us(s.gap_p50),
                    us(s.gap_p99),
                    added(d.map(|d| s.gap_p99 - d.gap_p99)),
                    us(s.gap_max),
                    format!("{} of {}", s.lost(), s.events_expected),
                    s.errors.to_string(),
                ]);
            }
        }
        format!(
            "## Streams: a role chunk, {} deltas {} ms apart, a finish chunk, a usage chunk, [DONE] ({} events)\n\nTTFT: request sent to first event. Gap: between consecutive events of a stream. Streams per connection, in a row: {}. Connections staggered over {} ms.\n\n{}\n",
            p.stream_chunks,
            p.stream_delay_ms,
            p.stream_events(),
            p.streams
                .iter()
                .map(|(c, n)| format!("{n} at {c}"))
                .collect::<Vec<_>>()
                .join(", "),
            p.stream_delay_ms,
            t.render()
        )
    }

    fn body_table(&self) -> String {
        let mut t = Table::new([
            "arm",
            "body",
            "req/s",
            "p50",
            "p99",
            "added p50",
            "added p99",
            "errors",
        ]);
        for a in &self.arms {
            if a.bodies.is_empty() {
                t.placeholder_row(a.row_label(), a.placeholder().unwrap_or_default());
                continue;
            }
            for (size, s) in &a.bodies {
                let d = self.direct().and_then(|d| d.body_at(*size));
                t.row(vec![
                    a.row_label(),
                    format!("{} KiB", size / 1024),
                    rate(s.rps),
                    us(s.p50),
                    us(s.p99),
                    added(d.map(|d| s.p50 - d.p50)),
                    added(d.map(|d| s.p99 - d.p99)),
                    s.errors.to_string(),
                ]);
            }
        }
        format!(
            "## Request bodies: 1 connection, instant mock\n\n{}\n",
            t.render()
        )
    }

    fn resource_table(&self) -> String {
        let top_sustained = self.plan.sustained_conns.iter().max().copied().unwrap_or(0);
        let top_frontier = self.plan.frontier_conns.iter().max().copied().unwrap_or(0);
        let mut t = Table::new([
            "arm".to_owned(),
            "RSS at start".to_owned(),
            "RSS idle".to_owned(),
            format!("RSS peak, {top_sustained} conns"),
            "RSS after".to_owned(),
            "CPU µs/req, 1 conn".to_owned(),
            format!("CPU µs/req, {top_frontier} conns"),
            format!("CPU µs/req, {top_sustained} conns (50 ms)"),
            "1 conn: client / proxy / mock µs/req".to_owned(),
        ]);
        for a in &self.arms {
            if let Some(p) = a.placeholder().filter(|_| a.latency.is_none()) {
                t.placeholder_row(a.row_label(), p);
                continue;
            }
            let proxy = |s: Option<&UnaryStats>| cpu(s.and_then(|s| s.cpu.proxy));
            let frontier_top = a.frontier.iter().find(|s| s.conns == top_frontier);
            let sustained_top = a.sustained_at(top_sustained);
            let split = a.latency.as_ref().map_or_else(
                || "–".to_owned(),
                |s| {
                    format!(
                        "{} / {} / {}",
                        cpu(s.cpu.client),
                        cpu(s.cpu.proxy),
                        cpu(s.cpu.mock)
                    )
                },
            );
            if a.is_proxy() {
                t.row(vec![
                    a.row_label(),
                    mib(a.rss_start_kib),
                    mib(a.rss_idle_kib),
                    mib(sustained_top.and_then(|s| s.peak_rss_kib)),
                    mib(a.rss_after_kib),
                    proxy(a.latency.as_ref()),
                    proxy(frontier_top),
                    proxy(sustained_top),
                    split,
                ]);
            } else {
                let mut row = vec![a.row_label(), "(no proxy)".to_owned()];
                row.resize(8, String::new());
                row.push(split);
                t.row(row);
            }
        }
        format!(
            "## The proxy process: memory and CPU (from /proc)\n\nRSS at start: up and answering, before the warm-up. RSS idle: at rest after the warm-up, with what it filled (pools; for the cache rungs, the cache up to its 32 MiB bound). CPU µs/req = (utime + stime) over the measured window ÷ requests completed in it.\n\n{}\n",
            t.render()
        )
    }

    fn ratio_table(&self) -> String {
        let mut head = vec![
            "gateway arm".to_owned(),
            "added p50 ÷ bare".to_owned(),
            "added p99 ÷ bare".to_owned(),
            "interleaved: added p50 ÷ bare".to_owned(),
            "interleaved: added p99 ÷ bare".to_owned(),
            format!("req/s (p99 ≤ {} ms) ÷ bare", self.throughput_bound() / 1000),
            "peak req/s ÷ bare".to_owned(),
        ];
        head.extend(
            self.plan
                .sustained_conns
                .iter()
                .map(|c| format!("sustained {c} ÷ direct")),
        );
        head.push("stream gap p99 ÷ bare (worst)".to_owned());
        let mut t = Table::new(head);
        for a in self.arms.iter().filter(|a| a.arm.rung().is_some()) {
            if let Some(p) = a.placeholder() {
                t.placeholder_row(a.row_label(), p);
                continue;
            }
            let r = self.ratios(a);
            let mut row = vec![
                a.row_label(),
                times(r.added_p50_vs_bare),
                times(r.added_p99_vs_bare),
                times(r.interleaved_p50_vs_bare),
                times(r.interleaved_p99_vs_bare),
                times(r.throughput_vs_bare),
                times(r.peak_vs_bare),
            ];
            row.extend(r.sustained_vs_direct.iter().map(|(_, v)| percent(*v)));
            row.push(times(r.gap_p99_vs_bare));
            t.row(row);
        }
        let hit = match self.cache_hit_vs_direct() {
            Ok(v) => times(Some(v)),
            Err(why) => why,
        };
        format!(
            "## Ratios that matter\n\nAdded latency: (arm − direct) ÷ (bare − direct) at 1 connection. Throughput: max req/s with p99 ≤ {} ms. Sustained: req/s ÷ direct's.\n\n{}\nCache-hit throughput ÷ direct: {hit}\n\n",
            self.throughput_bound() / 1000,
            t.render()
        )
    }

    /// The goals, checked on the full stack; each with the bare proxy's own
    /// reading where the goal is not a ratio to it (against direct, or absolute), so a
    /// goal the floor itself misses on this machine shows as such.
    fn goals(&self) -> Vec<Goal> {
        let Some(full) = self.full_stack() else {
            return Vec::new();
        };
        let r = self.ratios(full);
        let floor = self.bare().map(|b| self.ratios(b));
        let floor = floor.as_ref();
        let mut goals = Vec::new();
        // `of` reads a figure from an arm's ratios: the full stack's, and the bare
        // proxy's where the goal is `Floor::Checked`.
        let mut check = |name: &str,
                         target: &str,
                         of: &dyn Fn(&Ratios) -> Option<f64>,
                         show: &dyn Fn(Option<f64>) -> String,
                         ok: fn(f64) -> bool,
                         bare: Floor| {
            let v = of(&r);
            let floor = floor.filter(|_| bare == Floor::Checked).map(|f| {
                let v = of(f);
                (show(v), v.map(ok))
            });
            goals.push(Goal {
                name: name.to_owned(),
                target: target.to_owned(),
                shown: show(v),
                met: v.map(ok),
                bare: floor,
            });
        };
        check(
            "added latency p50, 1 conn",
            "≤ 1.2× bare",
            &|r| r.added_p50_vs_bare,
            &times,
            |v| v <= 1.2,
            Floor::IsBare,
        );
        check(
            "added latency p99, 1 conn",
            "≤ 1.2× bare",
            &|r| r.added_p99_vs_bare,
            &times,
            |v| v <= 1.2,
            Floor::IsBare,
        );
        if r.interleaved_p50_vs_bare.is_some() {
            check(
                "added latency p50, 1 conn, interleaved",
                "≤ 1.2× bare",
                &|r| r.interleaved_p50_vs_bare,
                &times,
                |v| v <= 1.2,
                Floor::IsBare,
            );
            check(
                "added latency p99, 1 conn, interleaved",
                "≤ 1.2× bare",
                &|r| r.interleaved_p99_vs_bare,
                &times,
                |v| v <= 1.2,
                Floor::IsBare,
            );
        }
        check(
            "throughput",
            "≥ 0.9× bare",
            &|r| r.throughput_vs_bare,
            &times,
            |v| v >= 0.9,
            Floor::IsBare,
        );
        for &c in self.plan.sustained_conns {
            check(
                &format!("sustained, 50 ms mock, {c} conns"),
                "≥ 97 % of direct",
                &|r| r.sustained_at(c),
                &percent,
                |v| v >= 0.97,
                Floor::Checked,
            );
        }
        check(
            "stream inter-chunk gap p99",
            "≤ 1.1× bare",
            &|r| r.gap_p99_vs_bare,
            &times,
            |v| v <= 1.1,
            Floor::IsBare,
        );
        check(
            "stream frames lost",
            "0",
            &|r| r.streamed.then_some(r.frames_lost as f64),
            &|v| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}")),
            |v| v == 0.0,
            Floor::Checked,
        );
        let lowest = self.plan.stream_concurrency().min().unwrap_or(1);
        check(
            &format!("added TTFT p50, {lowest} stream(s)"),
            "≤ 300 µs",
            &|r| r.added_ttft_p50_lowest,
            &added,
            |v| v <= 300.0,
            Floor::Checked,
        );
        check(
            "added TTFT p50, worst concurrency",
            "≤ 300 µs",
            &|r| r.worst_added_ttft_p50,
            &added,
            |v| v <= 300.0,
            Floor::Checked,
        );
        // Both readings of "idle": nothing served yet, and at rest after the warm-up
        // (holding what it filled: for the cache rungs, the cache to its bound). In KiB.
        let kib = |k: Option<u64>| k.map(|k| k as f64);
        let show_kib = |v: Option<f64>| mib(v.map(|k| k as u64));
        check(
            "RSS idle, at start",
            "< 30 MiB",
            &|r| kib(r.rss_start_kib),
            &show_kib,
            |v| v < 30.0 * 1024.0,
            Floor::Checked,
        );
        check(
            "RSS idle, after the warm-up",
            "< 30 MiB",
            &|r| kib(r.rss_idle_kib),
            &show_kib,
            |v| v < 30.0 * 1024.0,
            Floor::Checked,
        );
        check(
            "RSS at 1,024 connections",
            "< 100 MiB",
            &|r| kib(r.rss_1024_kib),
            &show_kib,
            |v| v < 100.0 * 1024.0,
            Floor::Checked,
        );
        goals
    }

    fn goal_table(&self) -> String {
        let Some(full) = self.full_stack() else {
            return "## Goals\n\nNo gateway arm measured.\n\n".to_owned();
        };
        let verdict = |ok: Option<bool>| match ok {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        let mut t = Table::new(["goal", "target", "measured", "met", "the bare proxy"]);
        for g in self.goals() {
            let bare = match g.bare {
                Some((shown, ok)) => format!("{shown} ({})", verdict(ok)),
                None => "–".to_owned(),
            };
            t.row(vec![
                g.name,
                g.target,
                g.shown,
                verdict(g.met).to_owned(),
                bare,
            ]);
        }
        format!(
            "## The issue's goals, on the full stack built so far ({})\n\nThe bare proxy's own reading where the goal is not a ratio to it: a goal the floor itself misses cannot be met by any proxy on this machine.\n\n{}\n",
            full.arm.label(),
            t.render()
        )
    }

    fn notes(&self) -> String {
        let mut out = String::new();
        for a in &self.arms {
            match &a.status {
                Status::NotBuilt(why) => {
                    let _ = writeln!(out, "- {}: not built yet ({why})", a.arm.label());
                }
                Status::Failed(why) => {
                    let _ = writeln!(out, "- {}: failed: {why}", a.arm.label());
                }
                Status::Measured => {}
            }
            let first = a
                .phases()
                .into_iter()
                .filter(|(_, s)| s.errors > 0)
                .map(|(_, s)| s.first_error.clone())
                .chain(
                    a.streams
                        .iter()
                        .filter(|s| s.errors > 0)
                        .map(|s| s.first_error.clone()),
                )
                .next();
            if let Some(e) = first {
                let _ = writeln!(
                    out,
                    "- {}: {} errors; first: {}",
                    a.arm.label(),
                    a.errors(),
                    e.unwrap_or_default()
                );
            }
            for (phase, s) in a.phases() {
                if let Some(why) = s.disturbed() {
                    let _ = writeln!(out, "- {}, {phase}: disturbed: {why}", a.arm.label());
                }
            }
        }
        if out.is_empty() {
            out
        } else {
            format!("## Notes\n\n{out}\n")
        }
    }

    /// The whole report as JSON.
    pub(crate) fn json(&self) -> Value {
        let m = &self.meta;
        let p = self.plan;
        let arms: Vec<Value> = self
            .arms
            .iter()
            .map(|a| {
                let (status, reason) = match &a.status {
                    Status::Measured => ("measured", None),
                    Status::NotBuilt(why) => ("not built yet", Some(why.clone())),
                    Status::Failed(why) => ("failed", Some(why.clone())),
                };
                let direct_latency = self.direct().and_then(|d| d.latency.as_ref());
                let added_latency = a.latency.as_ref().zip(direct_latency).map(|(s, d)| {
                    json!({
                        "p50": num(s.p50 - d.p50),
                        "p99": num(s.p99 - d.p99),
                        "p99_9": num(s.p999 - d.p999),
                    })
                });
                let streams: Vec<Value> = a
                    .streams
                    .iter()
                    .map(|s| {
                        let mut v = s.to_json();
                        if let Some(d) = self.direct().and_then(|d| d.stream_at(s.concurrency)) {
                            v["added_ttft_us"] = json!({
                                "p50": num(s.ttft_p50 - d.ttft_p50),
                                "p99": num(s.ttft_p99 - d.ttft_p99),
                            });
                            v["added_gap_p99_us"] = num(s.gap_p99 - d.gap_p99);
                        }
                        v
                    })
                    .collect();
                let mut v = json!({
                    "key": a.arm.key(),
                    "label": a.arm.label(),
                    "status": status,
                    "reason": reason,
                    "errors": a.errors(),
                    "latency_1_conn": a.latency.as_ref().map(UnaryStats::to_json),
                    "latency_1_conn_interleaved": a.latency_interleaved.as_ref().map(UnaryStats::to_json),
                    "added_latency_1_conn_us": added_latency,
                    "frontier": a.frontier.iter().map(UnaryStats::to_json).collect::<Vec<_>>(),
                    "frontier_max_req_per_s": p.frontier_bounds_us.iter().map(|&b| json!({
                        "p99_bound_us": b,
                        "req_per_s": a.frontier_max(b).map(|s| num(s.rps)),
                        "conns": a.frontier_max(b).map(|s| s.conns),
                    })).collect::<Vec<_>>(),
                    "sustained": a.sustained.iter().map(UnaryStats::to_json).collect::<Vec<_>>(),
                    "streams": streams,
                    "bodies": a.bodies.iter().map(|(size, s)| {
                        let mut v = s.to_json();
                        v["body_bytes"] = json!(size);
                        v
                    }).collect::<Vec<_>>(),
                    "rss_kib": {
                        "start": a.rss_start_kib,
                        "idle": a.rss_idle_kib,
                        "peak_at_max_conns": a.sustained.iter().max_by_key(|s| s.conns).and_then(|s| s.peak_rss_kib),
                        "after": a.rss_after_kib,
                    },
                });
                if a.arm.rung().is_some() && matches!(a.status, Status::Measured) {
                    let r = self.ratios(a);
                    v["ratios"] = json!({
                        "added_latency_p50_vs_bare": r.added_p50_vs_bare.map(num),
                        "added_latency_p99_vs_bare": r.added_p99_vs_bare.map(num),
                        "interleaved_added_latency_p50_vs_bare": r.interleaved_p50_vs_bare.map(num),
                        "interleaved_added_latency_p99_vs_bare": r.interleaved_p99_vs_bare.map(num),
                        "throughput_vs_bare": r.throughput_vs_bare.map(num),
                        "peak_throughput_vs_bare": r.peak_vs_bare.map(num),
                        "sustained_vs_direct": r.sustained_vs_direct.iter().map(|(c, v)| json!({
                            "conns": c, "ratio": v.map(num),
                        })).collect::<Vec<_>>(),
                        "stream_gap_p99_vs_bare_worst": r.gap_p99_vs_bare.map(num),
                        "added_ttft_p50_us_lowest_concurrency": r.added_ttft_p50_lowest.map(num),
                        "added_ttft_p50_us_worst": r.worst_added_ttft_p50.map(num),
                        "frames_lost": r.frames_lost,
                    });
                }
                v
            })
            .collect();
        json!({
            "mode": m.mode,
            "command": m.command,
            "timestamp": m.timestamp,
            "commit": m.commit,
            "machine": {
                "cpus": m.cpus,
                "cpu_model": m.cpu_model,
                "clock_ticks_per_sec": m.clock_ticks_per_sec,
            },
            "duration_s": num(m.duration_s),
            "quiet_wait_s": num(m.quiet_wait_s),
            "plan": {
                "latency_measure_s": p.latency.measure.as_secs_f64(),
                "interleaved_rounds": p.interleaved_rounds,
                "interleaved_measure_s": p.interleaved.measure.as_secs_f64(),
                "frontier_conns": p.frontier_conns,
                "frontier_step_s": p.frontier.measure.as_secs_f64(),
                "frontier_p99_bounds_us": p.frontier_bounds_us,
                "sustained_mock_latency_ms": p.sustained_latency_ms,
                "sustained_conns": p.sustained_conns,
                "sustained_measure_s": p.sustained.measure.as_secs_f64(),
                "streams": p.streams.iter().map(|&(c, n)| json!({
                    "concurrency": c, "per_conn": n,
                })).collect::<Vec<_>>(),
                "stream_chunks": p.stream_chunks,
                "stream_delay_ms": p.stream_delay_ms,
                "stream_events": p.stream_events(),
                "body_bytes": p.body_sizes,
                "body_measure_s": p.bodies.measure.as_secs_f64(),
            },
            "arms": arms,
            "cache_hit_throughput_vs_direct": match self.cache_hit_vs_direct() {
                Ok(v) => num(v),
                Err(why) => json!(why),
            },
            "full_stack": self.full_stack().map(|a| a.arm.key()),
            "goals": self.goals().into_iter().map(|g| json!({
                "goal": g.name, "target": g.target, "measured": g.shown, "met": g.met,
                "bare": g.bare.map(|(shown, ok)| json!({ "measured": shown, "met": ok })),
            })).collect::<Vec<_>>(),
        })
    }
}
