//! The process as the kernel accounts for it (CPU time, memory, descriptors, the data
//! directory's disk), read from `/proc` and `statvfs` on Linux only, and [`LoadSampler`], the
//! process's load as peer processes are told it with every heartbeat answer and as its nodes'
//! `node_health_change` carries it: the figures the seed's clients read.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::metrics::Metrics;
use crate::model::ProcessLoad;

/// The shortest window the rates are measured over; asked more often, the last figures stand.
const WINDOW: Duration = Duration::from_secs(1);

/// The series the load is read from (the faces register them).
pub const REQUESTS_SERIES: &str = "http_request_duration_seconds";
pub const CONNECTIONS_SERIES: &str = "clusterd_http_connections_active";
pub const WS_SESSIONS_SERIES: &str = "clusterd_ws_sessions_active";

/// Counts at the start of the current window.
struct Mark {
    at: Instant,
    cpu_seconds: Option<f64>,
    requests: u64,
    request_seconds: f64,
}

/// Measures the process's load over windows of at least [`WINDOW`].
pub struct LoadSampler {
    metrics: Arc<Metrics>,
    data_dir: Option<PathBuf>,
    cores: f64,
    /// Where the current window began, and the figures of the last one (none before the first).
    last: Mutex<(Mark, Option<ProcessLoad>)>,
}

impl LoadSampler {
    pub fn new(metrics: Arc<Metrics>, data_dir: Option<PathBuf>) -> LoadSampler {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let mark = Self::mark(&metrics);
        LoadSampler { metrics, data_dir, cores, last: Mutex::new((mark, None)) }
    }

    fn mark(metrics: &Metrics) -> Mark {
        let (requests, request_seconds) = metrics.durations(REQUESTS_SERIES).unwrap_or((0, 0.0));
        Mark { at: Instant::now(), cpu_seconds: cpu_seconds(), requests, request_seconds }
    }

    /// The load now: rates over the window that ended last (a new one ends if [`WINDOW`] passed).
    pub fn figures(&self) -> ProcessLoad {
        let mut last = self.last.lock();
        // The first figures come from whatever time has passed since the start.
        if let Some(figures) = last.1.filter(|_| last.0.at.elapsed() < WINDOW) {
            return figures;
        }
        let now = Self::mark(&self.metrics);
        let seconds = now.at.duration_since(last.0.at).as_secs_f64().max(1e-3);
        let requests = now.requests.saturating_sub(last.0.requests);
        let connections = self.metrics.total(CONNECTIONS_SERIES).unwrap_or(0) + self.metrics.total(WS_SESSIONS_SERIES).unwrap_or(0);
        let figures = ProcessLoad {
            cpu_usage: match (last.0.cpu_seconds, now.cpu_seconds) {
                (Some(a), Some(b)) => Some(((b - a) / seconds / self.cores * 100.0).clamp(0.0, 100.0)),
                _ => None,
            },
            memory_usage: memory_percent(),
            disk_usage: self.data_dir.as_deref().and_then(disk_percent),
            active_connections: Some(connections.max(0) as f64),
            queries_per_second: Some(requests as f64 / seconds),
            avg_response_time_ms: (requests > 0).then(|| (now.request_seconds - last.0.request_seconds) / requests as f64 * 1000.0),
        };
        *last = (now, Some(figures));
        figures
    }
}

#[cfg(target_os = "linux")]
fn cpu_seconds() -> Option<f64> {
    linux::cpu_seconds()
}
#[cfg(target_os = "linux")]
fn memory_percent() -> Option<f64> {
    Some(linux::statm()?.resident_bytes / linux::memory_total_bytes()? * 100.0)
}
#[cfg(target_os = "linux")]
fn disk_percent(dir: &std::path::Path) -> Option<f64> {
    linux::disk_used_percent(dir)
}
#[cfg(not(target_os = "linux"))]
fn cpu_seconds() -> Option<f64> {
    None
}
#[cfg(not(target_os = "linux"))]
fn memory_percent() -> Option<f64> {
    None
}
#[cfg(not(target_os = "linux"))]
fn disk_percent(_dir: &std::path::Path) -> Option<f64> {
    None
}

#[cfg(target_os = "linux")]
pub mod linux {
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

    /// The machine's memory (`MemTotal` of `/proc/meminfo`), in bytes.
    pub fn memory_total_bytes() -> Option<f64> {
        let info = fs::read_to_string("/proc/meminfo").ok()?;
        let kib: f64 = info.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kib * 1024.0)
    }

    /// The share (percent) of the file system holding `path` that is used, as `df` counts it.
    pub fn disk_used_percent(path: &std::path::Path) -> Option<f64> {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: an all-zero statvfs is a valid value to be overwritten.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c_path` is a NUL-terminated string and `st` a valid, writable statvfs.
        if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
            return None;
        }
        let (total, free, avail) = (st.f_blocks as f64, st.f_bfree as f64, st.f_bavail as f64);
        let usable = total - free + avail;
        (usable > 0.0).then(|| (total - free) / usable * 100.0)
    }

    fn sysconf(name: libc::c_int) -> Option<f64> {
        // SAFETY: sysconf reads a configuration value; it has no memory effects.
        let v = unsafe { libc::sysconf(name) };
        (v > 0).then_some(v as f64)
    }
}
