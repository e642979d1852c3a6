//! The decisions of a GRD reconfiguration, apart from the actor that runs it: which instance the
//! survivors' heartbeats evict, which blocks move to the instance that uses them (affinity) or
//! to even the masters' load, the new masters' entries rebuilt from the instances' reports, and
//! which blocks changed master.

use std::collections::{BTreeMap, BTreeSet};

use crate::messages::rac::{HeldBy, Holding, InstanceReport, RemasteredResource};
use crate::model::master_ring::MasterMap;
use crate::model::rac::BlockId;

/// Accesses to a block in one window below which it never moves by affinity: a block touched a
/// few times is not worth a reconfiguration.
pub const MIN_AFFINITY_ACCESSES: u64 = 16;

/// The live instance every other live instance that is up finds silent, if any, and the first
/// of those that found it (it recovers it). An instance known `down` (crashed) does not vote,
/// but may be evicted. One at a time: two instances cut off only from each other are both heard
/// by the others, and neither is evicted.
pub fn to_evict(live: &[String], down: &BTreeSet<String>, suspects: &BTreeMap<String, BTreeSet<String>>) -> Option<(String, String)> {
    live.iter().find_map(|peer| {
        let voters: Vec<&String> = live.iter().filter(|v| *v != peer && !down.contains(*v)).collect();
        let all = !voters.is_empty() && voters.iter().all(|v| suspects.get(*v).is_some_and(|s| s.contains(peer)));
        all.then(|| (peer.clone(), voters[0].clone()))
    })
}

/// The blocks one instance made more than `threshold` of the accesses to (at least
/// [`MIN_AFFINITY_ACCESSES`] in all), mastered elsewhere: each moves to that instance.
pub fn affinity(counts: &[(String, Vec<(BlockId, u64)>)], threshold: f64, map: &MasterMap, only: Option<BlockId>) -> Vec<(BlockId, String)> {
    let mut per_block: BTreeMap<BlockId, BTreeMap<&str, u64>> = BTreeMap::new();
    for (instance, blocks) in counts {
        for (block, n) in blocks {
            if only.is_none_or(|b| b == *block) {
                *per_block.entry(*block).or_default().entry(instance.as_str()).or_default() += n;
            }
        }
    }
    per_block
        .into_iter()
        .filter_map(|(block, by)| {
            let total: u64 = by.values().sum();
            let (top, n) = by.into_iter().max_by_key(|(_, n)| *n)?;
            let moves = total >= MIN_AFFINITY_ACCESSES && n as f64 > threshold * total as f64 && map.is_live(top) && map.master_of(block) != Some(top);
            moves.then(|| (block, top.to_string()))
        })
        .collect()
}

/// Moves that leave every live master with as many blocks with an entry as any other, give or
/// take one: from the most loaded to the least, one block at a time.
pub fn balance(load: &BTreeMap<String, Vec<BlockId>>) -> Vec<(BlockId, String)> {
    let mut load: BTreeMap<String, Vec<BlockId>> = load.clone();
    let mut moves = Vec::new();
    while let (Some(most), Some(least)) = (load.iter().max_by_key(|(_, b)| b.len()), load.iter().min_by_key(|(_, b)| b.len())) {
        if most.1.len() <= least.1.len() + 1 {
            break;
        }
        let (most, least) = (most.0.clone(), least.0.clone());
        let Some(block) = load.get_mut(&most).and_then(Vec::pop) else { break };
        load.entry(least.clone()).or_default().push(block);
        moves.push((block, least));
    }
    moves
}

/// Each master's entries in the configuration `map`: the holders of every block it masters, as
/// the instances reported them.
pub fn entries(map: &MasterMap, reports: &[InstanceReport]) -> BTreeMap<String, Vec<HeldBy>> {
    let mut by_block: BTreeMap<BlockId, Vec<(String, Holding)>> = BTreeMap::new();
    for r in reports {
        for h in &r.holdings {
            by_block.entry(h.block).or_default().push((r.instance.clone(), h.clone()));
        }
    }
    let mut out: BTreeMap<String, Vec<HeldBy>> = map.live().iter().map(|m| (m.clone(), Vec::new())).collect();
    for (block, holders) in by_block {
        if let Some(m) = map.master_of(block) {
            out.entry(m.to_string()).or_default().push((block, holders));
        }
    }
    out
}

/// The blocks among `blocks` whose master differs between `old` and `new`.
pub fn remastered(old: &MasterMap, new: &MasterMap, blocks: &BTreeSet<BlockId>) -> Vec<RemasteredResource> {
    blocks
        .iter()
        .filter_map(|b| {
            let (o, n) = (old.master_of(*b)?, new.master_of(*b)?);
            (o != n).then(|| RemasteredResource { resource_id: b.to_string(), old_master: o.to_string(), new_master: n.to_string() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rac::LockMode;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("instance-{i}")).collect()
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_instance_is_evicted_only_when_every_other_live_instance_finds_it_silent() {
        let live = names(4);
        let none = BTreeSet::new();
        let mut suspects = BTreeMap::from([("instance-1".to_string(), set(&["instance-3"])), ("instance-2".to_string(), set(&["instance-3"]))]);
        assert_eq!(to_evict(&live, &none, &suspects), None, "instance-4 still hears it");
        suspects.insert("instance-4".into(), set(&["instance-3"]));
        assert_eq!(to_evict(&live, &none, &suspects), Some(("instance-3".into(), "instance-1".into())));
        // Cut off from each other only: the others hear both, nobody is evicted.
        let pair = BTreeMap::from([("instance-1".to_string(), set(&["instance-2"])), ("instance-2".to_string(), set(&["instance-1"]))]);
        assert_eq!(to_evict(&live, &none, &pair), None);
        // Two instances: one of them goes, not both.
        assert_eq!(to_evict(&names(2), &none, &pair), Some(("instance-1".into(), "instance-2".into())));
        // Two crashed at once: neither votes, each is evicted by the two that are up.
        let two_down = set(&["instance-2", "instance-3"]);
        let heard = BTreeMap::from([("instance-1".to_string(), set(&["instance-3", "instance-2"])), ("instance-4".to_string(), set(&["instance-2", "instance-3"]))]);
        assert_eq!(to_evict(&live, &two_down, &heard), Some(("instance-2".into(), "instance-1".into())));
        let after: Vec<String> = live.iter().filter(|i| *i != "instance-2").cloned().collect();
        assert_eq!(to_evict(&after, &two_down, &heard), Some(("instance-3".into(), "instance-1".into())));
    }

    #[test]
    fn a_block_moves_to_the_instance_that_makes_most_of_its_accesses() {
        let map = MasterMap::new(1, &names(4), BTreeMap::new());
        let b = BlockId { file: 1, block: 42 };
        let home = map.master_of(b).map(String::from).expect("a master");
        let other = names(4).into_iter().find(|n| *n != home).expect("another");
        let counts = vec![(other.clone(), vec![(b, 90)]), (home.clone(), vec![(b, 10)])];
        assert_eq!(affinity(&counts, 0.8, &map, None), vec![(b, other.clone())]);
        assert_eq!(affinity(&counts, 0.95, &map, None), vec![], "90% is not more than 95%");
        assert_eq!(affinity(&[(other.clone(), vec![(b, 5)])], 0.8, &map, None), vec![], "too few accesses");
        assert_eq!(affinity(&[(home, vec![(b, 100)])], 0.8, &map, None), vec![], "its master already");
        assert_eq!(affinity(&counts, 0.8, &map, Some(BlockId { file: 1, block: 7 })), vec![]);
    }

    #[test]
    fn balancing_evens_the_masters_load() {
        let b = |n: u64| BlockId { file: 1, block: n };
        let load = BTreeMap::from([("a".to_string(), (0..7).map(b).collect()), ("b".to_string(), vec![b(10)]), ("c".to_string(), vec![])]);
        let moves = balance(&load);
        assert_eq!(moves.len(), 4, "{moves:?}");
        let to = |m: &str| moves.iter().filter(|(_, t)| t == m).count();
        assert_eq!((to("b"), to("c")), (2, 2), "8 blocks over 3 masters: 3, 3 and 2");
        assert_eq!(balance(&BTreeMap::from([("a".to_string(), vec![b(1)]), ("b".to_string(), vec![])])), vec![]);
    }

    #[test]
    fn entries_go_to_each_blocks_master_in_the_new_map() {
        let live = names(3);
        let b = BlockId { file: 1, block: 5 };
        let map = MasterMap::new(2, &live, BTreeMap::from([(b, "instance-3".to_string())]));
        let report = |who: &str, mode| InstanceReport { instance: who.into(), holdings: vec![Holding { block: b, mode, grant: 9 }], past_images: vec![] };
        let e = entries(&map, &[report("instance-1", LockMode::Shared), report("instance-2", LockMode::Shared)]);
        assert_eq!(e["instance-3"].len(), 1);
        assert_eq!(e["instance-3"][0].1.len(), 2);
        assert!(e["instance-1"].is_empty() && e["instance-2"].is_empty());
        let old = MasterMap::new(1, &live, BTreeMap::new());
        let moved = remastered(&old, &map, &BTreeSet::from([b]));
        assert_eq!(moved.len(), usize::from(old.master_of(b) != Some("instance-3")));
    }
}
