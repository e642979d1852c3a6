//! The disk engine's byte log: each owner's WAL in its [`crate::storage::LOG_DIR`] file, as
//! [`segment`]s of records.

use std::sync::Arc;

use redb::ReadableTable;

use super::{DiskEngine, Failure, META, WAL};
use crate::storage::{segment, ByteLog, LogCommit, StorageError, StoredRecord};

type WalTable<'tx> = redb::Table<'tx, u64, &'static [u8]>;

impl ByteLog for DiskEngine {
    fn commit_log(&self, owner: &str, commit: LogCommit) -> Result<(), StorageError> {
        self.with_owner(owner, |files| {
            files.log.write("append to the log", |tx| {
                let mut wal = tx.open_table(WAL)?;
                if let Some(from) = commit.truncate_from {
                    remove_log_from(&mut wal, from)?;
                }
                append_log(&mut wal, &commit.records)?;
                let mut meta = tx.open_table(META)?;
                for (k, v) in &commit.meta {
                    meta.insert(k.as_str(), *v)?;
                }
                if let Some(before) = commit.truncate_before {
                    remove_log_before(&mut wal, before)?;
                }
                Ok(())
            })
        })
    }

    fn read_log(&self, owner: &str, from: u64, max_bytes: usize) -> Result<Vec<StoredRecord>, StorageError> {
        self.with_owner(owner, |files| {
            files.log.read("read the log", |tx| {
                let wal = tx.open_table(WAL)?;
                let mut out = Vec::new();
                let mut size = 0usize;
                // From the segment holding `from`, if one starts before it.
                let start = match wal.range(..=from)?.next_back() {
                    Some(row) => row?.0.value(),
                    None => from,
                };
                'segments: for row in wal.range(start..)? {
                    let (k, v) = row?;
                    for record in segment::decode(k.value(), v.value()) {
                        let (lsn, bytes) = record?;
                        if lsn >= from {
                            size += bytes.len();
                            out.push((lsn, Arc::from(bytes)));
                            if size >= max_bytes {
                                break 'segments;
                            }
                        }
                    }
                }
                Ok(out)
            })
        })
    }

    fn log_bounds(&self, owner: &str) -> Result<Option<(u64, u64, usize)>, StorageError> {
        self.with_owner(owner, |files| {
            files.log.read("read the log's bounds", |tx| {
                let wal = tx.open_table(WAL)?;
                let mut range = wal.range(0..)?;
                let first = match range.next() {
                    Some(row) => row?.0.value(),
                    None => return Ok(None),
                };
                let (last_lsn, last_len) = match range.next_back() {
                    Some(row) => {
                        let (k, v) = row?;
                        last_record(k.value(), v.value())?
                    }
                    None => match wal.get(first)? {
                        Some(v) => last_record(first, v.value())?,
                        None => (first, 0),
                    },
                };
                Ok(Some((first, last_lsn, last_len)))
            })
        })
    }

    fn truncate_log(&self, owner: &str, lsn: u64) -> Result<usize, StorageError> {
        self.with_owner(owner, |files| files.log.write("truncate the log", |tx| remove_log_before(&mut tx.open_table(WAL)?, lsn)))
    }

    fn get_log_meta(&self, owner: &str, key: &str) -> Result<Option<u64>, StorageError> {
        self.with_owner(owner, |files| {
            files.log.read("read the log's positions", |tx| Ok(tx.open_table(META)?.get(key)?.map(|v| v.value())))
        })
    }
}

/// Removes the log records that start before `before`; returns how many went. A segment
/// holding records on both sides is written again with the later ones.
pub(super) fn remove_log_before(wal: &mut WalTable<'_>, before: u64) -> Result<usize, Failure> {
    let mut old = Vec::new();
    let mut removed = 0;
    let mut kept: Option<(u64, Vec<u8>)> = None;
    for row in wal.range(..before)? {
        let (k, v) = row?;
        old.push(k.value());
        let mut later = Vec::new();
        for record in segment::decode(k.value(), v.value()) {
            let (lsn, bytes) = record?;
            if lsn < before {
                removed += 1;
            } else {
                later.push((lsn, bytes));
            }
        }
        if let Some(&(first, _)) = later.first() {
            let mut seg = Vec::new();
            segment::encode(later.iter().map(|r| r.1), &mut seg)?;
            kept = Some((first, seg));
        }
    }
    for k in &old {
        wal.remove(*k)?;
    }
    if let Some((first, seg)) = kept {
        wal.insert(first, seg.as_slice())?;
    }
    Ok(removed)
}

/// Removes the log records that start at or after `from`; returns how many went. A segment
/// holding records on both sides is written again with the earlier ones.
fn remove_log_from(wal: &mut WalTable<'_>, from: u64) -> Result<usize, Failure> {
    let mut removed = 0;
    let mut kept: Option<(u64, Vec<u8>)> = None;
    let straddling = match wal.range(..from)?.next_back() {
        Some(row) => {
            let (k, v) = row?;
            Some((k.value(), v.value().to_vec()))
        }
        None => None,
    };
    if let Some((first, seg)) = straddling {
        let mut earlier = Vec::new();
        for record in segment::decode(first, &seg) {
            let (lsn, bytes) = record?;
            if lsn < from {
                earlier.push(bytes);
            } else {
                removed += 1;
            }
        }
        if removed > 0 {
            let mut out = Vec::new();
            segment::encode(earlier.iter().copied(), &mut out)?;
            kept = Some((first, out));
        }
    }
    let later: Vec<u64> = wal.range(from..)?.map(|row| row.map(|(k, _)| k.value())).collect::<Result<_, _>>()?;
    for k in later {
        if let Some(v) = wal.remove(k)? {
            removed += segment::decode(k, v.value()).count();
        }
    }
    if let Some((first, seg)) = kept {
        wal.insert(first, seg.as_slice())?;
    }
    Ok(removed)
}

/// (lsn, length) of the last record of the segment stored under `first`.
fn last_record(first: u64, seg: &[u8]) -> Result<(u64, usize), StorageError> {
    let mut last = (first, 0);
    for record in segment::decode(first, seg) {
        let (lsn, bytes) = record?;
        last = (lsn, bytes.len());
    }
    Ok(last)
}

/// Appends `records` (in lsn order) to `wal`: a segment per run of contiguous records (one, for
/// every commit the primary and replicas make).
fn append_log(wal: &mut WalTable<'_>, records: &[StoredRecord]) -> Result<(), Failure> {
    let mut seg = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let mut end = start + 1;
        while end < records.len() && records[end].0 == records[end - 1].0 + records[end - 1].1.len() as u64 {
            end += 1;
        }
        seg.clear();
        segment::encode(records[start..end].iter().map(|r| &r.1[..]), &mut seg)?;
        wal.insert(records[start].0, seg.as_slice())?;
        start = end;
    }
    Ok(())
}
