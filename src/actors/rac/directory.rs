//! A GRD master's state, apart from its actor: for each block it masters, who holds it in which
//! mode, who keeps a past image of it, and the one request being granted (the others wait in
//! line behind it). Its methods take what an instance told it and return what to send next
//! ([`Directive`]s), so the Cache Fusion protocol is tested here without actix.
//!
//! Every change of a block's locks goes through one line per block, up (shared, exclusive) and
//! down (a release or a downgrade is a request for null or shared), and one request is in
//! flight at a time: granted, it is done when the requester says it holds the block
//! ([`Directory::acquired`]). That order is what keeps at most one exclusive holder and makes
//! every shared grant one of the current version. A directive lost on the way is sent again
//! ([`Directory::in_flight`]); instances answer a repeated one as they did the first, and a
//! request repeated after its grant is ignored, so nothing is granted twice.

use std::collections::{BTreeMap, VecDeque};

use crate::messages::rac::{Directive, HeldBy, LockRequest};
use crate::model::rac::{BlockId, LockMode, Scn, TransferKind};

/// The request being granted and what it still waits for.
#[derive(Debug, Clone)]
struct InFlight {
    request: LockRequest,
    /// Shared holders told to drop their copies, not yet answered, by the grant they hold it by.
    invalidating: BTreeMap<String, u64>,
    /// Sent once `invalidating` is empty; then the request waits for `acquired`.
    grant: Grant,
}

#[derive(Debug, Clone)]
enum Grant {
    Ship { holder: String, holder_grant: u64, holder_keeps: LockMode, kind: TransferKind },
    FromDisk,
    Local,
}

/// One block's entry in the directory.
#[derive(Debug, Clone, Default)]
struct Resource {
    /// Holders in shared or exclusive mode (null holders are absent).
    holders: BTreeMap<String, LockMode>,
    /// Instances keeping a past image, and its version.
    past_images: BTreeMap<String, Scn>,
    in_flight: Option<InFlight>,
    waiting: VecDeque<LockRequest>,
    /// Per requester, the last request whose grant is done: an older or repeated one that
    /// arrives later (delayed on the link) is ignored.
    last_done: BTreeMap<String, u64>,
}

impl Resource {
    fn is_idle(&self) -> bool {
        self.holders.is_empty() && self.past_images.is_empty() && self.in_flight.is_none() && self.waiting.is_empty()
    }
}

/// What the directory shows of a block (`/grd/resources`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceState {
    pub block: BlockId,
    pub holders: Vec<(String, LockMode)>,
    pub past_images: Vec<(String, Scn)>,
    /// The requester whose grant is in flight, and how many wait behind it.
    pub granting: Option<String>,
    pub waiting: usize,
}

/// The blocks one instance masters.
#[derive(Debug)]
pub struct Directory {
    /// The instance this master runs on: a block it holds is shipped 2-way.
    me: String,
    resources: BTreeMap<BlockId, Resource>,
}

impl Directory {
    pub fn new(me: impl Into<String>) -> Directory {
        Directory { me: me.into(), resources: BTreeMap::new() }
    }

    /// The directory of a new GRD configuration, rebuilt from what the live instances reported
    /// they hold of the blocks it masters now: no grant is in flight (requests of the
    /// configuration before are void and asked again) and no past image is left (they were
    /// written to disk before the GRD resumed).
    pub fn rebuilt(me: impl Into<String>, entries: Vec<HeldBy>) -> Directory {
        let mut d = Directory::new(me);
        for (block, holders) in entries {
            let resource = d.resources.entry(block).or_default();
            for (instance, h) in holders {
                set_mode(&mut resource.holders, &instance, h.mode);
                resource.last_done.insert(instance, h.grant);
            }
            d.forget_if_idle(block);
        }
        d
    }

    /// An instance asks for a block: granted at once if the block is free, else queued.
    pub fn request(&mut self, request: LockRequest) -> Vec<Directive> {
        let block = request.block;
        let resource = self.resources.entry(block).or_default();
        if let Some(f) = &resource.in_flight {
            if f.request == request {
                // Asked again: the answer was lost, or is slow. Sent again, not granted again.
                return Self::pending(f);
            }
        }
        match resource.last_done.get(&request.requester) {
            // The last one granted, asked again: its answer was lost (a release's, say). Told
            // again; the instance takes a repeat as done already.
            Some(&id) if id == request.request_id => return vec![Directive::GrantLocal { request }],
            Some(&id) if request.request_id < id => return Vec::new(),
            _ => {}
        }
        if resource.waiting.contains(&request) {
            return Vec::new();
        }
        resource.waiting.push_back(request);
        self.next(block)
    }

    /// The requester holds the block in the mode it asked for: the grant in flight is done, and
    /// the next request in line is taken. `past_image`: the holder that shipped it kept a past
    /// image of that version (its changes were not on disk yet).
    pub fn acquired(&mut self, block: BlockId, request_id: u64, requester: &str, past_image: Option<Scn>) -> Vec<Directive> {
        let Some(resource) = self.resources.get_mut(&block) else { return Vec::new() };
        let done = resource.in_flight.as_ref().is_some_and(|f| f.request.request_id == request_id && f.request.requester == requester && f.invalidating.is_empty());
        if !done {
            return Vec::new();
        }
        let Some(f) = resource.in_flight.take() else { return Vec::new() };
        if let Grant::Ship { holder, holder_keeps, .. } = &f.grant {
            set_mode(&mut resource.holders, holder, *holder_keeps);
            if let Some(scn) = past_image.filter(|_| *holder_keeps == LockMode::Null) {
                resource.past_images.insert(holder.clone(), scn);
            }
        }
        set_mode(&mut resource.holders, &f.request.requester, f.request.mode);
        resource.last_done.insert(f.request.requester.clone(), f.request.request_id);
        self.next(block)
    }

    /// A shared holder dropped its copy as told, keeping a past image of version `past_image` if
    /// its copy had changes not yet on disk.
    pub fn invalidated(&mut self, block: BlockId, holder: &str, past_image: Option<Scn>) -> Vec<Directive> {
        let Some(resource) = self.resources.get_mut(&block) else { return Vec::new() };
        let Some(f) = resource.in_flight.as_mut() else { return Vec::new() };
        if f.invalidating.remove(holder).is_none() {
            return Vec::new();
        }
        resource.holders.remove(holder);
        if let Some(scn) = past_image {
            resource.past_images.insert(holder.to_string(), scn);
        }
        if f.invalidating.is_empty() {
            vec![Self::grant(f)]
        } else {
            Vec::new()
        }
    }

    /// Version `scn` of `block` is on disk: the past images no newer are of no use now.
    pub fn written_to_disk(&mut self, block: BlockId, scn: Scn) -> Vec<Directive> {
        let Some(resource) = self.resources.get_mut(&block) else { return Vec::new() };
        let stale: Vec<String> = resource.past_images.iter().filter(|(_, &v)| v <= scn).map(|(h, _)| h.clone()).collect();
        for holder in &stale {
            resource.past_images.remove(holder);
        }
        self.forget_if_idle(block);
        stale.into_iter().map(|holder| Directive::DiscardPastImage { holder, block, up_to: scn }).collect()
    }

    /// What the grant in flight on `block` still waits for, to be sent again.
    pub fn in_flight(&self, block: BlockId) -> Vec<Directive> {
        self.resources.get(&block).and_then(|r| r.in_flight.as_ref()).map(Self::pending).unwrap_or_default()
    }

    /// The blocks with a grant in flight.
    #[cfg(test)]
    pub fn busy(&self) -> impl Iterator<Item = BlockId> + '_ {
        self.resources.iter().filter(|(_, r)| r.in_flight.is_some()).map(|(b, _)| *b)
    }

    pub fn state(&self, block: BlockId) -> Option<ResourceState> {
        let r = self.resources.get(&block)?;
        Some(ResourceState {
            block,
            holders: r.holders.iter().map(|(h, m)| (h.clone(), *m)).collect(),
            past_images: r.past_images.iter().map(|(h, s)| (h.clone(), *s)).collect(),
            granting: r.in_flight.as_ref().map(|f| f.request.requester.clone()),
            waiting: r.waiting.len(),
        })
    }

    pub fn blocks(&self) -> impl Iterator<Item = BlockId> + '_ {
        self.resources.keys().copied()
    }

    /// Starts granting the first requests in line, while the block is free: a conversion down
    /// is done at once, one up waits for `acquired`.
    fn next(&mut self, block: BlockId) -> Vec<Directive> {
        let me = self.me.clone();
        let Some(resource) = self.resources.get_mut(&block) else { return Vec::new() };
        let mut out = Vec::new();
        while resource.in_flight.is_none() {
            let Some(request) = resource.waiting.pop_front() else { break };
            let held = resource.holders.get(&request.requester).copied().unwrap_or(LockMode::Null);
            if request.mode <= held {
                set_mode(&mut resource.holders, &request.requester, request.mode);
                resource.last_done.insert(request.requester.clone(), request.request_id);
                out.push(Directive::GrantLocal { request });
                continue;
            }
            let f = plan(&me, &resource.holders, &resource.last_done, request);
            out.extend(Self::pending(&f));
            resource.in_flight = Some(f);
        }
        self.forget_if_idle(block);
        out
    }

    fn forget_if_idle(&mut self, block: BlockId) {
        if self.resources.get(&block).is_some_and(Resource::is_idle) {
            self.resources.remove(&block);
        }
    }

    fn pending(f: &InFlight) -> Vec<Directive> {
        if f.invalidating.is_empty() {
            return vec![Self::grant(f)];
        }
        f.invalidating.iter().map(|(holder, grant)| Directive::Invalidate { holder: holder.clone(), holder_grant: *grant, block: f.request.block }).collect()
    }

    fn grant(f: &InFlight) -> Directive {
        let request = f.request.clone();
        match &f.grant {
            Grant::Ship { holder, holder_grant, holder_keeps, kind } => {
                Directive::Ship { holder: holder.clone(), holder_grant: *holder_grant, request, holder_keeps: *holder_keeps, kind: *kind }
            }
            Grant::FromDisk => Directive::GrantFromDisk { request },
            Grant::Local => Directive::GrantLocal { request },
        }
    }

}

/// Records that `holder` holds `mode` (null: holds nothing).
fn set_mode(holders: &mut BTreeMap<String, LockMode>, holder: &str, mode: LockMode) {
    if mode == LockMode::Null {
        holders.remove(holder);
    } else {
        holders.insert(holder.to_string(), mode);
    }
}

/// How to grant `request` given the block's holders (the requester's own lock is weaker than it
/// asks for).
fn plan(me: &str, holders: &BTreeMap<String, LockMode>, grants: &BTreeMap<String, u64>, request: LockRequest) -> InFlight {
    let kind = |holder: &str| if holder == me { TransferKind::TwoWay } else { TransferKind::ThreeWay };
    let grant_of = |holder: &str| grants.get(holder).copied().unwrap_or(0);
    let others: Vec<(&String, &LockMode)> = holders.iter().filter(|(h, _)| **h != request.requester).collect();
    let exclusive = others.iter().find(|(_, m)| **m == LockMode::Exclusive).map(|(h, _)| (*h).clone());
    let requester_holds = holders.contains_key(&request.requester);
    let (invalidating, grant) = match (request.mode, exclusive) {
        // The exclusive holder ships its current copy and keeps a shared one (a read) or
        // none (a write).
        (mode, Some(holder)) => {
            let holder_keeps = if mode == LockMode::Shared { LockMode::Shared } else { LockMode::Null };
            (BTreeMap::new(), Grant::Ship { kind: kind(&holder), holder_grant: grant_of(&holder), holder, holder_keeps })
        }
        // Shared holders all have the current version: one of them ships it, the master first.
        (LockMode::Shared, None) => match shipper(me, &others) {
            Some(holder) => (BTreeMap::new(), Grant::Ship { kind: kind(&holder), holder_grant: grant_of(&holder), holder, holder_keeps: LockMode::Shared }),
            None => (BTreeMap::new(), Grant::FromDisk),
        },
        // Exclusive: every other shared copy goes first. A shared holder converting keeps its
        // own copy; anyone else is shipped one by a holder, that gives it up, or reads disk.
        (_, None) if requester_holds => (others.iter().map(|(h, _)| ((*h).clone(), grant_of(h))).collect(), Grant::Local),
        (_, None) => match shipper(me, &others) {
            Some(holder) => {
                let invalidating = others.iter().filter(|(h, _)| **h != holder).map(|(h, _)| ((*h).clone(), grant_of(h))).collect();
                (invalidating, Grant::Ship { kind: kind(&holder), holder_grant: grant_of(&holder), holder, holder_keeps: LockMode::Null })
            }
            None => (BTreeMap::new(), Grant::FromDisk),
        },
    };
    InFlight { request, invalidating, grant }
}

/// The holder to ship a shared block: the master itself if it holds one (2-way), else the first.
fn shipper(me: &str, holders: &[(&String, &LockMode)]) -> Option<String> {
    holders.iter().find(|(h, _)| h.as_str() == me).or_else(|| holders.first()).map(|(h, _)| (*h).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: BlockId = BlockId { file: 1, block: 42 };

    fn req(id: u64, who: &str, mode: LockMode) -> LockRequest {
        LockRequest { request_id: id, requester: who.into(), block: B, mode }
    }

    fn holders(d: &Directory) -> Vec<(String, LockMode)> {
        d.state(B).map(|s| s.holders).unwrap_or_default()
    }

    /// Grants `r` and acknowledges it at once; returns the first directive.
    fn grant(d: &mut Directory, r: LockRequest) -> Directive {
        let out = d.request(r.clone());
        assert_eq!(out.len(), 1, "{out:?}");
        d.acquired(B, r.request_id, &r.requester, None);
        out[0].clone()
    }

    #[test]
    fn a_block_nobody_holds_is_read_from_disk_then_shipped_by_its_holder() {
        let mut d = Directory::new("i1");
        assert_eq!(grant(&mut d, req(1, "i2", LockMode::Shared)), Directive::GrantFromDisk { request: req(1, "i2", LockMode::Shared) });
        assert_eq!(holders(&d), vec![("i2".into(), LockMode::Shared)]);
        // Another reader: the shared holder ships it (3-way: not the master's own copy).
        let out = grant(&mut d, req(1, "i3", LockMode::Shared));
        assert!(matches!(out, Directive::Ship { ref holder, holder_keeps: LockMode::Shared, kind: TransferKind::ThreeWay, .. } if holder == "i2"), "{out:?}");
        // The master holds it too now: a third reader gets the master's copy, 2-way.
        grant(&mut d, req(2, "i1", LockMode::Shared));
        let out = grant(&mut d, req(1, "i4", LockMode::Shared));
        assert!(matches!(out, Directive::Ship { ref holder, kind: TransferKind::TwoWay, .. } if holder == "i1"), "{out:?}");
        assert_eq!(holders(&d).len(), 4);
    }

    #[test]
    fn a_write_invalidates_every_other_shared_copy_before_its_grant() {
        let mut d = Directory::new("i1");
        grant(&mut d, req(1, "i2", LockMode::Shared));
        grant(&mut d, req(1, "i3", LockMode::Shared));
        grant(&mut d, req(1, "i4", LockMode::Shared));
        // i4 converts to exclusive: i2 and i3 drop their copies first, then i4 keeps its own.
        let out = d.request(req(2, "i4", LockMode::Exclusive));
        assert_eq!(out, vec![Directive::Invalidate { holder: "i2".into(), holder_grant: 1, block: B }, Directive::Invalidate { holder: "i3".into(), holder_grant: 1, block: B }]);
        assert_eq!(d.acquired(B, 2, "i4", None), vec![], "not granted before the invalidations are answered");
        assert_eq!(d.invalidated(B, "i2", None), vec![]);
        assert_eq!(d.invalidated(B, "i3", Some(7)), vec![Directive::GrantLocal { request: req(2, "i4", LockMode::Exclusive) }]);
        d.acquired(B, 2, "i4", None);
        assert_eq!(holders(&d), vec![("i4".into(), LockMode::Exclusive)]);
        assert_eq!(d.state(B).map(|s| s.past_images), Some(vec![("i3".into(), 7)]));
        // A writer holding nothing: one shared holder ships and gives it up, the others drop theirs.
        let mut d = Directory::new("i1");
        grant(&mut d, req(1, "i2", LockMode::Shared));
        grant(&mut d, req(1, "i3", LockMode::Shared));
        let out = d.request(req(1, "i4", LockMode::Exclusive));
        assert_eq!(out, vec![Directive::Invalidate { holder: "i3".into(), holder_grant: 1, block: B }]);
        let out = d.invalidated(B, "i3", None);
        assert!(matches!(&out[..], [Directive::Ship { holder, holder_keeps: LockMode::Null, .. }] if holder == "i2"), "{out:?}");
        d.acquired(B, 1, "i4", None);
        assert_eq!(holders(&d), vec![("i4".into(), LockMode::Exclusive)]);
    }

    #[test]
    fn the_exclusive_holder_ships_and_downgrades_for_a_read_and_gives_up_for_a_write() {
        let mut d = Directory::new("i1");
        grant(&mut d, req(1, "i2", LockMode::Exclusive));
        let out = grant(&mut d, req(1, "i3", LockMode::Shared));
        assert!(matches!(out, Directive::Ship { ref holder, holder_keeps: LockMode::Shared, .. } if holder == "i2"));
        assert_eq!(holders(&d), vec![("i2".into(), LockMode::Shared), ("i3".into(), LockMode::Shared)]);
        assert_eq!(d.request(req(2, "i3", LockMode::Exclusive)), vec![Directive::Invalidate { holder: "i2".into(), holder_grant: 1, block: B }]);
        d.invalidated(B, "i2", None);
        d.acquired(B, 2, "i3", None);
        let out = d.request(req(2, "i2", LockMode::Exclusive));
        assert!(matches!(&out[..], [Directive::Ship { holder, holder_keeps: LockMode::Null, .. }] if holder == "i3"), "{out:?}");
        d.acquired(B, 2, "i2", Some(9));
        assert_eq!(holders(&d), vec![("i2".into(), LockMode::Exclusive)]);
        assert_eq!(d.state(B).map(|s| s.past_images), Some(vec![("i3".into(), 9)]), "the shipper's past image is known");
        // Written to disk at a newer version: the past image goes.
        assert_eq!(d.written_to_disk(B, 10), vec![Directive::DiscardPastImage { holder: "i3".into(), block: B, up_to: 10 }]);
        assert_eq!(d.state(B).map(|s| s.past_images), Some(vec![]));
    }

    #[test]
    fn requests_wait_in_line_and_a_release_takes_its_turn() {
        let mut d = Directory::new("i1");
        grant(&mut d, req(1, "i2", LockMode::Exclusive));
        let first = d.request(req(1, "i3", LockMode::Exclusive));
        assert_eq!(first.len(), 1);
        // Queued behind the grant in flight: nothing happens yet.
        assert_eq!(d.request(req(1, "i4", LockMode::Shared)), vec![]);
        assert_eq!(d.request(req(2, "i2", LockMode::Null)), vec![], "i2's release waits for the grant that asks it to ship");
        assert_eq!(d.state(B).map(|s| (s.granting, s.waiting)), Some((Some("i3".into()), 2)));
        // i3 has it: i4's read is forwarded to i3; i2 holds nothing already, so its release is a no-op.
        let out = d.acquired(B, 1, "i3", None);
        assert!(matches!(&out[..], [Directive::Ship { holder, request, .. }] if holder == "i3" && request.requester == "i4"), "{out:?}");
        // i2's release was in line behind i4's read; it is answered now.
        assert_eq!(d.acquired(B, 1, "i4", None), vec![Directive::GrantLocal { request: req(2, "i2", LockMode::Null) }]);
        assert_eq!(holders(&d), vec![("i3".into(), LockMode::Shared), ("i4".into(), LockMode::Shared)]);
        assert_eq!(d.state(B).map(|s| s.waiting), Some(0));
        // Releases by everyone: the directory forgets the block.
        assert_eq!(d.request(req(3, "i3", LockMode::Null)), vec![Directive::GrantLocal { request: req(3, "i3", LockMode::Null) }]);
        assert_eq!(d.request(req(3, "i4", LockMode::Null)).len(), 1);
        assert_eq!(d.state(B), None);
    }

    #[test]
    fn a_repeated_request_is_answered_again_and_never_granted_twice() {
        let mut d = Directory::new("i1");
        grant(&mut d, req(1, "i2", LockMode::Exclusive));
        let out = d.request(req(1, "i3", LockMode::Exclusive));
        assert_eq!(d.request(req(1, "i3", LockMode::Exclusive)), out, "asked again while in flight: the same directive");
        assert_eq!(d.in_flight(B), out);
        d.acquired(B, 1, "i3", None);
        d.acquired(B, 1, "i3", None);
        // Arriving after its grant: told again that it is granted, never planned again (i2 would
        // otherwise be asked to ship a block it gave up); an older one is ignored.
        assert_eq!(d.request(req(1, "i3", LockMode::Exclusive)), vec![Directive::GrantLocal { request: req(1, "i3", LockMode::Exclusive) }]);
        d.request(req(2, "i3", LockMode::Shared));
        assert_eq!(d.request(req(1, "i3", LockMode::Exclusive)), vec![]);
        assert_eq!(holders(&d), vec![("i3".into(), LockMode::Shared)]);
        assert_eq!(d.busy().count(), 0);
    }
}
