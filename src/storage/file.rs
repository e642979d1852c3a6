//! The file under every redb database of the disk engine: redb's own [`FileBackend`], except that
//! growing the file writes its new bytes (zeros) and syncs them, instead of extending it sparse.
//!
//! Why: a commit that writes into a hole makes the file system allocate the block, and its
//! `fdatasync` then waits for that allocation too; written once at growth, commits pay only for
//! their own pages. A growth writes at most [`FILL_LIMIT`] bytes (redb grows toward 4 GiB
//! regions, and zeroing all of that would stall one commit for seconds); beyond, the file grows
//! sparse. The cost: a file takes its full length on disk. (Figures in docs/decisions.md.)
//!
//! Shrinking is passed through (redb gives back a free tail); the file's length is always the
//! one redb set, as redb requires at open.
//!
//! A new file is created under a temporary name and renamed into place once redb has written and
//! synced its header ([`open_database`]): a crash between sizing a file and writing its header
//! would leave a file no later start could open.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use redb::backends::FileBackend;
use redb::StorageBackend;

/// Zeros written per call while growing.
const ZERO_CHUNK: usize = 1 << 20;
/// Most bytes of zeros one growth writes.
pub const FILL_LIMIT: u64 = 64 << 20;

/// Opens the redb database at `path` with `builder`'s settings, creating it if missing (under
/// `<path>.new`, renamed into place once complete; a leftover of a crash there is started over).
pub fn open_database(path: &Path, builder: &redb::Builder) -> Result<redb::Database, redb::DatabaseError> {
    if !path.exists() {
        let mut fresh = path.as_os_str().to_owned();
        fresh.push(".new");
        let fresh = std::path::PathBuf::from(fresh);
        match std::fs::remove_file(&fresh) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        // Creating syncs the header; dropping closes the file cleanly.
        drop(builder.create_with_backend(PreallocatedFile::open(&fresh)?)?);
        std::fs::rename(&fresh, path)?;
        if let Some(dir) = path.parent() {
            // The rename itself is durable only once the directory is.
            File::open(dir)?.sync_all()?;
        }
    }
    builder.create_with_backend(PreallocatedFile::open(path)?)
}

#[derive(Debug)]
pub struct PreallocatedFile {
    inner: FileBackend,
    fill_limit: u64,
}

impl PreallocatedFile {
    /// Opens (creating if missing) the file at `path` and takes redb's lock on it.
    pub fn open(path: &Path) -> Result<PreallocatedFile, redb::DatabaseError> {
        let file: File = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        Ok(PreallocatedFile { inner: FileBackend::new(file)?, fill_limit: FILL_LIMIT })
    }
}

impl StorageBackend for PreallocatedFile {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let current = self.inner.len()?;
        if len <= current {
            return self.inner.set_len(len);
        }
        // The length first, in one step (a hole), as redb's own backend does: a crash leaves the
        // old length or the new one, never one in between; then the hole's start is written.
        self.inner.set_len(len)?;
        let filled = len.min(current.saturating_add(self.fill_limit));
        let zeros = vec![0u8; ZERO_CHUNK];
        let mut at = current;
        while at < filled {
            // Bounded by ZERO_CHUNK, so the cast cannot truncate.
            let n = (filled - at).min(ZERO_CHUNK as u64) as usize;
            self.inner.write(at, &zeros[..n])?;
            at += n as u64;
        }
        // Past `filled` the file stays a hole, which reads as zeros too, as redb requires.
        self.inner.sync_data()
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Bytes the file system has allocated for the file.
    fn allocated(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().blocks() * 512
    }

    #[test]
    fn growing_writes_the_new_bytes_up_to_the_limit_and_reads_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = PreallocatedFile::open(&path).unwrap();
        file.fill_limit = 3 << 20;
        file.write(0, b"head").unwrap();
        file.set_len(2 << 20).unwrap();
        assert_eq!(file.len().unwrap(), 2 << 20);
        assert!(allocated(&path) >= 2 << 20, "the grown part is written, not a hole: {}", allocated(&path));
        // A growth past the limit: the limit's worth written, the rest a hole.
        file.set_len(16 << 20).unwrap();
        assert_eq!(file.len().unwrap(), 16 << 20);
        let held = allocated(&path);
        assert!(((5 << 20)..(8 << 20)).contains(&held), "2 MiB + the 3 MiB limit allocated: {held}");
        let mut out = vec![1u8; 4];
        file.read(0, &mut out).unwrap();
        assert_eq!(&out, b"head");
        for at in [4, (2 << 20) + 7, (15 << 20) + 9] {
            let mut out = vec![1u8; 64];
            file.read(at, &mut out).unwrap();
            assert!(out.iter().all(|&b| b == 0), "zeros at {at}");
        }
        file.set_len(1 << 20).unwrap();
        assert_eq!(file.len().unwrap(), 1 << 20, "shrinking passes through");
    }

    #[test]
    fn a_database_on_it_reopens_with_its_data() {
        const T: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let value = vec![7u8; 4096];
        {
            let db = redb::Builder::new().create_with_backend(PreallocatedFile::open(&path).unwrap()).unwrap();
            for i in 0..2000u64 {
                let tx = db.begin_write().unwrap();
                tx.open_table(T).unwrap().insert(i, value.as_slice()).unwrap();
                tx.commit().unwrap();
            }
        }
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len > 8 << 20, "the file grew: {len}");
        assert!(allocated(&path) >= len, "and every byte of it is allocated: {} of {len}", allocated(&path));
        // redb's own backend opens it: the file is an ordinary redb file.
        let db = redb::Database::create(&path).unwrap();
        let tx = redb::ReadableDatabase::begin_read(&db).unwrap();
        let t = tx.open_table(T).unwrap();
        assert_eq!(redb::ReadableTableMetadata::len(&t).unwrap(), 2000);
        assert_eq!(t.get(1999).unwrap().unwrap().value(), value.as_slice());
    }

    #[test]
    fn a_file_half_created_by_a_crash_is_started_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owner.redb");
        // What a crash while creating leaves: a sized file with no valid header, under the
        // temporary name; the real name does not exist yet.
        std::fs::write(dir.path().join("owner.redb.new"), vec![0u8; 1 << 20]).unwrap();
        let db = open_database(&path, &redb::Builder::new()).unwrap();
        drop(db);
        assert!(path.exists());
        assert!(!dir.path().join("owner.redb.new").exists());
        open_database(&path, &redb::Builder::new()).unwrap();
    }
}
