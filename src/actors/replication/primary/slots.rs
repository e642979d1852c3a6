//! Replication slots as the primary keeps them: their durable records, what an operator sees of
//! them, their events, and the decoding of a logical slot's changes from the WAL.

use super::outbox::Outbox;
use crate::messages::events::Severity;
use crate::messages::replication::{DecodedChange, ReplicationError, ReplicationEvent, SlotChange, SlotView};
use crate::model::{lsn_text, SlotType, WalRecord};
use crate::storage::{RecordTable, StorageError, Store};

/// Where slots are kept, by name.
pub const SLOTS: RecordTable = RecordTable::named("slots");
/// Most slots: each one holds WAL back.
pub const MAX_SLOTS: usize = 64;

/// The durable record of a slot.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SlotRecord {
    pub slot_type: SlotType,
    pub restart_lsn: u64,
    pub confirmed_flush_lsn: u64,
}

impl SlotRecord {
    pub fn view(&self, name: &str, flush: u64) -> SlotView {
        SlotView {
            slot_name: name.to_string(),
            slot_type: self.slot_type,
            active: false,
            restart_lsn: lsn_text(self.restart_lsn),
            restart_lsn_u64: self.restart_lsn,
            confirmed_flush_lsn: lsn_text(self.confirmed_flush_lsn),
            confirmed_flush_lsn_u64: self.confirmed_flush_lsn,
            retained_bytes: flush.saturating_sub(self.restart_lsn),
            wal_status: "reserved".into(),
        }
    }

    /// `slot_created` or `slot_dropped`.
    pub fn publish(&self, created: bool, name: &str, out: &mut Outbox) {
        let change = SlotChange {
            slot_name: name.to_string(),
            slot_type: self.slot_type,
            active: false,
            restart_lsn: lsn_text(self.restart_lsn),
            confirmed_flush_lsn: lsn_text(self.confirmed_flush_lsn),
        };
        let payload = if created { ReplicationEvent::SlotCreated(change) } else { ReplicationEvent::SlotDropped(change) };
        out.publish(Severity::Info, format!("slot:{name}"), payload);
    }
}

pub fn slot_not_found(slot_name: String) -> ReplicationError {
    ReplicationError::SlotNotFound { slot_name }
}

/// Up to `limit` changes (whole records only: a consumer advances to a record boundary) decoded
/// from `owner`'s WAL from `from`; and where the next read starts. Blocking.
pub fn decode_changes(store: &Store, owner: &str, from: u64, limit: usize) -> Result<(Vec<DecodedChange>, u64), StorageError> {
    let mut changes = Vec::new();
    let mut next = from;
    'records: loop {
        let records = store.read_log(owner, next, 1 << 20)?;
        if records.is_empty() {
            break;
        }
        for (lsn, bytes) in records {
            let end = lsn + bytes.len() as u64;
            let record: WalRecord = serde_json::from_slice(&bytes)
                .map_err(|source| StorageError::UnreadableRecord { owner: owner.to_string(), lsn, source })?;
            if !changes.is_empty() && changes.len() + record.ops.len() > limit {
                break 'records;
            }
            for op in record.ops {
                changes.push(DecodedChange {
                    lsn: lsn_text(lsn),
                    lsn_u64: lsn,
                    end_lsn_u64: end,
                    committed_at_ms: record.committed_at_ms,
                    op: op.op,
                    table: op.table.to_string(),
                    key: op.key.to_string(),
                    value: op.value.map(|v| v.value().clone()),
                });
            }
            next = end;
            if changes.len() >= limit {
                break 'records;
            }
        }
    }
    Ok((changes, next))
}
