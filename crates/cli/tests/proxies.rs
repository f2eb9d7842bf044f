//! Reverse proxies in front of the spawned server (`[path] proxy`): every
//! transport through nginx, HAProxy and Caddy with their streaming
//! settings, and what nginx's defaults do. They need the proxies
//! (Debian's nginx-light, haproxy, caddy); without them they skip, unless
//! `CHATBENCH_REQUIRE_PROXIES` is set (CI), where they fail.

use crate::util::{options, tiny_toml};
use chatbench_loadgen::results::TransportRun;
use chatbench_loadgen::server::ServerTarget;
use chatbench_loadgen::{Scenario, Transport};
use std::path::Path;

/// True when `exe` runs here; else says why the test skips.
fn installed(exe: &str) -> bool {
    let found = std::process::Command::new(exe)
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
        || std::process::Command::new(exe)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
    crate::util::can_run(
        "CHATBENCH_REQUIRE_PROXIES",
        (!found)
            .then(|| format!("{exe} is not installed (apt-get install nginx-light haproxy caddy)")),
    )
}

fn through(name: &str, transports: &str, path: &str) -> Scenario {
    let src = format!("{}\n[path]\n{path}\n", tiny_toml(name, transports));
    Scenario::parse(&src, Path::new("proxies.toml")).unwrap()
}

async fn run(s: Scenario) -> (Vec<TransportRun>, std::path::PathBuf, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let target = ServerTarget::Spawn {
        exe: env!("CARGO_BIN_EXE_chatbench").into(),
        args: vec!["serve".into()],
        cpus: None,
        log: None,
    };
    let finished = chatbench_loadgen::run::run(options(s, out.path(), target))
        .await
        .unwrap();
    (finished.file.runs, finished.dir, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_streams_through_each_proxy_with_its_streaming_settings() {
    for proxy in ["nginx", "haproxy", "caddy"] {
        if !installed(proxy) {
            continue;
        }
        let s = through(
            proxy,
            r#""short_poll", "long_poll", "sse", "websocket""#,
            &format!("proxy = {proxy:?}\nconfig = \"streaming\""),
        );
        let (runs, dir, _keep) = run(s).await;
        assert_eq!(runs.len(), 4, "{proxy}");
        for r in &runs {
            let a = &r.audit;
            let what = format!("{proxy} {}", r.transport);
            assert!(a.sent > 0, "{what}");
            assert_eq!(
                (a.delivered, a.lost, a.duplicated, a.errors),
                (a.expected, 0, 0, 0),
                "{what}: {:?}",
                r.errors_by_cause
            );
            // A push transport's messages are not held: well under the
            // 100 ms a buffering proxy or Nagle's timer adds.
            if matches!(r.transport, Transport::Sse | Transport::WebSocket) {
                assert!(
                    r.latency_us.p50 < 20_000,
                    "{what}: p50 {} µs",
                    r.latency_us.p50
                );
                // Each of the 8 clients' first stream delivered at once,
                // and none was cut.
                let st = r.streams.as_ref().expect("a stream's record");
                assert_eq!((st.first_event_us.count, st.silent), (8, 0), "{what}");
                assert!(st.first_event_us.p50 < 20_000, "{what}: {st:?}");
                assert_eq!(st.cut_lived_us.count, 0, "{what}");
            }
            let p = r.proxy.as_ref().expect("the proxy's cost");
            assert!(p.cpu_ms_measured > 0.0 && p.rss_bytes > 0, "{what}: {p:?}");
            assert!(
                p.server_leg_bytes_down > 0 && p.client_leg_bytes_down > 0,
                "{what}: {p:?}"
            );
            assert!(
                r.crosscheck.is_none() && r.no_crosscheck.is_some(),
                "{what}"
            );
        }
        // The generated configuration is kept with the run.
        let conf = if proxy == "caddy" {
            "Caddyfile".to_owned()
        } else {
            format!("{proxy}.conf")
        };
        let text = std::fs::read_to_string(dir.join("proxy-0").join(conf)).unwrap();
        assert!(text.contains("config = \"streaming\""), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_ends_at_each_proxy_which_speaks_http2_to_the_clients() {
    if !["nginx", "haproxy", "caddy"].into_iter().all(installed) {
        return;
    }
    // One run, a sweep point per proxy.
    let src = format!(
        "{}\n[protocol]\nhttp = \"2\"\ntls = true\n[sweep]\nparameter = \"path\"\nvalues = [{}]\n",
        tiny_toml("tls-at-proxies", r#""long_poll", "sse", "websocket""#),
        r#"{ proxy = "nginx", config = "streaming" }, { proxy = "haproxy", config = "streaming" }, { proxy = "caddy", config = "streaming" }"#
    );
    let s = Scenario::parse(&src, Path::new("tls-at-proxies.toml")).unwrap();
    let (runs, dir, _keep) = run(s).await;
    assert_eq!(runs.len(), 9);
    // nginx 1.22 and Caddy 2.6 do not carry WebSockets over HTTP/2;
    // HAProxy 2.6 does (extended CONNECT).
    let proxies = [("nginx", true), ("haproxy", false), ("caddy", true)];
    for r in &runs {
        let (proxy, websocket_h1) = proxies[r.point];
        let a = &r.audit;
        let what = format!("{proxy} {}", r.transport);
        assert_eq!(
            (a.delivered, a.lost, a.errors),
            (a.expected, 0, 0),
            "{what}: {:?}",
            r.errors_by_cause
        );
        // Every client connection was TLS, to the proxy.
        let w = &r.wire.total;
        assert_eq!(w.tls_handshakes, w.connections, "{what}");
        assert!(w.tls_handshakes > 0, "{what}");
        let p = r.proxy.as_ref().expect("the proxy's cost");
        let ws = r.transport == Transport::WebSocket;
        assert_eq!(p.websocket_h1, ws && websocket_h1, "{what}");
    }
    for (point, (proxy, _)) in proxies.iter().enumerate() {
        // The configuration names the certificate; the key is gone.
        let proxy_dir = dir.join(format!("proxy-{point}"));
        let conf = std::fs::read_dir(&proxy_dir)
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .find(|t| t.starts_with("# Written by chatbench"))
            .unwrap();
        assert!(
            conf.contains(&format!("proxy = \"{proxy}\"")) && conf.contains("tls/"),
            "{conf}"
        );
        assert!(
            !proxy_dir.join("tls").exists(),
            "{proxy}: the key is deleted"
        );
    }
    // REPORT.md says which proxies took WebSockets over HTTP/1.1.
    chatbench_report::report(&dir).unwrap();
    let md = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    assert!(
        md.contains("WebSockets went over HTTP/1.1, each on a TLS connection of its own, through nginx streaming, caddy streaming:"),
        "{md}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_defaults_hold_sse_in_their_buffer_and_refuse_websocket() {
    if !installed("nginx") {
        return;
    }
    // Direct, then through nginx's defaults: REPORT.md's Proxies section
    // sets one against the other.
    let src = format!(
        "{}\n[sweep]\nparameter = \"path\"\nvalues = [{{ proxy = \"none\" }}, {{ proxy = \"nginx\" }}]\n",
        tiny_toml("nginx-default", r#""sse", "websocket""#)
    );
    let s = Scenario::parse(&src, Path::new("nginx-default.toml")).unwrap();
    let (runs, dir, _keep) = run(s).await;
    assert_eq!(runs.len(), 4);
    let sse = &runs[2];
    // proxy_buffering is on: events wait until a buffer fills (or the
    // stream ends), not for the network.
    assert_eq!(sse.transport, Transport::Sse);
    assert!(
        sse.latency_us.p50 > 100_000 || sse.audit.lost > 0,
        "SSE through nginx's defaults: p50 {} µs, lost {}",
        sse.latency_us.p50,
        sse.audit.lost
    );
    // Each stream's first event was held, or never came.
    let st = sse.streams.as_ref().expect("a stream's record");
    assert_eq!(st.first_event_us.count + st.silent, 8, "{st:?}");
    assert!(
        st.silent > 0 || st.first_event_us.min > 100_000,
        "first events: {st:?}"
    );
    // Upgrade and Connection are not forwarded: the server answers 426.
    let ws = &runs[3];
    assert_eq!(ws.audit.delivered, 0);
    assert!(
        ws.errors_by_cause
            .keys()
            .any(|k| k.starts_with("connect: the server refused the upgrade: 426")),
        "{:?}",
        ws.errors_by_cause
    );
    assert!(ws.flags.iter().any(|f| f == "not_ready"), "{:?}", ws.flags);
    // The report says what broke, in words.
    chatbench_report::report(&dir).unwrap();
    let md = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    let broke = md
        .lines()
        .find(|l| l.starts_with("**What broke:**"))
        .unwrap_or_else(|| panic!("no What broke line in\n{md}"));
    assert!(
        broke.contains("nginx default over sse:")
            && (broke.contains("first streams delivered nothing (buffered)")
                || broke.contains("first message on a stream held")),
        "{broke}"
    );
    assert!(
        broke.contains("nginx default over websocket:")
            && broke.contains("clients could not connect"),
        "{broke}"
    );
    assert!(!broke.contains("direct over"), "{broke}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxys_idle_timeout_cuts_quiet_connections_unless_streaming() {
    if !installed("haproxy") {
        return;
    }
    // Rooms quiet for 5 s between messages, the server's keep-alives at
    // a minute, and HAProxy's default timeouts shortened from 50 s to 2 s
    // (`path.timeout`) so that the test shows their effect in seconds.
    let quiet = |path: &str| {
        let src = format!(
            "{}\n[server]\nsse_keepalive = \"60s\"\nws_ping_interval = \"60s\"\n[path]\n{path}\n",
            tiny_toml("idle", r#""long_poll", "sse", "websocket""#)
        )
        .replace("rate = 10.0", "rate = 0.2")
        .replace("arrival = \"poisson\"", "arrival = \"constant\"")
        .replace("senders_per_room = 2", "senders_per_room = 1")
        .replace("duration = \"2s\"", "duration = \"6s\"");
        Scenario::parse(&src, Path::new("idle.toml")).unwrap()
    };
    let (cut, _, _keep) = run(quiet("proxy = \"haproxy\"\ntimeout = \"2s\"")).await;
    let cause =
        |r: &TransportRun, prefix: &str| r.errors_by_cause.keys().any(|k| k.starts_with(prefix));
    // A long poll outlives the timeout: HAProxy answers 504 itself.
    assert!(cause(&cut[0], "poll: 504"), "{:?}", cut[0].errors_by_cause);
    // Every cut is counted with the time it lived: about the 2 s timeout
    // (from the request; a stream that carried a message lives longer).
    for r in &cut {
        let lived = &r.streams.as_ref().expect("the cuts").cut_lived_us;
        assert!(lived.count > 0, "{}: {lived:?}", r.transport);
        assert!(
            (1_500_000..4_000_000).contains(&lived.p50),
            "{}: {lived:?}",
            r.transport
        );
    }
    // An SSE stream is cut mid-body, and resumes from its last event.
    assert!(cause(&cut[1], "sse stream"), "{:?}", cut[1].errors_by_cause);
    assert_eq!(cut[1].audit.lost, 0);
    // A WebSocket is cut; this client does not reconnect, so its room's
    // later messages are lost to it.
    assert!(cut[2].audit.lost > 0, "{:?}", cut[2].audit);
    let (kept, _, _keep) = run(quiet("proxy = \"haproxy\"\nconfig = \"streaming\"")).await;
    for r in &kept {
        let cuts = r.streams.as_ref().map_or(0, |s| s.cut_lived_us.count);
        assert_eq!(cuts, 0, "{}", r.transport);
        let a = &r.audit;
        assert_eq!(
            (a.lost, a.errors),
            (0, 0),
            "{}: {:?}",
            r.transport,
            r.errors_by_cause
        );
    }
}
