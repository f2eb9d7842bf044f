//! HTTP/3 over QUIC (`--http3`): the same routes as over TCP, served by the
//! same router (`http.rs`), on the listening port's number over UDP.
//!
//! quinn is the QUIC stack and h3 (with h3-quinn) the HTTP/3 layer. Each
//! request's body is read through [`QuicBody`], so publishing has the same
//! limits as over TCP, and each answer's body is sent a frame at a time, so
//! a long poll waits and an SSE stream streams as they do over HTTP/2.
//!
//! A QUIC connection's bytes are counted at its UDP socket by quinn
//! (`ConnectionStats::udp_tx`: ciphertext, QUIC headers included, UDP and
//! IP headers not) and charged when the connection ends to the label its
//! requests raised, as an HTTP/2 connection's are ([`ConnTag::raise`]).

use crate::app::{App, Body};
use crate::conn::{ConnGuard, ConnTag};
use crate::metrics::Label;
use bytes::{Buf, Bytes};
use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// The ALPN protocol of HTTP/3.
pub const ALPN: &[u8] = b"h3";

/// A QUIC endpoint on `addr` (UDP) that serves HTTP/3 with `tls`'s
/// certificate, each connection opening at most `max_streams` requests at
/// once. Its idle timeout outlasts the longest long poll, since a waiting
/// long poll sends nothing.
pub(crate) fn endpoint(
    addr: SocketAddr,
    tls: &crate::tls::Tls,
    config: &crate::Config,
    max_streams: u32,
) -> Result<quinn::Endpoint, String> {
    let mut crypto = (*tls.config).clone();
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|e| format!("the TLS configuration cannot serve QUIC: {e}"))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    let idle = config
        .idle_timeout
        .max(config.long_poll_max_wait + Duration::from_secs(5));
    transport
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(idle).map_err(|e| format!("idle timeout: {e}"))?,
        ))
        .max_concurrent_bidi_streams(max_streams.into())
        // CUBIC, as Linux's TCP here, named so (the load generator's
        // run.json says it): quinn's default, set so that it cannot move.
        .congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default()));
    server.transport_config(Arc::new(transport));
    let socket = std::net::UdpSocket::bind(addr).map_err(|e| format!("UDP {addr}: {e}"))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| format!("QUIC endpoint on {addr}: {e}"))
}

/// Accepts QUIC connections until shutdown, each holding one of `slots`
/// (shared with TCP) for its life; past the limit, refused.
pub(crate) async fn serve(app: Arc<App>, endpoint: quinn::Endpoint, slots: Arc<Semaphore>) {
    loop {
        let incoming = tokio::select! {
            _ = app.shutdown.cancelled() => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        app.metrics.connections_accepted.inc();
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let guard = Arc::new(ConnGuard::new(app.metrics.clone(), permit));
                app.tracker
                    .spawn(serve_connection(app.clone(), incoming, guard));
            }
            Err(_) => {
                app.metrics.connections_rejected.inc();
                incoming.refuse();
            }
        }
    }
    // Connections were told to close by their own tasks; wait for the
    // peers to acknowledge, as long as the shutdown grace allows.
    let _ = tokio::time::timeout(app.config.shutdown_grace, endpoint.wait_idle()).await;
}

/// One QUIC connection: its handshake, then its requests, each in a task of
/// its own, until the peer closes it or the server shuts down; then its
/// bytes are charged.
async fn serve_connection(app: Arc<App>, incoming: quinn::Incoming, guard: Arc<ConnGuard>) {
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            app.metrics.tls_failures.inc();
            tracing::debug!("QUIC handshake failed: {e}");
            return;
        }
    };
    app.metrics.tls_handshakes.inc();
    let tag = Arc::new(ConnTag::new());
    let requests = TaskTracker::new();
    let built = h3::server::builder()
        .enable_webtransport(true)
        .enable_extended_connect(true)
        .enable_datagram(true)
        .max_webtransport_sessions(1)
        .build::<_, Bytes>(h3_quinn::Connection::new(conn.clone()))
        .await;
    match built {
        Ok(mut h3) => loop {
            let resolver = tokio::select! {
                _ = app.shutdown.cancelled() => {
                    // A GOAWAY, then the requests in flight end (long polls
                    // are answered and SSE streams end on shutdown too).
                    let _ = h3.shutdown(0).await;
                    requests.close();
                    let _ = tokio::time::timeout(app.config.shutdown_grace, requests.wait()).await;
                    conn.close(0u32.into(), b"the server is shutting down");
                    break;
                }
                r = h3.accept() => match r {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!("HTTP/3 connection ended: {e}");
                        break;
                    }
                },
            };
            // The head is read here, not in the request's task: a
            // WebTransport session takes the connection over.
            let head =
                tokio::time::timeout(app.config.header_read_timeout, resolver.resolve_request());
            let (req, stream) = match head.await {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => {
                    tracing::debug!("HTTP/3 request unreadable: {e}");
                    continue;
                }
                Err(_) => continue,
            };
            if crate::wt::is_session_request(&req) {
                tag.raise(Label::WebTransport);
                app.metrics.of(Label::WebTransport).requests.inc();
                match crate::wt::check(&app, &req) {
                    Ok(open) => {
                        match h3_webtransport::server::WebTransportSession::accept(req, stream, h3)
                            .await
                        {
                            Ok(session) => crate::wt::run(app.clone(), session, open).await,
                            Err(e) => tracing::debug!("WebTransport session refused: {e}"),
                        }
                        if app.shutdown.is_cancelled() {
                            conn.close(0u32.into(), b"the server is shutting down");
                        }
                        break;
                    }
                    Err(e) => {
                        requests.spawn(answer(stream, e.into_response()));
                        continue;
                    }
                }
            }
            requests.spawn(serve_request(
                app.clone(),
                tag.clone(),
                guard.clone(),
                req,
                stream,
            ));
        },
        Err(e) => tracing::debug!("HTTP/3 set-up failed: {e}"),
    }
    conn.closed().await;
    let stats = conn.stats();
    app.metrics
        .of(tag.get())
        .bytes_written
        .inc_by(stats.udp_tx.bytes);
}

type Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// Sends `resp` (whose body is whole) on `stream`.
async fn answer(mut stream: Stream, resp: Response<Body>) {
    let (parts, body) = resp.into_parts();
    if stream
        .send_response(Response::from_parts(parts, ()))
        .await
        .is_err()
    {
        return;
    }
    let Ok(b) = body.collect().await;
    let _ = stream.send_data(b.to_bytes()).await;
    let _ = stream.finish().await;
}

/// One request: the router's answer, and the answer's body sent a frame at
/// a time until it ends or the client stops reading.
async fn serve_request(
    app: Arc<App>,
    tag: Arc<ConnTag>,
    guard: Arc<ConnGuard>,
    req: Request<()>,
    stream: Stream,
) {
    let (mut send, recv) = stream.split();
    // The request's receiving half lives until the answer is sent: quinn
    // stops a stream whose receiving half is dropped before its end was
    // read (STOP_SENDING, code 0), and a client whose FIN had not left yet
    // then saw its request fail ("Remote reset: 0x0", 2 or 3 of 100 SSE
    // streams opened in a trial run).
    let recv = Arc::new(std::sync::Mutex::new(recv));
    let req = req.map(|()| QuicBody(recv.clone()));
    let Ok(resp) = crate::http::handle(app, tag, guard, req).await;
    let (parts, mut body) = resp.into_parts();
    if send
        .send_response(Response::from_parts(parts, ()))
        .await
        .is_err()
    {
        return;
    }
    while let Some(data) = next_data(&mut body).await {
        if send.send_data(data).await.is_err() {
            // The client reset the stream: the body (an SSE stream's
            // cursor) drops here.
            return;
        }
    }
    let _ = send.finish().await;
    // A request whose end the router did not need (a GET's FIN still on
    // its way) is told to stop with H3_NO_ERROR, as RFC 9114 4.1 asks of
    // a server that answers before the request's end; quinn's own stop on
    // drop says 0, which clients read as an error.
    recv.lock()
        .unwrap_or_else(|e| e.into_inner())
        .stop_sending(h3::error::Code::H3_NO_ERROR);
}

/// The body's next data, with every piece that is ready at once after it
/// in one buffer: an SSE event or a poll answer comes as several pieces
/// (`frames.rs`), and each `send_data` is an HTTP/3 DATA frame with a
/// header of its own, where hyper's write buffer joins them over TCP.
async fn next_data(body: &mut Body) -> Option<Bytes> {
    let first = loop {
        match body.frame().await?.ok()?.into_data() {
            Ok(d) => break d,
            Err(_trailers) => continue,
        }
    };
    let mut joined: Option<bytes::BytesMut> = None;
    while let Some(Some(Ok(frame))) = body.frame().now_or_never() {
        if let Ok(d) = frame.into_data() {
            joined
                .get_or_insert_with(|| bytes::BytesMut::from(&first[..]))
                .extend_from_slice(&d);
        }
    }
    Some(joined.map_or(first, bytes::BytesMut::freeze))
}

/// A request's body, read from its QUIC stream (shared with the request's
/// task, which keeps the stream until the answer is sent).
pub(crate) struct QuicBody(
    Arc<std::sync::Mutex<h3::server::RequestStream<h3_quinn::RecvStream, Bytes>>>,
);

impl hyper::body::Body for QuicBody {
    type Data = Bytes;
    type Error = h3::error::StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        // Only this body polls the stream; the lock is never contended.
        let mut stream = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match stream.poll_recv_data(cx) {
            Poll::Ready(Ok(Some(mut buf))) => {
                let bytes = buf.copy_to_bytes(buf.remaining());
                Poll::Ready(Some(Ok(hyper::body::Frame::data(bytes))))
            }
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl crate::http::RequestBody for QuicBody {
    fn websocket(
        _app: &Arc<App>,
        _room: &str,
        _req: Request<QuicBody>,
        _guard: Arc<ConnGuard>,
    ) -> Result<Response<Body>, crate::app::ApiError> {
        Err(crate::app::ApiError::bad_request(
            "WebSocket is not served over HTTP/3 (RFC 9220's extended CONNECT); open it over HTTP/1.1 or HTTP/2 on the same port over TCP",
        ))
    }
}
