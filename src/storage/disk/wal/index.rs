//! What an owner's write-ahead log holds, kept in memory: where each commit's records are (a
//! frame of a segment) and which of them are still in the log. Commits and recovery change it
//! through the same calls, so a log read back from its segments is the log that was written.

use std::collections::VecDeque;

/// Which of a frame's records are kept, and what they add up to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// The first kept record's lsn.
    pub first: u64,
    /// The last kept record's lsn and length.
    pub last: u64,
    pub last_len: u32,
    pub count: u32,
    /// Their record bytes.
    pub bytes: u64,
}

impl Span {
    /// The span of `records` (lsn, length), in order; `None` for none.
    pub fn of(records: impl IntoIterator<Item = (u64, usize)>) -> Option<Span> {
        let mut out: Option<Span> = None;
        for (lsn, len) in records {
            // A record's length fits its u32 header (`segment::encode` refuses longer ones).
            let len32 = len as u32;
            match out.as_mut() {
                None => out = Some(Span { first: lsn, last: lsn, last_len: len32, count: 1, bytes: len as u64 }),
                Some(s) => {
                    s.last = lsn;
                    s.last_len = len32;
                    s.count += 1;
                    s.bytes += len as u64;
                }
            }
        }
        out
    }

    pub fn end(&self) -> u64 {
        self.last + u64::from(self.last_len)
    }
}

/// A commit's records in the log: the frame's records section, and the span of it kept.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub seg: u64,
    /// Offset of the records section in the segment file, and its length.
    pub at: u64,
    pub len: u32,
    pub span: Span,
}

/// The commits with records kept, in lsn order (each starts at or after the previous one's end).
#[derive(Debug, Default)]
pub struct Index {
    entries: VecDeque<Entry>,
}

impl Index {
    pub fn push(&mut self, entry: Entry) {
        self.entries.push_back(entry);
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The first record's lsn, the last's lsn and length.
    pub fn bounds(&self) -> Option<(u64, u64, usize)> {
        let (first, last) = (self.entries.front()?, self.entries.back()?);
        Some((first.span.first, last.span.last, last.span.last_len as usize))
    }

    /// The segment of the oldest record kept.
    pub fn first_segment(&self) -> Option<u64> {
        self.entries.front().map(|e| e.seg)
    }

    /// The commits holding records at or after `from`, enough of them for `max_bytes` of those.
    pub fn reading(&self, from: u64, max_bytes: usize) -> Vec<Entry> {
        let start = self.entries.partition_point(|e| e.span.last < from);
        let mut out = Vec::new();
        let mut sure = 0u64;
        for e in self.entries.range(start..) {
            out.push(*e);
            // Only a commit wholly at or after `from` is sure to give all its bytes.
            if e.span.first >= from {
                sure += e.span.bytes;
            }
            if sure >= max_bytes as u64 {
                break;
            }
        }
        out
    }

    /// The commit `truncate_before(x)` cuts inside (records kept on both sides), if any.
    pub fn cut_before(&self, x: u64) -> Option<Entry> {
        let e = self.entries.get(self.entries.partition_point(|e| e.span.last < x))?;
        (e.span.first < x).then_some(*e)
    }

    /// Drops the records that start before `x`; `cut` is what [`Index::cut_before`]'s commit
    /// keeps. Returns how many records went.
    pub fn truncate_before(&mut self, x: u64, cut: Option<Span>) -> usize {
        let whole = self.entries.partition_point(|e| e.span.last < x);
        let mut removed: usize = self.entries.drain(..whole).map(|e| e.span.count as usize).sum();
        if let Some(e) = self.entries.front_mut().filter(|e| e.span.first < x) {
            removed += (e.span.count - cut.map_or(0, |c| c.count)) as usize;
            match cut {
                Some(kept) => e.span = kept,
                None => drop(self.entries.pop_front()),
            }
        }
        removed
    }

    /// The commit `truncate_from(x)` cuts inside (records kept on both sides), if any.
    pub fn cut_from(&self, x: u64) -> Option<Entry> {
        let e = self.entries.get(self.entries.partition_point(|e| e.span.first < x).checked_sub(1)?)?;
        (e.span.last >= x).then_some(*e)
    }

    /// Where the log would end after `truncate_from(x, cut)`.
    pub fn end_after_from(&self, x: u64, cut: Option<Span>) -> Option<u64> {
        let kept = self.entries.partition_point(|e| e.span.first < x);
        let last = self.entries.get(kept.checked_sub(1)?)?;
        if last.span.last < x {
            return Some(last.span.end());
        }
        match cut {
            Some(c) => Some(c.end()),
            None => self.entries.get(kept.checked_sub(2)?).map(|e| e.span.end()),
        }
    }

    /// Where the log ends: the last record's end.
    pub fn end(&self) -> Option<u64> {
        self.entries.back().map(|e| e.span.end())
    }

    /// Drops the records that start at or after `x`; `cut` is what [`Index::cut_from`]'s commit
    /// keeps. Returns how many records went.
    pub fn truncate_from(&mut self, x: u64, cut: Option<Span>) -> usize {
        let kept = self.entries.partition_point(|e| e.span.first < x);
        let mut removed: usize = self.entries.drain(kept..).map(|e| e.span.count as usize).sum();
        if let Some(e) = self.entries.back_mut().filter(|e| e.span.last >= x) {
            removed += (e.span.count - cut.map_or(0, |c| c.count)) as usize;
            match cut {
                Some(kept) => e.span = kept,
                None => drop(self.entries.pop_back()),
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seg: u64, records: &[(u64, usize)]) -> Entry {
        Entry { seg, at: 0, len: 0, span: Span::of(records.iter().copied()).unwrap() }
    }

    #[test]
    fn truncations_keep_whole_commits_and_ask_for_the_cut_one() {
        let mut index = Index::default();
        index.push(entry(1, &[(0, 4), (4, 2)]));
        index.push(entry(1, &[(6, 3)]));
        index.push(entry(2, &[(9, 2), (11, 3), (14, 2)]));
        assert_eq!(index.bounds(), Some((0, 14, 2)));
        assert!(index.cut_before(6).is_none(), "a commit boundary");
        assert!(index.cut_before(5).is_none(), "both records of the first commit start before 5");
        assert_eq!(index.cut_before(3).map(|e| e.span.first), Some(0));
        assert_eq!(index.cut_from(11).map(|e| e.span.first), Some(9));
        assert!(index.cut_from(9).is_none());
        assert_eq!(index.end_after_from(9, None), Some(9));
        assert_eq!(index.end_after_from(11, Span::of([(9, 2)])), Some(11));
        assert_eq!(index.end_after_from(10, None), Some(9), "nothing kept of the cut commit");
        assert_eq!(index.truncate_from(11, Span::of([(9, 2)])), 2);
        assert_eq!(index.bounds(), Some((0, 9, 2)));
        assert_eq!(index.truncate_before(3, Span::of([(4, 2)])), 1);
        assert_eq!(index.bounds(), Some((4, 9, 2)));
        assert_eq!(index.first_segment(), Some(1));
        assert_eq!(index.truncate_before(9, None), 2);
        assert_eq!(index.first_segment(), Some(2));
        assert_eq!(index.reading(0, 1).len(), 1);
        assert_eq!(index.truncate_before(100, None), 1);
        assert_eq!(index.bounds(), None);
    }
}
