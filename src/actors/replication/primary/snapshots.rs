//! Snapshots: the primary's committed rows at its flushed lsn, stored durably, listed, and restored
//! into a replica (which then streams from the snapshot's lsn).

use crate::messages::replication::{ReplicationError, SnapshotChange, SnapshotView};
use crate::messages::events::now_ms;
use crate::model::{json_len, lsn_text};
use crate::storage::{RecordTable, StorageError, Store};

/// Where snapshots are kept, by id.
pub const SNAPSHOTS: RecordTable = RecordTable::named("snapshots");
/// The meta counter of snapshots taken, which names the next one.
const SNAPSHOT_SEQ: &str = "snapshot_seq";
/// The meta key of the newest snapshot's lsn: WAL since it is kept.
const NEWEST_SNAPSHOT_LSN: &str = "newest_snapshot_lsn";

/// A snapshot as stored: the primary's committed rows at `lsn`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SnapshotRecord {
    pub snapshot_id: String,
    pub lsn: u64,
    pub created_at_ms: i64,
    pub bytes: u64,
    pub rows: Vec<(String, String, serde_json::Value)>,
}

impl SnapshotRecord {
    pub fn view(&self) -> SnapshotView {
        SnapshotView {
            snapshot_id: self.snapshot_id.clone(),
            lsn: lsn_text(self.lsn),
            lsn_u64: self.lsn,
            rows: self.rows.len() as u64,
            bytes: self.bytes,
            created_at_ms: self.created_at_ms,
        }
    }

    /// The event payload of this snapshot, restored into `target` if given.
    pub fn change(&self, target: Option<&str>) -> SnapshotChange {
        SnapshotChange {
            snapshot_id: self.snapshot_id.clone(),
            lsn: lsn_text(self.lsn),
            rows: self.rows.len() as u64,
            bytes: self.bytes,
            target: target.map(str::to_string),
        }
    }
}

/// Stores `rows` (the committed state at `lsn`) as the next snapshot. Blocking.
pub fn write(store: &Store, rows: Vec<(String, String, serde_json::Value)>, lsn: u64) -> Result<SnapshotRecord, StorageError> {
    let n = store.get_meta(SNAPSHOT_SEQ)?.unwrap_or(0) + 1;
    let bytes = rows.iter().map(|r| json_len(&r.2) as u64).sum();
    let record = SnapshotRecord { snapshot_id: format!("snap_{n:06}"), lsn, created_at_ms: now_ms(), bytes, rows };
    let encoded = serde_json::to_vec(&record).map_err(|source| StorageError::Encode { what: "a snapshot", source })?;
    store.put_record(SNAPSHOTS, &record.snapshot_id, &encoded)?;
    store.put_meta(NEWEST_SNAPSHOT_LSN, lsn)?;
    store.put_meta(SNAPSHOT_SEQ, n)?;
    Ok(record)
}

/// Snapshot `snapshot_id`, read back. Blocking.
pub fn read(store: &Store, snapshot_id: String) -> Result<SnapshotRecord, ReplicationError> {
    match store.get_record(SNAPSHOTS, &snapshot_id)? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| ReplicationError::Storage { message: e.to_string() }),
        None => Err(ReplicationError::SnapshotNotFound { snapshot_id }),
    }
}

/// Every snapshot stored. Blocking.
pub fn list(store: &Store) -> Result<Vec<SnapshotView>, StorageError> {
    Ok(store
        .list_records(SNAPSHOTS)?
        .into_iter()
        .filter_map(|(_, bytes)| serde_json::from_slice::<SnapshotRecord>(&bytes).ok())
        .map(|r| r.view())
        .collect())
}

/// The newest snapshot (id, lsn), as a start reads it back. Blocking.
pub fn newest(store: &Store) -> Result<Option<(String, u64)>, StorageError> {
    Ok(match (store.get_meta(SNAPSHOT_SEQ)?, store.get_meta(NEWEST_SNAPSHOT_LSN)?) {
        (Some(n), Some(lsn)) => Some((format!("snap_{n:06}"), lsn)),
        _ => None,
    })
}
