//! raft-rs's `Storage` over one group's durable log in the [`Store`]: what a `RawNode` reads.
//! Writes go the other way, as a [`RaftWrite`] the node's shell commits off the arbiter; what is
//! committed is visible here at once, since both read the same store.
//!
//! Entries are stored as raft-rs encodes them (protobuf), so what the store holds is what was
//! appended, byte for byte.

use std::sync::Arc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState};

use crate::storage::{RaftEntry, RaftSnapshot, Store, StorageError};

/// Why a group's durable state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum GroupStorageError {
    #[error(transparent)]
    Store(#[from] StorageError),
    #[error("raft group {owner}: stored bytes do not decode as raft's protobuf: {source}")]
    Undecodable { owner: String, source: protobuf::ProtobufError },
    #[error("raft group {owner}: a snapshot's state does not load: {reason}")]
    Unrestorable { owner: String, reason: String },
}

/// One group's log, as its node reads it.
pub struct GroupStorage {
    store: Arc<Store>,
    owner: String,
    /// The voters a group with no stored conf state starts with (its bootstrap).
    bootstrap: ConfState,
}

impl GroupStorage {
    pub fn new(store: Arc<Store>, owner: impl Into<String>, bootstrap_voters: Vec<u64>) -> GroupStorage {
        let bootstrap = ConfState { voters: bootstrap_voters, ..ConfState::default() };
        GroupStorage { store, owner: owner.into(), bootstrap }
    }

    /// The conf state the group starts from: the stored one, or the bootstrap voters.
    pub fn conf_state(&self) -> Result<ConfState, GroupStorageError> {
        let stored = self.store.raft_state(&self.owner)?.conf_state;
        if stored.is_empty() {
            return Ok(self.bootstrap.clone());
        }
        decode::<ConfState>(&stored, &self.owner)
    }

    /// Whether nothing was ever stored for this group (its first write must store its conf state).
    pub fn is_fresh(&self) -> Result<bool, GroupStorageError> {
        Ok(self.store.raft_state(&self.owner)?.conf_state.is_empty())
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }
}

/// Decodes what raft-rs encoded; a failure is a damaged store, not a bug of the caller.
pub fn decode<M: protobuf::Message>(bytes: &[u8], owner: &str) -> Result<M, GroupStorageError> {
    M::parse_from_bytes(bytes).map_err(|source| GroupStorageError::Undecodable { owner: owner.to_string(), source })
}

/// Encodes a raft-rs value for the store.
pub fn encode<M: protobuf::Message>(m: &M, owner: &str) -> Result<Vec<u8>, GroupStorageError> {
    m.write_to_bytes().map_err(|source| GroupStorageError::Undecodable { owner: owner.to_string(), source })
}

/// The stored form of an entry.
pub fn stored_entry(e: &Entry, owner: &str) -> Result<RaftEntry, GroupStorageError> {
    Ok(RaftEntry { index: e.index, term: e.term, bytes: encode(e, owner)? })
}

/// The stored form of a snapshot.
pub fn stored_snapshot(s: &Snapshot, owner: &str) -> Result<RaftSnapshot, GroupStorageError> {
    let meta = s.get_metadata();
    Ok(RaftSnapshot { index: meta.index, term: meta.term, conf_state: encode(meta.get_conf_state(), owner)?, data: s.data.to_vec() })
}

fn to_raft(e: impl Into<GroupStorageError>) -> raft::Error {
    match e.into() {
        GroupStorageError::Store(StorageError::RaftCompacted { .. }) => raft::Error::Store(raft::StorageError::Compacted),
        GroupStorageError::Store(StorageError::RaftUnavailable { .. }) => raft::Error::Store(raft::StorageError::Unavailable),
        other => raft::Error::Store(raft::StorageError::Other(Box::new(other))),
    }
}

impl raft::Storage for GroupStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let stored = self.store.raft_state(&self.owner).map_err(to_raft)?;
        let hs = stored.hard_state;
        let hard_state = HardState { term: hs.term, vote: hs.vote, commit: hs.commit, ..HardState::default() };
        Ok(RaftState { hard_state, conf_state: self.conf_state().map_err(to_raft)? })
    }

    fn entries(&self, low: u64, high: u64, max_size: impl Into<Option<u64>>, _context: GetEntriesContext) -> raft::Result<Vec<Entry>> {
        let max = max_size.into().unwrap_or(u64::MAX);
        let stored = self.store.raft_entries(&self.owner, low, high, max).map_err(to_raft)?;
        stored.iter().map(|e| decode::<Entry>(&e.bytes, &self.owner).map_err(to_raft)).collect()
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.store.raft_term(&self.owner, idx).map_err(to_raft)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.store.raft_first_index(&self.owner).map_err(to_raft)
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.store.raft_last_index(&self.owner).map_err(to_raft)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // The log is not compacted yet, so a follower that lags catches up from entries; a
        // snapshot is only asked for once compaction has dropped what it needs.
        match self.store.raft_snapshot(&self.owner).map_err(to_raft)? {
            Some(s) if s.index >= request_index => {
                let mut snap = Snapshot { data: s.data.into(), ..Snapshot::default() };
                let meta = snap.mut_metadata();
                meta.index = s.index;
                meta.term = s.term;
                meta.set_conf_state(decode::<ConfState>(&s.conf_state, &self.owner).map_err(to_raft)?);
                Ok(snap)
            }
            _ => Err(raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable)),
        }
    }
}

/// A stretch of a log: the first and last index held, and the entries read with their stored size.
pub struct LogStretch {
    pub first_index: u64,
    pub last_index: u64,
    pub entries: Vec<(Entry, usize)>,
}

/// Reads `limit` entries of `owner`'s log from `from` (or from its first), for operators: what
/// each entry is, decoded. Blocking.
pub fn read_log(store: &Store, owner: &str, from: Option<u64>, limit: usize) -> Result<LogStretch, GroupStorageError> {
    let first = store.raft_first_index(owner)?;
    let last = store.raft_last_index(owner)?;
    let low = from.unwrap_or(first).max(first);
    let high = low.saturating_add(limit as u64).min(last + 1);
    if low >= high {
        return Ok(LogStretch { first_index: first, last_index: last, entries: Vec::new() });
    }
    let stored = store.raft_entries(owner, low, high, u64::MAX)?;
    let entries = stored.iter().map(|e| Ok((decode::<Entry>(&e.bytes, owner)?, e.bytes.len()))).collect::<Result<_, GroupStorageError>>()?;
    Ok(LogStretch { first_index: first, last_index: last, entries })
}
