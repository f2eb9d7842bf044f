//! The shell session of docs/server.md, run with the real `curl` binary: what a
//! newcomer types must work exactly as that page says.

use crate::util::*;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// Runs `curl -sS ARGS` and returns its standard output. Panics with curl's
/// own message if it cannot run or fails.
async fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .arg("-sS")
        .args(args)
        .output()
        .await
        .expect("the curl binary is needed for this test (apt-get install curl)");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn seqs_and_bodies(v: &serde_json::Value) -> Vec<(u64, String)> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_readme_curl_session_works() {
    let server = Server::start().await;
    let base = format!("http://{}", server.addr);
    let messages = format!("{base}/rooms/lobby/messages");

    // Publish, exactly as docs/server.md shows.
    let posted = curl(&[
        "--json",
        r#"{"from":"me","body":"hello","sent_at":1}"#,
        &messages,
    ])
    .await;
    assert_eq!(posted, r#"{"seq":1}"#);

    // Short poll from the start of the room.
    let polled: serde_json::Value =
        serde_json::from_str(&curl(&[&format!("{messages}?after=0")]).await).unwrap();
    assert_eq!(seqs_and_bodies(&polled), vec![(1, "hello".to_owned())]);
    assert_eq!(polled["next"], 1);
    assert_eq!(polled["missed"], 0);
    let m = &polled["messages"][0];
    assert_eq!(
        (
            m["room"].as_str(),
            m["from"].as_str(),
            m["sent_at"].as_u64()
        ),
        (Some("lobby"), Some("me"), Some(1))
    );
    assert!(m["server_at"].as_u64().unwrap() > 0);

    // Long poll after seq 1: it holds, and returns as soon as seq 2 exists.
    let long_url = format!("{messages}?after=1&wait_ms=30000");
    let held = tokio::spawn(async move {
        let started = Instant::now();
        let body = curl(&[&long_url]).await;
        (body, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !held.is_finished(),
        "the long poll answered before a message existed"
    );
    assert_eq!(
        curl(&["--json", r#"{"from":"you","body":"hi"}"#, &messages]).await,
        r#"{"seq":2}"#
    );
    let (body, took) = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the long poll did not return after the publish")
        .unwrap();
    let long: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seqs_and_bodies(&long), vec![(2, "hi".to_owned())]);
    assert!(took < Duration::from_secs(10), "long poll took {took:?}");

    // SSE from the start: both messages as `id:` + `data:` events. `--max-time`
    // ends the otherwise endless stream; curl exits 28 then, so no -sS check.
    let out = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "1"])
        .arg(format!("{base}/rooms/lobby/events?after=0"))
        .output()
        .await
        .expect("the curl binary is needed for this test");
    assert_eq!(
        out.status.code(),
        Some(28),
        "curl should stop at --max-time"
    );
    let stream = String::from_utf8(out.stdout).unwrap();
    let events: Vec<(&str, serde_json::Value)> = stream
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (id, data) = e.split_once('\n').unwrap();
            let id = id.strip_prefix("id: ").unwrap();
            let data = data.strip_prefix("data: ").unwrap();
            (id, serde_json::from_str(data).unwrap())
        })
        .collect();
    assert_eq!(events.len(), 2, "stream was {stream:?}");
    assert_eq!(
        (events[0].0, events[0].1["body"].as_str()),
        ("1", Some("hello"))
    );
    assert_eq!(
        (events[1].0, events[1].1["body"].as_str()),
        ("2", Some("hi"))
    );

    // A mistake gets a status and a reason.
    let bad = curl(&["-w", " %{http_code}", "--json", "not json", &messages]).await;
    let (body, status) = bad.rsplit_once(' ').unwrap();
    assert_eq!(status, "400");
    let err: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(err["error"], "bad JSON: expected ident at line 1 column 2");

    // `/healthz` as documented.
    assert_eq!(curl(&[&format!("{base}/healthz")]).await.trim_end(), "ok");
    server.stop().await;
}
