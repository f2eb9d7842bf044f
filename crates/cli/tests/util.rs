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
    Scenario::parse(&tiny_toml("tiny", transports), Path::new("tiny.toml")).unwrap()
}

/// [`tiny`]'s file, named `name`.
pub fn tiny_toml(name: &str, transports: &str) -> String {
    format!(
        r#"
name = "{name}"
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

# The tests run several of these at once on two CPUs: a send held 20 ms by
# another test's load is the machine's, not a finding.
[limits]
send_lag_p99 = "250ms"
"#
    )
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

/// The server this test binary's `chatbench serve` spawns for each run.
pub fn spawned() -> ServerTarget {
    ServerTarget::Spawn {
        exe: env!("CARGO_BIN_EXE_chatbench").into(),
        args: vec!["serve".into()],
        cpus: None,
        log: None,
    }
}

pub fn options(scenario: Scenario, out: &Path, target: ServerTarget) -> RunOptions {
    RunOptions {
        scenario,
        out: out.to_owned(),
        target,
        keep_going: false,
        cpus: CpuPlacement::default(),
        loadgen_cpus: 1,
        server_cpus: None,
        worker_exe: env!("CARGO_BIN_EXE_chatbench").into(),
        command: vec!["test".into()],
        build: chatbench_loadgen::resources::BuildInfo {
            commit: "test".into(),
            rustc: "test".into(),
            ..Default::default()
        },
        progress: None,
        stop: tokio_util::sync::CancellationToken::new(),
        shard: None,
    }
}

/// Runs `scenario` against the server at `addr` (no pid: the server's
/// cost comes from its `/metrics`), writing under `out`; panics if the run
/// fails.
pub async fn run_against(
    addr: SocketAddr,
    scenario: Scenario,
    out: &Path,
) -> chatbench_loadgen::run::Finished {
    chatbench_loadgen::run::run(options(
        scenario,
        out,
        ServerTarget::External {
            addr,
            pid: None,
            ca: None,
        },
    ))
    .await
    .unwrap()
}

/// Spawns `chatbench serve` on port 0; returns the child and its address.
pub async fn spawn_server() -> (tokio::process::Child, SocketAddr) {
    spawn_server_with(&[]).await
}

/// [`spawn_server`] with these server flags.
pub async fn spawn_server_with(flags: &[&str]) -> (tokio::process::Child, SocketAddr) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = listening_on(&mut child).await;
    (child, addr)
}

/// The address a `chatbench serve` child prints first (its stdout piped).
pub async fn listening_on(child: &mut tokio::process::Child) -> SocketAddr {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    line.trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("the server said {line:?}"))
        .parse()
        .unwrap()
}

/// One interval of an `.hlog`, read by hand from HdrHistogram's log format
/// (independently of the hdrhistogram crate that wrote it): the line
/// `Tag=..,start,length,max,base64`, the base64 of a V2 compressed
/// histogram (cookie base 0x1c849304, length, zlib), and inside it a V2
/// histogram (cookie base 0x1c849303, payload length, normalizing offset, significant
/// digits, lowest, highest, conversion ratio; then ZigZag LEB128 counts, a
/// negative count being a run of empty buckets).
#[derive(Debug)]
pub struct RawInterval {
    pub tag: String,
    pub start_s: f64,
    pub length_s: f64,
    pub total_count: u64,
    pub significant_digits: u32,
}

pub fn read_hlog_by_hand(path: &std::path::Path) -> Vec<RawInterval> {
    use base64::Engine;
    use std::io::Read;
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.starts_with("\"StartTimestamp\"") || line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 5, "{line}");
        let tag = f[0]
            .strip_prefix("Tag=")
            .expect("a tagged interval")
            .to_owned();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(f[4])
            .unwrap();
        // The cookie's second-lowest nibble carries flags (0x10: the V2
        // encoding), so compare the base with it masked out.
        assert_eq!(
            u32::from_be_bytes(raw[0..4].try_into().unwrap()) & !0xf0,
            0x1c84_9304
        );
        let len = u32::from_be_bytes(raw[4..8].try_into().unwrap()) as usize;
        let mut v2 = Vec::new();
        flate2::read::ZlibDecoder::new(&raw[8..8 + len])
            .read_to_end(&mut v2)
            .unwrap();
        assert_eq!(
            u32::from_be_bytes(v2[0..4].try_into().unwrap()) & !0xf0,
            0x1c84_9303
        );
        let payload = u32::from_be_bytes(v2[4..8].try_into().unwrap()) as usize;
        let significant_digits = u32::from_be_bytes(v2[12..16].try_into().unwrap());
        let mut counts = &v2[40..40 + payload];
        let mut total_count = 0u64;
        while !counts.is_empty() {
            let (mut v, mut shift, mut i) = (0u64, 0, 0);
            loop {
                let b = counts[i];
                v |= ((b & 0x7f) as u64) << shift;
                i += 1;
                if b & 0x80 == 0 || i == 9 {
                    if i == 9 && b & 0x80 != 0 {
                        v |= (b as u64) << 56;
                    }
                    break;
                }
                shift += 7;
            }
            counts = &counts[i..];
            let n = ((v >> 1) as i64) ^ -((v & 1) as i64);
            if n > 0 {
                total_count += n as u64;
            }
        }
        out.push(RawInterval {
            tag,
            start_s: f[1].parse().unwrap(),
            length_s: f[2].parse().unwrap(),
            total_count,
            significant_digits,
        });
    }
    out
}

/// The one run folder under `root/<scenario>/`.
pub fn only_run(root: &std::path::Path, scenario: &str) -> std::path::PathBuf {
    let dirs: Vec<std::path::PathBuf> = std::fs::read_dir(root.join(scenario))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

/// Whether a test that needs something this machine may lack can run:
/// true when `missing` is None; otherwise it prints why it skips and
/// returns false, or fails when `require` (an environment variable CI
/// sets) is set, where the test must run.
pub fn can_run(require: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else {
        return true;
    };
    assert!(
        std::env::var_os(require).is_none(),
        "{require} is set, but this test cannot run: {why}"
    );
    eprintln!("skipping: {why}");
    false
}
