//! RAC's durable state: the shared store of blocks ("disk"), which every instance reads and
//! writes back to, and each instance's redo log, where a write is durable before it is
//! acknowledged. Both are called off the arbiter.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::messages::rac::BlockImage;
use crate::model::rac::{BlockId, Scn};
use crate::storage::{LogCommit, RecordTable, StorageError, Store};

/// The shared store's blocks, by `file:block`: the SCN (8 bytes, big-endian), then the bytes.
pub const RAC_BLOCKS: RecordTable = RecordTable::named("rac_blocks");

/// The blocks on disk. A block never written reads as version 0, empty.
pub struct BlockStore {
    store: Arc<Store>,
    /// Held across a write-back's read and write: two instances writing the same block back at
    /// once must leave the newer version, whichever finishes last.
    write_back: Mutex<()>,
}

impl BlockStore {
    pub fn new(store: Arc<Store>) -> BlockStore {
        BlockStore { store, write_back: Mutex::new(()) }
    }

    pub fn read(&self, block: BlockId) -> Result<BlockImage, StorageError> {
        let stored = self.store.get_record(RAC_BLOCKS, &block.to_string())?;
        Ok(decode_block(stored.as_deref()))
    }

    /// Writes `image` back unless the store has a version at least as new; true if written.
    pub fn write_back(&self, block: BlockId, image: &BlockImage) -> Result<bool, StorageError> {
        let _guard = self.write_back.lock();
        if self.read(block)?.scn >= image.scn {
            return Ok(false);
        }
        let mut bytes = Vec::with_capacity(8 + image.data.len());
        bytes.extend_from_slice(&image.scn.to_be_bytes());
        bytes.extend_from_slice(&image.data);
        self.store.put_record(RAC_BLOCKS, &block.to_string(), &bytes)?;
        Ok(true)
    }
}

fn decode_block(stored: Option<&[u8]>) -> BlockImage {
    match stored.and_then(|b| b.split_at_checked(8)) {
        Some((scn, data)) => BlockImage { scn: u64::from_be_bytes(scn.try_into().unwrap_or([0; 8])), data: Arc::from(data), on_disk: true },
        None => BlockImage { scn: 0, data: Arc::from(&[][..]), on_disk: true },
    }
}

/// A block change as an instance's redo log keeps it: the whole block after the change, so
/// recovery needs no older version to apply it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedoRecord {
    pub block: BlockId,
    pub scn: Scn,
    pub data: Vec<u8>,
}

impl RedoRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.data.len());
        out.extend_from_slice(&self.block.file.to_be_bytes());
        out.extend_from_slice(&self.block.block.to_be_bytes());
        out.extend_from_slice(&self.scn.to_be_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<RedoRecord> {
        let file = u32::from_be_bytes(bytes.get(0..4)?.try_into().ok()?);
        let block = u64::from_be_bytes(bytes.get(4..12)?.try_into().ok()?);
        let scn = u64::from_be_bytes(bytes.get(12..20)?.try_into().ok()?);
        Some(RedoRecord { block: BlockId { file, block }, scn, data: bytes.get(20..)?.to_vec() })
    }
}

/// One instance's redo log (a byte log of its own owner).
pub struct RedoLog {
    store: Arc<Store>,
    owner: String,
    /// Where the next record starts.
    end: u64,
}

impl RedoLog {
    pub fn open(store: Arc<Store>, instance: &str) -> Result<RedoLog, StorageError> {
        let owner = format!("rac-redo-{instance}");
        let end = store.log_bounds(&owner)?.map_or(0, |(_, start, len)| start + len as u64);
        Ok(RedoLog { store, owner, end })
    }

    /// Appends `records` and returns once they are durable (one commit).
    pub fn append(&mut self, records: &[RedoRecord]) -> Result<(), StorageError> {
        let mut stored = Vec::with_capacity(records.len());
        let mut end = self.end;
        for r in records {
            let bytes = r.encode();
            let len = bytes.len() as u64;
            stored.push((end, Arc::from(bytes)));
            end += len;
        }
        self.store.commit_log(&self.owner, LogCommit { records: stored, ..LogCommit::default() })?;
        self.end = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_back_never_replaces_a_newer_version() {
        let blocks = BlockStore::new(Arc::new(Store::memory()));
        let b = BlockId { file: 1, block: 3 };
        assert_eq!(blocks.read(b).expect("read").scn, 0);
        let image = |scn: Scn, text: &str| BlockImage { scn, data: Arc::from(text.as_bytes()), on_disk: false };
        assert!(blocks.write_back(b, &image(5, "five")).expect("write"));
        assert!(!blocks.write_back(b, &image(4, "four")).expect("write"), "older: refused");
        let read = blocks.read(b).expect("read");
        assert_eq!((read.scn, &read.data[..], read.on_disk), (5, &b"five"[..], true));
    }

    #[test]
    fn redo_records_read_back_as_written() {
        let r = RedoRecord { block: BlockId { file: 2, block: 9 }, scn: 77, data: b"abc".to_vec() };
        assert_eq!(RedoRecord::decode(&r.encode()), Some(r));
        assert_eq!(RedoRecord::decode(b"short"), None);
    }
}
