//! A run spread over machines (`--shard I/N --start-at`), played on this
//! machine: two shard processes whose clocks are deliberately off (the
//! test-only `--clock-skew-us`) run against one server, and `chatbench
//! merge` adds their partial folders into one run, which must match a
//! single-process run of the same scenario.

use crate::util::*;
use chatbench_loadgen::RunFile;
use std::path::{Path, PathBuf};

fn chatbench(args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: std::process::Child, what: &str) -> String {
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{what}: {err}");
    err
}

/// The one run folder under `root/spread/`.
fn folder(root: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("spread"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_with_offset_clocks_merge_into_what_one_process_measures() {
    let (_server, addr) = spawn_server().await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("spread.toml");
    let all = r#""short_poll", "long_poll", "sse", "websocket""#;
    std::fs::write(&file, tiny_toml("spread", all)).unwrap();
    let file = file.to_str().unwrap();
    let url = format!("http://{addr}");
    let start = std::time::SystemTime::now() + std::time::Duration::from_secs(3);
    let start_at = humantime::format_rfc3339_seconds(start + std::time::Duration::from_secs(1));
    let start_at = start_at.to_string();
    // Shard 0's clock runs 40 ms ahead, shard 1's 25 ms behind: without
    // correction, a message between them would be 65 ms off.
    let skews = [40_000i64, -25_000];
    let outs: Vec<PathBuf> = (0..2).map(|i| tmp.path().join(format!("s{i}"))).collect();
    let shards: Vec<_> = (0..2)
        .map(|i| {
            chatbench(&[
                "run",
                file,
                "--server",
                &url,
                "--shard",
                &format!("{i}/2"),
                "--start-at",
                &start_at,
                "--clock-skew-us",
                &skews[i].to_string(),
                "--out",
                outs[i].to_str().unwrap(),
                "--quiet",
                "--no-report",
            ])
        })
        .collect();
    for (i, c) in shards.into_iter().enumerate() {
        let err = finish(c, &format!("shard {i}"));
        assert!(err.contains(&format!("this is shard {i} of 2")), "{err}");
    }
    let parts: Vec<PathBuf> = outs.iter().map(|o| folder(o)).collect();
    for (i, p) in parts.iter().enumerate() {
        let f = RunFile::read(p).unwrap();
        assert!(f.complete && f.is_shard_part(), "{:?}", f.problems);
        let sh = &f.shards[0];
        assert_eq!((sh.index, sh.of), (i as u32, 2));
        // The offset found undoes the skew, within its uncertainty (half
        // the best round trip to the server) and a millisecond of slack.
        let err = (sh.clock.offset_us + skews[i]).unsigned_abs();
        assert!(
            err <= sh.clock.uncertainty_us + 1_000,
            "shard {i}: offset {} for a skew of {}: {:?}",
            sh.clock.offset_us,
            skews[i],
            sh.clock
        );
        assert_eq!(sh.clock.exchanges, 16);
    }
    // Merge the shards, in either order.
    let merged_root = tmp.path().join("merged");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .args([
            "merge",
            parts[1].to_str().unwrap(),
            parts[0].to_str().unwrap(),
        ])
        .args(["--out", merged_root.to_str().unwrap(), "--no-report"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged = RunFile::read(&folder(&merged_root)).unwrap();
    assert!(merged.complete, "{:?}", merged.problems);
    assert_eq!(merged.shards.len(), 2);
    assert_eq!(merged.shards[0].index, 0);
    // One process, the same scenario, against the same server.
    let single_root = tmp.path().join("single");
    finish(
        chatbench(&[
            "run",
            file,
            "--server",
            &url,
            "--out",
            single_root.to_str().unwrap(),
            "--quiet",
            "--no-report",
        ]),
        "single",
    );
    let single = RunFile::read(&folder(&single_root)).unwrap();
    assert_eq!(merged.runs.len(), 4);
    for (m, one) in merged.runs.iter().zip(&single.runs) {
        let t = m.transport;
        assert_eq!(one.transport, t);
        // The same seeded schedules: the same sends, each reaching the 4
        // clients of its room, across the two shards.
        assert_eq!(m.audit.sent, one.audit.sent, "{t}");
        assert_eq!(m.audit.expected, m.audit.sent * 4, "{t}");
        assert_eq!(m.audit, one.audit, "{t}");
        assert_eq!(m.connections, one.connections, "{t}");
        assert_eq!(m.latency_us.count, m.audit.delivered, "{t}");
        // Corrected clocks: no delivery is 65 ms off. Short polls wait up to
        // their 100 ms interval; the push transports take about a ms here.
        // The slack above each is for a 2-CPU machine running two shards,
        // the server and this binary's other tests at once (a short poll
        // once took 105.9 ms there); a 65 ms error would still be past it.
        let bound = if t == chatbench_loadgen::Transport::ShortPoll {
            120_000
        } else {
            20_000
        };
        assert!(m.latency_us.max < bound, "{t}: {:?}", m.latency_us);
        // (The breakdown's legs are tens of µs here, as short as the clock
        // estimates' error on a loaded machine, so some deliveries may be
        // left out of it as skewed: not asserted.)
    }
    // A shard's folder alone is not a run: merging it with a whole run is
    // refused.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .args([
            "merge",
            parts[0].to_str().unwrap(),
            folder(&single_root).to_str().unwrap(),
        ])
        .args(["--out", merged_root.to_str().unwrap(), "--no-report"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("it is shard 0 of 2 of a run spread over machines; merge all 2 shards of that run, and nothing else"),
        "{err}"
    );
}

/// The Kubernetes Job runs `chatbench run` with flags this binary has, and
/// picks its shard from the Job's completion index; the Dockerfile puts the
/// scenarios where the Job reads them.
#[test]
fn the_kubernetes_job_uses_flags_chatbench_has() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let job = std::fs::read_to_string(root.join("deploy/kubernetes/loadgen-job.yaml")).unwrap();
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let args = job
        .split("- >-")
        .nth(1)
        .and_then(|a| a.split("env:").next())
        .expect("the container's args");
    let flags: Vec<&str> = args
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches(';'))
        .collect();
    for want in [
        "--server",
        "--allow-remote",
        "--shard",
        "--start-at",
        "--out",
    ] {
        assert!(
            flags.contains(&want),
            "the Job does not pass {want}: {flags:?}"
        );
    }
    for f in &flags {
        assert!(
            help.contains(&format!("  {f}")),
            "`chatbench run` has no {f}:\n{help}"
        );
    }
    assert!(
        args.contains("--shard \"${JOB_COMPLETION_INDEX}/${SHARDS}\""),
        "{args}"
    );
    assert!(
        args.contains("chatbench run /scenarios/${SCENARIO}.toml"),
        "{args}"
    );
    assert!(job.contains("completionMode: Indexed"));
    let server = std::fs::read_to_string(root.join("deploy/kubernetes/server.yaml")).unwrap();
    assert!(server.contains("name: chatbench-server") && server.contains("kind: Service"));
    let docker = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    assert!(docker.contains("COPY scenarios /scenarios"), "{docker}");
}
