//! The bad-input matrix: every case asserted on status and error body.

use crate::util::*;
use bytes::Bytes;
use chatbench_server::Config;
use futures_util::SinkExt;
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn expect(
    http: &mut Http,
    method: Method,
    path: &str,
    body: &str,
    status: StatusCode,
    error: &str,
) {
    let json = [("content-type", "application/json")];
    let headers: &[(&str, &str)] = if method == Method::POST { &json } else { &[] };
    let (s, h, b) = http
        .request(
            method.clone(),
            path,
            headers,
            Bytes::copy_from_slice(body.as_bytes()),
        )
        .await;
    let text = String::from_utf8_lossy(&b);
    assert_eq!(s, status, "{method} {path}: {text}");
    assert_eq!(h["content-type"], "application/json", "{method} {path}");
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v, serde_json::json!({ "error": error }), "{method} {path}");
}

#[tokio::test]
async fn http_bad_input_matrix() {
    let server = Server::start_with(Config {
        body_limit: 100,
        ..Config::default()
    })
    .await;
    let mut h = server.http().await;
    let post = Method::POST;
    let get = Method::GET;
    let m = "/rooms/r/messages";
    expect(
        &mut h,
        post.clone(),
        m,
        "{nope",
        StatusCode::BAD_REQUEST,
        "bad JSON: key must be a string at line 1 column 2",
    )
    .await;
    expect(
        &mut h,
        post.clone(),
        m,
        "",
        StatusCode::BAD_REQUEST,
        "bad JSON: EOF while parsing a value at line 1 column 0",
    )
    .await;
    expect(
        &mut h,
        post.clone(),
        m,
        r#"{"from":"a","body":5}"#,
        StatusCode::BAD_REQUEST,
        "bad JSON: invalid type: integer `5`, expected a string at line 1 column 20",
    )
    .await;
    expect(
        &mut h,
        post.clone(),
        m,
        r#"{"from":"a"}"#,
        StatusCode::BAD_REQUEST,
        "bad JSON: missing field `body` at line 1 column 12",
    )
    .await;
    expect(
        &mut h,
        post.clone(),
        m,
        r#"{"from":"a","body":"b","sent_at":-1}"#,
        StatusCode::BAD_REQUEST,
        "bad JSON: invalid value: integer `-1`, expected u64 at line 1 column 35",
    )
    .await;
    expect(&mut h, post.clone(), m, r#"{"from":"a","body":"b","color":"red"}"#, StatusCode::BAD_REQUEST,
        "bad JSON: unknown field `color`, expected one of `from`, `body`, `sent_at` at line 1 column 30").await;
    let big = format!(r#"{{"from":"a","body":"{}"}}"#, "x".repeat(200));
    expect(
        &mut h,
        post.clone(),
        m,
        &big,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body is larger than the limit of 100 bytes",
    )
    .await;
    expect(
        &mut h,
        post.clone(),
        "/rooms/bad.room/messages",
        r#"{"from":"a","body":"b"}"#,
        StatusCode::BAD_REQUEST,
        "room name holds '.'; only A-Z, a-z, 0-9, '_' and '-' are allowed",
    )
    .await;
    let long_room = format!("/rooms/{}/messages", "a".repeat(65));
    expect(
        &mut h,
        get.clone(),
        &long_room,
        "",
        StatusCode::BAD_REQUEST,
        "room name is 65 bytes long; the limit is 64",
    )
    .await;
    expect(
        &mut h,
        get.clone(),
        "/rooms//messages",
        "",
        StatusCode::BAD_REQUEST,
        "room name is empty",
    )
    .await;
    expect(
        &mut h,
        get.clone(),
        "/rooms/r/messages?after=abc",
        "",
        StatusCode::BAD_REQUEST,
        "query parameter `after` must be a non-negative integer, got \"abc\"",
    )
    .await;
    expect(
        &mut h,
        get.clone(),
        "/rooms/r/messages?wait_ms=-5",
        "",
        StatusCode::BAD_REQUEST,
        "query parameter `wait_ms` must be a non-negative integer, got \"-5\"",
    )
    .await;
    expect(
        &mut h,
        get.clone(),
        "/rooms/r/messages?wait_ms=120001",
        "",
        StatusCode::BAD_REQUEST,
        "query parameter `wait_ms` must be at most 120000, got 120001",
    )
    .await;
    expect(
        &mut h,
        get.clone(),
        "/rooms/r/messages?limit=0",
        "",
        StatusCode::BAD_REQUEST,
        "query parameter `limit` must be between 1 and 1000, got 0",
    )
    .await;
    expect(
        &mut h,
        get.clone(),
        "/rooms/r/events?after=1.5",
        "",
        StatusCode::BAD_REQUEST,
        "query parameter `after` must be a non-negative integer, got \"1.5\"",
    )
    .await;
    expect(&mut h, get.clone(), "/rooms/r/ws?after=x", "", StatusCode::UPGRADE_REQUIRED,
        "this endpoint speaks WebSocket: send a GET with `Connection: Upgrade` and `Upgrade: websocket`").await;
    expect(
        &mut h,
        get.clone(),
        "/nope",
        "",
        StatusCode::NOT_FOUND,
        "no route for /nope",
    )
    .await;
    expect(
        &mut h,
        get.clone(),
        "/rooms/r",
        "",
        StatusCode::NOT_FOUND,
        "no route for /rooms/r",
    )
    .await;
    expect(
        &mut h,
        get.clone(),
        "/rooms/r/messages/1",
        "",
        StatusCode::NOT_FOUND,
        "no route for /rooms/r/messages/1",
    )
    .await;
    expect(
        &mut h,
        Method::DELETE,
        m,
        "",
        StatusCode::METHOD_NOT_ALLOWED,
        "method DELETE is not allowed here; use GET, POST",
    )
    .await;
    expect(
        &mut h,
        post.clone(),
        "/rooms/r/events",
        "",
        StatusCode::METHOD_NOT_ALLOWED,
        "method POST is not allowed here; use GET",
    )
    .await;
    expect(
        &mut h,
        Method::PUT,
        "/healthz",
        "",
        StatusCode::METHOD_NOT_ALLOWED,
        "method PUT is not allowed here; use GET",
    )
    .await;
    let (s, headers, _) = h.request(Method::DELETE, m, &[], Bytes::new()).await;
    assert_eq!(
        (s, headers["allow"].to_str().unwrap()),
        (StatusCode::METHOD_NOT_ALLOWED, "GET, POST")
    );
    let (s, _, _) = h
        .request(
            Method::GET,
            "/rooms/r/events",
            &[("last-event-id", "x")],
            Bytes::new(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // The same keep-alive connection survived every error, and nothing was published.
    let p = h.poll("/rooms/r/messages?after=0").await;
    assert!(p.messages.is_empty());
    assert_eq!(
        server
            .metrics
            .of(chatbench_server::Label::Publish)
            .published
            .get(),
        0
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_body_declared_by_content_length_is_refused_unread() {
    let server = Server::start_with(Config {
        body_limit: 100,
        ..Config::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"POST /rooms/r/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(
        text.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with(r#"{"error":"body is larger than the limit of 100 bytes"}"#),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn websocket_bad_frames_get_error_frames_and_the_socket_stays_open() {
    let server = Server::start_with(Config {
        body_limit: 100,
        ..Config::default()
    })
    .await;
    let mut ws = server.ws("/rooms/wsbad/ws").await;
    let cases: Vec<(WsMessage, &str)> = vec![
        (WsMessage::Text("not json".into()), "bad JSON: expected ident at line 1 column 2"),
        (WsMessage::Text(r#"{"from":"a","body":[]}"#.into()),
            "bad JSON: invalid type: sequence, expected a string at line 1 column 19"),
        (WsMessage::Text(r#"{"body":"b"}"#.into()), "bad JSON: missing field `from` at line 1 column 12"),
        (WsMessage::Binary(Bytes::from_static(b"\x00\x01")),
            "binary frames are not accepted; publish with a text frame holding {\"from\":..,\"body\":..}"),
    ];
    for (frame, error) in cases {
        ws.send(frame).await.unwrap();
        assert_eq!(
            ws_text(&mut ws).await,
            serde_json::json!({ "error": error })
        );
    }
    // Still open: a good frame publishes and comes back.
    ws.send(publish_frame("a", "fine", 1)).await.unwrap();
    let got = ws_messages(&mut ws, 1).await;
    assert_eq!((got[0].seq, got[0].body.as_str()), (1, "fine"));
    server.stop().await;
}

#[tokio::test]
async fn bad_websocket_handshakes() {
    let server = Server::start().await;
    let mut h = server.http().await;
    let base = [("connection", "Upgrade"), ("upgrade", "websocket")];
    let (s, _, b) = h
        .request(
            Method::GET,
            "/rooms/r/ws",
            &[base[0], base[1], ("sec-websocket-version", "8")],
            Bytes::new(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        &b[..],
        br#"{"error":"header Sec-WebSocket-Version must be 13"}"#
    );
    let (s, _, b) = h
        .request(
            Method::GET,
            "/rooms/r/ws",
            &[base[0], base[1], ("sec-websocket-version", "13")],
            Bytes::new(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        &b[..],
        br#"{"error":"header Sec-WebSocket-Key is missing"}"#
    );
    server.stop().await;
}

#[tokio::test]
async fn garbage_on_the_socket_does_not_hurt_the_server() {
    let server = Server::start().await;
    for junk in [
        &b"\x00\xff\xfe garbage\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nhost: \xff\r\n\r\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(junk).await.unwrap();
        let mut buf = Vec::new();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    }
    let (s, _, b) = server.http().await.get("/healthz").await;
    assert_eq!((s, &b[..]), (StatusCode::OK, &b"ok"[..]));
    server.stop().await;
}

#[tokio::test]
async fn requests_hyper_cannot_parse_get_json_errors_too() {
    let server = Server::start().await;
    let long_target = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70_000));
    let big_header = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "b".repeat(200_000)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\nhost: x\r\n{}\r\n",
        (0..150)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "a bad method",
            "G(T / HTTP/1.1\r\nhost: x\r\n\r\n".into(),
            "400 Bad Request",
            "malformed HTTP/1.1 request: bad method, target or header",
        ),
        (
            "a bad header name",
            "GET / HTTP/1.1\r\nho st: x\r\n\r\n".into(),
            "400 Bad Request",
            "malformed HTTP/1.1 request: bad method, target or header",
        ),
        // A target longer than hyper's 65,534-byte URI limit makes the head
        // longer than the 64 KiB buffer too; hyper reads the request line
        // first, so the target's limit is what trips.
        (
            "a long target",
            long_target,
            "414 URI Too Long",
            "the request target is too long",
        ),
        (
            "a 200 KB header",
            big_header,
            "431 Request Header Fields Too Large",
            "the request head is too large (more than 64 KiB or more than 100 headers)",
        ),
        (
            "150 headers",
            many_headers,
            "431 Request Header Fields Too Large",
            "the request head is too large (more than 64 KiB or more than 100 headers)",
        ),
    ];
    for (what, request, status, reason) in cases {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        // The server may answer and close before it has read everything.
        let _ = s.write_all(request.as_bytes()).await;
        let mut buf = Vec::new();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{what}: {text}"
        );
        assert!(
            text.contains("\r\ncontent-type: application/json\r\n"),
            "{what}: {text}"
        );
        let body = text.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(body).unwrap(),
            serde_json::json!({ "error": reason }),
            "{what}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_room_shard_refuses_the_rooms_it_does_not_own_on_every_transport() {
    // zlib.crc32(b"lobby") % 2 == 1 and zlib.crc32(b"news") % 2 == 0.
    let server = Server::start_with(Config {
        room_shard: Some("1/2".parse().unwrap()),
        ..Config::default()
    })
    .await;
    let mut h = server.http().await;
    let seq = h.publish("lobby", "a", "owned", 1).await;
    assert_eq!(seq, 1);
    let why = "room \"news\" belongs to server process 0 of 2; this is process 1/2 (a room's owner is crc32(name) % 2)";
    let get = Method::GET;
    for path in [
        "/rooms/news/messages",
        "/rooms/news/messages?after=0&wait_ms=1000",
        "/rooms/news/events",
    ] {
        expect(
            &mut h,
            get.clone(),
            path,
            "",
            StatusCode::MISDIRECTED_REQUEST,
            why,
        )
        .await;
    }
    expect(
        &mut h,
        Method::POST,
        "/rooms/news/messages",
        r#"{"from":"a","body":"b"}"#,
        StatusCode::MISDIRECTED_REQUEST,
        why,
    )
    .await;
    // The WebSocket upgrade is refused before it happens.
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/rooms/news/ws", server.addr))
        .await
        .unwrap_err();
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST);
            let v: serde_json::Value =
                serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
            assert_eq!(v, serde_json::json!({ "error": why }));
        }
        e => panic!("expected a 421 answer, got {e}"),
    }
    // The owned room still reads, and the refusals created no room.
    let (s, _, b) = h.get("/rooms/lobby/messages?after=0").await;
    assert_eq!(s, StatusCode::OK);
    assert!(String::from_utf8_lossy(&b).contains("\"owned\""));
    let m = server.scrape().await;
    assert_eq!(m["chatbench_rooms"], 1.0);
    server.stop().await;
}
