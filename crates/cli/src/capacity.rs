//! `chatbench capacity`: a scenario's `[search]` run step by step, each
//! step an ordinary transport run (its own folder under `steps/`), judged
//! and walked by `chatbench_results::capacity`, into `capacity.json`,
//! REPORT.md and a chart.

use anyhow::Context;
use chatbench_loadgen::run::{run, RunError, RunOptions};
use chatbench_loadgen::server::ServerTarget;
use chatbench_results::capacity::{
    judge, CapacityFile, Knee, Step, TransportSearch, Verdict, Walk, SCHEMA,
};
use chatbench_results::run_file::new_run_id;
use chatbench_results::scenario::Scenario;
use chatbench_results::Transport;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// `chatbench capacity`'s flags.
#[derive(Debug, clap::Args)]
pub struct CapacityArgs {
    /// A scenario with a [search] section, e.g. scenarios/capacity-fan-out.toml.
    scenario: PathBuf,
    /// Only these transports (comma-separated).
    #[arg(long, value_delimiter = ',')]
    transports: Option<Vec<Transport>>,
    /// Results root: the search goes to <out>/<scenario>/<run-id>/.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Do not pin the server and the load generator to separate CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Do not write REPORT.md and the chart.
    #[arg(long)]
    no_report: bool,
    /// Print only warnings, errors and the folder.
    #[arg(long, short)]
    quiet: bool,
    /// Print capacity.json on stdout (the rest goes to stderr).
    #[arg(long)]
    json: bool,
}

fn write(dir: &Path, file: &CapacityFile) -> anyhow::Result<()> {
    let tmp = dir.join("capacity.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(file)?)?;
    std::fs::rename(tmp, dir.join("capacity.json"))?;
    Ok(())
}

/// What one search needs besides the step.
struct Setting {
    cpus: chatbench_results::run_file::CpuPlacement,
    loadgen_cpus: usize,
    server_cpus: Option<usize>,
    stop: CancellationToken,
    progress: Option<tokio::sync::mpsc::UnboundedSender<chatbench_loadgen::engine::Progress>>,
}

impl Setting {
    fn options(&self, step: Scenario, out: PathBuf) -> anyhow::Result<RunOptions> {
        let exe = std::env::current_exe().context("cannot find my own executable")?;
        Ok(RunOptions {
            scenario: step,
            out,
            target: ServerTarget::Spawn {
                exe: exe.clone(),
                args: vec!["serve".into()],
                cpus: self.cpus.server.clone(),
                log: None,
            },
            keep_going: false,
            cpus: self.cpus.clone(),
            loadgen_cpus: self.loadgen_cpus,
            server_cpus: self.server_cpus,
            shard: None,
            worker_exe: exe,
            command: std::env::args().collect(),
            build: crate::build_info(),
            progress: self.progress.clone(),
            stop: self.stop.clone(),
        })
    }
}

/// Ends a search early: the file says so, and why.
enum Halt {
    Interrupted,
}

/// One transport's search; `file` is written after every step.
fn search_transport(
    rt: &tokio::runtime::Runtime,
    set: &Setting,
    scenario: &Scenario,
    t: Transport,
    dir: &Path,
    file: &mut CapacityFile,
) -> anyhow::Result<Result<(), Halt>> {
    let search = scenario.search.clone().context("no [search]")?;
    let mut walk = Walk::new(&search);
    // The transport's entry stays the file's last while it runs, updated
    // and written after every step.
    file.transports.push(TransportSearch {
        transport: t,
        steps: Vec::new(),
        stopped: "running".into(),
        knee: None,
    });
    let mut value = Some(walk.first());
    let mut n = 0;
    while let Some(v) = value {
        n += 1;
        let mut step = scenario
            .at_search_value(v)
            .map_err(|e| anyhow::anyhow!("{}: [search] at {v}: {e}", scenario.name))?;
        step.transports = vec![t];
        step.name = format!("{t}-{n:02}");
        let opts = set.options(step, dir.join("steps"))?;
        let (verdict, taken) = match rt.block_on(run(opts)) {
            Ok(done) => {
                let (Some(r), Some(sum)) = (done.file.runs.first(), done.file.summary.first())
                else {
                    anyhow::bail!("{t} at {v}: the step's run.json holds no run");
                };
                let verdict = judge(r, sum, &search);
                if file.environment.is_none() {
                    file.environment = Some(done.file.environment.clone());
                }
                let rel = done
                    .dir
                    .strip_prefix(dir)
                    .unwrap_or(&done.dir)
                    .display()
                    .to_string();
                let cpus = chatbench_loadgen::run::server_cpus(set.server_cpus, scenario);
                let step = Step::of(v, rel, verdict.clone(), r, sum, cpus);
                (verdict, Some(step))
            }
            Err(RunError::Interrupted { .. }) => {
                file.problems.push(format!("{t} at {v}: interrupted"));
                if let Some(ts) = file.transports.last_mut() {
                    ts.stopped = "interrupted".into();
                }
                write(dir, file)?;
                return Ok(Err(Halt::Interrupted));
            }
            Err(e) => {
                file.problems.push(format!("{t} at {v}: {e}"));
                (Verdict::Failed(e.to_string()), None)
            }
        };
        value = walk.next(v, &verdict);
        if let Some(ts) = file.transports.last_mut() {
            ts.steps.extend(taken);
            ts.knee = Knee::of(&ts.steps);
            ts.stopped = walk.stopped().unwrap_or("running").to_owned();
        }
        write(dir, file)?;
    }
    Ok(Ok(()))
}

/// `chatbench capacity`.
pub fn cmd_capacity(args: &CapacityArgs) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(&args.scenario)?;
    if scenario.search.is_none() {
        anyhow::bail!(
            "{}: no [search] section: `chatbench capacity` raises the load that [search] names (docs/capacity.md)",
            args.scenario.display()
        );
    }
    let transports: Vec<Transport> = match &args.transports {
        Some(list) => {
            if let Some(t) = list.iter().find(|t| !scenario.transports.contains(t)) {
                anyhow::bail!(
                    "--transports: {t} is not among the scenario's transports ({})",
                    scenario
                        .transports
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            list.clone()
        }
        None => scenario.transports.clone(),
    };
    let (cpus, loadgen_cpus, server_cpus) = crate::pin(args.no_pin, true)?;
    let dir = args.out.join(&scenario.name).join(new_run_id());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut file = CapacityFile {
        schema: SCHEMA.into(),
        run_id: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        command: std::env::args().collect(),
        environment: None,
        scenario: scenario.clone(),
        complete: false,
        problems: Vec::new(),
        transports: Vec::new(),
    };
    write(&dir, &file)?;
    let rt = crate::runtime()?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let display = rt.spawn(crate::progress::display(rx));
    let stop = CancellationToken::new();
    let cancel = stop.clone();
    rt.spawn(async move {
        chatbench_server::shutdown_signal().await;
        cancel.cancel();
    });
    let set = Setting {
        cpus,
        loadgen_cpus,
        server_cpus,
        stop,
        progress: (!args.quiet).then_some(tx),
    };
    let mut interrupted = false;
    for t in transports {
        if let Err(Halt::Interrupted) = search_transport(&rt, &set, &scenario, t, &dir, &mut file)?
        {
            interrupted = true;
            break;
        }
    }
    drop(set);
    let _ = rt.block_on(display);
    file.complete = !interrupted && file.problems.is_empty();
    write(&dir, &file)?;
    let human = |text: String| crate::say(args.json, text);
    if !args.quiet {
        human(chatbench_report::capacity::summary(&file));
    }
    if !args.no_report {
        let report = chatbench_report::capacity::write_report(&dir, &file)?;
        if !args.quiet {
            human(format!("report: {}\n", report.display()));
        }
    }
    human(format!("results: {}\n", dir.display()));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&file)?);
    }
    Ok(if interrupted {
        eprintln!("chatbench: the search was interrupted; capacity.json says complete: false");
        ExitCode::from(130)
    } else if file.complete {
        ExitCode::SUCCESS
    } else {
        eprintln!("chatbench: {}", file.problems.join("; "));
        ExitCode::FAILURE
    })
}

/// `chatbench report` on a search's folder: REPORT.md and the chart again
/// from its `capacity.json`.
pub fn report(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("capacity.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let file: CapacityFile = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a capacity file", path.display()))?;
    if file.schema != SCHEMA {
        anyhow::bail!(
            "{}: schema {:?}, expected {SCHEMA:?}",
            path.display(),
            file.schema
        );
    }
    Ok(chatbench_report::capacity::write_report(dir, &file)?)
}
