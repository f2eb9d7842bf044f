//! The chat page at `/`, driven in real headless Chromium through
//! chromedriver (WebDriver, with fantoccini): two pages on different
//! transports talk both ways, over all four transports in turn, and over
//! WebTransport (HTTP/3) with the generated certificate pinned by its hash.
//!
//! Needs Debian's `chromium` and `chromium-driver`. Without them the test
//! says so and passes, unless `CHATBENCH_REQUIRE_BROWSER=1` (set by
//! `.ci/run`, which installs both), where it fails instead.

use crate::util::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    url: String,
    _child: Child,
}

/// Finds the two binaries, or says why the test cannot run.
fn binaries() -> Result<(String, String), String> {
    let find = |names: &[&str]| {
        names
            .iter()
            .find(|n| {
                std::process::Command::new(n)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .map(|n| n.to_string())
    };
    let chromium = find(&["chromium", "chromium-browser", "google-chrome"])
        .ok_or("no chromium on PATH (Debian: apt-get install chromium)")?;
    let driver = find(&["chromedriver"])
        .ok_or("no chromedriver on PATH (Debian: apt-get install chromium-driver)")?;
    Ok((chromium, driver))
}

async fn start_driver(exe: &str) -> Driver {
    // A port the kernel just handed out and we released: chromedriver
    // cannot be told to pick its own and report it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(exe)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver { url, _child: child }
}

async fn browser(driver: &Driver, chromium: &str) -> Client {
    browser_with(driver, chromium, &[]).await
}

/// A headless Chromium session with these command-line switches too.
async fn browser_with(driver: &Driver, chromium: &str, extra: &[&str]) -> Client {
    let mut args = vec![
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
    ];
    args.extend_from_slice(extra);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": which(chromium),
            "args": args,
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromium session")
}

/// The absolute path of a binary on PATH (chromedriver wants one).
fn which(name: &str) -> String {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_owned())
}

/// Two headless Chromium pages on the chat page of the server at `addr`,
/// over plain HTTP.
async fn two_pages(
    driver: &Driver,
    chromium: &str,
    addr: std::net::SocketAddr,
) -> (Client, Client) {
    let url = format!("http://{addr}/");
    let a = browser(driver, chromium).await;
    let b = browser(driver, chromium).await;
    for page in [&a, &b] {
        page.goto(&url).await.unwrap();
    }
    (a, b)
}

/// Fills the form and clicks "join", as a person would.
async fn join(page: &Client, room: &str, from: &str, transport: &str) {
    let field = page.find(Locator::Id("room")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(room).await.unwrap();
    let name = page.find(Locator::Id("from")).await.unwrap();
    name.clear().await.unwrap();
    name.send_keys(from).await.unwrap();
    page.find(Locator::Id("transport"))
        .await
        .unwrap()
        .select_by_value(transport)
        .await
        .unwrap();
    page.find(Locator::Id("join"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Types `text` into a page's send box and clicks its button (the chat
/// page's and the compare page's alike).
async fn say(page: &Client, text: &str) {
    let input = page.find(Locator::Css("#send input")).await.unwrap();
    input.send_keys(text).await.unwrap();
    page.find(Locator::Css("#send button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn status(page: &Client) -> String {
    page.find(Locator::Id("status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The log as the page shows it: each message's seq, sender, body text and
/// latency label, plus the other lines' text.
async fn log(page: &Client) -> Value {
    page.execute(
        r##"return [...document.querySelectorAll("#log > div")].map((d) => d.classList.contains("msg")
            ? { seq: Number(d.dataset.seq), from: d.querySelector(".from").textContent,
                body: d.querySelector(".body").textContent,
                elements_in_body: d.querySelector(".body").children.length,
                lat: d.querySelector(".lat") ? d.querySelector(".lat").textContent : null }
            : { line: d.textContent, class: d.className });"##,
        vec![],
    )
    .await
    .unwrap()
}

/// Waits (at most 20 s) until `done` holds of the page's log.
async fn wait_log(page: &Client, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = log(page).await;
        let l = l.as_array().unwrap();
        if done(l) {
            return l.clone();
        }
        assert!(Instant::now() < deadline, "{what}: log is {l:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_status(page: &Client, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(page).await;
        if s.starts_with(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "status {s:?}, waiting for {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn bodies(l: &[Value]) -> Vec<(u64, String, String)> {
    l.iter()
        .filter(|m| m.get("seq").is_some())
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["from"].as_str().unwrap().to_owned(),
                m["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// One exchange: `a` and `b` join `room` on their transports, wait until
/// both are connected, then speak in turn; both logs must hold the three
/// messages in order, with latencies, and the HTML shown as text.
async fn exchange(a: &Client, ta: &str, b: &Client, tb: &str, room: &str, open: [&str; 2]) {
    join(a, room, "alice", ta).await;
    join(b, room, "bob", tb).await;
    wait_status(a, open[0]).await;
    wait_status(b, open[1]).await;
    // A joined log holds nothing of the room before.
    assert_eq!(log(a).await, json!([]), "{ta}");
    assert_eq!(log(b).await, json!([]), "{tb}");
    let html = "<b>bold</b> & <script>no</script>";
    say(a, &format!("hello from {ta}")).await;
    wait_log(b, "b sees a's first", |l| bodies(l).len() == 1).await;
    say(b, html).await;
    wait_log(a, "a sees b's answer", |l| bodies(l).len() == 2).await;
    say(a, "bye").await;
    let want = vec![
        (1, "alice".to_owned(), format!("hello from {ta}")),
        (2, "bob".to_owned(), html.to_owned()),
        (3, "alice".to_owned(), "bye".to_owned()),
    ];
    for (page, t) in [(a, ta), (b, tb)] {
        let l = wait_log(page, t, |l| bodies(l).len() == 3).await;
        assert_eq!(bodies(&l), want, "{t}: {l:#?}");
        assert_eq!(l.len(), 3, "{t}: nothing but the messages: {l:#?}");
        for m in &l {
            // HTML in a body is text: no element was made of it.
            assert_eq!(m["elements_in_body"], 0, "{t}: {m}");
            // Both pages share this browser's clock: a latency label in ms.
            let lat = m["lat"].as_str().unwrap_or_else(|| panic!("{t}: {m}"));
            let ms: f64 = lat.strip_suffix(" ms").unwrap().parse().unwrap();
            assert!((0.0..20_000.0).contains(&ms), "{t}: {lat}");
        }
    }
}

/// The two binaries, or None after saying why the test is skipped (a
/// failure where `CHATBENCH_REQUIRE_BROWSER` is set).
fn binaries_or_skip() -> Option<(String, String)> {
    match binaries() {
        Ok(b) => Some(b),
        Err(why) => {
            assert!(
                std::env::var_os("CHATBENCH_REQUIRE_BROWSER").is_none(),
                "CHATBENCH_REQUIRE_BROWSER is set, but {why}"
            );
            eprintln!("skipped: {why}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chromium_pages_chat_over_every_transport() {
    let Some((chromium, driver_exe)) = binaries_or_skip() else {
        return;
    };
    let server = Server::start().await;
    let driver = start_driver(&driver_exe).await;
    let (a, b) = two_pages(&driver, &chromium, server.addr).await;
    let result = async {
        // A name the server would refuse: the error names the character
        // typed (a space), not its URL encoding ('%').
        join(&a, "bad room!", "alice", "sse").await;
        let l = wait_log(&a, "room error", |l| !l.is_empty()).await;
        assert_eq!(
            l,
            vec![json!({
                "line": "error: room name holds ' '; only A-Z, a-z, 0-9, '_' and '-' are allowed",
                "class": "err"
            })]
        );
        assert_eq!(status(&a).await, "not connected");
        // Without --http3 the WebTransport choice is there, disabled, and
        // says why.
        assert_eq!(
            wt_option(&a, |o| o["text"] != "WebTransport over HTTP/3").await,
            json!({"text": "WebTransport over HTTP/3 (start the server with --tls --http3)", "disabled": true})
        );
        // WebSocket and SSE, then (new room, logs cleared) the polls.
        exchange(
            &a,
            "websocket",
            &b,
            "sse",
            "pushed",
            ["WebSocket: open", "SSE: open"],
        )
        .await;
        exchange(
            &a,
            "long_poll",
            &b,
            "short_poll",
            "polled",
            ["long polling", "short polling"],
        )
        .await;
        // The WebSocket page switched to long polling: its old socket's
        // close did not take over the status line.
        assert_eq!(status(&a).await, "long polling: a request is waiting");
        // And from SSE back to WebSocket in the first room: a cleared log
        // that starts at the room's head (no `after`, as the contract
        // says), so b's next message is the room's fourth and alone.
        join(&b, "pushed", "bob", "websocket").await;
        wait_status(&b, "WebSocket: open").await;
        assert_eq!(log(&b).await, json!([]));
        say(&b, "back").await;
        let l = wait_log(&b, "after rejoining", |l| !l.is_empty()).await;
        assert_eq!(bodies(&l), [(4, "bob".to_owned(), "back".to_owned())]);
    }
    .await;
    for page in [a, b] {
        let _ = page.close().await;
    }
    server.stop().await;
    result
}

/// The WebTransport option's text and state, once `done` holds of them
/// (at most 20 s: the page asks `GET /webtransport` when it loads).
async fn wt_option(page: &Client, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = page
            .execute(
                r#"const o = document.getElementById("wt-option");
                   return { text: o.textContent, disabled: o.disabled };"#,
                vec![],
            )
            .await
            .unwrap();
        if done(&o) || Instant::now() > deadline {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// WebTransport in a real browser: the page, served over plain HTTP from
/// 127.0.0.1 (a secure context), opens a session to the server's HTTP/3
/// port trusting the generated certificate by its SHA-256 alone
/// (`serverCertificateHashes`; no `--ignore-certificate-errors`, no CA),
/// and chats with a WebSocket page and then an SSE page in the same room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chromium_page_chats_over_webtransport_with_a_pinned_certificate() {
    let Some((chromium, driver_exe)) = binaries_or_skip() else {
        return;
    };
    let tls = chatbench_server::tls::self_signed(None, &[]).unwrap();
    let hash: String = tls
        .leaf_sha256
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let server = Server::start_with(chatbench_server::Config {
        tls: Some(tls),
        http3: true,
        ..chatbench_server::Config::default()
    })
    .await;
    let driver = start_driver(&driver_exe).await;
    let (a, b) = two_pages(&driver, &chromium, server.addr).await;
    let result = async {
        let o = wt_option(&a, |o| o["disabled"] == false).await;
        assert_eq!(
            o,
            json!({"text": "WebTransport over HTTP/3", "disabled": false})
        );
        let info = a
            .execute(
                "return await (await fetch('/webtransport')).json();",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            info,
            json!({"port": server.addr.port(), "path": "/rooms/{room}/wt",
                   "modes": ["stream", "stream-per-message"], "certificate_sha256": hash})
        );
        exchange(
            &a,
            "webtransport",
            &b,
            "websocket",
            "quic",
            ["WebTransport: open", "WebSocket: open"],
        )
        .await;
        exchange(
            &b,
            "sse",
            &a,
            "webtransport",
            "quic2",
            ["SSE: open", "WebTransport: open"],
        )
        .await;
        // A bad publish over the session's stream: an error line, and the
        // session stays open.
        a.execute("wtSend('not json'); return null;", vec![])
            .await
            .unwrap();
        let l = wait_log(&a, "the error line", |l| l.len() == 4).await;
        assert_eq!(l[3]["class"], "err", "{l:#?}");
        assert!(
            l[3]["line"].as_str().unwrap().starts_with("error: "),
            "{l:#?}"
        );
        assert_eq!(status(&a).await, "WebTransport: open");
        // Switching away: the closing session does not take over the
        // status line.
        join(&a, "quic2", "alice", "sse").await;
        wait_status(&a, "SSE: open").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(status(&a).await, "SSE: open");
    }
    .await;
    for page in [a, b] {
        let _ = page.close().await;
    }
    server.stop().await;
    result
}

/// The lesson page's state: per column, the seqs received in order, their
/// latencies (ms), the requests made, the bytes counted and the status.
async fn columns(page: &Client) -> Value {
    page.execute(
        r#"return Object.fromEntries(Object.entries(window.compare.columns).map(([t, c]) =>
            [t, { seqs: c.seqs, lats: c.latencies, requests: c.requests, bytes: c.bytes, status: c.status }]));"#,
        vec![],
    )
    .await
    .unwrap()
}

const TRANSPORTS: [&str; 4] = ["short_poll", "long_poll", "sse", "websocket"];

/// Waits (at most 20 s) until `done` holds of the columns.
async fn wait_columns(page: &Client, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = columns(page).await;
        if done(&c) {
            return c;
        }
        assert!(Instant::now() < deadline, "{what}: {c:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every column connected: a poll answered or waiting, each stream open.
fn connected(c: &Value) -> bool {
    let st = |t: &str| c[t]["status"].as_str().unwrap_or("").to_owned();
    st("short_poll").starts_with("polled at")
        && st("long_poll") == "a request is waiting at the server"
        && st("sse") == "stream open"
        && st("websocket") == "socket open"
}

fn seqs(c: &Value, t: &str) -> Vec<u64> {
    c[t]["seqs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

fn lats(c: &Value, t: &str) -> Vec<f64> {
    c[t]["lats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().expect("a latency by this browser's clock"))
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `/compare` in Chromium: four columns on one room receive the same
/// messages in order; short polling's shows latencies of a part of its
/// interval and a request count that grows while the room is quiet;
/// WebSocket's and SSE's stay at one request; the automatic sender feeds
/// all four alike; on a phone-wide window the columns stack. A screenshot
/// of the page is saved in the test's output folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compare_page_shows_one_room_over_four_transports() {
    let Some((chromium, driver_exe)) = binaries_or_skip() else {
        return;
    };
    let server = Server::start().await;
    let driver = start_driver(&driver_exe).await;
    let page = browser(&driver, &chromium).await;
    let result = async {
        page.set_window_size(1280, 1000).await.unwrap();
        page.goto(&format!("http://{}/compare?room=lesson", server.addr))
            .await
            .unwrap();
        wait_columns(&page, "all four connected", connected).await;
        let interval_ms = page
            .execute("return shortInterval();", vec![])
            .await
            .unwrap()
            .as_f64()
            .unwrap();
        assert!((900.0..=1100.0).contains(&interval_ms), "{interval_ms}");
        for i in 1..=5 {
            say(&page, &format!("message {i}")).await;
            tokio::time::sleep(Duration::from_millis(350)).await;
        }
        let c = wait_columns(&page, "five messages in every column", |c| {
            TRANSPORTS.iter().all(|t| seqs(c, t).len() >= 5)
        })
        .await;
        for t in TRANSPORTS {
            assert_eq!(seqs(&c, t), [1, 2, 3, 4, 5], "{t}: {c:#}");
        }
        // Short polling: each message waited for the next poll, up to the
        // interval (plus a loaded machine's slack), a part of it at least
        // once in five.
        let sp = lats(&c, "short_poll");
        assert!(
            sp.iter().cloned().fold(0.0, f64::max) >= interval_ms / 10.0,
            "{sp:?}"
        );
        assert!(sp.iter().all(|&l| l <= interval_ms + 2000.0), "{sp:?}");
        assert!(
            median(lats(&c, "websocket")) < median(sp.clone()),
            "{c:#}"
        );
        // The streams made one request each; long polling one per message
        // or more; the polls' bytes come from Resource Timing.
        assert_eq!(c["websocket"]["requests"], 1, "{c:#}");
        assert_eq!(c["sse"]["requests"], 1, "{c:#}");
        assert!(c["long_poll"]["requests"].as_u64().unwrap() >= 5, "{c:#}");
        for t in TRANSPORTS {
            assert!(c[t]["bytes"].as_f64().unwrap() > 0.0, "{t}: {c:#}");
        }
        // A quiet room: short polling keeps asking, WebSocket does not.
        let before = c["short_poll"]["requests"].as_u64().unwrap();
        tokio::time::sleep(Duration::from_millis(3 * interval_ms as u64)).await;
        let c = columns(&page).await;
        let after = c["short_poll"]["requests"].as_u64().unwrap();
        assert!(after >= before + 2, "{before} -> {after}");
        assert_eq!(c["websocket"]["requests"], 1, "{c:#}");
        // What the page shows for WebSocket's column is what it counted.
        let shown = page
            .find(Locator::Css(r#"#col-websocket [data-f="requests"]"#))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(shown, "1");
        let png = page.screenshot().await.unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare.png");
        std::fs::write(&out, &png).unwrap();
        eprintln!("screenshot: {}", out.display());

        // The automatic sender at its fastest (20 a second) for about a
        // second: every column receives the same messages.
        page.execute(
            r#"const r = document.getElementById("rate"); r.value = 100; r.dispatchEvent(new Event("input"));"#,
            vec![],
        )
        .await
        .unwrap();
        assert_eq!(
            page.find(Locator::Id("rate-out")).await.unwrap().text().await.unwrap(),
            "20.0 msg/s"
        );
        page.find(Locator::Id("auto")).await.unwrap().click().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        page.find(Locator::Id("auto")).await.unwrap().click().await.unwrap();
        // The last POST may still be in flight: wait for the columns to
        // agree, and for more than 5 automatic messages in them.
        let c = wait_columns(&page, "the automatic sender's messages", |c| {
            let s = seqs(c, "websocket");
            s.len() > 10 && TRANSPORTS.iter().all(|t| seqs(c, t) == s)
        })
        .await;
        let s = seqs(&c, "websocket");
        assert_eq!(s, (1..=s.len() as u64).collect::<Vec<_>>());

        // A phone's width: the columns stack, one under another.
        page.set_window_size(420, 900).await.unwrap();
        let lefts = page
            .execute(
                r#"return [...document.querySelectorAll(".col")].map((e) => e.getBoundingClientRect().left);"#,
                vec![],
            )
            .await
            .unwrap();
        let lefts: Vec<f64> = lefts
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(lefts.len(), 4);
        assert!(lefts.iter().all(|&l| l == lefts[0]), "{lefts:?}");

        // A room name the server would refuse: every column says why.
        page.execute(
            r#"document.getElementById("room").value = "bad room"; document.getElementById("join").click();"#,
            vec![],
        )
        .await
        .unwrap();
        let c = columns(&page).await;
        for t in TRANSPORTS {
            assert_eq!(
                c[t]["status"],
                "error: room name holds ' '; only A-Z, a-z, 0-9, '_' and '-' are allowed"
            );
        }
    }
    .await;
    let _ = page.close().await;
    server.stop().await;
    result
}

/// `/compare` over TLS: `https` for the polls and SSE, `wss` for the
/// WebSocket, from the page's own origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compare_page_works_over_tls() {
    let Some((chromium, driver_exe)) = binaries_or_skip() else {
        return;
    };
    let tls = chatbench_server::tls::self_signed(None, &[]).unwrap();
    let server = Server::start_with(chatbench_server::Config {
        tls: Some(tls),
        ..chatbench_server::Config::default()
    })
    .await;
    let driver = start_driver(&driver_exe).await;
    // The certificate is the server's own, made for this test.
    let page = browser_with(&driver, &chromium, &["--ignore-certificate-errors"]).await;
    let result = async {
        page.goto(&format!("https://{}/compare?room=secure", server.addr))
            .await
            .unwrap();
        wait_columns(&page, "all four connected over TLS", connected).await;
        let proto = page
            .execute("return location.protocol;", vec![])
            .await
            .unwrap();
        assert_eq!(proto, "https:");
        say(&page, "over TLS").await;
        let c = wait_columns(&page, "one message in every column", |c| {
            TRANSPORTS.iter().all(|t| seqs(c, t).len() == 1)
        })
        .await;
        for t in TRANSPORTS {
            assert_eq!(seqs(&c, t), [1], "{t}");
        }
    }
    .await;
    let _ = page.close().await;
    server.stop().await;
    result
}
