//! The memory engine: the same tables as the disk engine's, in maps, for `storage.engine =
//! "memory"` (or no `data_dir`) and tests. Nothing survives the process. Each owner's state is
//! behind a lock of its own, as each has files of its own on disk: a replica's checkpoint holds
//! up no other owner's commits. No lock is held across an await (every call is synchronous).

mod raft;
mod rows;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::Mutex;

use super::{ByteLog, Engine, LogCommit, RecordStore, RecordTable, StorageError, StoredRecord};
use crate::model::rows::SHARDS;

#[derive(Default)]
struct MemoryRecords {
    meta: BTreeMap<String, u64>,
    records: BTreeMap<RecordTable, BTreeMap<String, Vec<u8>>>,
}

/// One log owner's tables, the counterpart of its log and rows files on disk.
#[derive(Default)]
struct MemoryOwner {
    meta: BTreeMap<String, u64>,
    /// By start lsn. Records are shared with whoever committed them (the primary's in-memory
    /// tail, the records shipped to replicas): appending copies no bytes.
    wal: BTreeMap<u64, Arc<[u8]>>,
    /// By shard: the lsn its rows reflect, and the rows, serialized as on disk
    /// ([`super::image::encode`]): a copy, not the table's keys and values shared, so keeping
    /// and replacing a shard touches none of the table's reference counts. A shard never
    /// written is absent.
    shards: BTreeMap<u16, (u64, Vec<Vec<u8>>)>,
}

impl MemoryOwner {
    /// The smallest lsn over every shard's stored rows (0 while a shard was never written).
    fn oldest_shard_lsn(&self) -> u64 {
        if self.shards.len() < SHARDS {
            return 0;
        }
        self.shards.values().map(|s| s.0).min().unwrap_or(0)
    }
}

#[derive(Default)]
pub struct MemoryEngine {
    records: Mutex<MemoryRecords>,
    /// Held only to look an owner up or add one.
    owners: Mutex<HashMap<String, Arc<Mutex<MemoryOwner>>>>,
    /// Held only to look a group up or add one.
    raft: Mutex<HashMap<String, Arc<Mutex<raft::MemoryRaft>>>>,
}

impl MemoryEngine {
    /// `owner`'s tables, created on first use.
    fn owner(&self, owner: &str) -> Arc<Mutex<MemoryOwner>> {
        self.owners.lock().entry_ref(owner).or_default().clone()
    }
}

impl Engine for MemoryEngine {
    fn is_durable(&self) -> bool {
        false
    }

    fn location(&self) -> Option<&Path> {
        None
    }

    /// Nothing to release: the maps go with the last holder of the store.
    fn close(&self) {}
}

impl ByteLog for MemoryEngine {
    fn commit_log(&self, owner: &str, commit: LogCommit) -> Result<(), StorageError> {
        let log = self.owner(owner);
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

    fn read_log(&self, owner: &str, from: u64, max_bytes: usize) -> Result<Vec<StoredRecord>, StorageError> {
        let mut out = Vec::new();
        let mut size = 0usize;
        let log = self.owner(owner);
        for (lsn, bytes) in log.lock().wal.range(from..) {
            size += bytes.len();
            out.push((*lsn, bytes.clone()));
            if size >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    fn log_bounds(&self, owner: &str) -> Result<Option<(u64, u64, usize)>, StorageError> {
        let log = self.owner(owner);
        let m = log.lock();
        let (Some((first, _)), Some((last, bytes))) = (m.wal.first_key_value(), m.wal.last_key_value()) else {
            return Ok(None);
        };
        Ok(Some((*first, *last, bytes.len())))
    }

    fn truncate_log(&self, owner: &str, lsn: u64) -> Result<usize, StorageError> {
        let log = self.owner(owner);
        let mut m = log.lock();
        let kept = m.wal.split_off(&lsn);
        let removed = m.wal.len();
        m.wal = kept;
        Ok(removed)
    }

    fn get_log_meta(&self, owner: &str, key: &str) -> Result<Option<u64>, StorageError> {
        Ok(self.owner(owner).lock().meta.get(key).copied())
    }
}

impl RecordStore for MemoryEngine {
    fn get_meta(&self, key: &str) -> Result<Option<u64>, StorageError> {
        Ok(self.records.lock().meta.get(key).copied())
    }

    fn put_meta(&self, key: &str, value: u64) -> Result<(), StorageError> {
        self.records.lock().meta.insert(key.to_string(), value);
        Ok(())
    }

    fn put_record(&self, table: RecordTable, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.records.lock().records.entry(table).or_default().insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn delete_record(&self, table: RecordTable, key: &str) -> Result<(), StorageError> {
        if let Some(t) = self.records.lock().records.get_mut(&table) {
            t.remove(key);
        }
        Ok(())
    }

    fn get_record(&self, table: RecordTable, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.records.lock().records.get(&table).and_then(|t| t.get(key)).cloned())
    }

    fn list_records(&self, table: RecordTable) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        Ok(self
            .records
            .lock()
            .records
            .get(&table)
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }
}
