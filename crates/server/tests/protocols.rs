//! HTTP/2 (h2c with prior knowledge, h2 by ALPN over TLS), HTTP/1.1 over
//! TLS, and WebSocket over HTTP/2 (RFC 8441), with third-party clients:
//! curl, h2load and Python `websockets`, and hyper's own HTTP/2 client.
//!
//! h2load and Python `websockets` are optional here: a test prints why it
//! skips when one is missing, unless `CHATBENCH_REQUIRE_PEERS=1` (set by
//! `.ci/run`, which installs them).

use crate::util::*;
use bytes::Bytes;
use chatbench_server::Config;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

/// A server answering plain HTTP and TLS on one port, and its CA file.
async fn tls_server(tag: &str) -> (Server, PathBuf, tempdir::Dir) {
    let dir = tempdir::Dir::new(tag);
    let ca = dir.path.join("ca.pem");
    let tls = chatbench_server::tls::self_signed(Some(&ca), &[]).unwrap();
    let config = Config {
        tls: Some(tls),
        ..Config::default()
    };
    (Server::start_with(config).await, ca, dir)
}

/// A directory removed on drop (no tempfile dependency in this crate).
mod tempdir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let path = std::env::temp_dir().join(format!(
                "chatbench-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

async fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs curl and returns (stdout, the HTTP version it reports last).
async fn curl(args: &[&str]) -> (String, String) {
    let mut all = vec!["-sS", "-w", "\n%{http_version}"];
    all.extend_from_slice(args);
    let out = run("curl", &all).await;
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, version) = text.rsplit_once('\n').unwrap();
    (body.to_owned(), version.to_owned())
}

/// True when `program` runs; otherwise says why the test skips, or fails
/// when `CHATBENCH_REQUIRE_PEERS` is set.
async fn have(program: &str, probe: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(probe)
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CHATBENCH_REQUIRE_PEERS").is_none(),
            "CHATBENCH_REQUIRE_PEERS is set, but `{program} {}` does not run",
            probe.join(" ")
        );
        eprintln!(
            "skipping: `{program} {}` does not run here",
            probe.join(" ")
        );
    }
    ok
}

#[tokio::test]
async fn curl_speaks_http2_over_tls_and_with_prior_knowledge() {
    let (server, ca, _dir) = tls_server("curl-h2").await;
    let port = server.addr.port();
    let ca = ca.to_str().unwrap().to_owned();
    let tls_base = format!("https://localhost:{port}");
    let h2c_base = format!("http://127.0.0.1:{port}");
    let modes: [(&str, Vec<&str>, &str); 3] = [
        ("h2", vec!["--http2", "--cacert", &ca], &tls_base),
        ("h1 over TLS", vec!["--http1.1", "--cacert", &ca], &tls_base),
        ("h2c", vec!["--http2-prior-knowledge"], &h2c_base),
    ];
    for (i, (name, flags, base)) in modes.iter().enumerate() {
        let room = format!("curl{i}");
        let want_version = if name.starts_with("h1") { "1.1" } else { "2" };
        let with = |extra: &[&str]| {
            let mut v = flags.clone();
            v.extend_from_slice(extra);
            v.into_iter().map(str::to_owned).collect::<Vec<_>>()
        };
        let call = |args: Vec<String>| async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            curl(&refs).await
        };
        for (n, body) in ["one", "two"].iter().enumerate() {
            let json = format!("{{\"from\":\"curl\",\"body\":\"{body}\"}}");
            let url = format!("{base}/rooms/{room}/messages");
            let (ack, version) = call(with(&[
                "-H",
                "content-type: application/json",
                "-d",
                &json,
                &url,
            ]))
            .await;
            assert_eq!(ack, format!("{{\"seq\":{}}}", n + 1), "{name}");
            assert_eq!(version, want_version, "{name}");
        }
        // Short poll.
        let (answer, version) =
            call(with(&[&format!("{base}/rooms/{room}/messages?after=0")])).await;
        assert_eq!(version, want_version, "{name}");
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let bodies: Vec<&str> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap())
            .collect();
        assert_eq!(bodies, ["one", "two"], "{name}");
        assert_eq!(
            (v["next"].as_u64(), v["missed"].as_u64()),
            (Some(2), Some(0))
        );
        // Long poll, answered by a publish over another connection.
        let wait = call(with(&[&format!(
            "{base}/rooms/{room}/messages?after=2&wait_ms=10000"
        )]));
        let publisher = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut h = server.http().await;
            h.publish(&room, "h1", "three", 3).await
        };
        let ((answer, _), seq) = tokio::join!(wait, publisher);
        assert_eq!(seq, 3);
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(v["messages"][0]["body"], "three", "{name}");
        assert_eq!(v["next"], 3, "{name}");
        // SSE: the three events, then curl's time limit ends the stream.
        let mut args = with(&["-N", "--max-time", "1"]);
        args.insert(0, "-s".into());
        args.push(format!("{base}/rooms/{room}/events?after=0"));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run("curl", &refs).await;
        // 28: curl's "operation timed out", the only way a stream ends.
        assert_eq!(out.status.code(), Some(28), "{name}");
        let text = String::from_utf8(out.stdout).unwrap();
        let ids: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .collect();
        assert_eq!(ids, ["1", "2", "3"], "{name}: {text}");
    }
    let m = server.scrape().await;
    // Two TLS modes of five curl runs each.
    assert_eq!(m["chatbench_tls_handshakes_total"], 10.0);
    assert_eq!(m["chatbench_tls_failures_total"], 0.0);
    // The TLS handshakes and HTTP/2's settings are charged to `connection`.
    assert!(metric(&m, "bytes_written_total", "connection") > 10.0 * 500.0);
    server.stop().await;
}

#[tokio::test]
async fn h2load_polls_over_h2c_and_h2() {
    if !have("h2load", &["--version"]).await {
        return;
    }
    let (server, _ca, _dir) = tls_server("h2load").await;
    server.http().await.publish("load", "a", "hello", 1).await;
    let port = server.addr.port();
    for (url, protocol) in [
        (
            format!("http://127.0.0.1:{port}/rooms/load/messages?after=0"),
            "h2c",
        ),
        (
            format!("https://127.0.0.1:{port}/rooms/load/messages?after=0"),
            "h2",
        ),
    ] {
        // h2load does not check certificates.
        let out = run("h2load", &["-n", "200", "-c", "4", "-m", "8", &url]).await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains(&format!("Application protocol: {protocol}\n")),
            "{text}"
        );
        assert!(
            text.contains("requests: 200 total, 200 started, 200 done, 200 succeeded, 0 failed"),
            "{text}"
        );
        assert!(
            text.contains("status codes: 200 2xx, 0 3xx, 0 4xx, 0 5xx"),
            "{text}"
        );
    }
    let m = server.scrape().await;
    assert_eq!(metric(&m, "requests_total", "short_poll"), 400.0);
    server.stop().await;
}

const WSS_CLIENT: &str = r#"
import asyncio, json, ssl, sys
import websockets

async def main(port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    url = f"wss://localhost:{port}/rooms/py/ws?after=0"
    async with websockets.connect(url, ssl=ctx, origin=None) as ws:
        await ws.send(json.dumps({"from": "py", "body": "over tls", "sent_at": 7}))
        await ws.send("not json")
        for _ in range(2):
            print(await ws.recv())

asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"#;

#[tokio::test]
async fn python_websockets_over_wss_trusting_the_generated_ca() {
    if !have("python3", &["-c", "import websockets"]).await {
        return;
    }
    let (server, ca, dir) = tls_server("wss").await;
    let script = dir.path.join("client.py");
    std::fs::write(&script, WSS_CLIENT).unwrap();
    let port = server.addr.port().to_string();
    let out = run(
        "python3",
        &[script.to_str().unwrap(), &port, ca.to_str().unwrap()],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let m: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        (
            m["seq"].as_u64(),
            m["from"].as_str(),
            m["body"].as_str(),
            m["sent_at"].as_u64()
        ),
        (Some(1), Some("py"), Some("over tls"), Some(7))
    );
    let e: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert!(e["error"].as_str().unwrap().contains("JSON"), "{e}");
    let m = server.scrape().await;
    assert_eq!(m["chatbench_tls_handshakes_total"], 1.0);
    server.stop().await;
}

/// A TLS client that trusts `ca` and offers `alpn`.
fn connector(ca: &std::path::Path, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(chatbench_server::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

type H2 = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

async fn h2_over<T>(io: T) -> H2
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, mut conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    // Drive the connection until the server's SETTINGS allow extended
    // CONNECT, as a browser waits for them before opening a WebSocket.
    let settled = std::future::poll_fn(|cx| {
        use std::future::Future;
        use std::task::Poll;
        if conn.is_extended_connect_protocol_enabled() {
            return Poll::Ready(true);
        }
        match std::pin::Pin::new(&mut conn).poll(cx) {
            Poll::Ready(_) => Poll::Ready(false),
            Poll::Pending if conn.is_extended_connect_protocol_enabled() => Poll::Ready(true),
            Poll::Pending => Poll::Pending,
        }
    });
    let enabled = tokio::time::timeout(Duration::from_secs(5), settled).await;
    assert_eq!(
        enabled,
        Ok(true),
        "SETTINGS_ENABLE_CONNECT_PROTOCOL within 5 s"
    );
    tokio::spawn(conn);
    send
}

/// Opens a WebSocket on `path` by extended CONNECT.
async fn ws_over_h2(
    send: &mut H2,
    authority: &str,
    path: &str,
) -> WebSocketStream<TokioIo<hyper::upgrade::Upgraded>> {
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("https://{authority}{path}"))
        .header("sec-websocket-version", "13")
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await
}

async fn next_text(ws: &mut WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .unwrap()
            .unwrap()
        {
            WsMessage::Text(t) => return t.to_string(),
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test]
async fn websocket_over_http2_by_extended_connect_over_h2c_and_tls() {
    let (server, ca, _dir) = tls_server("ws-h2").await;
    let authority = format!("localhost:{}", server.addr.port());
    for tls in [false, true] {
        let room = if tls { "h2tls" } else { "h2c" };
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let mut send = if tls {
            let stream = connector(&ca, &[b"h2"])
                .connect("localhost".try_into().unwrap(), tcp)
                .await
                .unwrap();
            assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            h2_over(stream).await
        } else {
            h2_over(tcp).await
        };
        // Two WebSockets and a poll on one connection, as streams.
        let mut a = ws_over_h2(&mut send, &authority, &format!("/rooms/{room}/ws?after=0")).await;
        let mut b = ws_over_h2(&mut send, &authority, &format!("/rooms/{room}/ws?after=0")).await;
        a.send(WsMessage::text(
            r#"{"from":"a","body":"first","sent_at":1}"#,
        ))
        .await
        .unwrap();
        for ws in [&mut a, &mut b] {
            let m: serde_json::Value = serde_json::from_str(&next_text(ws).await).unwrap();
            assert_eq!(
                (m["seq"].as_u64(), m["body"].as_str()),
                (Some(1), Some("first"))
            );
        }
        b.send(WsMessage::text("{bad")).await.unwrap();
        let e: serde_json::Value = serde_json::from_str(&next_text(&mut b).await).unwrap();
        assert!(e["error"].as_str().unwrap().contains("JSON"), "{e}");
        let req = Request::get(format!("https://{authority}/rooms/{room}/messages?after=0"))
            .body(Empty::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["next"], 1);
        // Same-origin by `:authority` (HTTP/2 has no Host header), as a
        // browser's page on this server sends it; another origin is refused.
        for (origin, status) in [
            (format!("https://{authority}"), StatusCode::OK),
            (
                "https://elsewhere.example".to_string(),
                StatusCode::FORBIDDEN,
            ),
        ] {
            let req = Request::get(format!("https://{authority}/rooms/{room}/messages?after=1"))
                .header("origin", &origin)
                .body(Empty::new())
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            assert_eq!(resp.status(), status, "{origin}");
        }
        // Anything but CONNECT with :protocol websocket is refused with a reason.
        let req = Request::get(format!("https://{authority}/rooms/{room}/ws"))
            .body(Empty::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()["allow"], "CONNECT");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"error":"over HTTP/2 this endpoint speaks WebSocket: send an extended CONNECT with :protocol websocket (RFC 8441), not GET"}"#
        );
        a.close(None).await.unwrap();
        b.close(None).await.unwrap();
    }
    let m = server.scrape().await;
    assert_eq!(metric(&m, "requests_total", "websocket"), 6.0);
    assert_eq!(metric(&m, "messages_published_total", "websocket"), 2.0);
    server.stop().await;
}

#[tokio::test]
async fn a_malformed_request_over_tls_gets_a_json_400_and_plain_http_still_works() {
    let (server, ca, _dir) = tls_server("tls-400").await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut tls = connector(&ca, &[b"http/1.1"])
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"BAD REQUEST LINE\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8(answer).unwrap();
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(
        text.ends_with(r#"{"error":"malformed HTTP/1.1 request: bad method, target or header"}"#),
        "{text}"
    );
    // A client that sends nothing TLS-like on the same port is plain HTTP.
    let (status, _, body) = server.http().await.get("/healthz").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    // A TLS client that does not trust the CA fails its handshake, counted.
    let other = chatbench_server::tls::generate(&[]).unwrap();
    let wrong = _dir.path.join("other-ca.pem");
    std::fs::write(&wrong, other.ca_pem).unwrap();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let e = connector(&wrong, &[b"h2"])
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap_err();
    // Both CAs are named "chatbench test CA", so the signature is what fails.
    assert_eq!(e.to_string(), "invalid peer certificate: BadSignature");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = server.scrape().await;
    assert_eq!(m["chatbench_tls_handshakes_total"], 1.0);
    assert_eq!(m["chatbench_tls_failures_total"], 1.0);
    server.stop().await;
}

/// The server tells HTTP/2 by prior knowledge from HTTP/1.1 by peeking at
/// the first bytes; a client whose first bytes come in pieces, still a
/// prefix of the preface, is waited for, not misread.
#[tokio::test]
async fn a_preface_or_request_in_pieces_is_told_apart() {
    let server = Server::start().await;
    // HTTP/2's preface in three writes, then an empty SETTINGS frame: the
    // server answers with its own SETTINGS (frame type 4 on stream 0).
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    for piece in [&b"PR"[..], b"I * HTTP/2.0\r\n", b"\r\nSM\r\n\r\n"] {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head))
        .await
        .expect("no frame within 5 s")
        .unwrap();
    assert_eq!(head[3], 4, "first frame type {head:?}");
    assert_eq!(&head[5..9], &[0, 0, 0, 0], "stream {head:?}");
    drop(s);

    // An HTTP/1.1 POST whose first write is "P", as the preface's is.
    let body = r#"{"from":"a","body":"split","sent_at":1}"#;
    let request = format!(
        "POST /rooms/split/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&request.as_bytes()[..1]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    s.write_all(&request.as_bytes()[1..]).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut answer))
        .await
        .expect("no answer within 5 s")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 201 Created\r\n"), "{answer}");
    assert!(answer.ends_with(r#"{"seq":1}"#), "{answer}");

    server.stop().await;

    // A client that stops inside the preface is closed at the header
    // timeout, as a silent one is (a peek does not see its FIN behind the
    // bytes it sent).
    let server = Server::start_with(Config {
        header_read_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2").await.unwrap();
    s.shutdown().await.unwrap();
    let start = std::time::Instant::now();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("not closed within 5 s")
        // Closed with the peeked bytes unread: a reset.
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    server.stop().await;
}

/// A server with TLS and HTTP/3 on one port number, and its CA file.
async fn h3_server(tag: &str) -> (Server, PathBuf, tempdir::Dir) {
    let dir = tempdir::Dir::new(tag);
    let ca = dir.path.join("ca.pem");
    let tls = chatbench_server::tls::self_signed(Some(&ca), &[]).unwrap();
    let config = Config {
        tls: Some(tls),
        http3: true,
        ..Config::default()
    };
    (Server::start_with(config).await, ca, dir)
}

/// Runs a Python client `source` against `port`, trusting `ca`, for at
/// most 30 s; its standard output.
async fn python(dir: &tempdir::Dir, source: &str, port: u16, ca: &std::path::Path) -> String {
    let script = dir.path.join("client.py");
    std::fs::write(&script, source).unwrap();
    let port = port.to_string();
    let args = [script.to_str().unwrap(), &port, ca.to_str().unwrap()];
    let out = tokio::time::timeout(Duration::from_secs(30), run("python3", &args))
        .await
        .expect("the Python client did not finish within 30 s");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An HTTP/3 client on aioquic: publishes twice, short-polls, holds a long
/// poll that a third publish on another stream answers, reads two events
/// of an SSE stream, and asks for a WebSocket. Prints one JSON line per
/// answer: `[status, body]` (for the stream, its text up to the second
/// event).
const H3_CLIENT: &str = r#"
import asyncio, json, sys
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration

class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.streams = {}

    def quic_event_received(self, event):
        for e in self.h3.handle_event(event):
            q = self.streams.get(getattr(e, "stream_id", None))
            if q is not None:
                q.put_nowait(e)

    def request(self, method, path, body=b""):
        sid = self._quic.get_next_available_stream_id()
        q = asyncio.Queue()
        self.streams[sid] = q
        headers = [(b":method", method.encode()), (b":scheme", b"https"),
                   (b":authority", AUTHORITY.encode()), (b":path", path.encode())]
        if body:
            headers.append((b"content-type", b"application/json"))
        self.h3.send_headers(sid, headers, end_stream=not body)
        if body:
            self.h3.send_data(sid, body, end_stream=True)
        self.transmit()
        return q

async def answer(q, until=None):
    status, data = None, b""
    while True:
        e = await q.get()
        if isinstance(e, HeadersReceived):
            status = int(dict(e.headers)[b":status"])
        elif isinstance(e, DataReceived):
            data += e.data
        if e.stream_ended or (until and until(data)):
            return [status, data.decode()]

def publish(c, body, sent_at):
    return c.request("POST", "/rooms/h3/messages",
                     json.dumps({"from": "py", "body": body, "sent_at": sent_at}).encode())

async def main(port, ca):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_verify_locations(ca)
    async with connect("localhost", port, configuration=config, create_protocol=Client) as c:
        for i in (1, 2):
            print(json.dumps(await answer(publish(c, f"m{i}", i))))
        print(json.dumps(await answer(c.request("GET", "/rooms/h3/messages?after=0"))))
        held = c.request("GET", "/rooms/h3/messages?after=2&wait_ms=5000")
        await asyncio.sleep(0.2)
        print(json.dumps(await answer(publish(c, "m3", 3))))
        print(json.dumps(await answer(held)))
        stream = c.request("GET", "/rooms/h3/events?after=1")
        print(json.dumps(await answer(stream, until=lambda d: d.count(b"\n\n") >= 2)))
        print(json.dumps(await answer(c.request("GET", "/rooms/h3/ws"))))

AUTHORITY = f"localhost:{sys.argv[1]}"
asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"#;

/// `GET /webtransport` says where sessions open and the generated
/// certificate's hash, with `--http3`; without, a 404 that says how; any
/// other method a 405.
#[tokio::test]
async fn webtransport_info_names_the_port_and_the_certificate_hash() {
    let (server, _ca, _dir) = h3_server("wt-info").await;
    let (status, _, body) = server.http().await.get("/webtransport").await;
    assert_eq!(status, StatusCode::OK);
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["port"], server.addr.port());
    assert_eq!(info["path"], "/rooms/{room}/wt");
    assert_eq!(
        info["modes"],
        serde_json::json!(["stream", "stream-per-message"])
    );
    let hash = info["certificate_sha256"].as_str().unwrap();
    assert_eq!(hash.len(), 64, "{hash}");
    assert!(
        hash.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{hash}"
    );
    let (status, _, body) = server
        .http()
        .await
        .request(
            http::Method::POST,
            "/webtransport",
            &[],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body:?}");

    let plain = Server::start().await;
    let (status, _, body) = plain.http().await.get("/webtransport").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        r#"{"error":"WebTransport is not served: start the server with --tls --http3"}"#
    );
}

#[tokio::test]
async fn aioquic_speaks_http3_to_every_http_transport() {
    if !have("python3", &["-c", "import aioquic"]).await {
        return;
    }
    let (server, ca, dir) = h3_server("h3").await;
    // Over TCP, every answer advertises HTTP/3 on the same port number.
    let (status, headers, _) = server.http().await.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let port = server.addr.port();
    assert_eq!(
        headers["alt-svc"].to_str().unwrap(),
        format!("h3=\":{port}\"; ma=86400")
    );

    let text = python(&dir, H3_CLIENT, port, &ca).await;
    let answers: Vec<(u16, String)> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 7, "{text}");
    assert_eq!(answers[0], (201, r#"{"seq":1}"#.to_string()));
    assert_eq!(answers[1], (201, r#"{"seq":2}"#.to_string()));
    let poll: serde_json::Value = serde_json::from_str(&answers[2].1).unwrap();
    assert_eq!(answers[2].0, 200);
    let bodies: Vec<&str> = poll["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!((bodies, poll["next"].as_u64()), (vec!["m1", "m2"], Some(2)));
    assert_eq!(answers[3], (201, r#"{"seq":3}"#.to_string()));
    let held: serde_json::Value = serde_json::from_str(&answers[4].1).unwrap();
    assert_eq!(answers[4].0, 200);
    assert_eq!(held["messages"][0]["body"], "m3");
    assert_eq!(held["messages"].as_array().unwrap().len(), 1);
    let (status, stream) = &answers[5];
    assert_eq!(*status, 200);
    let ids: Vec<&str> = stream
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(ids, ["2", "3"], "{stream}");
    assert_eq!(answers[6].0, 400);
    assert!(
        answers[6].1.contains("WebSocket is not served over HTTP/3"),
        "{}",
        answers[6].1
    );

    // The QUIC connection's bytes are charged, once it has closed, to the
    // first transport its requests used beyond publishing (as HTTP/2's).
    let short_poll = &server.metrics.of(chatbench_server::Label::ShortPoll);
    eventually(
        || short_poll.bytes_written.get() > 0,
        "the HTTP/3 connection's bytes charged to short_poll",
    )
    .await;
    let m = server.scrape().await;
    assert_eq!(metric(&m, "requests_total", "publish"), 3.0);
    assert_eq!(metric(&m, "requests_total", "short_poll"), 1.0);
    assert_eq!(metric(&m, "requests_total", "long_poll"), 1.0);
    assert_eq!(metric(&m, "requests_total", "sse"), 1.0);
    assert_eq!(m["chatbench_tls_handshakes_total"], 1.0);
    server.stop().await;
}

/// A WebTransport client on aioquic: a session per mode, three publishes
/// and a bad one on a bidirectional stream, then the three messages back
/// from the server's streams and the error on the publishing stream.
/// Prints one JSON line per session.
const WT_CLIENT: &str = r#"
import asyncio, json, sys
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.connection import FrameType
from aioquic.h3.events import HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.configuration import QuicConfiguration

class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.events = asyncio.Queue()

    def quic_event_received(self, event):
        for e in self.h3.handle_event(event):
            self.events.put_nowait(e)

async def session(port, ca, room, mode):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                               max_datagram_frame_size=65536)
    config.load_verify_locations(ca)
    async with connect("localhost", port, configuration=config, create_protocol=Client) as c:
        sid = c._quic.get_next_available_stream_id()
        c.h3.send_headers(sid, [
            (b":method", b"CONNECT"), (b":protocol", b"webtransport"),
            (b":scheme", b"https"), (b":authority", f"localhost:{port}".encode()),
            (b":path", f"/rooms/{room}/wt?after=0&mode={mode}".encode())])
        c.transmit()
        status = None
        while status is None:
            e = await c.events.get()
            if isinstance(e, HeadersReceived) and e.stream_id == sid:
                status = int(dict(e.headers)[b":status"])
        pub = c.h3.create_webtransport_stream(sid, is_unidirectional=False)
        # aioquic 1.x does not mark a bidirectional stream the client opens
        # as the session's, and parses what comes back on it as HTTP/3
        # frames (dropping the server's answers): mark it as its own
        # server-opened streams are.
        with c.h3._get_or_create_stream(pub) as s:
            s.frame_type, s.session_id = FrameType.WEBTRANSPORT_STREAM, sid
        for i in (1, 2, 3):
            line = json.dumps({"from": "py", "body": f"m{i}", "sent_at": i}) + "\n"
            c._quic.send_stream_data(pub, line.encode())
        c._quic.send_stream_data(pub, b"not json\n")
        c.transmit()
        data, errors, streams = {}, b"", set()
        while True:
            e = await asyncio.wait_for(c.events.get(), 10)
            if not isinstance(e, WebTransportStreamDataReceived):
                continue
            if e.stream_id == pub:
                errors += e.data
            else:
                streams.add(e.stream_id)
                data[e.stream_id] = data.get(e.stream_id, b"") + e.data
            lines = [l for d in data.values() for l in d.split(b"\n") if l]
            if len(lines) >= 3 and errors.endswith(b"\n"):
                break
        bodies = sorted(json.loads(l)["body"] for l in lines)
        print(json.dumps({"status": status, "bodies": bodies, "streams": len(streams),
                          "error": json.loads(errors)["error"]}))

async def main(port, ca):
    await session(port, ca, "wt1", "stream")
    await session(port, ca, "wt2", "stream-per-message")

asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"#;

#[tokio::test]
async fn aioquic_opens_webtransport_sessions_in_both_modes() {
    if !have("python3", &["-c", "import aioquic"]).await {
        return;
    }
    let (server, ca, dir) = h3_server("wt").await;
    // Over TCP the session's path says how a session is opened.
    let (status, _, body) = server.http().await.get("/rooms/wt1/wt").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&body)
            .contains("extended CONNECT (:protocol = webtransport) over HTTP/3"),
        "{body:?}"
    );
    let text = python(&dir, WT_CLIENT, server.addr.port(), &ca).await;
    let sessions: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(sessions.len(), 2, "{text}");
    for (s, streams) in sessions.iter().zip([1, 3]) {
        assert_eq!(s["status"], 200, "{s}");
        assert_eq!(s["bodies"], serde_json::json!(["m1", "m2", "m3"]), "{s}");
        // One stream for every message, or one stream each.
        assert_eq!(s["streams"], streams, "{s}");
        assert!(s["error"].as_str().unwrap().contains("bad JSON"), "{s}");
    }
    let m = server.scrape().await;
    assert_eq!(metric(&m, "messages_published_total", "webtransport"), 6.0);
    assert_eq!(metric(&m, "messages_delivered_total", "webtransport"), 6.0);
    assert_eq!(metric(&m, "requests_total", "webtransport"), 3.0);
    server.stop().await;
}
