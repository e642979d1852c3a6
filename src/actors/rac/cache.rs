//! An instance's buffer cache and the global locks it holds, apart from its actor: the blocks it
//! has (each with its lock mode, version and whether that version is on disk), its past images,
//! the Lamport clock its versions come from, and the order it evicts in. The GRD master's
//! directives arrive here as method calls and return what to send back, so the instance's side
//! of Cache Fusion is tested without actix.

use std::collections::BTreeMap;

use hashbrown::HashMap;

use crate::messages::rac::{BlockData, BlockImage};
use crate::model::rac::{BlockId, LockMode, Scn};

#[derive(Debug, Clone)]
struct Buffer {
    mode: LockMode,
    image: BlockImage,
    /// When it was last used, on the cache's own clock: the least recent goes first.
    used: u64,
}

/// What a holder sent for a request it was told to ship for: kept until the next change of that
/// block's lock here, so that a repeated directive gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    pub request_id: u64,
    pub requester: String,
    pub image: BlockImage,
    /// The version this holder kept as a past image (its changes were not on disk).
    pub past_image: Option<Scn>,
}

/// A buffer to evict: written back first if `write_back` (its version is not on disk), then
/// released to null through the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub block: BlockId,
    pub write_back: Option<BlockImage>,
}

/// One instance's cache.
#[derive(Debug)]
pub struct InstanceCache {
    capacity: usize,
    buffers: HashMap<BlockId, Buffer>,
    past_images: BTreeMap<BlockId, BlockImage>,
    shipped: HashMap<BlockId, Shipment>,
    /// The Lamport clock: past every version this instance has seen.
    clock: Scn,
    ticks: u64,
}

impl InstanceCache {
    /// A cache of at most `capacity` blocks (past images apart: at most one per block, and
    /// dropped once a newer version is on disk).
    pub fn new(capacity: usize) -> InstanceCache {
        InstanceCache { capacity: capacity.max(1), buffers: HashMap::new(), past_images: BTreeMap::new(), shipped: HashMap::new(), clock: 0, ticks: 0 }
    }

    /// The mode this instance holds `block` in.
    pub fn mode(&self, block: BlockId) -> LockMode {
        self.buffers.get(&block).map_or(LockMode::Null, |b| b.mode)
    }

    /// The current copy of `block`, if held (shared or exclusive).
    pub fn read(&mut self, block: BlockId) -> Option<BlockImage> {
        self.ticks += 1;
        let buffer = self.buffers.get_mut(&block)?;
        buffer.used = self.ticks;
        Some(buffer.image.clone())
    }

    /// Writes `data` into `block`, held exclusive: its new version, one past every version this
    /// instance has seen. `None` if the block is not held exclusive.
    pub fn write(&mut self, block: BlockId, data: BlockData) -> Option<Scn> {
        self.ticks += 1;
        let buffer = self.buffers.get_mut(&block).filter(|b| b.mode == LockMode::Exclusive)?;
        self.clock = self.clock.max(buffer.image.scn) + 1;
        buffer.image = BlockImage { scn: self.clock, data, on_disk: false };
        buffer.used = self.ticks;
        self.shipped.remove(&block);
        Some(self.clock)
    }

    /// Holds `block` in `mode` with `image` (shipped, or read from disk): the Lamport clock moves
    /// past its version.
    pub fn install(&mut self, block: BlockId, mode: LockMode, image: BlockImage) {
        self.ticks += 1;
        self.clock = self.clock.max(image.scn);
        self.shipped.remove(&block);
        self.buffers.insert(block, Buffer { mode, image, used: self.ticks });
    }

    /// The master granted `mode` on this instance's own copy: a conversion up (the other copies
    /// are gone) or down (to null: the copy goes; a copy not on disk was written back before).
    /// False if there is no copy to convert up.
    pub fn convert(&mut self, block: BlockId, mode: LockMode) -> bool {
        self.shipped.remove(&block);
        match (mode, self.buffers.get_mut(&block)) {
            (LockMode::Null, _) => {
                self.buffers.remove(&block);
                true
            }
            (mode, Some(buffer)) => {
                buffer.mode = mode;
                true
            }
            (_, None) => false,
        }
    }

    /// Told to ship `block` for `request_id` and then hold it in `keeps`: the image to send, or
    /// the one sent already if this is a repeat. `None` if this instance has no copy.
    pub fn ship(&mut self, block: BlockId, request_id: u64, requester: &str, keeps: LockMode) -> Option<Shipment> {
        if let Some(s) = self.shipped.get(&block).filter(|s| s.request_id == request_id && s.requester == requester) {
            return Some(s.clone());
        }
        let buffer = self.buffers.get_mut(&block)?;
        let image = buffer.image.clone();
        let mut past_image = None;
        if keeps == LockMode::Null {
            self.buffers.remove(&block);
            if !image.on_disk {
                past_image = Some(image.scn);
                self.past_images.insert(block, image.clone());
            }
        } else {
            buffer.mode = keeps;
        }
        let shipment = Shipment { request_id, requester: requester.to_string(), image, past_image };
        self.shipped.insert(block, shipment.clone());
        Some(shipment)
    }

    /// Told to drop its shared copy of `block`: the version kept as a past image, if the copy
    /// was not on disk.
    pub fn invalidate(&mut self, block: BlockId) -> Option<Scn> {
        self.shipped.remove(&block);
        let buffer = self.buffers.remove(&block)?;
        if buffer.image.on_disk {
            return None;
        }
        let scn = buffer.image.scn;
        self.past_images.insert(block, buffer.image);
        Some(scn)
    }

    /// A version of `block` at least `up_to` is on disk: a past image no newer goes, and a
    /// current copy of that version is on disk too.
    pub fn written_to_disk(&mut self, block: BlockId, up_to: Scn) {
        if self.past_images.get(&block).is_some_and(|p| p.scn <= up_to) {
            self.past_images.remove(&block);
        }
        if let Some(b) = self.buffers.get_mut(&block) {
            if b.image.scn <= up_to {
                b.image.on_disk = true;
            }
        }
    }

    /// The Lamport clock moves past a version seen in a message.
    pub fn observe(&mut self, scn: Scn) {
        self.clock = self.clock.max(scn);
    }

    pub fn clock(&self) -> Scn {
        self.clock
    }

    /// The buffers to evict to be back within capacity, besides `under_way` evictions already
    /// started; least recently used first, never one of `busy` (blocks with an operation of this
    /// instance under way).
    pub fn evictions(&self, under_way: usize, busy: &dyn Fn(BlockId) -> bool) -> Vec<Eviction> {
        let over = self.buffers.len().saturating_sub(self.capacity).saturating_sub(under_way);
        if over == 0 {
            return Vec::new();
        }
        let mut candidates: Vec<(&BlockId, &Buffer)> = self.buffers.iter().filter(|(b, _)| !busy(**b)).collect();
        candidates.sort_by_key(|(_, b)| b.used);
        candidates
            .into_iter()
            .take(over)
            .map(|(block, b)| Eviction { block: *block, write_back: (!b.image.on_disk).then(|| b.image.clone()) })
            .collect()
    }

    /// Every block held and its mode.
    pub fn modes(&self) -> impl Iterator<Item = (BlockId, LockMode)> + '_ {
        self.buffers.iter().map(|(b, buf)| (*b, buf.mode))
    }

    /// Every block held, with its mode and version.
    #[cfg(test)]
    pub fn holdings(&self) -> Vec<(BlockId, LockMode, Scn)> {
        let mut v: Vec<_> = self.buffers.iter().map(|(b, buf)| (*b, buf.mode, buf.image.scn)).collect();
        v.sort_unstable();
        v
    }

    /// Every version here that is not on disk: copies this instance changed or was shipped
    /// changed, and past images.
    pub fn not_on_disk(&self) -> Vec<(BlockId, BlockImage)> {
        let current = self.buffers.iter().filter(|(_, b)| !b.image.on_disk).map(|(id, b)| (*id, b.image.clone()));
        current.chain(self.past_images.iter().map(|(id, i)| (*id, i.clone()))).collect()
    }

    pub fn past_images(&self) -> impl Iterator<Item = (BlockId, &BlockImage)> {
        self.past_images.iter().map(|(b, i)| (*b, i))
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.buffers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buffers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const B: BlockId = BlockId { file: 1, block: 7 };

    fn image(scn: Scn, text: &str, on_disk: bool) -> BlockImage {
        BlockImage { scn, data: Arc::from(text.as_bytes()), on_disk }
    }

    #[test]
    fn writes_take_versions_past_everything_seen() {
        let mut c = InstanceCache::new(4);
        assert_eq!(c.write(B, Arc::from(&b"x"[..])), None, "not held exclusive");
        c.install(B, LockMode::Shared, image(5, "a", true));
        assert_eq!(c.write(B, Arc::from(&b"x"[..])), None, "shared is not enough");
        assert!(c.convert(B, LockMode::Exclusive));
        c.observe(10);
        assert_eq!(c.write(B, Arc::from(&b"b"[..])), Some(11));
        assert_eq!(c.read(B), Some(image(11, "b", false)));
    }

    #[test]
    fn a_holder_giving_up_changes_not_on_disk_keeps_a_past_image_until_a_newer_version_is_written() {
        let mut c = InstanceCache::new(4);
        c.install(B, LockMode::Exclusive, image(1, "a", true));
        c.write(B, Arc::from(&b"b"[..]));
        let s = c.ship(B, 9, "i2", LockMode::Null).expect("held");
        assert_eq!((s.image.scn, s.past_image), (2, Some(2)));
        assert_eq!(c.mode(B), LockMode::Null);
        assert_eq!(c.ship(B, 9, "i2", LockMode::Null), Some(s), "a repeated directive gets the same shipment");
        assert_eq!(c.ship(B, 10, "i3", LockMode::Null), None, "nothing left to ship for another request");
        assert_eq!(c.past_images().count(), 1);
        c.written_to_disk(B, 1);
        assert_eq!(c.past_images().count(), 1, "an older version on disk does not replace it");
        c.written_to_disk(B, 3);
        assert_eq!(c.past_images().count(), 0);
        // A clean copy is dropped without a past image.
        c.install(B, LockMode::Shared, image(3, "c", true));
        assert_eq!(c.invalidate(B), None);
        assert_eq!(c.past_images().count(), 0);
    }

    #[test]
    fn a_read_downgrades_the_writer_which_keeps_its_dirty_copy() {
        let mut c = InstanceCache::new(4);
        c.install(B, LockMode::Exclusive, image(1, "a", true));
        c.write(B, Arc::from(&b"b"[..]));
        let s = c.ship(B, 1, "i2", LockMode::Shared).expect("held");
        assert_eq!(s.past_image, None);
        assert_eq!(c.mode(B), LockMode::Shared);
        assert_eq!(c.read(B).map(|i| i.on_disk), Some(false), "still to be written back");
        assert_eq!(c.invalidate(B), Some(2), "dropped, its version is kept as a past image");
    }

    #[test]
    fn evictions_take_the_least_recently_used_and_write_back_what_is_not_on_disk() {
        let mut c = InstanceCache::new(2);
        let (b1, b2, b3) = (BlockId { file: 1, block: 1 }, BlockId { file: 1, block: 2 }, BlockId { file: 1, block: 3 });
        c.install(b1, LockMode::Exclusive, image(1, "a", true));
        c.install(b2, LockMode::Shared, image(1, "b", true));
        c.write(b1, Arc::from(&b"a2"[..]));
        c.install(b3, LockMode::Shared, image(1, "c", true));
        assert_eq!(c.evictions(0, &|_| false), vec![Eviction { block: b2, write_back: None }]);
        c.read(b2);
        let e = c.evictions(0, &|_| false);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].block, e[0].write_back.as_ref().map(|i| i.scn)), (b1, Some(2)));
        assert_eq!(c.evictions(0, &|b| b == b1)[0].block, b3, "a busy block stays");
        assert_eq!(c.evictions(1, &|_| false), vec![], "one eviction under way is enough");
        assert!(c.convert(b1, LockMode::Null));
        assert_eq!(c.evictions(0, &|_| false), vec![]);
    }
}
