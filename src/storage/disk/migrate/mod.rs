//! Bringing an owner's files written by an earlier layout up to this one, when they are
//! opened (at start for the refusal, at the owner's first use for the rest):
//!
//! - a log kept in a redb file (`wal/<owner>.redb`, before [`super::wal`]) becomes a log
//!   directory: its records and meta copied into one built under a temporary name, synced and
//!   renamed into place, then the redb file removed;
//! - rows kept in the log's file (before [`crate::storage::ROWS_DIR`] existed) are moved to the
//!   rows file (before the log is copied);
//! - a file with the per-row `rows` table (before rows were stored by shard) is refused;
//! - a reseed a crash cut between its two commits (the rows file's, then the log file's) is
//!   finished from what the rows file kept of it.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};

use super::rows::{meta_value, reseed_log};
use super::wal::{sync_dir, OwnerWal};
use super::{owner_file_name, owner_name, DbFile, Failure, META, RESEED_META, ROW_IMAGES, ROW_IMAGE_LSNS};
use crate::storage::row_images::ROWS_EPOCH;
use crate::storage::{segment, LogCommit, StorageError};

/// A log in a redb file: first lsn -> a [`segment`] of records.
const OLD_WAL: TableDefinition<u64, &[u8]> = TableDefinition::new("wal_segments");
/// The suffix of the directory a log is copied into from its redb file, renamed once whole.
const COPYING_SUFFIX: &str = ".copying";

/// The table an older clusterd kept an owner's rows in, an entry per row. A file that has it is
/// refused rather than read without its rows.
const OLD_ROWS_TABLE: &str = "rows";

/// Moves the rows a log file holds (the layout before [`crate::storage::ROWS_DIR`], rows beside
/// the log) into the owner's rows file: copied in one transaction there, then dropped from the
/// log file. A crash in between leaves them in both, and the next open only drops them.
pub(super) fn move_rows_out_of_log(log: &DbFile, rows: &DbFile) -> Result<(), StorageError> {
    let lsns_name = ROW_IMAGE_LSNS.name();
    let has_rows = log.read("list the log file's tables", |tx| Ok(tx.list_tables()?.any(|t| t.name() == lsns_name)))?;
    if !has_rows {
        return Ok(());
    }
    let copied = rows.read("read the stored rows' lsns", |tx| Ok(tx.open_table(ROW_IMAGE_LSNS)?.len()? > 0))?;
    if !copied {
        let from = log.db.begin_read().map_err(|e| log.error("read the rows kept beside the log", e.into()))?;
        rows.write("copy the rows kept beside the log", |to| {
            let epoch = meta_value(&from.open_table(META)?, ROWS_EPOCH)?;
            let mut lsns = to.open_table(ROW_IMAGE_LSNS)?;
            for row in from.open_table(ROW_IMAGE_LSNS)?.iter()? {
                let (shard, lsn) = row?;
                lsns.insert(shard.value(), lsn.value())?;
            }
            let mut images = to.open_table(ROW_IMAGES)?;
            for chunk in from.open_table(ROW_IMAGES)?.iter()? {
                let (k, v) = chunk?;
                images.insert(k.value(), v.value())?;
            }
            to.open_table(META)?.insert(ROWS_EPOCH, epoch)?;
            Ok(())
        })?;
    }
    log.write("drop the rows kept beside the log", |tx| {
        tx.delete_table(ROW_IMAGES)?;
        tx.delete_table(ROW_IMAGE_LSNS)?;
        Ok(())
    })
}

/// Opens `owner`'s log in `wal_dir`, made first from its redb file if one is there (see the
/// module's comment). A crash at any point leaves what the next open finishes: the copy's
/// directory is started over until it is renamed into place, and once it is, the redb file is
/// only removed.
pub(super) fn open_log(wal_dir: &Path, owner: &str, rows: &DbFile, segment_bytes: u64) -> Result<OwnerWal, StorageError> {
    let dir = wal_dir.join(owner_name(owner));
    let old_path = wal_dir.join(owner_file_name(owner));
    if old_path.exists() {
        let old = DbFile::open(old_path.clone(), &redb::Builder::new())?;
        refuse_old_layout(&old)?;
        move_rows_out_of_log(&old, rows)?;
        if !dir.exists() {
            copy_log(&old, wal_dir, owner, segment_bytes)?;
        }
        drop(old);
        std::fs::remove_file(&old_path).map_err(|source| StorageError::Wal { path: old_path.clone(), doing: "remove the redb log already copied,", source })?;
        sync_dir(wal_dir)?;
    }
    OwnerWal::open(&dir, owner, segment_bytes)
}

/// Copies the records and meta of the redb log `old` into `owner`'s log directory in `wal_dir`,
/// built under a temporary name, synced, then renamed into place.
fn copy_log(old: &DbFile, wal_dir: &Path, owner: &str, segment_bytes: u64) -> Result<(), StorageError> {
    let copying = wal_dir.join(owner_name(owner) + COPYING_SUFFIX);
    if copying.exists() {
        std::fs::remove_dir_all(&copying)
            .map_err(|source| StorageError::Wal { path: copying.clone(), doing: "remove the unfinished copy", source })?;
    }
    {
        let new = OwnerWal::open(&copying, owner, segment_bytes)?;
        old.read("copy the log into segment files", |tx| {
            let names: Vec<String> = tx.list_tables()?.map(|t| t.name().to_string()).collect();
            let has = |name: &str| names.iter().any(|n| n == name);
            let mut meta = Vec::new();
            if has(META.name()) {
                for row in tx.open_table(META)?.iter()? {
                    let (k, v) = row?;
                    meta.push((k.value().to_string(), v.value()));
                }
            }
            new.import([LogCommit { meta, ..Default::default() }])?;
            if has(OLD_WAL.name()) {
                for row in tx.open_table(OLD_WAL)?.iter()? {
                    let (k, v) = row?;
                    let records = segment::decode(k.value(), v.value())
                        .map(|r| r.map(|(lsn, bytes)| (lsn, bytes.into())))
                        .collect::<Result<Vec<_>, _>>()?;
                    new.import([LogCommit { records, ..Default::default() }])?;
                }
            }
            Ok::<(), Failure>(())
        })?;
        new.sync()?;
    }
    let dir = wal_dir.join(owner_name(owner));
    std::fs::rename(&copying, &dir).map_err(|source| StorageError::Wal { path: copying.clone(), doing: "rename into place the copied log", source })?;
    sync_dir(wal_dir)
}

/// Finishes a reseed a crash cut between its two commits: the rows file is ahead of the log's.
pub(super) fn finish_reseed(log: &OwnerWal, rows: &DbFile) -> Result<(), StorageError> {
    let log_epoch = log.meta(ROWS_EPOCH).unwrap_or(0);
    let unfinished = rows.read("read the last reseed", |tx| {
        let meta = tx.open_table(META)?;
        let epoch = meta_value(&meta, ROWS_EPOCH)?;
        if epoch <= log_epoch {
            return Ok(None);
        }
        let mut positions = Vec::new();
        for row in meta.range(RESEED_META..)? {
            let (k, v) = row?;
            match k.value().strip_prefix(RESEED_META) {
                Some(key) => positions.push((key.to_string(), v.value())),
                None => break,
            }
        }
        Ok(Some((epoch, positions)))
    })?;
    match unfinished {
        Some((epoch, positions)) => reseed_log(log, epoch, &positions),
        None => Ok(()),
    }
}

/// Refuses an owner's file that keeps rows in [`OLD_ROWS_TABLE`].
pub(super) fn refuse_old_layout(file: &DbFile) -> Result<(), StorageError> {
    let old = file.read("list the file's tables", |tx| Ok(tx.list_tables()?.any(|t| t.name() == OLD_ROWS_TABLE)))?;
    if old {
        return Err(StorageError::OldRowLayout { path: file.path.clone() });
    }
    Ok(())
}

/// Refuses, at start, any owner's file in `log_dir` of the layout [`refuse_old_layout`] refuses.
pub(super) fn refuse_old_layouts(log_dir: &Path) -> Result<(), StorageError> {
    let Ok(entries) = std::fs::read_dir(log_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "redb") {
            let db = redb::Database::open(&path).map_err(|source| StorageError::Open { path: path.clone(), source })?;
            refuse_old_layout(&DbFile { db, path })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
