//! Rows in memory, keyed by (table, key): the map behind every owner's table state (the
//! primary's and each replica's) and behind the memory engine's stored rows.
//!
//! Values are `Arc`s shared with the ops that wrote them, so the primary, every in-process
//! replica and the memory engine hold one copy of a row's value, not one each.
//!
//! Rows are spread over [`SHARDS`] maps by a placement that never changes ([`placement`]): the
//! store checkpoints an owner's rows shard by shard ([`super::RowImages`]), so a shard in memory
//! and a shard on disk hold the same rows, in this run and the next.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use hashbrown::{Equivalent, HashMap};

/// The hash of row (`table`, `key`). Computed once per key and carried with it ([`RowKey`],
/// [`RowRef`]), so that a map growing rehashes each row from that number instead of reading its
/// strings again (a cache miss per row: a third of the time spent applying, in perf).
fn row_hash(table: &str, key: &str) -> u64 {
    let mut h = hashbrown::hash_map::DefaultHashBuilder::default().build_hasher();
    table.hash(&mut h);
    key.hash(&mut h);
    h.finish()
}

/// A row's value: the JSON document, and its serialized form, made once when the op is decoded
/// and shared (one allocation) by everything that holds the value: the WAL record, which embeds
/// the serialized form as it is, every owner's table state and every checkpoint. A checkpoint
/// copies the serialized form; serializing the document there instead cost four times as much
/// (each document is a tree of allocations scattered over the heap: a cache miss per node).
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

/// How many shards the rows are spread over, in memory and in the store. A hash map grows by
/// rehashing everything at once; with millions of rows in one map that pause reached hundreds
/// of milliseconds, on whatever thread was inserting. Spread over 256 maps, each pause is a
/// 256th of it (the total work is the same), and a checkpoint can write a 256th of the rows at a
/// time.
pub const SHARDS: usize = 256;

/// The shard of row (`table`, `key`): FNV-1a over `table`, 0xFF, `key`, folded to [`SHARDS`].
/// Written out here rather than taken from a hasher crate, whose output may change between
/// versions: a stored shard must hold the same rows after an upgrade. (A load checks it anyway,
/// see [`super::StoredRows::misplaced`].) Not keyed, so a client can choose keys that land in
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

/// Rows by (table, key), spread over [`SHARDS`] hash maps by [`placement`].
#[derive(Debug, Clone)]
pub struct RowMap {
    shards: Vec<HashMap<RowKey, RowValue>>,
    len: usize,
}

impl Default for RowMap {
    fn default() -> Self {
        RowMap { shards: (0..SHARDS).map(|_| HashMap::new()).collect(), len: 0 }
    }
}

impl RowMap {
    fn shard_mut(&mut self, row: RowRef<'_>) -> &mut HashMap<RowKey, RowValue> {
        &mut self.shards[row.shard()]
    }

    /// Sets `row` to `value`.
    pub fn insert(&mut self, row: RowKey, value: RowValue) {
        let shard = self.shard_mut(row.as_ref());
        if shard.insert(row, value).is_none() {
            self.len += 1;
        }
    }

    /// Removes `row` (absent is fine).
    pub fn remove(&mut self, row: RowRef<'_>) {
        if self.shard_mut(row).remove(&row).is_some() {
            self.len -= 1;
        }
    }

    pub fn get(&self, row: RowRef<'_>) -> Option<&RowValue> {
        self.shards[row.shard()].get(&row)
    }

    pub fn contains(&self, row: RowRef<'_>) -> bool {
        self.shards[row.shard()].contains_key(&row)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many rows shard `shard` holds (none if out of range).
    pub fn shard_len(&self, shard: usize) -> usize {
        self.shards.get(shard).map_or(0, HashMap::len)
    }

    /// The rows of shard `shard`, in no particular order, sharing keys and values.
    pub fn shard_rows(&self, shard: usize) -> Vec<(RowKey, RowValue)> {
        self.shards.get(shard).map_or_else(Vec::new, |s| s.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// The rows of shard `shard`, serialized ([`super::image::encode`]).
    pub fn encode_shard(&self, shard: usize) -> Result<Vec<Vec<u8>>, super::StorageError> {
        super::image::encode(self.shards.get(shard).into_iter().flatten())
    }

    /// Every row, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&RowKey, &RowValue)> {
        self.shards.iter().flatten()
    }

    /// Every row as (table, key, value), sorted: a snapshot's content.
    pub fn sorted_rows(&self) -> Vec<(String, String, serde_json::Value)> {
        let mut rows: Vec<(String, String, serde_json::Value)> =
            self.iter().map(|(row, v)| (row.table.to_string(), row.key.to_string(), v.value().clone())).collect();
        rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        rows
    }

    /// The map holding exactly these rows.
    pub fn from_rows(rows: &[(String, String, serde_json::Value)]) -> Self {
        let mut map = RowMap::default();
        for (t, k, v) in rows {
            map.insert(RowKey::new(Arc::from(t.as_str()), Arc::from(k.as_str())), RowValue::new(v.clone()));
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn hash_of<T: Hash + ?Sized>(t: &T) -> u64 {
        let mut h = DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    #[test]
    fn a_borrowed_key_hashes_as_the_owned_one() {
        let owned = RowKey::new("users".into(), "u1".into());
        assert_eq!(hash_of(&RowRef::new("users", "u1")), hash_of(&owned));
        assert!(RowRef::new("users", "u1").equivalent(&owned));
        assert!(!RowRef::new("user", "su1").equivalent(&owned));
        assert_ne!(hash_of(&RowRef::new("user", "su1")), hash_of(&owned));
        let mut m = RowMap::default();
        m.insert(owned, serde_json::json!(1).into());
        assert_eq!(m.get(RowRef::new("users", "u1")).map(|v| v.value()), Some(&serde_json::json!(1)));
        assert!(m.contains(RowRef::new("users", "u1")));
        assert!(!m.contains(RowRef::new("user", "su1")));
    }

    #[test]
    fn placement_never_changes() {
        // Stored shards hold rows by these numbers: a change would misplace every stored row.
        assert_eq!([placement("users", "u1"), placement("t", "k0"), placement("", "")], [67, 74, 34]);
        assert_eq!(RowKey::new("users".into(), "u1".into()).shard(), 67);
        assert_eq!(RowRef::new("users", "u1").shard(), 67);
    }

    #[test]
    fn rows_spread_over_shards_behave_as_one_map() {
        let mut m = RowMap::default();
        let key = |i: i64| RowKey::new("t".into(), format!("k{i}").into());
        for i in 0..5000 {
            m.insert(key(i), serde_json::json!(i).into());
        }
        assert_eq!(m.len(), 5000);
        assert!(m.shards.iter().filter(|s| !s.is_empty()).count() > SHARDS / 2, "rows spread over the shards");
        for i in 0..5000 {
            if i % 2 == 0 {
                m.remove(key(i).as_ref());
            } else {
                m.insert(key(i), serde_json::json!(-i).into());
            }
        }
        assert_eq!(m.len(), 2500);
        assert!(!m.contains(RowRef::new("t", "k0")));
        assert_eq!(m.get(RowRef::new("t", "k1")).map(|v| v.value()), Some(&serde_json::json!(-1)));
        let rows = m.sorted_rows();
        assert_eq!(rows.len(), 2500);
        assert!(rows.windows(2).all(|w| (&w[0].0, &w[0].1) < (&w[1].0, &w[1].1)));
        assert_eq!(RowMap::from_rows(&rows).sorted_rows(), rows);
        assert_eq!(m.iter().count(), 2500);
    }
}
