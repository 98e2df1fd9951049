//! The accept loop: a bounded number of connections, HTTP/1.1 with header limits, and the
//! shutdown sequence; beside it the operations listener and the background tasks.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Reply;
use super::caching::Caching;
use super::cors::Cors;
use crate::App;
use crate::issue::sweeper;

/// The accept queue asked of the kernel for the API listener. Linux caps it at
/// `net.core.somaxconn` (4096 on current kernels), so the host's setting is what holds: a drop
/// opens tens of thousands of connections within a second, and the 128 of a plain bind
/// overflows first (the client sees a dropped SYN and a retransmit a second later).
pub const ACCEPT_BACKLOG: u32 = 65_535;

/// Binds the API listener with [`ACCEPT_BACKLOG`] (address reuse on, as the runtime's own bind).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Serves `listener` (the API) and `ops` (`/metrics` and the probes), and runs the journal
/// sweeper and the readiness check, until `signal` completes. Then readiness turns false while
/// requests are still served for `SHUTDOWN_DELAY_MS` (load balancers take the pod out of
/// rotation meanwhile); then the listener closes, in-flight requests finish within
/// `SHUTDOWN_TIMEOUT_MS`, the confirmation queue is cleared (at most 2 s) and the producer is
/// flushed (for what is left of the bound, at least 1 s) so every answered event is on the
/// broker. The operations listener serves until the end, so a scrape sees the drain.
pub async fn run(
    listener: TcpListener,
    ops: TcpListener,
    app: Arc<App>,
    signal: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(app.config.header_read_timeout_ms))
        .max_headers(app.config.max_headers)
        .max_header_size(app.config.max_header_bytes)
        .keep_alive(true);
    let connections = Arc::new(Semaphore::new(app.config.max_connections));
    let background = Background::spawn(&app, ops);
    let delay = Duration::from_millis(app.config.shutdown_delay_ms);
    let stopping = async {
        signal.await;
        app.ready.store(false, Ordering::SeqCst);
        tracing::info!(
            delay_ms = delay.as_millis() as u64,
            "shutdown: not ready, still serving"
        );
        tokio::time::sleep(delay).await;
    };
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    // At the connection limit: close at once rather than queue.
                    app.metrics.connections_refused.inc();
                    drop(stream);
                    continue;
                };
                serve(&app, &http, &graceful, stream, peer, permit);
            }
            () = &mut stopping => break,
        }
    }
    app.ready.store(false, Ordering::SeqCst);
    drop(listener);
    let _ = background.stop.send(true);
    let drained = drain(&app, graceful, background.tasks).await;
    let _ = background.stop_ops.send(());
    let _ = background.ops.await;
    drained
}

/// What runs beside the accept loop: the sweeper and the readiness check (stopped when the
/// listener closes) and the operations listener (stopped last).
struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop_ops: tokio::sync::oneshot::Sender<()>,
    ops: tokio::task::JoinHandle<()>,
}

impl Background {
    fn spawn(app: &Arc<App>, ops: TcpListener) -> Background {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let tasks = vec![
            tokio::spawn(sweeper::sweep(app.clone(), stopped.clone())),
            tokio::spawn(crate::ops::refresh(app.clone(), stopped)),
        ];
        let (stop_ops, ops_stopped) = tokio::sync::oneshot::channel::<()>();
        let ops = crate::ops::serve(ops, app, async {
            let _ = ops_stopped.await;
        });
        Background {
            stop,
            tasks,
            stop_ops,
            ops,
        }
    }
}

/// Serves one connection on its own task; the permit is held until it closes.
fn serve(
    app: &Arc<App>,
    http: &http1::Builder,
    graceful: &GracefulShutdown,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let open = service::metrics::ConnectionGuard::open(&app.metrics.process.open_connections);
    let app = app.clone();
    let service = service_fn(move |request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(answer(&app, request, peer).await) }
    });
    let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
        drop(open);
        drop(permit);
    });
}

/// Every answer of the public listener: a CORS preflight is answered before any limit, token
/// or permit; anything else is handled, then given its caching and CORS headers.
async fn answer(app: &App, request: Request<Incoming>, peer: std::net::SocketAddr) -> Reply {
    let cors = Cors::of(&app.config.cors, &request);
    if let Some(reply) = cors.preflight(app, &request) {
        return reply;
    }
    let caching = Caching::of(&request);
    let reply = super::handle(app, request, peer).await;
    cors.apply(caching.apply(reply).await)
}

/// After the listener closed: in-flight requests finish, the sweeper and the readiness check
/// stop, confirmations are cleared and the producer flushed.
async fn drain(
    app: &App,
    graceful: GracefulShutdown,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<()> {
    let bound = Duration::from_millis(app.config.common.shutdown_timeout_ms);
    let started = Instant::now();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(bound) => {
            tracing::warn!(timeout_ms = bound.as_millis() as u64, "in-flight requests did not finish in time");
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    app.confirmations.flush().await;
    let publisher = app.publisher.clone();
    let left = bound
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(1));
    tokio::task::spawn_blocking(move || publisher.flush(left))
        .await?
        .context("flushing the Kafka producer")?;
    Ok(())
}
