//! The disk engine's byte log: each owner's WAL in its [`crate::storage::LOG_DIR`] directory,
//! as append-only segment files ([`super::wal`]).

use super::DiskEngine;
use crate::storage::{ByteLog, LogCommit, StorageError, StoredRecord};

impl ByteLog for DiskEngine {
    fn commit_log(&self, owner: &str, commit: LogCommit) -> Result<(), StorageError> {
        self.with_owner(owner, |files| files.log.commit(&commit))
    }

    fn read_log(&self, owner: &str, from: u64, max_bytes: usize) -> Result<Vec<StoredRecord>, StorageError> {
        self.with_owner(owner, |files| files.log.read(from, max_bytes))
    }

    fn log_bounds(&self, owner: &str) -> Result<Option<(u64, u64, usize)>, StorageError> {
        self.with_owner(owner, |files| Ok(files.log.bounds()))
    }

    fn truncate_log(&self, owner: &str, lsn: u64) -> Result<usize, StorageError> {
        self.with_owner(owner, |files| Ok(files.log.truncate_before(lsn, |_| true)?.unwrap_or(0)))
    }

    fn get_log_meta(&self, owner: &str, key: &str) -> Result<Option<u64>, StorageError> {
        self.with_owner(owner, |files| Ok(files.log.meta(key)))
    }
}
