//! Taking a batch in: checking it against the rows as they will be once every batch accepted
//! before it is applied, giving it its place in the log, and holding it until a group commit
//! takes it.

use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;
use tokio::sync::oneshot;

use crate::messages::replication::{ReplicateAck, ReplicationError};
use crate::model::{json_len, Op, OpKind, RowKey, RowRef, WalRecord, MAX_NAME_CHARS, MAX_OPS, MAX_VALUE_BYTES};
use crate::storage::table::TableState;

/// Where the answer to a batch goes.
pub type Reply = oneshot::Sender<Result<ReplicateAck, ReplicationError>>;

/// A batch accepted, waiting for its group commit.
pub struct Accepted {
    pub lsn: u64,
    pub bytes: Arc<[u8]>,
    pub committed_at_ms: i64,
    pub ops: Arc<Vec<Op>>,
    pub reply: Reply,
    /// When it reached the primary (for the write's stage timings).
    pub arrived: Instant,
}

impl Accepted {
    pub fn end_lsn(&self) -> u64 {
        self.lsn + self.bytes.len() as u64
    }
}

/// Batches accepted and not yet durable, and what they do to the rows.
#[derive(Default)]
pub struct Intake {
    /// Where the next accepted batch starts.
    pub next_lsn: u64,
    /// Rows that accepted, not yet durable batches change: the lsn of the last batch that
    /// changed each, and whether the row exists after it. Later batches are checked against it.
    overlay: HashMap<RowKey, (u64, bool)>,
    /// Accepted, waiting for the next group commit.
    pending: Vec<Accepted>,
}

impl Intake {
    /// Starts over at `lsn` with nothing accepted (a load).
    pub fn reset(&mut self, lsn: u64) {
        self.next_lsn = lsn;
        self.overlay.clear();
        self.pending.clear();
    }

    /// Checks `ops` against `rows` as every accepted batch leaves them, and accepts them at the
    /// end of the log: encoded once, as the WAL record that is stored and shipped.
    pub fn accept(&mut self, rows: &TableState, ops: Vec<Op>, committed_at_ms: i64, reply: Reply) -> Result<(), (ReplicationError, Reply)> {
        if let Err(e) = self.check(rows, &ops) {
            return Err((e, reply));
        }
        let record = WalRecord { committed_at_ms, ops };
        let bytes: Arc<[u8]> = match serde_json::to_vec(&record) {
            Ok(b) => b.into(),
            Err(e) => return Err((ReplicationError::Storage { message: e.to_string() }, reply)),
        };
        let lsn = self.next_lsn;
        self.next_lsn += bytes.len() as u64;
        for op in &record.ops {
            let exists = op.op != OpKind::Delete;
            // Hashed once: the owned key shares the op's table and key (no copy).
            let row = op.row_key();
            match self.overlay.get_mut(&row.as_ref()) {
                Some(slot) => *slot = (lsn, exists),
                None => {
                    self.overlay.insert(row, (lsn, exists));
                }
            }
        }
        self.pending.push(Accepted { lsn, bytes, committed_at_ms, ops: Arc::new(record.ops), reply, arrived: Instant::now() });
        Ok(())
    }

    /// Every batch accepted since the last group commit, in lsn order.
    pub fn take_group(&mut self) -> Vec<Accepted> {
        std::mem::take(&mut self.pending)
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Batch `lsn`'s ops are in the committed rows now: rows no later accepted batch changed
    /// are what the committed rows say.
    pub fn committed(&mut self, lsn: u64, ops: &[Op]) {
        for op in ops {
            let row = op.row();
            if self.overlay.get(&row).is_some_and(|&(at, _)| at == lsn) {
                self.overlay.remove(&row);
            }
        }
    }

    /// Answers every waiting batch with `error` (the primary went down) and forgets them.
    pub fn refuse_all(&mut self, error: impl Fn() -> ReplicationError) {
        for b in self.pending.drain(..) {
            let _ = b.reply.send(Err(error()));
        }
        self.overlay.clear();
    }

    /// Whether a row exists once every accepted batch is applied.
    fn exists(&self, rows: &TableState, row: RowRef<'_>) -> bool {
        match self.overlay.get(&row) {
            Some(&(_, exists)) => exists,
            None => rows.contains(row),
        }
    }

    /// Checks a batch against the current state (durable rows plus accepted batches).
    fn check(&self, rows: &TableState, ops: &[Op]) -> Result<(), ReplicationError> {
        let invalid = |field: String, reason: &str| ReplicationError::InvalidField { field, reason: reason.into() };
        if ops.is_empty() {
            return Err(invalid("ops".into(), "at least one operation"));
        }
        if ops.len() > MAX_OPS {
            return Err(invalid("ops".into(), &format!("at most {MAX_OPS} operations")));
        }
        // What earlier ops of this batch leave (only needed when there are several).
        let mut batch: HashMap<RowRef<'_>, bool> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            for (name, v) in [("table", &op.table), ("key", &op.key)] {
                if v.is_empty() || v.contains('\0') || v.chars().count() > MAX_NAME_CHARS {
                    return Err(invalid(format!("ops[{i}].{name}"), &format!("1 to {MAX_NAME_CHARS} characters, no NUL")));
                }
            }
            match (op.op, &op.value) {
                (OpKind::Delete, Some(_)) => return Err(invalid(format!("ops[{i}].value"), "a delete takes no value")),
                (OpKind::Insert | OpKind::Update | OpKind::Upsert, None) => {
                    return Err(invalid(format!("ops[{i}].value"), "insert, update and upsert need a value"))
                }
                (_, Some(v)) if json_len(v) > MAX_VALUE_BYTES => {
                    return Err(invalid(format!("ops[{i}].value"), &format!("at most {MAX_VALUE_BYTES} bytes")))
                }
                _ => {}
            }
            let row = op.row();
            let exists = match batch.get(&row) {
                Some(&exists) => exists,
                None => self.exists(rows, row),
            };
            match op.op {
                OpKind::Insert if exists => {
                    return Err(ReplicationError::DuplicateKey { table: op.table.to_string(), key: op.key.to_string() })
                }
                OpKind::Update | OpKind::Delete if !exists => {
                    return Err(ReplicationError::RowNotFound { table: op.table.to_string(), key: op.key.to_string() })
                }
                _ => {}
            }
            if ops.len() > 1 {
                batch.insert(row, op.op != OpKind::Delete);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OpKind, key: &str, value: Option<i64>) -> Op {
        Op { op: kind, table: "t".into(), key: key.into(), value: value.map(|v| serde_json::json!(v).into()) }
    }

    fn accept(intake: &mut Intake, rows: &TableState, ops: Vec<Op>) -> Result<(), ReplicationError> {
        let (reply, _answer) = oneshot::channel();
        intake.accept(rows, ops, 0, reply).map_err(|(e, _)| e)
    }

    #[test]
    fn a_batch_is_checked_against_the_batches_accepted_before_it() {
        let rows = TableState::default();
        let mut intake = Intake::default();
        accept(&mut intake, &rows, vec![op(OpKind::Insert, "a", Some(1))]).expect("new row");
        assert!(matches!(accept(&mut intake, &rows, vec![op(OpKind::Insert, "a", Some(2))]), Err(ReplicationError::DuplicateKey { .. })));
        accept(&mut intake, &rows, vec![op(OpKind::Delete, "a", None), op(OpKind::Insert, "a", Some(3))]).expect("delete then insert");
        assert!(matches!(accept(&mut intake, &rows, vec![op(OpKind::Update, "b", Some(1))]), Err(ReplicationError::RowNotFound { .. })));
        assert!(matches!(accept(&mut intake, &rows, vec![]), Err(ReplicationError::InvalidField { .. })));
        assert!(matches!(accept(&mut intake, &rows, vec![op(OpKind::Delete, "a", Some(1))]), Err(ReplicationError::InvalidField { .. })));
        let group = intake.take_group();
        assert_eq!(group.len(), 2, "refused batches take no place in the log");
        assert_eq!(group[0].lsn, 0);
        assert_eq!(group[1].lsn, group[0].end_lsn());
        assert_eq!(intake.next_lsn, group[1].end_lsn());
    }

    #[test]
    fn an_upsert_takes_a_row_whether_or_not_it_exists_and_needs_a_value() {
        let rows = TableState::default();
        let mut intake = Intake::default();
        accept(&mut intake, &rows, vec![op(OpKind::Upsert, "a", Some(1))]).expect("a new row");
        accept(&mut intake, &rows, vec![op(OpKind::Upsert, "a", Some(2))]).expect("an existing row");
        assert!(matches!(accept(&mut intake, &rows, vec![op(OpKind::Insert, "a", Some(3))]), Err(ReplicationError::DuplicateKey { .. })));
        accept(&mut intake, &rows, vec![op(OpKind::Upsert, "b", Some(1)), op(OpKind::Update, "b", Some(2))])
            .expect("an upsert's row exists for the ops after it");
        assert!(matches!(accept(&mut intake, &rows, vec![op(OpKind::Upsert, "c", None)]), Err(ReplicationError::InvalidField { .. })));
    }

    #[test]
    fn once_committed_the_rows_decide_again() {
        let mut rows = TableState::default();
        let mut intake = Intake::default();
        accept(&mut intake, &rows, vec![op(OpKind::Insert, "a", Some(1))]).expect("new row");
        let group = intake.take_group();
        rows.apply(&group[0].ops);
        intake.committed(group[0].lsn, &group[0].ops);
        assert!(matches!(accept(&mut intake, &rows, vec![op(OpKind::Insert, "a", Some(2))]), Err(ReplicationError::DuplicateKey { .. })));
        accept(&mut intake, &rows, vec![op(OpKind::Update, "a", Some(2))]).expect("the committed row exists");
    }
}
