//! The state machine the Raft log drives: the cluster's metadata key-value space, the failover
//! history, and the members (their records and roles, which conf changes and metadata commands
//! change). Plain data; the node applies committed entries to it in log order, and every node
//! that applied the same prefix holds the same state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::messages::cluster::{MemberChange, NodeRecord};
use crate::model::{FailoverRecord, MetaCommand, NodeRole};

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
    /// The members by node id: the bootstrap voters (`cluster.nodes`, the same on every node),
    /// then what conf changes made of them.
    members: BTreeMap<String, NodeRecord>,
    applied: u64,
}

/// What a snapshot holds. Snapshots of builds before the history held the key-value map alone,
/// and those before membership changes went through Raft no members (the bootstrap's stand).
#[derive(Serialize, Deserialize)]
struct Image {
    kv: BTreeMap<String, KvValue>,
    failovers: Vec<FailoverRecord>,
    #[serde(default)]
    members: Option<BTreeMap<String, NodeRecord>>,
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
    /// The members changed (or a snapshot set them): all of them after the change.
    Members { index: u64, members: Vec<NodeRecord>, reason: String },
    /// Bytes that are not a command this version knows: skipped, the same way on every node.
    Unreadable { index: u64, reason: String },
}

impl Applied {
    pub fn index(&self) -> u64 {
        match self {
            Applied::Nothing { index } | Applied::Put { index, .. } | Applied::Members { index, .. } | Applied::Unreadable { index, .. } => *index,
        }
    }
}

impl MetaMachine {
    /// The machine of a group that applied nothing yet: its members are the bootstrap voters.
    pub fn seeded(bootstrap: &[String]) -> MetaMachine {
        let members = bootstrap
            .iter()
            .map(|id| {
                let record = NodeRecord { node_id: id.clone(), address: String::new(), metadata: Default::default(), joined_at_ms: 0, role: NodeRole::Voter };
                (id.clone(), record)
            })
            .collect();
        MetaMachine { members, ..MetaMachine::default() }
    }

    pub fn members(&self) -> impl Iterator<Item = &NodeRecord> {
        self.members.values()
    }

    fn members_applied(&self, index: u64, reason: String) -> Applied {
        Applied::Members { index, members: self.members.values().cloned().collect(), reason }
    }

    /// Applies the conf change at `index`, whose context is `change` (raft-rs applied the change
    /// of voters and learners itself).
    pub fn apply_member_change(&mut self, index: u64, change: &MemberChange) -> Applied {
        self.applied = self.applied.max(index);
        let reason = match change {
            MemberChange::Join { record } => {
                self.members.insert(record.node_id.clone(), NodeRecord { role: NodeRole::Learner, ..record.clone() });
                "joined the Raft group as a learner".to_string()
            }
            MemberChange::Promote { node_id } => match self.members.get_mut(node_id) {
                Some(m) => {
                    m.role = NodeRole::Voter;
                    "caught up with the leader's log: promoted to voter".to_string()
                }
                None => return Applied::Nothing { index },
            },
            MemberChange::Leave { node_id } => match self.members.remove(node_id) {
                Some(_) => "removed from the Raft group".to_string(),
                None => return Applied::Nothing { index },
            },
            MemberChange::Metadata { .. } => return Applied::Nothing { index },
        };
        self.members_applied(index, reason)
    }

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
            Ok(MetaCommand::SetNodeMetadata { node_id, metadata }) => match self.members.get_mut(&node_id) {
                Some(m) => {
                    m.metadata = metadata;
                    self.members_applied(index, "metadata updated".into())
                }
                None => Applied::Nothing { index },
            },
            Err(e) => Applied::Unreadable { index, reason: e.to_string() },
        }
    }

    /// The state as a snapshot carries it.
    pub fn snapshot_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Image { kv: self.kv.clone(), failovers: self.failovers.clone(), members: Some(self.members.clone()) })
    }

    /// The state a snapshot taken at `index` carried; `bootstrap` names the members of a
    /// snapshot that has none.
    pub fn restore(bytes: &[u8], index: u64, bootstrap: &[String]) -> Result<MetaMachine, String> {
        let (kv, failovers, members) = match serde_json::from_slice(bytes).map_err(|e| e.to_string())? {
            StoredImage::Image(i) => (i.kv, i.failovers, i.members),
            StoredImage::KvOnly(kv) => (kv, Vec::new(), None),
        };
        let members = members.unwrap_or_else(|| MetaMachine::seeded(bootstrap).members);
        Ok(MetaMachine { kv, failovers, members, applied: index })
    }

    /// The members a snapshot installed at `index` set.
    pub fn restored(&self, index: u64) -> Applied {
        self.members_applied(index, "learned from a snapshot of the group".into())
    }

    /// An entry that changes no state (a conf change) was applied.
    pub fn skip(&mut self, index: u64) -> Applied {
        self.applied = self.applied.max(index);
        Applied::Nothing { index }
    }
}
