//! `chatbench advise`: the workload from flags, the references from the
//! committed runs under `results/` (or from a calibration run on this
//! machine with `--measure`), and the answer as text or JSON.

use anyhow::Context;
use chatbench_results::advise::{self, Reference, Workload};
use chatbench_results::run_file::RunFile;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// `chatbench advise`'s flags.
#[derive(Debug, clap::Args)]
pub struct AdviseArgs {
    /// Clients; each receives every message of its room.
    #[arg(long)]
    clients: u64,
    /// Rooms the clients are spread over evenly [default: 1].
    #[arg(long, conflicts_with = "room_size")]
    rooms: Option<u64>,
    /// Clients per room, instead of --rooms.
    #[arg(long)]
    room_size: Option<u64>,
    /// Messages per second into each room, all its senders together.
    #[arg(long)]
    rate: f64,
    /// Clients of each room that send.
    #[arg(long, default_value_t = 1)]
    senders: u64,
    /// Round-trip time between clients and the server.
    #[arg(long, default_value = "50ms", value_parser = crate::humantime_parse)]
    rtt: Duration,
    /// Packet loss each way: 1% or 0.01.
    #[arg(long, default_value = "0", value_parser = parse_share)]
    loss: f64,
    /// The clients are phones on LTE: add each transport's radio energy
    /// and rank by it.
    #[arg(long)]
    mobile: bool,
    /// A transport fits only with a p99 delivery latency at most this.
    #[arg(long, value_parser = crate::humantime_parse)]
    max_p99: Option<Duration>,
    /// A transport fits only if the server needs at most this many CPU
    /// cores for the workload.
    #[arg(long, value_name = "CORES")]
    max_server_cpu: Option<f64>,
    /// Short polling's interval.
    #[arg(long, default_value = "1s", value_parser = crate::humantime_parse)]
    poll_interval: Duration,
    /// A long poll's longest wait.
    #[arg(long, default_value = "30s", value_parser = crate::humantime_parse)]
    long_poll_wait: Duration,
    /// The server's SSE keep-alive interval.
    #[arg(long, default_value = "15s", value_parser = crate::humantime_parse)]
    sse_keepalive: Duration,
    /// The server's WebSocket ping interval.
    #[arg(long, default_value = "30s", value_parser = crate::humantime_parse)]
    ws_ping: Duration,
    /// The results root whose runs are the references.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Run a short calibration of the workload on this machine first (a
    /// spawned server, the four transports) and answer from it alone.
    #[arg(long)]
    measure: bool,
    /// With --measure: at most this many clients (whole rooms dropped, or
    /// one room shrunk, to fit; the rate per room kept).
    #[arg(long, default_value_t = 200, requires = "measure")]
    measure_clients: u64,
    /// With --measure: the measured duration of each transport.
    #[arg(long, default_value = "10s", value_parser = crate::humantime_parse, requires = "measure")]
    measure_duration: Duration,
    /// With --measure: where the calibration run's folder goes.
    #[arg(long, default_value = "results-advise", requires = "measure")]
    measure_out: PathBuf,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
}

/// `1%` or `0.01`.
fn parse_share(s: &str) -> Result<f64, String> {
    let (num, scale) = match s.strip_suffix('%') {
        Some(n) => (n, 0.01),
        None => (s, 1.0),
    };
    num.trim()
        .parse::<f64>()
        .map(|v| v * scale)
        .map_err(|_| format!("expected a share such as 1% or 0.01, got {s:?}"))
}

impl AdviseArgs {
    fn workload(&self) -> anyhow::Result<Workload> {
        let rooms = match (self.rooms, self.room_size) {
            (Some(r), _) => r,
            (None, Some(0)) => anyhow::bail!("--room-size: must be at least 1"),
            (None, Some(size)) => self.clients.div_ceil(size),
            (None, None) => 1,
        };
        let w = Workload {
            clients: self.clients,
            rooms,
            rate: self.rate,
            senders: self.senders,
            rtt: self.rtt,
            loss: self.loss,
            mobile: self.mobile,
            poll_interval: self.poll_interval,
            long_poll_wait: self.long_poll_wait,
            sse_keepalive: self.sse_keepalive,
            ws_ping: self.ws_ping,
            max_p99: self.max_p99,
            max_server_cpu: self.max_server_cpu,
        };
        w.check()
            .map_err(|(flag, why)| anyhow::anyhow!("{flag}: {why}"))?;
        Ok(w)
    }
}

/// The references in every run folder under `root` (`results/<scenario>/
/// <run-id>/run.json`), leaving out A/B folders and peers' runs, parts of
/// sharded runs and runs that did not complete. Sorted by folder.
pub fn load_references(root: &Path) -> anyhow::Result<Vec<Reference>> {
    let mut dirs = Vec::new();
    let scenarios = std::fs::read_dir(root)
        .with_context(|| format!("cannot read the results folder {}", root.display()))?;
    for scenario in scenarios.flatten() {
        let name = scenario.file_name();
        if name == "ab" || name == "peers" || !scenario.path().is_dir() {
            continue;
        }
        for run in std::fs::read_dir(scenario.path())?.flatten() {
            if run.path().join("run.json").is_file() {
                dirs.push(run.path());
            }
        }
    }
    dirs.sort();
    let mut refs = Vec::new();
    for dir in dirs {
        let run = RunFile::read(&dir).with_context(|| format!("reading {}", dir.display()))?;
        if run.complete && !run.is_shard_part() {
            refs.extend(advise::references(&run, &dir.display().to_string()));
        }
    }
    Ok(refs)
}

/// Runs the workload's calibration scenario in a child `chatbench run`
/// and returns its folder.
fn calibrate(args: &AdviseArgs, w: &Workload) -> anyhow::Result<PathBuf> {
    let (name, clients, duration) = (
        "advise-calibration",
        args.measure_clients,
        args.measure_duration,
    );
    let toml = w.scenario_toml(name, clients, duration);
    // Refused here with its reason rather than by the child run.
    let scenario = chatbench_results::scenario::Scenario::parse(&toml, Path::new(name))?;
    let mut file = tempfile::Builder::new()
        .prefix(name)
        .suffix(".toml")
        .tempfile()?;
    std::io::Write::write_all(&mut file, toml.as_bytes())?;
    eprintln!(
        "calibrating: {} rooms of {} on this machine, {} s a transport",
        scenario.clients.rooms,
        scenario.clients.clients_per_room,
        duration.as_secs()
    );
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("run")
        .arg(file.path())
        .arg("--out")
        .arg(&args.measure_out)
        .args(["--json", "--quiet"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot start the calibration run")?;
    if !out.status.success() {
        anyhow::bail!("the calibration run failed ({})", out.status);
    }
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .context("the calibration run printed no JSON summary")?;
    let dir = summary["dir"]
        .as_str()
        .context("the calibration run's summary names no folder")?;
    Ok(PathBuf::from(dir))
}

/// `chatbench advise`.
pub fn cmd_advise(args: &AdviseArgs) -> anyhow::Result<ExitCode> {
    let w = args.workload()?;
    let refs = if args.measure {
        let dir = calibrate(args, &w)?;
        let run = RunFile::read(&dir)?;
        advise::references(&run, &dir.display().to_string())
    } else {
        load_references(&args.results)?
    };
    if refs.is_empty() {
        anyhow::bail!(
            "no reference runs under {}: run chatbench from the repository's root, name another folder with --results, or measure this machine with --measure",
            args.results.display()
        );
    }
    let answer = advise::advise(&w, &refs);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", advise::text(&answer));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_share;

    #[test]
    fn shares_take_a_percent_or_a_fraction() {
        assert_eq!(parse_share("1%").unwrap(), 0.01);
        assert_eq!(parse_share("0.02").unwrap(), 0.02);
        assert_eq!(
            parse_share("lots").unwrap_err(),
            "expected a share such as 1% or 0.01, got \"lots\""
        );
    }
}
