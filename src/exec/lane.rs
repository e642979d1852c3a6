//! `Lane`: a thread of its own running one owner's blocking work in order, at normal priority:
//! the commits a client waits for (the primary's group commits, a replica's store tasks while a
//! write waits for them, a Raft node's writes), as PostgreSQL gives its WAL a writer process of
//! its own.
//!
//! Why not tokio's blocking pool: handing it a task takes a lock its threads take too, and
//! whoever lost that race spun with `sched_yield`; on a busy core the actor's thread then gave
//! the CPU away for milliseconds (perf: 9,500 yields in 4 s of 1-client writes, some 1 to 3 ms,
//! the tail of those writes). A lane's queue has one reader: a send is a lock-free push and a
//! wake-up, and nobody spins.
//!
//! The queue is not bounded, and need not be: its owner submits its next commit only once the
//! last one ended (one group commit in flight; one store task at a time per replica; one Ready's
//! write per Raft node, beside at most one compaction and the log reads operators have open).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use super::{blocking, TaskFailed, Work};

pub(super) type Job = Box<dyn FnOnce() + Send>;

/// One owner's thread, or the blocking pool if the thread could not start.
pub struct Lane {
    jobs: Option<mpsc::Sender<Job>>,
}

impl Lane {
    /// Starts the thread, named `name` (Linux keeps 15 bytes of it). It ends once the lane is
    /// dropped and its queue is drained.
    pub fn start(name: &str) -> Lane {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new().name(name.to_string()).spawn(move || serve(|| rx.recv().ok()));
        match spawned {
            Ok(_) => Lane { jobs: Some(tx) },
            Err(error) => {
                // Slower on a busy machine, never wrong.
                tracing::warn!(%error, lane = name, "could not start a thread of its own; using the blocking pool");
                Lane { jobs: None }
            }
        }
    }

    /// Runs `f` on the lane, after what was submitted before it; resolves to what it returns.
    pub fn run<T, E, F>(&self, f: F) -> Work<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<TaskFailed> + Send + 'static,
    {
        let Some(jobs) = &self.jobs else { return blocking(f) };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = jobs.send(Box::new(move || {
            let _ = tx.send(f());
        }));
        Box::pin(async move {
            if sent.is_err() {
                return Err(E::from(TaskFailed { reason: "its lane has stopped".into() }));
            }
            rx.await.unwrap_or_else(|_| Err(E::from(TaskFailed { reason: "it panicked".into() })))
        })
    }
}

/// Runs the jobs `next` hands out until it has none. A panic is the job's failure (its caller
/// sees the result dropped), not the thread's.
pub(super) fn serve(mut next: impl FnMut() -> Option<Job>) {
    while let Some(job) = next() {
        drop(std::panic::catch_unwind(AssertUnwindSafe(job)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn jobs_run_in_order_on_the_lane_and_a_panic_fails_only_its_job() {
        let lane = Lane::start("test-lane");
        let order = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let runs: Vec<_> = (0..8)
            .map(|i| {
                let order = order.clone();
                lane.run(move || {
                    order.lock().push(i);
                    Ok::<_, TaskFailed>(std::thread::current().name().map(str::to_string))
                })
            })
            .collect();
        for name in futures_util::future::join_all(runs).await {
            assert_eq!(name.expect("runs").as_deref(), Some("test-lane"));
        }
        assert_eq!(*order.lock(), (0..8).collect::<Vec<_>>(), "in the order submitted");
        let failed: Result<(), TaskFailed> = lane.run(|| panic!("boom")).await;
        assert!(failed.is_err());
        assert_eq!(lane.run(|| Ok::<_, TaskFailed>(7)).await, Ok(7), "the lane goes on");
    }
}
