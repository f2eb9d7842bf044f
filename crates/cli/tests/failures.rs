//! Bad scenario files and a server that dies mid-run.

use crate::util::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn bad_scenario_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "name = \"x\"\ntransports = [\"sse\"]\nduration = \"1s\"\n[clients]\nrooms = 1\nclients_per_room = 2\nsenders_per_room = 3\n[messages]\nrate = 1.0\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .args([
            "run",
            path.to_str().unwrap(),
            "--out",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        format!("chatbench: error: {}:7: field `clients.senders_per_room`: is 3 but a room has only 2 clients", path.display())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_gives_partial_results_and_a_nonzero_exit() {
    let (mut server, addr) = spawn_server().await;
    let pid = server.id().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("long.toml");
    std::fs::write(
        &scenario,
        "name = \"long\"\ntransports = [\"websocket\", \"sse\"]\nduration = \"60s\"\nwarmup = \"1s\"\n[clients]\nrooms = 1\nclients_per_room = 3\nsenders_per_room = 1\nramp = \"100ms\"\n[messages]\nrate = 20.0\n",
    )
    .unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            dir.path().to_str().unwrap(),
        ])
        .args([
            "--server",
            &format!("http://{addr}"),
            "--server-pid",
            &pid.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.kill().await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), run.wait_with_output())
        .await
        .expect("chatbench did not end after its server died")
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "chatbench: error: the server died during websocket 1/1; partial results are in "
        ),
        "{stderr}"
    );
    let run_dir = only_run(dir.path(), "long");
    let file = chatbench_loadgen::RunFile::read(&run_dir).unwrap();
    assert!(!file.complete);
    assert_eq!(file.runs.len(), 1, "stopped after the first transport");
    assert_eq!(file.runs[0].flags, vec!["incomplete".to_owned()]);
    assert!(
        file.runs[0].audit.sent > 0,
        "the partial run recorded what it had"
    );
    assert_eq!(
        file.problems,
        vec!["websocket 1/1: the server died during the run".to_owned()]
    );
    assert!(run_dir.join("websocket.hlog").exists());
}

#[test]
fn sigint_stops_the_run_and_leaves_an_incomplete_folder_that_check_and_compare_refuse() {
    let out = tempfile::tempdir().unwrap();
    let scenario =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/quick.toml");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(out.path())
        .arg("--no-report")
        // Outside the repository: the commit comes from the build.
        .current_dir(out.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Into the first transport's traffic (ramp 1 s, then warm-up).
    std::thread::sleep(std::time::Duration::from_secs(4));
    // SAFETY: kill(2) on our own child's pid with SIGINT touches no memory.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
    let started = std::time::Instant::now();
    let done = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the run took {:?} to stop",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{stderr}");
    let dirs: Vec<_> = std::fs::read_dir(out.path().join("quick"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1);
    let dir = &dirs[0];
    assert!(
        stderr.contains("interrupted during short_poll 1/1")
            && stderr.contains(&dir.display().to_string()),
        "{stderr}"
    );
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["complete"], false);
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    assert_eq!(run["environment"]["commit"], head.as_str());
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    assert_eq!(run["environment"]["profile"], profile);
    assert_eq!(
        run["problems"],
        serde_json::json!(["short_poll 1/1: interrupted before it finished"])
    );
    assert_eq!(run["runs"][0]["complete"], false);
    assert_eq!(run["runs"][0]["flags"], serde_json::json!(["incomplete"]));
    let d = dir.to_str().unwrap();
    for args in [
        vec!["check", d],
        vec!["check", "--no-loss", d],
        vec!["compare", d, d],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatbench"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("incomplete"), "{args:?}: {err}");
    }
    // The report still renders, and says the run is incomplete.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .args(["report", d])
        .output()
        .unwrap();
    assert!(out.status.success());
    let report = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    assert!(report.contains("**This run is incomplete.**"), "{report}");
}

/// Every error is counted under its cause, in run.json and REPORT.md: here
/// every publish is larger than the server's body limit.
#[tokio::test(flavor = "multi_thread")]
async fn errors_are_reported_by_cause() {
    let (_server, addr) = spawn_server_with(&["--body-limit", "64"]).await;
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("big.toml");
    std::fs::write(
        &scenario,
        "name = \"big\"\ntransports = [\"sse\"]\nduration = \"1s\"\nwarmup = \"0s\"\ngrace = \"0s\"\n[clients]\nrooms = 1\nclients_per_room = 2\nsenders_per_room = 1\nramp = \"100ms\"\n[messages]\nrate = 10.0\nbody_bytes = 200\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            dir.path().to_str().unwrap(),
        ])
        .args(["--server", &format!("http://{addr}"), "--verbose"])
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // --verbose logs each error as it happens.
    assert!(
        stderr.contains("sse publish: 413 Payload Too Large"),
        "{stderr}"
    );
    let run_dir = only_run(dir.path(), "big");
    let file = chatbench_loadgen::RunFile::read(&run_dir).unwrap();
    let r = &file.runs[0];
    assert!(r.audit.errors >= 5, "{stderr}\n{:?}", r.audit);
    assert_eq!(r.audit.sent, 0);
    let cause =
        "publish: 413 Payload Too Large {\"error\":\"body is larger than the limit of 64 bytes\"}";
    assert_eq!(
        r.errors_by_cause,
        [(cause.to_owned(), r.audit.errors)].into(),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "sse 1/1  done: p50 0µs, p99 0µs, lost 0, errors {n} (most: {n} × {cause})",
            n = r.audit.errors
        )),
        "{stderr}"
    );
    let md = std::fs::read_to_string(run_dir.join("REPORT.md")).unwrap();
    assert!(
        md.contains(&format!("| sse | 1 | {} | {} |", r.audit.errors, cause)),
        "{md}"
    );
}
