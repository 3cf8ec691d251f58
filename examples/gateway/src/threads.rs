//! Serving from a runtime per thread: the accepting runtime hands each connection to
//! the thread with the fewest open connections.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::{Listener, ListenerExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::app::Gateway;
use crate::serve::{serve_tapped, set_nodelay};

/// Serves `gateway` from `threads` threads (0: one per CPU), each with a single-threaded
/// runtime of its own and its own [`router`](Gateway::router), so its own upstream
/// connection pool; everything else (caches, counters, limits, recorders) is the
/// gateway's, shared.
///
/// The caller's runtime accepts connections and hands each to the thread with the fewest
/// open connections (in turn among equals); a connection stays on its thread, with the
/// upstream connections that serve it. A request then runs start to end on one thread:
/// with a work-stealing runtime, a task woken while it runs (hyper's connection task
/// does as the request body arrives) is queued and another worker is woken to steal it,
/// a futex call and a wake-up per request that buy nothing when every task is a
/// connection's own (`benches/RESULTS.md`). The price: a connection cannot move, so when
/// its thread's core is busy with something else its requests wait even if another
/// thread is idle (seen in bursts and tail latency where the gateway shares its cores).
///
/// The caller's runtime must keep running (it drives the accept loop, and the Redis
/// connections of stores built on it). On `shutdown`, as [`serve`](crate::serve):
/// accepting stops, every thread lets its requests finish within `grace`, and this
/// returns when all threads have stopped.
pub async fn serve_per_thread(
    listener: TcpListener,
    gateway: &Gateway,
    threads: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<(), crate::BoxError> {
    let addr = listener.local_addr()?;
    Threads::spawn(gateway, threads, addr, grace)?
        .run(listener, shutdown)
        .await
}

/// The serving threads: where to hand each one its connections, how many it has open,
/// and their handles.
pub(crate) struct Threads {
    workers: Vec<Worker>,
    stop: watch::Sender<bool>,
}

struct Worker {
    handoff: mpsc::UnboundedSender<Handoff>,
    open: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

/// A connection on its way to a thread, counted in that thread's open connections.
struct Handoff {
    tcp: std::net::TcpStream,
    peer: SocketAddr,
    open: Open,
}

impl Threads {
    /// Starts `threads` threads (0: one per CPU), each serving a router of `gateway`.
    pub(crate) fn spawn(
        gateway: &Gateway,
        threads: usize,
        addr: SocketAddr,
        grace: Duration,
    ) -> Result<Self, crate::BoxError> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // Dropped on an early return: the threads started so far stop.
        let (stop, stopping) = watch::channel(false);
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let router = gateway.router()?;
            let (handoff, rx) = mpsc::unbounded_channel();
            let mut stopping = stopping.clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let thread = std::thread::Builder::new()
                // `top -H` shows them: `aigw-8787-0`, … (15 bytes at most on Linux).
                .name(format!("aigw-{}-{i}", addr.port()))
                .spawn(move || {
                    let stopped = async move {
                        let _ = stopping.wait_for(|s| *s).await;
                    };
                    // TCP_NODELAY is set before the handoff; `tap_io` gives axum the
                    // client's address.
                    let listener = HandedOver { rx, addr }.tap_io(|_| {});
                    runtime.block_on(serve_tapped(listener, router, stopped, grace))
                })?;
            workers.push(Worker {
                handoff,
                open: Arc::default(),
                thread,
            });
        }
        Ok(Self { workers, stop })
    }

    /// Accepts on `listener` and hands the connections out until `shutdown`; then stops
    /// the threads and waits for them to end.
    pub(crate) async fn run(
        self,
        mut listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), crate::BoxError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut next = 0;
        loop {
            let (tcp, peer) = tokio::select! {
                conn = Listener::accept(&mut listener) => conn,
                () = &mut shutdown => break,
            };
            set_nodelay(&tcp);
            // Deregistered from this runtime; the thread registers it with its own.
            let tcp = match tcp.into_std() {
                Ok(tcp) => tcp,
                Err(e) => {
                    tracing::warn!(%peer, "cannot hand a connection over: {e}");
                    continue;
                }
            };
            let n = self.workers.len();
            let w = &self.workers
                [least_open(n, next, |i| self.workers[i].open.load(Ordering::Relaxed))];
            next = (next + 1) % self.workers.len();
            let open = Open::new(&w.open);
            if w.handoff.send(Handoff { tcp, peer, open }).is_err() {
                // The thread ended on its own: its result says why.
                break;
            }
        }
        let _ = self.stop.send(true);
        let mut result = Ok(());
        for Worker {
            handoff, thread, ..
        } in self.workers
        {
            drop(handoff);
            match tokio::task::spawn_blocking(move || thread.join()).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => result = Err(e.into()),
                Ok(Err(_)) | Err(_) => result = Err("a gateway thread panicked".into()),
            }
        }
        result
    }
}

/// Of `n` threads, the one with the fewest open connections; among equals, the first
/// from `start`.
fn least_open(n: usize, start: usize, open: impl Fn(usize) -> usize) -> usize {
    (0..n)
        .map(|i| (start + i) % n)
        .min_by_key(|&i| open(i))
        .unwrap_or(0)
}

/// One open connection of a thread, counted until dropped.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A thread's listener: the connections the accepting runtime hands it.
struct HandedOver {
    rx: mpsc::UnboundedReceiver<Handoff>,
    addr: SocketAddr,
}

impl Listener for HandedOver {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            let Some(Handoff { tcp, peer, open }) = self.rx.recv().await else {
                // Accepting has stopped; so is this thread, once its connections end.
                return std::future::pending().await;
            };
            match TcpStream::from_std(tcp) {
                Ok(tcp) => return (Conn { tcp, _open: open }, peer),
                Err(e) => tracing::warn!(%peer, "cannot serve a connection: {e}"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// A connection served by a thread: the socket, counted in the thread's open
/// connections while it lives.
struct Conn {
    tcp: TcpStream,
    _open: Open,
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_go_to_the_least_loaded_thread_in_turn_among_equals() {
        let counts: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::default()).collect();
        let pick = |start: usize| least_open(3, start, |i| counts[i].load(Ordering::Relaxed));
        // Equal: the turn decides.
        assert_eq!(pick(0), 0);
        assert_eq!(pick(2), 2);
        let a = Open::new(&counts[0]);
        let b = Open::new(&counts[1]);
        // Only thread 2 has none open, whoever's turn it is.
        assert_eq!((pick(0), pick(1)), (2, 2));
        drop(a);
        // Thread 0's connection closed: 0 and 2 are equal again, the turn decides.
        assert_eq!((pick(0), pick(1), pick(2)), (0, 2, 2));
        drop(b);
        assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 0));
    }
}
