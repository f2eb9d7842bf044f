//! The router, publishing over HTTP, and short and long polls. What the
//! streaming transports share with them is in `app.rs`.

use crate::app::{
    full, json_response, parse_publish, room_name, text_response, unavailable, ApiError, App, Body,
    Query,
};
use crate::conn::{ConnGuard, ConnTag};
use crate::frames::{BatchFrames, FramesBody, Framing};
use crate::metrics::{ActiveGuard, Label};
use crate::room::{Batch, RoomLog};
use crate::{sse, ws, Config};
use bytes::Bytes;
use chatbench_proto::{PublishAck, PublishRequest};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// A request body the router can serve: hyper's, over HTTP/1.1 and HTTP/2,
/// or a QUIC stream's (`h3.rs`). Only hyper's can become a WebSocket.
pub(crate) trait RequestBody:
    hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
    + Send
    + Sized
    + 'static
{
    /// Answers a request for `GET /rooms/{room}/ws`.
    fn websocket(
        app: &Arc<App>,
        room: &str,
        req: Request<Self>,
        guard: Arc<ConnGuard>,
    ) -> Result<Response<Body>, ApiError>;
}

impl RequestBody for Incoming {
    fn websocket(
        app: &Arc<App>,
        room: &str,
        req: Request<Incoming>,
        guard: Arc<ConnGuard>,
    ) -> Result<Response<Body>, ApiError> {
        if req.version() == http::Version::HTTP_2 {
            return ws::upgrade_h2(app, room, req, guard);
        }
        only_get(&req)?;
        ws::upgrade(app, room, req, guard)
    }
}

/// Serves one request. Never fails: every error becomes a JSON answer.
pub(crate) async fn handle<B: RequestBody>(
    app: Arc<App>,
    tag: Arc<ConnTag>,
    guard: Arc<ConnGuard>,
    req: Request<B>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let route = Route::of(&path);
    let transport = route.transport(&req);
    // HTTP/2 and HTTP/3 multiplex a client's requests on one connection.
    if matches!(req.version(), http::Version::HTTP_2 | http::Version::HTTP_3) {
        tag.raise(transport);
    } else {
        tag.set(transport);
    }
    app.metrics.of(transport).requests.inc();
    let origin = match cross_origin(&app.config, &req) {
        Ok(origin) => origin,
        Err(e) => return Ok(e.into_response()),
    };
    let result = match route {
        _ if req.method() == Method::OPTIONS && route != Route::NotFound => Ok(preflight()),
        Route::Page => only_get(&req)
            .map(|()| text_response("text/html; charset=utf-8", include_str!("page.html"))),
        Route::Compare => only_get(&req)
            .map(|()| text_response("text/html; charset=utf-8", include_str!("compare.html"))),
        Route::Healthz => only_get(&req).map(|()| text_response("text/plain", "ok")),
        Route::Time => only_get(&req).map(|()| {
            json_response(
                StatusCode::OK,
                format!("{{\"now_us\":{}}}", crate::room::now_micros()),
            )
        }),
        Route::WebTransportInfo => only_get(&req).and_then(|()| match &app.webtransport {
            Some(info) => Ok(json_response(StatusCode::OK, info.clone())),
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "WebTransport is not served: start the server with --tls --http3",
            )),
        }),
        Route::Metrics => only_get(&req).map(|()| {
            app.metrics.sync_rooms(&app.rooms);
            text_response(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                app.metrics.encode(),
            )
        }),
        Route::Messages(room) => match *req.method() {
            Method::GET => poll(&app, room, &req).await,
            Method::POST => publish(&app, room, req).await,
            ref m => Err(ApiError::method_not_allowed(m, "GET, POST")),
        },
        Route::Events(room) => match only_get(&req) {
            Ok(()) => sse::open(&app, room, &req),
            Err(e) => Err(e),
        },
        Route::Ws(room) => B::websocket(&app, room, req, guard),
        Route::Wt(_) => Err(ApiError::bad_request(
            "a WebTransport session is opened by an extended CONNECT (:protocol = webtransport) over HTTP/3, which the server offers with --http3",
        )),
        Route::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no route for {path}"),
        )),
    };
    let mut resp = result.unwrap_or_else(ApiError::into_response);
    if let Some(alt_svc) = &app.alt_svc {
        resp.headers_mut().insert(header::ALT_SVC, alt_svc.clone());
    }
    if let Some(origin) = origin {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("origin"));
    }
    Ok(resp)
}

/// The CORS decision for a request: `Ok(None)` for same-origin requests and
/// clients that send no `Origin` (curl, the load generator), `Ok(Some(o))`
/// for an allowed other origin (answered with `Access-Control-Allow-Origin:
/// o`), and 403 for any other origin. Browsers send `Origin` on every
/// cross-origin request and on WebSocket handshakes, so a page elsewhere can
/// neither publish nor subscribe unless `--allow-origin` names it.
fn cross_origin<B>(config: &Config, req: &Request<B>) -> Result<Option<HeaderValue>, ApiError> {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(None);
    };
    let text = origin.to_str().unwrap_or("");
    // HTTP/2 has no Host header: its `:authority` is the URI's.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    let authority = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .unwrap_or("");
    if !host.is_empty() && authority.eq_ignore_ascii_case(host) {
        return Ok(None);
    }
    if config
        .allow_origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(text))
    {
        return Ok(Some(origin.clone()));
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!("origin {text:?} is not allowed; start the server with --allow-origin {text} to allow it"),
    ))
}

/// The answer to a CORS preflight (the origin was checked before, and its
/// `Access-Control-Allow-Origin` is added with every other answer's).
fn preflight() -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, last-event-id"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    resp
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Page,
    /// `GET /compare`: one room over the four transports side by side.
    Compare,
    Healthz,
    /// `GET /time`: the server's `CLOCK_REALTIME` in µs, the clock of
    /// `server_at`, for load generators on other hosts to estimate offsets.
    Time,
    /// `GET /webtransport`: whether WebTransport is served, on which UDP
    /// port, and the hash a browser pins the generated certificate by.
    WebTransportInfo,
    Metrics,
    Messages(&'a str),
    Events(&'a str),
    Ws(&'a str),
    /// `/rooms/{room}/wt`: a WebTransport session, which only an extended
    /// CONNECT over HTTP/3 opens (`h3.rs`); any other request is told so.
    Wt(&'a str),
    NotFound,
}

impl<'a> Route<'a> {
    /// The route of a request path (the room segment is validated later).
    fn of(path: &'a str) -> Route<'a> {
        let mut segments = path.trim_start_matches('/').split('/');
        let parts = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        );
        match parts {
            (Some(""), None, None, None) => Route::Page,
            (Some("compare"), None, None, None) => Route::Compare,
            (Some("healthz"), None, None, None) => Route::Healthz,
            (Some("time"), None, None, None) => Route::Time,
            (Some("webtransport"), None, None, None) => Route::WebTransportInfo,
            (Some("metrics"), None, None, None) => Route::Metrics,
            (Some("rooms"), Some(room), Some("messages"), None) => Route::Messages(room),
            (Some("rooms"), Some(room), Some("events"), None) => Route::Events(room),
            (Some("rooms"), Some(room), Some("ws"), None) => Route::Ws(room),
            (Some("rooms"), Some(room), Some("wt"), None) => Route::Wt(room),
            _ => Route::NotFound,
        }
    }

    fn transport<B>(&self, req: &Request<B>) -> Label {
        match self {
            Route::Messages(_) if req.method() == Method::POST => Label::Publish,
            Route::Messages(_) => {
                let has_wait = Query::parse(req.uri().query())
                    .map(|q| q.wait_ms.is_some())
                    .unwrap_or(false);
                if has_wait {
                    Label::LongPoll
                } else {
                    Label::ShortPoll
                }
            }
            Route::Events(_) => Label::Sse,
            Route::Ws(_) => Label::WebSocket,
            Route::Wt(_) => Label::WebTransport,
            _ => Label::Other,
        }
    }
}

fn only_get<B>(req: &Request<B>) -> Result<(), ApiError> {
    if req.method() == Method::GET {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed(req.method(), "GET"))
    }
}

async fn publish<B: RequestBody>(
    app: &App,
    room: &str,
    req: Request<B>,
) -> Result<Response<Body>, ApiError> {
    let name = room_name(app, room)?;
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a publish must be sent with `Content-Type: application/json`",
        ));
    }
    let limit = app.config.body_limit;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let deadline = app.config.body_read_timeout;
    let collect = Limited::new(req.into_body(), limit).collect();
    let collected = tokio::select! {
        r = tokio::time::timeout(deadline, collect) => r.map_err(|_| ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body was not received within {}", humantime::format_duration(deadline)),
        ))?,
        _ = app.shutdown.cancelled() => return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )),
    };
    let body = collected
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                ApiError::bad_request(format!("could not read the body: {e}"))
            }
        })?
        .to_bytes();
    let req: PublishRequest<'_> = parse_publish(&body)?;
    let (_, seq) = app.rooms.publish(&name, &req).map_err(unavailable)?;
    app.metrics.of(Label::Publish).published.inc();
    let ack = serde_json::to_vec(&PublishAck { seq }).unwrap_or_default();
    Ok(json_response(StatusCode::CREATED, ack))
}

async fn poll<B>(app: &App, room: &str, req: &Request<B>) -> Result<Response<Body>, ApiError> {
    let q = Query::parse(req.uri().query())?;
    let max_batch = app.config.max_batch as u64;
    let limit = match q.limit {
        None => max_batch,
        Some(n) if (1..=max_batch).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "query parameter `limit` must be between 1 and {max_batch}, got {n}"
            )))
        }
    } as usize;
    let max_wait = app.config.long_poll_max_wait.as_millis() as u64;
    if let Some(w) = q.wait_ms.filter(|&w| w > max_wait) {
        return Err(ApiError::bad_request(format!(
            "query parameter `wait_ms` must be at most {max_wait}, got {w}"
        )));
    }
    let name = room_name(app, room)?;
    let wait = q.wait_ms.filter(|&w| w > 0).map(Duration::from_millis);
    // Reading a room that does not exist reads an empty log and creates
    // nothing; only a long poll that waits holds (and so creates) the room.
    let log = match (app.rooms.get(&name), wait) {
        (Some(log), _) => Some(log),
        (None, Some(_)) => Some(app.rooms.get_or_create(&name).map_err(unavailable)?),
        (None, None) => None,
    };
    let cursor = q
        .after
        .unwrap_or_else(|| log.as_ref().map_or(0, |l| l.head()));
    let mut batch = log.as_ref().map_or_else(
        || Batch {
            next: cursor,
            ..Batch::default()
        },
        |l| l.read_after(cursor, limit),
    );
    if let (Some(log), Some(wait)) = (&log, wait) {
        if batch.is_empty() {
            batch = long_wait(app, log, cursor, limit, wait).await;
        }
    }
    let transport = if q.wait_ms.is_some() {
        Label::LongPoll
    } else {
        Label::ShortPoll
    };
    app.metrics
        .of(transport)
        .delivered
        .inc_by(batch.messages.len() as u64);
    let body = FramesBody::new(BatchFrames::new(Framing::Poll, batch)).boxed_unsync();
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Holds a long poll until a message after `cursor` exists, `wait` passes, or
/// the server shuts down (which answers the poll rather than dropping it).
async fn long_wait(app: &App, log: &RoomLog, cursor: u64, limit: usize, wait: Duration) -> Batch {
    let _active = ActiveGuard::new(&app.metrics, Label::LongPoll);
    let mut rx = log.subscribe();
    tokio::select! {
        _ = rx.wait_for(|&head| head > cursor) => {}
        _ = tokio::time::sleep(wait) => {}
        _ = app.shutdown.cancelled() => {}
    }
    log.read_after(cursor, limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any query string parses or gets a 400 naming the parameter;
        /// nothing panics.
        #[test]
        fn any_query_parses_or_is_refused(q in ".{0,200}") {
            match Query::parse(Some(&q)) {
                Ok(_) => {}
                Err(e) => {
                    prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
                    prop_assert!(e.reason.starts_with("query parameter `"), "{}", e.reason);
                }
            }
        }

        /// Well-formed queries give back their values, whatever the order
        /// and whatever other parameters ride along.
        #[test]
        fn well_formed_queries_round_trip(
            after in any::<u64>(),
            wait in proptest::option::of(any::<u64>()),
            noise in "[a-z_]{1,8}=[a-z0-9%]{0,8}",
            noise_first in any::<bool>(),
        ) {
            let mut parts = vec![format!("after={after}")];
            if let Some(w) = wait {
                parts.push(format!("wait_ms={w}"));
            }
            let reserved = ["after=", "wait_ms=", "limit="].iter().any(|p| noise.starts_with(p));
            if !reserved {
                if noise_first { parts.insert(0, noise.clone()) } else { parts.push(noise.clone()) }
            }
            let q = Query::parse(Some(&parts.join("&"))).unwrap();
            prop_assert_eq!(q.after, Some(after));
            prop_assert_eq!(q.wait_ms, wait);
        }

        /// Any path routes without panicking; room paths route to their
        /// room segment, whatever it holds (it is validated afterwards).
        #[test]
        fn any_path_routes(path in "/[ -~]{0,100}") {
            let _ = Route::of(&path);
        }

        #[test]
        fn room_paths_route_to_their_room(room in "[^/]{0,70}", kind in 0..3usize) {
            let suffix = ["messages", "events", "ws"][kind];
            let path = format!("/rooms/{room}/{suffix}");
            let expected = [Route::Messages(&room), Route::Events(&room), Route::Ws(&room)][kind];
            prop_assert_eq!(Route::of(&path), expected);
            let longer = format!("{path}/x");
            prop_assert_eq!(Route::of(&longer), Route::NotFound);
        }
    }

    #[test]
    fn routes() {
        assert_eq!(Route::of("/"), Route::Page);
        assert_eq!(Route::of("/compare"), Route::Compare);
        assert_eq!(Route::of("/healthz"), Route::Healthz);
        assert_eq!(Route::of("/time"), Route::Time);
        assert_eq!(Route::of("/webtransport"), Route::WebTransportInfo);
        assert_eq!(Route::of("/healthz/"), Route::NotFound);
        assert_eq!(Route::of("/rooms/a/messages"), Route::Messages("a"));
        assert_eq!(Route::of("/rooms//messages"), Route::Messages(""));
        assert_eq!(Route::of("/rooms/a"), Route::NotFound);
    }

    #[test]
    fn query_parsing() {
        assert_eq!(Query::parse(None).unwrap(), Query::default());
        let q = Query::parse(Some("after=5&wait_ms=100&_=123&limit=7")).unwrap();
        assert_eq!(
            q,
            Query {
                after: Some(5),
                wait_ms: Some(100),
                limit: Some(7)
            }
        );
        assert_eq!(
            Query::parse(Some("after=-1")).unwrap_err().reason,
            "query parameter `after` must be a non-negative integer, got \"-1\""
        );
        assert_eq!(
            Query::parse(Some("after=1&after=2")).unwrap_err().reason,
            "query parameter `after` is given more than once"
        );
    }
}
