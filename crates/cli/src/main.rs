//! `chatbench`: a thin front end over the chatbench libraries.

/// jemalloc rather than glibc's malloc: it keeps no headers inside freed
/// or untouched pages, so per-connection buffers that are mostly unused cost
/// less resident memory (SSE 13.3 → 9.6 KiB, long poll 16.0 → 8.5 KiB per
/// connection at 1,000 clients; see results/README.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod advise;
mod capacity;
mod floor;
mod progress;

use anyhow::{bail, Context};
use chatbench_loadgen::resources::BuildInfo;
use chatbench_loadgen::run::{run, RunError, RunOptions};
use chatbench_loadgen::server::ServerTarget;
use chatbench_results::run_file::{CpuPlacement, RunFile};
use chatbench_results::scenario::{Overrides, Scenario};
use chatbench_results::Transport;
use chatbench_server::affinity;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "chatbench",
    version,
    about = "What does real-time chat cost over HTTP short polling, long polling, SSE and WebSocket?"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario and write results/<scenario>/<run-id>/.
    Run(RunArgs),
    /// Run the chat server (same flags as chatbench-server).
    Serve(chatbench_server::ServerArgs),
    /// Draw the charts and write REPORT.md for a run folder (or a
    /// capacity search's folder).
    Report {
        /// The run folder (results/<scenario>/<run-id>).
        run_dir: PathBuf,
    },
    /// Evaluate the scenario's [[expect]] rules on a run; exit 1 if any fails.
    Check {
        /// The run folder.
        run_dir: PathBuf,
        /// Also fail if any transport run lost or duplicated a message, or
        /// ended incomplete, whatever the rules say.
        #[arg(long)]
        no_loss: bool,
    },
    /// Compare two runs transport by transport (A is the baseline).
    Compare {
        /// The baseline run folder.
        run_a: PathBuf,
        /// The run folder to compare with it.
        run_b: PathBuf,
        /// Exit 1 when something got worse beyond the noise (`regression`),
        /// when a figure that does not depend on the machine's speed moved
        /// beyond its tolerance either way (`drift`: bytes and requests per
        /// message 2%, server memory per idle connection 30%; CI's guard),
        /// or never (`never`, the default).
        #[arg(long, value_enum, default_value_t = FailOn::Never)]
        fail_on: FailOn,
        /// The smallest relative change that counts, e.g. 0.1 for 10%.
        #[arg(long, default_value_t = chatbench_report::compare::DEFAULT_MIN_CHANGE)]
        min_change: f64,
        /// Print the comparison as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Write a run's figures as CSV: one row per transport, sweep point and
    /// repetition.
    Export {
        /// The run folder.
        run_dir: PathBuf,
        /// CSV, the only format (the flag says what you get).
        #[arg(long, required = true)]
        csv: bool,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Which transports fit a workload, and what each would cost: latency,
    /// bytes, requests, server CPU and memory, radio energy on phones, and
    /// the break-even points, each figure naming the run or model it came
    /// from (the committed runs under results/, or --measure on this
    /// machine).
    Advise(advise::AdviseArgs),
    /// Raise the offered load of a scenario's [search] step by step, per
    /// transport, until a limit breaks (p99, loss, server CPU), then narrow
    /// in on the knee; write results/<scenario>/<run-id>/capacity.json,
    /// REPORT.md and a chart.
    Capacity(capacity::CapacityArgs),
    /// Measure this machine's write floor: the CPU of one write of a frame
    /// to each of many loopback sockets in turn, the least a fan-out server
    /// spends per delivery (scripts/fan-out-floor.sh sets the server's
    /// beside it).
    Floor(floor::FloorArgs),
    /// Join run folders of one scenario (same build and machine) into a new
    /// one: more repetitions, or transports that were run separately.
    Merge {
        /// Two or more run folders, in order.
        #[arg(required = true, num_args = 2..)]
        run_dirs: Vec<PathBuf>,
        /// Results root; the new folder is <out>/<scenario>/<run-id>.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Do not draw charts and REPORT.md.
        #[arg(long)]
        no_report: bool,
    },
    /// Print a shell completion script for chatbench, e.g.
    /// `chatbench completions bash > ~/.local/share/bash-completion/completions/chatbench`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff) for chatbench, or for one of its
    /// subcommands, e.g. `chatbench man run > ~/.local/share/man/man1/chatbench-run.1`.
    Man {
        /// A subcommand (run, serve, report, ...); the top-level page when
        /// left out.
        command: Option<String>,
    },
    /// Internal: run one load-generator shard for `chatbench run`, which
    /// starts it when a scenario sets `[clients] processes` above 1 (a task
    /// on the first stdin line, JSON lines both ways).
    #[command(hide = true)]
    Worker,
}

/// When `compare` fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FailOn {
    /// Never: the comparison is for reading.
    Never,
    /// When any metric got worse beyond the noise.
    Regression,
    /// When a guarded figure moved beyond its tolerance, either way
    /// (`chatbench_report::compare::GUARDED`).
    Drift,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The scenario file (TOML), e.g. scenarios/quick.toml.
    scenario: PathBuf,
    /// Only these transports (comma-separated: short_poll,long_poll,sse,websocket).
    #[arg(long, value_delimiter = ',')]
    transports: Option<Vec<Transport>>,
    /// Results root.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Use this running server (http://127.0.0.1:PORT) instead of spawning one.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Process id of the --server, for its CPU and memory figures.
    #[arg(long, requires = "server")]
    server_pid: Option<u32>,
    /// The CA certificate (PEM) the --server's TLS certificate chains to,
    /// for scenarios with `protocol.tls` (`chatbench serve --tls
    /// --tls-ca-out FILE` writes one).
    #[arg(long, requires = "server", value_name = "PEM")]
    server_ca: Option<PathBuf>,
    /// Repetitions (overrides the scenario).
    #[arg(long)]
    repeat: Option<u32>,
    /// Seed (overrides the scenario).
    #[arg(long)]
    seed: Option<u64>,
    /// Measured duration (overrides the scenario), e.g. 5s.
    #[arg(long, value_parser = humantime_parse)]
    duration: Option<std::time::Duration>,
    /// Go on with the next transport when the server dies.
    #[arg(long)]
    keep_going: bool,
    /// Do not pin the server and the load generator to separate CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Keep every CPU out of idle states for the run (holds
    /// /dev/cpu_dma_latency at 0, as cyclictest does; needs root), so no
    /// latency includes waking a halted CPU. Recorded in run.json.
    #[arg(long)]
    hold_cpus_awake: bool,
    /// Do not draw charts and REPORT.md at the end.
    #[arg(long)]
    no_report: bool,
    /// Print a JSON summary on stdout (the table and messages go to stderr).
    #[arg(long)]
    json: bool,
    /// Print only warnings, errors and the results folder: no progress, no
    /// per-transport lines, no table.
    #[arg(long, short, conflicts_with = "verbose")]
    quiet: bool,
    /// Also log every client error as it happens, with its cause (the
    /// load generator's debug log; RUST_LOG, when set, decides instead).
    #[arg(long, short)]
    verbose: bool,
    /// Run shard I of N (from 0) of a run spread over N machines: every
    /// N-th client of every room, on the schedule --start-at fixes, into a
    /// partial folder; `chatbench merge` joins the N folders. Needs
    /// --server and --start-at.
    #[arg(long, value_name = "I/N", requires_all = ["server", "start_at"])]
    shard: Option<String>,
    /// With --shard: when the first transport run's ramp starts, on the
    /// server's clock, as RFC 3339 (2026-12-01T20:00:00Z). Every shard gets
    /// the same value.
    #[arg(long, value_name = "TIME", requires = "shard")]
    start_at: Option<String>,
    /// Let --server name a host that is not on loopback (another machine's
    /// server). Without it chatbench loads only loopback servers.
    #[arg(long, requires = "server")]
    allow_remote: bool,
    /// Test only: add this many µs to every clock reading, to stand for a
    /// machine whose clock is off.
    #[arg(long, hide = true, allow_negative_numbers = true)]
    clock_skew_us: Option<i64>,
}

/// `--shard I/N` and `--start-at TIME`.
fn shard_options(
    shard: Option<&str>,
    start_at: Option<&str>,
) -> anyhow::Result<Option<chatbench_loadgen::run::ShardOptions>> {
    let (Some(shard), Some(start_at)) = (shard, start_at) else {
        return Ok(None);
    };
    let bad = || {
        anyhow::anyhow!(
            "--shard {shard}: expected I/N with N from 2 to 1024 and I from 0 to N-1, e.g. 0/4"
        )
    };
    let (i, n) = shard.split_once('/').ok_or_else(bad)?;
    let (index, of): (u32, u32) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if !(2..=1024).contains(&of) || index >= of {
        return Err(bad());
    }
    let at = humantime::parse_rfc3339_weak(start_at).map_err(|e| {
        anyhow::anyhow!("--start-at {start_at}: {e}; expected RFC 3339, e.g. 2026-12-01T20:00:00Z")
    })?;
    let start_at_unix_us = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| anyhow::anyhow!("--start-at {start_at}: before 1970"))?
        .as_micros() as u64;
    Ok(Some(chatbench_loadgen::run::ShardOptions {
        index,
        of,
        start_at_unix_us,
    }))
}

fn humantime_parse(s: &str) -> Result<std::time::Duration, String> {
    chatbench_results::fmt::parse_duration(s)
}

/// Returns every jemalloc arena's freed pages to the system: the load
/// generator calls it before each transport run's memory baseline.
fn purge_jemalloc() {
    // "arena.<MALLCTL_ARENAS_ALL>.purge", MALLCTL_ARENAS_ALL being 4096.
    const NAME: &[u8] = b"arena.4096.purge\0";
    // SAFETY: a NUL-terminated name of a control that neither reads nor
    // writes a value, so every pointer is null and every length 0, as
    // jemalloc's mallctl(3) asks for it; jemalloc is this binary's allocator.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            NAME.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

fn main() -> ExitCode {
    chatbench_loadgen::resources::set_release_freed(purge_jemalloc);
    let cli = Cli::parse();
    let verbose = matches!(&cli.command, Command::Run(a) if a.verbose);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                if verbose {
                    "warn,chatbench_server=info,chatbench_loadgen=debug".into()
                } else {
                    "warn,chatbench_server=info".into()
                }
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chatbench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the tokio runtime")
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            if let Some(list) = &args.cpus {
                let cpus = affinity::parse_cpu_list(list)?;
                affinity::pin(&cpus).with_context(|| format!("cannot pin to CPUs {list}"))?;
            }
            runtime()?.block_on(chatbench_server::serve(&args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => cmd_run(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "chatbench",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { command } => cmd_man(command),
        Command::Worker => {
            runtime()?
                .block_on(chatbench_loadgen::worker::worker_main())
                .context("worker")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { run_dir } => {
            let path = if run_dir.join("capacity.json").is_file() {
                capacity::report(&run_dir)?
            } else {
                chatbench_report::report(&run_dir)?.report
            };
            println!("report: {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { run_dir, no_loss } => cmd_check(&run_dir, no_loss),
        Command::Compare {
            run_a,
            run_b,
            fail_on,
            min_change,
            json,
        } => cmd_compare(&run_a, &run_b, fail_on, min_change, json),
        Command::Export {
            run_dir,
            csv: _,
            output,
        } => cmd_export(&run_dir, output),
        Command::Merge {
            run_dirs,
            out,
            no_report,
        } => cmd_merge(&run_dirs, &out, no_report),
        Command::Floor(args) => cmd_floor(&args),
        Command::Advise(args) => advise::cmd_advise(&args),
        Command::Capacity(args) => capacity::cmd_capacity(&args),
    }
}

/// `chatbench floor`.
fn cmd_floor(args: &floor::FloorArgs) -> anyhow::Result<ExitCode> {
    let r = floor::measure(args)?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else if let Some(read) = &r.read {
        println!(
            "{} frames of {} bytes over {} connections at {}/s: {:.3} µs of the reader's CPU per frame ({} ms of CPU; {} reads, {} epoll waits); {} bytes read",
            r.writes,
            args.bytes,
            args.connections,
            args.rate,
            read.cpu_us_per_frame,
            read.reader_cpu_us / 1000,
            read.reads,
            read.waits,
            r.bytes_read
        );
    } else {
        println!(
            "{} writes of {} bytes to {} connections: {:.3} µs of CPU per write ({} ms of CPU in {} ms); {} bytes read",
            r.writes,
            args.bytes,
            args.connections,
            r.cpu_us_per_write,
            r.writer_cpu_us / 1000,
            r.wall_us / 1000,
            r.bytes_read
        );
    }
    anyhow::ensure!(
        r.bytes_read == r.writes * args.bytes as u64,
        "the reader read {} bytes of the {} written",
        r.bytes_read,
        r.writes * args.bytes as u64
    );
    Ok(ExitCode::SUCCESS)
}

/// `chatbench man [COMMAND]`.
fn cmd_man(command: Option<String>) -> anyhow::Result<ExitCode> {
    let top = <Cli as clap::CommandFactory>::command();
    let (page, title) = match command {
        None => (top, "chatbench".to_owned()),
        Some(name) => {
            let Some(sub) = top
                .get_subcommands()
                .find(|c| c.get_name() == name && !c.is_hide_set())
            else {
                let known: Vec<&str> = top
                    .get_subcommands()
                    .filter(|c| !c.is_hide_set())
                    .map(|c| c.get_name())
                    .collect();
                bail!("no subcommand {name:?}; chatbench has {}", known.join(", "));
            };
            (
                sub.clone()
                    .bin_name(format!("chatbench {name}"))
                    .display_name(format!("chatbench-{name}")),
                format!("chatbench-{name}"),
            )
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .title(title)
        .source(concat!("chatbench ", env!("CARGO_PKG_VERSION")))
        .render(&mut out)
        .context("cannot render the man page")?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&out)
        .context("cannot write the man page")?;
    Ok(ExitCode::SUCCESS)
}

/// `chatbench check RUN_DIR [--no-loss]`.
fn cmd_check(run_dir: &Path, no_loss: bool) -> anyhow::Result<ExitCode> {
    let run = RunFile::read(run_dir)?;
    if !run.complete {
        eprintln!(
            "chatbench: {} is incomplete ({}); an incomplete run checks nothing",
            run_dir.display(),
            run.problems.join("; ")
        );
        return Ok(ExitCode::FAILURE);
    }
    if run.scenario.expect.is_empty() && !no_loss {
        println!(
            "no [[expect]] rules in scenario {:?}; nothing to check",
            run.scenario.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut verdicts = chatbench_report::check::check(&run)?;
    if no_loss {
        verdicts.push(chatbench_report::check::no_loss(&run));
    }
    print!("{}", chatbench_report::check::render(&verdicts));
    Ok(if verdicts.iter().all(|v| v.pass) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `chatbench compare A B`.
fn cmd_compare(
    run_a: &Path,
    run_b: &Path,
    fail_on: FailOn,
    min_change: f64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if !(min_change >= 0.0 && min_change.is_finite()) {
        bail!("--min-change {min_change}: expected a fraction such as 0.1");
    }
    let a = RunFile::read(run_a)?;
    let b = RunFile::read(run_b)?;
    let c = chatbench_report::compare::compare(&a, &b, min_change);
    if json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{}", chatbench_report::compare::render(&a, &b, &c));
    }
    let incomplete: Vec<String> = [(run_a, &a), (run_b, &b)]
        .into_iter()
        .filter(|(_, r)| !r.complete)
        .map(|(dir, r)| format!("{} ({})", dir.display(), r.problems.join("; ")))
        .collect();
    if !incomplete.is_empty() {
        eprintln!(
            "chatbench: incomplete run(s), the comparison proves nothing: {}",
            incomplete.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    if fail_on == FailOn::Drift {
        let moved = chatbench_report::compare::drift(&a, &b, &c)
            .map_err(|e| anyhow::anyhow!("cannot guard {}: {e}", run_b.display()))?;
        if !moved.is_empty() {
            eprintln!(
                "chatbench: {} guarded figure(s) moved beyond their tolerance from {}:",
                moved.len(),
                run_a.display()
            );
            for d in &moved {
                eprintln!("  {d}");
            }
            eprintln!("a change that means to move them commits its run as the new reference");
            return Ok(ExitCode::FAILURE);
        }
        eprintln!(
            "chatbench: the guarded figures (bytes and requests per message, memory per idle connection) are within their tolerance of {}",
            run_a.display()
        );
    }
    let worse = c.regressions().count();
    if fail_on == FailOn::Regression && worse > 0 {
        eprintln!("chatbench: {worse} metric(s) got worse beyond the noise");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `chatbench export --csv RUN_DIR [-o FILE]`.
fn cmd_export(run_dir: &Path, output: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let run = RunFile::read(run_dir)?;
    match output {
        Some(path) => {
            let f = std::fs::File::create(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            run.write_csv(f)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => run.write_csv(std::io::stdout().lock())?,
    }
    if !run.complete {
        eprintln!(
            "chatbench: note: {} is incomplete ({})",
            run_dir.display(),
            run.problems.join("; ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `chatbench merge RUN_DIR...`.
fn cmd_merge(run_dirs: &[PathBuf], out: &Path, no_report: bool) -> anyhow::Result<ExitCode> {
    // Whole runs append repetitions; the shards of one run spread
    // over machines add up.
    let merged = chatbench_results::merge::merge(run_dirs, out, std::env::args().collect())?;
    print!(
        "{}",
        merged
            .file
            .table_fitting(console::Term::stdout().size_checked().map(|(_, c)| c))
    );
    if !no_report {
        let written = chatbench_report::report(&merged.dir)?;
        println!("report: {}", written.report.display());
    }
    println!("results: {}", merged.dir.display());
    Ok(ExitCode::SUCCESS)
}

/// The address of `--server`: an `http://` URL with a loopback IP and a
/// port, and no path beyond `/` (the server's routes are fixed).
fn parse_server_url(url: &str, allow_remote: bool) -> anyhow::Result<SocketAddr> {
    let bad = |why: &str| {
        anyhow::anyhow!(
            "--server {url}: {why}; expected http://IP:PORT, e.g. http://127.0.0.1:8080"
        )
    };
    let uri: http::Uri = url.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
    // A bare IP:PORT means http, as before.
    match uri.scheme_str() {
        Some("http") | None => {}
        Some(other) => return Err(bad(&format!("scheme {other}:// is not supported"))),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("user information is not supported"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad("a path or query is not supported"));
    }
    let port = authority.port_u16().ok_or_else(|| bad("no port"))?;
    let host = authority.host();
    let ip: std::net::IpAddr = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .map_err(|_| bad(&format!("{host} is not an IP address")))?;
    if !ip.is_loopback() && !allow_remote {
        bail!("--server {url}: chatbench only loads servers on loopback (127.0.0.0/8 or ::1) unless --allow-remote is given");
    }
    Ok(SocketAddr::new(ip, port))
}

fn cmd_run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        transports: args.transports.clone(),
        repeat: args.repeat,
        seed: args.seed,
        duration: args.duration,
    };
    let scenario = Scenario::load(&args.scenario)?.with_overrides(&overrides, &args.scenario)?;
    let shard = shard_options(args.shard.as_deref(), args.start_at.as_deref())?;
    if let Some(skew) = args.clock_skew_us {
        chatbench_loadgen::clock::set_clock_adjust_us(skew);
    }
    if args.server.is_some() {
        if scenario.server.cpu_quota.is_some() {
            anyhow::bail!(
                "{}: field `server.cpu_quota`: --server names a running server; a CPU quota is only for servers chatbench starts",
                args.scenario.display()
            );
        }
        for p in 0..scenario.points() {
            let k = scenario.at_point(p).map_or(1, |s| s.server.processes);
            if k > 1 {
                anyhow::bail!(
                    "{}: field `server.processes`: is {k}, but --server names one server process; several are only for servers chatbench starts",
                    args.scenario.display()
                );
            }
        }
    }
    // Pin before the runtime starts, so every worker thread inherits it.
    let (mut cpus, loadgen_cpus, server_cpus) = pin(args.no_pin, args.server.is_none())?;
    let _awake = if args.hold_cpus_awake {
        cpus.awake = true;
        Some(affinity::AwakeCpus::hold().context("--hold-cpus-awake")?)
    } else {
        None
    };
    let target = target_of(&args, &scenario, &cpus)?;
    let (progress_tx, progress_rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = RunOptions {
        scenario,
        out: args.out.clone(),
        target,
        keep_going: args.keep_going,
        cpus,
        loadgen_cpus,
        server_cpus,
        shard,
        worker_exe: std::env::current_exe().context("cannot find my own executable")?,
        command: std::env::args().collect(),
        build: build_info(),
        progress: (!args.quiet).then_some(progress_tx),
        stop: CancellationToken::new(),
    };
    let rt = runtime()?;
    let display = rt.spawn(progress::display(progress_rx));
    let stop = opts.stop.clone();
    // SIGINT and SIGTERM stop the run cleanly: the spawned server is torn
    // down and the folder says `complete: false`.
    rt.spawn(async move {
        chatbench_server::shutdown_signal().await;
        stop.cancel();
    });
    let result = rt.block_on(async {
        let result = run(opts).await;
        // `run` dropped its sender: the display drains and ends.
        let _ = display.await;
        result
    });
    match result {
        Ok(done) => finished(&args, &done, shard),
        Err(e @ RunError::Interrupted { .. }) => {
            eprintln!("chatbench: {e}");
            // 128 + SIGINT, as shells report a process stopped by Ctrl-C.
            Ok(ExitCode::from(130))
        }
        Err(e) => {
            eprintln!("chatbench: error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Pins the load generator when it spawns the server: the server gets the
/// first half of the allowed CPUs, the load generator the rest. Returns
/// the placement, and how many CPUs each side has (the server's when it is
/// spawned).
fn pin(no_pin: bool, spawn: bool) -> anyhow::Result<(CpuPlacement, usize, Option<usize>)> {
    let allowed = affinity::allowed_cpus();
    let mut cpus = CpuPlacement::default();
    let mut loadgen_cpus = allowed.len();
    let mut server_cpus = spawn.then_some(allowed.len());
    if spawn && !no_pin && allowed.len() >= 2 && cfg!(target_os = "linux") {
        let (server, ours) = allowed.split_at(allowed.len() / 2);
        affinity::pin(ours).context("cannot pin the load generator")?;
        cpus.server = Some(affinity::format_cpu_list(server));
        cpus.loadgen = Some(affinity::format_cpu_list(ours));
        loadgen_cpus = ours.len();
        server_cpus = Some(server.len());
    }
    Ok((cpus, loadgen_cpus, server_cpus))
}

/// Words for people: on stdout, or on stderr when `--json` keeps stdout
/// for the JSON document alone.
fn say(json: bool, text: String) {
    if json {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

/// The build this binary came from, as run.json records it.
fn build_info() -> BuildInfo {
    BuildInfo {
        commit: env!("CHATBENCH_COMMIT").into(),
        dirty: env!("CHATBENCH_DIRTY") == "true",
        rustc: env!("CHATBENCH_RUSTC").into(),
        target: env!("CHATBENCH_TARGET").into(),
        profile: env!("CHATBENCH_PROFILE").into(),
    }
}

/// The server a run measures: the one `--server` names, or one spawned
/// from this executable on the server's CPUs.
fn target_of(
    args: &RunArgs,
    scenario: &Scenario,
    cpus: &CpuPlacement,
) -> anyhow::Result<ServerTarget> {
    Ok(match &args.server {
        Some(url) => {
            let addr = parse_server_url(url, args.allow_remote)?;
            let sources = scenario.clients.source_addresses;
            if sources > 1 && !(addr.is_ipv4() && addr.ip().is_loopback()) {
                anyhow::bail!(
                    "{}: field `clients.source_addresses`: is {sources}, but the server {addr} is not an IPv4 loopback address; source addresses 127.0.0.x reach only loopback",
                    args.scenario.display()
                );
            }
            ServerTarget::External {
                addr,
                pid: args.server_pid,
                ca: args.server_ca.clone(),
            }
        }
        None => ServerTarget::Spawn {
            exe: std::env::current_exe().context("cannot find my own executable")?,
            args: vec!["serve".into()],
            cpus: cpus.server.clone(),
            log: None,
        },
    })
}

/// What a finished run prints: its table, its report, saturation warnings,
/// where its folder is, and with `--json` the summary document.
fn finished(
    args: &RunArgs,
    done: &chatbench_loadgen::run::Finished,
    shard: Option<chatbench_loadgen::run::ShardOptions>,
) -> anyhow::Result<ExitCode> {
    let human = |text: String| say(args.json, text);
    if !args.quiet {
        // As wide as the terminal it goes to; every column when it
        // goes to a file or a pipe.
        let term = if args.json {
            console::Term::stderr()
        } else {
            console::Term::stdout()
        };
        let width = term.size_checked().map(|(_rows, cols)| cols);
        human(done.file.table_fitting(width));
    }
    if !args.no_report {
        let written = chatbench_report::report(&done.dir)?;
        if !args.quiet {
            human(format!("report: {}\n", written.report.display()));
        }
    }
    for r in done.file.runs.iter().filter(|r| !r.saturation.is_empty()) {
        eprintln!(
            "WARNING: {} repetition {} is flagged SATURATED: {}; its latencies include that side's queueing",
            r.transport,
            r.repetition + 1,
            r.saturation.join("; ")
        );
    }
    human(format!("results: {}\n", done.dir.display()));
    if let Some(sh) = shard {
        eprintln!(
            "this is shard {} of {}: its figures count only its own clients; `chatbench merge` the {} shards' folders into the run",
            sh.index, sh.of, sh.of
        );
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&done.file.json_summary(&done.dir))?
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_server_url;

    #[test]
    fn server_urls() {
        let ok = |u: &str| parse_server_url(u, false).unwrap().to_string();
        assert_eq!(ok("http://127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(ok("http://127.0.0.1:8080/"), "127.0.0.1:8080");
        assert_eq!(ok("http://127.3.0.9:1"), "127.3.0.9:1");
        assert_eq!(ok("http://[::1]:9000"), "[::1]:9000");
        let err = |u: &str| parse_server_url(u, false).unwrap_err().to_string();
        let hint = "; expected http://IP:PORT, e.g. http://127.0.0.1:8080";
        assert_eq!(ok("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(
            err("https://127.0.0.1:8443"),
            format!("--server https://127.0.0.1:8443: scheme https:// is not supported{hint}")
        );
        assert_eq!(
            err("http://127.0.0.1"),
            format!("--server http://127.0.0.1: no port{hint}")
        );
        assert_eq!(
            err("http://localhost:80"),
            format!("--server http://localhost:80: localhost is not an IP address{hint}")
        );
        assert_eq!(
            err("http://127.0.0.1:80/rooms"),
            format!("--server http://127.0.0.1:80/rooms: a path or query is not supported{hint}")
        );
        assert_eq!(
            err("http://u@127.0.0.1:80"),
            format!("--server http://u@127.0.0.1:80: user information is not supported{hint}")
        );
        assert!(err("http://a b").starts_with("--server http://a b: not a URL ("));
        assert_eq!(
            err("http://10.0.0.1:80"),
            "--server http://10.0.0.1:80: chatbench only loads servers on loopback (127.0.0.0/8 or ::1) unless --allow-remote is given"
        );
        assert_eq!(
            err("http://[2001:db8::1]:80"),
            "--server http://[2001:db8::1]:80: chatbench only loads servers on loopback (127.0.0.0/8 or ::1) unless --allow-remote is given"
        );
        // With --allow-remote the address is taken (no test connects to it).
        assert_eq!(
            parse_server_url("http://10.0.0.1:80", true)
                .unwrap()
                .to_string(),
            "10.0.0.1:80"
        );
    }
}
