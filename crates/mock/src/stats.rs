//! Counters, the request recorder and the waiters on both.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use tokio::sync::Notify;

/// How many requests [`MockProvider::recorded`](crate::MockProvider::recorded) keeps.
pub(crate) const RECORD_LIMIT: usize = 1024;

/// A snapshot of the mock's counters, from
/// [`MockProvider::stats`](crate::MockProvider::stats).
///
/// Every counted request ends in exactly one of `completed`, `cancelled` or `resets`, so
/// once no request is in flight `requests == completed + cancelled + resets`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests received, on every path except `/healthz`.
    pub requests: u64,
    /// Response bodies handed to hyper in full (error responses included).
    pub completed: u64,
    /// Requests whose response (or response body) was dropped before it was fully sent:
    /// the client hung up, during injected latency, a hang or mid-stream.
    pub cancelled: u64,
    /// Injected mid-stream resets (`reset_after`).
    pub resets: u64,
    /// Injected error statuses (`status`).
    pub errors: u64,
    /// Accepted TCP connections.
    pub connections: u64,
}

/// One request as the mock received it, from
/// [`MockProvider::recorded`](crate::MockProvider::recorded).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The request method.
    pub method: Method,
    /// The path and query, as received.
    pub uri: Uri,
    /// The request headers, as received.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Bytes,
}

/// Which counter to bump.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    Completed,
    Cancelled,
    Resets,
    Errors,
    Connections,
}

/// The state shared by the server, every response body and the [`MockProvider`] handle.
///
/// Counting is a plain atomic add; waiters are woken through a [`Notify`] only when
/// someone is actually waiting, so the hot path takes no lock (except the recorder's
/// short one).
///
/// [`MockProvider`]: crate::MockProvider
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    resets: AtomicU64,
    errors: AtomicU64,
    connections: AtomicU64,
    waiters: AtomicUsize,
    notify: Notify,
    recorded: Mutex<VecDeque<RecordedRequest>>,
}

impl Counters {
    fn counter(&self, counter: Counter) -> &AtomicU64 {
        match counter {
            Counter::Completed => &self.completed,
            Counter::Cancelled => &self.cancelled,
            Counter::Resets => &self.resets,
            Counter::Errors => &self.errors,
            Counter::Connections => &self.connections,
        }
    }

    pub(crate) fn bump(&self, counter: Counter) {
        self.counter(counter).fetch_add(1, SeqCst);
        self.wake();
    }

    fn wake(&self) {
        // Pairs with the `SeqCst` increment of `waiters` in `wait_until`: either the
        // waiter sees our increment, or we see the waiter.
        if self.waiters.load(SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Records a request and counts it.
    pub(crate) fn record(&self, request: RecordedRequest) {
        {
            let mut recorded = self.lock_recorded();
            if recorded.len() == RECORD_LIMIT {
                recorded.pop_front();
            }
            recorded.push_back(request);
        }
        self.requests.fetch_add(1, SeqCst);
        self.wake();
    }

    fn lock_recorded(&self) -> MutexGuard<'_, VecDeque<RecordedRequest>> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn recorded(&self) -> Vec<RecordedRequest> {
        self.lock_recorded().iter().cloned().collect()
    }

    pub(crate) fn last_request(&self) -> Option<RecordedRequest> {
        self.lock_recorded().back().cloned()
    }

    pub(crate) fn clear_recorded(&self) {
        self.lock_recorded().clear();
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(SeqCst)
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            requests: self.requests.load(SeqCst),
            completed: self.completed.load(SeqCst),
            cancelled: self.cancelled.load(SeqCst),
            resets: self.resets.load(SeqCst),
            errors: self.errors.load(SeqCst),
            connections: self.connections.load(SeqCst),
        }
    }

    pub(crate) fn reset(&self) {
        for counter in [
            &self.requests,
            &self.completed,
            &self.cancelled,
            &self.resets,
            &self.errors,
            &self.connections,
        ] {
            counter.store(0, SeqCst);
        }
    }

    /// Resolves once `done(self)` holds; re-checked after every counter change.
    pub(crate) async fn wait_until(&self, done: impl Fn(&Stats) -> bool) {
        if done(&self.snapshot()) {
            return;
        }
        self.waiters.fetch_add(1, SeqCst);
        let _guard = WaiterGuard(&self.waiters);
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(&self.snapshot()) {
                return;
            }
            notified.await;
        }
    }
}

struct WaiterGuard<'a>(&'a AtomicUsize);

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// Counts how one request ended: exactly one of completed, reset or (on drop) cancelled.
///
/// Created when a request is counted, moved into its response body; if the handler future
/// or the body is dropped first, the request counts as cancelled.
#[derive(Debug)]
pub(crate) struct Tracker {
    counters: Option<Arc<Counters>>,
}

impl Tracker {
    pub(crate) fn new(counters: Arc<Counters>) -> Tracker {
        Tracker {
            counters: Some(counters),
        }
    }

    /// A tracker that counts nothing (`/healthz`).
    pub(crate) fn none() -> Tracker {
        Tracker { counters: None }
    }

    pub(crate) fn finish(&mut self, counter: Counter) {
        if let Some(counters) = self.counters.take() {
            counters.bump(counter);
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.finish(Counter::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(i: usize) -> RecordedRequest {
        RecordedRequest {
            method: Method::POST,
            uri: Uri::try_from(format!("/r/{i}")).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    #[test]
    fn recorder_is_bounded() {
        let counters = Counters::default();
        for i in 0..RECORD_LIMIT + 10 {
            counters.record(request(i));
        }
        let recorded = counters.recorded();
        assert_eq!(recorded.len(), RECORD_LIMIT);
        assert_eq!(recorded[0].uri.path(), "/r/10");
        assert_eq!(
            counters.last_request().unwrap().uri.path(),
            format!("/r/{}", RECORD_LIMIT + 9)
        );
        assert_eq!(counters.requests(), (RECORD_LIMIT + 10) as u64);
    }

    #[test]
    fn tracker_counts_once() {
        let counters = Arc::new(Counters::default());
        let mut tracker = Tracker::new(counters.clone());
        tracker.finish(Counter::Completed);
        tracker.finish(Counter::Resets);
        drop(tracker);
        drop(Tracker::new(counters.clone()));
        drop(Tracker::none());
        let stats = counters.snapshot();
        assert_eq!((stats.completed, stats.resets, stats.cancelled), (1, 0, 1));
    }

    #[tokio::test]
    async fn waiters_wake_on_bump() {
        let counters = Arc::new(Counters::default());
        let waiter = {
            let counters = counters.clone();
            tokio::spawn(async move { counters.wait_until(|s| s.cancelled >= 2).await })
        };
        tokio::task::yield_now().await;
        counters.bump(Counter::Cancelled);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        counters.bump(Counter::Cancelled);
        waiter.await.unwrap();
        assert_eq!(counters.waiters.load(SeqCst), 0);
    }
}
