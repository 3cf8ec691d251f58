//! [`KeyRing`]: several provider keys for one target, rotated on 429, benched on 401/403.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The keys of one configured target. Each attempt takes the current key; a 429 moves
/// the ring on to the next key; a 401, 402 or 403 marks the key dead for a cool-down.
/// Keys are never logged: tracing names them by position.
pub(crate) struct KeyRing {
    keys: Vec<Box<str>>,
    next: AtomicUsize,
    dead_until: Mutex<Vec<Option<Instant>>>,
    cool_down: Duration,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    pub(crate) fn new(keys: Vec<Box<str>>, cool_down: Duration) -> Self {
        let n = keys.len();
        Self {
            keys,
            next: AtomicUsize::new(0),
            dead_until: Mutex::new(vec![None; n]),
            cool_down,
        }
    }

    /// The current live key and its position, or `None` when every key is dead.
    pub(crate) fn pick(&self, now: Instant) -> Option<(usize, &str)> {
        let n = self.keys.len();
        let start = self.next.load(Ordering::Relaxed);
        let dead = self.dead_until.lock().expect("key ring lock");
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| dead[i].is_none_or(|t| t <= now))
            .map(|i| (i, &*self.keys[i]))
    }

    /// A 429 on key `i`: later attempts start at the key after it.
    pub(crate) fn rotate(&self, i: usize) {
        self.next
            .store((i + 1) % self.keys.len(), Ordering::Relaxed);
    }

    /// A 401/402/403 on key `i`: benched for the cool-down.
    pub(crate) fn kill(&self, i: usize, now: Instant) {
        self.dead_until.lock().expect("key ring lock")[i] = Some(now + self.cool_down);
        self.rotate(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rotates_and_benches() {
        let ring = KeyRing::new(
            vec!["a".into(), "b".into(), "c".into()],
            Duration::from_secs(60),
        );
        let now = Instant::now();
        assert_eq!(ring.pick(now), Some((0, "a")));
        ring.rotate(0);
        assert_eq!(ring.pick(now), Some((1, "b")));
        ring.kill(1, now);
        assert_eq!(ring.pick(now), Some((2, "c")));
        ring.kill(2, now);
        ring.kill(0, now);
        assert_eq!(ring.pick(now), None, "every key benched");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(
            ring.pick(Instant::now()).is_some(),
            "back after the cool-down"
        );
    }
}
