//! Other stacks through target profiles: Socket.IO 4.8 on Node.js over its
//! three transports, Node's `ws` through the generic profile, and the
//! generic profile against chatbench's own server beside the built-in one.
//! They need Node.js and `npm ci --prefix peers`; without them they skip,
//! unless `CHATBENCH_REQUIRE_NODE` is set (CI), where they fail.

use crate::util::{options, tiny_toml};
use chatbench_loadgen::results::TransportRun;
use chatbench_loadgen::server::{peers_dir, ServerTarget};
use chatbench_loadgen::{Scenario, Transport};
use std::path::Path;

/// True when Node.js and the peers' packages are here; else says why the
/// test skips (and fails under `CHATBENCH_REQUIRE_NODE`).
fn node_ready() -> bool {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let packages = peers_dir().join("node_modules/socket.io").is_dir()
        && peers_dir().join("node_modules/ws").is_dir();
    crate::util::can_run(
        "CHATBENCH_REQUIRE_NODE",
        (!(node && packages)).then(|| {
            format!(
                "needs Node.js ({}) and `npm ci --prefix peers` ({})",
                if node { "found" } else { "missing" },
                if packages { "done" } else { "not done" }
            )
        }),
    )
}

/// The tiny scenario with a `[target]` table.
fn with_target(name: &str, transports: &str, target: &str) -> Scenario {
    let src = format!("{}\n{target}\n", tiny_toml(name, transports));
    Scenario::parse(&src, Path::new("stacks.toml")).unwrap()
}

async fn run(s: Scenario, target: ServerTarget) -> Vec<TransportRun> {
    let out = tempfile::tempdir().unwrap();
    let finished = chatbench_loadgen::run::run(options(s, out.path(), target))
        .await
        .unwrap();
    finished.file.runs
}

/// chatbench's own server, spawned.
fn chatbench_server() -> ServerTarget {
    ServerTarget::Spawn {
        exe: env!("CARGO_BIN_EXE_chatbench").into(),
        args: vec!["serve".into()],
        cpus: None,
        log: None,
    }
}

/// Every message delivered once, in order, without an error.
fn assert_all_delivered(r: &TransportRun, what: &str) {
    let a = &r.audit;
    assert!(a.sent > 0, "{what}: nothing sent");
    assert_eq!(a.expected, a.sent * 4, "{what}: 4 clients a room");
    assert_eq!(
        (a.delivered, a.lost, a.duplicated, a.reordered, a.errors),
        (a.expected, 0, 0, 0, 0),
        "{what}: {a:?} {:?}",
        r.errors_by_cause
    );
    assert!(r.complete && r.flags.is_empty(), "{what}: {:?}", r.flags);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_delivers_every_message_over_polling_websocket_and_the_upgrade() {
    if !node_ready() {
        return;
    }
    // A heartbeat every 300 ms that must be answered within 200 ms: a
    // client that left one unanswered would lose its session, and its
    // messages, in the 3 s of the run.
    let node = ServerTarget::Spawn {
        exe: "node".into(),
        args: vec![
            peers_dir()
                .join("socketio-node/server.js")
                .display()
                .to_string(),
            "--ping-interval-ms".into(),
            "300".into(),
            "--ping-timeout-ms".into(),
            "200".into(),
        ],
        cpus: None,
        log: None,
    };
    let plain = with_target(
        "sio",
        r#""long_poll", "websocket""#,
        "[target]\nprofile = \"socketio\"",
    );
    let upgrade = with_target(
        "sio-upgrade",
        r#""websocket""#,
        "[target]\nprofile = \"socketio\"\nupgrade = true",
    );
    let runs = run(plain, node.clone()).await;
    assert_eq!(runs.len(), 2);
    for r in &runs {
        assert_all_delivered(r, r.transport.as_str());
        let join = r.join.expect("a join cost");
        assert_eq!(join.clients, 8);
        assert!(r.no_crosscheck.is_some() && r.crosscheck.is_none());
    }
    // Polling: the handshake GET, the connect's POST and GET, the join's
    // POST and GET. A WebSocket from the start: its one opening.
    assert!(runs[0].join.unwrap().requests_per_client >= 5.0);
    assert_eq!(runs[1].join.unwrap().requests_per_client, 1.0);
    let upgraded = run(upgrade, node).await;
    assert_all_delivered(&upgraded[0], "upgrade");
    // The polling handshake and connect (3 requests), then the WebSocket.
    let join = upgraded[0].join.unwrap();
    assert_eq!(join.requests_per_client, 4.0);
    assert!(
        join.bytes_per_client > runs[1].join.unwrap().bytes_per_client,
        "the upgrade costs more bytes than a WebSocket from the start: {join:?}"
    );
}

/// The ws-node server through the generic profile of docs/targets.md.
const WS_NODE: &str = r#"[target]
profile = "generic"
server = "ws-node"
[target.generic]
subscribe_websocket = "/chat?room={room}"
message = '{"from":"{from}","body":"{body}","sent_at":{sent_at},"id":{id}}'
from = "/from"
sent_at = "/sent_at"
id = "/id""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ws_delivers_every_message_through_the_generic_profile() {
    if !node_ready() {
        return;
    }
    let runs = run(
        with_target("ws-node", r#""websocket""#, WS_NODE),
        chatbench_server(),
    )
    .await;
    assert_eq!(runs.len(), 1);
    assert_all_delivered(&runs[0], "ws-node");
    assert_eq!(runs[0].join.unwrap().requests_per_client, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generic_profile_against_chatbench_matches_its_built_in_profile() {
    // chatbench's contract written as a generic profile: the room's
    // sequence number stands for the sender's (it grows with each of a
    // sender's messages too).
    let generic = r#"[target]
profile = "generic"
[target.generic]
subscribe_websocket = "/rooms/{room}/ws?after=0"
subscribe_sse = "/rooms/{room}/events?after=0"
publish_post = "/rooms/{room}/messages"
message = '{"from":"{from}","body":"{body}","sent_at":{sent_at}}'
from = "/from"
sent_at = "/sent_at"
id = "/seq""#;
    for t in ["websocket", "sse"] {
        let transports = format!("{t:?}");
        let mut built_in = with_target("built-in", &transports, "");
        // A generic profile publishes over POST when it has a path for it.
        let mut g = with_target("generic", &transports, generic);
        if t == "websocket" {
            g.target.generic.as_mut().unwrap().publish_post = None;
        }
        built_in.seed = 11;
        g.seed = 11;
        let a = run(built_in, chatbench_server()).await.remove(0);
        let b = run(g, chatbench_server()).await.remove(0);
        assert_all_delivered(&a, t);
        assert_all_delivered(&b, t);
        assert_eq!(
            (a.audit.sent, a.audit.expected),
            (b.audit.sent, b.audit.expected),
            "{t}: the same schedule"
        );
        let (x, y) = (a.wire.per_msg.bytes, b.wire.per_msg.bytes);
        assert!(
            (x - y).abs() / x < 0.02,
            "{t}: bytes per message, built-in {x} and generic {y}"
        );
        assert_eq!(b.transport, a.transport);
        assert!(matches!(a.transport, Transport::WebSocket | Transport::Sse));
    }
}
