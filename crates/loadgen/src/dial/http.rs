//! A client's HTTP connection, HTTP/1.1 or HTTP/2, as the clients' receive
//! and send loops use it: one request at a time, its body whole or in
//! pieces, and the bytes each exchange cost.

use super::tls::{Handles, Stream};
use crate::h1::H1Conn;
use crate::h2::H2Conn;
use crate::h3::{H3Conn, H3Stream};
use crate::profile::{Headers, Kind};
use crate::wire::WireStats;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// What an HTTP exchange fails with: an I/O error, or a request that could
/// not be built.
pub type HttpResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A client's HTTP connection, made by [`super::Dialer::http`]: HTTP/1.1
/// through the load generator's own client ([`H1Conn`]: why it is not
/// hyper's is there), or HTTP/2 through hyper's ([`H2Conn`]), which a
/// client's sender and receiver share as a browser's tab does.
pub struct HttpConn {
    http: Http,
    wire: Arc<WireStats>,
    /// The socket's cut, byte counts and arrival stamp.
    pub handles: Handles,
    /// The extra request headers (`protocol.headers`).
    headers: Arc<Headers>,
}

enum Http {
    H1(H1Conn<Stream>),
    H3 {
        conn: Arc<H3Conn>,
        /// The stream of the last answer, while its body is read.
        stream: Option<H3Stream>,
    },
    H2 {
        conn: Arc<H2Conn>,
        /// The body of the last answer, while it is read a piece at a time.
        body: Option<hyper::body::Incoming>,
    },
}

/// The header fields a request with `body` adds: its JSON type, if any.
fn body_type(body: &[u8]) -> &'static [(&'static str, &'static str)] {
    if body.is_empty() {
        &[]
    } else {
        &[("content-type", "application/json")]
    }
}

/// A client's one HTTP/2 or HTTP/3 connection, which its sender and its
/// receiver both use; made by whichever needs it first. (Connection drops
/// are not run over HTTP/2 or HTTP/3: see `Scenario::validate`.)
#[derive(Debug, Default)]
pub struct SharedH2 {
    pub(super) slot: tokio::sync::Mutex<Option<Arc<H2Conn>>>,
    pub(super) h3: tokio::sync::Mutex<Option<Arc<H3Conn>>>,
}

impl SharedH2 {
    /// Closes the connection once its users are done with it.
    pub async fn close(&self) {
        let shared = self.slot.lock().await.take();
        if let Some(c) = shared {
            c.close().await;
        }
        let shared = self.h3.lock().await.take();
        if let Some(c) = shared {
            c.close().await;
        }
    }
}

impl HttpConn {
    /// An HTTP/1.1 connection over `stream` to `host`.
    pub(super) fn h1(
        stream: Stream,
        host: String,
        wire: Arc<WireStats>,
        headers: Arc<Headers>,
    ) -> HttpConn {
        HttpConn {
            handles: Handles::of(&stream),
            http: Http::H1(H1Conn::new(stream, host)),
            wire,
            headers,
        }
    }

    /// A user of the HTTP/3 connection `conn`.
    pub(super) fn h3(conn: Arc<H3Conn>, wire: Arc<WireStats>, headers: Arc<Headers>) -> HttpConn {
        HttpConn {
            handles: conn.handles.clone(),
            http: Http::H3 { conn, stream: None },
            wire,
            headers,
        }
    }

    /// A user of the HTTP/2 connection `conn`.
    pub(super) fn h2(conn: Arc<H2Conn>, wire: Arc<WireStats>, headers: Arc<Headers>) -> HttpConn {
        HttpConn {
            handles: conn.handles.clone(),
            http: Http::H2 { conn, body: None },
            wire,
            headers,
        }
    }

    /// Sends a request and reads the response head; the body follows from
    /// [`HttpConn::body_chunk`] or [`HttpConn::body`].
    pub async fn send_with(
        &mut self,
        kind: Kind,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> HttpResult<StatusCode> {
        self.wire.requests.fetch_add(1, Relaxed);
        let profile = self.headers.of(kind);
        match &mut self.http {
            Http::H1(c) => {
                let own: Vec<String> = headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                let lines: Vec<&str> = own
                    .iter()
                    .chain(self.headers.lines(kind))
                    .map(String::as_str)
                    .collect();
                Ok(c.send_with(method, target, &lines, b"").await?)
            }
            Http::H2 { conn, body } => {
                let m = Method::from_bytes(method.as_bytes())?;
                let req = conn.request(m, target, headers, profile, Bytes::new())?;
                let (_, resp) = conn.send(req).await?;
                let status = resp.status();
                *body = Some(resp.into_body());
                Ok(status)
            }
            Http::H3 { conn, stream } => {
                let m = Method::from_bytes(method.as_bytes())?;
                let (status, s) = conn.send(m, target, headers, profile, Bytes::new()).await?;
                *stream = Some(s);
                Ok(status)
            }
        }
    }

    /// The next piece of the answer's body; None at its end.
    pub async fn body_chunk(&mut self) -> std::io::Result<Option<Bytes>> {
        match &mut self.http {
            Http::H1(c) => c.body_chunk().await,
            Http::H2 { body, .. } => match body {
                Some(b) => crate::h2::body_chunk(b).await,
                None => Ok(None),
            },
            Http::H3 { stream, .. } => match stream {
                Some(s) => crate::h3::body_chunk(s).await,
                None => Ok(None),
            },
        }
    }

    /// The rest of the answer's body.
    pub async fn body(&mut self) -> std::io::Result<Bytes> {
        match &mut self.http {
            Http::H1(c) => c.body().await,
            Http::H2 { body, .. } => match body.take() {
                Some(b) => Ok(b.collect().await.map_err(std::io::Error::other)?.to_bytes()),
                None => Ok(Bytes::new()),
            },
            Http::H3 { stream, .. } => {
                let mut all = bytes::BytesMut::new();
                if let Some(mut s) = stream.take() {
                    while let Some(chunk) = crate::h3::body_chunk(&mut s).await? {
                        all.extend_from_slice(&chunk);
                    }
                }
                Ok(all.freeze())
            }
        }
    }

    /// A whole exchange: the status, the body, and the bytes it cost both
    /// ways (over HTTP/1.1 the socket's, TLS records included; over
    /// HTTP/2 its stream's frames).
    pub async fn call(
        &mut self,
        kind: Kind,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> HttpResult<(StatusCode, Bytes, u64)> {
        self.wire.requests.fetch_add(1, Relaxed);
        let profile = self.headers.of(kind);
        match &mut self.http {
            Http::H1(c) => {
                let (up0, down0) = self.handles.cut.bytes();
                let (status, b) = if profile.is_empty() {
                    c.call(method, target, body).await?
                } else {
                    let lines: Vec<&str> = self
                        .headers
                        .lines(kind)
                        .iter()
                        .map(String::as_str)
                        .collect();
                    let status = c.send_with(method, target, &lines, body).await?;
                    (status, c.body().await?)
                };
                let (up, down) = self.handles.cut.bytes();
                Ok((status, b, (up + down) - (up0 + down0)))
            }
            Http::H2 { conn, .. } => {
                let (m, headers) = (Method::from_bytes(method.as_bytes())?, body_type(body));
                let body = Bytes::copy_from_slice(body);
                Ok(conn.call(m, target, headers, profile, body).await?)
            }
            Http::H3 { conn, .. } => {
                let (m, headers) = (Method::from_bytes(method.as_bytes())?, body_type(body));
                let body = Bytes::copy_from_slice(body);
                Ok(conn.call(m, target, headers, profile, body).await?)
            }
        }
    }

    /// True once the connection can take no request (see
    /// [`H1Conn::is_closed`]).
    pub fn is_closed(&mut self) -> bool {
        match &mut self.http {
            Http::H1(c) => c.is_closed(),
            Http::H2 { conn, .. } => conn.is_closed(),
            Http::H3 { conn, .. } => conn.is_closed(),
        }
    }

    /// Closes the connection; its segment counts are in once this returns
    /// ([`crate::wire::WireCounter`]'s drop). Over TLS, reads until the
    /// server's own close. An HTTP/2 connection closes when its last user
    /// lets go.
    pub async fn close(self) {
        match self.http {
            Http::H1(c) if c.get_ref().is_tls() => c.into_io().close().await,
            Http::H1(c) => c.close().await,
            Http::H2 { conn, .. } => conn.close().await,
            // The client's shared connection closes at its end
            // ([`SharedH2::close`]).
            Http::H3 { .. } => {}
        }
    }

    /// Closes a connection whose server may still be writing to it (an
    /// SSE stream's keep-alives): a FIN, then reads until the server's own
    /// close, at most 5 s, so that what it wrote meanwhile is counted here
    /// as it is on the server. (Closed at once, a keep-alive the server
    /// wrote while the FIN was on its way over a long round trip was
    /// counted by the server alone: 19 bytes of one SSE run of
    /// flaky-mobile-links in packet mode.) An HTTP/2 connection closes when
    /// its last user lets go, as [`HttpConn::close`].
    pub async fn close_reading(self) {
        match self.http {
            Http::H1(c) => c.into_io().close_reading().await,
            Http::H2 { conn, .. } => conn.close().await,
            Http::H3 { .. } => {}
        }
    }

    /// Reads a cut connection to its end.
    pub async fn drain(self) {
        match self.http {
            Http::H1(c) => c.drain().await,
            // The connection's task reads it to its end.
            Http::H2 { conn, .. } => conn.finished().await,
            Http::H3 { .. } => {}
        }
    }

    /// Bytes of the request just answered and its response head, when it
    /// was the connection's first: `body` bytes of the answer were read.
    pub fn first_exchange_bytes(&self, body: usize) -> u64 {
        let (up, down) = self.handles.cut.bytes();
        let buffered = match &self.http {
            Http::H1(c) => c.buffered(),
            Http::H2 { .. } | Http::H3 { .. } => 0,
        };
        up + down.saturating_sub((body + buffered) as u64)
    }
}
