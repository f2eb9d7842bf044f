//! The accept loop, per-connection tasks, the connection limit and shutdown.

use crate::app::App;
use crate::conn::{closing_answer, ConnGuard, ConnTag, CountedIo, Deadlines, JsonErrors};
use crate::http::handle;
use crate::metrics::Metrics;
use crate::room::Rooms;
use crate::Config;
use http::HeaderValue;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves `listener` until `shutdown` completes, then closes every connection:
/// open long polls are answered, SSE streams end, WebSockets get a close
/// frame, and idle keep-alive connections are closed. Returns once every
/// connection task has ended, or after `config.shutdown_grace`.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future) {
    run_with_metrics(listener, config, Arc::new(Metrics::new()), shutdown).await
}

/// [`run`] with a metrics registry the caller keeps (tests read it).
pub async fn run_with_metrics(
    listener: TcpListener,
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: impl Future,
) {
    let quic = quic_endpoint(&listener, &config);
    let alt_svc = quic.as_ref().and_then(|e| {
        let port = e.local_addr().ok()?.port();
        HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400")).ok()
    });
    let webtransport = quic.as_ref().and_then(|e| {
        let port = e.local_addr().ok()?.port();
        let hash = config.tls.as_ref().and_then(|t| t.leaf_sha256.as_ref());
        Some(crate::app::webtransport_info(port, hash))
    });
    let app = Arc::new(App {
        rooms: Rooms::new(config.retention, config.max_rooms, config.max_memory),
        alt_svc,
        webtransport,
        metrics,
        shutdown: CancellationToken::new(),
        tracker: TaskTracker::new(),
        config,
    });
    let slots = Arc::new(Semaphore::new(app.config.max_connections));
    // Connections past the limit are answered by a small reserved pool: 503,
    // or `/healthz` and `/metrics` so a saturated server stays observable.
    // Past the pool too, they are closed at once.
    let refusals = Arc::new(Semaphore::new(REFUSAL_POOL));
    let builders = Arc::new(Builders::new(&app.config));
    app.tracker.spawn(expire_rooms(app.clone()));
    if let Some(endpoint) = quic {
        app.tracker
            .spawn(crate::h3::serve(app.clone(), endpoint, slots.clone()));
    }
    // A descriptor kept spare, so that at the open-file limit one connection
    // can still be accepted, told 503 and closed instead of waiting in the
    // backlog (the libev "EMFILE trick").
    let mut spare = std::fs::File::open("/dev/null").ok();

    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
                    tracing::warn!("accept failed: {e}");
                    if out_of_fds && spare.take().is_some() {
                        if let Ok((stream, _)) = listener.accept().await {
                            app.metrics.connections_rejected.inc();
                            shed(stream, app.config.max_connections);
                        }
                        spare = std::fs::File::open("/dev/null").ok();
                    }
                    // Back off instead of spinning on the error.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        app.metrics.connections_accepted.inc();
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let guard = Arc::new(ConnGuard::new(app.metrics.clone(), permit));
                app.tracker.spawn(serve_connection(
                    app.clone(),
                    builders.clone(),
                    stream,
                    guard,
                ));
            }
            Err(_) => {
                app.metrics.connections_rejected.inc();
                match refusals.clone().try_acquire_owned() {
                    Ok(permit) => {
                        app.tracker.spawn(refuse(app.clone(), stream, permit));
                    }
                    Err(_) => shed(stream, app.config.max_connections),
                }
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down");
    app.shutdown.cancel();
    app.tracker.close();
    if tokio::time::timeout(app.config.shutdown_grace, app.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connection tasks still running after {:?}; abandoning them",
            app.tracker.len(),
            app.config.shutdown_grace
        );
    }
}

/// With `--http3` (and TLS), a QUIC endpoint on the listener's address
/// over UDP; None, with a warning, when that port cannot be bound.
fn quic_endpoint(listener: &TcpListener, config: &Config) -> Option<quinn::Endpoint> {
    let tls = config.tls.as_ref().filter(|_| config.http3)?;
    let made = listener
        .local_addr()
        .map_err(|e| e.to_string())
        .and_then(|addr| crate::h3::endpoint(addr, tls, config, MAX_STREAMS));
    match made {
        Ok(endpoint) => {
            tracing::info!("HTTP/3 on udp://{:?}", endpoint.local_addr());
            Some(endpoint)
        }
        Err(e) => {
            tracing::warn!("HTTP/3 is not served: {e}");
            None
        }
    }
}

/// What hyper may buffer per connection, each way (on HTTP/2, per stream).
pub const MAX_BUF: usize = 64 * 1024;

/// Concurrent streams an HTTP/2 connection may open. A browser tab needs a
/// handful; the bound keeps one connection's memory at most this many
/// requests' worth.
pub const MAX_STREAMS: u32 = 100;

/// Connections past the limit answered at once, at most.
pub const REFUSAL_POOL: usize = 64;

/// Removes rooms nobody uses, every second, until shutdown.
async fn expire_rooms(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tick.tick() => {
                let n = app.rooms.expire_idle();
                if n > 0 {
                    tracing::debug!("{n} idle rooms expired");
                }
            }
        }
    }
}

/// hyper's two connection builders, set up once. The server picks one per
/// connection before hyper reads a byte ([`Speaks`]), instead of using
/// hyper-util's auto builder: that one reads the first 24 bytes itself and
/// hands them back to hyper through a rewind buffer, and hyper's read buffer
/// then doubled to 16 KiB on its second read, copying the first 8 KiB whole.
/// With jemalloc an idle HTTP/1.1 long poll cost about three times its
/// memory before the auto builder (results/README.md, "Where an idle
/// connection's memory goes"). A plain HTTP/1.1
/// connection's task is 1,264 bytes; HTTP/2 and TLS connections box their
/// state apart ([`serve_http`], [`serve_tls`]).
pub(crate) struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new(config: &Config) -> Builders {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            // Bounds what hyper buffers per connection, both the request head
            // (431 past it) and the response pieces queued for a slow reader.
            .max_buf_size(MAX_BUF)
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            // WebSocket over HTTP/2 (RFC 8441).
            .enable_connect_protocol()
            // The same bounds for HTTP/2: streams per connection, the header
            // block, and what is queued for a slow reader.
            .max_concurrent_streams(MAX_STREAMS)
            .max_header_list_size(MAX_BUF as u32)
            .max_send_buf_size(MAX_BUF);
        Builders { http1, http2 }
    }
}

/// What a connection speaks, told from its first bytes (plain) or from ALPN
/// (TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Speaks {
    /// HTTP/1.1, WebSocket by Upgrade included.
    Http1,
    /// HTTP/2: h2c by prior knowledge, or h2 by ALPN.
    Http2,
    /// A TLS handshake (only looked for with `--tls`).
    Tls,
}

/// The HTTP/2 connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Tells what a plain connection speaks from the bytes it sent first, or
/// None while they are still a proper prefix of HTTP/2's preface.
pub(crate) fn speaks(first: &[u8], tls: bool) -> Option<Speaks> {
    if tls && first.first() == Some(&crate::tls::HANDSHAKE_RECORD) {
        return Some(Speaks::Tls);
    }
    let n = first.len().min(H2_PREFACE.len());
    if first[..n] != H2_PREFACE[..n] {
        Some(Speaks::Http1)
    } else if n == H2_PREFACE.len() {
        Some(Speaks::Http2)
    } else {
        None
    }
}

/// Peeks at a new connection's first bytes (leaving them for hyper or
/// rustls) until they say what it speaks. None when the client closes
/// before sending anything, fails, or says nothing decisive within `wait`
/// (a peek cannot see a FIN behind bytes already sent, so a client that
/// closes inside the preface is let go at `wait`, as a silent one is).
async fn sniff(stream: &TcpStream, tls: bool, wait: Duration) -> Option<Speaks> {
    let mut first = [0u8; H2_PREFACE.len()];
    let sniffing = async {
        loop {
            match stream.peek(&mut first).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => {
                    if let Some(s) = speaks(&first[..n], tls) {
                        return Some(s);
                    }
                }
            }
            // A proper prefix of the preface: the same bytes would peek
            // again at once, so wait for the rest instead of spinning.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(wait, sniffing).await.ok().flatten()
}

async fn serve_connection(
    app: Arc<App>,
    builders: Arc<Builders>,
    stream: TcpStream,
    guard: Arc<ConnGuard>,
) {
    let tag = Arc::new(ConnTag::new());
    // A client that sends nothing is closed after the shorter of the header
    // and idle timeouts, as hyper would close it.
    let wait = app.config.header_read_timeout.min(app.config.idle_timeout);
    let speaks = tokio::select! {
        speaks = sniff(&stream, app.config.tls.is_some(), wait) => speaks,
        // Not yet a request: nothing to finish at shutdown.
        _ = app.shutdown.cancelled() => None,
    };
    let Some(speaks) = speaks else {
        return;
    };
    let deadlines = Deadlines {
        idle: app.config.idle_timeout,
        write_stall: app.config.write_stall_timeout,
        shutdown: app.shutdown.clone(),
    };
    let counted = CountedIo::new(stream, tag.clone(), app.metrics.clone(), &deadlines);
    match speaks {
        // The common case, inline in the task: one allocation per
        // connection. (Boxing hyper's connection apart, as the other paths
        // do, cost a plain long poll 0.3 KiB more at 10,000 connections.)
        Speaks::Http1 => serve_h1(&app, &builders, JsonErrors::new(counted), tag, guard).await,
        Speaks::Http2 => {
            let io = JsonErrors::new(counted);
            serve_http(&app, &builders, speaks, io, tag, guard).await
        }
        // Boxed, so that the task of every plain connection does not carry
        // the TLS path's state.
        Speaks::Tls => Box::pin(serve_tls(app, &builders, counted, tag, guard)).await,
    }
}

/// Completes a TLS handshake and serves what ALPN chose.
async fn serve_tls(
    app: Arc<App>,
    builders: &Builders,
    counted: CountedIo,
    tag: Arc<ConnTag>,
    guard: Arc<ConnGuard>,
) {
    let Some(config) = app.config.tls.as_ref().map(|t| t.config.clone()) else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    // The handshake's state (a TLS stream mid-handshake) is boxed and freed
    // once it is done, and the TLS stream is handed to the boxed connection
    // inside this block, so that neither stays in this future for the
    // connection's life (with both, this future was 6,288 bytes; it is
    // 320).
    let served = {
        let handshake = Box::pin(acceptor.accept(counted));
        match tokio::time::timeout(app.config.header_read_timeout, handshake).await {
            Ok(Ok(tls)) => {
                app.metrics.tls_handshakes.inc();
                let speaks = match tls.get_ref().1.alpn_protocol() {
                    Some(b"h2") => Speaks::Http2,
                    _ => Speaks::Http1,
                };
                serve_http(&app, builders, speaks, JsonErrors::new(tls), tag, guard)
            }
            Ok(Err(e)) => {
                app.metrics.tls_failures.inc();
                tracing::debug!("TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                app.metrics.tls_failures.inc();
                tracing::debug!("TLS handshake timed out");
                return;
            }
        }
    };
    served.await
}

/// Serves a plain HTTP/1.1 connection until it ends or the server shuts
/// down, hyper's connection inline in this future (its stream, a counted
/// socket, is small).
async fn serve_h1(
    app: &Arc<App>,
    builders: &Builders,
    io: JsonErrors<CountedIo>,
    tag: Arc<ConnTag>,
    guard: Arc<ConnGuard>,
) {
    let svc_app = app.clone();
    let svc = service_fn(move |req| handle(svc_app.clone(), tag.clone(), guard.clone(), req));
    let conn = builders
        .http1
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    serve_until_shutdown(std::pin::pin!(conn), app.shutdown.clone(), |c| {
        c.as_mut().graceful_shutdown()
    })
    .await
}

/// The future that serves an HTTP/2 connection, or any connection over
/// TLS, in what it speaks until it ends or the server shuts down. hyper's
/// connection is built here and boxed at once, so it exists once, on the
/// heap: an async fn taking the stream would keep the stream's bytes in its
/// own state beside the connection that moved them ([`serve_tls`]).
fn serve_http<T>(
    app: &Arc<App>,
    builders: &Builders,
    speaks: Speaks,
    io: T,
    tag: Arc<ConnTag>,
    guard: Arc<ConnGuard>,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc_app = app.clone();
    let svc = service_fn(move |req| handle(svc_app.clone(), tag.clone(), guard.clone(), req));
    let io = TokioIo::new(io);
    let shutdown = app.shutdown.clone();
    if speaks == Speaks::Http2 {
        let conn = Box::pin(builders.http2.serve_connection(io, svc));
        Box::pin(serve_until_shutdown(conn, shutdown, |c| {
            c.as_mut().graceful_shutdown()
        }))
    } else {
        let conn = Box::pin(builders.http1.serve_connection(io, svc).with_upgrades());
        Box::pin(serve_until_shutdown(conn, shutdown, |c| {
            c.as_mut().graceful_shutdown()
        }))
    }
}

/// Drives a hyper connection to its end; at shutdown, asks it to finish
/// what is in flight and close.
async fn serve_until_shutdown<C>(
    mut conn: std::pin::Pin<C>,
    shutdown: CancellationToken,
    graceful: impl FnOnce(&mut std::pin::Pin<C>),
) where
    C: std::ops::DerefMut,
    C::Target: Future<Output = Result<(), hyper::Error>>,
{
    tokio::select! {
        res = conn.as_mut() => ended(res),
        _ = shutdown.cancelled() => {
            graceful(&mut conn);
            ended(conn.await);
        }
    }
}

fn ended(res: Result<(), hyper::Error>) {
    if let Err(e) = res {
        tracing::debug!("connection ended: {e}");
    }
}

/// The 503 a connection past the limit gets.
fn refusal(limit: usize) -> Vec<u8> {
    let body = chatbench_proto::ErrorBody::json(&format!(
        "connection limit reached ({limit} connections)"
    ));
    closing_answer(
        "503 Service Unavailable",
        "application/json",
        &[("retry-after", "1")],
        &body,
    )
}

/// Closes a connection past every limit, with a 503 if the socket takes it
/// at once.
fn shed(stream: TcpStream, limit: usize) {
    let _ = stream.try_write(&refusal(limit));
}

/// Answers a connection over the limit and closes it: `GET /healthz` and
/// `GET /metrics` are served, so an operator can see a saturated server;
/// anything else gets 503 with `Retry-After`.
async fn refuse(app: Arc<App>, mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    // Read the request head first, which also keeps closing from resetting
    // the answer; give up after 200 ms or 4 KiB.
    let mut buf = [0u8; 4096];
    let mut n = 0;
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf[n..]).await {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
    })
    .await;
    let line = buf[..n].split(|&b| b == b'\r').next().unwrap_or(&[]);
    let (content_type, body) = match line {
        b"GET /healthz HTTP/1.1" | b"GET /healthz HTTP/1.0" => ("text/plain", b"ok".to_vec()),
        b"GET /metrics HTTP/1.1" | b"GET /metrics HTTP/1.0" => {
            app.metrics.sync_rooms(&app.rooms);
            (
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                app.metrics.encode().into_bytes(),
            )
        }
        _ => {
            let _ = stream.write_all(&refusal(app.config.max_connections)).await;
            let _ = stream.shutdown().await;
            return;
        }
    };
    let answer = closing_answer("200 OK", content_type, &[], &body);
    let _ = stream.write_all(&answer).await;
    let _ = stream.shutdown().await;
}

/// Completes on Ctrl-C or, on Unix, SIGTERM.
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
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_say_what_a_connection_speaks() {
        let preface = &H2_PREFACE[..];
        assert_eq!(speaks(preface, false), Some(Speaks::Http2));
        assert_eq!(
            speaks(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0", true),
            Some(Speaks::Http2)
        );
        assert_eq!(speaks(b"GET / HTTP/1.1\r\n", false), Some(Speaks::Http1));
        // "P" could still be the preface; "PO" cannot.
        assert_eq!(speaks(b"P", false), None);
        assert_eq!(speaks(b"PRI * HTTP/2.0\r\n", false), None);
        assert_eq!(
            speaks(b"POST /rooms/a/messages HTTP/1.1\r\n", false),
            Some(Speaks::Http1)
        );
        assert_eq!(speaks(b"PRI * HTTP/1.1\r\n", false), Some(Speaks::Http1));
        // A TLS record is TLS only where TLS is served.
        assert_eq!(speaks(&[22, 3, 1], true), Some(Speaks::Tls));
        assert_eq!(speaks(&[22, 3, 1], false), Some(Speaks::Http1));
        // Any prefix of the preface waits; any other byte decides at once.
        for n in 1..preface.len() {
            assert_eq!(speaks(&preface[..n], false), None, "{n}");
            let mut other = preface[..n].to_vec();
            other[n - 1] ^= 0x20;
            assert_eq!(speaks(&other, false), Some(Speaks::Http1), "{n}");
        }
    }
}
