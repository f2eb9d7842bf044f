//! CPU pinning (Linux): CPU lists like `0-1,3`, and `sched_setaffinity`.

/// A CPU list that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad CPU list {list:?}: {why}")]
pub struct CpuListError {
    /// The list as given.
    pub list: String,
    /// What is wrong.
    pub why: &'static str,
}

/// Parses a CPU list such as `0`, `2-3` or `0,2-3`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, CpuListError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || CpuListError {
            list: s.to_owned(),
            why: "expected numbers and ranges like 0,2-3",
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(CpuListError {
            list: s.to_owned(),
            why: "it names no CPU",
        });
    }
    Ok(out)
}

/// Formats CPUs as a list (`0-1,3`).
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    {
        use nix::sched::{sched_getaffinity, CpuSet};
        use nix::unistd::Pid;
        if let Ok(set) = sched_getaffinity(Pid::from_raw(0)) {
            return (0..CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .collect();
        }
    }
    (0..std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1))
        .collect()
}

/// Pins the calling thread, and every thread it starts later, to `cpus`.
/// Call it before starting the runtime.
pub fn pin(cpus: &[usize]) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use nix::sched::{sched_setaffinity, CpuSet};
        use nix::unistd::Pid;
        let mut set = CpuSet::new();
        for &c in cpus {
            // A CPU past the set's size cannot be pinned to; skip it, as
            // before, and let the kernel refuse an empty set.
            let _ = set.set(c);
        }
        sched_setaffinity(Pid::from_raw(0), &set)?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cpus;
    Ok(())
}

/// The Linux PM QoS device through which a process asks every CPU to stay
/// out of idle states that take longer than the value written to wake.
pub const CPU_DMA_LATENCY: &str = "/dev/cpu_dma_latency";

/// Holds the CPUs out of idle states while it lives.
///
/// Writing 0 to [`CPU_DMA_LATENCY`] and keeping the file open asks the
/// kernel to idle every CPU by polling rather than halting (cyclictest does
/// the same before it measures); closing it lifts the request. On these VMs
/// a halted CPU takes about 70 to 150 µs to wake, which lands in every
/// sub-millisecond latency at low load. Needs root.
#[derive(Debug)]
pub struct AwakeCpus(#[allow(dead_code)] std::fs::File);

impl AwakeCpus {
    /// Starts holding; the error names the device and why.
    pub fn hold() -> std::io::Result<AwakeCpus> {
        use std::io::Write;
        let named = |e: std::io::Error| {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                " (it needs root)"
            } else {
                ""
            };
            std::io::Error::new(
                e.kind(),
                format!("cannot hold {CPU_DMA_LATENCY} at 0: {e}{hint}"),
            )
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(CPU_DMA_LATENCY)
            .map_err(named)?;
        f.write_all(&0i32.to_ne_bytes()).map_err(named)?;
        Ok(AwakeCpus(f))
    }
}

/// The latency limit the kernel applies now, µs (`CPU_DMA_LATENCY` read
/// back: 2,000,000,000 when nobody holds it).
pub fn cpu_latency_limit_us() -> std::io::Result<i32> {
    let bytes = std::fs::read(CPU_DMA_LATENCY)?;
    let four: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| std::io::Error::other("short read"))?;
    Ok(i32::from_ne_bytes(four))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("0,2-4").unwrap(), vec![0, 2, 3, 4]);
        assert_eq!(
            parse_cpu_list("3-1").unwrap_err().to_string(),
            "bad CPU list \"3-1\": expected numbers and ranges like 0,2-3"
        );
        assert!(parse_cpu_list("").is_err());
        assert_eq!(format_cpu_list(&[3, 0, 1, 2, 7, 9, 10]), "0-3,7,9-10");
    }

    /// Holding sets the kernel's limit to 0 and dropping lifts it; without
    /// root the error names the device.
    #[test]
    fn holding_the_cpus_awake_sets_and_lifts_the_limit() {
        match AwakeCpus::hold() {
            Ok(held) => {
                assert_eq!(cpu_latency_limit_us().unwrap(), 0);
                drop(held);
                // Another process (a parallel test) may hold it too.
                let after = cpu_latency_limit_us().unwrap();
                assert!(
                    after == 0 || after > 1_000_000,
                    "limit {after} after release"
                );
            }
            Err(e) => assert!(e.to_string().contains(CPU_DMA_LATENCY), "{e}"),
        }
    }

    /// Pinning a thread shows in what it may run on, and a CPU past the
    /// set's size is skipped.
    #[test]
    #[cfg(target_os = "linux")]
    fn pin_narrows_the_allowed_cpus() {
        let first = allowed_cpus()[0];
        std::thread::spawn(move || {
            pin(&[first, 1 << 20]).unwrap();
            assert_eq!(allowed_cpus(), vec![first]);
        })
        .join()
        .unwrap();
    }
}
