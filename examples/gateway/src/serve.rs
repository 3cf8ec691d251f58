//! Serving the router: TCP_NODELAY, graceful shutdown, a runtime per thread, an
//! in-process handle for tests.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::serve::{Listener, ListenerExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::app::Gateway;
use crate::config::Config;

/// Listen backlog: a burst of clients connecting at once (a pool warming up, a deploy)
/// must not overflow the accept queue and wait for SYN retransmits. The kernel caps it
/// at `net.core.somaxconn`.
const BACKLOG: u32 = 4096;

/// A listener on `addr` with a backlog of 4,096 (`TcpListener::bind` gave this gateway
/// 128, as `ss -ltn` showed under the load benchmark).
pub fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets
/// in-flight requests and streams finish, and returns once they have, or once `grace`
/// has passed, whichever comes first.
pub async fn serve<L>(
    listener: L,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> io::Result<()>
where
    L: Listener<Io = TcpStream, Addr = SocketAddr>,
{
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::trace!("could not set TCP_NODELAY: {e}");
        }
    });
    let (stopping_tx, mut stopping_rx) = watch::channel(false);
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: waiting for in-flight requests");
        let _ = stopping_tx.send(true);
    });
    let deadline = async move {
        let _ = stopping_rx.wait_for(|s| *s).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        res = server => res,
        () = deadline => {
            tracing::warn!("shutdown grace period over: exiting with requests still in flight");
            Ok(())
        }
    }
}

/// Serves `gateway` from `threads` threads (0: one per CPU), each with a single-threaded
/// runtime of its own and its own [`router`](Gateway::router), so its own upstream
/// connection pool; everything else (caches, counters, limits, recorders) is the
/// gateway's, shared.
///
/// The caller's runtime accepts connections and hands each to the threads in turn; a
/// connection stays on its thread, with the upstream connections that serve it. A request
/// then runs start to end on one thread: with a work-stealing runtime, a task woken while
/// it runs (hyper's connection task does as the request body arrives) is queued and
/// another worker is woken to steal it, a futex call and a wake-up per request that buy
/// nothing when every task is a connection's own (`benches/RESULTS.md`).
///
/// The caller's runtime must keep running (it drives the accept loop, and the Redis
/// connections of stores built on it). On `shutdown`, as [`serve`]: accepting stops,
/// every thread lets its requests finish within `grace`, and this returns when all
/// threads have stopped.
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

/// The serving threads: where to hand each one its connections, and their handles.
struct Threads {
    workers: Vec<(
        mpsc::UnboundedSender<Handoff>,
        std::thread::JoinHandle<io::Result<()>>,
    )>,
    stop: watch::Sender<bool>,
}

/// A connection on its way to a thread.
type Handoff = (std::net::TcpStream, SocketAddr);

impl Threads {
    /// Starts `threads` threads (0: one per CPU), each serving a router of `gateway`.
    fn spawn(
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
            let (tx, rx) = mpsc::unbounded_channel();
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
                    let listener = HandedOver { rx, addr };
                    runtime.block_on(serve(listener, router, stopped, grace))
                })?;
            workers.push((tx, thread));
        }
        Ok(Self { workers, stop })
    }

    /// Accepts on `listener` and hands the connections to the threads in turn until
    /// `shutdown`; then stops them and waits for them to end.
    async fn run(
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
            // Deregistered from this runtime; the thread registers it with its own.
            let tcp = match tcp.into_std() {
                Ok(tcp) => tcp,
                Err(e) => {
                    tracing::warn!(%peer, "cannot hand a connection over: {e}");
                    continue;
                }
            };
            let (tx, _) = &self.workers[next];
            next = (next + 1) % self.workers.len();
            if tx.send((tcp, peer)).is_err() {
                // The thread ended on its own: its result says why.
                break;
            }
        }
        let _ = self.stop.send(true);
        let mut result = Ok(());
        for (tx, thread) in self.workers {
            drop(tx);
            match tokio::task::spawn_blocking(move || thread.join()).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => result = Err(e.into()),
                Ok(Err(_)) | Err(_) => result = Err("a gateway thread panicked".into()),
            }
        }
        result
    }
}

/// A thread's listener: the connections the accepting runtime hands it.
struct HandedOver {
    rx: mpsc::UnboundedReceiver<Handoff>,
    addr: SocketAddr,
}

impl Listener for HandedOver {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Some((tcp, peer)) = self.rx.recv().await else {
                // Accepting has stopped; so is this thread, once its connections end.
                return std::future::pending().await;
            };
            match TcpStream::from_std(tcp) {
                Ok(tcp) => return (tcp, peer),
                Err(e) => tracing::warn!(%peer, "cannot serve a connection: {e}"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// A gateway running in this process, for tests and embedding. Dropping it stops the
/// server at once; [`shutdown`](Self::shutdown) stops it gracefully.
#[derive(Debug)]
pub struct RunningGateway {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl RunningGateway {
    /// Starts a gateway from `config` on `config.listen` (use port 0 for an ephemeral one).
    pub async fn start(config: Config) -> Result<Self, crate::BoxError> {
        let router = crate::router(&config).await?;
        let listener = bind(config.listen)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let grace = Duration::from_secs(config.server.shutdown_timeout_secs);
        let task = tokio::spawn(serve(
            listener,
            router,
            async move {
                let _ = stopped.await;
            },
            grace,
        ));
        Ok(Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Starts a gateway from `config` as the `gateway` binary runs it: served from
    /// `config.server.threads` threads of their own ([`serve_per_thread`]), accepting on
    /// the caller's runtime.
    pub async fn start_per_thread(config: Config) -> Result<Self, crate::BoxError> {
        let gateway = Gateway::new(&config).await?;
        let listener = bind(config.listen)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let grace = Duration::from_secs(config.server.shutdown_timeout_secs);
        // Serving before this returns.
        let threads = Threads::spawn(&gateway, config.server.threads, addr, grace)?;
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.await;
            };
            threads
                .run(listener, stopped)
                .await
                .map_err(io::Error::other)
        });
        Ok(Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Begins a graceful shutdown and waits for it to finish.
    pub async fn shutdown(self) -> io::Result<()> {
        self.begin_shutdown().await.map_err(io::Error::other)?
    }

    /// Begins a graceful shutdown without waiting; returns the server task to await.
    pub fn begin_shutdown(mut self) -> JoinHandle<io::Result<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().expect("task present until shutdown")
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
