//! The disk engine, under `data_dir`: [`DB_FILE`] (redb) holds the records and meta counters;
//! each owner has its own write-ahead log, a directory of append-only segment files in
//! [`LOG_DIR`] ([`wal`]), and its own redb file per other kind of state ([`ROWS_DIR`],
//! [`RAFT_DIR`]), opened on first use, so that owners commit in parallel: redb takes one write
//! transaction at a time per file. Every commit is fsynced before it returns.

mod log;
mod migrate;
mod raft;
mod records;
mod rows;
mod wal;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::{MappedRwLockReadGuard, Mutex, RwLock, RwLockReadGuard};
use redb::{ReadableDatabase, TableDefinition};

use super::file;
use super::{Engine, StorageError, DB_FILE, LOG_DIR, RAFT_DIR, ROWS_DIR};

/// redb's page cache for one owner's file (a tenth of it buffers a transaction's writes). Its
/// default, 1 GiB per file, would let every owner's file grow a cache that size; an owner's file
/// is written far more than read, so a small cache costs little and keeps recycling its pages.
const OWNER_CACHE_BYTES: usize = 64 << 20;

/// The meta counters (a table in every file).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// An owner's rows (in its [`ROWS_DIR`] file), a shard at a time ([`super::image`]):
/// `shard << 32 | chunk` -> chunk. A shard's chunks are replaced together.
const ROW_IMAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("row_images");
/// The lsn each shard's stored rows reflect (a shard never written reflects lsn 0: nothing).
const ROW_IMAGE_LSNS: TableDefinition<u16, u64> = TableDefinition::new("row_image_lsns");
/// In the rows file, the prefix of the meta keys holding the positions the last reseed sets in
/// the log file's meta (what finishing it after a crash writes there, see [`migrate`]).
const RESEED_META: &str = "reseed:";
/// A Raft group's entries (in its [`RAFT_DIR`] file): index -> (term, encoded entry).
const RAFT_ENTRIES: TableDefinition<u64, (u64, &[u8])> = TableDefinition::new("raft_entries");
/// A Raft group's numbers: hard state, applied index, base and snapshot (index, term).
const RAFT_NUMBERS: TableDefinition<&str, u64> = TableDefinition::new("raft_numbers");
/// A Raft group's conf state and its snapshot's conf state and data.
const RAFT_BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_blobs");

/// What a step inside a transaction fails with: redb's error (reported with the file and what
/// was being done, [`DbFile::read`]) or one of the store's own (a corrupt segment).
enum Failure {
    Redb(redb::Error),
    Store(StorageError),
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        Failure::Store(e)
    }
}

macro_rules! redb_failure {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Self {
                Failure::Redb(e.into())
            }
        }
    )*};
}
redb_failure!(redb::Error, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// A redb database and where it is (for errors).
struct DbFile {
    db: redb::Database,
    path: PathBuf,
}

impl DbFile {
    fn open(path: PathBuf, builder: &redb::Builder) -> Result<DbFile, StorageError> {
        match file::open_database(&path, builder) {
            Ok(db) => Ok(DbFile { db, path }),
            Err(source) => Err(StorageError::Open { path, source }),
        }
    }

    fn error(&self, doing: &'static str, failure: Failure) -> StorageError {
        match failure {
            Failure::Redb(source) => StorageError::Database { path: self.path.clone(), doing, source: Box::new(source) },
            Failure::Store(e) => e,
        }
    }

    /// Runs `f` in a read transaction.
    fn read<T>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, Failure>,
    ) -> Result<T, StorageError> {
        let run = || f(&self.db.begin_read()?);
        run().map_err(|e| self.error(doing, e))
    }

    /// Runs `f` in a write transaction and commits it (durable when this returns); an error
    /// aborts it.
    fn write<T>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, Failure>,
    ) -> Result<T, StorageError> {
        let run = || {
            let tx = self.db.begin_write()?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        };
        run().map_err(|e| self.error(doing, e))
    }

    /// As [`DbFile::write`], except that `f` returning `None` aborts the transaction.
    fn write_if<T>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<Option<T>, Failure>,
    ) -> Result<Option<T>, StorageError> {
        let run = || {
            let tx = self.db.begin_write()?;
            match f(&tx)? {
                Some(out) => {
                    tx.commit()?;
                    Ok(Some(out))
                }
                None => {
                    tx.abort()?;
                    Ok(None)
                }
            }
        };
        run().map_err(|e| self.error(doing, e))
    }
}

/// An open database, `None` once closed. Operations hold the read lock only for their
/// synchronous duration; `close` takes the write lock, so it waits for them.
type Shared<T> = Arc<RwLock<Option<T>>>;

/// The open database, read-locked for the duration of one operation; `Closed` once closed.
fn open<T>(db: &RwLock<Option<T>>) -> Result<MappedRwLockReadGuard<'_, T>, StorageError> {
    RwLockReadGuard::try_map(db.read(), Option::as_ref).map_err(|_| StorageError::Closed)
}

/// A log owner's files.
struct OwnerFiles {
    /// Its write-ahead log and positions ([`LOG_DIR`]).
    log: wal::OwnerWal,
    /// Its rows by shard, their lsns and its reseed count ([`ROWS_DIR`]).
    rows: DbFile,
}

#[derive(Default)]
struct OpenFiles {
    owners: HashMap<String, Shared<OwnerFiles>>,
    raft: HashMap<String, Shared<DbFile>>,
    closed: bool,
}

pub struct DiskEngine {
    /// [`DB_FILE`].
    db: RwLock<Option<DbFile>>,
    data_dir: PathBuf,
    location: PathBuf,
    /// Each owner's files, opened on first use. Held only to look an owner up or add one, never
    /// across an operation.
    files: Mutex<OpenFiles>,
    /// The size of the owners' WAL segments ([`wal::SEGMENT_BYTES`]; smaller in tests).
    segment_bytes: u64,
}

impl DiskEngine {
    /// Opens the store in `dir`, creating it if missing; refuses an owner's file it cannot read.
    pub fn open(dir: &Path) -> Result<DiskEngine, StorageError> {
        DiskEngine::open_with_segments(dir, wal::SEGMENT_BYTES)
    }

    /// As [`DiskEngine::open`], with owners' WAL segments of `segment_bytes`.
    fn open_with_segments(dir: &Path, segment_bytes: u64) -> Result<DiskEngine, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir { path: dir.to_path_buf(), source })?;
        let location = dir.join(DB_FILE);
        let db = DbFile::open(location.clone(), &redb::Builder::new())?;
        // Record tables are created on first write; meta is read by name before any.
        db.write("create the meta table", |tx| {
            tx.open_table(META)?;
            Ok(())
        })?;
        // Owners' files are opened on first use; one of an older layout is refused now, at
        // start, not when its owner first loads (the primary would stay down).
        migrate::refuse_old_layouts(&dir.join(LOG_DIR))?;
        Ok(DiskEngine { db: RwLock::new(Some(db)), data_dir: dir.to_path_buf(), location, files: Mutex::default(), segment_bytes })
    }

    /// `owner`'s file in the directory `sub` of the data dir, created if missing.
    fn open_owner_file(&self, sub: &str, owner: &str) -> Result<DbFile, StorageError> {
        let dir = self.data_dir.join(sub);
        std::fs::create_dir_all(&dir).map_err(|source| StorageError::CreateDir { path: dir.clone(), source })?;
        DbFile::open(dir.join(owner_file_name(owner)), redb::Builder::new().set_cache_size(OWNER_CACHE_BYTES))
    }

    /// The files of `owner` in the map `pick` chooses, opened by `open` on first use.
    fn opened<T>(
        &self,
        owner: &str,
        pick: fn(&mut OpenFiles) -> &mut HashMap<String, Shared<T>>,
        open: impl FnOnce() -> Result<T, StorageError>,
    ) -> Result<Shared<T>, StorageError> {
        let mut files = self.files.lock();
        if files.closed {
            return Err(StorageError::Closed);
        }
        let map = pick(&mut files);
        if let Some(f) = map.get(owner) {
            return Ok(f.clone());
        }
        let opened = Arc::new(RwLock::new(Some(open()?)));
        map.insert(owner.to_string(), opened.clone());
        Ok(opened)
    }

    /// `owner`'s log and rows files, opened (and created, and brought up to this layout) on
    /// first use.
    fn owner_files(&self, owner: &str) -> Result<Shared<OwnerFiles>, StorageError> {
        self.opened(owner, |f| &mut f.owners, || {
            // Tables created once, so that reads never meet a missing one.
            let rows = self.open_owner_file(ROWS_DIR, owner)?;
            migrate::refuse_old_layout(&rows)?;
            rows.write("create the rows' tables", |tx| {
                tx.open_table(META)?;
                tx.open_table(ROW_IMAGES)?;
                tx.open_table(ROW_IMAGE_LSNS)?;
                Ok(())
            })?;
            let log = migrate::open_log(&self.data_dir.join(LOG_DIR), owner, &rows, self.segment_bytes)?;
            migrate::finish_reseed(&log, &rows)?;
            Ok(OwnerFiles { log, rows })
        })
    }

    /// Runs `f` on `owner`'s files, holding them open until it returns (so that `close` waits
    /// for it).
    fn with_owner<T>(&self, owner: &str, f: impl FnOnce(&OwnerFiles) -> Result<T, StorageError>) -> Result<T, StorageError> {
        let handle = self.owner_files(owner)?;
        let files = open(&handle)?;
        f(&files)
    }

    /// `owner`'s raft file, opened (and created) on first use.
    fn raft_file(&self, owner: &str) -> Result<Shared<DbFile>, StorageError> {
        self.opened(owner, |f| &mut f.raft, || {
            let raft = self.open_owner_file(RAFT_DIR, owner)?;
            raft.write("create the raft tables", |tx| {
                tx.open_table(RAFT_ENTRIES)?;
                tx.open_table(RAFT_NUMBERS)?;
                tx.open_table(RAFT_BLOBS)?;
                Ok(())
            })?;
            Ok(raft)
        })
    }
}

impl Engine for DiskEngine {
    fn is_durable(&self) -> bool {
        true
    }

    fn location(&self) -> Option<&Path> {
        Some(&self.location)
    }

    fn close(&self) {
        self.db.write().take();
        let (owners, raft) = {
            let mut files = self.files.lock();
            files.closed = true;
            (files.owners.drain().map(|(_, f)| f).collect::<Vec<_>>(), files.raft.drain().map(|(_, f)| f).collect::<Vec<_>>())
        };
        for f in owners {
            f.write().take();
        }
        for f in raft {
            f.write().take();
        }
    }
}

/// An owner's name in a directory: its id with anything but ASCII letters, digits, `-` and `_`
/// escaped as `%XX`, so no id can reach outside the directory (nor hold a `.`).
fn owner_name(owner: &str) -> String {
    let mut name = String::with_capacity(owner.len() + 5);
    for b in owner.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name
}

/// An owner's redb file name: [`owner_name`] and `.redb`.
fn owner_file_name(owner: &str) -> String {
    owner_name(owner) + ".redb"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_file_names_cannot_leave_the_log_directory() {
        assert_eq!(owner_file_name("replica_001-a"), "replica_001-a.redb");
        assert_eq!(owner_file_name("../x y"), "%2E%2E%2Fx%20y.redb");
        assert_eq!(owner_name("../x y"), "%2E%2E%2Fx%20y");
    }
}
