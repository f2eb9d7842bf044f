//! CPU, memory, threads and file descriptors of a process, from `/proc`.

pub use chatbench_results::machine::{BuildInfo, Environment, ProcSample};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How this process's allocator gives freed memory back to the system, set
/// once by the binary that chose the allocator.
static RELEASE_FREED: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets how [`release_freed`] returns freed memory to the system (the
/// `chatbench` binary purges jemalloc's arenas). Later calls are ignored.
pub fn set_release_freed(f: fn()) {
    let _ = RELEASE_FREED.set(f);
}

/// Gives the memory this process has freed back to the system, where the
/// binary said how, so a resident-memory baseline taken next is not
/// inflated by an earlier transport run's freed pages (which the next run
/// would then reuse without its RSS growing).
pub fn release_freed() {
    if let Some(f) = RELEASE_FREED.get() {
        f();
    }
}

/// Reads `/proc/<pid>` now; `None` when the process is gone (or not Linux).
pub fn read(pid: u32, t_ms: u64) -> Option<ProcSample> {
    let p = procfs::process::Process::new(pid as i32).ok()?;
    let stat = p.stat().ok()?;
    if stat.state == 'Z' || stat.state == 'X' {
        return None;
    }
    let tps = procfs::ticks_per_second().max(1);
    let page = procfs::page_size();
    Some(ProcSample {
        t_ms,
        cpu_user_ms: stat.utime * 1000 / tps,
        cpu_system_ms: stat.stime * 1000 / tps,
        rss_bytes: stat.rss * page,
        threads: stat.num_threads as u64,
        fds: p.fd_count().map(|n| n as u64).unwrap_or(0),
        cpu_ns: if pid == std::process::id() {
            self_cpu_ns()
        } else {
            schedstat_ns(pid)
        },
    })
}

/// This process's CPU time, ns, from `getrusage(RUSAGE_SELF)`: it keeps the
/// time of threads that have exited (each transport run's timer and send
/// threads), which a sum over live threads would lose.
fn self_cpu_ns() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    use nix::sys::time::TimeValLike;
    let Ok(ru) = getrusage(UsageWho::RUSAGE_SELF) else {
        return 0;
    };
    (ru.user_time().num_microseconds() + ru.system_time().num_microseconds()).max(0) as u64 * 1000
}

/// Run time of every live thread of `pid`, ns: the first field of each
/// `/proc/<pid>/task/<tid>/schedstat`. 0 when it cannot be read.
fn schedstat_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| {
            let path = t.ok()?.path().join("schedstat");
            let text = std::fs::read_to_string(path).ok()?;
            text.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// Reads every process of `pids` now; `None` when any is gone.
pub fn read_all(pids: &[u32], t_ms: u64) -> Option<Vec<ProcSample>> {
    pids.iter().map(|&p| read(p, t_ms)).collect()
}

/// Samples a set of processes (the server's) about every 100 ms until
/// stopped; each tick reads every process.
#[derive(Debug, Clone)]
pub struct Sampler {
    ticks: Arc<Mutex<Vec<Vec<ProcSample>>>>,
    stop: CancellationToken,
    start: Instant,
}

impl Sampler {
    /// Starts sampling with `read` every `period` (the caller knows where
    /// the figures come from: `/proc` or a `/metrics` scrape); stops by
    /// itself when `read` answers None (a process gone or silent).
    pub fn spawn<R, F>(period: std::time::Duration, read: R) -> Sampler
    where
        R: Fn(u64) -> F + Send + 'static,
        F: std::future::Future<Output = Option<Vec<ProcSample>>> + Send,
    {
        let s = Sampler {
            ticks: Arc::default(),
            stop: CancellationToken::new(),
            start: Instant::now(),
        };
        let task = s.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = task.stop.cancelled() => break,
                }
                let t = task.start.elapsed().as_millis() as u64;
                match read(t).await {
                    Some(x) => task
                        .ticks
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(x),
                    None => break,
                }
            }
        });
        s
    }

    /// Stops and returns every tick: one sample per process, in `pids` order.
    pub fn finish(self) -> Vec<Vec<ProcSample>> {
        self.stop.cancel();
        std::mem::take(&mut *self.ticks.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Reads the machine this process runs on; the build comes from `build`.
pub fn detect_environment(build: &BuildInfo) -> Environment {
    {
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("PRETTY_NAME=")
                        .map(|v| v.trim_matches('"').to_owned())
                })
            })
            .unwrap_or_else(|| std::env::consts::OS.to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        use procfs::Current;
        let cpuinfo = procfs::CpuInfo::current().ok();
        let cpu_model = cpuinfo
            .as_ref()
            .and_then(|c| c.model_name(0).map(str::to_owned))
            .unwrap_or_else(|| "unknown".into());
        // The machine's CPUs, not the ones this process is pinned to.
        let cpus = cpuinfo.map(|c| c.num_cores()).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        // procfs reports MemTotal in bytes.
        let memory_bytes = procfs::Meminfo::current().map(|m| m.mem_total).unwrap_or(0);
        Environment {
            commit: build.commit.clone(),
            dirty: build.dirty,
            rustc: build.rustc.clone(),
            target: build.target.clone(),
            profile: build.profile.clone(),
            os,
            kernel,
            cpu_model,
            cpus,
            memory_bytes,
            chatbench_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}
