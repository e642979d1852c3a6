//! Where a block's GRD entry is mastered: consistent hashing of the block onto the live
//! instances, so that adding or removing an instance moves only the blocks whose points it takes
//! or leaves (about one in n), not every block's; and the blocks remastered away from their
//! place on the ring (by affinity, by hand, to balance the load).

use std::collections::BTreeMap;

use crate::model::rac::BlockId;

/// Points per instance on the ring: enough that each instance's share of the blocks is within a
/// few percent of 1/n.
const POINTS_PER_INSTANCE: usize = 128;

/// The instances placed on a hash ring.
#[derive(Debug, Clone)]
pub struct MasterRing {
    /// (point, index into `instances`), by point.
    points: Vec<(u64, usize)>,
    instances: Vec<String>,
}

impl MasterRing {
    /// A ring of `instances` (none: every lookup answers `None`).
    pub fn new(instances: &[String]) -> MasterRing {
        let mut points: Vec<(u64, usize)> =
            instances.iter().enumerate().flat_map(|(i, name)| (0..POINTS_PER_INSTANCE).map(move |p| (hash(format!("{name}#{p}").as_bytes()), i))).collect();
        points.sort_unstable();
        MasterRing { points, instances: instances.to_vec() }
    }

    /// The instance that masters `block`: the first point at or after the block's hash.
    pub fn master_of(&self, block: BlockId) -> Option<&str> {
        let mut key = [0u8; 12];
        key[..4].copy_from_slice(&block.file.to_be_bytes());
        key[4..].copy_from_slice(&block.block.to_be_bytes());
        let h = hash(&key);
        let i = self.points.partition_point(|(p, _)| *p < h);
        let (_, owner) = self.points.get(i).or_else(|| self.points.first())?;
        self.instances.get(*owner).map(String::as_str)
    }

    pub fn instances(&self) -> &[String] {
        &self.instances
    }
}

/// One configuration of the GRD: its epoch, the live instances' ring, and the blocks
/// remastered elsewhere than the ring puts them. Every protocol message is stamped with the
/// epoch its sender was in.
#[derive(Debug, Clone)]
pub struct MasterMap {
    pub epoch: u64,
    ring: MasterRing,
    overrides: BTreeMap<BlockId, String>,
}

impl MasterMap {
    /// The configuration `epoch` of `live` instances; overrides to an instance not live, or to
    /// where the ring puts the block anyway, are dropped.
    pub fn new(epoch: u64, live: &[String], overrides: BTreeMap<BlockId, String>) -> MasterMap {
        let ring = MasterRing::new(live);
        let overrides = overrides.into_iter().filter(|(b, to)| live.contains(to) && ring.master_of(*b) != Some(to.as_str())).collect();
        MasterMap { epoch, ring, overrides }
    }

    pub fn master_of(&self, block: BlockId) -> Option<&str> {
        self.overrides.get(&block).map(String::as_str).or_else(|| self.ring.master_of(block))
    }

    pub fn live(&self) -> &[String] {
        self.ring.instances()
    }

    pub fn is_live(&self, instance: &str) -> bool {
        self.live().iter().any(|i| i == instance)
    }

    pub fn overrides(&self) -> &BTreeMap<BlockId, String> {
        &self.overrides
    }
}

/// FNV-1a, then a SplitMix64 finish so that near keys spread over the whole ring.
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("instance-{i}")).collect()
    }

    #[test]
    fn blocks_spread_evenly_and_an_added_instance_moves_about_its_share() {
        let (four, five) = (MasterRing::new(&names(4)), MasterRing::new(&names(5)));
        let blocks: Vec<BlockId> = (0..20_000).map(|b| BlockId { file: 1, block: b }).collect();
        for name in names(4) {
            let share = blocks.iter().filter(|b| four.master_of(**b) == Some(name.as_str())).count() as f64 / blocks.len() as f64;
            assert!((share - 0.25).abs() < 0.06, "{name} masters {share}");
        }
        let moved = blocks.iter().filter(|b| four.master_of(**b) != five.master_of(**b)).count() as f64 / blocks.len() as f64;
        assert!(moved > 0.12 && moved < 0.28, "a fifth instance moved {moved} of the blocks, not about a fifth");
        // Every block that moved went to the new instance.
        assert!(blocks.iter().filter(|b| four.master_of(**b) != five.master_of(**b)).all(|b| five.master_of(*b) == Some("instance-5")));
        assert_eq!(MasterRing::new(&[]).master_of(blocks[0]), None);
    }

    #[test]
    fn a_map_puts_overrides_first_and_drops_those_to_the_dead_or_to_the_ring_anyway() {
        let b = BlockId { file: 1, block: 42 };
        let ring = MasterRing::new(&names(4));
        let home = ring.master_of(b).map(String::from).expect("a master");
        let other = names(4).into_iter().find(|n| *n != home).expect("another");
        let map = MasterMap::new(2, &names(4), BTreeMap::from([(b, other.clone())]));
        assert_eq!(map.master_of(b), Some(other.as_str()));
        let without: Vec<String> = names(4).into_iter().filter(|n| *n != other).collect();
        let map = MasterMap::new(3, &without, map.overrides().clone());
        assert_eq!(map.master_of(b), Some(home.as_str()), "an override to a dead instance goes");
        assert!(MasterMap::new(4, &names(4), BTreeMap::from([(b, home.clone())])).overrides().is_empty());
    }
}
