//! Where and on what a run happened: [`Environment`] (machine and build),
//! [`BuildInfo`], and [`ProcSample`] (one reading of a process's CPU,
//! memory, threads and files). Reading them is the load generator's job.

use serde::{Deserialize, Serialize};

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
    /// CPU time, ns: for another process the sum over its live threads of
    /// `/proc/<pid>/task/*/schedstat`, for the load generator itself
    /// `getrusage` (0 where unavailable). The tick counts above move in
    /// 10 ms steps, too coarse for a window of seconds.
    #[serde(default)]
    pub cpu_ns: u64,
}

impl ProcSample {
    /// User plus system CPU, ms.
    pub fn cpu_ms(&self) -> u64 {
        self.cpu_user_ms + self.cpu_system_ms
    }

    /// Several processes' samples taken together, as one: every figure
    /// summed (`cpu_ns` only when every process has it), `t_ms` the first's.
    pub fn sum(samples: &[ProcSample]) -> ProcSample {
        let mut total = ProcSample {
            t_ms: samples.first().map(|s| s.t_ms).unwrap_or(0),
            ..ProcSample::default()
        };
        for s in samples {
            total.cpu_user_ms += s.cpu_user_ms;
            total.cpu_system_ms += s.cpu_system_ms;
            total.rss_bytes += s.rss_bytes;
            total.threads += s.threads;
            total.fds += s.fds;
            total.cpu_ns += s.cpu_ns;
        }
        if samples.iter().any(|s| s.cpu_ns == 0) {
            total.cpu_ns = 0;
        }
        total
    }

    /// CPU ms spent between two samples, and the precision of that figure
    /// in ms: nanoseconds from schedstat when both samples have them and no
    /// thread's time went missing in between (a thread that exits takes its
    /// schedstat with it), else the 10 ms ticks of `stat`.
    pub fn cpu_between(a: &ProcSample, b: &ProcSample) -> (f64, f64) {
        if a.cpu_ns > 0 && b.cpu_ns >= a.cpu_ns {
            ((b.cpu_ns - a.cpu_ns) as f64 / 1e6, 0.001)
        } else {
            (b.cpu_ms().saturating_sub(a.cpu_ms()) as f64, 10.0)
        }
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
