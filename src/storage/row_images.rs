//! An owner's rows as the store keeps them: a shard at a time, each with the lsn it reflects,
//! written by checkpoints ([`RowImages`]) and replaced whole by a reseed.

use crate::model::rows::{RowKey, RowValue, SHARDS};

use super::image;
use super::rows::RowMap;
use super::StorageError;

/// The meta key counting an owner's reseeds: a checkpoint read before the last reseed carries
/// an older number and is not written ([`RowImages::epoch`]). On disk it is kept in both of the
/// owner's files (see `disk::migrate` for a reseed cut between them).
pub(crate) const ROWS_EPOCH: &str = "rows_epoch";

/// A checkpoint of an owner's rows: some shards written whole as they were at `lsn`, and the
/// lsn of others moved to `lsn` because nothing changed them since they were written. One
/// transaction; each shard's stored lsn only moves forward, so a checkpoint that finishes late
/// (its actor restarted meanwhile and wrote a newer one) never puts older rows over newer ones.
#[derive(Debug, Clone, Default)]
pub struct RowImages {
    pub lsn: u64,
    /// The owner's reseed count when the rows were read; if a reseed came since, nothing is
    /// written (those rows belong to the table the reseed replaced).
    pub epoch: u64,
    pub images: Vec<ShardImage>,
    /// Shards whose stored rows are still exactly theirs at `lsn`: only their lsn moves.
    pub unchanged: Vec<u16>,
    /// Afterwards, drop the owner's log before the oldest shard's lsn (a replica's received
    /// log, which it keeps only until its rows are stored).
    pub trim_log: bool,
}

/// Every row of one shard.
#[derive(Debug, Clone)]
pub struct ShardImage {
    pub shard: u16,
    pub rows: ShardRows,
}

/// A shard's rows as a checkpoint took them.
#[derive(Debug, Clone)]
pub enum ShardRows {
    /// Sharing keys and values with the table: quick to take, serialized by the store (the
    /// primary's, taken on its actor and written off it).
    Shared(Vec<(RowKey, RowValue)>),
    /// Serialized already ([`image::encode`]): a replica's, taken under its table's lock off
    /// the arbiter.
    Encoded(Vec<Vec<u8>>),
}

impl ShardRows {
    /// The chunks the store keeps.
    pub(crate) fn into_chunks(self) -> Result<Vec<Vec<u8>>, StorageError> {
        match self {
            ShardRows::Shared(rows) => image::encode(rows.iter().map(|(k, v)| (k, v))),
            ShardRows::Encoded(chunks) => Ok(chunks),
        }
    }
}

/// An owner's stored rows, as [`RowImageStore::load_rows`] reads them.
#[derive(Debug, Default)]
pub struct StoredRows {
    pub rows: RowMap,
    /// Per shard (index), the lsn its rows reflect (0 if never written: no rows, before any
    /// record). The WAL from the smallest is needed to bring the rows up to date.
    pub shard_lsns: Vec<u64>,
    pub epoch: u64,
    /// Shards whose stored rows are not exactly theirs: a row was stored in one shard and
    /// belongs to another (a store written with another [`crate::model::rows::placement`]).
    /// Both are listed; they must be written again before their lsn may move without a rewrite.
    pub misplaced: Vec<usize>,
}

impl StoredRows {
    pub(crate) fn new() -> Self {
        StoredRows { shard_lsns: vec![0; SHARDS], ..StoredRows::default() }
    }

    /// Adds `row`, found stored in shard `stored_in`.
    fn add(&mut self, stored_in: usize, row: RowKey, value: RowValue) {
        if row.shard() != stored_in {
            self.misplaced.extend([stored_in, row.shard()]);
        }
        self.rows.insert(row, value);
    }

    /// Adds the rows of `owner`'s stored `chunk` of shard `stored_in`.
    pub(crate) fn add_chunk(&mut self, owner: &str, stored_in: usize, chunk: &[u8]) -> Result<(), StorageError> {
        for row in image::decode(chunk) {
            let (table, key, value) = row?;
            let value = RowValue::from_json(value).map_err(|source| StorageError::UnreadableRow {
                owner: owner.to_string(),
                table: table.to_string(),
                key: key.to_string(),
                source,
            })?;
            self.add(stored_in, RowKey::new(table.into(), key.into()), value);
        }
        Ok(())
    }
}

/// Each owner's rows, in a file of their own on disk (apart from its log: a checkpoint writes
/// megabytes, and the owner's WAL commits must not wait for it).
pub trait RowImageStore {
    /// Writes a checkpoint of `owner`'s rows (see [`RowImages`]); returns once it is durable,
    /// with whether it was written (not if a reseed came since its rows were read).
    fn write_row_images(&self, owner: &str, checkpoint: RowImages) -> Result<bool, StorageError>;

    /// Replaces all of `owner`'s rows with `rows` as of `lsn`, drops its whole log and sets
    /// `meta` in its log: a replica reseeded from a base copy or a snapshot. Returns the owner's
    /// new reseed count ([`RowImages::epoch`]).
    fn replace_rows(&self, owner: &str, rows: &RowMap, lsn: u64, meta: &[(String, u64)]) -> Result<u64, StorageError>;

    /// `owner`'s stored rows, and the lsn each shard of them reflects.
    fn load_rows(&self, owner: &str) -> Result<StoredRows, StorageError>;

    /// The smallest lsn over `owner`'s stored shards: its rows are stored up to there at least
    /// (0 while a shard was never written).
    fn rows_lsn(&self, owner: &str) -> Result<u64, StorageError>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::storage::{LogCommit, Store};

    pub(crate) fn row(table: &str, key: &str, value: &str) -> (String, String, serde_json::Value) {
        (table.to_string(), key.to_string(), serde_json::json!(value))
    }

    /// Shard `shard` of `rows`, as a checkpoint writes it.
    pub(crate) fn image(rows: &RowMap, shard: usize) -> ShardImage {
        ShardImage { shard: shard as u16, rows: ShardRows::Shared(rows.shard_rows(shard)) }
    }

    fn check_rows(s: &Store) {
        let stored = |owner: &str| s.load_rows(owner).expect("rows");
        let fresh = stored("p");
        assert!(fresh.rows.is_empty());
        assert_eq!(fresh.shard_lsns, vec![0; SHARDS], "a shard never written reflects lsn 0");
        assert_eq!(s.rows_lsn("p").expect("rows lsn"), 0);

        let v1 = RowMap::from_rows(&[row("t", "k1", "v1"), row("t", "k2", "v2")]);
        let k1 = RowKey::new("t".into(), "k1".into()).shard();
        let k2 = RowKey::new("t".into(), "k2".into()).shard();
        assert_ne!(k1, k2, "the test wants two shards");
        // Both shards written at 10, every other one unchanged since lsn 0.
        let others: Vec<u16> = (0..SHARDS).filter(|&i| i != k1 && i != k2).map(|i| i as u16).collect();
        let first = RowImages { lsn: 10, epoch: 0, images: vec![image(&v1, k1), image(&v1, k2)], unchanged: others.clone(), trim_log: false };
        assert!(s.write_row_images("p", first.clone()).expect("write"));
        let got = stored("p");
        assert_eq!(got.rows.sorted_rows(), vec![row("t", "k1", "v1"), row("t", "k2", "v2")]);
        assert_eq!(got.shard_lsns, vec![10; SHARDS]);
        assert!(got.misplaced.is_empty());
        assert_eq!(s.rows_lsn("p").expect("rows lsn"), 10);

        // k1 deleted, k2 changed at 20; k1's shard only is written again.
        let v2 = RowMap::from_rows(&[row("t", "k2", "v2b")]);
        let second = RowImages { lsn: 20, epoch: 0, images: vec![image(&v2, k1)], unchanged: vec![], trim_log: false };
        assert!(s.write_row_images("p", second).expect("write"));
        let got = stored("p");
        assert_eq!(got.rows.sorted_rows(), vec![row("t", "k2", "v2")], "k2's shard still holds what was written at 10");
        assert_eq!(got.shard_lsns[k1], 20);
        assert_eq!(got.shard_lsns[k2], 10);
        assert_eq!(s.rows_lsn("p").expect("rows lsn"), 10);
        // A checkpoint that finishes late (older than what a shard holds) changes nothing there.
        assert!(s.write_row_images("p", first).expect("write"));
        assert_eq!(stored("p").rows.sorted_rows(), vec![row("t", "k2", "v2")]);
        assert_eq!(stored("p").shard_lsns[k1], 20);

        // A replica's checkpoint trims its log to the oldest shard's lsn.
        for lsn in [0u64, 5, 12] {
            s.commit_log("r", LogCommit { records: vec![(lsn, vec![b'x'; if lsn == 12 { 3 } else { 5 }].into())], ..Default::default() })
                .expect("commit");
        }
        let all: Vec<u16> = (0..SHARDS).map(|i| i as u16).collect();
        let mut trim = RowImages { lsn: 12, epoch: 0, images: vec![], unchanged: all, trim_log: true };
        assert!(s.write_row_images("r", trim.clone()).expect("write"));
        assert_eq!(s.log_bounds("r").expect("bounds"), Some((12, 12, 3)));
        // A reseed replaces rows and log, and makes a checkpoint read before it stale.
        let seeded = RowMap::from_rows(&[row("u", "x", "1")]);
        assert_eq!(s.replace_rows("r", &seeded, 7, &[("r.flush".into(), 7)]).expect("reseed"), 1);
        assert_eq!(s.log_bounds("r").expect("bounds"), None);
        let got = stored("r");
        assert_eq!(got.rows.sorted_rows(), vec![row("u", "x", "1")]);
        assert_eq!(got.shard_lsns, vec![7; SHARDS]);
        assert_eq!(got.epoch, 1);
        assert_eq!(s.get_log_meta("r", "r.flush").expect("meta"), Some(7));
        trim.lsn = 30;
        assert!(!s.write_row_images("r", trim.clone()).expect("write"), "written with the epoch before the reseed");
        assert_eq!(stored("r").shard_lsns, vec![7; SHARDS]);
        trim.epoch = 1;
        assert!(s.write_row_images("r", trim).expect("write"));
        assert_eq!(stored("r").shard_lsns, vec![30; SHARDS]);
        // Other owners are left alone.
        assert_eq!(stored("p").rows.sorted_rows(), vec![row("t", "k2", "v2")]);

        // A row stored in a shard that is not its own: both shards are reported.
        let wrong = (k1 + 1) % SHARDS;
        let misplaced = RowImages { lsn: 40, epoch: 0, images: vec![ShardImage { shard: wrong as u16, rows: ShardRows::Shared(v1.shard_rows(k1)) }], unchanged: vec![], trim_log: false };
        assert!(s.write_row_images("p", misplaced).expect("write"));
        let got = stored("p");
        assert!(got.misplaced.contains(&wrong) && got.misplaced.contains(&k1), "{:?}", got.misplaced);
    }

    #[test]
    fn rows_are_stored_by_shard_the_same_on_disk_and_in_memory() {
        check_rows(&Store::memory());
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = Store::open_dir(dir.path()).expect("open");
        check_rows(&disk);
        disk.close();
        let reopened = Store::open_dir(dir.path()).expect("reopen");
        assert_eq!(reopened.load_rows("r").expect("rows").shard_lsns, vec![30; SHARDS]);
        assert_eq!(reopened.load_rows("p").expect("rows").rows.len(), 2);
    }

}
