//! An owner's write-ahead log as append-only segment files in a directory of its own
//! (`wal/<owner>/`), instead of a redb database: a commit is one frame ([`frame`]) written with
//! one `pwrite` and one `fdatasync` into a segment filled with zeros beforehand ([`segments`]),
//! where redb wrote several scattered pages and a header per commit (docs/decisions.md).
//!
//! What the log holds is kept in memory ([`index`]: where each commit's records are, which are
//! kept, the meta), rebuilt at open by replaying every frame of every segment ([`recover`]).
//! Reads take that state behind a short lock and read the segments with `pread`: they never wait
//! for a commit's fsync, which changes the state only once durable. One commit (or truncation,
//! or reset) runs at a time per owner; owners commit in parallel.
//!
//! Truncations move the log's start in memory and remove the segments wholly before it, without
//! an fsync of their own: the truncation is written in the next frame (or when the log is
//! closed). A crash before loses it, and leaves a longer log, which is still a whole one.

mod frame;
mod index;
mod recover;
mod segments;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use self::frame::{CommitFrame, HEADER};
use self::index::{Entry, Index, Span};
use self::segments::{Preparing, SegmentFile};
use crate::storage::{LogCommit, StorageError, StoredRecord};

pub use self::segments::{sync_dir, SEGMENT_BYTES};

/// Most bytes one `pread` of [`OwnerWal::read`] covers (several commits of one segment at once).
const READ_SPAN: u64 = 1 << 20;

/// One owner's log.
pub struct OwnerWal {
    dir: PathBuf,
    owner: String,
    /// What reads see. Held briefly, never across a write or an fsync (only across the `pread`
    /// of one commit's records when a truncation cuts inside it).
    shared: Mutex<Shared>,
    /// Held for a whole commit, truncation or reset: one at a time.
    writer: Mutex<Writer>,
}

pub type Meta = BTreeMap<String, u64>;

struct Shared {
    dir: PathBuf,
    index: Index,
    meta: Meta,
    /// Every segment file still there, by number.
    segments: BTreeMap<u64, Arc<SegmentFile>>,
}

struct Writer {
    current: Arc<SegmentFile>,
    /// The size of the segments prepared ahead, and of `current`.
    segment_bytes: u64,
    size: u64,
    /// Where the next frame goes, and the crc it is chained to.
    pos: u64,
    crc: u32,
    /// The segment after `current`, once it is half full.
    next: Option<Preparing>,
    /// A truncation of the log's start made since the last frame, written with the next one.
    trim: Option<u64>,
    /// The frame being written (kept: a commit allocates none).
    buf: Vec<u8>,
    /// A write or fsync failed: nothing more is written (see [`StorageError::WalFailed`]).
    failed: bool,
}

/// What a commit frame does to the log, in this order.
struct Change<M> {
    trim: Option<u64>,
    truncate_from: Option<u64>,
    entry: Option<Entry>,
    meta: M,
    truncate_before: Option<u64>,
}

impl Shared {
    fn segment(&self, seq: u64) -> Result<&Arc<SegmentFile>, StorageError> {
        self.segments.get(&seq).ok_or_else(|| StorageError::CorruptWal {
            path: segments::segment_path(&self.dir, seq),
            offset: 0,
            what: "a record kept is in a segment that is gone",
        })
    }

    /// The span of `e`'s records from `lo` to `hi` (start lsns), read from its segment.
    fn span_within(&self, e: &Entry, lo: u64, hi: u64) -> Result<Option<Span>, StorageError> {
        let mut section = vec![0; e.len as usize];
        self.segment(e.seg)?.read_at(&mut section, e.at)?;
        let mut kept = Vec::new();
        for r in frame::records(&section) {
            let (lsn, bytes) = r?;
            if (lo..=hi).contains(&lsn) {
                kept.push((lsn, bytes.len()));
            }
        }
        Ok(Span::of(kept))
    }

    fn cut_from(&self, x: u64) -> Result<Option<Span>, StorageError> {
        match self.index.cut_from(x) {
            // cut_from's commit starts before x: x > 0.
            Some(e) => self.span_within(&e, e.span.first, x - 1),
            None => Ok(None),
        }
    }

    fn truncate_from(&mut self, x: u64) -> Result<usize, StorageError> {
        let cut = self.cut_from(x)?;
        Ok(self.index.truncate_from(x, cut))
    }

    fn truncate_before(&mut self, x: u64) -> Result<usize, StorageError> {
        let cut = match self.index.cut_before(x) {
            Some(e) => self.span_within(&e, x, e.span.last)?,
            None => None,
        };
        Ok(self.index.truncate_before(x, cut))
    }

    fn apply<'a>(&mut self, change: Change<impl Iterator<Item = (&'a str, u64)>>) -> Result<(), StorageError> {
        if let Some(t) = change.trim {
            self.truncate_before(t)?;
        }
        if let Some(x) = change.truncate_from {
            self.truncate_from(x)?;
        }
        if let Some(e) = change.entry {
            self.index.push(e);
        }
        for (k, v) in change.meta {
            match self.meta.get_mut(k) {
                Some(old) => *old = v,
                None => drop(self.meta.insert(k.to_string(), v)),
            }
        }
        if let Some(b) = change.truncate_before {
            self.truncate_before(b)?;
        }
        Ok(())
    }

    /// Takes out the segments before the one holding the oldest record kept (never `current`);
    /// returns their paths, to remove.
    fn dead_segments(&mut self, current: u64) -> Vec<PathBuf> {
        let keep_from = self.index.first_segment().unwrap_or(current).min(current);
        let kept = self.segments.split_off(&keep_from);
        std::mem::replace(&mut self.segments, kept).into_values().map(|f| f.path.clone()).collect()
    }
}

impl Writer {
    fn usable(&self, dir: &Path) -> Result<(), StorageError> {
        if self.failed {
            return Err(StorageError::WalFailed { path: dir.to_path_buf() });
        }
        Ok(())
    }

    fn write(&mut self, file: &SegmentFile, bytes: &[u8], at: u64, durable: bool) -> Result<(), StorageError> {
        let done = if durable { file.write_durably(bytes, at) } else { file.write_at(bytes, at) };
        self.failed |= done.is_err();
        done
    }

    /// Writes the frame in `buf` (begun by [`frame::begin`] at 0), in a new segment if it does
    /// not fit in this one; returns the segment and where the frame's payload is in it.
    fn append(&mut self, dir: &Path, shared: &Mutex<Shared>, durable: bool) -> Result<(u64, u64), StorageError> {
        let len = self.buf.len() as u64;
        if self.pos + len <= self.size {
            let crc = frame::seal(&mut self.buf, 0, self.crc)?;
            let (current, buf) = (self.current.clone(), std::mem::take(&mut self.buf));
            let written = self.write(&current, &buf, self.pos, durable);
            self.buf = buf;
            written?;
            let at = self.pos + HEADER as u64;
            self.pos += len;
            self.crc = crc;
            return Ok((current.seq, at));
        }
        let seq = self.current.seq + 1;
        let mut head = Vec::with_capacity(self.buf.len() + 256);
        let start = frame::begin(&mut head);
        {
            let s = shared.lock();
            frame::encode_head(false, self.pos, self.crc, s.meta.iter().map(|(k, v)| (k.as_str(), *v)), &mut head)?;
        }
        let head_crc = frame::seal(&mut head, start, frame::seed(seq))?;
        let crc = frame::seal(&mut self.buf, 0, head_crc)?;
        let at = (head.len() + HEADER) as u64;
        head.extend_from_slice(&self.buf);
        let file = self.take_segment(dir, seq, head.len() as u64)?;
        self.write(&file, &head, 0, durable)?;
        self.start_segment(file, shared, head.len() as u64, crc)?;
        Ok((seq, at))
    }

    /// Segment `seq`, empty, for `need` bytes: the one prepared if it fits them, else one made
    /// now (a commit larger than a segment gets one of its own, sized to fit).
    fn take_segment(&mut self, dir: &Path, seq: u64, need: u64) -> Result<Arc<SegmentFile>, StorageError> {
        let prepared = self.next.take().filter(|p| p.seq == seq);
        let file = match prepared {
            Some(p) if need <= self.segment_bytes => p.finish(dir)?,
            // A prepared one is renamed over (after its thread is done).
            other => {
                drop(other);
                segments::prepare(dir, seq, need.max(self.segment_bytes).next_multiple_of(4096))?
            }
        };
        Ok(Arc::new(file))
    }

    /// Makes `file`, whose frames end at `pos` with `crc`, the segment frames go to.
    fn start_segment(&mut self, file: Arc<SegmentFile>, shared: &Mutex<Shared>, pos: u64, crc: u32) -> Result<(), StorageError> {
        self.size = file.len()?;
        shared.lock().segments.insert(file.seq, file.clone());
        self.current = file;
        self.pos = pos;
        self.crc = crc;
        Ok(())
    }

    /// Starts preparing the next segment once this one is half full.
    fn prepare_next(&mut self, dir: &Path) {
        if self.next.is_none() && self.pos > self.size / 2 {
            self.next = Some(Preparing::start(dir, self.current.seq + 1, self.segment_bytes));
        }
    }
}

impl OwnerWal {
    /// Opens the log in `dir` (created if missing), replaying its segments; new segments are
    /// `segment_bytes` long.
    pub fn open(dir: &Path, owner: &str, segment_bytes: u64) -> Result<OwnerWal, StorageError> {
        recover::open(dir, owner, segment_bytes)
    }

    /// Appends `commit` in one frame; returns once it is durable.
    pub fn commit(&self, commit: &LogCommit) -> Result<(), StorageError> {
        self.commit_frame(commit, true)
    }

    fn commit_frame(&self, commit: &LogCommit, durable: bool) -> Result<(), StorageError> {
        let mut w = self.writer.lock();
        w.usable(&self.dir)?;
        self.check_order(commit)?;
        let trim = w.trim;
        w.buf.clear();
        frame::begin(&mut w.buf);
        let frame = CommitFrame {
            trim,
            truncate_from: commit.truncate_from,
            records: &commit.records,
            meta: &commit.meta,
            truncate_before: commit.truncate_before,
        };
        let section = frame::encode_commit(&frame, &mut w.buf)?;
        let (seg, payload_at) = w.append(&self.dir, &self.shared, durable)?;
        w.trim = None;
        let span = Span::of(commit.records.iter().map(|r| (r.0, r.1.len())));
        // The section's length is within the frame's, which `seal` checked fits a u32.
        let entry = span.map(|span| Entry { seg, at: payload_at + section.start as u64, len: section.len() as u32, span });
        let change = Change {
            trim: None,
            truncate_from: commit.truncate_from,
            entry,
            meta: commit.meta.iter().map(|(k, v)| (k.as_str(), *v)),
            truncate_before: commit.truncate_before,
        };
        let dead = {
            let mut s = self.shared.lock();
            if let Err(e) = s.apply(change) {
                // Durable on disk and not in memory: nothing more may be written after it.
                w.failed = true;
                return Err(e);
            }
            if commit.truncate_before.is_some() {
                s.dead_segments(w.current.seq)
            } else {
                Vec::new()
            }
        };
        w.prepare_next(&self.dir);
        drop(w);
        segments::remove(dead);
        Ok(())
    }

    /// Refuses records that do not start at or after the log's end (once `truncate_from` is
    /// applied), or each other's: the index keeps commits in lsn order.
    fn check_order(&self, commit: &LogCommit) -> Result<(), StorageError> {
        if commit.records.is_empty() {
            return Ok(());
        }
        let mut end = {
            let s = self.shared.lock();
            match commit.truncate_from {
                Some(x) => {
                    let cut = s.cut_from(x)?;
                    s.index.end_after_from(x, cut)
                }
                None => s.index.end(),
            }
        };
        let mut prev = None;
        for (lsn, bytes) in &commit.records {
            if end.is_some_and(|e| *lsn < e) || prev.is_some_and(|p| *lsn <= p) {
                return Err(StorageError::LogOutOfOrder { owner: self.owner.clone(), lsn: *lsn, end: end.unwrap_or(0) });
            }
            end = Some(lsn + bytes.len() as u64);
            prev = Some(*lsn);
        }
        Ok(())
    }

    /// Drops the records that start before `lsn`, if `only_if` says so of the meta (checked in
    /// the same step); returns how many went, or `None` if it said not to.
    pub fn truncate_before(&self, lsn: u64, only_if: impl FnOnce(&Meta) -> bool) -> Result<Option<usize>, StorageError> {
        let mut w = self.writer.lock();
        w.usable(&self.dir)?;
        let (removed, dead) = {
            let mut s = self.shared.lock();
            if !only_if(&s.meta) {
                return Ok(None);
            }
            let removed = s.truncate_before(lsn)?;
            (removed, s.dead_segments(w.current.seq))
        };
        if removed > 0 {
            w.trim = Some(w.trim.map_or(lsn, |t| t.max(lsn)));
        }
        drop(w);
        segments::remove(dead);
        Ok(Some(removed))
    }

    /// Replaces the log with an empty one and sets `meta`, at once: a new segment whose head
    /// says so, durable, then the older segments removed.
    pub fn reset(&self, meta: &[(String, u64)]) -> Result<(), StorageError> {
        let mut w = self.writer.lock();
        w.usable(&self.dir)?;
        let mut new_meta = self.shared.lock().meta.clone();
        for (k, v) in meta {
            new_meta.insert(k.clone(), *v);
        }
        let seq = w.current.seq + 1;
        let mut head = Vec::new();
        let start = frame::begin(&mut head);
        frame::encode_head(true, w.pos, w.crc, new_meta.iter().map(|(k, v)| (k.as_str(), *v)), &mut head)?;
        let crc = frame::seal(&mut head, start, frame::seed(seq))?;
        let file = w.take_segment(&self.dir, seq, head.len() as u64)?;
        w.write(&file, &head, 0, true)?;
        w.start_segment(file, &self.shared, head.len() as u64, crc)?;
        w.trim = None;
        let dead = {
            let mut s = self.shared.lock();
            s.index.clear();
            s.meta = new_meta;
            s.dead_segments(seq)
        };
        drop(w);
        segments::remove(dead);
        Ok(())
    }

    /// Records with start lsn >= `from`, in order, until `max_bytes` of record bytes are
    /// gathered (at least one record if there is one).
    pub fn read(&self, from: u64, max_bytes: usize) -> Result<Vec<StoredRecord>, StorageError> {
        // Runs of commits of one segment, each read in one call.
        let (entries, runs) = {
            let s = self.shared.lock();
            let entries = s.index.reading(from, max_bytes);
            let mut runs: Vec<(Arc<SegmentFile>, Range<usize>)> = Vec::new();
            for (i, e) in entries.iter().enumerate() {
                match runs.last_mut() {
                    Some((f, run)) if f.seq == e.seg && e.at + u64::from(e.len) - entries[run.start].at <= READ_SPAN => run.end = i + 1,
                    _ => runs.push((s.segment(e.seg)?.clone(), i..i + 1)),
                }
            }
            (entries, runs)
        };
        let mut out = Vec::new();
        let mut size = 0usize;
        for (file, run) in runs {
            let run = &entries[run];
            let base = run[0].at;
            // At most READ_SPAN, or one commit's section (a u32): it fits a usize.
            let mut buf = vec![0; (run[run.len() - 1].at + u64::from(run[run.len() - 1].len) - base) as usize];
            file.read_at(&mut buf, base)?;
            for e in run {
                let start = (e.at - base) as usize;
                for r in frame::records(&buf[start..start + e.len as usize]) {
                    let (lsn, bytes) = r?;
                    if lsn >= from.max(e.span.first) && lsn <= e.span.last {
                        size += bytes.len();
                        out.push((lsn, Arc::from(bytes)));
                        if size >= max_bytes {
                            return Ok(out);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The first record's start lsn and the last record's (start lsn, length).
    pub fn bounds(&self) -> Option<(u64, u64, usize)> {
        self.shared.lock().index.bounds()
    }

    pub fn meta(&self, key: &str) -> Option<u64> {
        self.shared.lock().meta.get(key).copied()
    }

    /// Appends commits without waiting for them to be durable (a log built whole before it is
    /// used, see `disk::migrate`); [`OwnerWal::sync`] makes them so.
    pub fn import(&self, commits: impl IntoIterator<Item = LogCommit>) -> Result<(), StorageError> {
        commits.into_iter().try_for_each(|c| self.commit_frame(&c, false))
    }

    /// Makes every segment's frames durable.
    pub fn sync(&self) -> Result<(), StorageError> {
        let files: Vec<Arc<SegmentFile>> = self.shared.lock().segments.values().cloned().collect();
        files.iter().try_for_each(|f| f.sync())
    }
}

impl Drop for OwnerWal {
    /// Writes a truncation no frame carries yet, so that the log opened next starts where this
    /// one did; then waits for the segment being prepared.
    fn drop(&mut self) {
        let w = self.writer.get_mut();
        if w.trim.is_some() && !w.failed {
            if let Err(e) = self.commit_frame(&LogCommit::default(), true) {
                tracing::warn!(path = %self.dir.display(), error = %e, "cannot write the WAL's last truncation; the log keeps more records");
            }
        }
        drop(self.writer.get_mut().next.take());
    }
}

#[cfg(test)]
mod tests;
