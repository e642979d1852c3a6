//! How the disk engine encodes a run of consecutive records (a segment of records): in each
//! commit frame of an owner's WAL (`disk/wal/frame.rs`), and in the redb log of the layout before,
//! one entry per commit keyed by its first lsn (read when it is copied, `disk/migrate`).
//!
//! Layout: for each record, its length as a little-endian `u32`, then its bytes. A record's lsn is
//! the segment's key plus the lengths of the records before it (lsns count record bytes, so
//! consecutive records are contiguous); the headers are not counted.

use super::StorageError;

/// Appends the segment holding `records` (contiguous: each starts where the previous ends) to
/// `out`.
pub fn encode<'a>(records: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) -> Result<(), StorageError> {
    for bytes in records {
        let len = u32::try_from(bytes.len()).map_err(|_| StorageError::RecordTooLarge { len: bytes.len() })?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    Ok(())
}

/// The records of the segment stored under `first_lsn`: (lsn, bytes), in order.
pub fn decode(first_lsn: u64, segment: &[u8]) -> Records<'_> {
    Records { lsn: first_lsn, rest: segment }
}

pub struct Records<'a> {
    lsn: u64,
    rest: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(u64, &'a [u8]), StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let corrupt = || StorageError::SegmentCutShort { lsn: self.lsn };
        let Some((header, rest)) = self.rest.split_first_chunk::<4>() else {
            self.rest = &[];
            return Some(Err(corrupt()));
        };
        let len = u32::from_le_bytes(*header) as usize;
        if rest.len() < len {
            self.rest = &[];
            return Some(Err(corrupt()));
        }
        let (bytes, rest) = rest.split_at(len);
        let lsn = self.lsn;
        self.lsn += len as u64;
        self.rest = rest;
        Some(Ok((lsn, bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_with_their_lsns() {
        let mut seg = Vec::new();
        encode([&b"aaaa"[..], b"", b"bb"], &mut seg).unwrap();
        let got: Vec<(u64, Vec<u8>)> = decode(10, &seg).map(|r| r.map(|(l, b)| (l, b.to_vec()))).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, vec![(10, b"aaaa".to_vec()), (14, vec![]), (14, b"bb".to_vec())]);
        // A cut segment is an error, not a short log.
        let err = decode(10, &seg[..seg.len() - 1]).collect::<Result<Vec<_>, _>>().unwrap_err();
        assert!(err.to_string().contains("cut short"), "{err}");
        assert!(decode(0, &[1, 0]).next().unwrap().is_err());
    }
}
