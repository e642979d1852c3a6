//! Replication's series in `/metrics`: the primary's WAL group commits and the batches they made
//! durable (batches per commit is how well group commit amortises the fsync), and the commit
//! latency of writes by the mode they were acknowledged in.

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

#[derive(Debug, Clone)]
pub struct ReplicationMetrics {
    wal_commits: Counter,
    wal_batches: Counter,
    commit_latency: Arc<CommitLatency>,
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
        ReplicationMetrics {
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
}
