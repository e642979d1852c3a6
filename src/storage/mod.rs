//! Durable state behind one small interface: `redb` on disk (every commit fsynced before it
//! returns), or memory when `storage.engine = "memory"` or `data_dir` is empty.
//!
//! Every call blocks (a commit waits for fsync): actors call it from `spawn_blocking`, never on an
//! arbiter thread, except at startup before any actor runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashMap;

use parking_lot::{Mutex, RwLock};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle, ReadableTableMetadata};


mod file;
mod image;
pub mod rows;
mod segment;
pub mod table;

use crate::model::rows::{RowKey, RowValue, SHARDS};
use rows::RowMap;

/// The file inside `data_dir` that holds membership, settings, slots, snapshots and the event
/// sequence.
pub const DB_FILE: &str = "clusterd.redb";
/// The directory inside `data_dir` with one file per log owner (the primary, each replica): its
/// write-ahead log and its positions. Owners commit in parallel: redb takes one write
/// transaction at a time per file, and a replica's fsync should not queue behind the primary's.
pub const LOG_DIR: &str = "wal";
/// The directory inside `data_dir` with each log owner's rows, a file per owner named as in
/// [`LOG_DIR`]. Apart from the log for the same reason: a checkpoint writes a shard's rows whole
/// (megabytes once a table is large), and in the log's file every WAL commit waited for it
/// (50 to 170 ms seen under load in the replication benchmark, the acknowledgement of every
/// write of that moment with it).
pub const ROWS_DIR: &str = "rows";

/// redb's page cache for one owner's file (a tenth of it buffers a transaction's writes). Its
/// default, 1 GiB per file, would let every replica's file grow a cache that size; a log file is
/// written far more than read (records are read back to ship to a replica that fell behind, rows
/// only at start), so a small cache costs little, and keeps recycling its pages instead of
/// growing the process by every page written.
const LOG_CACHE_BYTES: usize = 64 << 20;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const CLUSTER_NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster_nodes");
const REPLICAS: TableDefinition<&str, &[u8]> = TableDefinition::new("replicas");
const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");
const SLOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("slots");
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
/// An owner's write-ahead log (in the owner's own file): first lsn -> a [`segment`] of records.
const WAL: TableDefinition<u64, &[u8]> = TableDefinition::new("wal_segments");
/// An owner's rows (in its own file), a shard at a time ([`image`]): `shard << 32 | chunk` ->
/// chunk. A shard's chunks are replaced together.
const ROW_IMAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("row_images");
/// The lsn each shard's stored rows reflect (a shard never written reflects lsn 0: nothing).
const ROW_IMAGE_LSNS: TableDefinition<u16, u64> = TableDefinition::new("row_image_lsns");
/// The table an older clusterd kept an owner's rows in, an entry per row. A file that has it is
/// refused rather than read without its rows.
const OLD_ROWS_TABLE: &str = "rows";
/// The meta key counting an owner's reseeds: a checkpoint read before the last reseed carries
/// an older number and is not written ([`RowImages::epoch`]). In the rows file, the reseed the
/// rows come from; in the log file, the reseed the log follows. A crash between a reseed's two
/// commits (rows first) leaves the rows file ahead, and the next open finishes the log's part.
const ROWS_EPOCH: &str = "rows_epoch";
/// In the rows file, the prefix of the positions the last reseed sets in the log file's meta
/// (what finishing it after a crash writes there).
const RESEED_META: &str = "reseed:";

/// The key of chunk `chunk` of shard `shard` in [`ROW_IMAGES`].
fn chunk_key(shard: usize, chunk: usize) -> u64 {
    ((shard as u64) << 32) | chunk as u64
}

/// The record tables, one per kind of durable object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecordTable {
    /// Cluster membership: node id -> JSON of the node's durable record.
    ClusterNodes,
    /// Replication replicas: replica id -> JSON of its durable record (mode).
    Replicas,
    /// Settings changed at run time: name -> JSON.
    Settings,
    /// Replication slots: name -> JSON of type and positions.
    Slots,
    /// Snapshots of the primary's tables: id -> JSON of lsn and rows.
    Snapshots,
}

impl RecordTable {
    fn definition(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            RecordTable::ClusterNodes => CLUSTER_NODES,
            RecordTable::Replicas => REPLICAS,
            RecordTable::Settings => SETTINGS,
            RecordTable::Slots => SLOTS,
            RecordTable::Snapshots => SNAPSHOTS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("storage operation failed: {0}")]
    Backend(String),
    #[error("the store is closed (the runtime is shutting down)")]
    Closed,
    #[error(transparent)]
    Task(#[from] crate::exec::TaskFailed),
}

/// The open database, read-locked for the duration of one operation so that `close` waits for
/// it; `Closed` once the store was closed.
fn open<T>(db: &RwLock<Option<T>>) -> Result<parking_lot::MappedRwLockReadGuard<'_, T>, StorageError> {
    parking_lot::RwLockReadGuard::try_map(db.read(), Option::as_ref).map_err(|_| StorageError::Closed)
}

fn backend(e: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(e.to_string())
}

enum Backend {
    /// `None` once closed. Operations hold the read lock only for their synchronous duration
    /// (never across an await); `close` takes the write lock, so it waits for them.
    Disk(RwLock<Option<redb::Database>>),
    /// The shared tables in memory; each log owner's are in a [`MemoryLog`] of its own. The
    /// mutex is never held across an await (every call is synchronous).
    Memory(Mutex<MemoryTables>),
}

#[derive(Default)]
struct MemoryTables {
    meta: BTreeMap<String, u64>,
    records: BTreeMap<RecordTable, BTreeMap<String, Vec<u8>>>,
}

/// One log owner's tables in memory, the counterpart of its file on disk, behind a lock of its
/// own: a replica's checkpoint holds up no other owner's commits.
#[derive(Default)]
struct MemoryLog {
    meta: BTreeMap<String, u64>,
    /// By start lsn. Records are shared with whoever committed them (the primary's in-memory
    /// tail, the records shipped to replicas): appending copies no bytes.
    wal: BTreeMap<u64, Arc<[u8]>>,
    /// By shard: the lsn its rows reflect, and the rows, serialized as on disk
    /// ([`image::encode`]): a copy, not the table's keys and values shared, so keeping and
    /// replacing a shard touches none of the table's reference counts. A shard never written
    /// is absent.
    shards: BTreeMap<u16, (u64, Vec<Vec<u8>>)>,
}

impl MemoryLog {
    /// As [`oldest_shard_lsn`] on disk.
    fn oldest_shard_lsn(&self) -> u64 {
        if self.shards.len() < SHARDS {
            return 0;
        }
        self.shards.values().map(|s| s.0).min().unwrap_or(0)
    }
}

/// A log commit: records appended to `owner`'s write-ahead log and positions, written in one
/// transaction (one fsync). Rows reach the store apart, in [`RowImages`].
#[derive(Debug, Clone, Default)]
pub struct LogCommit {
    /// (start lsn, record bytes), in lsn order.
    pub records: Vec<(u64, Arc<[u8]>)>,
    /// Meta keys to set in the same transaction (positions).
    pub meta: Vec<(String, u64)>,
    /// Drop the owner's records that start before this lsn, in the same transaction.
    pub truncate_before: Option<u64>,
    /// Drop the owner's records that start at or after this lsn first, in the same transaction
    /// (a replica dropping records its primary never made durable, see
    /// [`crate::messages::replication::Reconcile`]). A record boundary.
    pub truncate_from: Option<u64>,
}

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
    fn into_chunks(self) -> Result<Vec<Vec<u8>>, StorageError> {
        match self {
            ShardRows::Shared(rows) => image::encode(rows.iter().map(|(k, v)| (k, v))),
            ShardRows::Encoded(chunks) => Ok(chunks),
        }
    }
}

/// An owner's stored rows, as [`Store::load_rows`] reads them.
#[derive(Debug, Default)]
pub struct StoredRows {
    pub rows: RowMap,
    /// Per shard (index), the lsn its rows reflect (0 if never written: no rows, before any
    /// record). The WAL from the smallest is needed to bring the rows up to date.
    pub shard_lsns: Vec<u64>,
    pub epoch: u64,
    /// Shards whose stored rows are not exactly theirs: a row was stored in one shard and
    /// belongs to another (a store written with another [`rows::placement`]). Both are listed;
    /// they must be written again before their lsn may move without a rewrite.
    pub misplaced: Vec<usize>,
}

impl StoredRows {
    fn new() -> Self {
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
    fn add_chunk(&mut self, owner: &str, stored_in: usize, chunk: &[u8]) -> Result<(), StorageError> {
        for row in image::decode(chunk) {
            let (table, key, value) = row?;
            let value = RowValue::from_json(value)
                .map_err(|e| StorageError::Backend(format!("stored row {table}/{key} of {owner} is unreadable: {e}")))?;
            self.add(stored_in, RowKey::new(table.into(), key.into()), value);
        }
        Ok(())
    }
}

/// The process's durable store.
pub struct Store {
    backend: Backend,
    location: Option<PathBuf>,
    /// On disk: each log owner's databases, opened on first use (see [`LOG_DIR`]). Held only to
    /// look an owner up or add one, never across an operation.
    logs: Mutex<LogFiles>,
}

#[derive(Default)]
struct LogFiles {
    open: HashMap<String, Arc<RwLock<Option<OwnerFiles>>>>,
    /// The memory engine's owners.
    memory: HashMap<String, Arc<Mutex<MemoryLog>>>,
    closed: bool,
}

/// A log owner's two databases on disk.
struct OwnerFiles {
    /// Its write-ahead log and positions ([`LOG_DIR`]).
    log: redb::Database,
    /// Its rows by shard, their lsns and its reseed count ([`ROWS_DIR`]).
    rows: redb::Database,
}

/// Which of an owner's files.
#[derive(Debug, Clone, Copy)]
enum OwnerFile {
    Log,
    Rows,
}

impl OwnerFiles {
    fn db(&self, which: OwnerFile) -> &redb::Database {
        match which {
            OwnerFile::Log => &self.log,
            OwnerFile::Rows => &self.rows,
        }
    }
}

/// An owner's file name: its id with anything but ASCII letters, digits, `-` and `_` escaped
/// as `%XX`, so no id can reach outside the directory.
fn log_file_name(owner: &str) -> String {
    let mut name = String::with_capacity(owner.len() + 5);
    for b in owner.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name.push_str(".redb");
    name
}

/// Creates the tables once so reads never meet a missing one: `meta`, the record tables given,
/// and the log's or the rows' of an owner's file.
fn create_tables(db: &redb::Database, records: &[TableDefinition<'_, &str, &[u8]>], owner: Option<OwnerFile>) -> Result<(), StorageError> {
    let tx = db.begin_write().map_err(backend)?;
    tx.open_table(META).map_err(backend)?;
    for t in records {
        tx.open_table(*t).map_err(backend)?;
    }
    match owner {
        Some(OwnerFile::Log) => {
            tx.open_table(WAL).map_err(backend)?;
        }
        Some(OwnerFile::Rows) => {
            tx.open_table(ROW_IMAGES).map_err(backend)?;
            tx.open_table(ROW_IMAGE_LSNS).map_err(backend)?;
        }
        None => {}
    }
    tx.commit().map_err(backend)
}

/// A meta counter, 0 if never set.
fn meta_value(meta: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<u64, StorageError> {
    Ok(meta.get(key).map_err(backend)?.map_or(0, |v| v.value()))
}

/// [`meta_value`] in a read transaction.
fn read_meta_value(tx: &redb::ReadTransaction, key: &str) -> Result<u64, StorageError> {
    meta_value(&tx.open_table(META).map_err(backend)?, key)
}

/// Moves the rows a log file holds (the layout before [`ROWS_DIR`], rows beside the log) into
/// the owner's rows file: copied in one transaction there, then dropped from the log file. A
/// crash in between leaves them in both, and the next open only drops them.
fn move_rows_out_of_log(log: &redb::Database, rows: &redb::Database) -> Result<(), StorageError> {
    let tx = log.begin_read().map_err(backend)?;
    let names: Vec<String> = tx.list_tables().map_err(backend)?.map(|t| t.name().to_string()).collect();
    let lsns_name = ROW_IMAGE_LSNS.name();
    if !names.iter().any(|n| n == lsns_name) {
        return Ok(());
    }
    let copied = rows.begin_read().map_err(backend)?.open_table(ROW_IMAGE_LSNS).map_err(backend)?.len().map_err(backend)? > 0;
    if !copied {
        let epoch = read_meta_value(&tx, ROWS_EPOCH)?;
        let to = rows.begin_write().map_err(backend)?;
        {
            let mut lsns = to.open_table(ROW_IMAGE_LSNS).map_err(backend)?;
            for row in tx.open_table(ROW_IMAGE_LSNS).map_err(backend)?.iter().map_err(backend)? {
                let (shard, lsn) = row.map_err(backend)?;
                lsns.insert(shard.value(), lsn.value()).map_err(backend)?;
            }
            let mut images = to.open_table(ROW_IMAGES).map_err(backend)?;
            for chunk in tx.open_table(ROW_IMAGES).map_err(backend)?.iter().map_err(backend)? {
                let (k, v) = chunk.map_err(backend)?;
                images.insert(k.value(), v.value()).map_err(backend)?;
            }
            to.open_table(META).map_err(backend)?.insert(ROWS_EPOCH, epoch).map_err(backend)?;
        }
        to.commit().map_err(backend)?;
    }
    drop(tx);
    let tx = log.begin_write().map_err(backend)?;
    tx.delete_table(ROW_IMAGES).map_err(backend)?;
    tx.delete_table(ROW_IMAGE_LSNS).map_err(backend)?;
    tx.commit().map_err(backend)
}

/// A reseed's second commit, in the log file: drops the whole log and sets `meta` and the
/// reseed count `epoch` (see [`ROWS_EPOCH`]).
fn reseed_log(log: &redb::Database, epoch: u64, meta: &[(String, u64)]) -> Result<(), StorageError> {
    let tx = log.begin_write().map_err(backend)?;
    {
        tx.open_table(WAL).map_err(backend)?.retain(|_, _| false).map_err(backend)?;
        let mut m = tx.open_table(META).map_err(backend)?;
        m.insert(ROWS_EPOCH, epoch).map_err(backend)?;
        for (k, v) in meta {
            m.insert(k.as_str(), *v).map_err(backend)?;
        }
    }
    tx.commit().map_err(backend)
}

/// Finishes a reseed a crash cut between its two commits: the rows file is ahead of the log's.
fn finish_reseed(log: &redb::Database, rows: &redb::Database) -> Result<(), StorageError> {
    let rows_tx = rows.begin_read().map_err(backend)?;
    let epoch = read_meta_value(&rows_tx, ROWS_EPOCH)?;
    if epoch <= read_meta_value(&log.begin_read().map_err(backend)?, ROWS_EPOCH)? {
        return Ok(());
    }
    let mut meta = Vec::new();
    for row in rows_tx.open_table(META).map_err(backend)?.range(RESEED_META..).map_err(backend)? {
        let (k, v) = row.map_err(backend)?;
        match k.value().strip_prefix(RESEED_META) {
            Some(key) => meta.push((key.to_string(), v.value())),
            None => break,
        }
    }
    reseed_log(log, epoch, &meta)
}

/// Refuses an owner's file that keeps rows in [`OLD_ROWS_TABLE`].
fn refuse_old_layout(db: &redb::Database, path: &Path) -> Result<(), StorageError> {
    let tx = db.begin_read().map_err(backend)?;
    let mut tables = tx.list_tables().map_err(backend)?;
    if tables.any(|t| t.name() == OLD_ROWS_TABLE) {
        return Err(StorageError::Open {
            path: path.to_path_buf(),
            message: "written by an older clusterd, which stored rows one by one; this version stores them by shard and cannot read it (start on a fresh data_dir)".into(),
        });
    }
    Ok(())
}

/// The smallest lsn over every shard's stored rows (0 while a shard was never written).
fn oldest_shard_lsn(lsns: &impl ReadableTable<u16, u64>) -> Result<u64, StorageError> {
    let mut oldest = u64::MAX;
    let mut count = 0;
    for row in lsns.iter().map_err(backend)? {
        let (_, lsn) = row.map_err(backend)?;
        oldest = oldest.min(lsn.value());
        count += 1;
    }
    Ok(if count < SHARDS { 0 } else { oldest })
}

/// Replaces shard `shard`'s stored rows with `chunks` (from [`image::encode`]).
fn put_shard(images: &mut redb::Table<'_, u64, &[u8]>, shard: usize, chunks: &[Vec<u8>]) -> Result<(), StorageError> {
    images.retain_in(chunk_key(shard, 0)..chunk_key(shard + 1, 0), |_, _| false).map_err(backend)?;
    for (i, chunk) in chunks.iter().enumerate() {
        images.insert(chunk_key(shard, i), chunk.as_slice()).map_err(backend)?;
    }
    Ok(())
}

/// Removes the log records that start before `before`; returns how many went. A segment
/// holding records on both sides is written again with the later ones.
fn remove_log_before(wal: &mut redb::Table<'_, u64, &[u8]>, before: u64) -> Result<usize, StorageError> {
    let mut old = Vec::new();
    let mut removed = 0;
    let mut kept: Option<(u64, Vec<u8>)> = None;
    for row in wal.range(..before).map_err(backend)? {
        let (k, v) = row.map_err(backend)?;
        old.push(k.value());
        let mut later = Vec::new();
        for record in segment::decode(k.value(), v.value()) {
            let (lsn, bytes) = record?;
            if lsn < before {
                removed += 1;
            } else {
                later.push((lsn, bytes));
            }
        }
        if let Some(&(first, _)) = later.first() {
            let mut seg = Vec::new();
            segment::encode(later.iter().map(|r| r.1), &mut seg)?;
            kept = Some((first, seg));
        }
    }
    for k in &old {
        wal.remove(*k).map_err(backend)?;
    }
    if let Some((first, seg)) = kept {
        wal.insert(first, seg.as_slice()).map_err(backend)?;
    }
    Ok(removed)
}

/// Removes the log records that start at or after `from`; returns how many went. A segment
/// holding records on both sides is written again with the earlier ones.
fn remove_log_from(wal: &mut redb::Table<'_, u64, &[u8]>, from: u64) -> Result<usize, StorageError> {
    let mut removed = 0;
    let mut kept: Option<(u64, Vec<u8>)> = None;
    let straddling = match wal.range(..from).map_err(backend)?.next_back() {
        Some(row) => {
            let (k, v) = row.map_err(backend)?;
            Some((k.value(), v.value().to_vec()))
        }
        None => None,
    };
    if let Some((first, seg)) = straddling {
        let mut earlier = Vec::new();
        for record in segment::decode(first, &seg) {
            let (lsn, bytes) = record?;
            if lsn < from {
                earlier.push(bytes);
            } else {
                removed += 1;
            }
        }
        if removed > 0 {
            let mut out = Vec::new();
            segment::encode(earlier.iter().copied(), &mut out)?;
            kept = Some((first, out));
        }
    }
    let later: Vec<u64> = wal
        .range(from..)
        .map_err(backend)?
        .map(|row| row.map(|(k, _)| k.value()).map_err(backend))
        .collect::<Result<_, _>>()?;
    for k in later {
        if let Some(v) = wal.remove(k).map_err(backend)? {
            removed += segment::decode(k, v.value()).count();
        }
    }
    if let Some((first, seg)) = kept {
        wal.insert(first, seg.as_slice()).map_err(backend)?;
    }
    Ok(removed)
}

/// (lsn, length) of the last record of the segment stored under `first`.
fn last_record(first: u64, seg: &[u8]) -> Result<(u64, usize), StorageError> {
    let mut last = (first, 0);
    for record in segment::decode(first, seg) {
        let (lsn, bytes) = record?;
        last = (lsn, bytes.len());
    }
    Ok(last)
}

/// Appends `records` (in lsn order) to `wal`: a segment per run of contiguous records (one, for
/// every commit the primary and replicas make).
fn append_log(wal: &mut redb::Table<'_, u64, &[u8]>, records: &[(u64, Arc<[u8]>)]) -> Result<(), StorageError> {
    let mut seg = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let mut end = start + 1;
        while end < records.len() && records[end].0 == records[end - 1].0 + records[end - 1].1.len() as u64 {
            end += 1;
        }
        seg.clear();
        segment::encode(records[start..end].iter().map(|r| &r.1[..]), &mut seg)?;
        wal.insert(records[start].0, seg.as_slice()).map_err(backend)?;
        start = end;
    }
    Ok(())
}

impl Store {
    /// Opens the store in `dir` (the redb files, created if missing), or in memory (`None`).
    pub fn open(dir: Option<&Path>) -> Result<Store, StorageError> {
        match dir {
            None => Ok(Store::memory()),
            Some(dir) => Store::open_dir(dir),
        }
    }

    pub fn open_dir(dir: &Path) -> Result<Store, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| StorageError::CreateDir { path: dir.to_path_buf(), source })?;
        let path = dir.join(DB_FILE);
        let db = file::open_database(&path, &redb::Builder::new())
            .map_err(|e| StorageError::Open { path: path.clone(), message: e.to_string() })?;
        create_tables(&db, &[CLUSTER_NODES, REPLICAS, SETTINGS, SLOTS, SNAPSHOTS], None)?;
        // Owners' files are opened on first use; one of an older layout is refused now, at
        // start, not when its owner first loads (the primary would stay down).
        if let Ok(entries) = std::fs::read_dir(dir.join(LOG_DIR)) {
            for entry in entries.flatten() {
                let file = entry.path();
                if file.extension().is_some_and(|e| e == "redb") {
                    let db = redb::Database::open(&file)
                        .map_err(|e| StorageError::Open { path: file.clone(), message: e.to_string() })?;
                    refuse_old_layout(&db, &file)?;
                }
            }
        }
        Ok(Store { backend: Backend::Disk(RwLock::new(Some(db))), location: Some(path), logs: Mutex::default() })
    }

    pub fn memory() -> Store {
        Store { backend: Backend::Memory(Mutex::new(MemoryTables::default())), location: None, logs: Mutex::default() }
    }

    /// `owner`'s databases (disk only), opened and created on first use.
    fn owner_files(&self, owner: &str) -> Result<Arc<RwLock<Option<OwnerFiles>>>, StorageError> {
        let mut logs = self.logs.lock();
        if logs.closed {
            return Err(StorageError::Closed);
        }
        if let Some(db) = logs.open.get(owner) {
            return Ok(db.clone());
        }
        let Some(data_dir) = self.location.as_deref().and_then(Path::parent) else {
            return Err(StorageError::Backend("a log file needs a data directory".into()));
        };
        let open_in = |sub: &str| -> Result<redb::Database, StorageError> {
            let dir = data_dir.join(sub);
            std::fs::create_dir_all(&dir).map_err(|source| StorageError::CreateDir { path: dir.clone(), source })?;
            let path = dir.join(log_file_name(owner));
            let db = file::open_database(&path, redb::Builder::new().set_cache_size(LOG_CACHE_BYTES))
                .map_err(|e| StorageError::Open { path: path.clone(), message: e.to_string() })?;
            refuse_old_layout(&db, &path)?;
            Ok(db)
        };
        let log = open_in(LOG_DIR)?;
        create_tables(&log, &[], Some(OwnerFile::Log))?;
        let rows = open_in(ROWS_DIR)?;
        create_tables(&rows, &[], Some(OwnerFile::Rows))?;
        move_rows_out_of_log(&log, &rows)?;
        finish_reseed(&log, &rows)?;
        let files = Arc::new(RwLock::new(Some(OwnerFiles { log, rows })));
        logs.open.insert(owner.to_string(), files.clone());
        Ok(files)
    }

    /// `owner`'s tables (memory only), created on first use.
    fn memory_log(&self, owner: &str) -> Arc<Mutex<MemoryLog>> {
        self.logs.lock().memory.entry_ref(owner).or_default().clone()
    }

    /// Runs `f` on `table` of `owner`'s file `which` in a read transaction, holding the file
    /// open until it returns (so [`Store::close`] waits for it).
    fn read_owner_table<K: redb::Key + 'static, V: redb::Value + 'static, T>(
        &self,
        owner: &str,
        which: OwnerFile,
        table: TableDefinition<'static, K, V>,
        f: impl FnOnce(&redb::ReadOnlyTable<K, V>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let handle = self.owner_files(owner)?;
        let files = open(&handle)?;
        let tx = files.db(which).begin_read().map_err(backend)?;
        let t = tx.open_table(table).map_err(backend)?;
        f(&t)
    }

    /// A position or other counter of `owner`'s log (kept with the log, so that it is
    /// committed in the same transaction as the records).
    pub fn get_log_meta(&self, owner: &str, key: &str) -> Result<Option<u64>, StorageError> {
        match &self.backend {
            Backend::Disk(_) => {
                self.read_owner_table(owner, OwnerFile::Log, META, |table| {
                    Ok(table.get(key).map_err(backend)?.map(|v| v.value()))
                })
            }
            Backend::Memory(_) => Ok(self.memory_log(owner).lock().meta.get(key).copied()),
        }
    }

    /// Releases the database file (and its lock) now, whoever still holds the store: a new store
    /// on the same directory can open as soon as this returns. Later operations fail with
    /// [`StorageError::Closed`].
    pub fn close(&self) {
        if let Backend::Disk(db) = &self.backend {
            db.write().take();
        }
        let logs: Vec<_> = {
            let mut logs = self.logs.lock();
            logs.closed = true;
            logs.open.drain().map(|(_, db)| db).collect()
        };
        for db in logs {
            db.write().take();
        }
    }

    /// Whether what is written survives a restart.
    pub fn is_durable(&self) -> bool {
        matches!(self.backend, Backend::Disk(_))
    }

    pub fn location(&self) -> Option<&Path> {
        self.location.as_deref()
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match &self.backend {
            Backend::Disk(db) => {
                let db = open(db)?;
                let tx = db.begin_read().map_err(backend)?;
                let table = tx.open_table(META).map_err(backend)?;
                Ok(table.get(key).map_err(backend)?.map(|v| v.value()))
            }
            Backend::Memory(m) => Ok(m.lock().meta.get(key).copied()),
        }
    }

    /// Writes `key = value` and returns once it is durable.
    pub fn put_meta(&self, key: &str, value: u64) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Disk(db) => {
                let db = open(db)?;
                let tx = db.begin_write().map_err(backend)?;
                tx.open_table(META).map_err(backend)?.insert(key, value).map_err(backend)?;
                tx.commit().map_err(backend)
            }
            Backend::Memory(m) => {
                m.lock().meta.insert(key.to_string(), value);
                Ok(())
            }
        }
    }

    /// Writes one record and returns once it is durable.
    pub fn put_record(&self, table: RecordTable, key: &str, value: &[u8]) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Disk(db) => {
                let db = open(db)?;
                let tx = db.begin_write().map_err(backend)?;
                tx.open_table(table.definition())
                    .map_err(backend)?
                    .insert(key, value)
                    .map_err(backend)?;
                tx.commit().map_err(backend)
            }
            Backend::Memory(m) => {
                m.lock().records.entry(table).or_default().insert(key.to_string(), value.to_vec());
                Ok(())
            }
        }
    }

    /// Deletes one record (absent is fine) and returns once that is durable.
    pub fn delete_record(&self, table: RecordTable, key: &str) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Disk(db) => {
                let db = open(db)?;
                let tx = db.begin_write().map_err(backend)?;
                tx.open_table(table.definition()).map_err(backend)?.remove(key).map_err(backend)?;
                tx.commit().map_err(backend)
            }
            Backend::Memory(m) => {
                if let Some(t) = m.lock().records.get_mut(&table) {
                    t.remove(key);
                }
                Ok(())
            }
        }
    }

    pub fn get_record(&self, table: RecordTable, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match &self.backend {
            Backend::Disk(db) => {
                let db = open(db)?;
                let tx = db.begin_read().map_err(backend)?;
                let t = tx.open_table(table.definition()).map_err(backend)?;
                Ok(t.get(key).map_err(backend)?.map(|v| v.value().to_vec()))
            }
            Backend::Memory(m) => {
                Ok(m.lock().records.get(&table).and_then(|t| t.get(key)).cloned())
            }
        }
    }

    /// Every record of `table`, in key order.
    pub fn list_records(&self, table: RecordTable) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        match &self.backend {
            Backend::Disk(db) => {
                let db = open(db)?;
                let tx = db.begin_read().map_err(backend)?;
                let t = tx.open_table(table.definition()).map_err(backend)?;
                let mut out = Vec::new();
                for row in t.iter().map_err(backend)? {
                    let (k, v) = row.map_err(backend)?;
                    out.push((k.value().to_string(), v.value().to_vec()));
                }
                Ok(out)
            }
            Backend::Memory(m) => Ok(m
                .lock()
                .records
                .get(&table)
                .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default()),
        }
    }
}

impl Store {
    /// Appends `commit.records` to `owner`'s log and sets `commit.meta`, in one transaction;
    /// returns once it is durable.
    pub fn commit_log(&self, owner: &str, commit: LogCommit) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Disk(_) => {
                let handle = self.owner_files(owner)?;
                let files = open(&handle)?;
                let tx = files.log.begin_write().map_err(backend)?;
                {
                    let mut wal = tx.open_table(WAL).map_err(backend)?;
                    if let Some(from) = commit.truncate_from {
                        remove_log_from(&mut wal, from)?;
                    }
                    append_log(&mut wal, &commit.records)?;
                    let mut meta = tx.open_table(META).map_err(backend)?;
                    for (k, v) in &commit.meta {
                        meta.insert(k.as_str(), *v).map_err(backend)?;
                    }
                    if let Some(before) = commit.truncate_before {
                        remove_log_before(&mut wal, before)?;
                    }
                }
                tx.commit().map_err(backend)
            }
            Backend::Memory(_) => {
                let log = self.memory_log(owner);
                let mut m = log.lock();
                if let Some(from) = commit.truncate_from {
                    drop(m.wal.split_off(&from));
                }
                m.wal.extend(commit.records);
                if let Some(before) = commit.truncate_before {
                    m.wal = m.wal.split_off(&before);
                }
                for (k, v) in commit.meta {
                    m.meta.insert(k, v);
                }
                Ok(())
            }
        }
    }

    /// Writes a checkpoint of `owner`'s rows (see [`RowImages`]); returns once it is durable,
    /// with whether it was written (not if a reseed came since its rows were read).
    pub fn write_row_images(&self, owner: &str, checkpoint: RowImages) -> Result<bool, StorageError> {
        let RowImages { lsn, epoch, images, unchanged, trim_log } = checkpoint;
        match &self.backend {
            Backend::Disk(_) => {
                // Serialized before the transaction begins: the owner's WAL commits wait for it.
                let encoded = images
                    .into_iter()
                    .map(|i| Ok((usize::from(i.shard), i.rows.into_chunks()?)))
                    .collect::<Result<Vec<_>, StorageError>>()?;
                let handle = self.owner_files(owner)?;
                let files = open(&handle)?;
                let tx = files.rows.begin_write().map_err(backend)?;
                let stored_epoch = meta_value(&tx.open_table(META).map_err(backend)?, ROWS_EPOCH)?;
                if stored_epoch != epoch {
                    tx.abort().map_err(backend)?;
                    return Ok(false);
                }
                let oldest = {
                    let mut lsns = tx.open_table(ROW_IMAGE_LSNS).map_err(backend)?;
                    let mut stored = tx.open_table(ROW_IMAGES).map_err(backend)?;
                    let behind = |lsns: &redb::Table<'_, u16, u64>, shard: u16| -> Result<bool, StorageError> {
                        Ok(lsns.get(shard).map_err(backend)?.is_none_or(|v| v.value() < lsn))
                    };
                    for (shard, chunks) in &encoded {
                        // usize::from(u16) above: the cast back cannot truncate.
                        let id = *shard as u16;
                        if behind(&lsns, id)? {
                            put_shard(&mut stored, *shard, chunks)?;
                            lsns.insert(id, lsn).map_err(backend)?;
                        }
                    }
                    for &id in &unchanged {
                        if behind(&lsns, id)? {
                            lsns.insert(id, lsn).map_err(backend)?;
                        }
                    }
                    if trim_log {
                        Some(oldest_shard_lsn(&lsns)?)
                    } else {
                        None
                    }
                };
                tx.commit().map_err(backend)?;
                if let Some(oldest) = oldest {
                    // Only once the rows are durable; a crash before leaves more log, which a
                    // load replays over rows that have it already (ops are idempotent per row
                    // and shard lsns tell what is in). Not if a reseed came since: the log it
                    // left starts at its own lsn, which may be older.
                    let tx = files.log.begin_write().map_err(backend)?;
                    let log_epoch = meta_value(&tx.open_table(META).map_err(backend)?, ROWS_EPOCH)?;
                    if log_epoch == epoch {
                        remove_log_before(&mut tx.open_table(WAL).map_err(backend)?, oldest)?;
                    }
                    tx.commit().map_err(backend)?;
                }
                Ok(true)
            }
            Backend::Memory(_) => {
                // Serialized before the lock is taken, as on disk before the transaction.
                let encoded =
                    images.into_iter().map(|i| Ok((i.shard, i.rows.into_chunks()?))).collect::<Result<Vec<_>, StorageError>>()?;
                let log = self.memory_log(owner);
                let mut m = log.lock();
                if m.meta.get(ROWS_EPOCH).copied().unwrap_or(0) != epoch {
                    return Ok(false);
                }
                let behind = |m: &MemoryLog, shard: u16| m.shards.get(&shard).is_none_or(|s| s.0 < lsn);
                for (shard, chunks) in encoded {
                    if behind(&m, shard) {
                        m.shards.insert(shard, (lsn, chunks));
                    }
                }
                for id in unchanged {
                    if behind(&m, id) {
                        m.shards.entry(id).or_default().0 = lsn;
                    }
                }
                if trim_log {
                    let oldest = m.oldest_shard_lsn();
                    m.wal = m.wal.split_off(&oldest);
                }
                Ok(true)
            }
        }
    }

    /// Records of `owner`'s log with start lsn >= `from`, in order, until `max_bytes` of record
    /// bytes are gathered (at least one record if there is one).
    pub fn read_log(&self, owner: &str, from: u64, max_bytes: usize) -> Result<Vec<(u64, Arc<[u8]>)>, StorageError> {
        let mut out = Vec::new();
        let mut size = 0usize;
        let mut take = |lsn: u64, bytes: Arc<[u8]>| -> bool {
            size += bytes.len();
            out.push((lsn, bytes));
            size < max_bytes
        };
        match &self.backend {
            Backend::Disk(_) => {
                self.read_owner_table(owner, OwnerFile::Log, WAL, |wal| {
                    // From the segment holding `from`, if one starts before it.
                    let start = match wal.range(..=from).map_err(backend)?.next_back() {
                        Some(row) => row.map_err(backend)?.0.value(),
                        None => from,
                    };
                    'segments: for row in wal.range(start..).map_err(backend)? {
                        let (k, v) = row.map_err(backend)?;
                        for record in segment::decode(k.value(), v.value()) {
                            let (lsn, bytes) = record?;
                            if lsn >= from && !take(lsn, bytes.into()) {
                                break 'segments;
                            }
                        }
                    }
                    Ok(())
                })?;
            }
            Backend::Memory(_) => {
                let log = self.memory_log(owner);
                for (lsn, bytes) in log.lock().wal.range(from..) {
                    if !take(*lsn, bytes.clone()) {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// The first record's start lsn and the last record's (start lsn, length) of `owner`'s log.
    pub fn log_bounds(&self, owner: &str) -> Result<Option<(u64, u64, usize)>, StorageError> {
        match &self.backend {
            Backend::Disk(_) => {
                self.read_owner_table(owner, OwnerFile::Log, WAL, |wal| {
                    let mut range = wal.range(0..).map_err(backend)?;
                    let first = match range.next() {
                        Some(row) => row.map_err(backend)?.0.value(),
                        None => return Ok(None),
                    };
                    let (last_lsn, last_len) = match range.next_back() {
                        Some(row) => {
                            let (k, v) = row.map_err(backend)?;
                            last_record(k.value(), v.value())?
                        }
                        None => match wal.get(first).map_err(backend)? {
                            Some(v) => last_record(first, v.value())?,
                            None => (first, 0),
                        },
                    };
                    Ok(Some((first, last_lsn, last_len)))
                })
            }
            Backend::Memory(_) => {
                let log = self.memory_log(owner);
                let m = log.lock();
                let (Some((first, _)), Some((last, bytes))) = (m.wal.first_key_value(), m.wal.last_key_value()) else {
                    return Ok(None);
                };
                Ok(Some((*first, *last, bytes.len())))
            }
        }
    }

    /// Deletes `owner`'s log records that start before `lsn`; returns how many went.
    pub fn truncate_log(&self, owner: &str, lsn: u64) -> Result<usize, StorageError> {
        match &self.backend {
            Backend::Disk(_) => {
                let handle = self.owner_files(owner)?;
                let files = open(&handle)?;
                let tx = files.log.begin_write().map_err(backend)?;
                let removed = {
                    let mut wal = tx.open_table(WAL).map_err(backend)?;
                    remove_log_before(&mut wal, lsn)?
                };
                tx.commit().map_err(backend)?;
                Ok(removed)
            }
            Backend::Memory(_) => {
                let log = self.memory_log(owner);
                let mut m = log.lock();
                let kept = m.wal.split_off(&lsn);
                let removed = m.wal.len();
                m.wal = kept;
                Ok(removed)
            }
        }
    }

    /// Replaces all of `owner`'s rows with `rows` as of `lsn`, drops its whole log and sets
    /// `meta`, in one transaction: a replica reseeded from a base copy or a snapshot. Returns
    /// the owner's new reseed count ([`RowImages::epoch`]).
    pub fn replace_rows(&self, owner: &str, rows: &RowMap, lsn: u64, meta: &[(String, u64)]) -> Result<u64, StorageError> {
        match &self.backend {
            Backend::Disk(_) => {
                let encoded = (0..SHARDS).map(|shard| rows.encode_shard(shard)).collect::<Result<Vec<_>, StorageError>>()?;
                let handle = self.owner_files(owner)?;
                let files = open(&handle)?;
                // The rows first, with the positions the log is to get; then the log. A crash
                // between leaves the rows file's count ahead, and the next open writes the
                // log's part from what this one kept ([`finish_reseed`]).
                let tx = files.rows.begin_write().map_err(backend)?;
                let epoch = {
                    let mut stored = tx.open_table(ROW_IMAGES).map_err(backend)?;
                    stored.retain(|_, _| false).map_err(backend)?;
                    let mut lsns = tx.open_table(ROW_IMAGE_LSNS).map_err(backend)?;
                    for (shard, chunks) in encoded.iter().enumerate() {
                        put_shard(&mut stored, shard, chunks)?;
                        // shard < SHARDS (256), which fits a u16.
                        lsns.insert(shard as u16, lsn).map_err(backend)?;
                    }
                    let mut m = tx.open_table(META).map_err(backend)?;
                    let epoch = meta_value(&m, ROWS_EPOCH)? + 1;
                    m.insert(ROWS_EPOCH, epoch).map_err(backend)?;
                    m.retain(|k, _| !k.starts_with(RESEED_META)).map_err(backend)?;
                    for (k, v) in meta {
                        m.insert(format!("{RESEED_META}{k}").as_str(), *v).map_err(backend)?;
                    }
                    epoch
                };
                tx.commit().map_err(backend)?;
                reseed_log(&files.log, epoch, meta)?;
                Ok(epoch)
            }
            Backend::Memory(_) => {
                // shard < SHARDS (256), which fits a u16.
                let shards = (0..SHARDS)
                    .map(|shard| Ok((shard as u16, (lsn, rows.encode_shard(shard)?))))
                    .collect::<Result<BTreeMap<_, _>, StorageError>>()?;
                let log = self.memory_log(owner);
                let mut m = log.lock();
                m.wal.clear();
                m.shards = shards;
                let epoch = m.meta.get(ROWS_EPOCH).copied().unwrap_or(0) + 1;
                m.meta.insert(ROWS_EPOCH.to_string(), epoch);
                for (k, v) in meta {
                    m.meta.insert(k.clone(), *v);
                }
                Ok(epoch)
            }
        }
    }

    /// `owner`'s stored rows, and the lsn each shard of them reflects.
    pub fn load_rows(&self, owner: &str) -> Result<StoredRows, StorageError> {
        let mut out = StoredRows::new();
        match &self.backend {
            Backend::Disk(_) => {
                let handle = self.owner_files(owner)?;
                let files = open(&handle)?;
                let tx = files.rows.begin_read().map_err(backend)?;
                out.epoch = read_meta_value(&tx, ROWS_EPOCH)?;
                for row in tx.open_table(ROW_IMAGE_LSNS).map_err(backend)?.iter().map_err(backend)? {
                    let (shard, lsn) = row.map_err(backend)?;
                    if let Some(slot) = out.shard_lsns.get_mut(usize::from(shard.value())) {
                        *slot = lsn.value();
                    }
                }
                for chunk in tx.open_table(ROW_IMAGES).map_err(backend)?.iter().map_err(backend)? {
                    let (k, v) = chunk.map_err(backend)?;
                    out.add_chunk(owner, (k.value() >> 32) as usize, v.value())?;
                }
            }
            Backend::Memory(_) => {
                let log = self.memory_log(owner);
                let m = log.lock();
                out.epoch = m.meta.get(ROWS_EPOCH).copied().unwrap_or(0);
                for (&shard, (lsn, chunks)) in &m.shards {
                    if let Some(slot) = out.shard_lsns.get_mut(usize::from(shard)) {
                        *slot = *lsn;
                    }
                    for chunk in chunks {
                        out.add_chunk(owner, usize::from(shard), chunk)?;
                    }
                }
            }
        }
        Ok(out)
    }

    /// The smallest lsn over `owner`'s stored shards: its rows are stored up to there at least.
    pub fn rows_lsn(&self, owner: &str) -> Result<u64, StorageError> {
        match &self.backend {
            Backend::Disk(_) => self.read_owner_table(owner, OwnerFile::Rows, ROW_IMAGE_LSNS, |lsns| oldest_shard_lsn(lsns)),
            Backend::Memory(_) => {
                let log = self.memory_log(owner);
                let m = log.lock();
                Ok(m.oldest_shard_lsn())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_store_keeps_what_was_committed_across_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let s = Store::open_dir(dir.path()).expect("open");
            s.put_meta("event_seq_reserved", 42).expect("put");
            s.put_record(RecordTable::ClusterNodes, "node-4", b"{}").expect("put");
            s.put_record(RecordTable::ClusterNodes, "node-5", b"{}").expect("put");
            s.delete_record(RecordTable::ClusterNodes, "node-5").expect("delete");
        }
        let s = Store::open_dir(dir.path()).expect("reopen");
        assert_eq!(s.get_meta("event_seq_reserved").expect("get"), Some(42));
        let rows = s.list_records(RecordTable::ClusterNodes).expect("list");
        assert_eq!(rows, vec![("node-4".to_string(), b"{}".to_vec())]);
    }

    fn check_logs(s: &Store) {
        let first = LogCommit {
            records: vec![(0, b"aaaa".to_vec().into()), (4, b"bb".to_vec().into())],
            meta: vec![("primary.flush_lsn".into(), 6)],
            truncate_before: None,
            truncate_from: None,
        };
        s.commit_log("primary", first).expect("commit");
        // Another owner's log stays apart.
        s.commit_log("replica-001", LogCommit { records: vec![(0, b"aaaa".to_vec().into())], ..Default::default() })
            .expect("commit");
        s.commit_log("primary", LogCommit { records: vec![(6, b"ccc".to_vec().into())], ..Default::default() }).expect("commit");
        assert_eq!(s.log_bounds("primary").expect("bounds"), Some((0, 6, 3)));
        assert_eq!(s.log_bounds("nobody").expect("bounds"), None);
        let from_4: Vec<u64> = s.read_log("primary", 4, usize::MAX).expect("read").into_iter().map(|r| r.0).collect();
        assert_eq!(from_4, vec![4, 6]);
        assert_eq!(s.read_log("primary", 0, 1).expect("read").len(), 1, "at least one record, then stop");
        assert_eq!(s.truncate_log("primary", 6).expect("truncate"), 2);
        assert_eq!(s.log_bounds("primary").expect("bounds"), Some((6, 6, 3)));
        assert_eq!(s.log_bounds("replica-001").expect("bounds"), Some((0, 0, 4)));
        assert_eq!(s.get_log_meta("primary", "primary.flush_lsn").expect("meta"), Some(6));
        // A commit can drop older records of its owner in the same transaction.
        s.commit_log("primary", LogCommit { records: vec![(9, b"dd".to_vec().into())], truncate_before: Some(9), ..Default::default() })
            .expect("commit");
        assert_eq!(s.log_bounds("primary").expect("bounds"), Some((9, 9, 2)));
        // A truncation inside one commit's records keeps the later ones.
        s.commit_log("primary", LogCommit { records: vec![(11, b"eee".to_vec().into()), (14, b"ff".to_vec().into())], ..Default::default() })
            .expect("commit");
        assert_eq!(s.log_bounds("primary").expect("bounds"), Some((9, 14, 2)));
        let from_12: Vec<u64> = s.read_log("primary", 12, usize::MAX).expect("read").into_iter().map(|r| r.0).collect();
        assert_eq!(from_12, vec![14], "only records starting at or after the position");
        assert_eq!(s.truncate_log("primary", 12).expect("truncate"), 2);
        let kept: Vec<(u64, Vec<u8>)> = s.read_log("primary", 0, usize::MAX).expect("read").into_iter().map(|r| (r.0, r.1.to_vec())).collect();
        assert_eq!(kept, vec![(14, b"ff".to_vec())]);
        assert_eq!(s.log_bounds("primary").expect("bounds"), Some((14, 14, 2)));
        s.commit_log("primary", LogCommit { records: vec![(16, b"g".to_vec().into())], ..Default::default() }).expect("commit");
        assert_eq!(s.log_bounds("primary").expect("bounds"), Some((14, 16, 1)));
        // Dropping a tail: inside a segment (its earlier record stays), then across segments.
        let all = |s: &Store| -> Vec<(u64, Vec<u8>)> {
            s.read_log("primary", 0, usize::MAX).expect("read").into_iter().map(|r| (r.0, r.1.to_vec())).collect()
        };
        s.commit_log("primary", LogCommit { records: vec![(17, b"hhh".to_vec().into()), (20, b"ii".to_vec().into())], ..Default::default() })
            .expect("commit");
        let replaced = LogCommit {
            records: vec![(20, b"JJ".to_vec().into())],
            meta: vec![("primary.flush_lsn".into(), 22)],
            truncate_from: Some(20),
            ..Default::default()
        };
        s.commit_log("primary", replaced).expect("commit");
        assert_eq!(all(s), vec![(14, b"ff".to_vec()), (16, b"g".to_vec()), (17, b"hhh".to_vec()), (20, b"JJ".to_vec())]);
        assert_eq!(s.get_log_meta("primary", "primary.flush_lsn").expect("meta"), Some(22));
        s.commit_log("primary", LogCommit { truncate_from: Some(16), ..Default::default() }).expect("commit");
        assert_eq!(all(s), vec![(14, b"ff".to_vec())]);
        s.commit_log("primary", LogCommit { truncate_from: Some(14), ..Default::default() }).expect("commit");
        assert_eq!(s.log_bounds("primary").expect("bounds"), None);
        assert_eq!(s.log_bounds("replica-001").expect("bounds"), Some((0, 0, 4)), "other owners keep theirs");
    }

    fn row(table: &str, key: &str, value: &str) -> (String, String, serde_json::Value) {
        (table.to_string(), key.to_string(), serde_json::json!(value))
    }

    /// Shard `shard` of `rows`, as a checkpoint writes it.
    fn image(rows: &RowMap, shard: usize) -> ShardImage {
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

    #[test]
    fn a_shard_larger_than_a_chunk_is_stored_in_several() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = Store::open_dir(dir.path()).expect("open");
        let big = "y".repeat(300_000);
        // Only keys of k0's shard, enough of them to fill three chunks: building thousands of
        // 300 kB rows to find a big shard took most of a minute in a debug build.
        let shard = RowKey::new("t".into(), "k0".into()).shard();
        let rows: Vec<_> = (0..)
            .map(|i| format!("k{i}"))
            .filter(|k| RowKey::new("t".into(), k.as_str().into()).shard() == shard)
            .take(3 * image::CHUNK_BYTES / big.len() + 1)
            .map(|k| (String::from("t"), k, serde_json::json!(big.clone())))
            .collect();
        let map = RowMap::from_rows(&rows[..]);
        let biggest = shard;
        assert!(map.shard_len(biggest) * big.len() > 2 * image::CHUNK_BYTES);
        let images = RowImages { lsn: 5, epoch: 0, images: vec![image(&map, biggest)], unchanged: vec![], trim_log: false };
        assert!(s.write_row_images("p", images.clone()).expect("write"));
        assert_eq!(s.load_rows("p").expect("rows").rows.len(), map.shard_len(biggest));
        // Written again smaller: no chunk of the larger image is left behind.
        let smaller = RowMap::from_rows(&rows[..1]);
        let again = RowImages { lsn: 6, epoch: 0, images: vec![image(&smaller, biggest)], unchanged: vec![], trim_log: false };
        assert!(s.write_row_images("p", again).expect("write"));
        assert_eq!(s.load_rows("p").expect("rows").rows.len(), 1);
    }

    /// The owner's file in `sub` of `dir`, opened with redb directly (the store closed).
    fn owner_db(dir: &Path, sub: &str, owner: &str) -> redb::Database {
        redb::Database::open(dir.join(sub).join(log_file_name(owner))).expect("open owner file")
    }

    #[test]
    fn a_reseed_cut_between_its_rows_and_its_log_is_finished_at_the_next_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let seeded = RowMap::from_rows(&[row("u", "x", "1")]);
        {
            let s = Store::open_dir(dir.path()).expect("open");
            assert_eq!(s.replace_rows("r", &seeded, 7, &[("r.flush".into(), 7)]).expect("reseed"), 1);
            s.commit_log("r", LogCommit { records: vec![(7, b"abc".to_vec().into())], meta: vec![("r.flush".into(), 10)], ..Default::default() })
                .expect("commit");
            s.close();
        }
        {
            // What a second reseed (to lsn 40) leaves when the process dies after its rows
            // commit: the rows file at count 2 with the positions to set; the log untouched.
            let rows = owner_db(dir.path(), ROWS_DIR, "r");
            let tx = rows.begin_write().expect("tx");
            {
                let mut m = tx.open_table(META).expect("meta");
                m.insert(ROWS_EPOCH, 2).expect("insert");
                m.retain(|k, _| !k.starts_with(RESEED_META)).expect("retain");
                m.insert(format!("{RESEED_META}r.flush").as_str(), 40).expect("insert");
            }
            tx.commit().expect("commit");
        }
        let s = Store::open_dir(dir.path()).expect("reopen");
        assert_eq!(s.log_bounds("r").expect("bounds"), None, "the log the reseed replaced is gone");
        assert_eq!(s.get_log_meta("r", "r.flush").expect("meta"), Some(40));
        assert_eq!(s.get_log_meta("r", ROWS_EPOCH).expect("meta"), Some(2));
        assert_eq!(s.load_rows("r").expect("rows").epoch, 2);
        // Finished once: a later commit's log stays across the next open.
        s.commit_log("r", LogCommit { records: vec![(40, b"d".to_vec().into())], ..Default::default() }).expect("commit");
        s.close();
        let s = Store::open_dir(dir.path()).expect("reopen");
        assert_eq!(s.log_bounds("r").expect("bounds"), Some((40, 40, 1)));
    }

    #[test]
    fn rows_kept_beside_the_log_by_an_older_clusterd_are_moved_to_the_rows_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let seeded = RowMap::from_rows(&[row("u", "x", "1"), row("u", "y", "2")]);
        {
            let s = Store::open_dir(dir.path()).expect("open");
            s.replace_rows("p", &seeded, 7, &[]).expect("reseed");
            s.commit_log("p", LogCommit { records: vec![(7, b"abc".to_vec().into())], ..Default::default() }).expect("commit");
            s.close();
        }
        {
            // The layout before: the rows tables (and count) in the log's file.
            let rows = owner_db(dir.path(), ROWS_DIR, "p");
            let log = owner_db(dir.path(), LOG_DIR, "p");
            let from = rows.begin_read().expect("read");
            let to = log.begin_write().expect("tx");
            {
                let mut lsns = to.open_table(ROW_IMAGE_LSNS).expect("table");
                for r in from.open_table(ROW_IMAGE_LSNS).expect("table").iter().expect("iter") {
                    let (k, v) = r.expect("row");
                    lsns.insert(k.value(), v.value()).expect("insert");
                }
                let mut images = to.open_table(ROW_IMAGES).expect("table");
                for r in from.open_table(ROW_IMAGES).expect("table").iter().expect("iter") {
                    let (k, v) = r.expect("row");
                    images.insert(k.value(), v.value()).expect("insert");
                }
            }
            to.commit().expect("commit");
            drop((from, rows));
            std::fs::remove_file(dir.path().join(ROWS_DIR).join(log_file_name("p"))).expect("remove");
        }
        let s = Store::open_dir(dir.path()).expect("reopen");
        let got = s.load_rows("p").expect("rows");
        assert_eq!(got.rows.sorted_rows(), vec![row("u", "x", "1"), row("u", "y", "2")]);
        assert_eq!(got.shard_lsns, vec![7; SHARDS]);
        assert_eq!(got.epoch, 1);
        assert_eq!(s.log_bounds("p").expect("bounds"), Some((7, 7, 3)), "the log is kept");
        s.close();
        let log = owner_db(dir.path(), LOG_DIR, "p");
        let tx = log.begin_read().expect("read");
        assert!(!tx.list_tables().expect("tables").any(|t| t.name() == ROW_IMAGES.name()), "and the rows leave the log's file");
    }

    #[test]
    fn an_owner_file_with_the_old_row_table_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join(LOG_DIR)).expect("dir");
        {
            let db = redb::Database::create(dir.path().join(LOG_DIR).join("primary.redb")).expect("create");
            let tx = db.begin_write().expect("tx");
            tx.open_table(TableDefinition::<&[u8], &[u8]>::new(OLD_ROWS_TABLE)).expect("table");
            tx.commit().expect("commit");
        }
        let err = Store::open_dir(dir.path()).err().expect("refused at open");
        assert!(err.to_string().contains("older clusterd"), "{err}");
        assert!(err.to_string().contains("primary.redb"), "names the file: {err}");
    }

    #[test]
    fn logs_and_rows_work_the_same_on_disk_and_in_memory() {
        check_logs(&Store::memory());
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = Store::open_dir(dir.path()).expect("open");
        check_logs(&disk);
        // Each owner has a file of its own, and they survive a reopen.
        assert!(dir.path().join(LOG_DIR).join("primary.redb").is_file());
        assert!(dir.path().join(LOG_DIR).join("replica-001.redb").is_file());
        assert!(dir.path().join(ROWS_DIR).join("primary.redb").is_file(), "and its rows another");
        disk.close();
        assert!(matches!(disk.log_bounds("primary"), Err(StorageError::Closed)));
        let reopened = Store::open_dir(dir.path()).expect("reopen");
        assert_eq!(reopened.log_bounds("primary").expect("bounds"), None);
        assert_eq!(reopened.log_bounds("replica-001").expect("bounds"), Some((0, 0, 4)));
        assert_eq!(reopened.get_log_meta("primary", "primary.flush_lsn").expect("meta"), Some(22));
    }

    #[test]
    fn owner_file_names_cannot_leave_the_log_directory() {
        assert_eq!(log_file_name("replica_001-a"), "replica_001-a.redb");
        assert_eq!(log_file_name("../x y"), "%2E%2E%2Fx%20y.redb");
    }
}
