//! What the replication, Raft and HTTP write benches share: the engine a case runs on, the
//! client's thread, the wait for replicas to catch up between cases, and how figures are
//! computed and printed.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use actix_rt::{System, SystemRunner};
use tokio::sync::oneshot;

use clusterd::messages::replication::GetReplicationStatus;
use clusterd::model::ReplicaStatus;
use clusterd::RuntimeHandle;

/// Which storage engine a case runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Memory,
    Disk,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Memory => "memory",
            Engine::Disk => "disk",
        }
    }

    /// Points `config` at this engine: a disk engine in a fresh temporary directory, returned
    /// (removed when dropped).
    pub fn configure(self, config: &mut clusterd::Config) -> Option<tempfile::TempDir> {
        match self {
            Engine::Memory => None,
            Engine::Disk => {
                let dir = tempfile::tempdir().expect("temp dir");
                config.storage.engine = clusterd::config::StorageEngine::Disk;
                config.storage.data_dir = dir.path().to_string_lossy().into_owned();
                Some(dir)
            }
        }
    }

    /// A store on this engine, and the directory a disk store lives in (removed when dropped).
    pub fn store(self) -> (clusterd::storage::Store, Option<tempfile::TempDir>) {
        match self {
            Engine::Memory => (clusterd::storage::Store::memory(), None),
            Engine::Disk => {
                let dir = tempfile::tempdir().expect("temp dir");
                (clusterd::storage::Store::open_dir(dir.path()).expect("store opens"), Some(dir))
            }
        }
    }
}

/// How long replicas may take to catch up between cases.
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(60);

type ClientJob = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// The client: a thread of its own (named `bench-client`, so its CPU time can be told apart)
/// with an actix system of its own, as an HTTP worker has; it runs one job at a time.
pub struct Client {
    jobs: mpsc::Sender<ClientJob>,
    thread: std::thread::JoinHandle<()>,
}

impl Client {
    pub fn start() -> Client {
        let (jobs, rx) = mpsc::channel::<ClientJob>();
        let thread = std::thread::Builder::new()
            .name("bench-client".into())
            .spawn(move || {
                let system = System::new();
                while let Ok(job) = rx.recv() {
                    system.block_on(job());
                }
            })
            .expect("client thread starts");
        Client { jobs, thread }
    }

    /// Runs the future `make` builds on the client; blocks the bench thread (which runs the
    /// runtime's actors meanwhile) until it is done.
    pub fn run<T, Fut>(&self, system: &SystemRunner, make: impl FnOnce() -> Fut + Send + 'static) -> T
    where
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: ClientJob = Box::new(move || {
            Box::pin(async move {
                let _ = tx.send(make().await);
            })
        });
        self.jobs.send(job).expect("the client is running");
        system.block_on(rx).expect("the client answers")
    }

    pub fn stop(self) {
        drop(self.jobs);
        self.thread.join().expect("client thread");
    }
}

/// Waits until every replica of `runtime` has replayed everything the primary flushed and is in
/// sync; panics after [`CATCH_UP_LIMIT`].
pub fn catch_up(system: &SystemRunner, runtime: &RuntimeHandle) {
    let primary = runtime.primary().clone();
    system.block_on(async move {
        let deadline = Instant::now() + CATCH_UP_LIMIT;
        loop {
            let status = primary.send(GetReplicationStatus).await.expect("primary is running");
            let done = status
                .replicas
                .iter()
                .all(|r| r.status == ReplicaStatus::InSync && r.replay_lsn_u64 == status.current_lsn_u64);
            if done {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replicas did not catch up in {CATCH_UP_LIMIT:?}: {:?}",
                status
                    .replicas
                    .iter()
                    .map(|r| (&r.replica_id, r.status, status.current_lsn_u64 - r.replay_lsn_u64))
                    .collect::<Vec<_>>()
            );
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
    });
}

/// `first` and every job already queued behind it, at most `max` in all: what a writer thread
/// gathers into one commit.
pub fn gather<T>(rx: &mpsc::Receiver<T>, first: T, max: usize) -> Vec<T> {
    let mut jobs = vec![first];
    while jobs.len() < max {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
    jobs
}

/// The value at quantile `q` of sorted `v` (interpolated between neighbours).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let at = (v.len() - 1) as f64 * q;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (at - lo as f64)
}

pub fn fmt_time(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

/// (rate per second, latencies) of every sample of a case, by case id.
pub type Samples = std::collections::BTreeMap<String, Vec<(f64, Vec<Duration>)>>;

/// Records one sample of case `id`: `latencies.len()` operations in `elapsed`; returns `elapsed`
/// (what criterion's `iter_custom` wants).
pub fn record(samples: &mut Samples, id: &str, elapsed: Duration, latencies: Vec<Duration>) -> Duration {
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    samples.entry(id.to_string()).or_default().push((rate, latencies));
    elapsed
}

/// The median rate over the samples of case `id`.
pub fn median_rate(samples: &Samples, id: &str) -> Option<f64> {
    let mut rates: Vec<f64> = samples.get(id)?.iter().map(|(r, _)| *r).collect();
    rates.sort_by(f64::total_cmp);
    (!rates.is_empty()).then(|| quantile(&rates, 0.5))
}

/// Whether this run measures (`cargo bench`), rather than checks that the cases run
/// (`cargo bench -- --test`, or a test harness): summaries are printed only then.
pub fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}
