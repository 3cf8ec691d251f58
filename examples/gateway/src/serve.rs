//! Serving the router: TCP_NODELAY, graceful shutdown, an in-process handle for tests.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::serve::{Listener, ListenerExt, TapIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::app::Gateway;
use crate::config::Config;
use crate::threads::Threads;

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
    let listener = listener.tap_io(|tcp| set_nodelay(tcp));
    serve_tapped(listener, router, shutdown, grace).await
}

/// Sets `TCP_NODELAY` on an accepted connection: a response's head and first bytes go
/// out as written.
pub(crate) fn set_nodelay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::trace!("could not set TCP_NODELAY: {e}");
    }
}

/// [`serve`] on a listener already wrapped by `tap_io` (which gives axum the client's
/// address as `ConnectInfo<SocketAddr>`).
pub(crate) async fn serve_tapped<L, F>(
    listener: TapIo<L, F>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
    F: FnMut(&mut L::Io) + Send + 'static,
{
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

/// What resolves when a [`RunningGateway`] is told to stop.
type Stopped = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

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
        Self::serving(&config, |listener, _, grace, stopped| {
            Ok(tokio::spawn(serve(listener, router, stopped, grace)))
        })
    }

    /// Starts a gateway from `config` as the `gateway` binary runs it: served from
    /// `config.server.threads` threads of their own
    /// ([`serve_per_thread`](crate::serve_per_thread)), accepting on the caller's runtime.
    /// Dropping it stops accepting at once; the threads end when their connections have
    /// (within the grace period). [`shutdown`](Self::shutdown) waits for them.
    pub async fn start_per_thread(config: Config) -> Result<Self, crate::BoxError> {
        let gateway = Gateway::new(&config).await?;
        Self::serving(&config, |listener, addr, grace, stopped| {
            // Serving before this returns.
            let threads = Threads::spawn(&gateway, config.server.threads, addr, grace)?;
            Ok(tokio::spawn(async move {
                threads
                    .run(listener, stopped)
                    .await
                    .map_err(io::Error::other)
            }))
        })
    }

    /// Binds `config.listen` and starts serving with `start(listener, its address, the
    /// grace period, what resolves on shutdown)`.
    fn serving(
        config: &Config,
        start: impl FnOnce(
            TcpListener,
            SocketAddr,
            Duration,
            Stopped,
        ) -> Result<JoinHandle<io::Result<()>>, crate::BoxError>,
    ) -> Result<Self, crate::BoxError> {
        let listener = bind(config.listen)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let grace = Duration::from_secs(config.server.shutdown_timeout_secs);
        let stopped = Box::pin(async move {
            let _ = stopped.await;
        });
        let task = start(listener, addr, grace, stopped)?;
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
