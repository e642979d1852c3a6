//! Rows and the operations that change them: a row's identity ([`RowKey`], borrowed as
//! [`RowRef`]) with its fixed shard ([`placement`]), its value ([`RowValue`]), one operation
//! ([`Op`]) and a committed batch of them as the write-ahead log stores it ([`WalRecord`], and
//! decoded with its position, [`LogRecord`]).
//!
//! Tables, keys and values are `Arc`s shared by everything that holds the same row: the primary's
//! table, every in-process replica's and the memory engine hold one copy, not one each.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use hashbrown::Equivalent;

/// The hash of row (`table`, `key`). Computed once per key and carried with it ([`RowKey`],
/// [`RowRef`]), so that a map growing rehashes each row from that number instead of reading its
/// strings again (a cache miss per row).
fn row_hash(table: &str, key: &str) -> u64 {
    let mut h = hashbrown::hash_map::DefaultHashBuilder::default().build_hasher();
    table.hash(&mut h);
    key.hash(&mut h);
    h.finish()
}

/// A row's value: the JSON document, and its serialized form, made once when the op is decoded
/// and shared (one allocation) by everything that holds the value: the WAL record, which embeds
/// the serialized form as it is, every owner's table state and every checkpoint, which copies the
/// text rather than walk the document (a tree of allocations: a cache miss per node).
#[derive(Clone)]
pub struct RowValue(Arc<(serde_json::Value, Box<RawValue>)>);

impl RowValue {
    pub fn new(value: serde_json::Value) -> Self {
        // Serializing a `serde_json::Value` cannot fail: its map keys are strings and its
        // numbers are finite.
        let json = serde_json::value::to_raw_value(&value).expect("a JSON value always serializes");
        RowValue(Arc::new((value, json)))
    }

    /// The value parsed from its serialized form `json`.
    pub fn from_json(json: &[u8]) -> Result<Self, serde_json::Error> {
        Ok(RowValue::new(serde_json::from_slice(json)?))
    }

    pub fn value(&self) -> &serde_json::Value {
        &self.0 .0
    }

    /// The serialized form.
    pub fn json(&self) -> &str {
        self.0 .1.get()
    }
}

impl std::ops::Deref for RowValue {
    type Target = serde_json::Value;
    fn deref(&self) -> &serde_json::Value {
        self.value()
    }
}

impl From<serde_json::Value> for RowValue {
    fn from(value: serde_json::Value) -> Self {
        RowValue::new(value)
    }
}

impl PartialEq for RowValue {
    fn eq(&self, other: &Self) -> bool {
        self.value() == other.value()
    }
}

impl std::fmt::Debug for RowValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value().fmt(f)
    }
}

impl Serialize for RowValue {
    /// The serialized form as it is (serde_json writes a raw value verbatim). Every serializer
    /// of these values in clusterd is serde_json's.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0 .1.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RowValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(RowValue::new)
    }
}

/// How many shards the rows are spread over, in memory and in the store: a hash map grows by
/// rehashing everything at once, and over 256 maps each such pause is a 256th of one map's; a
/// checkpoint can write a 256th of the rows at a time.
pub const SHARDS: usize = 256;

/// The shard of row (`table`, `key`): FNV-1a over `table`, 0xFF, `key`, folded to [`SHARDS`].
/// Written out here rather than taken from a hasher crate, whose output may change between
/// versions: a stored shard must hold the same rows after an upgrade. (A load checks it anyway,
/// see `StoredRows::misplaced` in the store.) Not keyed, so a client can choose keys that land in
/// one shard; that makes the shard large, not slow: its map hashes with a random key.
pub fn placement(table: &str, key: &str) -> u16 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in table.bytes().chain([0xFF]).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    ((h ^ (h >> 32)) % SHARDS as u64) as u16
}

/// A row's identity: (table, key), sharing the op's allocations, its [`row_hash`] and its
/// [`placement`].
#[derive(Debug, Clone)]
pub struct RowKey {
    hash: u64,
    shard: u16,
    pub table: Arc<str>,
    pub key: Arc<str>,
}

impl RowKey {
    pub fn new(table: Arc<str>, key: Arc<str>) -> Self {
        RowKey { hash: row_hash(&table, &key), shard: placement(&table, &key), table, key }
    }

    pub fn as_ref(&self) -> RowRef<'_> {
        RowRef { hash: self.hash, shard: self.shard, table: &self.table, key: &self.key }
    }

    pub fn shard(&self) -> usize {
        usize::from(self.shard)
    }
}

impl PartialEq for RowKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.table == other.table && self.key == other.key
    }
}

impl Eq for RowKey {}

impl Hash for RowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A borrowed [`RowKey`] for lookups without touching reference counts; it hashes as the owned
/// key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRef<'a> {
    hash: u64,
    shard: u16,
    pub table: &'a str,
    pub key: &'a str,
}

impl<'a> RowRef<'a> {
    pub fn new(table: &'a str, key: &'a str) -> Self {
        RowRef { hash: row_hash(table, key), shard: placement(table, key), table, key }
    }

    pub fn shard(&self) -> usize {
        usize::from(self.shard)
    }
}

impl Hash for RowRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Equivalent<RowKey> for RowRef<'_> {
    fn equivalent(&self, key: &RowKey) -> bool {
        self.hash == key.hash && self.table == &*key.table && self.key == &*key.key
    }
}

/// The length of `v` serialized as JSON, counted without building the string.
pub fn json_len(v: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a Value to a sink that never fails cannot fail; 0 would only under-count.
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

/// What an operation does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Adds a row; the key must not exist.
    Insert,
    /// Replaces a row; the key must exist.
    Update,
    /// Removes a row; the key must exist.
    Delete,
    /// Adds a row, or replaces its value when the key exists (PostgreSQL's
    /// `INSERT ... ON CONFLICT DO UPDATE`).
    Upsert,
}

/// Most operations in one batch.
pub const MAX_OPS: usize = 10_000;
/// Most bytes of one value, serialized.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;
/// Most characters of a table name or a key (counted as characters, as JSON Schema's
/// `maxLength` counts them); neither may be empty or hold a NUL.
pub const MAX_NAME_CHARS: usize = 256;

/// One operation of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Op {
    pub op: OpKind,
    /// Shared, like `key` and `value`, with every table that applies the op.
    #[schema(value_type = String)]
    pub table: Arc<str>,
    #[schema(value_type = String)]
    pub key: Arc<str>,
    /// Required for insert and update, absent for delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub value: Option<RowValue>,
}

impl Op {
    /// The row it changes, borrowed (for lookups).
    pub fn row(&self) -> RowRef<'_> {
        RowRef::new(&self.table, &self.key)
    }

    /// The row it changes, sharing its table and key.
    pub fn row_key(&self) -> RowKey {
        RowKey::new(self.table.clone(), self.key.clone())
    }
}

/// A write-ahead log record, decoded: where it starts, its bytes (shared, never copied per
/// reader) and the batch they hold, decoded once and shared so that applying it parses nothing.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub lsn: u64,
    pub bytes: Arc<[u8]>,
    /// When the primary accepted the batch (epoch ms), for lag in seconds.
    pub committed_at_ms: i64,
    pub ops: Arc<Vec<Op>>,
}

impl LogRecord {
    /// Where the record ends: the next one's lsn.
    pub fn end_lsn(&self) -> u64 {
        self.lsn + self.bytes.len() as u64
    }
}

/// One record of the write-ahead log as stored: a committed batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalRecord {
    /// When the primary accepted the batch (epoch ms).
    pub committed_at_ms: i64,
    pub ops: Vec<Op>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_never_changes() {
        // Stored shards hold rows by these numbers: a change would misplace every stored row.
        assert_eq!([placement("users", "u1"), placement("t", "k0"), placement("", "")], [67, 74, 34]);
        assert_eq!(RowKey::new("users".into(), "u1".into()).shard(), 67);
        assert_eq!(RowRef::new("users", "u1").shard(), 67);
    }
}
