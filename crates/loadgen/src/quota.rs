//! A CPU quota for the spawned server (`server.cpu_quota`): a cgroup of its
//! own whose CFS quota gives its processes `cores` CPUs' worth of time in
//! every 10 ms period, as `docker run --cpus` does. A period this short
//! keeps what a throttled server adds to a message's latency under 10 ms.
//!
//! The cgroup is made under the first writable `cpu` controller: cgroup v2
//! (`cpu.max`) where its root offers `cpu`, else cgroup v1's `cpu`
//! hierarchy (`cpu.cfs_quota_us`). It is removed when the quota is dropped,
//! after the server's processes have ended.

use crate::results::QuotaPeriods;
use std::path::{Path, PathBuf};

/// The CFS period, µs.
pub const PERIOD_US: u64 = 10_000;

/// A cgroup with a CPU quota, removed on drop.
#[derive(Debug)]
pub struct CpuQuota {
    dir: PathBuf,
}

/// Where a cgroup `cpu` controller is mounted, from `/proc/self/mountinfo`:
/// (mount point, is v2). A v2 hierarchy counts when its root offers `cpu`.
fn controller(mountinfo: &str, v2_offers_cpu: impl Fn(&Path) -> bool) -> Option<(PathBuf, bool)> {
    let mut v1 = None;
    for line in mountinfo.lines() {
        // ID parent major:minor root mount-point options [tags] - fstype source super-options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut r = right.split(' ');
        let (fstype, _source, options) = (r.next(), r.next(), r.next().unwrap_or(""));
        let point = PathBuf::from(point.replace("\\040", " "));
        match fstype {
            Some("cgroup2") if v2_offers_cpu(&point) => return Some((point, true)),
            Some("cgroup") if v1.is_none() && options.split(',').any(|o| o == "cpu") => {
                v1 = Some((point, false));
            }
            _ => {}
        }
    }
    v1
}

/// The quota's lines: v2's `cpu.max` value, or v1's `cpu.cfs_quota_us`.
fn quota_us(cores: f64) -> u64 {
    ((cores * PERIOD_US as f64).round() as u64).max(1_000)
}

impl CpuQuota {
    /// Makes a cgroup that gives its processes `cores` CPUs per period.
    pub fn create(cores: f64) -> Result<CpuQuota, String> {
        let needs = "server.cpu_quota needs a writable cgroup `cpu` controller (cgroup v1 `cpu`, or v2 with `cpu` in cgroup.controllers)";
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("{needs}: /proc/self/mountinfo: {e}"))?;
        let (root, v2) = controller(&mountinfo, |p| {
            std::fs::read_to_string(p.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|w| w == "cpu"))
        })
        .ok_or_else(|| format!("{needs}: none is mounted"))?;
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = root.join(format!("chatbench-{}-{n}", std::process::id()));
        let fail = |what: &Path, e: std::io::Error| format!("{needs}: {}: {e}", what.display());
        if v2 {
            // Children get `cpu` only when the root hands it down.
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+cpu");
        }
        std::fs::create_dir(&dir).map_err(|e| fail(&dir, e))?;
        let quota = CpuQuota { dir };
        let q = quota_us(cores);
        let writes: Vec<(&str, String)> = if v2 {
            vec![("cpu.max", format!("{q} {PERIOD_US}"))]
        } else {
            vec![
                ("cpu.cfs_period_us", PERIOD_US.to_string()),
                ("cpu.cfs_quota_us", q.to_string()),
            ]
        };
        for (file, value) in writes {
            let path = quota.dir.join(file);
            std::fs::write(&path, value).map_err(|e| fail(&path, e))?;
        }
        Ok(quota)
    }

    /// Moves process `pid` (all its threads) into the cgroup.
    pub fn add(&self, pid: u32) -> Result<(), String> {
        let path = self.dir.join("cgroup.procs");
        std::fs::write(&path, pid.to_string()).map_err(|e| {
            format!(
                "cannot put the server (pid {pid}) under its CPU quota: {}: {e}",
                path.display()
            )
        })
    }

    /// The periods the cgroup has run in so far, and those in which it ran
    /// out of its quota (`cpu.stat`).
    pub fn periods(&self) -> Option<QuotaPeriods> {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).ok()?;
        let field = |name: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
        };
        Some(QuotaPeriods {
            ran: field("nr_periods ")?,
            throttled: field("nr_throttled ")?,
        })
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        // The server's processes have been reaped, but the kernel may take
        // a moment to let go of the group.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "\
35 26 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 26 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
37 26 0:32 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
40 26 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn the_cpu_controller_is_found_in_mountinfo() {
        // v1's `cpu` (not `cpuset`), since the v2 root offers no `cpu`.
        assert_eq!(
            controller(V1, |_| false),
            Some((PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"), false))
        );
        // v2 first where its root offers `cpu`.
        assert_eq!(
            controller(V1, |p| p == Path::new("/sys/fs/cgroup/unified")),
            Some((PathBuf::from("/sys/fs/cgroup/unified"), true))
        );
        let cpuset_only = V1.replace("rw,cpu,cpuacct", "rw,cpuacct");
        assert_eq!(controller(&cpuset_only, |_| false), None);
        assert_eq!(controller("garbage\n\n", |_| true), None);
    }

    /// Where this machine has a writable `cpu` controller (CI's does, as
    /// root), a quota's cgroup is made with its quota and removed on drop;
    /// elsewhere creating one says what it needs.
    #[test]
    fn a_quota_is_a_cgroup_of_its_own_removed_on_drop() {
        match CpuQuota::create(0.25) {
            Ok(q) => {
                let dir = q.dir.clone();
                let read =
                    |f: &str| std::fs::read_to_string(dir.join(f)).map(|s| s.trim().to_owned());
                match read("cpu.max") {
                    Ok(max) => assert_eq!(max, "2500 10000"),
                    Err(_) => {
                        assert_eq!(read("cpu.cfs_quota_us").unwrap(), "2500");
                        assert_eq!(read("cpu.cfs_period_us").unwrap(), "10000");
                    }
                }
                assert_eq!(q.periods(), Some(QuotaPeriods::default()));
                drop(q);
                assert!(!dir.exists(), "{}", dir.display());
            }
            Err(e) => assert!(
                e.starts_with("server.cpu_quota needs a writable cgroup `cpu` controller"),
                "{e}"
            ),
        }
    }

    #[test]
    fn quotas_are_whole_microseconds_of_a_10_ms_period() {
        assert_eq!(quota_us(0.5), 5_000);
        assert_eq!(quota_us(2.0), 20_000);
        assert_eq!(quota_us(0.3333), 3_333);
        // The kernel refuses less than 1 ms.
        assert_eq!(quota_us(0.01), 1_000);
    }
}
