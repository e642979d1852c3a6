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
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::config::StorageConfig;

pub mod rows;
mod segment;

use rows::{RowKey, RowMap};

/// The file inside `data_dir` that holds membership, settings, slots, snapshots and the event
/// sequence.
pub const DB_FILE: &str = "clusterd.redb";
/// The directory inside `data_dir` with one file per log owner (the primary, each replica): its
/// write-ahead log, its rows and its positions. Owners commit in parallel: redb takes one write
/// transaction at a time per file, and a replica's fsync should not queue behind the primary's.
pub const LOG_DIR: &str = "wal";

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
/// An owner's table state (in its own file): [`write_row_key`] -> value JSON. Plain bytes rather than
/// a `(&str, &str)` tuple, which redb would check as UTF-8 at every comparison.
const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rows");

/// Separates table from key in a stored row key: 0xFF never occurs in UTF-8, so the first one
/// splits the two unambiguously, and each table's rows stay contiguous.
const ROW_KEY_SEPARATOR: u8 = 0xFF;

/// Puts the stored key of row (`table`, `key`) in `buf`, replacing what it held (one buffer
/// serves a whole commit).
fn write_row_key(buf: &mut Vec<u8>, table: &str, key: &str) {
    buf.clear();
    buf.extend_from_slice(table.as_bytes());
    buf.push(ROW_KEY_SEPARATOR);
    buf.extend_from_slice(key.as_bytes());
}

/// Sets `row` to `value` in an owner's rows table; `key` and `buf` are scratch buffers that one
/// transaction reuses for every row.
fn insert_row(
    rows: &mut redb::Table<'_, &[u8], &[u8]>,
    key: &mut Vec<u8>,
    buf: &mut Vec<u8>,
    row: &RowKey,
    value: &serde_json::Value,
) -> Result<(), StorageError> {
    write_row_key(key, &row.table, &row.key);
    buf.clear();
    serde_json::to_writer(&mut *buf, value).map_err(backend)?;
    rows.insert(key.as_slice(), buf.as_slice()).map_err(backend)?;
    Ok(())
}

/// (table, key) of a stored row key.
fn split_row_key(stored: &[u8]) -> Result<(String, String), StorageError> {
    let bad = || StorageError::Backend(format!("stored row key {stored:?} is not table, 0xFF, key"));
    let at = stored.iter().position(|&b| b == ROW_KEY_SEPARATOR).ok_or_else(bad)?;
    let table = std::str::from_utf8(&stored[..at]).map_err(|_| bad())?;
    let key = std::str::from_utf8(&stored[at + 1..]).map_err(|_| bad())?;
    Ok((table.to_string(), key.to_string()))
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
}

/// The open database, read-locked for the duration of one operation so that `close` waits for
/// it; `Closed` once the store was closed.
fn open(db: &RwLock<Option<redb::Database>>) -> Result<parking_lot::MappedRwLockReadGuard<'_, redb::Database>, StorageError> {
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
/// own: a replica's checkpoint inserting thousands of rows holds up no other owner's commits.
#[derive(Default)]
struct MemoryLog {
    meta: BTreeMap<String, u64>,
    /// By start lsn. Records are shared with whoever committed them (the primary's in-memory
    /// tail, the records shipped to replicas): appending copies no bytes.
    wal: BTreeMap<u64, Arc<[u8]>>,
    /// Values shared with the ops that wrote them: storing a row copies no value.
    rows: RowMap,
}

/// One change of a row, as a log commit applies it: `None` deletes. Shared with the op that
/// wrote the row; the disk engine serializes the value as it writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RowWrite {
    pub row: RowKey,
    pub value: Option<Arc<serde_json::Value>>,
}

/// A log commit: records appended to `owner`'s write-ahead log and the row changes they make,
/// written in one transaction (one fsync).
#[derive(Debug, Clone, Default)]
pub struct LogCommit {
    /// (start lsn, record bytes), in lsn order.
    pub records: Vec<(u64, Arc<[u8]>)>,
    pub rows: Vec<RowWrite>,
    /// Meta keys to set in the same transaction (positions).
    pub meta: Vec<(String, u64)>,
    /// Drop the owner's records that start before this lsn, in the same transaction.
    pub truncate_before: Option<u64>,
    /// A checkpoint: (meta key, lsn) of the position the rows reach. The whole commit is skipped
    /// if the stored position is already there, so a checkpoint that finishes late (its actor
    /// restarted meanwhile and wrote a newer one) can never put older rows over newer ones.
    pub checkpoint: Option<(String, u64)>,
}

/// The process's durable store.
pub struct Store {
    backend: Backend,
    location: Option<PathBuf>,
    /// On disk: each log owner's database, opened on first use (see [`LOG_DIR`]). Held only to
    /// look an owner up or add one, never across an operation.
    logs: Mutex<LogFiles>,
}

#[derive(Default)]
struct LogFiles {
    open: HashMap<String, Arc<RwLock<Option<redb::Database>>>>,
    /// The memory engine's owners.
    memory: HashMap<String, Arc<Mutex<MemoryLog>>>,
    closed: bool,
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
/// and for an owner's file its log and rows.
fn create_tables(db: &redb::Database, records: &[TableDefinition<'_, &str, &[u8]>], log: bool) -> Result<(), StorageError> {
    let tx = db.begin_write().map_err(backend)?;
    tx.open_table(META).map_err(backend)?;
    for t in records {
        tx.open_table(*t).map_err(backend)?;
    }
    if log {
        tx.open_table(WAL).map_err(backend)?;
        tx.open_table(ROWS).map_err(backend)?;
    }
    tx.commit().map_err(backend)
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
    /// Opens the store `config` describes: the redb file under `data_dir`, created if missing, or
    /// memory.
    pub fn open(config: &StorageConfig) -> Result<Store, StorageError> {
        match config.durable_dir() {
            None => Ok(Store::memory()),
            Some(dir) => Store::open_dir(&dir),
        }
    }

    pub fn open_dir(dir: &Path) -> Result<Store, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| StorageError::CreateDir { path: dir.to_path_buf(), source })?;
        let path = dir.join(DB_FILE);
        let db = redb::Database::create(&path)
            .map_err(|e| StorageError::Open { path: path.clone(), message: e.to_string() })?;
        create_tables(&db, &[CLUSTER_NODES, REPLICAS, SETTINGS, SLOTS, SNAPSHOTS], false)?;
        Ok(Store { backend: Backend::Disk(RwLock::new(Some(db))), location: Some(path), logs: Mutex::default() })
    }

    pub fn memory() -> Store {
        Store { backend: Backend::Memory(Mutex::new(MemoryTables::default())), location: None, logs: Mutex::default() }
    }

    /// `owner`'s database (disk only), opened and created on first use.
    fn log_db(&self, owner: &str) -> Result<Arc<RwLock<Option<redb::Database>>>, StorageError> {
        let mut logs = self.logs.lock();
        if logs.closed {
            return Err(StorageError::Closed);
        }
        if let Some(db) = logs.open.get(owner) {
            return Ok(db.clone());
        }
        let dir = match self.location.as_deref().and_then(Path::parent) {
            Some(data_dir) => data_dir.join(LOG_DIR),
            None => return Err(StorageError::Backend("a log file needs a data directory".into())),
        };
        std::fs::create_dir_all(&dir).map_err(|source| StorageError::CreateDir { path: dir.clone(), source })?;
        let path = dir.join(log_file_name(owner));
        let db = redb::Builder::new()
            .set_cache_size(LOG_CACHE_BYTES)
            .create(&path)
            .map_err(|e| StorageError::Open { path, message: e.to_string() })?;
        create_tables(&db, &[], true)?;
        let db = Arc::new(RwLock::new(Some(db)));
        logs.open.insert(owner.to_string(), db.clone());
        Ok(db)
    }

    /// `owner`'s tables (memory only), created on first use.
    fn memory_log(&self, owner: &str) -> Arc<Mutex<MemoryLog>> {
        self.logs.lock().memory.entry_ref(owner).or_default().clone()
    }

    /// Runs `f` on `table` of `owner`'s file in a read transaction, holding the file open
    /// until it returns (so [`Store::close`] waits for it).
    fn read_log_table<K: redb::Key + 'static, V: redb::Value + 'static, T>(
        &self,
        owner: &str,
        table: TableDefinition<'static, K, V>,
        f: impl FnOnce(&redb::ReadOnlyTable<K, V>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let handle = self.log_db(owner)?;
        let db = open(&handle)?;
        let tx = db.begin_read().map_err(backend)?;
        let t = tx.open_table(table).map_err(backend)?;
        f(&t)
    }

    /// A position or other counter of `owner`'s log (kept with the log, so that it is
    /// committed in the same transaction as the records).
    pub fn get_log_meta(&self, owner: &str, key: &str) -> Result<Option<u64>, StorageError> {
        match &self.backend {
            Backend::Disk(_) => {
                self.read_log_table(owner, META, |table| {
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
    /// Appends `commit.records` to `owner`'s log, applies `commit.rows` to its table state and
    /// sets `commit.meta`, all in one transaction; returns once it is durable.
    pub fn commit_log(&self, owner: &str, commit: LogCommit) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Disk(_) => {
                let handle = self.log_db(owner)?;
                let db = open(&handle)?;
                let tx = db.begin_write().map_err(backend)?;
                {
                    let mut meta = tx.open_table(META).map_err(backend)?;
                    if let Some((key, lsn)) = &commit.checkpoint {
                        if meta.get(key.as_str()).map_err(backend)?.is_some_and(|v| v.value() >= *lsn) {
                            return Ok(());
                        }
                        meta.insert(key.as_str(), *lsn).map_err(backend)?;
                    }
                    let mut wal = tx.open_table(WAL).map_err(backend)?;
                    append_log(&mut wal, &commit.records)?;
                    let mut rows = tx.open_table(ROWS).map_err(backend)?;
                    let (mut key, mut value) = (Vec::new(), Vec::new());
                    for w in &commit.rows {
                        match &w.value {
                            Some(v) => insert_row(&mut rows, &mut key, &mut value, &w.row, v)?,
                            None => {
                                write_row_key(&mut key, &w.row.table, &w.row.key);
                                rows.remove(key.as_slice()).map_err(backend)?;
                            }
                        }
                    }
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
                let m = &mut *m;
                if let Some((key, lsn)) = commit.checkpoint {
                    if m.meta.get(&key).is_some_and(|v| *v >= lsn) {
                        return Ok(());
                    }
                    m.meta.insert(key, lsn);
                }
                m.wal.extend(commit.records);
                if let Some(before) = commit.truncate_before {
                    m.wal = m.wal.split_off(&before);
                }
                for w in commit.rows {
                    match w.value {
                        Some(v) => m.rows.insert(w.row, v),
                        None => m.rows.remove(w.row.as_ref()),
                    }
                }
                for (k, v) in commit.meta {
                    m.meta.insert(k, v);
                }
                Ok(())
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
                self.read_log_table(owner, WAL, |wal| {
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
                self.read_log_table(owner, WAL, |wal| {
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
                let handle = self.log_db(owner)?;
                let db = open(&handle)?;
                let tx = db.begin_write().map_err(backend)?;
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

    /// Replaces all of `owner`'s rows with `rows`, drops its whole log and sets `meta`, in one
    /// transaction: a replica reseeded from a base copy or a snapshot.
    pub fn replace_rows(
        &self,
        owner: &str,
        rows: &RowMap,
        meta: &[(String, u64)],
    ) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Disk(_) => {
                let handle = self.log_db(owner)?;
                let db = open(&handle)?;
                let tx = db.begin_write().map_err(backend)?;
                {
                    let mut table = tx.open_table(ROWS).map_err(backend)?;
                    table.retain(|_, _| false).map_err(backend)?;
                    let (mut key, mut value) = (Vec::new(), Vec::new());
                    for (row, v) in rows.iter() {
                        insert_row(&mut table, &mut key, &mut value, row, v)?;
                    }
                    let mut wal = tx.open_table(WAL).map_err(backend)?;
                    wal.retain(|_, _| false).map_err(backend)?;
                    let mut m = tx.open_table(META).map_err(backend)?;
                    for (k, v) in meta {
                        m.insert(k.as_str(), *v).map_err(backend)?;
                    }
                }
                tx.commit().map_err(backend)
            }
            Backend::Memory(_) => {
                let log = self.memory_log(owner);
                let mut m = log.lock();
                m.wal.clear();
                m.rows = rows.clone();
                for (k, v) in meta {
                    m.meta.insert(k.clone(), *v);
                }
                Ok(())
            }
        }
    }

    /// Every stored row of `owner`'s table state.
    pub fn load_rows(&self, owner: &str) -> Result<RowMap, StorageError> {
        match &self.backend {
            Backend::Disk(_) => {
                self.read_log_table(owner, ROWS, |rows| {
                    let mut out = RowMap::default();
                    for row in rows.iter().map_err(backend)? {
                        let (k, v) = row.map_err(backend)?;
                        let (t, key) = split_row_key(k.value())?;
                        let value = serde_json::from_slice(v.value()).map_err(|e| {
                            StorageError::Backend(format!("stored row {t}/{key} of {owner} is unreadable: {e}"))
                        })?;
                        out.insert(RowKey::new(t.into(), key.into()), Arc::new(value));
                    }
                    Ok(out)
                })
            }
            Backend::Memory(_) => Ok(self.memory_log(owner).lock().rows.clone()),
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
        let write = |table: &str, key: &str, value: Option<&str>| RowWrite {
            row: RowKey::new(table.into(), key.into()),
            value: value.map(|v| Arc::new(v.into())),
        };
        let rows = |owner: &str| s.load_rows(owner).expect("rows").sorted_rows();
        let row = |table: &str, key: &str, value: &str| (table.to_string(), key.to_string(), serde_json::json!(value));
        let first = LogCommit {
            records: vec![(0, b"aaaa".to_vec().into()), (4, b"bb".to_vec().into())],
            rows: vec![write("t", "k1", Some("v1")), write("t", "k2", Some("v2"))],
            meta: vec![("primary.flush_lsn".into(), 6)],
            truncate_before: None,
            checkpoint: None,
        };
        s.commit_log("primary", first).expect("commit");
        // Another owner's log and rows stay apart.
        s.commit_log("replica-001", LogCommit { records: vec![(0, b"aaaa".to_vec().into())], ..Default::default() })
            .expect("commit");
        let second = LogCommit {
            records: vec![(6, b"ccc".to_vec().into())],
            rows: vec![write("t", "k1", None)],
            meta: vec![],
            truncate_before: None,
            checkpoint: None,
        };
        s.commit_log("primary", second).expect("commit");
        assert_eq!(s.log_bounds("primary").expect("bounds"), Some((0, 6, 3)));
        assert_eq!(s.log_bounds("nobody").expect("bounds"), None);
        let from_4: Vec<u64> = s.read_log("primary", 4, usize::MAX).expect("read").into_iter().map(|r| r.0).collect();
        assert_eq!(from_4, vec![4, 6]);
        assert_eq!(s.read_log("primary", 0, 1).expect("read").len(), 1, "at least one record, then stop");
        assert_eq!(rows("primary"), vec![row("t", "k2", "v2")]);
        assert!(rows("replica-001").is_empty());
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
        // Reseeding replaces an owner's rows and log, and leaves other owners alone.
        s.replace_rows("replica-001", &RowMap::from_rows(&[row("u", "x", "1")]), &[("r.flush".into(), 9)])
            .expect("reseed");
        assert_eq!(rows("replica-001"), vec![row("u", "x", "1")]);
        assert_eq!(s.log_bounds("replica-001").expect("bounds"), None);
        assert_eq!(rows("primary"), vec![row("t", "k2", "v2")]);
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
        disk.close();
        assert!(matches!(disk.log_bounds("primary"), Err(StorageError::Closed)));
        let reopened = Store::open_dir(dir.path()).expect("reopen");
        assert_eq!(reopened.log_bounds("primary").expect("bounds"), Some((14, 16, 1)));
        assert_eq!(reopened.get_log_meta("primary", "primary.flush_lsn").expect("meta"), Some(6));
    }

    #[test]
    fn owner_file_names_cannot_leave_the_log_directory() {
        assert_eq!(log_file_name("replica_001-a"), "replica_001-a.redb");
        assert_eq!(log_file_name("../x y"), "%2E%2E%2Fx%20y.redb");
    }
}
