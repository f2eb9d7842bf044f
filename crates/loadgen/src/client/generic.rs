//! The `generic` profile: a chat server of the user's own, described in
//! the scenario's `[target.generic]` (`docs/targets.md`). Clients
//! subscribe by WebSocket or SSE at a path template, publish as text
//! frames on the WebSocket or by POST, and find each received message's
//! sender, send time and number by JSON pointers.

use super::context::{ClientSpec, RunCtx};
use super::foreign::{
    failed_setup, joined, open_websocket, run_websocket, spawn_sender, Codec, Decoded, Out,
    Outgoing, Setup,
};
use super::inbox::Inbox;
use super::sse::SseParser;
use crate::dial::{HttpConn, SharedH2};
use crate::profile::Kind;
use crate::Transport;
use chatbench_results::target::{fill, Generic};
use http::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Runs one client of a generic profile until the run ends.
pub(super) async fn generic_client(ctx: Arc<RunCtx>, spec: ClientSpec, room: &str) {
    let Some(g) = ctx.scenario.target.generic.clone() else {
        // The scenario's validation requires the table.
        return;
    };
    let codec: Arc<dyn Codec> = Arc::new(Pointers(g.clone()));
    let start = Instant::now();
    let post = match (&g.publish_post, spec.sender) {
        (Some(path), Some(_)) => {
            let Some(conn) = post_connection(&ctx, spec.id).await else {
                return;
            };
            let path = fill_path(path, room);
            Some(Out::Post {
                conn: Arc::new(Mutex::new(conn)),
                target: Arc::new(move || path.clone()),
                key: spec.id,
            })
        }
        _ => None,
    };
    match ctx.transport {
        Transport::Sse => {
            let path = fill_path(g.subscribe_sse.as_deref().unwrap_or("/"), room);
            sse_client(ctx, spec, room, codec, &path, post, start).await;
        }
        _ => {
            let path = fill_path(g.subscribe_websocket.as_deref().unwrap_or("/"), room);
            let ws = loop {
                match open_websocket(&ctx, spec.id, &path).await {
                    Ok(ws) => break ws,
                    Err(e) => {
                        if !failed_setup(&ctx, "connect", e).await {
                            return;
                        }
                    }
                }
            };
            let setup = Setup {
                bytes: 0,
                requests: 1,
            };
            run_websocket(ctx, spec, room, codec, ws, start, post, setup).await;
        }
    }
}

/// A path template with its room filled in.
fn fill_path(template: &str, room: &str) -> String {
    fill(template, |name| (name == "room").then(|| room.to_owned()))
}

/// The sender's own connection for its POSTs, retried until it opens.
async fn post_connection(ctx: &RunCtx, key: u64) -> Option<HttpConn> {
    loop {
        match ctx.dial.http(key, &SharedH2::default()).await {
            Ok(c) => return Some(c),
            Err(e) => {
                if !failed_setup(ctx, "connect", e).await {
                    return None;
                }
            }
        }
    }
}

/// An SSE client: the stream at `path` receives, a sender POSTs.
async fn sse_client(
    ctx: Arc<RunCtx>,
    spec: ClientSpec,
    room: &str,
    codec: Arc<dyn Codec>,
    path: &str,
    post: Option<Out>,
    start: Instant,
) {
    let mut c = loop {
        let open = async {
            let mut c = ctx
                .dial
                .http(spec.id, &SharedH2::default())
                .await
                .map_err(|e| e.to_string())?;
            match c.send_with(Kind::Sse, "GET", path, &[]).await {
                Ok(StatusCode::OK) => Ok(c),
                Ok(status) => {
                    let body = c.body().await.unwrap_or_default();
                    Err(format!("{status} {}", String::from_utf8_lossy(&body)))
                }
                Err(e) => Err(e.to_string()),
            }
        };
        match open.await {
            Ok(c) => break c,
            Err(e) => {
                if !failed_setup(&ctx, "connect", e).await {
                    return;
                }
            }
        }
    };
    let mut inbox = Inbox::new(ctx.clone(), spec.id);
    inbox.read_at = Some(c.handles.read_at.clone());
    let (up, down) = c.handles.cut.bytes();
    joined(&ctx, start, up + down, 1);
    let sender = post
        .clone()
        .and_then(|out| spawn_sender(&ctx, spec, room, codec.clone(), out, &mut inbox));
    let over = ctx.over();
    tokio::pin!(over);
    let mut parser = SseParser::default();
    while !inbox.done() {
        let piece = tokio::select! {
            p = c.body_chunk() => p,
            _ = &mut over => break,
        };
        match piece {
            Ok(Some(data)) => parser.feed(&data, |ev| {
                inbox.take(codec.as_ref(), ev.data);
            }),
            Ok(None) => {
                ctx.count_error(
                    "sse stream",
                    "ended by the server before the end of the run",
                );
                break;
            }
            Err(e) => {
                ctx.count_error("sse stream", e);
                break;
            }
        }
    }
    if let Some(task) = sender {
        let _ = task.await;
    }
    c.close().await;
    if let Some(out) = post {
        out.close().await;
    }
}

/// The codec of a `[target.generic]` table.
struct Pointers(Generic);

impl Codec for Pointers {
    fn encode(&self, m: &Outgoing<'_>) -> String {
        fill(&self.0.message, |name| {
            Some(match name {
                "room" => m.room.to_owned(),
                "from" => m.from.to_owned(),
                "body" => m.body.to_owned(),
                "sent_at" => m.sent_at.to_string(),
                "id" => m.id.to_string(),
                _ => return None,
            })
        })
    }

    fn decode(&self, text: &[u8]) -> Decoded {
        let g = &self.0;
        let shown = || String::from_utf8_lossy(&text[..text.len().min(200)]).into_owned();
        let Ok(v) = serde_json::from_slice::<Value>(text) else {
            return Decoded::Bad(format!("not JSON: {}", shown()));
        };
        let Some(from) = v.pointer(&g.from).and_then(as_text) else {
            return Decoded::Bad(format!("no sender at {} in {}", g.from, shown()));
        };
        let Some(sent_at) = v.pointer(&g.sent_at).and_then(as_number) else {
            return Decoded::Bad(format!("no send time at {} in {}", g.sent_at, shown()));
        };
        let id = match &g.id {
            None => None,
            Some(p) => match v.pointer(p).and_then(as_number) {
                Some(id) => Some(id),
                None => return Decoded::Bad(format!("no number at {p} in {}", shown())),
            },
        };
        Decoded::Chat {
            from,
            id,
            sent_at: Some(sent_at),
            payload: text.len(),
        }
    }
}

/// A string, or a number written as one.
fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A whole number, or a string of one.
fn as_number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws_node() -> Generic {
        Generic {
            subscribe_websocket: Some("/chat?room={room}".into()),
            subscribe_sse: None,
            publish_post: None,
            message: r#"{"from":"{from}","body":"{body}","sent_at":{sent_at},"id":{id}}"#.into(),
            from: "/from".into(),
            sent_at: "/sent_at".into(),
            id: Some("/id".into()),
        }
    }

    #[test]
    fn messages_are_filled_in_and_read_back_by_their_pointers() {
        let codec = Pointers(ws_node());
        let text = codec.encode(&Outgoing {
            room: "r",
            from: "c1",
            id: 2,
            sent_at: 99,
            body: "hi",
        });
        assert_eq!(text, r#"{"from":"c1","body":"hi","sent_at":99,"id":2}"#);
        assert_eq!(
            codec.decode(text.as_bytes()),
            Decoded::Chat {
                from: "c1".into(),
                id: Some(2),
                sent_at: Some(99),
                payload: text.len(),
            }
        );
        assert_eq!(fill_path("/chat?room={room}", "a-1"), "/chat?room=a-1");
    }

    #[test]
    fn a_message_without_a_pointed_field_is_refused_with_the_pointer() {
        let codec = Pointers(ws_node());
        assert_eq!(
            codec.decode(br#"{"from":"c1","sent_at":5}"#),
            Decoded::Bad(r#"no number at /id in {"from":"c1","sent_at":5}"#.into())
        );
        assert_eq!(
            codec.decode(br#"{"sent_at":5}"#),
            Decoded::Bad(r#"no sender at /from in {"sent_at":5}"#.into())
        );
        assert_eq!(
            codec.decode(b"hello"),
            Decoded::Bad("not JSON: hello".into())
        );
    }
}
