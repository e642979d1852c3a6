//! The byte-positioned write-ahead log replication keeps per owner (the primary, each replica):
//! records keyed by their start lsn (lsns count record bytes), and the owner's positions
//! committed with them.

use std::sync::Arc;

use super::StorageError;

/// A record as the log keeps it: (start lsn, bytes).
pub type StoredRecord = (u64, Arc<[u8]>);

/// A log commit: records appended to `owner`'s write-ahead log and positions, written in one
/// transaction (one fsync). Rows reach the store apart, in [`super::RowImages`].
#[derive(Debug, Clone, Default)]
pub struct LogCommit {
    /// (start lsn, record bytes), in lsn order, each starting at or after the end of the record
    /// before it and of the log (once `truncate_from` is applied): the disk engine refuses others.
    pub records: Vec<StoredRecord>,
    /// Meta keys to set in the same transaction (positions).
    pub meta: Vec<(String, u64)>,
    /// Drop the owner's records that start before this lsn, in the same transaction.
    pub truncate_before: Option<u64>,
    /// Drop the owner's records that start at or after this lsn first, in the same transaction
    /// (a replica dropping records its primary never made durable, see
    /// [`crate::messages::replication::Reconcile`]). A record boundary.
    pub truncate_from: Option<u64>,
}

/// Each owner's log, apart from every other owner's: owners commit in parallel.
pub trait ByteLog {
    /// Appends `commit.records` to `owner`'s log and sets `commit.meta`, in one transaction;
    /// returns once it is durable.
    fn commit_log(&self, owner: &str, commit: LogCommit) -> Result<(), StorageError>;

    /// Records of `owner`'s log with start lsn >= `from`, in order, until `max_bytes` of record
    /// bytes are gathered (at least one record if there is one).
    fn read_log(&self, owner: &str, from: u64, max_bytes: usize) -> Result<Vec<StoredRecord>, StorageError>;

    /// The first record's start lsn and the last record's (start lsn, length) of `owner`'s log.
    fn log_bounds(&self, owner: &str) -> Result<Option<(u64, u64, usize)>, StorageError>;

    /// Deletes `owner`'s log records that start before `lsn`; returns how many went.
    fn truncate_log(&self, owner: &str, lsn: u64) -> Result<usize, StorageError>;

    /// A position or other counter of `owner`'s log (kept with the log, so that it is
    /// committed in the same transaction as the records).
    fn get_log_meta(&self, owner: &str, key: &str) -> Result<Option<u64>, StorageError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Store, LOG_DIR, ROWS_DIR};

    fn check_logs(s: &Store) {
        let first = LogCommit {
            records: vec![(0, b"aaaa".to_vec().into()), (4, b"bb".to_vec().into())],
            meta: vec![("primary.flush_lsn".into(), 6)],
            truncate_before: None,
            truncate_from: None,
        };
        s.commit_log("primary", first).expect("commit");
        // Another owner's log stays apart.
        s.commit_log("replica-001", LogCommit { records: vec![(0, b"aaaa".to_vec().into())], ..Default::default() })
            .expect("commit");
        s.commit_log("primary", LogCommit { records: vec![(6, b"ccc".to_vec().into())], ..Default::default() }).expect("commit");
        assert_eq!(s.log_bounds("primary").expect("bounds"), Some((0, 6, 3)));
        assert_eq!(s.log_bounds("nobody").expect("bounds"), None);
        let from_4: Vec<u64> = s.read_log("primary", 4, usize::MAX).expect("read").into_iter().map(|r| r.0).collect();
        assert_eq!(from_4, vec![4, 6]);
        assert_eq!(s.read_log("primary", 0, 1).expect("read").len(), 1, "at least one record, then stop");
        assert_eq!(s.truncate_log("primary", 6).expect("truncate"), 2);
        assert_eq!(s.log_bounds("primary").expect("bounds"), Some((6, 6, 3)));
        assert_eq!(s.log_bounds("replica-001").expect("bounds"), Some((0, 0, 4)));
        assert_eq!(s.get_log_meta("primary", "primary.flush_lsn").expect("meta"), Some(6));
        // A commit can drop older records of its owner in the same transaction.
        s.commit_log("primary", LogCommit { records: vec![(9, b"dd".to_vec().into())], truncate_before: Some(9), ..Default::default() })
            .expect("commit");
        assert_eq!(s.log_bounds("primary").expect("bounds"), Some((9, 9, 2)));
        // A truncation inside one commit's records keeps the later ones.
        s.commit_log("primary", LogCommit { records: vec![(11, b"eee".to_vec().into()), (14, b"ff".to_vec().into())], ..Default::default() })
            .expect("commit");
        assert_eq!(s.log_bounds("primary").expect("bounds"), Some((9, 14, 2)));
        let from_12: Vec<u64> = s.read_log("primary", 12, usize::MAX).expect("read").into_iter().map(|r| r.0).collect();
        assert_eq!(from_12, vec![14], "only records starting at or after the position");
        assert_eq!(s.truncate_log("primary", 12).expect("truncate"), 2);
        let kept: Vec<(u64, Vec<u8>)> = s.read_log("primary", 0, usize::MAX).expect("read").into_iter().map(|r| (r.0, r.1.to_vec())).collect();
        assert_eq!(kept, vec![(14, b"ff".to_vec())]);
        assert_eq!(s.log_bounds("primary").expect("bounds"), Some((14, 14, 2)));
        s.commit_log("primary", LogCommit { records: vec![(16, b"g".to_vec().into())], ..Default::default() }).expect("commit");
        assert_eq!(s.log_bounds("primary").expect("bounds"), Some((14, 16, 1)));
        // Dropping a tail: inside a segment (its earlier record stays), then across segments.
        let all = |s: &Store| -> Vec<(u64, Vec<u8>)> {
            s.read_log("primary", 0, usize::MAX).expect("read").into_iter().map(|r| (r.0, r.1.to_vec())).collect()
        };
        s.commit_log("primary", LogCommit { records: vec![(17, b"hhh".to_vec().into()), (20, b"ii".to_vec().into())], ..Default::default() })
            .expect("commit");
        let replaced = LogCommit {
            records: vec![(20, b"JJ".to_vec().into())],
            meta: vec![("primary.flush_lsn".into(), 22)],
            truncate_from: Some(20),
            ..Default::default()
        };
        s.commit_log("primary", replaced).expect("commit");
        assert_eq!(all(s), vec![(14, b"ff".to_vec()), (16, b"g".to_vec()), (17, b"hhh".to_vec()), (20, b"JJ".to_vec())]);
        assert_eq!(s.get_log_meta("primary", "primary.flush_lsn").expect("meta"), Some(22));
        s.commit_log("primary", LogCommit { truncate_from: Some(16), ..Default::default() }).expect("commit");
        assert_eq!(all(s), vec![(14, b"ff".to_vec())]);
        s.commit_log("primary", LogCommit { truncate_from: Some(14), ..Default::default() }).expect("commit");
        assert_eq!(s.log_bounds("primary").expect("bounds"), None);
        assert_eq!(s.log_bounds("replica-001").expect("bounds"), Some((0, 0, 4)), "other owners keep theirs");
    }

    #[test]
    fn logs_and_rows_work_the_same_on_disk_and_in_memory() {
        check_logs(&Store::memory());
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = Store::open_dir(dir.path()).expect("open");
        check_logs(&disk);
        // Each owner has a log directory of its own, and they survive a reopen.
        assert!(dir.path().join(LOG_DIR).join("primary").is_dir());
        assert!(dir.path().join(LOG_DIR).join("replica-001").is_dir());
        assert!(dir.path().join(ROWS_DIR).join("primary.redb").is_file(), "and its rows another");
        disk.close();
        assert!(matches!(disk.log_bounds("primary"), Err(StorageError::Closed)));
        let reopened = Store::open_dir(dir.path()).expect("reopen");
        assert_eq!(reopened.log_bounds("primary").expect("bounds"), None);
        assert_eq!(reopened.log_bounds("replica-001").expect("bounds"), Some((0, 0, 4)));
        assert_eq!(reopened.get_log_meta("primary", "primary.flush_lsn").expect("meta"), Some(22));
    }
}
