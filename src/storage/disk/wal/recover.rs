//! Opening an owner's write-ahead log: every frame of every segment replayed in order into the
//! in-memory state commits keep, and appending resumed where the last valid frame ends.
//!
//! What a crash can leave, and what is made of it:
//! - a last frame cut short or never written (its commit was not acknowledged): the log ends
//!   before it, and the next commit is written over it;
//! - a last segment with no valid head (prepared but unused, or its first write torn): removed;
//! - segments a truncation or a reseed was removing: those before a gap in the numbers, before a
//!   reset, or holding no record kept, are removed again;
//! - a half-prepared segment (`.tmp`): removed.
//!
//! Refused, with the file named: a frame that does not validate while the one after it does (a
//! corrupt frame in the middle, not an end), a segment without a valid head that is not the last,
//! and a segment whose frames end before where the next segment's head says they ended.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::frame::{self, Found, Payload, HEADER};
use super::index::{Entry, Index, Span};
use super::segments::{self, SegmentFile};
use super::{Change, OwnerWal, Shared, Writer};
use crate::storage::StorageError;

fn corrupt(path: &Path, offset: usize, what: &'static str) -> StorageError {
    StorageError::CorruptWal { path: path.to_path_buf(), offset: offset as u64, what }
}

/// Where a segment's chain of frames ended.
struct Tail {
    file: Arc<SegmentFile>,
    pos: usize,
    crc: u32,
}

pub(super) fn open(dir: &Path, owner: &str, segment_bytes: u64) -> Result<OwnerWal, StorageError> {
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir { path: dir.to_path_buf(), source })?;
        if let Some(parent) = dir.parent() {
            segments::sync_dir(parent)?;
        }
    }
    let seqs = segments::list(dir)?;
    // Removals go oldest first: anything before a gap was being removed.
    let run = seqs.windows(2).rposition(|w| w[1] != w[0] + 1).map_or(0, |i| i + 1);
    let mut dead: Vec<PathBuf> = seqs[..run].iter().map(|&s| segments::segment_path(dir, s)).collect();
    let mut shared = Shared { dir: dir.to_path_buf(), index: Index::default(), meta: BTreeMap::new(), segments: BTreeMap::new() };
    let mut tail: Option<Tail> = None;
    for (i, &seq) in seqs[run..].iter().enumerate() {
        let file = SegmentFile::open(dir, seq)?;
        let bytes = file.read_all()?;
        let last = run + i + 1 == seqs.len();
        let (head, mut crc, mut pos) = match frame::find(&bytes, 0, frame::seed(seq)) {
            Found::Frame { payload, crc, next } => match frame::decode(payload) {
                Ok(Payload::Head(head)) => (head, crc, next),
                _ => return Err(corrupt(&file.path, 0, "its first frame is not a segment head")),
            },
            _ if last => {
                // Prepared and never used, or its first write torn (that commit was never
                // acknowledged): made again when needed.
                dead.push(file.path.clone());
                break;
            }
            _ => return Err(corrupt(&file.path, 0, "it has no valid head, and later segments follow it")),
        };
        if head.reset {
            dead.extend(std::mem::take(&mut shared.segments).into_values().map(|f| f.path.clone()));
            shared.index.clear();
        } else if let Some(t) = &tail {
            if (t.pos as u64, t.crc) != (head.prev_end, head.prev_crc) {
                return Err(corrupt(&t.file.path, t.pos, "its frames end before where the next segment's head says they did"));
            }
        }
        shared.meta = head.meta.into_iter().collect();
        let file = Arc::new(file);
        shared.segments.insert(seq, file.clone());
        loop {
            match frame::find(&bytes, pos, crc) {
                Found::Frame { payload, crc: next_crc, next } => {
                    replay(&mut shared, seq, pos, payload, &file.path)?;
                    (crc, pos) = (next_crc, next);
                }
                Found::Invalid { crc: stored, next } => {
                    if matches!(frame::find(&bytes, next, stored), Found::Frame { .. }) {
                        return Err(corrupt(&file.path, pos, "a frame does not validate and the one after it does"));
                    }
                    break;
                }
                Found::End => break,
            }
        }
        tail = Some(Tail { file, pos, crc });
    }
    let tail = match tail {
        Some(t) => t,
        None => new_log(dir, seqs.last().map_or(1, |s| s + 1), segment_bytes, &mut shared)?,
    };
    let current = tail.file.seq;
    dead.extend(shared.dead_segments(current));
    segments::remove(dead);
    let size = tail.file.len()?;
    let writer = Writer {
        current: tail.file,
        segment_bytes,
        size,
        pos: tail.pos as u64,
        crc: tail.crc,
        next: None,
        trim: None,
        buf: Vec::new(),
        failed: false,
    };
    Ok(OwnerWal { dir: dir.to_path_buf(), owner: owner.to_string(), shared: Mutex::new(shared), writer: Mutex::new(writer) })
}

/// Applies the frame at `pos` of segment `seq`.
fn replay(shared: &mut Shared, seq: u64, pos: usize, payload: &[u8], path: &Path) -> Result<(), StorageError> {
    let Ok(Payload::Commit(commit)) = frame::decode(payload) else {
        return Err(corrupt(path, pos, "a frame that validates cannot be decoded as a commit"));
    };
    let mut records = Vec::new();
    for r in frame::records(commit.section) {
        let (lsn, bytes) = r?;
        records.push((lsn, bytes.len()));
    }
    let entry = Span::of(records).map(|span| Entry {
        seg: seq,
        at: (pos + HEADER + commit.section_at) as u64,
        // Within a frame, whose length is a u32.
        len: commit.section.len() as u32,
        span,
    });
    shared.apply(Change {
        trim: commit.trim,
        truncate_from: commit.truncate_from,
        entry,
        meta: commit.meta.into_iter(),
        truncate_before: commit.truncate_before,
    })
}

/// The first segment of a log with none: a head with no meta, durable.
fn new_log(dir: &Path, seq: u64, segment_bytes: u64, shared: &mut Shared) -> Result<Tail, StorageError> {
    let file = segments::prepare(dir, seq, segment_bytes)?;
    let mut head = Vec::new();
    let start = frame::begin(&mut head);
    frame::encode_head(false, 0, 0, std::iter::empty(), &mut head)?;
    let crc = frame::seal(&mut head, start, frame::seed(seq))?;
    file.write_durably(&head, 0)?;
    let file = Arc::new(file);
    shared.segments.insert(seq, file.clone());
    Ok(Tail { file, pos: head.len(), crc })
}
