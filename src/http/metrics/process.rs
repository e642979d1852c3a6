//! The process's own series under the names Prometheus client libraries give them (`process_*`),
//! read from the kernel at each scrape: CPU time, resident and virtual memory, open and allowed
//! file descriptors, start time. They come from `/proc/self`, so only Linux has them; elsewhere
//! they are left out rather than shown as zeros.

use crate::metrics::{Metrics, ReadKind};
#[cfg(target_os = "linux")]
use crate::process::linux;

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
