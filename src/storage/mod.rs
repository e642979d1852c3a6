//! Durable state behind small traits, one per kind of state the domains keep: the byte log
//! replication writes ([`ByteLog`]), an owner's rows ([`RowImageStore`]), records and meta
//! counters ([`RecordStore`]), and Raft's log and state ([`RaftLogStore`]). Each is implemented
//! by the disk engine (redb files, and append-only segment files for the owners' logs; every
//! commit fsynced before it returns) and the memory engine
//! (`storage.engine = "memory"`, or an empty `data_dir`).
//!
//! Every call blocks (a commit waits for fsync): actors call it off the arbiter (`exec`), never
//! on an arbiter thread, except at startup before any actor runs.

mod byte_log;
mod disk;
mod error;
mod file;
mod image;
mod memory;
mod raft_log;
mod records;
mod row_images;
pub mod rows;
mod segment;
pub mod table;

use std::path::Path;

pub use byte_log::{ByteLog, LogCommit, StoredRecord};
pub use error::StorageError;
pub use raft_log::{RaftEntry, RaftHardState, RaftLogStore, RaftSnapshot, RaftState, RaftWrite};
pub use records::{RecordStore, RecordTable};
pub use row_images::{RowImageStore, RowImages, ShardImage, ShardRows, StoredRows};

/// The file inside `data_dir` that holds the record tables and the meta counters.
pub const DB_FILE: &str = "clusterd.redb";
/// The directory inside `data_dir` with one directory per log owner (the primary, each replica):
/// its write-ahead log and its positions, in segment files. Owners commit in parallel: a
/// replica's fsync does not queue behind the primary's.
pub const LOG_DIR: &str = "wal";
/// The directory inside `data_dir` with each log owner's rows, a redb file per owner named as
/// in [`LOG_DIR`] (with `.redb`). Apart from the log for the same reason: a checkpoint writes a
/// shard's rows whole (megabytes once a table is large), and the owner's WAL commits must not
/// wait for it.
pub const ROWS_DIR: &str = "rows";
/// The directory inside `data_dir` with each Raft group's log and state, a file per group named
/// as in [`LOG_DIR`].
pub const RAFT_DIR: &str = "raft";

/// Everything a store does: what [`Store`] dereferences to, so that callers call the traits'
/// methods on it directly.
pub trait Engine: ByteLog + RowImageStore + RecordStore + RaftLogStore + Send + Sync {
    /// Whether what is written survives a restart.
    fn is_durable(&self) -> bool;

    /// The database file of the records, on disk.
    fn location(&self) -> Option<&Path>;

    /// Releases the engine's files (and their locks) now, whoever still holds the store: a new
    /// store on the same directory can open as soon as this returns. Later operations fail with
    /// [`StorageError::Closed`].
    fn close(&self);
}

/// The process's durable store, one engine behind it.
pub struct Store {
    engine: Box<dyn Engine>,
}

impl Store {
    /// Opens the store in `dir` (its files, created if missing), or in memory (`None`).
    pub fn open(dir: Option<&Path>) -> Result<Store, StorageError> {
        match dir {
            None => Ok(Store::memory()),
            Some(dir) => Store::open_dir(dir),
        }
    }

    pub fn open_dir(dir: &Path) -> Result<Store, StorageError> {
        Ok(Store { engine: Box::new(disk::DiskEngine::open(dir)?) })
    }

    pub fn memory() -> Store {
        Store { engine: Box::new(memory::MemoryEngine::default()) }
    }
}

impl std::ops::Deref for Store {
    type Target = dyn Engine;

    fn deref(&self) -> &(dyn Engine + 'static) {
        &*self.engine
    }
}
