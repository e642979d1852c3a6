//! The bytes of an owner's write-ahead log segment: a chain of frames, each a commit or a
//! segment's head, and how each is encoded and checked.
//!
//! A frame is `[len u32][crc u32][payload]` (little-endian); `crc` is crc32 over the previous
//! frame's crc (for a segment's first frame, a seed made from the segment's number) followed by
//! the payload. So a frame validates only right after the frame it was written after: stale bytes
//! past the end (a torn frame's remains) or a segment renamed to another number never do. A zero
//! `len`, a `len` past the segment's end or a wrong crc ends the chain.
//!
//! Payloads (integers little-endian):
//! - head (`HEAD` or `RESET`): `prev_end u64, prev_crc u32` (where the previous segment's chain
//!   ended, to check it against at recovery), then the meta (`count u32`, then per key
//!   `len u16, key, value u64`). Every segment begins with one: it holds all of the owner's meta,
//!   so removing older segments loses none. `RESET` (a reseed) also says that every record before
//!   it is gone.
//! - commit (`COMMIT`): `flags u8` (1: `trim`, 2: `truncate_from`, 4: `truncate_before`), then
//!   `trim u64` (a truncation of the log's start made since the previous frame, applied first),
//!   `truncate_from u64`, the records section (`len u32`, then runs: `first lsn u64, len u32`, a
//!   [`crate::storage::segment`] of contiguous records), the meta as in a head, and
//!   `truncate_before u64`; each optional field present as its flag says.

use std::ops::Range;

use crate::storage::{segment, StorageError, StoredRecord};

/// `len` and `crc`.
pub const HEADER: usize = 8;
const HEAD: u8 = 1;
const RESET: u8 = 2;
const COMMIT: u8 = 3;
const HAS_TRIM: u8 = 1;
const HAS_TRUNCATE_FROM: u8 = 2;
const HAS_TRUNCATE_BEFORE: u8 = 4;

/// The crc a segment's first frame is chained to.
pub fn seed(seq: u64) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(b"clusterd wal segment");
    h.update(&seq.to_le_bytes());
    h.finalize()
}

fn chained(prev: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&prev.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// What is found at an offset of a segment.
#[derive(Debug, PartialEq)]
pub enum Found<'a> {
    /// A frame chained to the crc asked for.
    Frame { payload: &'a [u8], crc: u32, next: usize },
    /// A frame-sized run of bytes that does not validate: the end of the chain, or a corrupt frame
    /// if a valid one follows it (chained to its `crc`, at `next`).
    Invalid { crc: u32, next: usize },
    /// A zero length, or a length past the end: the end of the chain.
    End,
}

/// The frame at `at` of `segment`, chained to `prev`.
pub fn find(segment: &[u8], at: usize, prev: u32) -> Found<'_> {
    let Some(header) = segment.get(at..at.saturating_add(HEADER)) else { return Found::End };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let start = at + HEADER;
    let Some(payload) = segment.get(start..start.saturating_add(len)).filter(|_| len > 0) else { return Found::End };
    let next = start + len;
    if chained(prev, payload) == crc {
        Found::Frame { payload, crc, next }
    } else {
        Found::Invalid { crc, next }
    }
}

/// Ends the frame begun at `start` of `buf` (see [`begin`]): fills in its header; returns its crc.
pub fn seal(buf: &mut [u8], start: usize, prev: u32) -> Result<u32, StorageError> {
    let payload = &buf[start + HEADER..];
    let len = u32::try_from(payload.len()).map_err(|_| StorageError::CommitTooLarge { len: payload.len() })?;
    let crc = chained(prev, payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(crc)
}

/// Begins a frame at the end of `buf`; returns where it starts.
pub fn begin(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    start
}

/// A segment's head, as decoded.
#[derive(Debug, Default, PartialEq)]
pub struct Head {
    /// A reseed: every record before it is gone.
    pub reset: bool,
    pub prev_end: u64,
    pub prev_crc: u32,
    pub meta: Vec<(String, u64)>,
}

/// Appends the payload of a head to `buf`.
pub fn encode_head<'a>(
    reset: bool,
    prev_end: u64,
    prev_crc: u32,
    meta: impl ExactSizeIterator<Item = (&'a str, u64)>,
    buf: &mut Vec<u8>,
) -> Result<(), StorageError> {
    buf.push(if reset { RESET } else { HEAD });
    buf.extend_from_slice(&prev_end.to_le_bytes());
    buf.extend_from_slice(&prev_crc.to_le_bytes());
    encode_meta(meta, buf)
}

/// A commit as written in a frame.
pub struct CommitFrame<'a> {
    pub trim: Option<u64>,
    pub truncate_from: Option<u64>,
    pub records: &'a [StoredRecord],
    pub meta: &'a [(String, u64)],
    pub truncate_before: Option<u64>,
}

/// Appends the payload of `commit` to `buf`; returns where its records section is, relative to
/// the payload's start.
pub fn encode_commit(commit: &CommitFrame<'_>, buf: &mut Vec<u8>) -> Result<Range<usize>, StorageError> {
    let payload_start = buf.len();
    buf.push(COMMIT);
    let flag = |set: bool, bit: u8| if set { bit } else { 0 };
    buf.push(
        flag(commit.trim.is_some(), HAS_TRIM)
            | flag(commit.truncate_from.is_some(), HAS_TRUNCATE_FROM)
            | flag(commit.truncate_before.is_some(), HAS_TRUNCATE_BEFORE),
    );
    for v in [commit.trim, commit.truncate_from].into_iter().flatten() {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    let len_at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let section_start = buf.len();
    let records = commit.records;
    let mut start = 0;
    while start < records.len() {
        let mut end = start + 1;
        while end < records.len() && records[end].0 == records[end - 1].0 + records[end - 1].1.len() as u64 {
            end += 1;
        }
        buf.extend_from_slice(&records[start].0.to_le_bytes());
        let run_len_at = buf.len();
        buf.extend_from_slice(&[0; 4]);
        segment::encode(records[start..end].iter().map(|r| &r.1[..]), buf)?;
        put_len(buf, run_len_at)?;
        start = end;
    }
    put_len(buf, len_at)?;
    let section = section_start - payload_start..buf.len() - payload_start;
    encode_meta(commit.meta.iter().map(|(k, v)| (k.as_str(), *v)), buf)?;
    if let Some(v) = commit.truncate_before {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    Ok(section)
}

/// Writes at `at` the length of what `buf` holds after the 4 bytes there.
fn put_len(buf: &mut [u8], at: usize) -> Result<(), StorageError> {
    let n = buf.len() - at - 4;
    let len = u32::try_from(n).map_err(|_| StorageError::CommitTooLarge { len: n })?;
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

fn encode_meta<'a>(meta: impl ExactSizeIterator<Item = (&'a str, u64)>, buf: &mut Vec<u8>) -> Result<(), StorageError> {
    let count = u32::try_from(meta.len()).map_err(|_| StorageError::CommitTooLarge { len: meta.len() })?;
    buf.extend_from_slice(&count.to_le_bytes());
    for (k, v) in meta {
        let len = u16::try_from(k.len()).map_err(|_| StorageError::MetaKeyTooLong { key: k.to_string() })?;
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(k.as_bytes());
        buf.extend_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

/// A decoded frame's payload.
#[derive(Debug)]
pub enum Payload<'a> {
    Head(Head),
    Commit(Commit<'a>),
}

/// A commit as read back.
#[derive(Debug)]
pub struct Commit<'a> {
    pub trim: Option<u64>,
    pub truncate_from: Option<u64>,
    /// The records section, and where it starts in the payload.
    pub section: &'a [u8],
    pub section_at: usize,
    pub meta: Vec<(&'a str, u64)>,
    pub truncate_before: Option<u64>,
}

/// Why a payload that validated could not be decoded (it was written by another version, or the
/// crc met a one-in-four-billion collision).
#[derive(Debug, Clone, Copy)]
pub struct Undecodable;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Undecodable> {
        let out = self.bytes.get(self.at..self.at.saturating_add(n)).ok_or(Undecodable)?;
        self.at += n;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, Undecodable> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Undecodable> {
        self.take(2)?.try_into().map(u16::from_le_bytes).map_err(|_| Undecodable)
    }
    fn u32(&mut self) -> Result<u32, Undecodable> {
        self.take(4)?.try_into().map(u32::from_le_bytes).map_err(|_| Undecodable)
    }
    fn u64(&mut self) -> Result<u64, Undecodable> {
        self.take(8)?.try_into().map(u64::from_le_bytes).map_err(|_| Undecodable)
    }
    fn u64_if(&mut self, flags: u8, bit: u8) -> Result<Option<u64>, Undecodable> {
        if flags & bit != 0 {
            self.u64().map(Some)
        } else {
            Ok(None)
        }
    }
    fn meta(&mut self) -> Result<Vec<(&'a str, u64)>, Undecodable> {
        let count = self.u32()? as usize;
        // Each pair takes at least 10 bytes: a count past what is left is not believed.
        let mut out = Vec::with_capacity(count.min(self.bytes.len() / 10));
        for _ in 0..count {
            let len = usize::from(self.u16()?);
            let key = std::str::from_utf8(self.take(len)?).map_err(|_| Undecodable)?;
            out.push((key, self.u64()?));
        }
        Ok(out)
    }
}

/// Decodes a frame's payload.
pub fn decode(payload: &[u8]) -> Result<Payload<'_>, Undecodable> {
    let mut r = Reader { bytes: payload, at: 0 };
    let kind = r.u8()?;
    let out = match kind {
        HEAD | RESET => {
            let (prev_end, prev_crc) = (r.u64()?, r.u32()?);
            let meta = r.meta()?.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            Payload::Head(Head { reset: kind == RESET, prev_end, prev_crc, meta })
        }
        COMMIT => {
            let flags = r.u8()?;
            let trim = r.u64_if(flags, HAS_TRIM)?;
            let truncate_from = r.u64_if(flags, HAS_TRUNCATE_FROM)?;
            let len = r.u32()? as usize;
            let section_at = r.at;
            let section = r.take(len)?;
            let meta = r.meta()?;
            let truncate_before = r.u64_if(flags, HAS_TRUNCATE_BEFORE)?;
            Payload::Commit(Commit { trim, truncate_from, section, section_at, meta, truncate_before })
        }
        _ => return Err(Undecodable),
    };
    if r.at != payload.len() {
        return Err(Undecodable);
    }
    Ok(out)
}

/// The records of a records section: (lsn, bytes), in order.
pub fn records(section: &[u8]) -> impl Iterator<Item = Result<(u64, &[u8]), StorageError>> {
    let mut rest = section;
    let mut run: Option<segment::Records<'_>> = None;
    std::iter::from_fn(move || loop {
        if let Some(r) = run.as_mut().and_then(Iterator::next) {
            return Some(r);
        }
        if rest.is_empty() {
            return None;
        }
        let mut r = Reader { bytes: rest, at: 0 };
        let (Ok(first), Ok(len)) = (r.u64(), r.u32()) else {
            rest = &[];
            return Some(Err(StorageError::SegmentCutShort { lsn: 0 }));
        };
        let Ok(bytes) = r.take(len as usize) else {
            rest = &[];
            return Some(Err(StorageError::SegmentCutShort { lsn: first }));
        };
        run = Some(segment::decode(first, bytes));
        rest = &rest[r.at..];
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(lsn: u64, bytes: &[u8]) -> StoredRecord {
        (lsn, bytes.to_vec().into())
    }

    #[test]
    fn a_commit_comes_back_as_written() {
        let written = vec![rec(10, b"aaaa"), rec(14, b"bb"), rec(20, b"c")];
        let meta = vec![("flush".to_string(), 21)];
        let commit = CommitFrame { trim: Some(3), truncate_from: None, records: &written, meta: &meta, truncate_before: Some(12) };
        let mut buf = Vec::new();
        let start = begin(&mut buf);
        let section = encode_commit(&commit, &mut buf).unwrap();
        let crc = seal(&mut buf, start, seed(1)).unwrap();
        let Found::Frame { payload, crc: found, next } = find(&buf, 0, seed(1)) else { panic!("a frame") };
        assert_eq!((found, next), (crc, buf.len()));
        let Payload::Commit(c) = decode(payload).unwrap() else { panic!("a commit") };
        assert_eq!((c.trim, c.truncate_from, c.truncate_before), (Some(3), None, Some(12)));
        assert_eq!(c.meta, vec![("flush", 21)]);
        assert_eq!(c.section_at..c.section_at + c.section.len(), section);
        let got: Vec<(u64, Vec<u8>)> = records(c.section).map(|r| r.map(|(l, b)| (l, b.to_vec()))).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, vec![(10, b"aaaa".to_vec()), (14, b"bb".to_vec()), (20, b"c".to_vec())], "two runs");
    }

    #[test]
    fn a_frame_validates_only_after_the_frame_it_was_written_after() {
        let mut buf = Vec::new();
        let start = begin(&mut buf);
        encode_head(false, 0, 0, std::iter::empty(), &mut buf).unwrap();
        seal(&mut buf, start, seed(7)).unwrap();
        assert!(matches!(find(&buf, 0, seed(7)), Found::Frame { .. }));
        assert!(matches!(find(&buf, 0, seed(8)), Found::Invalid { .. }), "another segment's seed");
        let mut torn = buf.clone();
        torn.truncate(buf.len() - 1);
        assert_eq!(find(&torn, 0, seed(7)), Found::End, "cut short");
        assert_eq!(find(&[0; 64], 0, seed(7)), Found::End, "zeros");
        let mut flipped = buf.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(find(&flipped, 0, seed(7)), Found::Invalid { .. }));
        assert!(decode(&[9]).is_err(), "an unknown kind");
    }
}
