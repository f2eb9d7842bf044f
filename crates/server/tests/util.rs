//! Shared helpers: an in-process server on port 0 and real clients.

use bytes::Bytes;
use chatbench_server::{Config, Metrics};
use futures_util::StreamExt;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct Server {
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(Config::default()).await
    }

    pub async fn start_with(config: Config) -> Server {
        let listener = chatbench_server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(chatbench_server::run_with_metrics(
            listener,
            config,
            metrics.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            metrics,
            stop: Some(stop),
            task,
        }
    }

    pub async fn http(&self) -> Http {
        Http::connect(self.addr).await
    }

    /// Asks the server to stop and waits for `run` to return.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server did not stop within 10 s")
            .unwrap();
    }

    /// `/metrics` parsed into `name{labels}` -> value.
    pub async fn scrape(&self) -> HashMap<String, f64> {
        let (status, _, body) = self.http().await.get("/metrics").await;
        assert_eq!(status, StatusCode::OK);
        parse_metrics(std::str::from_utf8(&body).unwrap())
    }

    pub async fn ws(&self, path: &str) -> Ws {
        let (ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}{path}", self.addr))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        ws
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

pub fn metric(m: &HashMap<String, f64>, name: &str, transport: &str) -> f64 {
    let key = format!("chatbench_{name}{{transport=\"{transport}\"}}");
    *m.get(&key).unwrap_or_else(|| panic!("no metric {key}"))
}

/// One keep-alive HTTP/1.1 connection through hyper's client.
pub struct Http {
    sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
}

impl Http {
    pub async fn connect(addr: SocketAddr) -> Http {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Http { sender, addr }
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> http::Response<Incoming> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.sender.ready().await.unwrap();
        self.sender
            .send_request(req.body(Full::new(body.into())).unwrap())
            .await
            .unwrap()
    }

    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let resp = self.send(method, path, headers, body).await;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, body)
    }

    pub async fn get(&mut self, path: &str) -> (StatusCode, HeaderMap, Bytes) {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn post(&mut self, path: &str, body: &str) -> (StatusCode, Bytes) {
        let (s, _, b) = self
            .request(
                Method::POST,
                path,
                &[("content-type", "application/json")],
                Bytes::copy_from_slice(body.as_bytes()),
            )
            .await;
        (s, b)
    }

    /// Publishes and returns the seq.
    pub async fn publish(&mut self, room: &str, from: &str, body: &str, sent_at: u64) -> u64 {
        let json = serde_json::json!({"from": from, "body": body, "sent_at": sent_at}).to_string();
        let (s, b) = self.post(&format!("/rooms/{room}/messages"), &json).await;
        assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&b));
        let ack: serde_json::Value = serde_json::from_slice(&b).unwrap();
        ack["seq"].as_u64().unwrap()
    }

    /// A poll; returns the parsed answer.
    pub async fn poll(&mut self, path: &str) -> Poll {
        let (s, _, b) = self.get(path).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        serde_json::from_slice(&b).unwrap()
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct Poll {
    pub messages: Vec<Msg>,
    pub next: u64,
    pub missed: u64,
}

/// A delivered message, owned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Msg {
    pub seq: u64,
    pub room: String,
    pub from: String,
    pub body: String,
    pub sent_at: Option<u64>,
    pub server_at: u64,
}

/// An SSE event as parsed from the stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

/// An SSE client over hyper: yields events and comments from the body.
pub struct Sse {
    _http: Http,
    body: Incoming,
    buf: String,
    pub comments: usize,
}

impl Sse {
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Sse {
        let mut http = Http::connect(addr).await;
        let resp = http.send(Method::GET, path, headers, Bytes::new()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Sse {
            _http: http,
            body: resp.into_body(),
            buf: String::new(),
            comments: 0,
        }
    }

    /// The next event, or None when the stream ends.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = Event::default();
                let mut data = Vec::new();
                let mut comment = false;
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        let _ = c;
                        comment = true;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        ev.id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        ev.event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v.to_owned());
                    }
                }
                if comment && data.is_empty() {
                    self.comments += 1;
                    continue;
                }
                ev.data = data.join("\n");
                return Some(ev);
            }
            let frame = self.body.frame().await?.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// The next `n` message events, parsed.
    pub async fn messages(&mut self, n: usize) -> Vec<Msg> {
        let mut out = Vec::new();
        while out.len() < n {
            let ev = tokio::time::timeout(Duration::from_secs(10), self.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "SSE event did not arrive in 10 s (after {} of {n})",
                        out.len()
                    )
                })
                .expect("SSE stream ended");
            if ev.event.is_none() {
                let m: Msg = serde_json::from_str(&ev.data).unwrap();
                assert_eq!(ev.id.as_deref(), Some(m.seq.to_string().as_str()));
                out.push(m);
            }
        }
        out
    }
}

/// The next `n` messages from a WebSocket, parsed; fails on anything else.
pub async fn ws_messages(ws: &mut Ws, n: usize) -> Vec<Msg> {
    let mut out = Vec::new();
    while out.len() < n {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "WebSocket frame did not arrive in 10 s (after {} of {n})",
                    out.len()
                )
            })
            .expect("WebSocket ended")
            .unwrap();
        match frame {
            WsMessage::Text(t) => out.push(
                serde_json::from_str(t.as_str())
                    .unwrap_or_else(|e| panic!("not a message: {t} ({e})")),
            ),
            WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
    out
}

/// The next text frame, as JSON.
pub async fn ws_text(ws: &mut Ws) -> serde_json::Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("WebSocket frame did not arrive in 10 s")
            .expect("WebSocket ended")
            .unwrap();
        if let WsMessage::Text(t) = frame {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

pub fn publish_frame(from: &str, body: &str, sent_at: u64) -> WsMessage {
    WsMessage::Text(
        serde_json::json!({"from": from, "body": body, "sent_at": sent_at})
            .to_string()
            .into(),
    )
}

/// Polls `cond` every 10 ms for up to 5 s.
pub async fn eventually<F: FnMut() -> bool>(mut cond: F, what: &str) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}
