//! What every transport's handler shares, below the router (`http.rs`)
//! and the streaming transports (`sse.rs`, `ws.rs`), which import it and
//! not each other: the application state ([`App`]), JSON error answers
//! ([`ApiError`]), the response body type, the query parameters, and
//! finding a room to read from or publish to.

use crate::metrics::{Label, Metrics};
use crate::room::{PublishError, RoomLog, Rooms};
use crate::Config;
use bytes::Bytes;
use chatbench_proto::{ErrorBody, PublishRequest, RoomName, RoomOwner};
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The response body type of every route.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What every request handler shares.
#[derive(Debug)]
pub struct App {
    pub(crate) config: Config,
    pub(crate) rooms: Rooms,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// `Alt-Svc` for answers over TCP when HTTP/3 is served (`h3.rs`).
    pub(crate) alt_svc: Option<HeaderValue>,
    /// `GET /webtransport`'s answer when HTTP/3 is served
    /// ([`webtransport_info`]).
    pub(crate) webtransport: Option<String>,
}

/// `GET /webtransport`'s JSON: the UDP port WebTransport sessions open on,
/// the session path, and the generated certificate's SHA-256 in hex (null
/// with `--tls-cert`), for a browser's `serverCertificateHashes`.
pub(crate) fn webtransport_info(port: u16, leaf_sha256: Option<&[u8; 32]>) -> String {
    let hash = leaf_sha256.map(|h| h.iter().map(|b| format!("{b:02x}")).collect::<String>());
    serde_json::json!({
        "port": port,
        "path": "/rooms/{room}/wt",
        "modes": ["stream", "stream-per-message"],
        "certificate_sha256": hash,
    })
    .to_string()
}

/// An error answer: a status and a reason, sent as `{"error":"<reason>"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) reason: String,
    allow: Option<&'static str>,
    upgrade: bool,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> ApiError {
        ApiError {
            status,
            reason: reason.into(),
            allow: None,
            upgrade: false,
        }
    }

    pub(crate) fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, reason)
    }

    pub(crate) fn method_not_allowed(method: &Method, allow: &'static str) -> ApiError {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            reason: format!("method {method} is not allowed here; use {allow}"),
            allow: Some(allow),
            upgrade: false,
        }
    }

    pub(crate) fn into_response(self) -> Response<Body> {
        let mut resp = json_response(self.status, ErrorBody::json(&self.reason));
        if let Some(allow) = self.allow {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.upgrade {
            resp.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        resp
    }
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

pub(crate) fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub(crate) fn text_response(content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The query parameters any route understands. Unknown parameters are
/// ignored, as browsers and proxies add their own (cache busters).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Query {
    pub after: Option<u64>,
    pub wait_ms: Option<u64>,
    pub limit: Option<u64>,
}

impl Query {
    pub(crate) fn parse(q: Option<&str>) -> Result<Query, ApiError> {
        let mut out = Query::default();
        for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
            let slot = match k.as_ref() {
                "after" => &mut out.after,
                "wait_ms" => &mut out.wait_ms,
                "limit" => &mut out.limit,
                _ => continue,
            };
            if slot.is_some() {
                return Err(ApiError::bad_request(format!(
                    "query parameter `{k}` is given more than once"
                )));
            }
            *slot = Some(v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "query parameter `{k}` must be a non-negative integer, got {v:?}"
                ))
            })?);
        }
        Ok(out)
    }
}

/// Validates a room name, and with `--room-shard` checks that this process
/// owns the room.
pub(crate) fn room_name(app: &App, name: &str) -> Result<RoomName, ApiError> {
    let room = RoomName::new(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    match app.config.room_shard {
        Some(shard) if !shard.owns(name) => Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "room {name:?} belongs to server process {} of {}; this is process {shard} (a room's owner is crc32(name) % {})",
                RoomOwner::owner(name, shard.of),
                shard.of,
                shard.of
            ),
        )),
        _ => Ok(room),
    }
}

pub(crate) fn unavailable(e: PublishError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// Validates the room name and finds the room, creating it for a reader
/// that waits for its first message (long poll, SSE, WebSocket). Such a room
/// expires once nobody holds it, if nothing was published to it.
pub(crate) fn subscribe(app: &App, name: &str) -> Result<Arc<RoomLog>, ApiError> {
    app.rooms
        .get_or_create(&room_name(app, name)?)
        .map_err(unavailable)
}

pub(crate) fn parse_publish(body: &[u8]) -> Result<PublishRequest<'_>, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad JSON: {e}")))
}

/// Parses a publish on a WebSocket or a WebTransport stream (`label`) and
/// appends it to the session's room.
pub(crate) fn publish_json(
    app: &App,
    log: &RoomLog,
    body: &[u8],
    label: Label,
) -> Result<u64, ApiError> {
    let req = parse_publish(body)?;
    let seq = app.rooms.publish_in(log, &req).map_err(unavailable)?;
    app.metrics.of(label).published.inc();
    Ok(seq)
}

impl ApiError {
    pub(crate) fn set_upgrade_header(&mut self) {
        self.upgrade = true;
    }

    pub(crate) fn set_allow(&mut self, allow: &'static str) {
        self.allow = Some(allow);
    }

    /// The reason, for WebSocket error frames.
    pub(crate) fn reason(&self) -> &str {
        &self.reason
    }
}
