//! Command-line options and the run plan (what each scenario runs, for how long).

use std::time::Duration;

use crate::ladder::Arm;

/// Full or quick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Full,
    Quick,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Quick => "quick",
        }
    }
}

/// The command line: `[--quick] [--arms a,b,c] [--no-build]`; anything else (cargo
/// passes `--bench`) is ignored.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) mode: Mode,
    /// Keys of the arms to run (`None`: all).
    pub(crate) arms: Option<Vec<String>>,
    pub(crate) build: bool,
}

pub(crate) const USAGE: &str = "\
usage: cargo bench --bench load -- [--quick] [--arms LIST] [--no-build]

  --quick       a first look, under 2 minutes (default: the full run, under 15)
  --arms LIST   comma-separated arms: direct, bare, route, meter, ratelimit, redis,
                cache-miss, cache-hit, fallback (default: all)
  --no-build    do not run `cargo build --release` for the gateway and mock binaries";

impl Options {
    pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            mode: Mode::Full,
            arms: None,
            build: true,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.mode = Mode::Quick,
                "--full" => options.mode = Mode::Full,
                "--no-build" => options.build = false,
                "--help" | "-h" => return Err(USAGE.to_owned()),
                "--arms" => {
                    let list = args.next().ok_or("--arms needs a list")?;
                    options.arms = Some(split_arms(&list)?);
                }
                other => {
                    if let Some(list) = other.strip_prefix("--arms=") {
                        options.arms = Some(split_arms(list)?);
                    }
                    // Anything else (cargo's `--bench`, a filter) is not ours.
                }
            }
        }
        Ok(options)
    }

    /// Whether `arm` runs.
    pub(crate) fn runs(&self, arm: &Arm) -> bool {
        self.arms
            .as_ref()
            .is_none_or(|keys| keys.iter().any(|k| k == arm.key()))
    }
}

fn split_arms(list: &str) -> Result<Vec<String>, String> {
    let known: Vec<&str> = Arm::all().iter().map(Arm::key).collect();
    list.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            if known.contains(&k) {
                Ok(k.to_owned())
            } else {
                Err(format!("unknown arm `{k}`; known: {}", known.join(", ")))
            }
        })
        .collect()
}

/// A warm-up (not recorded) and a measured window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) warmup: Duration,
    pub(crate) measure: Duration,
}

const fn timing(warmup_ms: u64, measure_ms: u64) -> Timing {
    Timing {
        warmup: Duration::from_millis(warmup_ms),
        measure: Duration::from_millis(measure_ms),
    }
}

/// Everything a run does, per arm. The full plan fits the whole ladder (9 arms) in
/// under 15 minutes, the quick one in under 2.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Every arm, before anything is measured (connections, pools, caches).
    pub(crate) warmup_conns: usize,
    pub(crate) warmup: Duration,
    /// Added latency: 1 connection, instant mock.
    pub(crate) latency: Timing,
    /// Added latency again, with every arm's proxy up at once and the arms taking turns:
    /// this many rounds of `interleaved` each (0: not measured). The machine's speed
    /// drifts over minutes; arms measured in turn, round after round, share the drift.
    pub(crate) interleaved_rounds: usize,
    pub(crate) interleaved: Timing,
    /// The throughput frontier: instant mock.
    pub(crate) frontier_conns: &'static [usize],
    pub(crate) frontier: Timing,
    /// p99 bounds of the frontier, in µs.
    pub(crate) frontier_bounds_us: &'static [u64],
    /// Sustained: the mock answers after this long.
    pub(crate) sustained_latency_ms: u32,
    pub(crate) sustained_conns: &'static [usize],
    pub(crate) sustained: Timing,
    /// Streams: (concurrent streams, streams each connection runs in a row); deltas;
    /// delay between events.
    pub(crate) streams: &'static [(usize, usize)],
    pub(crate) stream_chunks: u32,
    pub(crate) stream_delay_ms: u32,
    /// Request bodies: sizes in bytes, 1 connection, instant mock.
    pub(crate) body_sizes: &'static [usize],
    pub(crate) bodies: Timing,
    /// RSS "idle" is read this long after the warm-up.
    pub(crate) idle: Duration,
    /// RSS "after the load" is read this long after the arm's last phase.
    pub(crate) settle: Duration,
    /// In all, how long the run may wait for a quiet machine before its phases (zero:
    /// it never looks).
    pub(crate) quiet_budget: Duration,
}

impl Plan {
    pub(crate) fn new(mode: Mode) -> Plan {
        let common = Plan {
            warmup_conns: 16,
            warmup: Duration::from_millis(1000),
            latency: timing(500, 6000),
            interleaved_rounds: 12,
            interleaved: timing(100, 500),
            frontier_conns: &[1, 2, 4, 8, 16, 32, 64, 128, 256],
            frontier: timing(300, 2000),
            frontier_bounds_us: &[1_000, 5_000, 10_000],
            sustained_latency_ms: 50,
            sustained_conns: &[256, 1024],
            sustained: timing(1000, 6000),
            // More streams at 1: its TTFT p50 needs more than a handful of samples.
            streams: &[(1, 6), (64, 3), (256, 3), (512, 3)],
            stream_chunks: 64,
            stream_delay_ms: 20,
            body_sizes: &[1024, 10 * 1024, 100 * 1024],
            bodies: timing(300, 3000),
            idle: Duration::from_secs(1),
            settle: Duration::from_secs(2),
            quiet_budget: Duration::from_secs(45),
        };
        match mode {
            Mode::Full => common,
            Mode::Quick => Plan {
                warmup: Duration::from_millis(300),
                latency: timing(200, 800),
                interleaved_rounds: 3,
                interleaved: timing(50, 200),
                frontier_conns: &[1, 16, 256],
                frontier: timing(150, 400),
                sustained_conns: &[1024],
                sustained: timing(300, 600),
                streams: &[(64, 1), (512, 1)],
                bodies: timing(100, 300),
                idle: Duration::from_millis(300),
                settle: Duration::from_millis(500),
                quiet_budget: Duration::ZERO,
                ..common
            },
        }
    }

    /// The stream concurrencies.
    pub(crate) fn stream_concurrency(&self) -> impl Iterator<Item = usize> + '_ {
        self.streams.iter().map(|&(c, _)| c)
    }

    /// Events in one stream: role, deltas, finish, usage, `[DONE]`.
    pub(crate) fn stream_events(&self) -> u64 {
        u64::from(self.stream_chunks) + 4
    }
}
