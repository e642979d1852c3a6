//! The table state a primary or a replica serves reads from, and how it reaches the store apart
//! from the WAL.
//!
//! As in PostgreSQL, a batch is durable once its WAL record is: the commit that acknowledges it
//! writes the record and the flushed position, nothing else. The rows it changes are applied in
//! memory at once ([`TableState`]) and written to the owner's rows table later, many batches in one
//! transaction, by a [`Checkpoint`]. The stored rows say which lsn they reflect
//! ([`rows_lsn_key`]); on start, [`load_table`] reads them and replays the WAL after that lsn, so
//! WAL is kept from the last checkpoint on (a retention holder of its own). Replaying from an
//! earlier point is harmless: an op carries the whole new value (or a delete), never a delta.

use std::sync::Arc;

use crate::messages::replication::{Op, OpKind, WalRecord};
use crate::storage::rows::{RowMap, RowRef};
use crate::storage::{LogCommit, RowWrite, StorageError, Store};

/// Rows in memory: what the owner has replayed. Values are shared with the ops that wrote them
/// (and so with every other owner that applied the same op).
#[derive(Debug, Default)]
pub struct TableState {
    rows: RowMap,
}

impl TableState {
    /// Applies a batch's ops in order.
    pub fn apply(&mut self, ops: &[Op]) {
        for op in ops {
            match (op.op, &op.value) {
                (OpKind::Delete, _) => self.rows.remove(op.row()),
                (OpKind::Insert | OpKind::Update, Some(v)) => self.rows.insert(op.row_key(), v.clone()),
                // Checked when the batch was accepted: an insert or update always has a value.
                (OpKind::Insert | OpKind::Update, None) => {}
            }
        }
    }

    pub fn get(&self, table: &str, key: &str) -> Option<&serde_json::Value> {
        self.rows.get(RowRef::new(table, key)).map(|v| &**v)
    }

    pub fn contains(&self, row: RowRef<'_>) -> bool {
        self.rows.contains(row)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn clear(&mut self) {
        *self = TableState::default();
    }

    /// Every row as (table, key, value), sorted: a snapshot's content.
    pub fn sorted_rows(&self) -> Vec<(String, String, serde_json::Value)> {
        self.rows.sorted_rows()
    }

    /// The state holding exactly these rows.
    pub fn from_rows(rows: &[(String, String, serde_json::Value)]) -> Self {
        TableState { rows: RowMap::from_rows(rows) }
    }

    /// The rows, to store them whole (a reseed).
    pub fn rows(&self) -> &RowMap {
        &self.rows
    }
}

/// The meta key of the lsn an owner's stored rows reflect.
pub fn rows_lsn_key(owner: &str) -> String {
    format!("rows:{owner}:lsn")
}

/// Most ops applied in memory and not yet checkpointed before a checkpoint starts on its own
/// (the periodic one catches the rest): it bounds both the replay after a crash and the size
/// of one checkpoint transaction.
pub const CHECKPOINT_OPS: usize = 20_000;

/// Batches applied in memory whose rows are not in the store yet, and whether a checkpoint that
/// writes them is running (one at a time, so they land in lsn order).
#[derive(Debug, Default)]
pub struct Checkpoint {
    /// The lsn the stored rows reflect: WAL from here on is needed to rebuild the table.
    pub rows_lsn: u64,
    batches: Vec<Arc<Vec<Op>>>,
    ops: usize,
    /// Where `batches` end.
    end: u64,
    in_flight: bool,
}

/// One checkpoint's work: the batches' rows, and the lsn they bring the stored rows to.
pub struct CheckpointWork {
    pub batches: Vec<Arc<Vec<Op>>>,
    pub end: u64,
}

impl CheckpointWork {
    /// The commit that writes it for `owner` (on the blocking pool: it is CPU work),
    /// dropping the owner's log before it when `trim_log` (a replica's received log).
    pub fn commit(&self, owner: &str, trim_log: bool) -> LogCommit {
        LogCommit {
            rows: self.row_writes(),
            checkpoint: Some((rows_lsn_key(owner), self.end)),
            truncate_before: trim_log.then_some(self.end),
            ..LogCommit::default()
        }
    }

    /// The row changes, in order.
    pub fn row_writes(&self) -> Vec<RowWrite> {
        self.batches
            .iter()
            .flat_map(|ops| ops.iter())
            .map(|op| RowWrite {
                row: op.row_key(),
                value: match op.op {
                    OpKind::Delete => None,
                    OpKind::Insert | OpKind::Update => op.value.clone(),
                },
            })
            .collect()
    }
}

impl Checkpoint {
    /// Starts from stored rows at `rows_lsn`, with nothing pending.
    pub fn reset(&mut self, rows_lsn: u64) {
        *self = Checkpoint { rows_lsn, end: rows_lsn, ..Checkpoint::default() };
    }

    /// A batch ending at `end` was applied in memory.
    pub fn push(&mut self, ops: Arc<Vec<Op>>, end: u64) {
        self.ops += ops.len();
        self.batches.push(ops);
        self.end = end;
    }

    /// Enough is pending that a checkpoint should start now.
    pub fn due(&self) -> bool {
        !self.in_flight && self.ops >= CHECKPOINT_OPS
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// What a checkpoint starting now writes (`None` if one runs or nothing is pending).
    pub fn start(&mut self) -> Option<CheckpointWork> {
        if self.in_flight || self.batches.is_empty() {
            return None;
        }
        self.in_flight = true;
        self.ops = 0;
        Some(CheckpointWork { batches: std::mem::take(&mut self.batches), end: self.end })
    }

    /// The checkpoint that ended at `end` is durable (or, `None`, failed: its batches stay in
    /// the WAL and are replayed on the next start).
    pub fn finished(&mut self, end: Option<u64>) {
        self.in_flight = false;
        if let Some(end) = end {
            self.rows_lsn = self.rows_lsn.max(end);
        }
    }

    /// Where the WAL must be kept from: the stored rows' lsn.
    pub fn needs_from(&self) -> u64 {
        self.rows_lsn
    }
}

/// Most bytes of WAL read per store call while replaying.
const REPLAY_CHUNK: usize = 4 << 20;

/// Loads `owner`'s stored rows and replays its WAL after them up to `flush`, then writes what it
/// replayed in a checkpoint (as PostgreSQL ends recovery with one): the table as of `flush`, and
/// the lsn the stored rows now reflect (`flush`). The batches replayed are not in any later
/// checkpoint's list, so without this one the next checkpoint would move the stored position past
/// rows it never wrote. Blocking (call it off the arbiter). `trim_log` as in
/// [`CheckpointWork::commit`].
///
/// Without a stored rows lsn (a store written before checkpoints existed, whose rows were
/// written with every commit), replay starts at the oldest record kept, which is harmless.
pub fn load_table(store: &Store, owner: &str, flush: u64, trim_log: bool) -> Result<(TableState, u64), StorageError> {
    let mut table = TableState { rows: store.load_rows(owner)? };
    let rows_lsn = match store.get_log_meta(owner, &rows_lsn_key(owner))? {
        Some(lsn) => lsn,
        None => store.log_bounds(owner)?.map(|b| b.0).unwrap_or(flush).min(flush),
    };
    let mut cursor = rows_lsn;
    let mut replayed = Vec::new();
    while cursor < flush {
        let records = store.read_log(owner, cursor, REPLAY_CHUNK)?;
        if records.first().is_none_or(|r| r.0 != cursor) {
            let kept = records.first().map_or("nothing after it is kept".to_string(), |r| format!("the next record kept starts at {}", r.0));
            return Err(StorageError::Backend(format!(
                "{owner}'s WAL from {cursor} to {flush} is needed to rebuild its rows, but {kept}"
            )));
        }
        for (lsn, bytes) in records {
            if lsn != cursor || lsn >= flush {
                break;
            }
            let record: WalRecord = serde_json::from_slice(&bytes)
                .map_err(|e| StorageError::Backend(format!("{owner}'s WAL record at {lsn} is unreadable: {e}")))?;
            table.apply(&record.ops);
            replayed.push(Arc::new(record.ops));
            cursor = lsn + bytes.len() as u64;
        }
    }
    if replayed.is_empty() {
        return Ok((table, rows_lsn));
    }
    store.commit_log(owner, CheckpointWork { batches: replayed, end: cursor }.commit(owner, trim_log))?;
    Ok((table, cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OpKind, key: &str, value: Option<i64>) -> Op {
        Op { op: kind, table: "t".into(), key: key.into(), value: value.map(|v| Arc::new(v.into())) }
    }

    fn append(store: &Store, owner: &str, lsn: &mut u64, ops: Vec<Op>) {
        let bytes = serde_json::to_vec(&WalRecord { committed_at_ms: 0, ops }).unwrap();
        let at = *lsn;
        *lsn += bytes.len() as u64;
        store
            .commit_log(owner, crate::storage::LogCommit { records: vec![(at, bytes.into())], ..Default::default() })
            .unwrap();
    }

    #[test]
    fn load_replays_the_wal_after_the_checkpoint() {
        let store = Store::memory();
        let mut lsn = 0;
        append(&store, "p", &mut lsn, vec![op(OpKind::Insert, "a", Some(1)), op(OpKind::Insert, "b", Some(2))]);
        // A checkpoint of the first batch.
        let work = CheckpointWork {
            batches: vec![Arc::new(vec![op(OpKind::Insert, "a", Some(1)), op(OpKind::Insert, "b", Some(2))])],
            end: lsn,
        };
        store.commit_log("p", work.commit("p", false)).unwrap();
        let checkpointed = lsn;
        append(&store, "p", &mut lsn, vec![op(OpKind::Update, "a", Some(10)), op(OpKind::Delete, "b", None)]);
        append(&store, "p", &mut lsn, vec![op(OpKind::Insert, "c", Some(3))]);

        let (table, rows_lsn) = load_table(&store, "p", lsn, false).unwrap();
        // Recovery ends with a checkpoint of what it replayed.
        assert!(checkpointed < lsn);
        assert_eq!(rows_lsn, lsn);
        assert_eq!(store.get_log_meta("p", &rows_lsn_key("p")).unwrap(), Some(lsn));
        let stored: Vec<(String, serde_json::Value)> = store.load_rows("p").unwrap().sorted_rows().into_iter().map(|r| (r.1, r.2)).collect();
        assert_eq!(stored, vec![("a".to_string(), serde_json::json!(10)), ("c".to_string(), serde_json::json!(3))]);
        // A checkpoint that finishes late (older than the stored position) changes nothing.
        store.commit_log("p", work.commit("p", false)).unwrap();
        assert_eq!(store.get_log_meta("p", &rows_lsn_key("p")).unwrap(), Some(lsn));
        assert_eq!(store.load_rows("p").unwrap().len(), 2);
        assert_eq!(table.get("t", "a"), Some(&serde_json::json!(10)));
        assert_eq!(table.get("t", "b"), None);
        assert_eq!(table.get("t", "c"), Some(&serde_json::json!(3)));
        assert_eq!(table.len(), 2);

        // WAL missing after the checkpoint: refused, not silently short.
        append(&store, "p", &mut lsn, vec![op(OpKind::Insert, "d", Some(4))]);
        store.truncate_log("p", lsn).unwrap();
        let err = load_table(&store, "p", lsn, false).unwrap_err();
        assert!(err.to_string().contains("needed to rebuild"), "{err}");
    }
}
