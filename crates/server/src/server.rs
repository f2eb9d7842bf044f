//! The accept loop, per-connection tasks, the connection limit and shutdown.

use crate::conn::{ConnGuard, ConnTag, CountedIo};
use crate::http::{handle, App};
use crate::metrics::Metrics;
use crate::room::Rooms;
use crate::Config;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
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
        rooms: Rooms::new(config.retention, config.max_rooms),
        metrics,
        shutdown: CancellationToken::new(),
        tracker: TaskTracker::new(),
        config,
    });
    let slots = Arc::new(Semaphore::new(app.config.max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.config.header_read_timeout)
        .keep_alive(true);

    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
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
                let limit = app.config.max_connections;
                app.tracker.spawn(refuse(stream, limit));
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

async fn serve_connection(
    app: Arc<App>,
    builder: http1::Builder,
    stream: TcpStream,
    guard: Arc<ConnGuard>,
) {
    let tag = Arc::new(ConnTag::new());
    let io = TokioIo::new(CountedIo::new(
        stream,
        tag.clone(),
        app.metrics.clone(),
        app.config.idle_timeout,
    ));
    let svc_app = app.clone();
    let svc = service_fn(move |req| handle(svc_app.clone(), tag.clone(), guard.clone(), req));
    let conn = builder.serve_connection(io, svc).with_upgrades();
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

/// Answers a connection over the limit with 503 and closes it.
async fn refuse(mut stream: TcpStream, limit: usize) {
    let body = chatbench_proto::ErrorBody::json(&format!(
        "connection limit reached ({limit} connections)"
    ));
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n",
        body.len()
    );
    // Read (part of) the request first so closing does not reset the answer.
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
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
