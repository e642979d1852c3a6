//! The disk engine's Raft storage: each group's log and state in its
//! [`crate::storage::RAFT_DIR`] file, under the rules of [`crate::storage::raft_log`].

use redb::ReadableTable;

use super::{open, DiskEngine, Failure, RAFT_BLOBS, RAFT_ENTRIES, RAFT_NUMBERS};
use crate::storage::raft_log::{self, RaftEdit, RaftView};
use crate::storage::{RaftEntry, RaftHardState, RaftLogStore, RaftSnapshot, RaftState, RaftWrite, StorageError};

// Keys of RAFT_NUMBERS.
const TERM: &str = "term";
const VOTE: &str = "vote";
const COMMIT: &str = "commit";
const APPLIED: &str = "applied";
const BASE_INDEX: &str = "base_index";
const BASE_TERM: &str = "base_term";
const SNAPSHOT_INDEX: &str = "snapshot_index";
const SNAPSHOT_TERM: &str = "snapshot_term";
// Keys of RAFT_BLOBS.
const CONF_STATE: &str = "conf_state";
const SNAPSHOT_CONF_STATE: &str = "snapshot_conf_state";
const SNAPSHOT_DATA: &str = "snapshot_data";

type Entries<'tx> = redb::Table<'tx, u64, (u64, &'static [u8])>;
type Numbers<'tx> = redb::Table<'tx, &'static str, u64>;
type Blobs<'tx> = redb::Table<'tx, &'static str, &'static [u8]>;
type ReadTables = RaftTables<
    redb::ReadOnlyTable<u64, (u64, &'static [u8])>,
    redb::ReadOnlyTable<&'static str, u64>,
    redb::ReadOnlyTable<&'static str, &'static [u8]>,
>;

/// A group's three tables, opened in one transaction.
struct RaftTables<E, N, B> {
    entries: E,
    numbers: N,
    blobs: B,
}

fn number(numbers: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<u64, Failure> {
    Ok(numbers.get(key)?.map_or(0, |v| v.value()))
}

fn blob(blobs: &impl ReadableTable<&'static str, &'static [u8]>, key: &str) -> Result<Vec<u8>, Failure> {
    Ok(blobs.get(key)?.map(|v| v.value().to_vec()).unwrap_or_default())
}

impl<E, N, B> RaftView for RaftTables<E, N, B>
where
    E: ReadableTable<u64, (u64, &'static [u8])>,
    N: ReadableTable<&'static str, u64>,
    B: ReadableTable<&'static str, &'static [u8]>,
{
    type Error = Failure;

    fn base(&self) -> Result<(u64, u64), Failure> {
        Ok((number(&self.numbers, BASE_INDEX)?, number(&self.numbers, BASE_TERM)?))
    }

    fn last_entry(&self) -> Result<Option<u64>, Failure> {
        Ok(self.entries.last()?.map(|(k, _)| k.value()))
    }

    fn entry_term(&self, index: u64) -> Result<Option<u64>, Failure> {
        Ok(self.entries.get(index)?.map(|v| v.value().0))
    }

    fn visit(&self, low: u64, high: u64, f: &mut dyn FnMut(u64, u64, &[u8]) -> bool) -> Result<(), Failure> {
        for row in self.entries.range(low..high)? {
            let (k, v) = row?;
            let (term, bytes) = v.value();
            if !f(k.value(), term, bytes) {
                break;
            }
        }
        Ok(())
    }

    fn state(&self) -> Result<RaftState, Failure> {
        let n = &self.numbers;
        Ok(RaftState {
            hard_state: RaftHardState { term: number(n, TERM)?, vote: number(n, VOTE)?, commit: number(n, COMMIT)? },
            conf_state: blob(&self.blobs, CONF_STATE)?,
            applied: number(n, APPLIED)?,
        })
    }

    fn snapshot(&self) -> Result<Option<RaftSnapshot>, Failure> {
        let Some(index) = self.numbers.get(SNAPSHOT_INDEX)?.map(|v| v.value()) else {
            return Ok(None);
        };
        Ok(Some(RaftSnapshot {
            index,
            term: number(&self.numbers, SNAPSHOT_TERM)?,
            conf_state: blob(&self.blobs, SNAPSHOT_CONF_STATE)?,
            data: blob(&self.blobs, SNAPSHOT_DATA)?,
        }))
    }
}

impl RaftEdit for RaftTables<Entries<'_>, Numbers<'_>, Blobs<'_>> {
    fn set_base(&mut self, index: u64, term: u64) -> Result<(), Failure> {
        self.numbers.insert(BASE_INDEX, index)?;
        self.numbers.insert(BASE_TERM, term)?;
        Ok(())
    }

    // One entry at a time from an end: redb's `retain_in` copies the tree's pages for every
    // entry it removes (it leaves the tree it iterates untouched), about 30 µs an entry;
    // removing in place is cheap.
    fn remove_from(&mut self, index: u64) -> Result<(), Failure> {
        while self.entries.last()?.is_some_and(|(k, _)| k.value() >= index) {
            self.entries.pop_last()?;
        }
        Ok(())
    }

    fn trim_through(&mut self, index: u64, at_most: usize) -> Result<(), Failure> {
        for _ in 0..at_most {
            if self.entries.first()?.is_none_or(|(k, _)| k.value() > index) {
                break;
            }
            self.entries.pop_first()?;
        }
        Ok(())
    }

    fn insert(&mut self, entry: RaftEntry) -> Result<(), Failure> {
        self.entries.insert(entry.index, (entry.term, entry.bytes.as_slice()))?;
        Ok(())
    }

    fn set_hard_state(&mut self, hs: RaftHardState) -> Result<(), Failure> {
        self.numbers.insert(TERM, hs.term)?;
        self.numbers.insert(VOTE, hs.vote)?;
        self.numbers.insert(COMMIT, hs.commit)?;
        Ok(())
    }

    fn set_conf_state(&mut self, conf_state: &[u8]) -> Result<(), Failure> {
        self.blobs.insert(CONF_STATE, conf_state)?;
        Ok(())
    }

    fn set_applied(&mut self, applied: u64) -> Result<(), Failure> {
        self.numbers.insert(APPLIED, applied)?;
        Ok(())
    }

    fn set_snapshot(&mut self, s: &RaftSnapshot) -> Result<(), Failure> {
        self.numbers.insert(SNAPSHOT_INDEX, s.index)?;
        self.numbers.insert(SNAPSHOT_TERM, s.term)?;
        self.blobs.insert(SNAPSHOT_CONF_STATE, s.conf_state.as_slice())?;
        self.blobs.insert(SNAPSHOT_DATA, s.data.as_slice())?;
        Ok(())
    }

    fn clear(&mut self) -> Result<(), Failure> {
        self.entries.retain(|_, _| false)?;
        self.numbers.retain(|_, _| false)?;
        self.blobs.retain(|_, _| false)?;
        Ok(())
    }
}

impl DiskEngine {
    /// Runs `f` on `owner`'s raft tables in a read transaction.
    fn read_raft<T>(&self, owner: &str, f: impl FnOnce(&ReadTables) -> Result<T, Failure>) -> Result<T, StorageError> {
        let handle = self.raft_file(owner)?;
        let file = open(&handle)?;
        file.read("read the raft log", |tx| {
            let tables = RaftTables { entries: tx.open_table(RAFT_ENTRIES)?, numbers: tx.open_table(RAFT_NUMBERS)?, blobs: tx.open_table(RAFT_BLOBS)? };
            f(&tables)
        })
    }
}

impl RaftLogStore for DiskEngine {
    fn raft_state(&self, owner: &str) -> Result<RaftState, StorageError> {
        self.read_raft(owner, |t| t.state())
    }

    fn raft_entries(&self, owner: &str, low: u64, high: u64, max_bytes: u64) -> Result<Vec<RaftEntry>, StorageError> {
        self.read_raft(owner, |t| raft_log::entries(t, owner, low, high, max_bytes))
    }

    fn raft_term(&self, owner: &str, index: u64) -> Result<u64, StorageError> {
        self.read_raft(owner, |t| raft_log::term(t, owner, index))
    }

    fn raft_first_index(&self, owner: &str) -> Result<u64, StorageError> {
        self.read_raft(owner, |t| Ok(raft_log::bounds(t)?.0 .0 + 1))
    }

    fn raft_last_index(&self, owner: &str) -> Result<u64, StorageError> {
        self.read_raft(owner, |t| Ok(raft_log::bounds(t)?.1))
    }

    fn raft_snapshot(&self, owner: &str) -> Result<Option<RaftSnapshot>, StorageError> {
        self.read_raft(owner, |t| t.snapshot())
    }

    fn commit_raft(&self, owner: &str, write: RaftWrite) -> Result<(), StorageError> {
        let handle = self.raft_file(owner)?;
        let file = open(&handle)?;
        file.write("write the raft log", |tx| {
            let mut tables = RaftTables { entries: tx.open_table(RAFT_ENTRIES)?, numbers: tx.open_table(RAFT_NUMBERS)?, blobs: tx.open_table(RAFT_BLOBS)? };
            raft_log::apply(&mut tables, owner, write)
        })
    }
}
