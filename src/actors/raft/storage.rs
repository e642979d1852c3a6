//! raft-rs's `Storage` over one group's durable log in the [`Store`]: what a `RawNode` reads.
//! Writes go the other way, as a [`RaftWrite`] the node's shell commits off the arbiter; the
//! node tells this storage what became durable ([`GroupStorage::appended`] and the others), and
//! it keeps the log's ends and its latest entries in memory, so that raft-rs's many reads of
//! terms, ends and recent entries (to send to followers, to apply) do not each open a read
//! transaction on the store. Older entries are read from the store.
//!
//! Entries are stored as raft-rs encodes them (protobuf), so what the store holds is what was
//! appended, byte for byte.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

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

/// Entries kept in memory at most: about as many as a busy leader's followers lag by.
const TAIL_ENTRIES: usize = 4096;

/// The durable log as raft-rs reads it most: its ends and its latest entries.
struct Tail {
    /// The index and term the log starts after (a snapshot's, or the last entry compacted).
    base: (u64, u64),
    last: u64,
    /// The latest durable entries, contiguous, ending at `last`.
    entries: VecDeque<Entry>,
}

impl Tail {
    fn cached(&self, index: u64) -> Option<&Entry> {
        let first = self.entries.front()?.index;
        self.entries.get(usize::try_from(index.checked_sub(first)?).ok()?)
    }
}

/// One group's log, as its node reads it.
pub struct GroupStorage {
    store: Arc<Store>,
    owner: String,
    /// The voters a group with no stored conf state starts with (its bootstrap).
    bootstrap: ConfState,
    /// A `Mutex` because raft-rs reads through `&self`; only the node's actor touches it.
    tail: Mutex<Tail>,
}

impl GroupStorage {
    /// The group's storage, its log's ends read from the store.
    pub fn open(store: Arc<Store>, owner: impl Into<String>, bootstrap_voters: Vec<u64>) -> Result<GroupStorage, GroupStorageError> {
        let owner = owner.into();
        let tail = Mutex::new(Self::ends(&store, &owner)?);
        let bootstrap = ConfState { voters: bootstrap_voters, ..ConfState::default() };
        Ok(GroupStorage { store, owner, bootstrap, tail })
    }

    fn ends(store: &Store, owner: &str) -> Result<Tail, GroupStorageError> {
        let first = store.raft_first_index(owner)?;
        let base_index = first.saturating_sub(1);
        let base = (base_index, store.raft_term(owner, base_index)?);
        Ok(Tail { base, last: store.raft_last_index(owner)?, entries: VecDeque::new() })
    }

    /// `entries` are durable (a write of this group committed them): they replace whatever the
    /// log held from the first one's index on.
    pub fn appended(&self, entries: &[Entry]) {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return };
        let mut t = self.tail.lock();
        while t.entries.back().is_some_and(|e| e.index >= first.index) {
            t.entries.pop_back();
        }
        if t.entries.back().is_some_and(|e| e.index + 1 != first.index) {
            t.entries.clear();
        }
        t.entries.extend(entries.iter().cloned());
        while t.entries.len() > TAIL_ENTRIES {
            t.entries.pop_front();
        }
        t.last = last.index;
    }

    /// The log was compacted through `index`, whose entry had `term` (the write that stores it
    /// may still be on its way: raft-rs reads nothing before the new start meanwhile).
    pub fn compacted(&self, index: u64, term: u64) {
        let mut t = self.tail.lock();
        if index > t.base.0 {
            t.base = (index, term);
            t.last = t.last.max(index);
            while t.entries.front().is_some_and(|e| e.index <= index) {
                t.entries.pop_front();
            }
        }
    }

    /// A snapshot was installed (durable): the log's ends are read again from the store.
    pub fn reload(&self) -> Result<(), GroupStorageError> {
        *self.tail.lock() = Self::ends(&self.store, &self.owner)?;
        Ok(())
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
        let max = max_size.into();
        {
            let t = self.tail.lock();
            if low <= t.base.0 {
                return Err(raft::Error::Store(raft::StorageError::Compacted));
            }
            if high > t.last + 1 {
                return Err(raft::Error::Store(raft::StorageError::Unavailable));
            }
            if t.cached(low).is_some() {
                let mut out: Vec<Entry> = (low..high).filter_map(|i| t.cached(i).cloned()).collect();
                raft::util::limit_size(&mut out, max);
                return Ok(out);
            }
        }
        let stored = self.store.raft_entries(&self.owner, low, high, max.unwrap_or(u64::MAX)).map_err(to_raft)?;
        stored.iter().map(|e| decode::<Entry>(&e.bytes, &self.owner).map_err(to_raft)).collect()
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        {
            let t = self.tail.lock();
            if idx == t.base.0 {
                return Ok(t.base.1);
            }
            if idx < t.base.0 {
                return Err(raft::Error::Store(raft::StorageError::Compacted));
            }
            if idx > t.last {
                return Err(raft::Error::Store(raft::StorageError::Unavailable));
            }
            if let Some(e) = t.cached(idx) {
                return Ok(e.term);
            }
        }
        self.store.raft_term(&self.owner, idx).map_err(to_raft)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.tail.lock().base.0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.tail.lock().last)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // The log is not compacted yet, so a follower that lags catches up from entries; a
        // snapshot is only asked for once compaction has dropped what it needs.
        // One older than where the log starts would leave the follower short of entries the log
        // no longer holds (and, older than a join, lacking the joined node): the newer one is on
        // its way to the store.
        let base = self.tail.lock().base.0;
        match self.store.raft_snapshot(&self.owner).map_err(to_raft)?.filter(|s| s.index >= base) {
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

#[cfg(test)]
mod tests {
    use raft::Storage as _;

    use super::*;
    use crate::storage::{RaftSnapshot, RaftWrite};

    fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range.map(|index| Entry { index, term, data: vec![index as u8; 10].into(), ..Entry::default() }).collect()
    }

    /// Commits `es` to the store and tells the storage, as the node does.
    fn append(store: &Store, gs: &GroupStorage, es: &[Entry]) {
        let stored = es.iter().map(|e| stored_entry(e, "g")).collect::<Result<Vec<_>, _>>().expect("encode");
        store.commit_raft("g", RaftWrite { entries: stored, ..RaftWrite::default() }).expect("commit");
        gs.appended(es);
    }

    /// What the storage answers, over every index around the log.
    fn answers(gs: &GroupStorage) -> Vec<String> {
        let (first, last) = (gs.first_index().expect("first"), gs.last_index().expect("last"));
        let mut out = vec![format!("{first}..={last}")];
        for i in first.saturating_sub(2)..last + 3 {
            out.push(format!("term {i}: {:?}", gs.term(i).ok()));
            let got = gs.entries(i, (i + 3).min(last + 1), 25, GetEntriesContext::empty(false));
            out.push(format!("entries {i}: {:?}", got.ok().map(|es| es.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>())));
        }
        out
    }

    #[test]
    fn what_is_kept_in_memory_answers_as_the_store_does() {
        let store = Arc::new(Store::memory());
        let gs = GroupStorage::open(store.clone(), "g", vec![1]).expect("open");
        append(&store, &gs, &entries(1..=10, 1));
        // A conflicting suffix from a new leader replaces entries 8 on.
        append(&store, &gs, &entries(8..=12, 2));
        let fresh = || GroupStorage::open(store.clone(), "g", vec![1]).expect("open");
        assert_eq!(answers(&gs), answers(&fresh()));

        // Compaction through 5: told at once, stored later, as the node does.
        gs.compacted(5, 1);
        let snapshot = RaftSnapshot { index: 5, term: 1, conf_state: Vec::new(), data: Vec::new() };
        store.commit_raft("g", RaftWrite { snapshot: Some(snapshot), ..RaftWrite::default() }).expect("compact");
        assert_eq!(answers(&gs), answers(&fresh()));
        assert!(matches!(gs.term(4), Err(raft::Error::Store(raft::StorageError::Compacted))));
    }

    #[test]
    fn a_snapshot_older_than_where_the_log_starts_is_not_offered() {
        let store = Arc::new(Store::memory());
        let gs = GroupStorage::open(store.clone(), "g", vec![1]).expect("open");
        append(&store, &gs, &entries(1..=10, 1));
        let conf_state = encode(&ConfState { voters: vec![1], ..ConfState::default() }, "g").expect("encode");
        let at = |index| RaftSnapshot { index, term: 1, conf_state: conf_state.clone(), data: Vec::new() };
        gs.compacted(3, 1);
        store.commit_raft("g", RaftWrite { snapshot: Some(at(3)), ..RaftWrite::default() }).expect("compact");
        assert_eq!(gs.snapshot(0, 2).expect("the stored snapshot").get_metadata().index, 3);
        // Compacted through 8 in memory, its snapshot not stored yet: the one at 3 would leave a
        // follower short of 4..=8, which the log no longer holds.
        gs.compacted(8, 1);
        assert!(matches!(gs.snapshot(0, 2), Err(raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable))));
        store.commit_raft("g", RaftWrite { snapshot: Some(at(8)), ..RaftWrite::default() }).expect("compact");
        assert_eq!(gs.snapshot(0, 2).expect("the new snapshot").get_metadata().index, 8);
    }
}
