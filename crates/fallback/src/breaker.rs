//! Circuit breakers, one per target (provider).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// When a target's breaker opens and for how long.
///
/// A breaker counts its target's outcomes over a rolling window and opens when, within
/// it, there were at least `failures` failures and they were at least `failure_ratio`
/// of the attempts: a burst of errors among many successes (a provider at a 10 % error
/// rate under load) does not open it; a provider that is down does, within `failures`
/// attempts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerConfig {
    /// Failures (connection errors, timeouts, 5xx, failed streams) in the window that
    /// open the breaker. 0 turns breakers off.
    pub failures: u32,
    /// The share of the window's attempts that must have failed, 0.0 to 1.0.
    pub failure_ratio: f64,
    /// The rolling window outcomes are counted over.
    pub window: Duration,
    /// How long an open breaker skips its target before one probe is let through.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            failure_ratio: 0.5,
            window: Duration::from_secs(10),
            cool_down: Duration::from_secs(30),
        }
    }
}

/// A breaker's state, as `/metrics` and [`FallbackHandle`](crate::FallbackHandle) show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows.
    Closed {
        /// Failures in the rolling window.
        failures: u32,
    },
    /// The target is skipped.
    Open,
    /// One probe is in flight; its outcome closes or re-opens the breaker.
    HalfOpen,
}

impl BreakerState {
    /// 0 closed, 1 half-open, 2 open: the gauge value in `/metrics`.
    pub fn as_gauge(self) -> u8 {
        match self {
            Self::Closed { .. } => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum State {
    Closed(Window),
    Open { until: Instant },
    HalfOpen { since: Instant },
}

/// Outcomes in the current window and the one before it.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    /// Attempts sent, counted when they start: under load many are in flight when the
    /// first failures come back, and they count against the ratio from the start.
    sent: u32,
    ok: u32,
    failed: u32,
    prev_sent: u32,
    prev_ok: u32,
    prev_failed: u32,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            start: now,
            sent: 0,
            ok: 0,
            failed: 0,
            prev_sent: 0,
            prev_ok: 0,
            prev_failed: 0,
        }
    }

    fn roll(&mut self, now: Instant, len: Duration) {
        let age = now.saturating_duration_since(self.start);
        if age >= len * 2 {
            *self = Self::new(now);
        } else if age >= len {
            *self = Self {
                start: self.start + len,
                sent: 0,
                ok: 0,
                failed: 0,
                prev_sent: self.sent,
                prev_ok: self.ok,
                prev_failed: self.failed,
            };
        }
    }

    fn failures(&self) -> u32 {
        self.failed.saturating_add(self.prev_failed)
    }

    fn attempts(&self) -> u32 {
        let done = self
            .failures()
            .saturating_add(self.ok)
            .saturating_add(self.prev_ok);
        done.max(self.sent.saturating_add(self.prev_sent))
    }
}

/// What a breaker says about sending a request to its target now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    Yes,
    /// The one request let through to see whether the target recovered.
    Probe,
    /// Open: skip the target; it reopens for a probe in this long.
    No(Duration),
}

#[derive(Debug, Default)]
pub(crate) struct Breakers {
    config: BreakerConfig,
    states: Mutex<HashMap<Arc<str>, State>>,
}

impl Breakers {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            states: Mutex::default(),
        }
    }

    pub(crate) fn config(&self) -> BreakerConfig {
        self.config
    }

    pub(crate) fn admit(&self, target: &str, now: Instant) -> Admit {
        if self.config.failures == 0 {
            return Admit::Yes;
        }
        let mut states = self.states.lock().expect("breaker lock");
        let Some(state) = states.get_mut(target) else {
            return Admit::Yes;
        };
        match *state {
            State::Closed(_) => Admit::Yes,
            State::Open { until } if until > now => Admit::No(until - now),
            State::Open { .. } => {
                *state = State::HalfOpen { since: now };
                tracing::info!(target: "tower_ai_fallback", provider = target, "circuit half-open: probing");
                Admit::Probe
            }
            // A probe is in flight; a probe that never came back (its request was
            // dropped) gives way to a new one after a cool-down.
            State::HalfOpen { since } if now < since + self.config.cool_down => {
                Admit::No(since + self.config.cool_down - now)
            }
            State::HalfOpen { .. } => {
                *state = State::HalfOpen { since: now };
                Admit::Probe
            }
        }
    }

    /// An attempt is about to be sent to `target`.
    pub(crate) fn sent(&self, target: &Arc<str>, now: Instant) {
        if self.config.failures == 0 {
            return;
        }
        let mut states = self.states.lock().expect("breaker lock");
        let state = states
            .entry(target.clone())
            .or_insert(State::Closed(Window::new(now)));
        if let State::Closed(w) = state {
            w.roll(now, self.config.window);
            w.sent = w.sent.saturating_add(1);
        }
    }

    pub(crate) fn success(&self, target: &Arc<str>, now: Instant) {
        if self.config.failures == 0 {
            return;
        }
        let mut states = self.states.lock().expect("breaker lock");
        let Some(state) = states.get_mut(&**target) else {
            // First seen: listed (closed) from now on.
            let mut w = Window::new(now);
            w.ok = 1;
            states.insert(target.clone(), State::Closed(w));
            return;
        };
        match state {
            State::Closed(w) => {
                w.roll(now, self.config.window);
                w.ok = w.ok.saturating_add(1);
            }
            _ => {
                tracing::info!(target: "tower_ai_fallback", provider = &**target, "circuit closed");
                *state = State::Closed(Window::new(now));
            }
        }
    }

    pub(crate) fn failure(&self, target: &Arc<str>, now: Instant) {
        if self.config.failures == 0 {
            return;
        }
        let mut states = self.states.lock().expect("breaker lock");
        let state = states
            .entry(target.clone())
            .or_insert(State::Closed(Window::new(now)));
        let open = State::Open {
            until: now + self.config.cool_down,
        };
        match state {
            State::Closed(w) => {
                w.roll(now, self.config.window);
                w.failed = w.failed.saturating_add(1);
                let (failed, attempts) = (w.failures(), w.attempts());
                if failed >= self.config.failures
                    && f64::from(failed) >= self.config.failure_ratio * f64::from(attempts)
                {
                    tracing::warn!(target: "tower_ai_fallback", provider = &**target, failed, attempts, "circuit open");
                    *state = open;
                }
            }
            State::HalfOpen { .. } => {
                tracing::warn!(target: "tower_ai_fallback", provider = &**target, "probe failed: circuit open again");
                *state = open;
            }
            State::Open { .. } => {}
        }
    }

    pub(crate) fn snapshot(&self, now: Instant) -> Vec<(Arc<str>, BreakerState)> {
        let states = self.states.lock().expect("breaker lock");
        let mut v: Vec<_> = states
            .iter()
            .map(|(k, s)| {
                let s = match *s {
                    State::Closed(mut w) => {
                        w.roll(now, self.config.window);
                        BreakerState::Closed {
                            failures: w.failures(),
                        }
                    }
                    State::Open { until } if until > now => BreakerState::Open,
                    // Due for a probe: shown open until one is let through.
                    State::Open { .. } => BreakerState::Open,
                    State::HalfOpen { .. } => BreakerState::HalfOpen,
                };
                (k.clone(), s)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_probes_and_closes() {
        let b = Breakers::new(BreakerConfig {
            failures: 3,
            cool_down: Duration::from_secs(10),
            ..BreakerConfig::default()
        });
        let t: Arc<str> = Arc::from("openai");
        for _ in 0..2 {
            b.failure(&t, Instant::now());
            assert_eq!(b.admit("openai", Instant::now()), Admit::Yes);
        }
        b.failure(&t, Instant::now());
        assert_eq!(
            b.admit("openai", Instant::now()),
            Admit::No(Duration::from_secs(10))
        );
        assert_eq!(b.snapshot(Instant::now())[0].1, BreakerState::Open);

        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.admit("openai", Instant::now()), Admit::Probe);
        // Only one probe at a time.
        assert!(matches!(b.admit("openai", Instant::now()), Admit::No(_)));
        assert_eq!(b.snapshot(Instant::now())[0].1, BreakerState::HalfOpen);
        // The probe fails: open again for a whole cool-down.
        b.failure(&t, Instant::now());
        assert!(matches!(b.admit("openai", Instant::now()), Admit::No(_)));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.admit("openai", Instant::now()), Admit::Probe);
        b.success(&t, Instant::now());
        assert_eq!(b.admit("openai", Instant::now()), Admit::Yes);
        assert_eq!(
            b.snapshot(Instant::now())[0].1,
            BreakerState::Closed { failures: 0 }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_probe_gives_way() {
        let b = Breakers::new(BreakerConfig {
            failures: 1,
            cool_down: Duration::from_secs(5),
            ..BreakerConfig::default()
        });
        let t: Arc<str> = Arc::from("x");
        b.failure(&t, Instant::now());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.admit("x", Instant::now()), Admit::Probe);
        // Its request vanished; after another cool-down a new probe goes.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.admit("x", Instant::now()), Admit::Probe);
    }

    #[test]
    fn off_when_zero() {
        let b = Breakers::new(BreakerConfig {
            failures: 0,
            ..BreakerConfig::default()
        });
        let t: Arc<str> = Arc::from("x");
        let now = Instant::now();
        for _ in 0..10 {
            b.failure(&t, now);
        }
        assert_eq!(b.admit("x", now), Admit::Yes);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_among_successes_do_not_open_it() {
        let b = Breakers::new(BreakerConfig::default());
        let t: Arc<str> = Arc::from("openai");
        // A 10 % error rate under load: 100 attempts in flight, and the 10 failures come
        // back before any success.
        for _ in 0..100 {
            b.sent(&t, Instant::now());
        }
        for _ in 0..10 {
            b.failure(&t, Instant::now());
        }
        assert_eq!(b.admit("openai", Instant::now()), Admit::Yes);
        let b = Breakers::new(BreakerConfig::default());
        for round in 0..50 {
            for _ in 0..9 {
                b.success(&t, Instant::now());
            }
            b.failure(&t, Instant::now());
            assert_eq!(
                b.admit("openai", Instant::now()),
                Admit::Yes,
                "round {round}"
            );
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        // Many successes, then a burst of failures under half of the window: still closed.
        for _ in 0..40 {
            b.failure(&t, Instant::now());
        }
        assert_eq!(b.admit("openai", Instant::now()), Admit::Yes);
        // The window rolls on: the old successes age out and the failures dominate.
        tokio::time::advance(Duration::from_secs(20)).await;
        for _ in 0..5 {
            b.failure(&t, Instant::now());
        }
        assert!(matches!(b.admit("openai", Instant::now()), Admit::No(_)));
    }
}
