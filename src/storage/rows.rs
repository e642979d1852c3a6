//! Rows in memory, keyed by (table, key): the map behind every owner's table state (the
//! primary's and each replica's) and behind the memory engine's stored rows.
//!
//! Values are `Arc`s shared with the ops that wrote them, so the primary, every in-process
//! replica and the memory engine hold one copy of a row's value, not one each.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

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

/// A row's identity: (table, key), sharing the op's allocations, and its [`row_hash`].
#[derive(Debug, Clone)]
pub struct RowKey {
    hash: u64,
    pub table: Arc<str>,
    pub key: Arc<str>,
}

impl RowKey {
    pub fn new(table: Arc<str>, key: Arc<str>) -> Self {
        RowKey { hash: row_hash(&table, &key), table, key }
    }

    pub fn as_ref(&self) -> RowRef<'_> {
        RowRef { hash: self.hash, table: &self.table, key: &self.key }
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
    pub table: &'a str,
    pub key: &'a str,
}

impl<'a> RowRef<'a> {
    pub fn new(table: &'a str, key: &'a str) -> Self {
        RowRef { hash: row_hash(table, key), table, key }
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

/// How many maps the rows are spread over. A hash map grows by rehashing everything at once;
/// with millions of rows in one map that pause reached hundreds of milliseconds, on whatever
/// thread was inserting (an arbiter's, or a commit holding an owner's store). Spread over 64
/// maps, each pause is a 64th of it (the total work is the same).
const SHARDS: usize = 64;

/// Rows by (table, key), spread over [`SHARDS`] hash maps.
#[derive(Debug, Clone)]
pub struct RowMap {
    shards: Vec<HashMap<RowKey, Arc<serde_json::Value>>>,
    len: usize,
}

impl Default for RowMap {
    fn default() -> Self {
        RowMap { shards: (0..SHARDS).map(|_| HashMap::new()).collect(), len: 0 }
    }
}

impl RowMap {
    /// The shard of `row`, from bits 40..46 of its [`row_hash`]. Each map hashes that number
    /// again with its own hasher, so the rows of one shard still spread over its buckets.
    fn shard(&self, row: RowRef<'_>) -> usize {
        ((row.hash >> 40) as usize) % SHARDS
    }

    fn shard_mut(&mut self, row: RowRef<'_>) -> &mut HashMap<RowKey, Arc<serde_json::Value>> {
        let i = self.shard(row);
        &mut self.shards[i]
    }

    /// Sets `row` to `value`.
    pub fn insert(&mut self, row: RowKey, value: Arc<serde_json::Value>) {
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

    pub fn get(&self, row: RowRef<'_>) -> Option<&Arc<serde_json::Value>> {
        self.shards[self.shard(row)].get(&row)
    }

    pub fn contains(&self, row: RowRef<'_>) -> bool {
        self.shards[self.shard(row)].contains_key(&row)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every row, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&RowKey, &Arc<serde_json::Value>)> {
        self.shards.iter().flatten()
    }

    /// Every row as (table, key, value), sorted: a snapshot's content.
    pub fn sorted_rows(&self) -> Vec<(String, String, serde_json::Value)> {
        let mut rows: Vec<(String, String, serde_json::Value)> =
            self.iter().map(|(row, v)| (row.table.to_string(), row.key.to_string(), (**v).clone())).collect();
        rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        rows
    }

    /// The map holding exactly these rows.
    pub fn from_rows(rows: &[(String, String, serde_json::Value)]) -> Self {
        let mut map = RowMap::default();
        for (t, k, v) in rows {
            map.insert(RowKey::new(Arc::from(t.as_str()), Arc::from(k.as_str())), Arc::new(v.clone()));
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
        m.insert(owned, Arc::new(1.into()));
        assert_eq!(m.get(RowRef::new("users", "u1")).map(|v| &**v), Some(&serde_json::json!(1)));
        assert!(m.contains(RowRef::new("users", "u1")));
        assert!(!m.contains(RowRef::new("user", "su1")));
    }

    #[test]
    fn rows_spread_over_shards_behave_as_one_map() {
        let mut m = RowMap::default();
        let key = |i: i64| RowKey::new("t".into(), format!("k{i}").into());
        for i in 0..5000 {
            m.insert(key(i), Arc::new(i.into()));
        }
        assert_eq!(m.len(), 5000);
        assert!(m.shards.iter().filter(|s| !s.is_empty()).count() > SHARDS / 2, "rows spread over the shards");
        for i in 0..5000 {
            if i % 2 == 0 {
                m.remove(key(i).as_ref());
            } else {
                m.insert(key(i), Arc::new((-i).into()));
            }
        }
        assert_eq!(m.len(), 2500);
        assert!(!m.contains(RowRef::new("t", "k0")));
        assert_eq!(m.get(RowRef::new("t", "k1")).map(|v| &**v), Some(&serde_json::json!(-1)));
        let rows = m.sorted_rows();
        assert_eq!(rows.len(), 2500);
        assert!(rows.windows(2).all(|w| (&w[0].0, &w[0].1) < (&w[1].0, &w[1].1)));
        assert_eq!(RowMap::from_rows(&rows).sorted_rows(), rows);
        assert_eq!(m.iter().count(), 2500);
    }
}
