//! Bringing an owner's files written by an earlier layout up to this one, when they are
//! opened (at start for the refusal, at the owner's first use for the rest):
//!
//! - rows kept in the log's file (before [`crate::storage::ROWS_DIR`] existed) are moved to the
//!   rows file;
//! - a file with the per-row `rows` table (before rows were stored by shard) is refused;
//! - a reseed a crash cut between its two commits (the rows file's, then the log file's) is
//!   finished from what the rows file kept of it.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableHandle};

use super::rows::{meta_value, reseed_log};
use super::{DbFile, META, RESEED_META, ROW_IMAGES, ROW_IMAGE_LSNS};
use crate::storage::row_images::ROWS_EPOCH;
use crate::storage::StorageError;

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

/// Finishes a reseed a crash cut between its two commits: the rows file is ahead of the log's.
pub(super) fn finish_reseed(log: &DbFile, rows: &DbFile) -> Result<(), StorageError> {
    let log_epoch = log.read("read the log's reseed count", |tx| meta_value(&tx.open_table(META)?, ROWS_EPOCH))?;
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
mod tests {
    use super::*;
    use redb::{ReadableTable, TableDefinition};

    use super::super::owner_file_name;
    use crate::model::rows::SHARDS;
    use crate::storage::row_images::tests::row;
    use crate::storage::rows::RowMap;
    use crate::storage::{LogCommit, Store, LOG_DIR, ROWS_DIR};

    /// The owner's file in `sub` of `dir`, opened with redb directly (the store closed).
    fn owner_db(dir: &Path, sub: &str, owner: &str) -> redb::Database {
        redb::Database::open(dir.join(sub).join(owner_file_name(owner))).expect("open owner file")
    }

    #[test]
    fn a_reseed_cut_between_its_rows_and_its_log_is_finished_at_the_next_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let seeded = RowMap::from_rows(&[row("u", "x", "1")]);
        {
            let s = Store::open_dir(dir.path()).expect("open");
            assert_eq!(s.replace_rows("r", &seeded, 7, &[("r.flush".into(), 7)]).expect("reseed"), 1);
            s.commit_log("r", LogCommit { records: vec![(7, b"abc".to_vec().into())], meta: vec![("r.flush".into(), 10)], ..Default::default() })
                .expect("commit");
            s.close();
        }
        {
            // What a second reseed (to lsn 40) leaves when the process dies after its rows
            // commit: the rows file at count 2 with the positions to set; the log untouched.
            let rows = owner_db(dir.path(), ROWS_DIR, "r");
            let tx = rows.begin_write().expect("tx");
            {
                let mut m = tx.open_table(META).expect("meta");
                m.insert(ROWS_EPOCH, 2).expect("insert");
                m.retain(|k, _| !k.starts_with(RESEED_META)).expect("retain");
                m.insert(format!("{RESEED_META}r.flush").as_str(), 40).expect("insert");
            }
            tx.commit().expect("commit");
        }
        let s = Store::open_dir(dir.path()).expect("reopen");
        assert_eq!(s.log_bounds("r").expect("bounds"), None, "the log the reseed replaced is gone");
        assert_eq!(s.get_log_meta("r", "r.flush").expect("meta"), Some(40));
        assert_eq!(s.get_log_meta("r", ROWS_EPOCH).expect("meta"), Some(2));
        assert_eq!(s.load_rows("r").expect("rows").epoch, 2);
        // Finished once: a later commit's log stays across the next open.
        s.commit_log("r", LogCommit { records: vec![(40, b"d".to_vec().into())], ..Default::default() }).expect("commit");
        s.close();
        let s = Store::open_dir(dir.path()).expect("reopen");
        assert_eq!(s.log_bounds("r").expect("bounds"), Some((40, 40, 1)));
    }

    #[test]
    fn rows_kept_beside_the_log_by_an_older_clusterd_are_moved_to_the_rows_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let seeded = RowMap::from_rows(&[row("u", "x", "1"), row("u", "y", "2")]);
        {
            let s = Store::open_dir(dir.path()).expect("open");
            s.replace_rows("p", &seeded, 7, &[]).expect("reseed");
            s.commit_log("p", LogCommit { records: vec![(7, b"abc".to_vec().into())], ..Default::default() }).expect("commit");
            s.close();
        }
        {
            // The layout before: the rows tables (and count) in the log's file.
            let rows = owner_db(dir.path(), ROWS_DIR, "p");
            let log = owner_db(dir.path(), LOG_DIR, "p");
            let from = rows.begin_read().expect("read");
            let to = log.begin_write().expect("tx");
            {
                let mut lsns = to.open_table(ROW_IMAGE_LSNS).expect("table");
                for r in from.open_table(ROW_IMAGE_LSNS).expect("table").iter().expect("iter") {
                    let (k, v) = r.expect("row");
                    lsns.insert(k.value(), v.value()).expect("insert");
                }
                let mut images = to.open_table(ROW_IMAGES).expect("table");
                for r in from.open_table(ROW_IMAGES).expect("table").iter().expect("iter") {
                    let (k, v) = r.expect("row");
                    images.insert(k.value(), v.value()).expect("insert");
                }
            }
            to.commit().expect("commit");
            drop((from, rows));
            std::fs::remove_file(dir.path().join(ROWS_DIR).join(owner_file_name("p"))).expect("remove");
        }
        let s = Store::open_dir(dir.path()).expect("reopen");
        let got = s.load_rows("p").expect("rows");
        assert_eq!(got.rows.sorted_rows(), vec![row("u", "x", "1"), row("u", "y", "2")]);
        assert_eq!(got.shard_lsns, vec![7; SHARDS]);
        assert_eq!(got.epoch, 1);
        assert_eq!(s.log_bounds("p").expect("bounds"), Some((7, 7, 3)), "the log is kept");
        s.close();
        let log = owner_db(dir.path(), LOG_DIR, "p");
        let tx = log.begin_read().expect("read");
        assert!(!tx.list_tables().expect("tables").any(|t| t.name() == ROW_IMAGES.name()), "and the rows leave the log's file");
    }

    #[test]
    fn an_owner_file_with_the_old_row_table_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join(LOG_DIR)).expect("dir");
        {
            let db = redb::Database::create(dir.path().join(LOG_DIR).join("primary.redb")).expect("create");
            let tx = db.begin_write().expect("tx");
            tx.open_table(TableDefinition::<&[u8], &[u8]>::new(OLD_ROWS_TABLE)).expect("table");
            tx.commit().expect("commit");
        }
        let err = Store::open_dir(dir.path()).err().expect("refused at open");
        assert!(err.to_string().contains("older clusterd"), "{err}");
        assert!(err.to_string().contains("primary.redb"), "names the file: {err}");
    }

}
