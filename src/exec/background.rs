//! `BackgroundPool`: threads for storage work no client waits for: an async replica's commits,
//! applies and checkpoints, RAC instances' checkpoints, and replicas' catch-up reads of the
//! primary's WAL.
//!
//! Why its own threads: the primary and its in-process replicas share the machine's cores, and the
//! primary is what clients wait on. When that work writes no files (the memory engine), the
//! threads are `SCHED_IDLE` (and nice [`NICE`] where that cannot be set), so the scheduler runs
//! the primary's threads first whenever both are runnable; under a load that keeps every core
//! busy the replicas fall behind, which shows as lag, never hidden, and catch up when it eases
//! (docs/decisions.md). When it writes files (the disk engine) they are only niced
//! ([`Lowered::Nice`]): a `SCHED_IDLE` thread that does not run while it is in the middle of its
//! own fsync holds up the primary's (ext4 writes the inodes of the owners' files, which share
//! inode table blocks, under a lock of the block's), and a single client's fsyncs took over 2 ms
//! fifteen times as often. A niced thread gets a share of a busy core, so it lets go soon.
//! Work a write waits for stays on the normal blocking pool or a lane.
//! Linux keeps the policy per thread, so only these threads are lowered; raising it again needs a
//! privilege, which is why they are threads of their own.
//!
//! The queue is not bounded, and need not be: each replica has at most one store task and one
//! checkpoint submitted at a time.

use std::future::Future;
use std::sync::{mpsc, Arc, Mutex, PoisonError};

use super::lane::{serve, Job};
use super::{blocking, Priority, TaskFailed, Work};

/// The nice value of the pool's threads (0 is normal, 19 the lowest priority).
pub const NICE: i32 = 10;

/// How far the pool's threads give way to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lowered {
    /// `SCHED_IDLE` and nice [`NICE`]: run only when no other thread would. For work that writes
    /// no files.
    Idle,
    /// Nice [`NICE`] alone: a small share of a busy core, never none. For work that writes files,
    /// which a thread that never runs could hold up for everyone (the module's doc).
    Nice,
}

impl Lowered {
    /// [`Lowered::Nice`] when the work writes files (a durable store), [`Lowered::Idle`] otherwise.
    pub fn for_work(writes_files: bool) -> Lowered {
        if writes_files {
            Lowered::Nice
        } else {
            Lowered::Idle
        }
    }
}

/// A fixed set of threads taking jobs from one queue. The threads end once the pool is dropped and
/// the queue is drained.
pub struct BackgroundPool {
    jobs: mpsc::Sender<Job>,
}

impl BackgroundPool {
    /// Starts `threads` threads (at least one) named `<name>-<i>`, lowered as `lowered` says.
    pub fn start(name: &str, threads: usize, lowered: Lowered) -> std::io::Result<Arc<BackgroundPool>> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                lower_priority(lowered);
                // The lock is held only to take one job, never while running it; an idle thread
                // holds it while it waits in `recv`, so the others sleep on it (std's mutex, as
                // parking_lot's spins in `sched_yield` before it sleeps).
                serve(|| rx.lock().unwrap_or_else(PoisonError::into_inner).recv().ok())
            })?;
        }
        Ok(Arc::new(BackgroundPool { jobs: tx }))
    }

    /// Runs `f` on one of the pool's threads; resolves to what it returns.
    pub fn run<F, R>(&self, f: F) -> impl Future<Output = Result<R, TaskFailed>> + 'static
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self.jobs.send(Box::new(move || {
            let _ = tx.send(f());
        }));
        async move {
            if sent.is_err() {
                return Err(TaskFailed { reason: "the background pool has stopped".into() });
            }
            rx.await.map_err(|_| TaskFailed { reason: "it panicked".into() })
        }
    }
}

impl BackgroundPool {
    /// Runs blocking work `f` at `priority`: on the normal blocking pool, or here.
    pub fn run_at<T, E, F>(&self, priority: Priority, f: F) -> Work<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<TaskFailed> + Send + 'static,
    {
        match priority {
            Priority::Normal => blocking(f),
            Priority::Background => {
                let run = self.run(f);
                Box::pin(async move { run.await.unwrap_or_else(|e| Err(E::from(e))) })
            }
        }
    }
}

/// Lowers the calling thread to [`NICE`] (or leaves its nice value where it is if it is lower
/// already, as in a process started with `nice`: raising it would need a privilege), and for
/// [`Lowered::Idle`] moves it to `SCHED_IDLE`.
#[cfg(target_os = "linux")]
fn lower_priority(lowered: Lowered) {
    // SAFETY: getpriority and setpriority only read their arguments; `who` 0 with PRIO_PROCESS
    // names the calling thread on Linux (per-thread nice values). A failure leaves the priority
    // as it was. (getpriority can return -1 as a value; then the max below is NICE anyway.)
    let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, current.max(NICE)) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not lower the priority of a background thread");
    }
    if lowered == Lowered::Nice {
        return;
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads `param`, which lives across the call; pid 0 names the
    // calling thread. SCHED_IDLE takes priority 0. A failure leaves the policy as it was.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not move a background thread to SCHED_IDLE");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_: Lowered) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's nice value and whether it is `SCHED_IDLE`.
    fn own_priority() -> (i32, bool) {
        // SAFETY: getpriority and sched_getscheduler only read their arguments.
        #[cfg(target_os = "linux")]
        return unsafe { (libc::getpriority(libc::PRIO_PROCESS, 0), libc::sched_getscheduler(0) == libc::SCHED_IDLE) };
        #[cfg(not(target_os = "linux"))]
        return (NICE, true);
    }

    #[actix_rt::test]
    async fn jobs_run_at_a_lower_priority_and_a_panic_fails_only_its_job() {
        let pool = BackgroundPool::start("test-bg", 2, Lowered::Idle).expect("threads start");
        let (nice, idle_policy) = pool.run(own_priority).await.expect("runs");
        assert!(nice >= NICE);
        assert!(idle_policy, "background threads run SCHED_IDLE");
        let failed = pool.run(|| -> u32 { panic!("boom") }).await;
        assert!(failed.is_err());
        // Both threads still take jobs.
        let results: Vec<u32> = futures_util::future::join_all((0..8).map(|i| pool.run(move || i * 2)))
            .await
            .into_iter()
            .map(|r| r.expect("runs"))
            .collect();
        assert_eq!(results, (0..8).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[cfg(target_os = "linux")]
    #[actix_rt::test]
    async fn a_pool_for_work_that_writes_files_is_niced_but_not_idle() {
        assert_eq!(Lowered::for_work(true), Lowered::Nice);
        assert_eq!(Lowered::for_work(false), Lowered::Idle);
        let pool = BackgroundPool::start("test-bg", 1, Lowered::Nice).expect("threads start");
        let (nice, idle_policy) = pool.run(own_priority).await.expect("runs");
        assert!(nice >= NICE);
        assert!(!idle_policy, "a pool for work that writes files is not SCHED_IDLE");
    }
}
