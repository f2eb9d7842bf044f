//! The chat page at `/`, driven in real headless Chromium through
//! chromedriver (WebDriver, with fantoccini): two pages on different
//! transports talk both ways, over all four transports in turn.
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
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": which(chromium),
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
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

async fn say(page: &Client, text: &str) {
    let input = page.find(Locator::Css("input[name=body]")).await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chromium_pages_chat_over_every_transport() {
    let (chromium, driver_exe) = match binaries() {
        Ok(b) => b,
        Err(why) => {
            assert!(
                std::env::var_os("CHATBENCH_REQUIRE_BROWSER").is_none(),
                "CHATBENCH_REQUIRE_BROWSER is set, but {why}"
            );
            eprintln!("skipped: {why}");
            return;
        }
    };
    let server = Server::start().await;
    let url = format!("http://{}/", server.addr);
    let driver = start_driver(&driver_exe).await;
    let a = browser(&driver, &chromium).await;
    let b = browser(&driver, &chromium).await;
    let result = async {
        for page in [&a, &b] {
            page.goto(&url).await.unwrap();
        }
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
