//! The disk engine's row images: each owner's rows in its [`crate::storage::ROWS_DIR`] file, a
//! shard at a time ([`crate::storage::image`]), apart from its log.

use redb::ReadableTable;

use super::wal::OwnerWal;
use super::{DiskEngine, Failure, META, RESEED_META, ROW_IMAGES, ROW_IMAGE_LSNS};
use crate::model::rows::SHARDS;
use crate::storage::row_images::ROWS_EPOCH;
use crate::storage::rows::RowMap;
use crate::storage::{RowImageStore, RowImages, StorageError, StoredRows};

/// The key of chunk `chunk` of shard `shard` in [`ROW_IMAGES`].
fn chunk_key(shard: usize, chunk: usize) -> u64 {
    ((shard as u64) << 32) | chunk as u64
}

/// A meta counter, 0 if never set.
pub(super) fn meta_value(meta: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<u64, Failure> {
    Ok(meta.get(key)?.map_or(0, |v| v.value()))
}

/// The smallest lsn over every shard's stored rows (0 while a shard was never written).
fn oldest_shard_lsn(lsns: &impl ReadableTable<u16, u64>) -> Result<u64, Failure> {
    let mut oldest = u64::MAX;
    let mut count = 0;
    for row in lsns.iter()? {
        let (_, lsn) = row?;
        oldest = oldest.min(lsn.value());
        count += 1;
    }
    Ok(if count < SHARDS { 0 } else { oldest })
}

/// Replaces shard `shard`'s stored rows with `chunks` (from [`crate::storage::image::encode`]).
fn put_shard(images: &mut redb::Table<'_, u64, &[u8]>, shard: usize, chunks: &[Vec<u8>]) -> Result<(), Failure> {
    images.retain_in(chunk_key(shard, 0)..chunk_key(shard + 1, 0), |_, _| false)?;
    for (i, chunk) in chunks.iter().enumerate() {
        images.insert(chunk_key(shard, i), chunk.as_slice())?;
    }
    Ok(())
}

/// A reseed's second commit, in the log: drops the whole log and sets `meta` and the reseed
/// count `epoch` (see [`ROWS_EPOCH`]).
pub(super) fn reseed_log(log: &OwnerWal, epoch: u64, meta: &[(String, u64)]) -> Result<(), StorageError> {
    let mut all = Vec::with_capacity(meta.len() + 1);
    all.push((ROWS_EPOCH.to_string(), epoch));
    all.extend_from_slice(meta);
    log.reset(&all)
}

impl RowImageStore for DiskEngine {
    fn write_row_images(&self, owner: &str, checkpoint: RowImages) -> Result<bool, StorageError> {
        let RowImages { lsn, epoch, images, unchanged, trim_log } = checkpoint;
        // Serialized before the transaction begins: the owner's WAL commits wait for it.
        let encoded = images
            .into_iter()
            .map(|i| Ok((usize::from(i.shard), i.rows.into_chunks()?)))
            .collect::<Result<Vec<_>, StorageError>>()?;
        self.with_owner(owner, |files| {
            let written = files.rows.write_if("write a checkpoint of rows", |tx| {
                if meta_value(&tx.open_table(META)?, ROWS_EPOCH)? != epoch {
                    return Ok(None);
                }
                let mut lsns = tx.open_table(ROW_IMAGE_LSNS)?;
                let mut stored = tx.open_table(ROW_IMAGES)?;
                let behind = |lsns: &redb::Table<'_, u16, u64>, shard: u16| -> Result<bool, Failure> {
                    Ok(lsns.get(shard)?.is_none_or(|v| v.value() < lsn))
                };
                for (shard, chunks) in &encoded {
                    // usize::from(u16) above: the cast back cannot truncate.
                    let id = *shard as u16;
                    if behind(&lsns, id)? {
                        put_shard(&mut stored, *shard, chunks)?;
                        lsns.insert(id, lsn)?;
                    }
                }
                for &id in &unchanged {
                    if behind(&lsns, id)? {
                        lsns.insert(id, lsn)?;
                    }
                }
                Ok(Some(if trim_log { Some(oldest_shard_lsn(&lsns)?) } else { None }))
            })?;
            let Some(trim_before) = written else {
                return Ok(false);
            };
            if let Some(oldest) = trim_before {
                // Only once the rows are durable; a crash before leaves more log, which a load
                // replays over rows that have it already (ops are idempotent per row and shard
                // lsns tell what is in). Not if a reseed came since: the log it left starts at
                // its own lsn, which may be older.
                files.log.truncate_before(oldest, |meta| meta.get(ROWS_EPOCH).copied().unwrap_or(0) == epoch)?;
            }
            Ok(true)
        })
    }

    fn replace_rows(&self, owner: &str, rows: &RowMap, lsn: u64, meta: &[(String, u64)]) -> Result<u64, StorageError> {
        let encoded = (0..SHARDS).map(|shard| rows.encode_shard(shard)).collect::<Result<Vec<_>, StorageError>>()?;
        self.with_owner(owner, |files| {
            // The rows first, with the positions the log is to get; then the log. A crash
            // between leaves the rows file's count ahead, and the next open writes the log's
            // part from what this one kept (`migrate::finish_reseed`).
            let epoch = files.rows.write("write the rows of a reseed", |tx| {
                let mut stored = tx.open_table(ROW_IMAGES)?;
                stored.retain(|_, _| false)?;
                let mut lsns = tx.open_table(ROW_IMAGE_LSNS)?;
                for (shard, chunks) in encoded.iter().enumerate() {
                    put_shard(&mut stored, shard, chunks)?;
                    // shard < SHARDS (256), which fits a u16.
                    lsns.insert(shard as u16, lsn)?;
                }
                let mut m = tx.open_table(META)?;
                let epoch = meta_value(&m, ROWS_EPOCH)? + 1;
                m.insert(ROWS_EPOCH, epoch)?;
                m.retain(|k, _| !k.starts_with(RESEED_META))?;
                for (k, v) in meta {
                    m.insert(format!("{RESEED_META}{k}").as_str(), *v)?;
                }
                Ok(epoch)
            })?;
            reseed_log(&files.log, epoch, meta)?;
            Ok(epoch)
        })
    }

    fn load_rows(&self, owner: &str) -> Result<StoredRows, StorageError> {
        self.with_owner(owner, |files| {
            files.rows.read("read the stored rows", |tx| {
                let mut out = StoredRows::new();
                out.epoch = meta_value(&tx.open_table(META)?, ROWS_EPOCH)?;
                for row in tx.open_table(ROW_IMAGE_LSNS)?.iter()? {
                    let (shard, lsn) = row?;
                    if let Some(slot) = out.shard_lsns.get_mut(usize::from(shard.value())) {
                        *slot = lsn.value();
                    }
                }
                for chunk in tx.open_table(ROW_IMAGES)?.iter()? {
                    let (k, v) = chunk?;
                    out.add_chunk(owner, (k.value() >> 32) as usize, v.value())?;
                }
                Ok(out)
            })
        })
    }

    fn rows_lsn(&self, owner: &str) -> Result<u64, StorageError> {
        self.with_owner(owner, |files| files.rows.read("read the stored rows' lsns", |tx| oldest_shard_lsn(&tx.open_table(ROW_IMAGE_LSNS)?)))
    }
}

#[cfg(test)]
mod tests {
    use crate::model::rows::RowKey;
    use crate::storage::image;
    use crate::storage::row_images::tests::image;
    use crate::storage::rows::RowMap;
    use crate::storage::{RowImages, Store};

    #[test]
    fn a_shard_larger_than_a_chunk_is_stored_in_several() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = Store::open_dir(dir.path()).expect("open");
        let big = "y".repeat(300_000);
        // Only keys of k0's shard, enough of them to fill three chunks: building thousands of
        // 300 kB rows to find a big shard took most of a minute in a debug build.
        let shard = RowKey::new("t".into(), "k0".into()).shard();
        let rows: Vec<_> = (0..)
            .map(|i| format!("k{i}"))
            .filter(|k| RowKey::new("t".into(), k.as_str().into()).shard() == shard)
            .take(3 * image::CHUNK_BYTES / big.len() + 1)
            .map(|k| (String::from("t"), k, serde_json::json!(big.clone())))
            .collect();
        let map = RowMap::from_rows(&rows[..]);
        let biggest = shard;
        assert!(map.shard_len(biggest) * big.len() > 2 * image::CHUNK_BYTES);
        let images = RowImages { lsn: 5, epoch: 0, images: vec![image(&map, biggest)], unchanged: vec![], trim_log: false };
        assert!(s.write_row_images("p", images.clone()).expect("write"));
        assert_eq!(s.load_rows("p").expect("rows").rows.len(), map.shard_len(biggest));
        // Written again smaller: no chunk of the larger image is left behind.
        let smaller = RowMap::from_rows(&rows[..1]);
        let again = RowImages { lsn: 6, epoch: 0, images: vec![image(&smaller, biggest)], unchanged: vec![], trim_log: false };
        assert!(s.write_row_images("p", again).expect("write"));
        assert_eq!(s.load_rows("p").expect("rows").rows.len(), 1);
    }
}
