//! Circuit breakers, one per target (provider).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// When a target's breaker opens and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures (connection errors, timeouts, 5xx, failed streams) that open
    /// the breaker. 0 turns breakers off.
    pub failures: u32,
    /// How long an open breaker skips its target before one probe is let through.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// A breaker's state, as `/metrics` and [`FallbackHandle`](crate::FallbackHandle) show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows; the count of consecutive failures so far.
    Closed {
        /// Consecutive failures so far.
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
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { since: Instant },
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

    pub(crate) fn admit(&self, target: &str, now: Instant) -> Admit {
        if self.config.failures == 0 {
            return Admit::Yes;
        }
        let mut states = self.states.lock().expect("breaker lock");
        let Some(state) = states.get_mut(target) else {
            return Admit::Yes;
        };
        match *state {
            State::Closed { .. } => Admit::Yes,
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

    pub(crate) fn success(&self, target: &Arc<str>) {
        if self.config.failures == 0 {
            return;
        }
        let mut states = self.states.lock().expect("breaker lock");
        let Some(state) = states.get_mut(&**target) else {
            // First seen: listed (closed) from now on.
            states.insert(target.clone(), State::Closed { failures: 0 });
            return;
        };
        if !matches!(state, State::Closed { failures: 0 }) {
            if !matches!(state, State::Closed { .. }) {
                tracing::info!(target: "tower_ai_fallback", provider = &**target, "circuit closed");
            }
            *state = State::Closed { failures: 0 };
        }
    }

    pub(crate) fn failure(&self, target: &Arc<str>, now: Instant) {
        if self.config.failures == 0 {
            return;
        }
        let mut states = self.states.lock().expect("breaker lock");
        let state = states
            .entry(target.clone())
            .or_insert(State::Closed { failures: 0 });
        let open = State::Open {
            until: now + self.config.cool_down,
        };
        match *state {
            State::Closed { failures } if failures + 1 >= self.config.failures => {
                tracing::warn!(target: "tower_ai_fallback", provider = &**target, failures = failures + 1, "circuit open");
                *state = open;
            }
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
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
                    State::Closed { failures } => BreakerState::Closed { failures },
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
        b.success(&t);
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
            cool_down: Duration::from_secs(5),
        });
        let t: Arc<str> = Arc::from("x");
        let now = Instant::now();
        for _ in 0..10 {
            b.failure(&t, now);
        }
        assert_eq!(b.admit("x", now), Admit::Yes);
    }
}
