//! A server on another host, as near as one machine gets: the server runs
//! in a network namespace this test creates, reached over a veth pair, and
//! the load generator outside knows it only by its address (so it reads
//! the server's CPU and memory from `/metrics`, not `/proc`). Then `tbf` on
//! the server's side of the pair caps the bandwidth, and the measured
//! throughput shows the cap. Needs root (and `ip`, `tc`): elsewhere the
//! test says why and passes.

use crate::util::*;

/// A network namespace with one end of a veth pair inside it; both go
/// when it is dropped.
struct Netns {
    name: String,
    outside: String,
    inside: String,
    /// (outside, inside) addresses of the /30 between them.
    addrs: (String, String),
}

/// `ip ARGS` (the packet link's own runner), its complaint as the error.
fn ip(args: &[&str]) -> Result<(), String> {
    chatbench_loadgen::packet::netns::ip(args).map_err(|e| e.to_string())
}

impl Netns {
    /// Creates it, or says why it cannot.
    fn create() -> Result<Netns, String> {
        // /proc/self belongs to the process's effective user.
        let uid = std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata("/proc/self").map_err(|e| format!("no /proc: {e}"))?,
        );
        if uid != 0 {
            return Err("not root: network namespaces need CAP_NET_ADMIN".into());
        }
        // One test at a time uses these names; the pid keeps concurrent
        // test binaries apart.
        let tag = std::process::id() % 100_000;
        let ns = Netns {
            name: format!("cbtest{tag}"),
            outside: format!("cbo{tag}"),
            inside: format!("cbi{tag}"),
            addrs: (
                format!("10.213.{}.1", tag % 250),
                format!("10.213.{}.2", tag % 250),
            ),
        };
        ip(&["netns", "add", &ns.name])?;
        let setup = || -> Result<(), String> {
            ip(&[
                "link",
                "add",
                &ns.outside,
                "type",
                "veth",
                "peer",
                "name",
                &ns.inside,
            ])?;
            ip(&["link", "set", &ns.inside, "netns", &ns.name])?;
            ip(&[
                "addr",
                "add",
                &format!("{}/30", ns.addrs.0),
                "dev",
                &ns.outside,
            ])?;
            ip(&["link", "set", &ns.outside, "up"])?;
            ns.exec_ip(&[
                "addr",
                "add",
                &format!("{}/30", ns.addrs.1),
                "dev",
                &ns.inside,
            ])?;
            ns.exec_ip(&["link", "set", &ns.inside, "up"])?;
            ns.exec_ip(&["link", "set", "lo", "up"])
        };
        // On failure `ns` is dropped, which removes what was made.
        setup().map(|()| ns)
    }

    fn exec_ip(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// `tc` inside the namespace.
    fn tc(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.name, "tc"];
        all.extend_from_slice(args);
        ip(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.outside]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// `chatbench serve` inside the namespace, on its side of the pair.
async fn serve_inside(ns: &Netns) -> (tokio::process::Child, std::net::SocketAddr) {
    let mut child = tokio::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_chatbench")])
        .args(["serve", "--listen", &format!("{}:0", ns.addrs.1)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = listening_on(&mut child).await;
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_against_a_server_in_another_network_namespace() {
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("skipped: cannot make a network namespace here: {why}");
            return;
        }
    };
    let (_server, addr) = serve_inside(&ns).await;
    assert!(!addr.ip().is_loopback(), "{addr}");

    // A whole run of every transport, over the veth pair.
    let out = tempfile::tempdir().unwrap();
    let all = r#""short_poll", "long_poll", "sse", "websocket""#;
    let scenario = chatbench_loadgen::scenario::Scenario::parse(
        &tiny_toml("netns", all),
        std::path::Path::new("netns.toml"),
    )
    .unwrap();
    let done = run_against(addr, scenario, out.path()).await;
    let run = &done.file;
    assert!(run.complete, "{:?}", run.problems);
    assert_eq!(run.server_mode, "external, measured by its /metrics");
    assert_eq!(run.runs.len(), 4);
    for r in &run.runs {
        let t = r.transport;
        assert_eq!((r.audit.lost, r.audit.errors), (0, 0), "{t}");
        let c = r.crosscheck.expect("the server's /metrics");
        assert!(c.bytes_match && c.delivered_match, "{t}: {c:?}");
        // Its CPU and memory, from its /metrics: a process of some
        // megabytes that spent some CPU on the window's messages.
        let cost = r.server.as_ref().expect("server cost from /metrics");
        assert!(cost.rss_peak > 1 << 20, "{t}: {cost:?}");
        assert!(cost.cpu_ms_measured > 0.0, "{t}: {cost:?}");
        assert!(cost.samples.len() >= 2, "{t}: {cost:?}");
    }

    // tbf on the server's side caps what it sends: 4 Mbit/s, where the
    // scenario asks for about 8 (5 receivers of 50 messages of 4 kB a
    // second).
    ns.tc(&[
        "qdisc", "add", "dev", &ns.inside, "root", "tbf", "rate", "4mbit", "burst", "32kbit",
        "latency", "2s",
    ])
    .unwrap();
    let src = tiny_toml("capped", r#""websocket""#)
        .replace("grace = \"500ms\"", "grace = \"6s\"")
        .replace("rooms = 2", "rooms = 1")
        .replace("clients_per_room = 4", "clients_per_room = 5")
        .replace("senders_per_room = 2", "senders_per_room = 1")
        .replace("rate = 10.0", "rate = 50.0")
        .replace("body_bytes = 32", "body_bytes = 4000");
    let scenario =
        chatbench_loadgen::scenario::Scenario::parse(&src, std::path::Path::new("capped.toml"))
            .unwrap();
    let out = tempfile::tempdir().unwrap();
    let done = run_against(addr, scenario, out.path()).await;
    let r = &done.file.runs[0];
    let down = r.wire.measured.bytes_down as f64 / r.measured_seconds;
    let cap = 4e6 / 8.0;
    let asked = r.audit.sent as f64 * 5.0 * 4000.0 / r.measured_seconds;
    assert!(asked > 1.5 * cap, "the scenario asks for {asked} B/s");
    eprintln!(
        "over tbf at {cap} B/s: {down:.0} B/s received, {asked:.0} B/s asked, p50 {} µs",
        r.latency_us.p50
    );
    // Payload bytes under the cap (tbf counts the IP and TCP headers too),
    // and most of it used.
    assert!(
        down <= cap && down >= 0.6 * cap,
        "{down} B/s received with a cap of {cap} B/s (asked: {asked} B/s)"
    );
}
