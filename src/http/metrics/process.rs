//! The process's own series under the names Prometheus client libraries give them (`process_*`),
//! read from the kernel at each scrape: CPU time, resident and virtual memory, open and allowed
//! file descriptors, start time. They come from `/proc/self`, so only Linux has them; elsewhere
//! they are left out rather than shown as zeros.

use crate::metrics::{Metrics, ReadKind};

/// Registers the `process_*` series (once per registry: later calls find them there).
#[cfg(target_os = "linux")]
pub(super) fn register(metrics: &Metrics) {
    use ReadKind::{Counter, Gauge};
    metrics.read("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", Counter, linux::cpu_seconds);
    metrics.read("process_resident_memory_bytes", "Resident memory size in bytes.", Gauge, || {
        linux::statm().map(|m| m.resident_bytes)
    });
    metrics.read("process_virtual_memory_bytes", "Virtual memory size in bytes.", Gauge, || {
        linux::statm().map(|m| m.virtual_bytes)
    });
    metrics.read("process_open_fds", "Number of open file descriptors.", Gauge, linux::open_fds);
    metrics.read("process_max_fds", "Maximum number of open file descriptors.", Gauge, linux::max_fds);
    // Fixed for the life of the process: read once.
    let started = linux::start_time_seconds();
    metrics.read("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", Gauge, move || {
        started
    });
}

#[cfg(not(target_os = "linux"))]
pub(super) fn register(_metrics: &Metrics) {}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs;

    /// Memory sizes from `/proc/self/statm`.
    pub struct Statm {
        pub virtual_bytes: f64,
        pub resident_bytes: f64,
    }

    /// CPU time of every thread of the process, user and system, to the nanosecond (the
    /// `/proc/self/stat` tick counts are only 10 ms fine).
    pub fn cpu_seconds() -> Option<f64> {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        (rc == 0).then(|| ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
    }

    pub fn statm() -> Option<Statm> {
        let text = fs::read_to_string("/proc/self/statm").ok()?;
        let mut pages = text.split_whitespace().map(|v| v.parse::<f64>().ok());
        let (size, resident) = (pages.next()??, pages.next()??);
        let page = sysconf(libc::_SC_PAGESIZE)?;
        Some(Statm { virtual_bytes: size * page, resident_bytes: resident * page })
    }

    pub fn open_fds() -> Option<f64> {
        // The directory's own descriptor is among those counted, as in every client library.
        Some(fs::read_dir("/proc/self/fd").ok()?.count() as f64)
    }

    /// The soft limit on open files, as `/proc/self/limits` says it; none when unlimited.
    pub fn max_fds() -> Option<f64> {
        let limits = fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..].split_whitespace().next()?.parse().ok()
    }

    /// Boot time (`btime` of `/proc/stat`) plus the process's start in clock ticks after boot
    /// (field 22 of `/proc/self/stat`).
    pub fn start_time_seconds() -> Option<f64> {
        let stat = fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) is in parentheses and may hold spaces: count from after it.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let ticks: f64 = after_name.split_whitespace().nth(22 - 3)?.parse().ok()?;
        let boot = fs::read_to_string("/proc/stat").ok()?;
        let btime: f64 = boot.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
        Some(btime + ticks / sysconf(libc::_SC_CLK_TCK)?)
    }

    fn sysconf(name: libc::c_int) -> Option<f64> {
        // SAFETY: sysconf reads a configuration value; it has no memory effects.
        let v = unsafe { libc::sysconf(name) };
        (v > 0).then_some(v as f64)
    }
}
