//! The state machine the Raft log drives: the cluster's metadata key-value space. Plain data;
//! the node applies committed entries to it in log order, and every node that applied the same
//! prefix holds the same state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{FailoverRecord, MetaCommand};

/// Failovers the history keeps, the oldest dropped first.
const HISTORY: usize = 1000;

/// A key's value and the entry that wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvValue {
    pub value: serde_json::Value,
    pub index: u64,
    pub term: u64,
}

/// The metadata as of `applied`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MetaMachine {
    kv: BTreeMap<String, KvValue>,
    /// Completed failovers, oldest first.
    failovers: Vec<FailoverRecord>,
    applied: u64,
}

/// What a snapshot holds. Snapshots of builds before the history held the key-value map alone.
#[derive(Serialize, Deserialize)]
struct Image {
    kv: BTreeMap<String, KvValue>,
    failovers: Vec<FailoverRecord>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StoredImage {
    Image(Image),
    KvOnly(BTreeMap<String, KvValue>),
}

/// What applying one entry did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// An entry with no command (a new leader's empty entry, a conf change).
    Nothing { index: u64 },
    Put { index: u64, term: u64, key: String },
    /// Bytes that are not a command this version knows: skipped, the same way on every node.
    Unreadable { index: u64, reason: String },
}

impl MetaMachine {
    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn get(&self, key: &str) -> Option<&KvValue> {
        self.kv.get(key)
    }

    pub fn failovers(&self) -> &[FailoverRecord] {
        &self.failovers
    }

    pub fn len(&self) -> usize {
        self.kv.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kv.is_empty()
    }

    /// Applies the normal entry at `index` (data empty for a leader's no-op).
    pub fn apply(&mut self, index: u64, term: u64, data: &[u8]) -> Applied {
        self.applied = self.applied.max(index);
        if data.is_empty() {
            return Applied::Nothing { index };
        }
        match serde_json::from_slice::<MetaCommand>(data) {
            Ok(MetaCommand::Put { key, value }) => {
                self.kv.insert(key.clone(), KvValue { value, index, term });
                Applied::Put { index, term, key }
            }
            Ok(MetaCommand::RecordFailover { record }) => {
                self.failovers.retain(|f| f.failover.failover_id != record.failover.failover_id);
                self.failovers.push(record);
                if self.failovers.len() > HISTORY {
                    self.failovers.remove(0);
                }
                Applied::Nothing { index }
            }
            Err(e) => Applied::Unreadable { index, reason: e.to_string() },
        }
    }

    /// The state as a snapshot carries it.
    pub fn snapshot_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Image { kv: self.kv.clone(), failovers: self.failovers.clone() })
    }

    /// The state a snapshot taken at `index` carried.
    pub fn restore(bytes: &[u8], index: u64) -> Result<MetaMachine, String> {
        let (kv, failovers) = match serde_json::from_slice(bytes).map_err(|e| e.to_string())? {
            StoredImage::Image(i) => (i.kv, i.failovers),
            StoredImage::KvOnly(kv) => (kv, Vec::new()),
        };
        Ok(MetaMachine { kv, failovers, applied: index })
    }

    /// An entry that changes no state (a conf change) was applied.
    pub fn skip(&mut self, index: u64) -> Applied {
        self.applied = self.applied.max(index);
        Applied::Nothing { index }
    }
}
