//! CPU, memory, threads and file descriptors of a process, from `/proc`.

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcSample {
    /// Milliseconds since the sampler started.
    pub t_ms: u64,
    /// User CPU time, ms.
    pub cpu_user_ms: u64,
    /// System CPU time, ms.
    pub cpu_system_ms: u64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Threads.
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
}

impl ProcSample {
    /// User plus system CPU, ms.
    pub fn cpu_ms(&self) -> u64 {
        self.cpu_user_ms + self.cpu_system_ms
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
    })
}

/// Samples a process about every 100 ms until stopped.
#[derive(Debug, Clone)]
pub struct Sampler {
    samples: Arc<Mutex<Vec<ProcSample>>>,
    stop: CancellationToken,
    start: Instant,
}

impl Sampler {
    /// Starts sampling `pid`.
    pub fn spawn(pid: u32) -> Sampler {
        let s = Sampler {
            samples: Arc::default(),
            stop: CancellationToken::new(),
            start: Instant::now(),
        };
        let task = s.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = task.stop.cancelled() => break,
                }
                let t = task.start.elapsed().as_millis() as u64;
                match read(pid, t) {
                    Some(x) => task
                        .samples
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(x),
                    None => break,
                }
            }
        });
        s
    }

    /// Stops and returns every sample.
    pub fn finish(self) -> Vec<ProcSample> {
        self.stop.cancel();
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// How the running binary was built: fixed at build time by the `chatbench`
/// binary's build script, so a copied binary still says what it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildInfo {
    /// The git commit of the source it was built from (`unknown` outside a
    /// git checkout).
    pub commit: String,
    /// Tracked files differed from that commit.
    pub dirty: bool,
    /// `rustc --version`.
    pub rustc: String,
    /// The target triple.
    pub target: String,
    /// `release` or `debug`.
    pub profile: String,
}

/// The machine and build a run happened on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// The git commit chatbench was built from.
    pub commit: String,
    /// The build had changes to tracked files beyond that commit.
    #[serde(default)]
    pub dirty: bool,
    /// The compiler that built chatbench.
    pub rustc: String,
    /// The target triple it was built for.
    #[serde(default)]
    pub target: String,
    /// The cargo profile (`release`, `debug`).
    #[serde(default)]
    pub profile: String,
    /// OS name (`PRETTY_NAME` of /etc/os-release).
    pub os: String,
    /// Kernel release.
    pub kernel: String,
    /// CPU model.
    pub cpu_model: String,
    /// Logical CPUs of the machine (whatever this process is pinned to).
    pub cpus: usize,
    /// Total memory, bytes.
    pub memory_bytes: u64,
    /// chatbench version.
    pub chatbench_version: String,
}

impl Environment {
    /// Reads the machine this process runs on; the build comes from `build`.
    pub fn detect(build: &BuildInfo) -> Environment {
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
