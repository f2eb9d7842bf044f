//! `chatbench capacity` through the binary: tiny searches whose course is
//! known in advance (every step holds; the first step breaks; the load
//! generator is the limit), and scenarios it refuses.

use crate::util::tiny_toml;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// A tiny WebSocket scenario with `search` as its `[search]` and `limits`
/// added to its `[limits]`.
fn scenario(dir: &Path, search: &str, limits: &str) -> std::path::PathBuf {
    let text = format!(
        "{}{limits}\n[search]\nparameter = \"messages.rate\"\nstart = 5\nfactor = 2\n{search}\n",
        tiny_toml("tiny-capacity", "\"sse\", \"websocket\"")
    );
    let path = dir.join("tiny-capacity.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn capacity(path: &Path, out: &Path) -> (Option<i32>, Value, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .arg("capacity")
        .arg(path)
        .args(["--transports", "websocket", "--json", "--quiet", "--out"])
        .arg(out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let json = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.code(), json, err)
}

#[test]
fn a_search_where_every_step_holds_ends_at_its_last_step() {
    let tmp = tempfile::tempdir().unwrap();
    let path = scenario(tmp.path(), "steps = 2\nrefine = 0\nmax_p99 = \"10s\"", "");
    let (code, c, err) = capacity(&path, tmp.path());
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(c["schema"], "chatbench-capacity/1");
    assert_eq!(c["complete"], true);
    let t = &c["transports"][0];
    assert_eq!(t["transport"], "websocket");
    let steps = t["steps"].as_array().unwrap();
    let values: Vec<f64> = steps.iter().map(|s| s["value"].as_f64().unwrap()).collect();
    assert_eq!(values, [5.0, 10.0]);
    assert!(steps.iter().all(|s| s["verdict"] == "holds"), "{t:#}");
    assert_eq!(t["stopped"], "no limit broke in 2 steps, up to 10");
    assert_eq!(t["knee"]["value"], 10.0);
    // 2 rooms × 2 senders × 10 msg/s to 4 receivers each: about 160
    // deliveries a second at the knee.
    let d = t["knee"]["delivered_per_s"].as_f64().unwrap();
    assert!((100.0..220.0).contains(&d), "{d}");
    // Each step is an ordinary run folder, and the report is written.
    let dir = Path::new(c["run_id"].as_str().unwrap());
    let root = tmp.path().join("tiny-capacity").join(dir);
    for s in steps {
        let run = root.join(s["run"].as_str().unwrap()).join("run.json");
        assert!(run.is_file(), "{}", run.display());
    }
    let report = std::fs::read_to_string(root.join("REPORT.md")).unwrap();
    assert!(report.contains("## Knee per transport"), "{report}");
    assert!(report.contains("| websocket | 10 |"), "{report}");
    assert!(root.join("charts/capacity.png").is_file());
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("capacity.json")).unwrap())
            .unwrap();
    assert_eq!(file, c);
}

#[test]
fn a_search_whose_first_step_breaks_has_no_knee() {
    let tmp = tempfile::tempdir().unwrap();
    let path = scenario(tmp.path(), "steps = 3\nmax_p99 = \"1us\"", "");
    let (code, c, err) = capacity(&path, tmp.path());
    assert_eq!(code, Some(0), "{err}");
    let t = &c["transports"][0];
    assert_eq!(t["steps"].as_array().unwrap().len(), 1, "{t:#}");
    assert_eq!(t["steps"][0]["verdict"], "breaks");
    let why = t["stopped"].as_str().unwrap();
    assert!(
        why.starts_with("the first step, 5, broke a limit: p99 ")
            && why.ends_with(" over max_p99 1µs"),
        "{why}"
    );
    assert!(t["knee"].is_null());
}

#[test]
fn a_search_stops_where_the_load_generator_is_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    // Any run spends more than 0.1% of the load generator's CPU.
    let path = scenario(
        tmp.path(),
        "steps = 3\nmax_p99 = \"10s\"",
        "loadgen_cpu = 0.001\n",
    );
    let (code, c, err) = capacity(&path, tmp.path());
    assert_eq!(code, Some(0), "{err}");
    let t = &c["transports"][0];
    assert_eq!(t["steps"][0]["verdict"], "loadgen_limited", "{t:#}");
    let why = t["stopped"].as_str().unwrap();
    assert!(
        why.starts_with("the load generator ran out at 5: load generator: CPU "),
        "{why}"
    );
    assert!(t["knee"].is_null());
}

/// A server under `server.cpu_quota` gets that much CPU and no more, and
/// its CPU share counts against the quota: 20,000 deliveries a second
/// take more than a tenth of a CPU, so the step breaks on the server's
/// side. Where the machine has no writable cgroup `cpu` controller, the
/// search fails saying so.
#[test]
fn a_server_under_a_cpu_quota_runs_out_at_its_quota() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tiny_toml("tiny-capacity", "\"websocket\"")
        .replace("rooms = 2\nclients_per_room = 4\nsenders_per_room = 2", "rooms = 1\nclients_per_room = 100\nsenders_per_room = 1")
        .replace("rate = 10.0\narrival = \"poisson\"", "rate = 200.0\narrival = \"constant\"")
        + "\n[server]\ncpu_quota = 0.1\n\n[search]\nparameter = \"messages.rate\"\nstart = 200\nsteps = 1\nrefine = 0\nmax_p99 = \"10s\"\n";
    assert!(
        text.contains("clients_per_room = 100") && text.contains("rate = 200.0"),
        "{text}"
    );
    let path = tmp.path().join("tiny-capacity.toml");
    std::fs::write(&path, text).unwrap();
    let (code, c, err) = capacity(&path, tmp.path());
    if let Err(why) = chatbench_loadgen::quota::CpuQuota::create(1.0) {
        assert_eq!(code, Some(1), "{why}: {err}");
        assert_eq!(c["complete"], false);
        let problem = c["problems"][0].as_str().unwrap();
        assert!(
            problem.starts_with("websocket at 200: ")
                && problem.contains("server.cpu_quota needs a writable cgroup `cpu` controller"),
            "{problem}"
        );
        return;
    }
    assert_eq!(code, Some(0), "{err}");
    let t = &c["transports"][0];
    let step = &t["steps"][0];
    assert_eq!(step["verdict"], "breaks", "{t:#}");
    assert_eq!(step["server_cpus"], 0.1);
    let share = step["server_cpu_share"].as_f64().unwrap();
    // The kernel holds the server to its quota: at most one period's
    // slack over the measured seconds.
    assert!((0.9..=1.02).contains(&share), "{share}");
    let why = t["stopped"].as_str().unwrap();
    assert!(
        why.contains("server: CPU ")
            && why.contains("% of its 0.1 CPU (its quota) over the limit of 90%"),
        "{why}"
    );
    // A server held at its quota used it up in most of its 10 ms periods,
    // and its run says so: run.json's counts, and its report.
    let throttled = step["throttled_share"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&throttled), "{throttled}");
    let root = tmp
        .path()
        .join("tiny-capacity")
        .join(c["run_id"].as_str().unwrap())
        .join(step["run"].as_str().unwrap());
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("run.json")).unwrap()).unwrap();
    let periods = &run["runs"][0]["server"]["quota_periods"];
    let (ran, held) = (
        periods["ran"].as_u64().unwrap(),
        periods["throttled"].as_u64().unwrap(),
    );
    assert!(held <= ran && ran > 0, "{periods}");
    assert_eq!(held as f64 / ran as f64, throttled);
    let o = Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .arg("report")
        .arg(&root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = std::fs::read_to_string(root.join("REPORT.md")).unwrap();
    assert!(
        report.contains(", a quota of 0.1 CPU (`server.cpu_quota`) (load generator CPUs"),
        "{report}"
    );
    let line = format!(
        "The server ran under a CPU quota of 0.1 CPU (`server.cpu_quota`). The 10 ms periods of the measured window in which it used up its quota and waited for the next: websocket at messages.rate 200.0: {held} of {ran} ({:.0}%).",
        throttled * 100.0
    );
    assert!(report.contains(&line), "{line}\n{report}");
}

#[test]
fn scenarios_without_a_usable_search_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let quick = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/quick.toml");
    let (code, _, err) = capacity(&quick, tmp.path());
    assert_eq!(code, Some(1));
    assert!(err.contains("quick.toml: no [search] section"), "{err}");
    let path = scenario(tmp.path(), "max_p99 = \"1s\"\nsteps = 0", "");
    let (code, _, err) = capacity(&path, tmp.path());
    assert_eq!(code, Some(1));
    assert!(
        err.contains("field `search.steps`: must be between 1 and 30, got 0"),
        "{err}"
    );
    let path = scenario(
        tmp.path(),
        "max_p99 = \"1s\"\n[sweep]\nparameter = \"messages.rate\"\nvalues = [1, 2]",
        "",
    );
    let (code, _, err) = capacity(&path, tmp.path());
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot also have [sweep]"), "{err}");
    assert!(!tmp.path().join("tiny-capacity").exists());
}
