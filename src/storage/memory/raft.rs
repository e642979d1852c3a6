//! The memory engine's Raft storage: each group's log and state in maps, under the rules of
//! [`crate::storage::raft_log`].

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::MemoryEngine;
use crate::storage::raft_log::{self, RaftEdit, RaftView};
use crate::storage::{RaftEntry, RaftHardState, RaftLogStore, RaftSnapshot, RaftState, RaftWrite, StorageError};

/// One group's log and state.
#[derive(Default)]
pub(super) struct MemoryRaft {
    /// index -> (term, encoded entry).
    entries: BTreeMap<u64, (u64, Vec<u8>)>,
    base: (u64, u64),
    state: RaftState,
    snapshot: Option<RaftSnapshot>,
}

impl RaftView for MemoryRaft {
    type Error = StorageError;

    fn base(&self) -> Result<(u64, u64), StorageError> {
        Ok(self.base)
    }

    fn last_entry(&self) -> Result<Option<u64>, StorageError> {
        Ok(self.entries.last_key_value().map(|(k, _)| *k))
    }

    fn entry_term(&self, index: u64) -> Result<Option<u64>, StorageError> {
        Ok(self.entries.get(&index).map(|e| e.0))
    }

    fn visit(&self, low: u64, high: u64, f: &mut dyn FnMut(u64, u64, &[u8]) -> bool) -> Result<(), StorageError> {
        for (index, (term, bytes)) in self.entries.range(low..high) {
            if !f(*index, *term, bytes) {
                break;
            }
        }
        Ok(())
    }

    fn state(&self) -> Result<RaftState, StorageError> {
        Ok(self.state.clone())
    }

    fn snapshot(&self) -> Result<Option<RaftSnapshot>, StorageError> {
        Ok(self.snapshot.clone())
    }
}

impl RaftEdit for MemoryRaft {
    fn set_base(&mut self, index: u64, term: u64) -> Result<(), StorageError> {
        self.base = (index, term);
        Ok(())
    }

    fn remove_from(&mut self, index: u64) -> Result<(), StorageError> {
        drop(self.entries.split_off(&index));
        Ok(())
    }

    fn trim_through(&mut self, index: u64, at_most: usize) -> Result<(), StorageError> {
        for _ in 0..at_most {
            if self.entries.first_key_value().is_none_or(|(&k, _)| k > index) {
                break;
            }
            self.entries.pop_first();
        }
        Ok(())
    }

    fn insert(&mut self, entry: RaftEntry) -> Result<(), StorageError> {
        self.entries.insert(entry.index, (entry.term, entry.bytes));
        Ok(())
    }

    fn set_hard_state(&mut self, hard_state: RaftHardState) -> Result<(), StorageError> {
        self.state.hard_state = hard_state;
        Ok(())
    }

    fn set_conf_state(&mut self, conf_state: &[u8]) -> Result<(), StorageError> {
        self.state.conf_state = conf_state.to_vec();
        Ok(())
    }

    fn set_applied(&mut self, applied: u64) -> Result<(), StorageError> {
        self.state.applied = applied;
        Ok(())
    }

    fn set_snapshot(&mut self, snapshot: &RaftSnapshot) -> Result<(), StorageError> {
        self.snapshot = Some(snapshot.clone());
        Ok(())
    }

    fn clear(&mut self) -> Result<(), StorageError> {
        *self = MemoryRaft::default();
        Ok(())
    }
}

impl MemoryEngine {
    /// `owner`'s raft log, created on first use.
    fn raft(&self, owner: &str) -> Arc<Mutex<MemoryRaft>> {
        self.raft.lock().entry_ref(owner).or_default().clone()
    }
}

impl RaftLogStore for MemoryEngine {
    fn raft_state(&self, owner: &str) -> Result<RaftState, StorageError> {
        self.raft(owner).lock().state()
    }

    fn raft_entries(&self, owner: &str, low: u64, high: u64, max_bytes: u64) -> Result<Vec<RaftEntry>, StorageError> {
        raft_log::entries(&*self.raft(owner).lock(), owner, low, high, max_bytes)
    }

    fn raft_term(&self, owner: &str, index: u64) -> Result<u64, StorageError> {
        raft_log::term(&*self.raft(owner).lock(), owner, index)
    }

    fn raft_first_index(&self, owner: &str) -> Result<u64, StorageError> {
        Ok(raft_log::bounds(&*self.raft(owner).lock())?.0 .0 + 1)
    }

    fn raft_last_index(&self, owner: &str) -> Result<u64, StorageError> {
        Ok(raft_log::bounds(&*self.raft(owner).lock())?.1)
    }

    fn raft_snapshot(&self, owner: &str) -> Result<Option<RaftSnapshot>, StorageError> {
        self.raft(owner).lock().snapshot()
    }

    fn commit_raft(&self, owner: &str, write: RaftWrite) -> Result<(), StorageError> {
        raft_log::apply(&mut *self.raft(owner).lock(), owner, write)
    }
}
