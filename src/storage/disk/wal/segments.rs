//! The files of an owner's write-ahead log: segments named by their number, each filled with
//! written zeros and synced (file and directory) before its first frame, so that a commit's
//! `fdatasync` waits for its own bytes only, never for block allocation or the file's size
//! (docs/decisions.md); and the thread that prepares the next one while the current one fills.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crate::storage::StorageError;

/// A segment's size (tests choose smaller ones, to roll over often). A commit too large for one
/// gets a segment of its own, sized to fit.
pub const SEGMENT_BYTES: u64 = 8 << 20;
const SUFFIX: &str = ".wal";
/// A segment being prepared; renamed to its number once whole and synced.
const PREPARING_SUFFIX: &str = ".wal.tmp";
/// Zeros written per call while preparing.
const ZERO_CHUNK: usize = 1 << 20;

/// An open segment.
#[derive(Debug)]
pub struct SegmentFile {
    pub seq: u64,
    pub file: File,
    pub path: PathBuf,
}

fn io_error<'a>(path: &'a Path, doing: &'static str) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Wal { path: path.to_path_buf(), doing, source }
}

impl SegmentFile {
    pub fn open(dir: &Path, seq: u64) -> Result<SegmentFile, StorageError> {
        let path = segment_path(dir, seq);
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io_error(&path, "open the WAL segment"))?;
        Ok(SegmentFile { seq, file, path })
    }

    pub fn read_at(&self, buf: &mut [u8], at: u64) -> Result<(), StorageError> {
        self.file.read_exact_at(buf, at).map_err(io_error(&self.path, "read the WAL segment"))
    }

    pub fn write_at(&self, bytes: &[u8], at: u64) -> Result<(), StorageError> {
        self.file.write_all_at(bytes, at).map_err(io_error(&self.path, "write to the WAL segment"))
    }

    /// Writes `bytes` at `at` and waits until they are durable.
    pub fn write_durably(&self, bytes: &[u8], at: u64) -> Result<(), StorageError> {
        self.write_at(bytes, at)?;
        self.sync()
    }

    pub fn sync(&self) -> Result<(), StorageError> {
        self.file.sync_data().map_err(io_error(&self.path, "fsync the WAL segment"))
    }

    pub fn len(&self) -> Result<u64, StorageError> {
        Ok(self.file.metadata().map_err(io_error(&self.path, "read the size of the WAL segment"))?.len())
    }

    /// The whole file.
    pub fn read_all(&self) -> Result<Vec<u8>, StorageError> {
        // A segment is at most a commit's size (u32) plus a head: it fits in memory.
        let mut buf = vec![0; self.len()? as usize];
        self.read_at(&mut buf, 0)?;
        Ok(buf)
    }
}

pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{SUFFIX}"))
}

/// The numbers of the segments in `dir`, in order; removes what a preparation cut short left.
pub fn list(dir: &Path) -> Result<Vec<u64>, StorageError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir, "list the WAL directory"))? {
        let entry = entry.map_err(io_error(dir, "list the WAL directory"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(PREPARING_SUFFIX) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(io_error(&path, "remove the half-prepared WAL segment"))?;
        } else if let Some(seq) = name.strip_suffix(SUFFIX).and_then(|n| n.parse::<u64>().ok()) {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Makes segment `seq` of `size` bytes: written whole with zeros and synced under a temporary
/// name, renamed, and the directory synced.
///
/// The zeros are synced a chunk at a time: a commit's `fdatasync` flushes the device's cache, so
/// it waits for whatever was written before it, the zeros too. Synced whole, 8 MiB of them made
/// one commit in about twenty wait 5 ms (commits of 384 KB); a chunk at a time, a commit waits for
/// one chunk at most.
pub fn prepare(dir: &Path, seq: u64, size: u64) -> Result<SegmentFile, StorageError> {
    let path = segment_path(dir, seq);
    let tmp = dir.join(format!("{seq:020}{PREPARING_SUFFIX}"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_error(&tmp, "create the WAL segment"))?;
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut at = 0;
    while at < size {
        // Bounded by ZERO_CHUNK: the cast cannot truncate.
        let n = (size - at).min(ZERO_CHUNK as u64) as usize;
        file.write_all_at(&zeros[..n], at).map_err(io_error(&tmp, "fill the WAL segment"))?;
        file.sync_data().map_err(io_error(&tmp, "fsync the WAL segment"))?;
        at += n as u64;
    }
    // The size too, not only the data: sync_all.
    file.sync_all().map_err(io_error(&tmp, "fsync the WAL segment"))?;
    std::fs::rename(&tmp, &path).map_err(io_error(&tmp, "rename the prepared WAL segment"))?;
    sync_dir(dir)?;
    Ok(SegmentFile { seq, file, path })
}

/// Makes what was created, renamed or removed in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir, "fsync the directory"))
}

/// Removes segment files no longer needed. Nothing waits for it to be durable: one that comes
/// back after a crash is removed again when its log is next opened, or replayed (a truncation
/// of the log's start may be lost in a crash; the records kept are still a whole log).
pub fn remove(paths: Vec<PathBuf>) {
    for path in paths {
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove an old WAL segment; it is removed at the next start");
        }
    }
}

/// The next segment, being prepared on a thread of its own.
pub struct Preparing {
    pub seq: u64,
    size: u64,
    thread: Option<JoinHandle<Result<SegmentFile, StorageError>>>,
}

impl Preparing {
    pub fn start(dir: &Path, seq: u64, size: u64) -> Preparing {
        let dir = dir.to_path_buf();
        // A thread that cannot start leaves the segment to be prepared when it is needed.
        let thread = std::thread::Builder::new().name("wal-segment".into()).spawn(move || prepare(&dir, seq, size)).ok();
        Preparing { seq, size, thread }
    }

    /// The prepared segment, waiting for it if it is not done; prepared here if the thread
    /// failed.
    pub fn finish(mut self, dir: &Path) -> Result<SegmentFile, StorageError> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Ok(file))) => Ok(file),
            Some(Ok(Err(e))) => {
                tracing::warn!(error = %e, "preparing the next WAL segment failed; trying again");
                prepare(dir, self.seq, self.size)
            }
            _ => prepare(dir, self.seq, self.size),
        }
    }
}

impl Drop for Preparing {
    /// Waits for the thread: nothing may write in the log's directory once its log is gone (a
    /// store opened again on it right after would meet a file half made).
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
