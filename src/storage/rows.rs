//! Rows in memory, keyed by (table, key): the map behind every owner's table state (the
//! primary's and each replica's) and behind the memory engine's stored rows.
//!
//! Values are `Arc`s shared with the ops that wrote them, so the primary, every in-process
//! replica and the memory engine hold one copy of a row's value, not one each.
//!
//! Rows are spread over [`SHARDS`] maps by a placement that never changes
//! ([`crate::model::rows::placement`]): the
//! store checkpoints an owner's rows shard by shard ([`super::RowImages`]), so a shard in memory
//! and a shard on disk hold the same rows, in this run and the next.

use std::sync::Arc;

use hashbrown::HashMap;

use crate::model::rows::{RowKey, RowRef, RowValue, SHARDS};

/// Rows by (table, key), spread over [`SHARDS`] hash maps by their placement.
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
    use hashbrown::Equivalent;
    use std::hash::{Hash, Hasher};
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
