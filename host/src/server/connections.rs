//! The HTTP/1.1 listener: axum's `Router` driven through hyper's connection builder, because
//! `axum::serve` has no header-read or idle timeout, no connection cap and no drain deadline.
//!
//! - Once the first byte of a request has arrived, its headers must be complete within
//!   `header_read_timeout_secs`, else the connection is closed.
//! - A connection with no request in progress and no request started for `idle_timeout_secs` is
//!   closed.
//! - One request may take `request_timeout_secs`, body included (408 after that).
//! - At most `max_connections` are open. At the cap, the connection without a request in
//!   progress that has been quiet the longest (idle, or still sending headers) is closed to make
//!   room, so idle or half-sent connections can never lock `/healthz` out; when every connection
//!   has a request in progress, the new one is closed at once.
//! - On shutdown the listener closes, connections without a request in progress are closed,
//!   in-flight requests are answered (then their connections close), and after
//!   `drain_timeout_secs` whatever is left (a stalled body, a stuck client) is dropped.

use crate::config::ServerSection;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Connection limits, read once at start.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    request_timeout: Duration,
    max_connections: usize,
    drain_timeout: Duration,
}

impl Limits {
    /// From `[server]` (zero durations are raised to one second, a zero cap to one connection).
    pub fn from_section(server: &ServerSection) -> Self {
        let secs = |s: u64| Duration::from_secs(s.max(1));
        Limits {
            header_read_timeout: secs(server.header_read_timeout_secs),
            idle_timeout: secs(server.idle_timeout_secs),
            request_timeout: secs(server.request_timeout_secs),
            max_connections: server.max_connections.max(1),
            drain_timeout: secs(server.drain_timeout_secs),
        }
    }
}

/// One open connection, as the accept loop sees it.
#[derive(Debug)]
struct Conn {
    /// Requests in progress.
    busy: AtomicUsize,
    /// When the last request finished (or the connection opened), in ms since `epoch`.
    quiet_since_ms: AtomicU64,
    /// When the first byte of the next request arrived (ms since `epoch`, plus one); 0 if none
    /// has since the connection became quiet.
    head_started_ms: AtomicU64,
    /// Closes the connection (eviction at the cap).
    close: Notify,
    /// Wakes the connection's timer: a request finished or one started arriving.
    changed: Notify,
}

/// Open connections by id.
#[derive(Debug)]
struct Registry {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Registers a new connection, closing the longest-quiet one without a request in progress
    /// when `max` are open; `None` if every open connection is busy.
    fn admit(&self, max: usize) -> Option<(u64, Arc<Conn>)> {
        let Ok(mut open) = self.open.lock() else { return None };
        if open.len() >= max {
            let victim = open
                .iter()
                .filter(|(_, c)| c.busy.load(Ordering::Relaxed) == 0)
                .min_by_key(|(_, c)| c.quiet_since_ms.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            let conn = victim.and_then(|id| open.remove(&id))?;
            conn.close.notify_one();
            tracing::debug!("connection cap reached; closed the longest-idle connection");
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            quiet_since_ms: AtomicU64::new(self.now_ms()),
            head_started_ms: AtomicU64::new(0),
            close: Notify::new(),
            changed: Notify::new(),
        });
        open.insert(id, Arc::clone(&conn));
        Some((id, conn))
    }

    fn remove(&self, id: u64) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&id);
        }
    }
}

/// Marks a request in progress on its connection for as long as it lives.
struct InProgress {
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl InProgress {
    fn new(conn: Arc<Conn>, registry: Arc<Registry>) -> Self {
        conn.busy.fetch_add(1, Ordering::Relaxed);
        InProgress { conn, registry }
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.conn.quiet_since_ms.store(self.registry.now_ms(), Ordering::Relaxed);
        self.conn.head_started_ms.store(0, Ordering::Relaxed);
        self.conn.busy.fetch_sub(1, Ordering::Relaxed);
        self.conn.changed.notify_one();
    }
}

/// The socket, noting when the first byte of a request arrives on a quiet connection (the start
/// of the header-read timeout).
struct Watched {
    stream: tokio::net::TcpStream,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before && self.conn.busy.load(Ordering::Relaxed) == 0 {
            let now = self.registry.now_ms().saturating_add(1);
            if self.conn.head_started_ms.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                self.conn.changed.notify_one();
            }
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// How long until the connection must close, if it stays as it is: the header-read deadline
/// when a request has started arriving, else the idle deadline; `None` while a request is in
/// progress.
fn time_left(conn: &Conn, registry: &Registry, limits: &Limits) -> Option<Duration> {
    if conn.busy.load(Ordering::Relaxed) > 0 {
        return None;
    }
    let now = registry.now_ms();
    let (since, limit) = match conn.head_started_ms.load(Ordering::Relaxed) {
        0 => (conn.quiet_since_ms.load(Ordering::Relaxed), limits.idle_timeout),
        started => (started.saturating_sub(1), limits.header_read_timeout),
    };
    Some(limit.saturating_sub(Duration::from_millis(now.saturating_sub(since))))
}

/// Accepts and serves connections until `shutdown` completes, then drains (see the module docs).
pub async fn serve(listener: tokio::net::TcpListener, app: Router, limits: Limits, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
    let registry = Arc::new(Registry { epoch: Instant::now(), next_id: AtomicU64::new(0), open: Mutex::new(HashMap::new()) });
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; open connections keep going.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some((id, conn)) = registry.admit(limits.max_connections) else {
            tracing::warn!(max = limits.max_connections, "connection cap reached and every connection has a request in progress; closing the new one");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tasks.spawn(connection(stream, peer, app.clone(), limits, id, conn, Arc::clone(&registry), drain_rx.clone()));
    }
    drop(listener);
    let _ = drain_tx.send(true);
    let drained = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.drain_timeout, drained).await.is_err() {
        tracing::warn!(open = tasks.len(), "drain deadline reached; closing the connections still open");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    id: u64,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    mut drain: watch::Receiver<bool>,
) {
    let (for_service, registry_for_service) = (Arc::clone(&conn), Arc::clone(&registry));
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let mut app = app.clone();
        let in_progress = InProgress::new(Arc::clone(&for_service), Arc::clone(&registry_for_service));
        request.extensions_mut().insert(ConnectInfo(peer));
        async move {
            let response = match tokio::time::timeout(limits.request_timeout, tower_service::Service::call(&mut app, request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    let message = format!("the request took longer than {} seconds", limits.request_timeout.as_secs());
                    (StatusCode::REQUEST_TIMEOUT, axum::Json(serde_json::json!({ "error": message }))).into_response()
                }
            };
            // The request stays in progress until its response body has been sent (or dropped): a
            // streamed answer (a proxied event stream) is not an idle connection.
            let response = response.map(|body| {
                axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
                    let _still_in_progress = &in_progress;
                    frame
                }))
            });
            Ok::<_, Infallible>(response)
        }
    });
    // The header-read and idle timeouts are kept here rather than by hyper (whose header timer
    // also runs while a keep-alive connection waits for its next request).
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(true);
    let watched = Watched { stream, conn: Arc::clone(&conn), registry: Arc::clone(&registry) };
    let served = builder.serve_connection(TokioIo::new(watched), service);
    tokio::pin!(served);
    let mut draining = false;
    loop {
        // While a request is in progress, `request_timeout_secs` bounds it; look again later.
        let wake = time_left(&conn, &registry, &limits).unwrap_or(limits.request_timeout).max(Duration::from_millis(10));
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = conn.close.notified() => break,
            () = conn.changed.notified() => {}
            changed = drain.changed(), if !draining => {
                draining = true;
                if changed.is_err() || conn.busy.load(Ordering::Relaxed) == 0 {
                    break;
                }
                // Answer what is in flight, then close.
                served.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep(wake) => {
                if time_left(&conn, &registry, &limits).is_some_and(|left| left.is_zero()) {
                    tracing::debug!("closing a connection: idle, or its request's headers did not arrive in time");
                    break;
                }
            }
        }
    }
    registry.remove(id);
}
