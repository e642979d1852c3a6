//! Durable state behind one small interface: `redb` on disk (every commit fsynced before it
//! returns), or memory when `storage.engine = "memory"` or `data_dir` is empty.
//!
//! Every call blocks (a commit waits for fsync): actors call it from `spawn_blocking`, never on an
//! arbiter thread, except at startup before any actor runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, RwLock};
use redb::{ReadableTable, TableDefinition};

use crate::config::StorageConfig;

/// The file inside `data_dir` that holds everything.
pub const DB_FILE: &str = "clusterd.redb";

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const CLUSTER_NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster_nodes");

/// The record tables, one per kind of durable object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecordTable {
    /// Cluster membership: node id -> JSON of the node's durable record.
    ClusterNodes,
}

impl RecordTable {
    fn definition(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            RecordTable::ClusterNodes => CLUSTER_NODES,
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

fn backend(e: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(e.to_string())
}

enum Backend {
    /// `None` once closed. Operations hold the read lock only for their synchronous duration
    /// (never across an await); `close` takes the write lock, so it waits for them.
    Disk(RwLock<Option<redb::Database>>),
    /// Tables in memory; the mutex is never held across an await (every call is synchronous).
    Memory(Mutex<MemoryTables>),
}

#[derive(Default)]
struct MemoryTables {
    meta: BTreeMap<String, u64>,
    records: BTreeMap<RecordTable, BTreeMap<String, Vec<u8>>>,
}

/// The process's durable store.
pub struct Store {
    backend: Backend,
    location: Option<PathBuf>,
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
        // Create the tables once so reads never meet a missing table.
        let tx = db.begin_write().map_err(backend)?;
        tx.open_table(META).map_err(backend)?;
        tx.open_table(CLUSTER_NODES).map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(Store { backend: Backend::Disk(RwLock::new(Some(db))), location: Some(path) })
    }

    pub fn memory() -> Store {
        Store { backend: Backend::Memory(Mutex::new(MemoryTables::default())), location: None }
    }

    /// Releases the database file (and its lock) now, whoever still holds the store: a new store
    /// on the same directory can open as soon as this returns. Later operations fail with
    /// [`StorageError::Closed`].
    pub fn close(&self) {
        if let Backend::Disk(db) = &self.backend {
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
                let db = db.read();
                let db = db.as_ref().ok_or(StorageError::Closed)?;
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
                let db = db.read();
                let db = db.as_ref().ok_or(StorageError::Closed)?;
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
                let db = db.read();
                let db = db.as_ref().ok_or(StorageError::Closed)?;
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
                let db = db.read();
                let db = db.as_ref().ok_or(StorageError::Closed)?;
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
                let db = db.read();
                let db = db.as_ref().ok_or(StorageError::Closed)?;
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
                let db = db.read();
                let db = db.as_ref().ok_or(StorageError::Closed)?;
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
}
