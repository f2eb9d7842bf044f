//! Shared helpers.

use chatbench_loadgen::results::CpuPlacement;
use chatbench_loadgen::run::RunOptions;
use chatbench_loadgen::server::ServerTarget;
use chatbench_loadgen::Scenario;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A scenario small enough for a test: 2 rooms of 4 clients, 2 senders each.
pub fn tiny(transports: &str) -> Scenario {
    let src = format!(
        r#"
name = "tiny"
transports = [{transports}]
duration = "2s"
warmup = "500ms"
grace = "500ms"
seed = 7

[clients]
rooms = 2
clients_per_room = 4
senders_per_room = 2
ramp = "200ms"

[messages]
rate = 10.0
arrival = "poisson"
body_bytes = 32

[short_poll]
interval = "100ms"

[long_poll]
wait = "5s"
"#
    );
    Scenario::parse(&src, Path::new("tiny.toml")).unwrap()
}

/// Starts the server library in this process on port 0.
pub async fn in_process_server() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(chatbench_server::run(
        listener,
        chatbench_server::Config::default(),
        async {
            let _ = rx.await;
        },
    ));
    (addr, tx)
}

pub fn options(scenario: Scenario, out: &Path, target: ServerTarget) -> RunOptions {
    RunOptions {
        scenario,
        out: out.to_owned(),
        target,
        keep_going: false,
        cpus: CpuPlacement::default(),
        loadgen_cpus: 1,
        command: vec!["test".into()],
        build: chatbench_loadgen::resources::BuildInfo {
            commit: "test".into(),
            rustc: "test".into(),
            ..Default::default()
        },
        progress: false,
        stop: tokio_util::sync::CancellationToken::new(),
    }
}

/// Spawns `chatbench serve` on port 0; returns the child and its address.
pub async fn spawn_server() -> (tokio::process::Child, SocketAddr) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap()
        .parse()
        .unwrap();
    (child, addr)
}
