//! How a shard of an owner's rows is stored: the whole shard, serialized into a few chunks (redb
//! entries on disk, buffers in memory), rather than an entry per row.
//!
//! A checkpoint rewrites a shard whole ([`super::RowImages`]): one serialization per row and a
//! few large inserts, where a B-tree entry per row cost a B-tree insert per row changed, paid
//! again by every replica (docs/decisions.md).
//!
//! Layout of a chunk: for each row, the lengths of its table, key and value JSON as
//! little-endian `u32`s, then the three. A chunk is closed once it passes [`CHUNK_BYTES`], so a
//! large shard never needs one allocation of its whole size.

use crate::model::{RowKey, RowValue};
use super::StorageError;

/// A chunk is closed once it holds this many bytes (one row may take it past).
pub const CHUNK_BYTES: usize = 1 << 20;

/// The chunks holding `rows`: none for an empty shard. It only reads the rows: encoding a
/// replica's shard straight from its table writes to no line the primary's table shares (the
/// keys' and values' reference counts), where copying the pointers did, twice per row.
pub fn encode<'a>(rows: impl IntoIterator<Item = (&'a RowKey, &'a RowValue)>) -> Result<Vec<Vec<u8>>, StorageError> {
    let mut chunks = Vec::new();
    let mut chunk = Vec::new();
    for (row, v) in rows {
        let value = v.json().as_bytes();
        for part in [row.table.as_bytes(), row.key.as_bytes(), value] {
            let len = u32::try_from(part.len())
                .map_err(|_| StorageError::RowTooLarge { table: row.table.to_string(), key: row.key.to_string() })?;
            chunk.extend_from_slice(&len.to_le_bytes());
        }
        chunk.extend_from_slice(row.table.as_bytes());
        chunk.extend_from_slice(row.key.as_bytes());
        chunk.extend_from_slice(value);
        if chunk.len() >= CHUNK_BYTES {
            chunks.push(std::mem::take(&mut chunk));
        }
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    Ok(chunks)
}

/// The rows of a chunk, as (table, key, value JSON), in order.
pub fn decode(chunk: &[u8]) -> Rows<'_> {
    Rows { rest: chunk }
}

pub struct Rows<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Rows<'a> {
    type Item = Result<(&'a str, &'a str, &'a [u8]), StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let row = self.row();
        if row.is_err() {
            self.rest = &[];
        }
        Some(row)
    }
}

impl<'a> Rows<'a> {
    fn row(&mut self) -> Result<(&'a str, &'a str, &'a [u8]), StorageError> {
        let corrupt = |what: &'static str| StorageError::CorruptRows { what };
        let mut lens = [0usize; 3];
        for len in &mut lens {
            let (header, rest) = self.rest.split_first_chunk::<4>().ok_or_else(|| corrupt("cut short"))?;
            *len = u32::from_le_bytes(*header) as usize;
            self.rest = rest;
        }
        if self.rest.len() < lens.iter().sum::<usize>() {
            return Err(corrupt("cut short"));
        }
        let (table, rest) = self.rest.split_at(lens[0]);
        let (key, rest) = rest.split_at(lens[1]);
        let (value, rest) = rest.split_at(lens[2]);
        self.rest = rest;
        let table = std::str::from_utf8(table).map_err(|_| corrupt("a table name is not UTF-8"))?;
        let key = std::str::from_utf8(key).map_err(|_| corrupt("a key is not UTF-8"))?;
        Ok((table, key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: &str, k: &str, v: serde_json::Value) -> (RowKey, RowValue) {
        (RowKey::new(t.into(), k.into()), v.into())
    }

    #[test]
    fn rows_come_back_as_written_across_chunks() {
        let big = "x".repeat(CHUNK_BYTES / 2);
        let rows = [
            row("users", "u1", serde_json::json!({"n": 1})),
            row("users", "", serde_json::json!(null)),
            row("t", "big1", serde_json::json!(big)),
            row("t", "big2", serde_json::json!(big)),
            row("t", "after", serde_json::json!([1, 2])),
        ];
        let chunks = encode(rows.iter().map(|(k, v)| (k, v))).unwrap();
        assert_eq!(chunks.len(), 2, "a chunk closes once past the limit");
        let mut got = Vec::new();
        for c in &chunks {
            for r in decode(c) {
                let (t, k, v) = r.unwrap();
                got.push((t.to_string(), k.to_string(), serde_json::from_slice::<serde_json::Value>(v).unwrap()));
            }
        }
        let want: Vec<_> = rows.iter().map(|(r, v)| (r.table.to_string(), r.key.to_string(), v.value().clone())).collect();
        assert_eq!(got, want);
        assert!(encode(std::iter::empty()).unwrap().is_empty());
        // A cut chunk is an error, not fewer rows.
        let cut = &chunks[1][..chunks[1].len() - 1];
        assert!(decode(cut).any(|r| r.is_err()));
        assert!(decode(&[1, 0, 0]).next().unwrap().is_err());
    }
}
