//! Durable Raft storage per group (an owner, as for the WAL): entries by index and term, the
//! hard state, the conf state, the applied index and the latest snapshot; what raft-rs's
//! `Storage` reads and what handling its `Ready` writes. Entries, conf states and snapshot data
//! are opaque bytes here (protobuf the raft adapter encodes), so the store needs no raft crate.
//!
//! The rules (what a write may do, what a read of a compacted or missing index returns) are
//! written once, here, over [`RaftView`] and [`RaftEdit`], which each engine implements on its
//! own tables.

use super::StorageError;

/// Raft's persistent state: the current term, the vote cast in it, the highest index known
/// committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RaftHardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

/// What a Raft node starts from (raft-rs's `initial_state`, plus the applied index).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftState {
    pub hard_state: RaftHardState,
    /// The encoded conf state (empty until one is set).
    pub conf_state: Vec<u8>,
    pub applied: u64,
}

/// One log entry: its index and term, and the encoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftEntry {
    pub index: u64,
    pub term: u64,
    pub bytes: Vec<u8>,
}

/// A snapshot: the state machine as of `index` (whose entry had `term`), and the conf state
/// there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftSnapshot {
    pub index: u64,
    pub term: u64,
    pub conf_state: Vec<u8>,
    pub data: Vec<u8>,
}

/// What one `Ready` makes durable, in one transaction (one fsync), applied in this order.
#[derive(Debug, Clone, Default)]
pub struct RaftWrite {
    /// Installs a snapshot: entries up to its index go (all of them, unless the entry at its
    /// index has its term), the conf state becomes its, and the hard state's commit and term
    /// move up to its index and term. Refused if no newer than where the log starts.
    pub snapshot: Option<RaftSnapshot>,
    /// Appended, contiguous; every stored entry from the first one's index on goes first (a
    /// conflicting suffix). The first may not be compacted nor leave a gap.
    pub entries: Vec<RaftEntry>,
    pub hard_state: Option<RaftHardState>,
    pub conf_state: Option<Vec<u8>>,
    pub applied: Option<u64>,
    /// Drops entries before this index, keeping the term of the last one dropped (for
    /// [`RaftLogStore::raft_term`]). Nothing if they are gone already; refused past the end.
    pub compact_to: Option<u64>,
    /// Everything stored for the group goes first: a node that joins the group starts empty,
    /// whatever an earlier member of that name left.
    pub clear: bool,
}

/// A Raft group's log and state; each group commits apart from every other.
pub trait RaftLogStore {
    fn raft_state(&self, owner: &str) -> Result<RaftState, StorageError>;

    /// Entries in `[low, high)`, stopping before the one that takes their bytes past
    /// `max_bytes` (but at least one). [`StorageError::RaftCompacted`] if `low` is compacted,
    /// [`StorageError::RaftUnavailable`] if `high` is past the end.
    fn raft_entries(&self, owner: &str, low: u64, high: u64, max_bytes: u64) -> Result<Vec<RaftEntry>, StorageError>;

    /// The term of entry `index`, also of the last compacted one (the snapshot's).
    fn raft_term(&self, owner: &str, index: u64) -> Result<u64, StorageError>;

    /// The first index held: one past the snapshot's or the last compacted entry's.
    fn raft_first_index(&self, owner: &str) -> Result<u64, StorageError>;

    /// The last index held: the last entry's, or the snapshot's if there is none after it.
    fn raft_last_index(&self, owner: &str) -> Result<u64, StorageError>;

    /// The latest snapshot installed, if any.
    fn raft_snapshot(&self, owner: &str) -> Result<Option<RaftSnapshot>, StorageError>;

    /// Makes `write` durable in one transaction; a refused write changes nothing.
    fn commit_raft(&self, owner: &str, write: RaftWrite) -> Result<(), StorageError>;
}

/// An engine's raft tables, read inside one transaction.
pub(crate) trait RaftView {
    type Error: From<StorageError>;
    /// The (index, term) the log starts after: the snapshot's or the last compacted entry's.
    fn base(&self) -> Result<(u64, u64), Self::Error>;
    fn last_entry(&self) -> Result<Option<u64>, Self::Error>;
    fn entry_term(&self, index: u64) -> Result<Option<u64>, Self::Error>;
    /// Hands the entries in `[low, high)` to `f` as (index, term, bytes), in order, while it
    /// returns true.
    fn visit(&self, low: u64, high: u64, f: &mut dyn FnMut(u64, u64, &[u8]) -> bool) -> Result<(), Self::Error>;
    fn state(&self) -> Result<RaftState, Self::Error>;
    fn snapshot(&self) -> Result<Option<RaftSnapshot>, Self::Error>;
}

/// An engine's raft tables, written inside one transaction.
pub(crate) trait RaftEdit: RaftView {
    fn set_base(&mut self, index: u64, term: u64) -> Result<(), Self::Error>;
    /// Drops the entries at `index` and after.
    fn remove_from(&mut self, index: u64) -> Result<(), Self::Error>;
    /// Drops at most `at_most` entries from the front, none past `index`.
    fn trim_through(&mut self, index: u64, at_most: usize) -> Result<(), Self::Error>;
    fn insert(&mut self, entry: RaftEntry) -> Result<(), Self::Error>;
    fn set_hard_state(&mut self, hard_state: RaftHardState) -> Result<(), Self::Error>;
    fn set_conf_state(&mut self, conf_state: &[u8]) -> Result<(), Self::Error>;
    fn set_applied(&mut self, applied: u64) -> Result<(), Self::Error>;
    fn set_snapshot(&mut self, snapshot: &RaftSnapshot) -> Result<(), Self::Error>;
    /// Drops every entry, number and blob of the group.
    fn clear(&mut self) -> Result<(), Self::Error>;
}

/// The base (index, term) and the last index.
pub(crate) fn bounds<V: RaftView>(v: &V) -> Result<((u64, u64), u64), V::Error> {
    let base = v.base()?;
    Ok((base, v.last_entry()?.unwrap_or(base.0).max(base.0)))
}

fn compacted(owner: &str, index: u64, base_index: u64) -> StorageError {
    StorageError::RaftCompacted { owner: owner.to_string(), index, first_index: base_index + 1 }
}

fn unavailable(owner: &str, index: u64, last_index: u64) -> StorageError {
    StorageError::RaftUnavailable { owner: owner.to_string(), index, last_index }
}

/// As [`RaftLogStore::raft_term`].
pub(crate) fn term<V: RaftView>(v: &V, owner: &str, index: u64) -> Result<u64, V::Error> {
    let ((base_index, base_term), last) = bounds(v)?;
    if index == base_index {
        return Ok(base_term);
    }
    if index < base_index {
        return Err(compacted(owner, index, base_index).into());
    }
    if index > last {
        return Err(unavailable(owner, index, last).into());
    }
    v.entry_term(index)?.ok_or_else(|| unavailable(owner, index, last).into())
}

/// As [`RaftLogStore::raft_entries`].
pub(crate) fn entries<V: RaftView>(v: &V, owner: &str, low: u64, high: u64, max_bytes: u64) -> Result<Vec<RaftEntry>, V::Error> {
    let ((base_index, _), last) = bounds(v)?;
    if low <= base_index {
        return Err(compacted(owner, low, base_index).into());
    }
    if high > last + 1 {
        return Err(unavailable(owner, high - 1, last).into());
    }
    let mut out = Vec::new();
    if low >= high {
        return Ok(out);
    }
    let mut size = 0u64;
    v.visit(low, high, &mut |index, term, bytes| {
        size = size.saturating_add(bytes.len() as u64);
        if !out.is_empty() && size > max_bytes {
            return false;
        }
        out.push(RaftEntry { index, term, bytes: bytes.to_vec() });
        true
    })?;
    Ok(out)
}

/// As [`RaftLogStore::commit_raft`]: every check before the first change, so that a refused
/// write leaves the tables as they were (the memory engine has no transaction to abort).
/// Entries at or before the log's start (its base: a snapshot's index, or `compact_to`'s) are
/// out of the log at once, but leave the tables a few per write: removing the 10,000 a snapshot
/// compacts took 30 to 50 ms on redb, a stall that every write queued behind it waited out. Each
/// write removes up to this many plus twice as many as it appends, which outpaces any rate of
/// appends.
const TRIM_AT_LEAST: usize = 64;

pub(crate) fn apply<E: RaftEdit>(t: &mut E, owner: &str, write: RaftWrite) -> Result<(), E::Error> {
    let RaftWrite { snapshot, entries, hard_state, conf_state, applied, compact_to, clear } = write;
    let ((mut base_index, _), mut last) = if clear { ((0, 0), 0) } else { bounds(t)? };
    let mut keep_after_snapshot = false;
    if let Some(s) = &snapshot {
        if s.index <= base_index {
            return Err(StorageError::RaftSnapshotOutOfDate { owner: owner.to_string(), index: s.index, base_index }.into());
        }
        keep_after_snapshot = !clear && s.index <= last && t.entry_term(s.index)? == Some(s.term);
        if !keep_after_snapshot {
            last = s.index;
        }
        base_index = s.index;
    }
    if let Some(first) = entries.first() {
        if first.index <= base_index {
            return Err(compacted(owner, first.index, base_index).into());
        }
        if first.index > last + 1 {
            return Err(unavailable(owner, first.index, last).into());
        }
        if let Some(w) = entries.windows(2).find(|w| w[1].index != w[0].index + 1) {
            return Err(unavailable(owner, w[1].index, w[0].index).into());
        }
        last = first.index + entries.len() as u64 - 1;
    }
    let compact_to = compact_to.filter(|&to| to > base_index + 1);
    if let Some(to) = compact_to {
        if to > last + 1 {
            return Err(unavailable(owner, to, last).into());
        }
    }

    if clear {
        t.clear()?;
    }
    if let Some(s) = snapshot {
        if !keep_after_snapshot {
            t.remove_from(0)?;
        }
        t.set_base(s.index, s.term)?;
        t.set_conf_state(&s.conf_state)?;
        let mut hs = t.state()?.hard_state;
        hs.commit = hs.commit.max(s.index);
        hs.term = hs.term.max(s.term);
        t.set_hard_state(hs)?;
        t.set_snapshot(&s)?;
    }
    if let Some(first) = entries.first() {
        t.remove_from(first.index)?;
    }
    let trim = TRIM_AT_LEAST + 2 * entries.len();
    for entry in entries {
        t.insert(entry)?;
    }
    if let Some(hs) = hard_state {
        t.set_hard_state(hs)?;
    }
    if let Some(cs) = conf_state {
        t.set_conf_state(&cs)?;
    }
    if let Some(applied) = applied {
        t.set_applied(applied)?;
    }
    if let Some(to) = compact_to {
        // to - 1 is past the base and at most the last index: an entry is stored there.
        let term = t.entry_term(to - 1)?.ok_or_else(|| unavailable(owner, to - 1, last))?;
        t.set_base(to - 1, term)?;
        base_index = to - 1;
    }
    t.trim_through(base_index, trim)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Store;

    fn entry(index: u64, term: u64) -> RaftEntry {
        RaftEntry { index, term, bytes: vec![index as u8; 10] }
    }

    fn append(s: &Store, owner: &str, entries: Vec<RaftEntry>) {
        s.commit_raft(owner, RaftWrite { entries, ..RaftWrite::default() }).expect("append");
    }

    fn indexes(entries: &[RaftEntry]) -> Vec<(u64, u64)> {
        entries.iter().map(|e| (e.index, e.term)).collect()
    }

    /// Runs `check` on the memory engine and on a disk engine in a fresh directory.
    fn on_both(check: impl Fn(&Store)) {
        check(&Store::memory());
        let dir = tempfile::tempdir().expect("temp dir");
        check(&Store::open_dir(dir.path()).expect("open"));
    }

    #[test]
    fn an_empty_log_starts_at_one_with_nothing_in_it() {
        on_both(|s| {
            assert_eq!(s.raft_state("g").expect("state"), RaftState::default());
            assert_eq!(s.raft_first_index("g").expect("first"), 1);
            assert_eq!(s.raft_last_index("g").expect("last"), 0);
            assert_eq!(s.raft_term("g", 0).expect("term"), 0);
            assert_eq!(s.raft_entries("g", 1, 1, u64::MAX).expect("entries"), vec![]);
            assert_eq!(s.raft_entries("g", 1, 0, u64::MAX).expect("entries"), vec![], "an empty range, not a panic");
            assert_eq!(s.raft_snapshot("g").expect("snapshot"), None);
            assert!(matches!(s.raft_entries("g", 1, 2, u64::MAX), Err(StorageError::RaftUnavailable { index: 1, last_index: 0, .. })));
            assert!(matches!(s.raft_term("g", 1), Err(StorageError::RaftUnavailable { .. })));
        });
    }

    #[test]
    fn appended_entries_read_back_within_a_byte_budget() {
        on_both(|s| {
            append(s, "g", (1..=5).map(|i| entry(i, 1)).collect());
            append(s, "other", vec![entry(1, 7)]);
            assert_eq!(s.raft_first_index("g").expect("first"), 1);
            assert_eq!(s.raft_last_index("g").expect("last"), 5);
            let all = s.raft_entries("g", 1, 6, u64::MAX).expect("entries");
            assert_eq!(all, (1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>(), "bytes and all");
            assert_eq!(indexes(&s.raft_entries("g", 2, 4, u64::MAX).expect("entries")), vec![(2, 1), (3, 1)]);
            // Ten bytes an entry: 25 bytes hold two, and one is given even past the budget.
            assert_eq!(s.raft_entries("g", 1, 6, 25).expect("entries").len(), 2);
            assert_eq!(s.raft_entries("g", 1, 6, 20).expect("entries").len(), 2);
            assert_eq!(s.raft_entries("g", 1, 6, 1).expect("entries").len(), 1);
            assert_eq!(s.raft_entries("g", 1, 6, 0).expect("entries").len(), 1);
            assert!(matches!(s.raft_entries("g", 1, 7, u64::MAX), Err(StorageError::RaftUnavailable { index: 6, last_index: 5, .. })));
            assert_eq!(s.raft_term("g", 3).expect("term"), 1);
            assert_eq!(indexes(&s.raft_entries("other", 1, 2, u64::MAX).expect("entries")), vec![(1, 7)], "groups stay apart");
        });
    }

    #[test]
    fn a_conflicting_append_drops_the_old_suffix() {
        on_both(|s| {
            append(s, "g", (1..=5).map(|i| entry(i, 1)).collect());
            append(s, "g", vec![entry(3, 2), entry(4, 2)]);
            assert_eq!(s.raft_last_index("g").expect("last"), 4, "entry 5 of the old term is gone");
            let got = s.raft_entries("g", 1, 5, u64::MAX).expect("entries");
            assert_eq!(indexes(&got), vec![(1, 1), (2, 1), (3, 2), (4, 2)]);
            assert!(matches!(
                s.commit_raft("g", RaftWrite { entries: vec![entry(6, 2)], ..RaftWrite::default() }),
                Err(StorageError::RaftUnavailable { index: 6, last_index: 4, .. })
            ), "no gap");
            assert!(s.commit_raft("g", RaftWrite { entries: vec![entry(5, 2), entry(7, 2)], ..RaftWrite::default() }).is_err(), "contiguous");
            assert_eq!(s.raft_last_index("g").expect("last"), 4, "a refused write changes nothing");
        });
    }

    #[test]
    fn compaction_keeps_the_term_at_its_boundary_and_refuses_what_it_dropped() {
        on_both(|s| {
            append(s, "g", (1..=6).map(|i| entry(i, i / 3 + 1)).collect());
            s.commit_raft("g", RaftWrite { compact_to: Some(4), applied: Some(4), ..RaftWrite::default() }).expect("compact");
            assert_eq!(s.raft_first_index("g").expect("first"), 4);
            assert_eq!(s.raft_last_index("g").expect("last"), 6);
            assert_eq!(s.raft_term("g", 3).expect("the last dropped entry's term"), 2);
            assert_eq!(s.raft_term("g", 4).expect("term"), 2);
            assert!(matches!(s.raft_term("g", 2), Err(StorageError::RaftCompacted { index: 2, first_index: 4, .. })));
            assert!(matches!(s.raft_entries("g", 3, 5, u64::MAX), Err(StorageError::RaftCompacted { index: 3, first_index: 4, .. })));
            assert_eq!(indexes(&s.raft_entries("g", 4, 7, u64::MAX).expect("entries")), vec![(4, 2), (5, 2), (6, 3)]);
            // Compacting less than is gone already changes nothing; past the end is refused.
            s.commit_raft("g", RaftWrite { compact_to: Some(2), ..RaftWrite::default() }).expect("compact");
            assert_eq!(s.raft_first_index("g").expect("first"), 4);
            assert!(matches!(
                s.commit_raft("g", RaftWrite { compact_to: Some(8), ..RaftWrite::default() }),
                Err(StorageError::RaftUnavailable { index: 8, last_index: 6, .. })
            ));
            assert!(matches!(
                s.commit_raft("g", RaftWrite { entries: vec![entry(3, 5)], ..RaftWrite::default() }),
                Err(StorageError::RaftCompacted { index: 3, .. })
            ), "no append over compacted entries");
            // Everything: the log is empty and starts after the last entry.
            s.commit_raft("g", RaftWrite { compact_to: Some(7), ..RaftWrite::default() }).expect("compact");
            assert_eq!((s.raft_first_index("g").expect("first"), s.raft_last_index("g").expect("last")), (7, 6));
            assert_eq!(s.raft_term("g", 6).expect("term"), 3);
            assert_eq!(s.raft_state("g").expect("state").applied, 4);
        });
    }

    #[test]
    fn a_snapshot_replaces_the_log_and_appends_follow_it() {
        on_both(|s| {
            append(s, "g", (1..=5).map(|i| entry(i, 1)).collect());
            s.commit_raft("g", RaftWrite { hard_state: Some(RaftHardState { term: 1, vote: 2, commit: 2 }), ..RaftWrite::default() })
                .expect("hard state");
            // Matching the entry at its index: the entries after it stay.
            let snap = RaftSnapshot { index: 3, term: 1, conf_state: b"cs3".to_vec(), data: b"state at 3".to_vec() };
            s.commit_raft("g", RaftWrite { snapshot: Some(snap.clone()), ..RaftWrite::default() }).expect("install");
            assert_eq!(s.raft_snapshot("g").expect("snapshot"), Some(snap.clone()));
            assert_eq!((s.raft_first_index("g").expect("first"), s.raft_last_index("g").expect("last")), (4, 5));
            let state = s.raft_state("g").expect("state");
            assert_eq!(state.hard_state, RaftHardState { term: 1, vote: 2, commit: 3 }, "commit moves up to the snapshot");
            assert_eq!(state.conf_state, b"cs3".to_vec());
            assert!(matches!(
                s.commit_raft("g", RaftWrite { snapshot: Some(snap), ..RaftWrite::default() }),
                Err(StorageError::RaftSnapshotOutOfDate { index: 3, base_index: 3, .. })
            ));
            // Not matching (another term at its index): the whole log goes.
            let newer = RaftSnapshot { index: 5, term: 3, conf_state: b"cs5".to_vec(), data: b"state at 5".to_vec() };
            s.commit_raft("g", RaftWrite { snapshot: Some(newer.clone()), ..RaftWrite::default() }).expect("install");
            assert_eq!((s.raft_first_index("g").expect("first"), s.raft_last_index("g").expect("last")), (6, 5));
            assert_eq!(s.raft_term("g", 5).expect("term"), 3);
            assert_eq!(s.raft_state("g").expect("state").hard_state.term, 3);
            // Appending after it, in the same write as the hard state.
            let write = RaftWrite {
                entries: vec![entry(6, 3), entry(7, 3)],
                hard_state: Some(RaftHardState { term: 3, vote: 1, commit: 6 }),
                ..RaftWrite::default()
            };
            s.commit_raft("g", write).expect("append");
            assert_eq!(indexes(&s.raft_entries("g", 6, 8, u64::MAX).expect("entries")), vec![(6, 3), (7, 3)]);
            assert!(matches!(s.raft_entries("g", 5, 8, u64::MAX), Err(StorageError::RaftCompacted { index: 5, first_index: 6, .. })));
            assert_eq!(s.raft_snapshot("g").expect("snapshot"), Some(newer));
            // Past the end of the log: installed, the log empty after it.
            let ahead = RaftSnapshot { index: 20, term: 4, ..RaftSnapshot::default() };
            s.commit_raft("g", RaftWrite { snapshot: Some(ahead), ..RaftWrite::default() }).expect("install");
            assert_eq!((s.raft_first_index("g").expect("first"), s.raft_last_index("g").expect("last")), (21, 20));
        });
    }

    #[test]
    fn entries_a_snapshot_compacted_stay_out_of_reads_while_they_are_trimmed() {
        on_both(|s| {
            append(s, "g", (1..=1000).map(|i| entry(i, 1)).collect());
            let snap = RaftSnapshot { index: 900, term: 1, conf_state: b"cs".to_vec(), data: b"d".to_vec() };
            s.commit_raft("g", RaftWrite { snapshot: Some(snap), ..RaftWrite::default() }).expect("install");
            // Far more compacted entries than one write trims: the reads must not see them.
            for round in 0..3 {
                assert_eq!((s.raft_first_index("g").expect("first"), s.raft_last_index("g").expect("last")), (901, 1000 + round));
                assert_eq!(s.raft_term("g", 900).expect("the snapshot's term"), 1);
                assert!(matches!(s.raft_term("g", 899), Err(StorageError::RaftCompacted { index: 899, first_index: 901, .. })));
                assert!(matches!(s.raft_entries("g", 500, 950, u64::MAX), Err(StorageError::RaftCompacted { .. })));
                assert_eq!(s.raft_entries("g", 901, 1001, u64::MAX).expect("entries").len(), 100);
                append(s, "g", vec![entry(1001 + round, 1)]);
            }
            // A conflicting suffix and a compaction of everything, with trimmed entries left over.
            append(s, "g", vec![entry(950, 2)]);
            assert_eq!(indexes(&s.raft_entries("g", 949, 951, u64::MAX).expect("entries")), vec![(949, 1), (950, 2)]);
            s.commit_raft("g", RaftWrite { compact_to: Some(951), ..RaftWrite::default() }).expect("compact");
            assert_eq!((s.raft_first_index("g").expect("first"), s.raft_last_index("g").expect("last")), (951, 950));
            assert_eq!(s.raft_term("g", 950).expect("term"), 2);
            append(s, "g", vec![entry(951, 2)]);
            assert_eq!(indexes(&s.raft_entries("g", 951, 952, u64::MAX).expect("entries")), vec![(951, 2)]);
        });
    }
    #[test]
    fn a_clearing_write_starts_the_group_over() {
        on_both(|s| {
            let snap = RaftSnapshot { index: 3, term: 2, conf_state: b"cs".to_vec(), data: b"d".to_vec() };
            s.commit_raft("g", RaftWrite { snapshot: Some(snap), entries: vec![entry(4, 2)], ..RaftWrite::default() }).expect("write");
            s.commit_raft("g", RaftWrite { hard_state: Some(RaftHardState { term: 2, vote: 1, commit: 4 }), ..RaftWrite::default() }).expect("write");
            s.commit_raft("g", RaftWrite { clear: true, entries: vec![entry(1, 1)], ..RaftWrite::default() }).expect("clear");
            assert_eq!(s.raft_state("g").expect("state"), RaftState::default(), "nothing of the earlier member is left");
            assert_eq!(s.raft_snapshot("g").expect("snapshot"), None);
            assert_eq!((s.raft_first_index("g").expect("first"), s.raft_last_index("g").expect("last")), (1, 1));
        });
    }

    #[test]
    fn the_state_survives_a_reopen_on_disk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let hs = RaftHardState { term: 4, vote: 3, commit: 9 };
        let snap = RaftSnapshot { index: 6, term: 3, conf_state: b"cs".to_vec(), data: b"data".to_vec() };
        {
            let s = Store::open_dir(dir.path()).expect("open");
            let write = RaftWrite {
                snapshot: Some(snap.clone()),
                entries: (7..=10).map(|i| entry(i, 4)).collect(),
                hard_state: Some(hs),
                conf_state: Some(b"cs2".to_vec()),
                applied: Some(8),
                compact_to: Some(8),
                clear: false,
            };
            s.commit_raft("g", write).expect("write");
            s.close();
        }
        assert!(dir.path().join(crate::storage::RAFT_DIR).join("g.redb").is_file(), "a file per group");
        let s = Store::open_dir(dir.path()).expect("reopen");
        assert_eq!(s.raft_state("g").expect("state"), RaftState { hard_state: hs, conf_state: b"cs2".to_vec(), applied: 8 });
        assert_eq!(s.raft_snapshot("g").expect("snapshot"), Some(snap));
        assert_eq!((s.raft_first_index("g").expect("first"), s.raft_last_index("g").expect("last")), (8, 10));
        assert_eq!(s.raft_term("g", 7).expect("term"), 4);
        assert_eq!(s.raft_entries("g", 8, 11, u64::MAX).expect("entries"), (8..=10).map(|i| entry(i, 4)).collect::<Vec<_>>());
    }
}
