//! The bare proxy: the floor any proxy pays.
//!
//! A minimal hyper pass-through, run as its own process (the bench re-executes itself
//! with [`ROLE_ENV`] set): an HTTP/1 server with `TCP_NODELAY` whose service rewrites
//! the URI to the upstream's authority (path, query and headers kept), hands the
//! `Incoming` request body to a pooled hyper-util client (HTTP/1, `TCP_NODELAY`)
//! unbuffered, and returns the upstream's `Incoming` response body unbuffered. No
//! routing, no header rewriting, no logging: what is left is the cost of a second hop.

use std::convert::Infallible;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpSocket;

/// The environment variable that makes the bench binary a bare proxy
/// (`TOWER_AI_LOAD_ROLE=bare-proxy`).
pub(crate) const ROLE_ENV: &str = "TOWER_AI_LOAD_ROLE";
/// Its value for the bare proxy.
pub(crate) const ROLE: &str = "bare-proxy";
/// The upstream (`http://HOST:PORT`).
pub(crate) const UPSTREAM_ENV: &str = "TOWER_AI_LOAD_UPSTREAM";

type Upstream = Client<HttpConnector, Incoming>;
type ProxyBody = Either<Incoming, Empty<Bytes>>;

/// Runs the bare proxy until killed, or until its stdin closes (the bench went away).
pub(crate) fn main() -> ExitCode {
    let upstream = match std::env::var(UPSTREAM_ENV)
        .map_err(|e| e.to_string())
        .and_then(|u| u.parse::<Uri>().map_err(|e| e.to_string()))
    {
        Ok(uri) => uri,
        Err(e) => {
            eprintln!("bare-proxy: {UPSTREAM_ENV}: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(authority) = upstream.authority().cloned() else {
        eprintln!("bare-proxy: {UPSTREAM_ENV} has no authority: {upstream}");
        return ExitCode::from(2);
    };
    // The parent holds our stdin: when it exits, however it exits, we do too.
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bare-proxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(authority)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(authority: Authority) -> std::io::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let listener = socket.listen(4096)?;

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .build(connector);

    {
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "bare-proxy listening on http://{}",
            listener.local_addr()?
        )?;
        stdout.flush()?;
    }
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: back off instead of spinning.
                eprintln!("bare-proxy: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let authority = authority.clone();
        tokio::spawn(async move {
            let service =
                service_fn(move |request| forward(client.clone(), authority.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    client: Upstream,
    authority: Authority,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (mut parts, body) = request.into_parts();
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority);
    parts.uri = match Uri::from_parts(uri) {
        Ok(uri) => uri,
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    match client.request(Request::from_parts(parts, body)).await {
        Ok(response) => Ok(response.map(Either::Left)),
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

fn status(status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Empty::new()));
    *response.status_mut() = status;
    response
}
