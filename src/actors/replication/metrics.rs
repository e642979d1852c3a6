//! Replication's series in `/metrics`: the primary's WAL group commits and the batches they made
//! durable (batches per commit is how well group commit amortises the fsync).

use crate::metrics::{Counter, Metrics};

#[derive(Debug, Clone)]
pub struct ReplicationMetrics {
    wal_commits: Counter,
    wal_batches: Counter,
}

impl ReplicationMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        ReplicationMetrics {
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
}
