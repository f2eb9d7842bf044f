//! The accept loop, per-connection tasks, the connection limit and shutdown.

use crate::conn::{closing_answer, ConnGuard, ConnTag, CountedIo, Deadlines, JsonErrors};
use crate::http::{handle, App};
use crate::metrics::Metrics;
use crate::room::Rooms;
use crate::Config;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
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
    let app = Arc::new(App {
        rooms: Rooms::new(config.retention, config.max_rooms, config.max_memory),
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
    // HTTP/1.1, and HTTP/2 with prior knowledge (h2c) or by ALPN over TLS.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(app.config.header_read_timeout)
        // Bounds what hyper buffers per connection, both the request head
        // (431 past it) and the response pieces queued for a slow reader.
        .max_buf_size(MAX_BUF)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        // WebSocket over HTTP/2 (RFC 8441).
        .enable_connect_protocol()
        // The same bounds for HTTP/2: streams per connection, the header
        // block, and what is queued for a slow reader.
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_BUF as u32)
        .max_send_buf_size(MAX_BUF);
    let builder = Arc::new(builder);
    app.tracker.spawn(expire_rooms(app.clone()));
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
                    builder.clone(),
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

type Builder = auto::Builder<TokioExecutor>;

async fn serve_connection(
    app: Arc<App>,
    builder: Arc<Builder>,
    stream: TcpStream,
    guard: Arc<ConnGuard>,
) {
    let tag = Arc::new(ConnTag::new());
    let tls = match &app.config.tls {
        Some(tls) => {
            // A TLS client speaks first, with a handshake record.
            let mut first = [0u8; 1];
            let peeked =
                tokio::time::timeout(app.config.header_read_timeout, stream.peek(&mut first)).await;
            match peeked {
                Ok(Ok(1)) => (first[0] == crate::tls::HANDSHAKE_RECORD).then(|| tls.config.clone()),
                // Closed, failed, or silent past the header timeout.
                _ => return,
            }
        }
        None => None,
    };
    let deadlines = Deadlines {
        idle: app.config.idle_timeout,
        write_stall: app.config.write_stall_timeout,
        shutdown: app.shutdown.clone(),
    };
    let counted = CountedIo::new(stream, tag.clone(), app.metrics.clone(), &deadlines);
    match tls {
        None => serve_http(app, &builder, JsonErrors::new(counted), tag, guard).await,
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let accepted =
                tokio::time::timeout(app.config.header_read_timeout, acceptor.accept(counted))
                    .await;
            match accepted {
                Ok(Ok(tls)) => {
                    app.metrics.tls_handshakes.inc();
                    serve_http(app, &builder, JsonErrors::new(tls), tag, guard).await
                }
                Ok(Err(e)) => {
                    app.metrics.tls_failures.inc();
                    tracing::debug!("TLS handshake failed: {e}");
                }
                Err(_) => {
                    app.metrics.tls_failures.inc();
                    tracing::debug!("TLS handshake timed out");
                }
            }
        }
    }
}

/// Serves HTTP/1.1 or HTTP/2 on a connection (plain or TLS) until it ends
/// or the server shuts down.
async fn serve_http<T>(
    app: Arc<App>,
    builder: &Builder,
    io: T,
    tag: Arc<ConnTag>,
    guard: Arc<ConnGuard>,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc_app = app.clone();
    let svc = service_fn(move |req| handle(svc_app.clone(), tag.clone(), guard.clone(), req));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!("connection ended: {e}");
            }
        }
        _ = app.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
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
