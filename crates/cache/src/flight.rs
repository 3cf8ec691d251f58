//! Single flight: one upstream request per key at a time, its response shared with every
//! identical request that arrives meanwhile, and captured for the store.
//!
//! A [`Flight`] holds the upstream body itself. Whoever reads the response (the request
//! that went upstream, the *leader*, or one that joined it, a *follower*) and has caught
//! up with what arrived so far polls the upstream body for the next frame, appends it to
//! the flight's frames and wakes the others. So the leader's client hanging up does not
//! cut the followers' streams, nothing is spawned, and frames reach every reader the
//! moment they arrive. A follower that joins late replays the frames from the start.
//!
//! The frames double as the capture for the store: when the upstream body ends complete
//! (for SSE: with its protocol's terminal event) they become an [`Entry`]. A response
//! that grows past the entry bound is no longer captured, no longer joinable, and its
//! frames are dropped as soon as its last reader has read them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::{Body as _, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use tower_ai_core::{
    BoxError, FinalUsage, Operation, ResponseUsage, StreamEnd, Usage, UsageSlot, UsageSource,
    WireFormat, usage_from_json,
};

use crate::body::StreamError;
use crate::key::CacheKey;
use crate::store::{CacheStore, Entry};

/// The upstream body, type-erased so that the table is not generic over it.
pub(crate) type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// What every clone of a layer shares: the store and the flights in progress.
pub(crate) struct CacheState {
    pub(crate) store: Arc<dyn CacheStore>,
    pub(crate) flights: Mutex<HashMap<CacheKey, Arc<Flight>, foldhash::fast::RandomState>>,
}

impl CacheState {
    pub(crate) fn new(store: Arc<dyn CacheStore>) -> Self {
        Self {
            store,
            flights: Mutex::new(HashMap::default()),
        }
    }

    /// The flight for `key`: an existing one to follow (`false`), or a new one this
    /// request leads (`true`).
    pub(crate) fn join(self: &Arc<Self>, key: CacheKey, plan: Plan) -> (Arc<Flight>, bool) {
        let mut flights = lock(&self.flights);
        if let Some(f) = flights.get(&key) {
            return (f.clone(), false);
        }
        let flight = Flight::new(Arc::downgrade(self), key, plan, true);
        flights.insert(key, flight.clone());
        (flight, true)
    }

    fn unregister(&self, key: &CacheKey, flight: &Flight) {
        let mut flights = lock(&self.flights);
        if flights
            .get(key)
            .is_some_and(|f| std::ptr::eq(Arc::as_ptr(f), flight))
        {
            flights.remove(key);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How to store what a flight captures.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) ttl: Duration,
    pub(crate) max_entry: usize,
    pub(crate) format: WireFormat,
    pub(crate) operation: Operation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The leader has not had its response yet.
    Waiting,
    /// The response is streaming in.
    Streaming,
    /// It ended complete.
    Done,
    /// The leader failed, the stream failed or every reader went away.
    Failed,
}

/// One upstream request and its response, shared. See the module docs.
pub(crate) struct Flight {
    cache: Weak<CacheState>,
    key: CacheKey,
    state: Mutex<State>,
}

struct State {
    phase: Phase,
    registered: bool,
    plan: Plan,
    status: StatusCode,
    headers: HeaderMap,
    frames: Vec<Bytes>,
    /// The index of `frames[0]` in the whole response (frames before it were dropped).
    base: usize,
    len: usize,
    /// Whether the response is still captured for the store.
    keep: bool,
    /// A stream's usage, read as it passes: for the entry (stored only when the stream
    /// ended with its terminal event) and, when `shares`, for the layers above.
    sse: Option<Box<ResponseUsage>>,
    /// Whether `sse` fills the slot the leader's response carries: then it reads the
    /// stream to its end even once the response is too large to keep, and fills the slot
    /// whenever the leader's layers are done with it (the end, an error, the leader's
    /// client hanging up while followers read on).
    shares: bool,
    json_usage: SharedUsage,
    body: Option<UpstreamBody>,
    readers: usize,
    wakers: Vec<Waker>,
    error: Option<Arc<str>>,
}

/// Where the usage of the answer comes from, for the entry and for the layers above.
pub(crate) enum SharedUsage {
    /// Read from the body here, for the entry only (the default).
    Parse,
    /// A layer below reads it and fills this slot before the body ends. (A JSON answer
    /// only: a stream is read here all the same, to know it ended with its terminal
    /// event.)
    Below(UsageSlot),
    /// Read from the body here once, and put in this slot, which the leader's response
    /// carries: a meter or rate limiter above reads it there instead of parsing the
    /// answer (or every event of the stream) again. The request body is for an
    /// estimate when the answer reports none.
    Fill(UsageSlot, Bytes),
}

/// What a follower waiting for the head learns.
pub(crate) enum Join {
    /// The response: status, headers, and a reader from its first frame.
    Joined(StatusCode, HeaderMap, FlightReader),
    /// The leader failed (or the response can no longer be followed from its start):
    /// try again, maybe as the next leader.
    Retry,
}

impl Flight {
    pub(crate) fn new(
        cache: Weak<CacheState>,
        key: CacheKey,
        plan: Plan,
        registered: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            cache,
            key,
            state: Mutex::new(State {
                phase: Phase::Waiting,
                registered,
                plan,
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                frames: Vec::new(),
                base: 0,
                len: 0,
                keep: true,
                sse: None,
                shares: false,
                json_usage: SharedUsage::Parse,
                body: None,
                readers: 0,
                wakers: Vec::new(),
                error: None,
            }),
        })
    }

    /// The leader's response arrived and may be cached: share it, capture it.
    pub(crate) fn start(
        self: &Arc<Self>,
        status: StatusCode,
        headers: &HeaderMap,
        body: UpstreamBody,
        sse: bool,
        shared: SharedUsage,
    ) -> FlightReader {
        let mut st = lock(&self.state);
        st.phase = Phase::Streaming;
        st.status = status;
        st.headers = headers.clone();
        st.body = Some(body);
        st.readers = 1;
        if sse {
            let (slot, request_body, shares) = match shared {
                SharedUsage::Fill(slot, request_body) => (slot, request_body, true),
                // The entry keeps only reported usage: no estimate, no request needed.
                _ => (UsageSlot::new(), Bytes::new(), false),
            };
            st.sse = Some(Box::new(ResponseUsage::new(
                st.plan.format,
                st.plan.operation,
                request_body,
                status.as_u16(),
                "text/event-stream",
                slot,
            )));
            st.shares = shares;
        } else {
            st.json_usage = shared;
        }
        st.wake_all();
        drop(st);
        FlightReader::new(self.clone(), true)
    }

    /// The leader found the entry after all (stored by a flight that just ended):
    /// followers replay it.
    pub(crate) fn publish(&self, entry: &Entry) {
        let mut st = lock(&self.state);
        st.phase = Phase::Done;
        st.status = entry.status;
        st.headers = entry.headers.clone();
        st.frames = vec![entry.body.clone()];
        st.len = entry.body.len();
        st.keep = false;
        self.unregister(&mut st);
        st.wake_all();
    }

    /// The leader failed, or its response is not one to share: waiters retry.
    pub(crate) fn fail(&self, why: &str) {
        let mut st = lock(&self.state);
        self.fail_locked(&mut st, why);
    }

    fn fail_locked(&self, st: &mut State, why: &str) {
        if matches!(st.phase, Phase::Done | Phase::Failed) {
            return;
        }
        st.phase = Phase::Failed;
        st.body = None;
        if let Some(usage) = st.sse.take()
            && st.shares
        {
            usage.fill(StreamEnd::Failed);
        }
        st.error = Some(Arc::from(why));
        self.unregister(st);
        st.wake_all();
    }

    fn unregister(&self, st: &mut State) {
        if std::mem::take(&mut st.registered)
            && let Some(cache) = self.cache.upgrade()
        {
            cache.unregister(&self.key, self);
        }
    }

    /// For a follower: the response head once the leader has it.
    pub(crate) fn poll_join(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<Join> {
        let mut st = lock(&self.state);
        match st.phase {
            Phase::Waiting => {
                st.wakers.push(cx.waker().clone());
                Poll::Pending
            }
            Phase::Streaming | Phase::Done if st.base == 0 => {
                st.readers += 1;
                let (status, headers) = (st.status, st.headers.clone());
                drop(st);
                Poll::Ready(Join::Joined(
                    status,
                    headers,
                    FlightReader::new(self.clone(), false),
                ))
            }
            _ => Poll::Ready(Join::Retry),
        }
    }

    /// The leader's request went away before its response: waiters retry.
    pub(crate) fn abandon(&self) {
        let mut st = lock(&self.state);
        if st.phase == Phase::Waiting {
            self.fail_locked(&mut st, "the leading request was cancelled");
        }
    }
}

impl State {
    fn wake_all(&mut self) {
        for w in self.wakers.drain(..) {
            w.wake();
        }
    }

    fn end(&self) -> usize {
        self.base + self.frames.len()
    }

    /// A new frame from upstream.
    fn append(&mut self, flight: &Flight, data: Bytes) {
        self.len += data.len();
        if self.keep && self.len > self.plan.max_entry {
            // Too large to store: stop capturing, let no one else join.
            self.keep = false;
            if !self.shares {
                self.sse = None;
            }
            flight.unregister(self);
        }
        if let Some(usage) = self.sse.as_deref_mut() {
            usage.on_data(&data);
        }
        // A frame is a slice of the connection's read buffer, and hyper reads each new
        // frame of a slow stream into a fresh 8 KiB buffer while the last one is still
        // referenced: kept until the stream ends, 68 small frames would hold 68 buffers
        // (half a MiB per stream; 270 MiB for 512 streams in the load benchmark), and an
        // entry made of them would keep them for its whole life. A frame kept for the
        // entry is copied into memory of its own, its size. (`keep` never turns back
        // on: when an entry is made, every frame is such a copy.)
        let data = if self.keep {
            Bytes::copy_from_slice(&data)
        } else {
            data
        };
        self.frames.push(data);
    }

    /// Drops the frames every reader has read, once the response is not kept.
    fn trim(&mut self, pos: usize) {
        if !self.keep && self.readers <= 1 && pos == self.end() && self.phase != Phase::Done {
            self.base = pos;
            self.frames.clear();
        }
    }

    /// The upstream body ended complete: the entry to store, if it is one.
    fn complete(&mut self) -> Option<Entry> {
        self.phase = Phase::Done;
        self.body = None;
        // The slot filled before the readers see the end, kept or not.
        let streamed = self.sse.take().and_then(|usage| {
            if self.shares {
                usage.fill(StreamEnd::Complete);
            }
            usage.stream_report()
        });
        if !self.keep {
            return None;
        }
        let usage = match streamed {
            // Ended without the protocol's terminal event: cut short.
            Some((false, _)) => return None,
            // The entry keeps only what the provider reported (no estimate).
            Some((true, usage)) => usage,
            None => None,
        };
        // One allocation of its own. The frames are copies already (see `append`: an
        // entry that kept a slice of the connection's read buffer would keep the whole
        // buffer alive, and the store's byte bound would bound nothing; the load
        // benchmark saw 336 MiB resident under a 32 MiB bound), so one frame is taken
        // as it is.
        let body = match self.frames.as_slice() {
            [one] => one.clone(),
            frames => {
                let mut b = BytesMut::with_capacity(self.len);
                for f in frames {
                    b.extend_from_slice(f);
                }
                b.freeze()
            }
        };
        let sse = self
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let usage = if sse {
            usage
        } else {
            match std::mem::replace(&mut self.json_usage, SharedUsage::Parse) {
                SharedUsage::Parse => usage_from_json(self.plan.format, self.plan.operation, &body),
                // (Filled by the time the body ends; if not, parsed here as before.)
                SharedUsage::Below(slot) => match slot.get() {
                    Some(f) => reported(f),
                    None => usage_from_json(self.plan.format, self.plan.operation, &body),
                },
                SharedUsage::Fill(slot, request_body) => {
                    let f = FinalUsage::of_json(
                        self.plan.format,
                        self.plan.operation,
                        &request_body,
                        self.status.is_success(),
                        &body,
                    );
                    slot.set(f);
                    reported(f)
                }
            }
        };
        // Sized for what is kept (an empty map allocates nothing; a grown one would
        // hold room for a dozen headers per entry).
        let kept = Entry::KEPT_HEADERS
            .iter()
            .map(|name| self.headers.get_all(name).iter().count())
            .sum();
        let mut headers = HeaderMap::with_capacity(kept);
        for name in Entry::KEPT_HEADERS {
            for v in self.headers.get_all(&name) {
                // Copied for the same reason: a parsed header value is a slice of the
                // read buffer too.
                let own = HeaderValue::from_bytes(v.as_bytes()).expect("a valid value");
                headers.append(name.clone(), own);
            }
        }
        Some(Entry {
            status: self.status,
            headers,
            body,
            usage,
            stored_at: SystemTime::now(),
            sse,
        })
    }
}

/// What an entry keeps of a response's usage: only what the provider reported.
fn reported(f: FinalUsage) -> Option<Usage> {
    (f.source == UsageSource::Reported)
        .then_some(f.usage)
        .flatten()
}

/// Reads a flight's response from its first frame, driving the upstream body when it
/// has caught up with what arrived. See the module docs.
pub(crate) struct FlightReader {
    flight: Arc<Flight>,
    pos: usize,
    errored: bool,
    /// The leader's reader: the one whose response carries the usage slot.
    leads: bool,
}

impl FlightReader {
    fn new(flight: Arc<Flight>, leads: bool) -> Self {
        Self {
            flight,
            pos: 0,
            errored: false,
            leads,
        }
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let flight = &*self.flight;
        let mut st = lock(&flight.state);
        let mut stored = None;
        let polled = loop {
            if self.pos < st.end() {
                if self.pos < st.base {
                    break Poll::Ready(Some(Err(StreamError::new("fell behind").into())));
                }
                let data = st.frames[self.pos - st.base].clone();
                self.pos += 1;
                st.trim(self.pos);
                break Poll::Ready(Some(Ok(Frame::data(data))));
            }
            match st.phase {
                Phase::Done => break Poll::Ready(None),
                Phase::Failed => {
                    if self.errored {
                        break Poll::Ready(None);
                    }
                    self.errored = true;
                    let why = st.error.clone().unwrap_or_else(|| Arc::from("failed"));
                    break Poll::Ready(Some(Err(StreamError::new(why).into())));
                }
                Phase::Waiting | Phase::Streaming => {}
            }
            let Some(body) = st.body.as_mut() else {
                st.wakers.push(cx.waker().clone());
                break Poll::Pending;
            };
            let next = Pin::new(&mut *body).poll_frame(cx);
            let ended = body.is_end_stream();
            match next {
                Poll::Pending => {
                    // Whoever appends next wakes us, whichever reader polled upstream.
                    st.wakers.push(cx.waker().clone());
                    break Poll::Pending;
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        st.append(flight, data);
                    }
                    if ended {
                        stored = Some(st.complete());
                    }
                    st.wake_all();
                }
                Poll::Ready(Some(Err(e))) => {
                    let why = format!("the upstream response failed: {e}");
                    flight.fail_locked(&mut st, &why);
                }
                Poll::Ready(None) => {
                    stored = Some(st.complete());
                    st.wake_all();
                }
            }
        };
        let plan = st.plan;
        drop(st);
        if let Some(entry) = stored {
            self.flight.finish(entry, plan);
        }
        polled
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        let st = lock(&self.flight.state);
        st.phase == Phase::Done && self.pos >= st.end()
    }
}

impl Flight {
    /// Stores the entry (if any), then lets the next identical request lead: the flight
    /// stays joinable until the store has it, so no request slips between the two.
    fn finish(self: &Arc<Self>, entry: Option<Entry>, plan: Plan) {
        let Some(cache) = self.cache.upgrade() else {
            return;
        };
        let Some(entry) = entry else {
            let mut st = lock(&self.state);
            self.unregister(&mut st);
            return;
        };
        let flight = self.clone();
        let key = self.key;
        let mut put = Box::pin(async move {
            cache.store.put(&key, entry, plan.ttl).await;
            let mut st = lock(&flight.state);
            flight.unregister(&mut st);
        });
        // An in-memory store is done at once; anything else finishes on its own task.
        let mut cx = Context::from_waker(Waker::noop());
        if put.as_mut().poll(&mut cx).is_pending() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(put);
                }
                Err(_) => {
                    tracing::warn!("no tokio runtime to store a cache entry on: not stored");
                    let mut st = lock(&self.state);
                    self.unregister(&mut st);
                }
            }
        }
    }
}

impl Drop for FlightReader {
    fn drop(&mut self) {
        let flight = &*self.flight;
        let mut st = lock(&flight.state);
        if self.leads
            && st.shares
            && st.phase == Phase::Streaming
            && let Some(usage) = st.sse.as_deref()
        {
            // The leader's layers are done with the response (their bodies end with
            // this one): they get the usage of what was streamed so far, as they would
            // have counted it themselves, while followers read on.
            usage.fill(StreamEnd::Cancelled);
        }
        st.readers = st.readers.saturating_sub(1);
        if st.readers == 0 && st.phase == Phase::Streaming {
            // Every client hung up: a response cut short is not stored.
            flight.fail_locked(&mut st, "cancelled");
        } else {
            // If the upstream body had this reader's waker, another reader takes over.
            st.wake_all();
        }
    }
}

/// The leader's hold on its flight until the response is in: dropped early (an error,
/// a cancelled request), the waiters retry.
pub(crate) struct Leader(Option<Arc<Flight>>);

impl Leader {
    pub(crate) fn new(flight: Arc<Flight>) -> Self {
        Self(Some(flight))
    }

    pub(crate) fn flight(&self) -> &Arc<Flight> {
        self.0.as_ref().expect("leader used after release")
    }

    pub(crate) fn release(mut self) -> Arc<Flight> {
        self.0.take().expect("leader used after release")
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::memory::MemoryStore;
    use crate::store::Lookup;

    fn plan() -> Plan {
        Plan {
            ttl: Duration::from_secs(60),
            max_entry: 1 << 20,
            format: WireFormat::OpenAi,
            operation: Operation::ChatCompletions,
        }
    }

    fn sse_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", "text/event-stream".parse().unwrap());
        h
    }

    /// A body fed from a channel, to control when frames arrive.
    struct ChannelBody(tokio::sync::mpsc::UnboundedReceiver<Result<Frame<Bytes>, BoxError>>);

    impl http_body::Body for ChannelBody {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0.poll_recv(cx)
        }
    }

    fn channel() -> (
        tokio::sync::mpsc::UnboundedSender<Result<Frame<Bytes>, BoxError>>,
        UpstreamBody,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (tx, ChannelBody(rx).boxed_unsync())
    }

    #[tokio::test]
    async fn followers_replay_from_the_start_and_the_entry_is_stored() {
        let store = MemoryStore::new(1 << 20);
        let cache = Arc::new(CacheState::new(Arc::new(store.clone())));
        let key = CacheKey::from_bytes([7; 32]);
        let (flight, lead) = cache.join(key, plan());
        assert!(lead);
        let (same, lead2) = cache.join(key, plan());
        assert!(!lead2 && Arc::ptr_eq(&flight, &same));

        let (tx, body) = channel();
        let mut leader = flight.start(
            StatusCode::OK,
            &sse_headers(),
            body,
            true,
            SharedUsage::Parse,
        );
        tx.send(Ok(Frame::data(Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
        ))))
        .unwrap();
        let first = std::future::poll_fn(|cx| leader.poll_frame(cx)).await;
        assert!(first.unwrap().unwrap().is_data());

        // A follower joining now starts from the first frame.
        let Join::Joined(status, _, mut follower) =
            std::future::poll_fn(|cx| same.poll_join(cx)).await
        else {
            panic!("expected to join")
        };
        assert_eq!(status, StatusCode::OK);
        tx.send(Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n"))))
            .unwrap();
        drop(tx);
        let mut got = Vec::new();
        while let Some(f) = std::future::poll_fn(|cx| follower.poll_frame(cx)).await {
            got.extend_from_slice(&f.unwrap().into_data().unwrap());
        }
        assert!(got.starts_with(b"data: {") && got.ends_with(b"[DONE]\n\n"));
        // The leader still gets the rest, then the end.
        let second = std::future::poll_fn(|cx| leader.poll_frame(cx)).await;
        assert!(second.unwrap().unwrap().is_data());
        assert!(
            std::future::poll_fn(|cx| leader.poll_frame(cx))
                .await
                .is_none()
        );
        assert!(matches!(store.lookup(&key), Lookup::Hit(e) if e.sse && e.body == got));
        assert!(lock(&cache.flights).is_empty());
    }

    /// Whether `inner` points into `outer`'s memory.
    fn within(inner: &[u8], outer: &[u8]) -> bool {
        let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
        (o..o + outer.len()).contains(&i)
    }

    #[tokio::test]
    async fn an_entry_owns_its_bytes_and_keeps_no_read_buffer_alive() {
        // What hyper hands over: the body and the header values are slices of one read
        // buffer, far larger than either.
        let buffer = Bytes::from(
            [
                &b"text/json"[..],
                br#"{"choices":[{"message":{"content":"hi"}}]}"#,
                &[0u8; 64 * 1024][..],
            ]
            .concat(),
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_maybe_shared(buffer.slice(0..9)).unwrap(),
        );
        let body = buffer.slice(9..9 + 43);

        let store = MemoryStore::new(1 << 20);
        let cache = Arc::new(CacheState::new(Arc::new(store.clone())));
        let key = CacheKey::from_bytes([9; 32]);
        let (flight, _) = cache.join(key, plan());
        let (tx, upstream) = channel();
        let mut reader = flight.start(
            StatusCode::OK,
            &headers,
            upstream,
            false,
            SharedUsage::Parse,
        );
        tx.send(Ok(Frame::data(body.clone()))).unwrap();
        drop(tx);
        while let Some(f) = std::future::poll_fn(|cx| reader.poll_frame(cx)).await {
            f.unwrap();
        }
        let Lookup::Hit(e) = store.lookup(&key) else {
            panic!("not stored")
        };
        assert_eq!(e.body, body);
        assert_eq!(e.headers["content-type"], "text/json");
        assert!(
            !within(&e.body, &buffer),
            "the body is a slice of the read buffer"
        );
        assert!(
            !within(e.headers["content-type"].as_bytes(), &buffer),
            "a header value is a slice of the read buffer"
        );
    }

    #[tokio::test]
    async fn frames_kept_while_a_stream_runs_hold_no_read_buffer() {
        let cache = Arc::new(CacheState::new(Arc::new(MemoryStore::new(1 << 20))));
        let (flight, _) = cache.join(CacheKey::from_bytes([10; 32]), plan());
        let (tx, upstream) = channel();
        let mut reader = flight.start(
            StatusCode::OK,
            &sse_headers(),
            upstream,
            true,
            SharedUsage::Parse,
        );
        let event = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n";
        let buffer = Bytes::from([&event[..], &[0u8; 8192][..]].concat());
        tx.send(Ok(Frame::data(buffer.slice(..event.len()))))
            .unwrap();
        let got = std::future::poll_fn(|cx| reader.poll_frame(cx)).await;
        assert_eq!(got.unwrap().unwrap().into_data().unwrap(), &event[..]);
        // The stream goes on: its frame is kept, in memory of its own.
        let st = lock(&flight.state);
        assert_eq!(st.frames.len(), 1);
        assert!(
            !within(&st.frames[0], &buffer),
            "a kept frame pins the read buffer"
        );
    }

    /// Runs a JSON answer through a leader's flight with `json_usage`; the entry stored.
    async fn lead_json(answer: &'static str, json_usage: SharedUsage) -> Arc<Entry> {
        let store = MemoryStore::new(1 << 20);
        let cache = Arc::new(CacheState::new(Arc::new(store.clone())));
        let key = CacheKey::from_bytes([11; 32]);
        let (flight, _) = cache.join(key, plan());
        let (tx, upstream) = channel();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        let mut reader = flight.start(StatusCode::OK, &headers, upstream, false, json_usage);
        tx.send(Ok(Frame::data(Bytes::from_static(answer.as_bytes()))))
            .unwrap();
        drop(tx);
        while let Some(f) = std::future::poll_fn(|cx| reader.poll_frame(cx)).await {
            f.unwrap();
        }
        match store.lookup(&key) {
            Lookup::Hit(e) => e,
            _ => panic!("not stored"),
        }
    }

    const ANSWER: &str = r#"{"choices":[{"message":{"role":"assistant","content":"Hello there"}}],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#;

    #[tokio::test]
    async fn a_json_answer_is_parsed_once_for_the_entry_and_the_layers_above() {
        let slot = UsageSlot::new();
        let entry = lead_json(ANSWER, SharedUsage::Fill(slot.clone(), Bytes::new())).await;
        let f = slot.get().expect("the slot is filled when the body ends");
        assert_eq!(f.source, UsageSource::Reported);
        let u = f.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (7, 3));
        assert_eq!(entry.usage, Some(u));

        // Without usage in the answer: the layers above get an estimate, as they would
        // have made it; the entry keeps none (only what the provider reported).
        let slot = UsageSlot::new();
        let request = Bytes::from_static(
            br#"{"model":"m","messages":[{"role":"user","content":"Say hello to everyone here"}]}"#,
        );
        let entry = lead_json(
            r#"{"choices":[{"message":{"role":"assistant","content":"Hello there, everyone"}}]}"#,
            SharedUsage::Fill(slot.clone(), request),
        )
        .await;
        let f = slot.get().unwrap();
        assert_eq!(f.source, UsageSource::Estimated);
        assert!(f.usage.unwrap().input_tokens > 0 && f.usage.unwrap().output_tokens > 0);
        assert_eq!(entry.usage, None);
    }

    #[tokio::test]
    async fn usage_from_a_layer_below_is_taken_or_else_parsed() {
        let below = UsageSlot::new();
        let reported = Usage {
            input_tokens: 70,
            output_tokens: 30,
            ..Usage::default()
        };
        below.set(FinalUsage {
            usage: Some(reported),
            source: UsageSource::Reported,
            terminal: true,
        });
        // The layer below's figures win over the body's.
        let entry = lead_json(ANSWER, SharedUsage::Below(below)).await;
        assert_eq!(entry.usage, Some(reported));
        // A slot still empty when the body ends: the body is parsed.
        let entry = lead_json(ANSWER, SharedUsage::Below(UsageSlot::new())).await;
        assert_eq!(entry.usage.map(|u| u.input_tokens), Some(7));
    }

    const DELTA: &[u8] =
        b"data: {\"choices\":[{\"delta\":{\"content\":\"Hello there, everyone\"}}]}\n\n";
    const USAGE: &[u8] = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n";
    const DONE: &[u8] = b"data: [DONE]\n\n";
    const PROMPT: &[u8] =
        br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"Say hello to everyone here"}]}"#;

    /// Reads `reader` to its end; whether it ended in an error.
    async fn drain(reader: &mut FlightReader) -> bool {
        let mut failed = false;
        while let Some(f) = std::future::poll_fn(|cx| reader.poll_frame(cx)).await {
            failed |= f.is_err();
        }
        failed
    }

    fn send(
        tx: &tokio::sync::mpsc::UnboundedSender<Result<Frame<Bytes>, BoxError>>,
        b: &'static [u8],
    ) {
        tx.send(Ok(Frame::data(Bytes::from_static(b)))).unwrap();
    }

    #[tokio::test]
    async fn a_stream_is_read_once_for_the_entry_and_the_layers_above() {
        let store = MemoryStore::new(1 << 20);
        let cache = Arc::new(CacheState::new(Arc::new(store.clone())));
        let key = CacheKey::from_bytes([12; 32]);
        let (flight, _) = cache.join(key, plan());
        let (tx, body) = channel();
        let slot = UsageSlot::new();
        let fill = SharedUsage::Fill(slot.clone(), Bytes::from_static(PROMPT));
        let mut r = flight.start(StatusCode::OK, &sse_headers(), body, true, fill);
        for b in [DELTA, USAGE] {
            send(&tx, b);
        }
        std::future::poll_fn(|cx| r.poll_frame(cx))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(slot.get(), None, "filled before the stream ended");
        send(&tx, DONE);
        drop(tx);
        assert!(!drain(&mut r).await);
        let f = slot
            .get()
            .expect("filled by the time the reader sees the end");
        assert_eq!((f.source, f.terminal), (UsageSource::Reported, true));
        let u = f.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (7, 3));
        let Lookup::Hit(e) = store.lookup(&key) else {
            panic!("not stored")
        };
        assert_eq!(e.usage, Some(u));
    }

    #[tokio::test]
    async fn the_leaders_layers_get_what_was_streamed_when_its_client_leaves() {
        let store = MemoryStore::new(1 << 20);
        let cache = Arc::new(CacheState::new(Arc::new(store.clone())));
        let key = CacheKey::from_bytes([13; 32]);
        let (flight, _) = cache.join(key, plan());
        let (tx, body) = channel();
        let slot = UsageSlot::new();
        let fill = SharedUsage::Fill(slot.clone(), Bytes::from_static(PROMPT));
        let mut leader = flight.start(StatusCode::OK, &sse_headers(), body, true, fill);
        send(&tx, DELTA);
        std::future::poll_fn(|cx| leader.poll_frame(cx))
            .await
            .unwrap()
            .unwrap();
        let Join::Joined(_, _, mut follower) =
            std::future::poll_fn(|cx| flight.poll_join(cx)).await
        else {
            panic!("expected to join")
        };
        drop(leader);
        // The leader's meter and rate limiter settle now, on what was streamed: the
        // prompt and the text so far, estimated, as they would have counted it.
        let f = slot.get().expect("filled when the leader's client left");
        assert_eq!((f.source, f.terminal), (UsageSource::Estimated, false));
        let partial = f.usage.unwrap();
        assert!(
            partial.input_tokens > 0 && partial.output_tokens > 0,
            "{partial:?}"
        );
        // The follower reads on; the entry gets the reported figures, the slot keeps
        // what the leader's layers read.
        for b in [USAGE, DONE] {
            send(&tx, b);
        }
        drop(tx);
        assert!(!drain(&mut follower).await);
        let Lookup::Hit(e) = store.lookup(&key) else {
            panic!("not stored")
        };
        assert_eq!(e.usage.map(|u| u.output_tokens), Some(3));
        assert_eq!(slot.get(), Some(f));
    }

    #[tokio::test]
    async fn a_failed_or_oversized_stream_still_fills_the_slot() {
        // The upstream fails mid-stream: the slot has the estimate before the error
        // reaches the layers above.
        let cache = Arc::new(CacheState::new(Arc::new(MemoryStore::new(1 << 20))));
        let (flight, _) = cache.join(CacheKey::from_bytes([14; 32]), plan());
        let (tx, body) = channel();
        let slot = UsageSlot::new();
        let fill = SharedUsage::Fill(slot.clone(), Bytes::from_static(PROMPT));
        let mut r = flight.start(StatusCode::OK, &sse_headers(), body, true, fill);
        send(&tx, DELTA);
        tx.send(Err("reset".into())).unwrap();
        std::future::poll_fn(|cx| r.poll_frame(cx))
            .await
            .unwrap()
            .unwrap();
        assert!(
            std::future::poll_fn(|cx| r.poll_frame(cx))
                .await
                .unwrap()
                .is_err()
        );
        let f = slot.get().expect("filled before the error was passed on");
        assert_eq!(f.source, UsageSource::Estimated);
        assert!(f.usage.unwrap().output_tokens > 0);

        // Too large to store: not kept, but still read to its end for the layers above.
        let store = MemoryStore::new(1 << 20);
        let cache = Arc::new(CacheState::new(Arc::new(store.clone())));
        let key = CacheKey::from_bytes([15; 32]);
        let small = Plan {
            max_entry: DELTA.len() + 1,
            ..plan()
        };
        let (flight, _) = cache.join(key, small);
        let (tx, body) = channel();
        let slot = UsageSlot::new();
        let fill = SharedUsage::Fill(slot.clone(), Bytes::from_static(PROMPT));
        let mut r = flight.start(StatusCode::OK, &sse_headers(), body, true, fill);
        for b in [DELTA, DELTA, USAGE, DONE] {
            send(&tx, b);
        }
        drop(tx);
        assert!(!drain(&mut r).await);
        assert!(matches!(store.lookup(&key), Lookup::Miss));
        let f = slot.get().expect("filled at the end");
        assert_eq!(f.source, UsageSource::Reported);
        assert_eq!(f.usage.map(|u| u.output_tokens), Some(3));
    }

    #[tokio::test]
    async fn a_cut_stream_or_every_reader_leaving_stores_nothing() {
        let store = MemoryStore::new(1 << 20);
        let cache = Arc::new(CacheState::new(Arc::new(store.clone())));
        let key = CacheKey::from_bytes([8; 32]);
        // Ends cleanly without [DONE]: cut short.
        let (flight, _) = cache.join(key, plan());
        let (tx, body) = channel();
        let mut r = flight.start(
            StatusCode::OK,
            &sse_headers(),
            body,
            true,
            SharedUsage::Parse,
        );
        tx.send(Ok(Frame::data(Bytes::from_static(b"data: {}\n\n"))))
            .unwrap();
        drop(tx);
        while std::future::poll_fn(|cx| r.poll_frame(cx)).await.is_some() {}
        assert!(matches!(store.lookup(&key), Lookup::Miss));
        assert!(lock(&cache.flights).is_empty());

        // Every reader gone mid-stream: failed, unregistered, waiters retry.
        let (flight, _) = cache.join(key, plan());
        let (tx, body) = channel();
        let r = flight.start(
            StatusCode::OK,
            &sse_headers(),
            body,
            true,
            SharedUsage::Parse,
        );
        drop(r);
        assert!(lock(&cache.flights).is_empty());
        assert!(matches!(
            std::future::poll_fn(|cx| flight.poll_join(cx)).await,
            Join::Retry
        ));
        drop(tx);
    }

    #[tokio::test]
    async fn an_abandoned_leader_lets_waiters_retry() {
        let cache = Arc::new(CacheState::new(Arc::new(())));
        let key = CacheKey::from_bytes([9; 32]);
        let (flight, _) = cache.join(key, plan());
        let leader = Leader::new(flight.clone());
        drop(leader);
        assert!(matches!(
            std::future::poll_fn(|cx| flight.poll_join(cx)).await,
            Join::Retry
        ));
        let (_, lead) = cache.join(key, plan());
        assert!(lead, "the next request leads");
    }
}
