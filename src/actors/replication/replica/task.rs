//! The storage work of a replica, run off the arbiter: its load, a store task (make received
//! records durable with the positions, and apply what the primary confirmed before and after
//! the fsync), a checkpoint of its rows, and the meta keys its positions are stored under.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::ReplicaRows;
use crate::exec::TaskFailed;
use crate::messages::replication::ReplicaReport;
use crate::model::LogRecord;
use crate::storage::table::{load_table, read_contiguous, stored_shards, CheckpointPlan, LoadedTable};
use crate::storage::{LogCommit, ShardImage, StorageError, Store};

/// The meta key of a replica's durable (flushed) position.
pub fn flush_key(replica_id: &str) -> String {
    format!("replica:{replica_id}:flush_lsn")
}

/// The meta key of the position up to which its log is known durable on the primary (what a
/// start may apply). Absent in data dirs from before records were shipped early: there, every
/// flushed record had been applied.
pub fn confirmed_key(replica_id: &str) -> String {
    format!("replica:{replica_id}:confirmed_lsn")
}

/// The meta key of the primary timeline its log's records came from.
pub fn timeline_key(replica_id: &str) -> String {
    format!("replica:{replica_id}:timeline")
}

/// The positions a replica stores with each commit of its log, in the same transaction: what is
/// durable here, what of it is known durable on the primary, and the timeline it came from.
pub fn position_meta(replica_id: &str, flush: u64, confirmed: u64, timeline: u64) -> Vec<(String, u64)> {
    vec![(flush_key(replica_id), flush), (confirmed_key(replica_id), confirmed), (timeline_key(replica_id), timeline)]
}

/// A replica as read back from its store.
pub struct LoadedReplica {
    pub flush: u64,
    /// What of its log is known durable on the primary: its rows reflect it.
    pub confirmed: u64,
    pub timeline: u64,
    pub table: LoadedTable,
    /// Its durable log past `confirmed`, not yet confirmed by the primary.
    pub tail: Vec<LogRecord>,
}

/// Loads replica `id`'s rows up to its confirmed position, the unconfirmed tail of its log and
/// its positions. Blocking.
pub fn load(store: &Store, id: &str) -> Result<LoadedReplica, StorageError> {
    let flush = store.get_log_meta(id, &flush_key(id))?.unwrap_or(0);
    let confirmed = store.get_log_meta(id, &confirmed_key(id))?.unwrap_or(flush).min(flush);
    let timeline = store.get_log_meta(id, &timeline_key(id))?.unwrap_or(0);
    let table = load_table(store, id, confirmed)?;
    // Its checkpoints may have stored more than it had stored as confirmed: that was applied,
    // so confirmed too.
    let confirmed = table.lsn;
    if confirmed > flush {
        return Err(StorageError::RowsAhead { owner: id.to_string(), rows_lsn: confirmed, flush_lsn: flush });
    }
    let mut tail = Vec::new();
    read_contiguous(store, id, confirmed, flush, "as its unconfirmed tail", |r| tail.push(r))?;
    Ok(LoadedReplica { flush, confirmed, timeline, table, tail })
}

/// A store task: apply what of `records` the primary has confirmed, `commit` (if any), then
/// apply every record the primary has confirmed by the time the commit is durable.
#[derive(Debug)]
pub struct StoreTask {
    pub owner: String,
    pub rows: ReplicaRows,
    pub durable_there: Arc<AtomicU64>,
    pub records: Vec<LogRecord>,
    /// Durable here before the commit.
    pub flushed: u64,
    /// The commit and the flushed position it sets.
    pub commit: Option<(LogCommit, u64)>,
    /// The replica's report as the task starts, sent with the replay filled in as soon as what
    /// was confirmed before the commit is applied (a write may be waiting for it).
    pub early: Option<ReplicaReport>,
}

/// What a store task did: made `committed` durable (if it committed), applied `applied_ops` ops
/// (up to `applied_to`), and the records left to apply.
#[derive(Debug)]
pub struct TaskDone {
    pub committed: Option<u64>,
    /// How long the commit took.
    pub commit_took: Option<Duration>,
    pub applied_ops: usize,
    pub applied_to: Option<u64>,
    pub rest: Vec<LogRecord>,
}

impl StoreTask {
    /// Runs it; `send_early` sends the early report (from this thread). Blocking.
    pub fn run(mut self, store: &Store, send_early: impl FnOnce(ReplicaReport)) -> Result<TaskDone, StorageError> {
        let rows = &self.rows;
        let apply = |records: &[LogRecord]| records.iter().map(|r| rows.write().apply(r)).sum::<usize>();
        // Durable here and confirmed there before this commit: applied first.
        let confirmed = self.durable_there.load(Ordering::Acquire).min(self.flushed);
        let mut rest = self.records.split_off(self.records.partition_point(|r| r.end_lsn() <= confirmed));
        let mut applied_ops = apply(&self.records);
        let mut applied_to = self.records.last().map(LogRecord::end_lsn);
        if let (Some(mut early), Some(replay_lsn)) = (self.early.take(), applied_to) {
            early.positions.replay_lsn = replay_lsn;
            send_early(early);
        }
        let committed = self.commit.as_ref().map(|(_, end)| *end);
        let mut commit_took = None;
        if let Some((commit, _)) = self.commit.take() {
            let started = Instant::now();
            store.commit_log(&self.owner, commit)?;
            commit_took = Some(started.elapsed());
        }
        let confirmed = self.durable_there.load(Ordering::Acquire).min(committed.unwrap_or(self.flushed));
        let later = rest.split_off(rest.partition_point(|r| r.end_lsn() <= confirmed));
        applied_ops += apply(&rest);
        applied_to = rest.last().map(LogRecord::end_lsn).or(applied_to);
        Ok(TaskDone { committed, commit_took, applied_ops, applied_to, rest: later })
    }
}

/// A checkpoint that failed, and the shards it had taken (`None`: not known, so all of them),
/// which are out of date in the store again.
pub struct CheckpointFailed {
    pub error: StorageError,
    pub shards: Option<Vec<u16>>,
}

impl From<TaskFailed> for CheckpointFailed {
    fn from(e: TaskFailed) -> Self {
        CheckpointFailed { error: e.into(), shards: None }
    }
}

/// Writes checkpoint `plan` of `rows`: the lsn and shards it stored, or `None` if there was
/// nothing to write or a reseed replaced the rows meanwhile. The rows' lock is taken per shard
/// (a shard serialized under it), never across the disk: the store task applying records waits
/// for one shard at most. Serialized under the lock rather than copied, because copying the
/// rows' pointers writes to reference counts shared with the primary's rows. Blocking.
pub fn checkpoint(store: &Store, owner: &str, rows: &ReplicaRows, plan: &CheckpointPlan) -> Result<Option<(u64, Vec<u16>)>, CheckpointFailed> {
    let (picked, lsn) = {
        let replayed = rows.read();
        (replayed.rows.pick(plan), replayed.lsn)
    };
    let mut images = Vec::with_capacity(picked.len());
    for &shard in &picked {
        match rows.write().rows.take_encoded(shard) {
            Ok(image) => images.push(image),
            Err(error) => return Err(CheckpointFailed { error, shards: Some(images.iter().map(|i: &ShardImage| i.shard).collect()) }),
        }
    }
    let Some(images) = rows.read().rows.finish(plan, lsn, images) else { return Ok(None) };
    let (lsn, shards) = (images.lsn, stored_shards(&images));
    match store.write_row_images(owner, images) {
        Ok(true) => Ok(Some((lsn, shards))),
        // A reseed came since: those rows belong to the table it replaced.
        Ok(false) => Ok(None),
        Err(error) => Err(CheckpointFailed { error, shards: Some(shards) }),
    }
}
