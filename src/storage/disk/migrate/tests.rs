//! The migrations of `disk::migrate`, each from a data directory made by hand in the layout
//! before.

use super::*;
use redb::{ReadableTable, TableDefinition};

use super::super::owner_file_name;
use crate::model::rows::SHARDS;
use crate::storage::row_images::tests::row;
use crate::storage::rows::RowMap;
use crate::storage::{Store, LOG_DIR, ROWS_DIR};

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

/// A log as the layout before kept it, in a redb file (`wal/<owner>.redb`): `segments` (first
/// lsn, records) in its WAL table and `meta` in its meta table.
fn old_log(dir: &Path, owner: &str, segments: &[(u64, &[&[u8]])], meta: &[(&str, u64)]) -> redb::Database {
    std::fs::create_dir_all(dir.join(LOG_DIR)).expect("dir");
    let db = redb::Database::create(dir.join(LOG_DIR).join(owner_file_name(owner))).expect("create");
    let tx = db.begin_write().expect("tx");
    {
        let mut wal = tx.open_table(OLD_WAL).expect("table");
        for (first, records) in segments {
            let mut seg = Vec::new();
            segment::encode(records.iter().copied(), &mut seg).expect("encode");
            wal.insert(*first, seg.as_slice()).expect("insert");
        }
        let mut m = tx.open_table(META).expect("table");
        for (k, v) in meta {
            m.insert(*k, *v).expect("insert");
        }
    }
    tx.commit().expect("commit");
    db
}

fn all(s: &Store, owner: &str) -> Vec<(u64, Vec<u8>)> {
    s.read_log(owner, 0, usize::MAX).expect("read").into_iter().map(|r| (r.0, r.1.to_vec())).collect()
}

#[test]
fn rows_kept_beside_the_log_by_an_older_clusterd_are_moved_to_the_rows_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seeded = RowMap::from_rows(&[row("u", "x", "1"), row("u", "y", "2")]);
    {
        let s = Store::open_dir(dir.path()).expect("open");
        s.replace_rows("p", &seeded, 7, &[]).expect("reseed");
        s.close();
    }
    {
        // The layout before: the log, and the rows tables (and count) beside it in its file.
        std::fs::remove_dir_all(dir.path().join(LOG_DIR).join("p")).expect("remove");
        let log = old_log(dir.path(), "p", &[(7, &[b"abc"])], &[(ROWS_EPOCH, 1)]);
        let rows = owner_db(dir.path(), ROWS_DIR, "p");
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
    assert_eq!(s.get_log_meta("p", ROWS_EPOCH).expect("meta"), Some(1), "and its meta");
    assert!(!dir.path().join(LOG_DIR).join(owner_file_name("p")).exists(), "the log's redb file goes");
}

#[test]
fn a_log_in_a_redb_file_is_copied_into_segment_files_and_the_file_removed() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(old_log(dir.path(), "primary", &[(0, &[b"aaaa", b"bb"]), (6, &[b"ccc"])], &[("primary.flush_lsn", 9)]));
    // A copy a crash cut short, under its temporary name: started over.
    let copying = dir.path().join(LOG_DIR).join(format!("primary{COPYING_SUFFIX}"));
    std::fs::create_dir_all(&copying).expect("dir");
    std::fs::write(copying.join("00000000000000000001.wal"), b"half a segment").expect("write");
    let s = Store::open_dir(dir.path()).expect("open");
    assert_eq!(all(&s, "primary"), vec![(0, b"aaaa".to_vec()), (4, b"bb".to_vec()), (6, b"ccc".to_vec())]);
    assert_eq!(s.log_bounds("primary").expect("bounds"), Some((0, 6, 3)));
    assert_eq!(s.get_log_meta("primary", "primary.flush_lsn").expect("meta"), Some(9));
    assert!(dir.path().join(LOG_DIR).join("primary").is_dir());
    assert!(!copying.exists());
    assert!(!dir.path().join(LOG_DIR).join("primary.redb").exists());
    s.commit_log("primary", LogCommit { records: vec![(9, b"d".to_vec().into())], ..Default::default() }).expect("commit");
    s.close();
    // What a crash after the copy's rename and before the file's removal leaves: the copy is
    // the log, and the file is only removed.
    drop(old_log(dir.path(), "primary", &[(100, &[b"zz"])], &[("primary.flush_lsn", 102)]));
    let s = Store::open_dir(dir.path()).expect("reopen");
    assert_eq!(s.log_bounds("primary").expect("bounds"), Some((0, 9, 1)));
    assert_eq!(s.get_log_meta("primary", "primary.flush_lsn").expect("meta"), Some(9));
    assert!(!dir.path().join(LOG_DIR).join("primary.redb").exists());
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
