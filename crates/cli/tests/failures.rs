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
    let run_dir = std::fs::read_dir(dir.path().join("long"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
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
