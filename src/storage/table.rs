//! The table state a primary or a replica serves reads from, and how it reaches the store apart
//! from the WAL.
//!
//! As in PostgreSQL, a batch is durable once its WAL record is: the commit that acknowledges it
//! writes the record and the flushed position, nothing else. The rows it changes are applied in
//! memory at once ([`TableState`]) and reach the owner's store later, in a [`Checkpoint`], a
//! shard at a time ([`SHARDS`]): a shard is written whole, as it is at
//! the moment it is read, with the lsn it reflects. On start, [`load_table`] reads every shard
//! and replays the WAL from the oldest shard's lsn, so the WAL is kept from there on (a
//! retention holder of its own). Replaying onto a shard stored later than that is harmless: an
//! op carries the whole new value (or a delete), never a delta, and the replay ends at the same
//! state whatever point it starts from.
//!
//! A checkpoint writes about as many rows as changed since the last one (oldest shards first), so
//! a row costs about one serialization, and the WAL kept is about the size of the table. Why
//! whole shards rather than the rows changed: docs/decisions.md.

use crate::model::rows::{LogRecord, Op, OpKind, RowRef, WalRecord, SHARDS};
use crate::storage::rows::RowMap;
use crate::storage::{RowImages, ShardImage, ShardRows, StorageError, Store};

/// A set of shards, as bits.
#[derive(Debug, Clone, Default)]
struct ShardSet([u64; SHARDS / 64]);

impl ShardSet {
    fn insert(&mut self, shard: usize) {
        if let Some(word) = self.0.get_mut(shard / 64) {
            *word |= 1 << (shard % 64);
        }
    }

    fn remove(&mut self, shard: usize) {
        if let Some(word) = self.0.get_mut(shard / 64) {
            *word &= !(1 << (shard % 64));
        }
    }

    fn contains(&self, shard: usize) -> bool {
        self.0.get(shard / 64).is_some_and(|w| w & (1 << (shard % 64)) != 0)
    }
}

/// Rows in memory: what the owner has replayed. Values are shared with the ops that wrote them
/// (and so with every other owner that applied the same op).
#[derive(Debug, Default)]
pub struct TableState {
    rows: RowMap,
    /// Shards changed since a checkpoint last read them: their stored rows are out of date.
    dirty: ShardSet,
}

impl TableState {
    /// Applies a batch's ops in order.
    pub fn apply(&mut self, ops: &[Op]) {
        for op in ops {
            // Hashed once: placement and map hash both read the strings.
            let row = op.row_key();
            self.dirty.insert(row.shard());
            match (op.op, &op.value) {
                (OpKind::Delete, _) => self.rows.remove(row.as_ref()),
                (OpKind::Insert | OpKind::Update | OpKind::Upsert, Some(v)) => self.rows.insert(row, v.clone()),
                // Checked when the batch was accepted: an insert, update or upsert has a value.
                (OpKind::Insert | OpKind::Update | OpKind::Upsert, None) => {}
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

    /// The state holding exactly these rows, all of them stored (a reseed writes them).
    pub fn from_rows(rows: &[(String, String, serde_json::Value)]) -> Self {
        TableState { rows: RowMap::from_rows(rows), dirty: ShardSet::default() }
    }

    /// The rows, to store them whole (a reseed).
    pub fn rows(&self) -> &RowMap {
        &self.rows
    }

    /// What checkpoint `plan` writes, the table being as of `lsn`: [`TableState::pick`], each
    /// shard [`TableState::take`]n, then [`TableState::finish`]. In one go, for an owner whose
    /// table nobody else reads meanwhile (the primary's, on its actor).
    pub fn capture(&mut self, plan: &CheckpointPlan, lsn: u64) -> Option<RowImages> {
        let images = self.pick(plan).into_iter().map(|shard| self.take(shard)).collect();
        self.finish(plan, lsn, images)
    }

    /// The changed shards checkpoint `plan` writes: oldest first, until they hold the plan's
    /// budget of rows (at least one shard).
    pub fn pick(&self, plan: &CheckpointPlan) -> Vec<usize> {
        let mut dirty: Vec<usize> = (0..SHARDS).filter(|&s| self.dirty.contains(s)).collect();
        dirty.sort_by_key(|&s| plan.stored_at(s));
        let mut picked = Vec::new();
        let mut rows = 0;
        for shard in dirty {
            if rows >= plan.budget.max(1) {
                break;
            }
            rows += self.rows.shard_len(shard).max(1);
            picked.push(shard);
        }
        picked
    }

    /// Shard `shard` as it is now, no longer changed since, sharing the table's keys and values.
    pub fn take(&mut self, shard: usize) -> ShardImage {
        self.dirty.remove(shard);
        // shard < SHARDS (256), which fits a u16.
        ShardImage { shard: shard as u16, rows: ShardRows::Shared(self.rows.shard_rows(shard)) }
    }

    /// As [`TableState::take`], serialized as the store keeps it: slower to take, but it only
    /// reads the rows, so it writes none of the reference counts the table shares with the
    /// primary's (the store's `image::encode`). Still changed if it cannot be serialized.
    pub fn take_encoded(&mut self, shard: usize) -> Result<ShardImage, StorageError> {
        let chunks = self.rows.encode_shard(shard)?;
        self.dirty.remove(shard);
        // shard < SHARDS (256), which fits a u16.
        Ok(ShardImage { shard: shard as u16, rows: ShardRows::Encoded(chunks) })
    }

    /// The checkpoint of `images`, taken at or after `lsn` (the lsn when they were picked: a
    /// shard taken later holds more, and replaying from `lsn` onto it ends at the same state),
    /// and every unchanged shard stored before `lsn`, whose lsn just moves. `None` if there is
    /// nothing to write.
    pub fn finish(&self, plan: &CheckpointPlan, lsn: u64, images: Vec<ShardImage>) -> Option<RowImages> {
        let mut imaged = ShardSet::default();
        for i in &images {
            imaged.insert(usize::from(i.shard));
        }
        // shard < SHARDS (256), which fits a u16.
        let unchanged: Vec<u16> = (0..SHARDS)
            .filter(|&s| !imaged.contains(s) && !self.dirty.contains(s) && plan.stored_at(s) < lsn)
            .map(|s| s as u16)
            .collect();
        if images.is_empty() && unchanged.is_empty() {
            return None;
        }
        Some(RowImages { lsn, epoch: plan.epoch, images, unchanged, trim_log: plan.trim_log })
    }

    /// The shards of a checkpoint that failed are out of date in the store again.
    pub fn mark_dirty(&mut self, shards: impl IntoIterator<Item = usize>) {
        for shard in shards {
            self.dirty.insert(shard);
        }
    }
}

/// Most ops applied in memory since the last checkpoint before one starts on its own (the
/// periodic one catches the rest): it sizes a checkpoint, and with it how far the stored rows
/// trail the WAL.
pub const CHECKPOINT_OPS: usize = 20_000;

/// Where an owner's stored rows stand (the lsn of each shard), how much was applied since the
/// last checkpoint, and whether one is running (one at a time, so each shard's lsn only grows).
#[derive(Debug)]
pub struct Checkpoint {
    shard_lsns: Vec<u64>,
    /// The owner's reseed count, as the store has it ([`RowImages::epoch`]).
    epoch: u64,
    ops: usize,
    in_flight: bool,
}

/// What a checkpoint starting now is to write, for [`TableState::capture`].
#[derive(Debug, Clone)]
pub struct CheckpointPlan {
    shard_lsns: Vec<u64>,
    /// Rows to write, about: the ops applied since the last checkpoint (at least
    /// [`CHECKPOINT_OPS`]), or all if unbounded.
    budget: usize,
    epoch: u64,
    trim_log: bool,
}

impl Default for Checkpoint {
    /// Nothing stored: every shard at lsn 0.
    fn default() -> Self {
        Checkpoint { shard_lsns: vec![0; SHARDS], epoch: 0, ops: 0, in_flight: false }
    }
}

impl CheckpointPlan {
    /// The lsn shard `shard` was stored at when the plan was made.
    fn stored_at(&self, shard: usize) -> u64 {
        self.shard_lsns.get(shard).copied().unwrap_or(0)
    }
}

impl Checkpoint {
    /// Starts from stored rows whose shards reflect `shard_lsns`, with nothing pending.
    pub fn reset(&mut self, shard_lsns: Vec<u64>, epoch: u64) {
        *self = Checkpoint { shard_lsns, epoch, ..Checkpoint::default() };
    }

    /// `ops` ops were applied in memory.
    pub fn applied(&mut self, ops: usize) {
        self.ops += ops;
    }

    /// Enough was applied that a checkpoint should start now.
    pub fn due(&self) -> bool {
        !self.in_flight && self.ops >= CHECKPOINT_OPS
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Starts a checkpoint (`None` if one runs): `all` writes every changed shard (before the
    /// WAL is truncated), otherwise about as many rows as were applied since the last one, and
    /// at least [`CHECKPOINT_OPS`].
    /// `trim_log` as in [`RowImages::trim_log`]. Call [`Checkpoint::finished`] when it ends,
    /// also if the capture found nothing to write.
    pub fn start(&mut self, all: bool, trim_log: bool) -> Option<CheckpointPlan> {
        if self.in_flight {
            return None;
        }
        self.in_flight = true;
        // Never less than CHECKPOINT_OPS rows: a few ops after a burst would otherwise leave
        // the burst's shards to be written one per period.
        let budget = if all { usize::MAX } else { self.ops.max(CHECKPOINT_OPS) };
        self.ops = 0;
        Some(CheckpointPlan { shard_lsns: self.shard_lsns.clone(), budget, epoch: self.epoch, trim_log })
    }

    /// The checkpoint ended: `written` holds the lsn and the shards it stored, if it did.
    pub fn finished(&mut self, written: Option<(u64, &[u16])>) {
        self.in_flight = false;
        if let Some((lsn, shards)) = written {
            for &s in shards {
                if let Some(at) = self.shard_lsns.get_mut(usize::from(s)) {
                    *at = (*at).max(lsn);
                }
            }
        }
    }

    /// Where the WAL must be kept from: the oldest shard's lsn.
    pub fn needs_from(&self) -> u64 {
        self.shard_lsns.iter().copied().min().unwrap_or(0)
    }
}

/// The shards a checkpoint stores: those written and those whose lsn moves.
pub fn stored_shards(images: &RowImages) -> Vec<u16> {
    images.images.iter().map(|i| i.shard).chain(images.unchanged.iter().copied()).collect()
}

/// Most bytes of WAL read per store call while replaying.
const REPLAY_CHUNK: usize = 4 << 20;

/// An owner's table as [`load_table`] rebuilds it, and where its stored rows stand.
pub struct LoadedTable {
    pub table: TableState,
    pub shard_lsns: Vec<u64>,
    pub epoch: u64,
    /// The lsn the table reflects.
    pub lsn: u64,
}

/// Loads `owner`'s stored rows and replays its WAL from the oldest shard's lsn up to `upto`, or
/// up to the newest shard's lsn if that is later: the table as of [`LoadedTable::lsn`].
/// (Stored shards hold only what was applied, so a replica's table may be rebuilt past the
/// confirmed position it stored last: its checkpoints reached there, and its log before the
/// oldest shard is gone.) Shards the replay changed (and any stored with rows of another shard)
/// are marked changed, so the next checkpoints write them. Blocking (call it off the arbiter).
pub fn load_table(store: &Store, owner: &str, upto: u64) -> Result<LoadedTable, StorageError> {
    let stored = store.load_rows(owner)?;
    let mut table = TableState { rows: stored.rows, dirty: ShardSet::default() };
    table.mark_dirty(stored.misplaced);
    let until = stored.shard_lsns.iter().copied().max().unwrap_or(0).max(upto);
    let from = stored.shard_lsns.iter().copied().min().unwrap_or(0).min(until);
    read_contiguous(store, owner, from, until, "to rebuild its rows", |r| table.apply(&r.ops))?;
    Ok(LoadedTable { table, shard_lsns: stored.shard_lsns, epoch: stored.epoch, lsn: until })
}

/// Reads `owner`'s WAL records from `from` up to `until`, every one of them in order and none
/// missing, a chunk of [`REPLAY_CHUNK`] bytes at a time, handing each to `f`; an error saying what
/// the records were needed for (`purpose`) if the log lacks any (truncated, or never written).
pub fn read_contiguous(
    store: &Store,
    owner: &str,
    from: u64,
    until: u64,
    purpose: &'static str,
    mut f: impl FnMut(LogRecord),
) -> Result<(), StorageError> {
    let mut cursor = from;
    while cursor < until {
        let records = read_records(store, owner, cursor, until, REPLAY_CHUNK)?;
        if records.first().is_none_or(|r| r.lsn != cursor) {
            let next_kept = store.read_log(owner, cursor, 1)?.first().map(|r| r.0);
            return Err(StorageError::LogGap { owner: owner.to_string(), from: cursor, until, purpose, next_kept });
        }
        for r in records {
            if r.lsn != cursor {
                break;
            }
            cursor = r.end_lsn();
            f(r);
        }
    }
    Ok(())
}

/// `owner`'s log records from `from` on, until `max_bytes` of them are read or one reaches
/// `until`, decoded for applying and shipping. Blocking.
pub fn read_records(
    store: &Store,
    owner: &str,
    from: u64,
    until: u64,
    max_bytes: usize,
) -> Result<Vec<LogRecord>, StorageError> {
    let mut decoded = Vec::new();
    for (lsn, bytes) in store.read_log(owner, from, max_bytes)? {
        if lsn >= until {
            break;
        }
        let record: WalRecord = serde_json::from_slice(&bytes)
            .map_err(|source| StorageError::UnreadableRecord { owner: owner.to_string(), lsn, source })?;
        decoded.push(LogRecord {
            lsn,
            bytes,
            committed_at_ms: record.committed_at_ms,
            ops: std::sync::Arc::new(record.ops),
        });
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OpKind, key: &str, value: Option<i64>) -> Op {
        Op { op: kind, table: "t".into(), key: key.into(), value: value.map(|v| serde_json::json!(v).into()) }
    }

    fn append(store: &Store, owner: &str, lsn: &mut u64, ops: Vec<Op>) {
        let bytes = serde_json::to_vec(&WalRecord { committed_at_ms: 0, ops }).unwrap();
        let at = *lsn;
        *lsn += bytes.len() as u64;
        store
            .commit_log(owner, crate::storage::LogCommit { records: vec![(at, bytes.into())], ..Default::default() })
            .unwrap();
    }

    fn rows(table: &TableState) -> Vec<(String, String, serde_json::Value)> {
        table.sorted_rows()
    }

    /// Starts, captures and writes a checkpoint of `table` at `lsn`, as the actors do.
    fn checkpoint(store: &Store, owner: &str, cp: &mut Checkpoint, table: &mut TableState, lsn: u64, all: bool) -> usize {
        checkpoint_with(store, owner, cp, table, lsn, all, None)
    }

    /// As [`checkpoint`], with the plan's budget of rows set to `budget` if given.
    fn checkpoint_with(
        store: &Store,
        owner: &str,
        cp: &mut Checkpoint,
        table: &mut TableState,
        lsn: u64,
        all: bool,
        budget: Option<usize>,
    ) -> usize {
        let mut plan = cp.start(all, true).expect("none in flight");
        if let Some(b) = budget {
            plan.budget = b;
        }
        let Some(images) = table.capture(&plan, lsn) else {
            cp.finished(None);
            return 0;
        };
        let (written, shards) = (images.images.len(), stored_shards(&images));
        assert!(store.write_row_images(owner, images).unwrap());
        cp.finished(Some((lsn, &shards)));
        written
    }

    #[test]
    fn load_replays_the_wal_from_the_oldest_shard() {
        let store = Store::memory();
        let mut cp = Checkpoint::default();
        let mut live = TableState::default();
        let mut lsn = 0;
        let first = vec![op(OpKind::Insert, "a", Some(1)), op(OpKind::Insert, "b", Some(2))];
        append(&store, "p", &mut lsn, first.clone());
        live.apply(&first);
        assert_eq!(checkpoint(&store, "p", &mut cp, &mut live, lsn, true), 2, "both changed shards");
        assert_eq!(cp.needs_from(), lsn, "every shard is stored as of here");
        assert_eq!(store.rows_lsn("p").unwrap(), lsn);
        let checkpointed = lsn;
        let later = [vec![op(OpKind::Update, "a", Some(10)), op(OpKind::Delete, "b", None)], vec![op(OpKind::Insert, "c", Some(3))]];
        for batch in &later {
            append(&store, "p", &mut lsn, batch.clone());
            live.apply(batch);
        }

        let loaded = load_table(&store, "p", lsn).unwrap();
        assert_eq!(loaded.shard_lsns, vec![checkpointed; SHARDS]);
        assert_eq!(loaded.table.get("t", "a"), Some(&serde_json::json!(10)));
        assert_eq!(loaded.table.get("t", "b"), None);
        assert_eq!(loaded.table.get("t", "c"), Some(&serde_json::json!(3)));
        assert_eq!(rows(&loaded.table), rows(&live));
        // The shards the replay changed are the ones the next checkpoint writes; the others
        // only move.
        let mut table = loaded.table;
        let mut cp = Checkpoint::default();
        cp.reset(loaded.shard_lsns, loaded.epoch);
        let changed: std::collections::BTreeSet<usize> =
            ["a", "b", "c"].iter().map(|k| RowRef::new("t", k).shard()).collect();
        assert_eq!(checkpoint(&store, "p", &mut cp, &mut table, lsn, true), changed.len());
        assert_eq!(cp.needs_from(), lsn);
        assert_eq!(rows(&load_table(&store, "p", lsn).unwrap().table), rows(&live));
        assert_eq!(checkpoint(&store, "p", &mut cp, &mut table, lsn, true), 0, "nothing left to write");

        // WAL missing after the oldest shard: refused, not silently short.
        append(&store, "p", &mut lsn, vec![op(OpKind::Insert, "d", Some(4))]);
        store.truncate_log("p", lsn).unwrap();
        let err = load_table(&store, "p", lsn).err().expect("refused");
        assert!(err.to_string().contains("needed to rebuild"), "{err}");
    }

    #[test]
    fn a_checkpoint_writes_about_its_budget_oldest_shards_first() {
        let store = Store::memory();
        let mut cp = Checkpoint::default();
        let mut table = TableState::default();
        let mut lsn = 0;
        let batch: Vec<Op> = (0..40_000).map(|i| op(OpKind::Insert, &format!("k{i}"), Some(i))).collect();
        append(&store, "p", &mut lsn, batch.clone());
        table.apply(&batch);
        // Fewer ops than the floor: CHECKPOINT_OPS rows' worth of shards.
        cp.applied(1);
        let written = checkpoint(&store, "p", &mut cp, &mut table, lsn, false);
        let per_shard = 40_000 / SHARDS;
        assert!(written > 0 && written < SHARDS, "about CHECKPOINT_OPS rows' worth of shards: {written}");
        assert!((written * per_shard).abs_diff(CHECKPOINT_OPS) < 3 * per_shard, "{written} shards of about {per_shard} rows");
        assert_eq!(cp.needs_from(), 0, "the other changed shards still need the WAL from the start");
        // The rest, and the WAL is no longer needed to rebuild anything.
        checkpoint(&store, "p", &mut cp, &mut table, lsn, true);
        assert_eq!(cp.needs_from(), lsn);
        assert_eq!(store.rows_lsn("p").unwrap(), lsn);
        assert_eq!(store.log_bounds("p").unwrap(), None, "trimmed up to the oldest shard");
        assert_eq!(store.load_rows("p").unwrap().rows.len(), 40_000);
    }

    /// A tiny deterministic generator (the test needs no crate for it).
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    #[test]
    fn rows_rebuilt_after_any_mix_of_checkpoints_and_restarts_match_what_was_applied() {
        for engine in ["memory", "disk"] {
            let dir = tempfile::tempdir().unwrap();
            let mut store = if engine == "disk" { Store::open_dir(dir.path()).unwrap() } else { Store::memory() };
            let mut rng = Lcg(7);
            let mut cp = Checkpoint::default();
            let mut table = TableState::default();
            let mut lsn = 0;
            for round in 0..300 {
                let ops: Vec<Op> = (0..rng.below(20) + 1)
                    .map(|_| {
                        let key = format!("k{}", rng.below(400));
                        match rng.below(4) {
                            0 => op(OpKind::Delete, &key, None),
                            _ => op(OpKind::Update, &key, Some(rng.below(1000) as i64)),
                        }
                    })
                    .collect();
                append(&store, "r", &mut lsn, ops.clone());
                table.apply(&ops);
                cp.applied(ops.len());
                match rng.below(10) {
                    0..=2 => {
                        // Partial checkpoints mostly (a budget of a few rows), sometimes all.
                        let all = rng.below(5) == 0;
                        let budget = rng.below(60) as usize;
                        checkpoint_with(&store, "r", &mut cp, &mut table, lsn, all, (!all).then_some(budget));
                    }
                    3 => {
                        // A restart: everything rebuilt from the store alone.
                        if engine == "disk" {
                            store.close();
                            store = Store::open_dir(dir.path()).unwrap();
                        }
                        let loaded = load_table(&store, "r", lsn).unwrap();
                        assert_eq!(rows(&loaded.table), rows(&table), "{engine}, round {round}");
                        table = loaded.table;
                        cp.reset(loaded.shard_lsns, loaded.epoch);
                    }
                    _ => {}
                }
            }
            assert_eq!(rows(&load_table(&store, "r", lsn).unwrap().table), rows(&table), "{engine}, at the end");
        }
    }
}
