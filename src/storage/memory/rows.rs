//! The memory engine's row images: each owner's shards, serialized as on disk, beside its log.

use std::collections::BTreeMap;

use super::{MemoryEngine, MemoryOwner};
use crate::model::rows::SHARDS;
use crate::storage::row_images::ROWS_EPOCH;
use crate::storage::rows::RowMap;
use crate::storage::{RowImageStore, RowImages, StorageError, StoredRows};

impl RowImageStore for MemoryEngine {
    fn write_row_images(&self, owner: &str, checkpoint: RowImages) -> Result<bool, StorageError> {
        let RowImages { lsn, epoch, images, unchanged, trim_log } = checkpoint;
        // Serialized before the lock is taken, as on disk before the transaction.
        let encoded = images.into_iter().map(|i| Ok((i.shard, i.rows.into_chunks()?))).collect::<Result<Vec<_>, StorageError>>()?;
        let log = self.owner(owner);
        let mut m = log.lock();
        if m.meta.get(ROWS_EPOCH).copied().unwrap_or(0) != epoch {
            return Ok(false);
        }
        let behind = |m: &MemoryOwner, shard: u16| m.shards.get(&shard).is_none_or(|s| s.0 < lsn);
        for (shard, chunks) in encoded {
            if behind(&m, shard) {
                m.shards.insert(shard, (lsn, chunks));
            }
        }
        for id in unchanged {
            if behind(&m, id) {
                m.shards.entry(id).or_default().0 = lsn;
            }
        }
        if trim_log {
            let oldest = m.oldest_shard_lsn();
            m.wal = m.wal.split_off(&oldest);
        }
        Ok(true)
    }

    fn replace_rows(&self, owner: &str, rows: &RowMap, lsn: u64, meta: &[(String, u64)]) -> Result<u64, StorageError> {
        // shard < SHARDS (256), which fits a u16.
        let shards = (0..SHARDS)
            .map(|shard| Ok((shard as u16, (lsn, rows.encode_shard(shard)?))))
            .collect::<Result<BTreeMap<_, _>, StorageError>>()?;
        let log = self.owner(owner);
        let mut m = log.lock();
        m.wal.clear();
        m.shards = shards;
        let epoch = m.meta.get(ROWS_EPOCH).copied().unwrap_or(0) + 1;
        m.meta.insert(ROWS_EPOCH.to_string(), epoch);
        for (k, v) in meta {
            m.meta.insert(k.clone(), *v);
        }
        Ok(epoch)
    }

    fn load_rows(&self, owner: &str) -> Result<StoredRows, StorageError> {
        let mut out = StoredRows::new();
        let log = self.owner(owner);
        let m = log.lock();
        out.epoch = m.meta.get(ROWS_EPOCH).copied().unwrap_or(0);
        for (&shard, (lsn, chunks)) in &m.shards {
            if let Some(slot) = out.shard_lsns.get_mut(usize::from(shard)) {
                *slot = *lsn;
            }
            for chunk in chunks {
                out.add_chunk(owner, usize::from(shard), chunk)?;
            }
        }
        Ok(out)
    }

    fn rows_lsn(&self, owner: &str) -> Result<u64, StorageError> {
        Ok(self.owner(owner).lock().oldest_shard_lsn())
    }
}
