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

/// The log meta key of where the next redo record starts: kept with every commit, so a log
/// emptied by a checkpoint goes on from where it was.
const REDO_END: &str = "redo.end";

/// How many bytes of redo one read gathers while replaying.
const REPLAY_CHUNK: usize = 1 << 20;

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
        let held = store.log_bounds(&owner)?.map_or(0, |(_, start, len)| start + len as u64);
        let end = held.max(store.get_log_meta(&owner, REDO_END)?.unwrap_or(0));
        Ok(RedoLog { store, owner, end })
    }

    /// Where the next record starts.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Every record the log holds, oldest first.
    pub fn replay(&self) -> Result<Vec<RedoRecord>, StorageError> {
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            let chunk = self.store.read_log(&self.owner, from, REPLAY_CHUNK)?;
            let Some((last, bytes)) = chunk.last() else { break };
            from = last + bytes.len() as u64;
            out.extend(chunk.iter().filter_map(|(_, b)| RedoRecord::decode(b)));
        }
        Ok(out)
    }

    /// Drops every record: what they changed is on disk.
    pub fn checkpoint(&mut self) -> Result<(), StorageError> {
        self.store.truncate_log(&self.owner, self.end)?;
        Ok(())
    }

    /// Appends `records` and returns once they are durable (one commit): where the log ends now.
    pub fn append(&mut self, records: &[RedoRecord]) -> Result<u64, StorageError> {
        let mut stored = Vec::with_capacity(records.len());
        let mut end = self.end;
        for r in records {
            let bytes = r.encode();
            let len = bytes.len() as u64;
            stored.push((end, Arc::from(bytes)));
            end += len;
        }
        self.store.commit_log(&self.owner, LogCommit { records: stored, meta: vec![(REDO_END.to_string(), end)], ..LogCommit::default() })?;
        self.end = end;
        Ok(end)
    }

    /// Drops the records before `lsn` (a record boundary): what they changed is on disk.
    pub fn truncate_before(&mut self, lsn: u64) -> Result<(), StorageError> {
        self.store.truncate_log(&self.owner, lsn)?;
        Ok(())
    }
}

/// Brings the shared store up to date with every instance's redo, as after a crash of them all
/// (the start of the process): each block gets the newest version any redo log holds, if it is
/// newer than the store's; then the logs are emptied. The same for one failed instance's log,
/// by a survivor.
pub fn recover_all(blocks: &BlockStore, logs: &mut [RedoLog]) -> Result<Recovered, StorageError> {
    let mut newest: std::collections::BTreeMap<BlockId, RedoRecord> = std::collections::BTreeMap::new();
    let mut records = 0;
    for log in logs.iter() {
        for r in log.replay()? {
            records += 1;
            if newest.get(&r.block).is_none_or(|n| n.scn < r.scn) {
                newest.insert(r.block, r);
            }
        }
    }
    let mut written = 0;
    for (block, r) in newest {
        let image = BlockImage { scn: r.scn, data: Arc::from(r.data), on_disk: false };
        written += u64::from(blocks.write_back(block, &image)?);
    }
    for log in logs.iter_mut() {
        log.checkpoint()?;
    }
    Ok(Recovered { records, blocks: written })
}

/// What a recovery from redo did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Redo records read.
    pub records: u64,
    /// Blocks whose version on disk they made newer.
    pub blocks: u64,
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
    fn recovery_writes_the_newest_redo_of_every_block_and_the_logs_go_on_after_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Store::open_dir(dir.path()).expect("open"));
        let blocks = BlockStore::new(store.clone());
        let (b1, b2) = (BlockId { file: 1, block: 1 }, BlockId { file: 1, block: 2 });
        let rec = |block, scn: Scn, text: &str| RedoRecord { block, scn, data: text.as_bytes().to_vec() };
        let mut one = RedoLog::open(store.clone(), "i1").expect("open");
        let mut two = RedoLog::open(store.clone(), "i2").expect("open");
        one.append(&[rec(b1, 1, "a"), rec(b2, 2, "b")]).expect("append");
        two.append(&[rec(b1, 3, "c")]).expect("append");
        blocks.write_back(b2, &BlockImage { scn: 5, data: Arc::from(&b"newer on disk"[..]), on_disk: false }).expect("write");
        assert_eq!(recover_all(&blocks, &mut [one, two]).expect("recover"), Recovered { records: 3, blocks: 1 });
        assert_eq!(&blocks.read(b1).expect("read").data[..], b"c", "the newest of both logs");
        assert_eq!(&blocks.read(b2).expect("read").data[..], b"newer on disk", "an older redo never replaces it");
        // Reopened after the checkpoint: empty, and appends go on past where it was.
        let mut one = RedoLog::open(store.clone(), "i1").expect("open");
        assert_eq!(one.replay().expect("replay"), vec![]);
        one.append(&[rec(b1, 9, "d")]).expect("append after a checkpoint");
        assert_eq!(RedoLog::open(store, "i1").expect("open").replay().expect("replay"), vec![rec(b1, 9, "d")]);
    }

    #[test]
    fn redo_records_read_back_as_written() {
        let r = RedoRecord { block: BlockId { file: 2, block: 9 }, scn: 77, data: b"abc".to_vec() };
        assert_eq!(RedoRecord::decode(&r.encode()), Some(r));
        assert_eq!(RedoRecord::decode(b"short"), None);
    }
}
