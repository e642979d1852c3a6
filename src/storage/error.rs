//! What a storage call can fail with: each variant names the file, owner or position it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: redb::DatabaseError },
    /// An owner's file that keeps rows one entry per row (see `disk::migrate`).
    #[error(
        "cannot open {path}: written by an older clusterd, which stored rows one by one; this version stores them by shard and cannot read it (start on a fresh data_dir)"
    )]
    OldRowLayout { path: PathBuf },
    /// redb failed while `doing` something in the database at `path`. (Boxed: redb's error is
    /// large, and every storage call returns this type.)
    #[error("cannot {doing} in {path}: {source}")]
    Database { path: PathBuf, doing: &'static str, source: Box<redb::Error> },
    /// A stored WAL segment ends inside a record.
    #[error("the WAL segment holding lsn {lsn} is cut short")]
    SegmentCutShort { lsn: u64 },
    /// A WAL record longer than a segment's `u32` length header can say.
    #[error("a WAL record of {len} bytes is too large to store")]
    RecordTooLarge { len: usize },
    /// A row whose table, key or value is longer than a row image's `u32` length header can say.
    #[error("row {table}/{key} is too large to store")]
    RowTooLarge { table: String, key: String },
    /// A stored chunk of rows that cannot be decoded.
    #[error("a stored shard of rows is corrupt: {what}")]
    CorruptRows { what: &'static str },
    /// A stored row whose value is not JSON.
    #[error("stored row {table}/{key} of {owner} is unreadable: {source}")]
    UnreadableRow { owner: String, table: String, key: String, source: serde_json::Error },
    /// A WAL record that is not a `WalRecord`.
    #[error("{owner}'s WAL record at {lsn} is unreadable: {source}")]
    UnreadableRecord { owner: String, lsn: u64, source: serde_json::Error },
    /// Records from `from` to `until` are needed (for `purpose`) and the log lacks some.
    #[error("{owner}'s WAL from {from} to {until} is needed {purpose}, but {}", next_kept_text(*.next_kept))]
    LogGap { owner: String, from: u64, until: u64, purpose: &'static str, next_kept: Option<u64> },
    /// Raft entries asked for at `index`, which compaction or a snapshot dropped (raft-rs's
    /// `StorageError::Compacted`).
    #[error("{owner}'s raft log starts at index {first_index}; index {index} is compacted")]
    RaftCompacted { owner: String, index: u64, first_index: u64 },
    /// Raft entries asked for (or appended) past the end of the log (raft-rs's
    /// `StorageError::Unavailable`).
    #[error("{owner}'s raft log ends at index {last_index}; index {index} is not there")]
    RaftUnavailable { owner: String, index: u64, last_index: u64 },
    /// A raft snapshot no newer than what the log already starts after (raft-rs's
    /// `StorageError::SnapshotOutOfDate`).
    #[error("a raft snapshot at index {index} is out of date: {owner}'s log starts after index {base_index}")]
    RaftSnapshotOutOfDate { owner: String, index: u64, base_index: u64 },
    /// A file operation on an owner's write-ahead log failed: `doing` names it (a verb that takes
    /// the path as its object).
    #[error("cannot {doing} {path}: {source}")]
    Wal { path: PathBuf, doing: &'static str, source: std::io::Error },
    /// A WAL segment that cannot be read as written: a frame that does not validate while one after
    /// it does, a payload that does not decode, a segment without its head or ending before where
    /// the next one says it ended.
    #[error("the WAL segment {path} is corrupt at offset {offset}: {what}")]
    CorruptWal { path: PathBuf, offset: u64, what: &'static str },
    /// A write or fsync of an owner's WAL failed earlier: what the file holds past its last commit
    /// is unknown, so it takes no more until the process starts again (as redb does).
    #[error("an earlier write to the WAL in {path} failed; it takes no more commits until clusterd restarts")]
    WalFailed { path: PathBuf },
    /// A commit whose records do not follow the log's end (or each other) in lsn order.
    #[error("{owner}'s WAL ends at lsn {end}; a record at {lsn} cannot follow it")]
    LogOutOfOrder { owner: String, lsn: u64, end: u64 },
    /// A WAL commit longer than a frame's `u32` length header can say.
    #[error("a WAL commit of {len} bytes is too large to store")]
    CommitTooLarge { len: usize },
    /// A meta key longer than its `u16` length header can say.
    #[error("the WAL meta key {key:?} is too long to store")]
    MetaKeyTooLong { key: String },
    #[error("the store is closed (the runtime is shutting down)")]
    Closed,
    /// A record that could not be encoded to be stored.
    #[error("cannot encode {what} to store it: {source}")]
    Encode { what: &'static str, source: serde_json::Error },
    /// A checkpoint's rows were replaced (a reseed) while it was writing them: nothing written.
    #[error("{owner}'s rows were replaced while a checkpoint was writing them")]
    RowsReplaced { owner: String },
    /// An owner's stored rows are ahead of its durable log: the store was changed behind its back.
    #[error("{owner}'s stored rows reflect lsn {rows_lsn}, past its flushed position {flush_lsn}")]
    RowsAhead { owner: String, rows_lsn: u64, flush_lsn: u64 },
    #[error(transparent)]
    Task(#[from] crate::exec::TaskFailed),
}

fn next_kept_text(next_kept: Option<u64>) -> String {
    match next_kept {
        Some(lsn) => format!("the next record kept starts at {lsn}"),
        None => "nothing after it is kept".to_string(),
    }
}
