//! Facts about the machine and this process that benchmarks and result files record beside
//! their figures: the CPU model, the load average, and the peak resident memory (read from
//! Linux's `/proc`; elsewhere the functions say they do not know).

/// The CPU's model name (`/proc/cpuinfo`), or `"unknown"`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`), where known.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut values = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([values.next()??, values.next()??, values.next()??])
}

/// A `/proc/self/status` entry given in kB, as MiB.
fn status_mib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets the kernel's record of this process's peak resident set (Linux), so that
/// [`peak_memory_mib`] then measures from here; returns whether the kernel honoured it (some
/// virtual machines do not).
pub fn reset_peak_memory() -> bool {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    match (status_mib("VmHWM:"), status_mib("VmRSS:")) {
        (Some(hwm), Some(rss)) => hwm <= rss + 1.0,
        _ => false,
    }
}

/// This process's peak resident set in MiB (`VmHWM`), where known.
pub fn peak_memory_mib() -> Option<f64> {
    status_mib("VmHWM:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_facts_are_read_where_linux_has_them() {
        assert!(!cpu_model().is_empty());
        if cfg!(target_os = "linux") {
            let load = load_average().expect("/proc/loadavg on Linux");
            assert!(load.iter().all(|v| v.is_finite() && *v >= 0.0));
            let current = status_mib("VmRSS:").expect("VmRSS on Linux");
            let peak = peak_memory_mib().expect("VmHWM on Linux");
            assert!(
                peak + 1.0 >= current,
                "peak {peak} MiB below current {current} MiB"
            );
        }
    }
}
