//! Replication's series in `/metrics`: the primary's WAL group commits and the batches they made
//! durable (batches per commit is how well group commit amortises the fsync), the commit
//! latency of writes by the mode they were acknowledged in, and where that time goes, stage by
//! stage ([`WriteStages`]).

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{Counter, Histogram, Metrics};
use crate::model::ReplicationMode;

/// Commit latency buckets, seconds: a memory-engine async write takes tens of microseconds, a
/// disk fsync milliseconds, a sync write a replica's round trip; the last bounds reach past the
/// default `sync_timeout_ms`.
const COMMIT_SECONDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Stage buckets, seconds: finer than [`COMMIT_SECONDS`] below a millisecond, where an fsync
/// and a thread's wake-up on loopback are told apart.
const STAGE_SECONDS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.00075,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0, 10.0,
];

#[derive(Debug, Clone)]
pub struct ReplicationMetrics {
    wal_commits: Counter,
    wal_batches: Counter,
    commit_latency: Arc<CommitLatency>,
    stages: WriteStages,
}

/// Where a write's time goes on its way from the primary's mailbox to its acknowledgement
/// (`clusterd_replication_write_stage_seconds{stage}`); what the request took over HTTP is
/// `http_request_duration_seconds`, and the difference is HTTP, JSON and the hops
/// between threads. Per write unless said otherwise.
#[derive(Debug, Clone)]
pub struct WriteStages {
    /// Arrival at the primary to the start of the group commit that takes it: the wait for the
    /// commit in flight.
    pub queued: Histogram,
    /// That group commit, from its start to its result back on the primary's actor: the fsync
    /// and the round trip to the primary's commit thread.
    pub primary_commit: Histogram,
    /// Durable on the primary to answered: the wait for the replicas the mode counts.
    pub replicas: Histogram,
    /// A replica's log commit (per commit, not per write): its fsync.
    pub replica_commit: Histogram,
}

/// The commit latency histogram's row of each mode, taken once so that an observation looks
/// nothing up; shared by one `Arc` with each write's answer.
#[derive(Debug)]
pub struct CommitLatency {
    sync: Histogram,
    semi_sync: Histogram,
    asynchronous: Histogram,
}

impl CommitLatency {
    /// A write acknowledged in `mode`, `took` after it reached the primary.
    pub fn observe(&self, mode: ReplicationMode, took: Duration) {
        let row = match mode {
            ReplicationMode::Sync => &self.sync,
            ReplicationMode::SemiSync => &self.semi_sync,
            ReplicationMode::Async => &self.asynchronous,
        };
        row.observe(took);
    }
}

impl ReplicationMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let latency = metrics.histogram_family(
            "clusterd_replication_commit_latency_seconds",
            "Time from a write's arrival at the primary to its acknowledgement, by the mode it was acknowledged in.",
            &["mode"],
            COMMIT_SECONDS,
        );
        let row = |mode: &str| latency.row(&[mode]);
        let stages = metrics.histogram_family(
            "clusterd_replication_write_stage_seconds",
            "Where a write's time goes: queued (for the group commit in flight), primary_commit (its fsync, until back on the primary), replicas (durable to acknowledged: the replicas the mode waits for), replica_commit (a replica's log commit, per commit).",
            &["stage"],
            STAGE_SECONDS,
        );
        let stage = |name: &str| stages.row(&[name]);
        ReplicationMetrics {
            stages: WriteStages {
                queued: stage("queued"),
                primary_commit: stage("primary_commit"),
                replicas: stage("replicas"),
                replica_commit: stage("replica_commit"),
            },
            commit_latency: Arc::new(CommitLatency {
                sync: row("sync"),
                semi_sync: row("semi_sync"),
                asynchronous: row("async"),
            }),
            wal_commits: metrics.counter(
                "clusterd_replication_wal_commits_total",
                "Group commits of the primary's WAL, one fsync each.",
            ),
            wal_batches: metrics.counter(
                "clusterd_replication_wal_batches_total",
                "Batches made durable by those commits (batches / commits = batches per fsync).",
            ),
        }
    }

    /// One group commit of the primary's WAL made `batches` batches durable with one fsync.
    pub fn wal_committed(&self, batches: u64) {
        self.wal_commits.inc();
        self.wal_batches.add(batches);
    }

    pub fn commit_latency(&self) -> Arc<CommitLatency> {
        self.commit_latency.clone()
    }

    pub fn stages(&self) -> WriteStages {
        self.stages.clone()
    }
}
