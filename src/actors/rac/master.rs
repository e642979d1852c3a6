//! `GrdMasterActor`: the GRD master on one instance, for the blocks the configuration's map
//! gives it. It keeps their [`Directory`] and sends its directives to the instances through the
//! link; a grant that stays unanswered is sent again, since the link may lose it. A
//! reconfiguration freezes it (its directory dropped) and rebuilds it from the instances'
//! reports; messages of another configuration are dropped.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use actix::prelude::*;

use super::directory::Directory;
use super::interconnect::PairCounts;
use super::RacPeers;
use crate::actors::net::Link;
use crate::messages::rac::*;
use crate::model::master_ring::MasterMap;
use crate::model::rac::BlockId;

/// How long a grant in flight waits for its answer before its directives are sent again.
const RESEND_AFTER: Duration = Duration::from_millis(300);

pub struct GrdMasterActor {
    name: String,
    directory: Directory,
    map: Arc<MasterMap>,
    /// Between a reconfiguration's freeze and its rebuild: takes nothing.
    frozen: bool,
    /// Crashed with its instance: takes nothing until the instance rejoins.
    down: bool,
    peers: Arc<OnceLock<RacPeers>>,
    link: Link,
    /// When each block's directives were last sent. A grant in flight always sent some, so the
    /// grants to send again are among these: the directory is never scanned for them.
    sent: HashMap<BlockId, Instant>,
    counts: Arc<PairCounts>,
}

impl GrdMasterActor {
    pub fn new(name: String, map: Arc<MasterMap>, peers: Arc<OnceLock<RacPeers>>, link: Link, counts: Arc<PairCounts>) -> GrdMasterActor {
        GrdMasterActor { directory: Directory::new(name.clone()), name, map, frozen: false, down: false, peers, link, sent: HashMap::new(), counts }
    }

    /// Drops the directory and what waits to be sent again.
    fn drop_state(&mut self) -> Vec<BlockId> {
        let had: Vec<BlockId> = self.directory.blocks().collect();
        self.directory = Directory::new(self.name.clone());
        self.sent.clear();
        had
    }

    fn send(&mut self, block: BlockId, directives: Vec<Directive>) {
        if directives.is_empty() {
            return;
        }
        self.sent.insert(block, Instant::now());
        let Some(peers) = self.peers.get() else { return };
        for d in directives {
            // The name is the peers' own, so that `d` can move into the message.
            if let Some((to, addr)) = peers.instances.get_key_value(d.to()) {
                self.counts.sent(&self.name, to);
                self.link.deliver(&self.name, to, addr, Stamped { epoch: self.map.epoch, body: ToInstance::Directive(d) });
            }
        }
    }

    /// Sends again the directives of every grant unanswered for [`RESEND_AFTER`]; forgets the
    /// blocks with none in flight.
    fn resend(&mut self) {
        let now = Instant::now();
        let due: Vec<BlockId> = self.sent.iter().filter(|(_, at)| now.duration_since(**at) >= RESEND_AFTER).map(|(b, _)| *b).collect();
        for block in due {
            let directives = self.directory.in_flight(block);
            if directives.is_empty() {
                self.sent.remove(&block);
            } else {
                self.send(block, directives);
            }
        }
    }

    fn view(&self, block: BlockId) -> Option<ResourceView> {
        let s = self.directory.state(block)?;
        Some(ResourceView {
            resource_id: block.to_string(),
            master: self.name.clone(),
            holders: s.holders.into_iter().map(|(instance_id, lock_mode)| LockHolder { instance_id, lock_mode }).collect(),
            past_images: s.past_images.into_iter().map(|(instance_id, scn)| PastImageView { instance_id, scn }).collect(),
            granting: s.granting,
            waiting: s.waiting,
        })
    }
}

impl Actor for GrdMasterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(RESEND_AFTER / 3, |act, _| act.resend());
    }
}

impl Supervised for GrdMasterActor {}

impl Handler<Stamped<ToMaster>> for GrdMasterActor {
    type Result = ();
    fn handle(&mut self, msg: Stamped<ToMaster>, _ctx: &mut Self::Context) {
        if self.down || self.frozen || msg.epoch != self.map.epoch {
            return;
        }
        let block = match &msg.body {
            ToMaster::Request(r) => r.block,
            ToMaster::Acquired { block, .. } | ToMaster::Invalidated { block, .. } | ToMaster::WrittenToDisk { block, .. } => *block,
        };
        if self.map.master_of(block) != Some(self.name.as_str()) {
            tracing::debug!(master = %self.name, %block, "a message for a block mastered elsewhere in this configuration; dropped");
            return;
        }
        let (block, directives) = match msg.body {
            ToMaster::Request(request) => (request.block, self.directory.request(request)),
            ToMaster::Acquired { block, request_id, requester, past_image } => (block, self.directory.acquired(block, request_id, &requester, past_image)),
            ToMaster::Invalidated { block, holder, past_image } => (block, self.directory.invalidated(block, &holder, past_image)),
            ToMaster::WrittenToDisk { block, scn } => (block, self.directory.written_to_disk(block, scn)),
        };
        self.send(block, directives);
    }
}

impl Handler<GetResources> for GrdMasterActor {
    type Result = Vec<ResourceView>;
    fn handle(&mut self, msg: GetResources, _ctx: &mut Self::Context) -> Self::Result {
        match msg.block {
            Some(block) => self.view(block).into_iter().collect(),
            None => self.directory.blocks().take(msg.limit).filter_map(|b| self.view(b)).collect(),
        }
    }
}

impl Handler<CountResources> for GrdMasterActor {
    type Result = usize;
    fn handle(&mut self, _: CountResources, _ctx: &mut Self::Context) -> usize {
        self.directory.blocks().count()
    }
}

impl Handler<FreezeMaster> for GrdMasterActor {
    type Result = ();
    fn handle(&mut self, msg: FreezeMaster, _ctx: &mut Self::Context) {
        if self.down || msg.epoch <= self.map.epoch {
            return; // no answer: the control tries again, or counts this master failed
        }
        self.frozen = true;
        let had = self.drop_state();
        let _ = msg.reply.send(had);
    }
}

impl Handler<RebuildMaster> for GrdMasterActor {
    type Result = ();
    fn handle(&mut self, msg: RebuildMaster, _ctx: &mut Self::Context) {
        if self.down || msg.map.epoch < self.map.epoch {
            return;
        }
        if msg.map.epoch == self.map.epoch {
            // Rebuilt already; the answer was lost.
            if !self.frozen {
                let _ = msg.reply.send(());
            }
            return;
        }
        self.directory = Directory::rebuilt(self.name.clone(), msg.entries);
        self.map = msg.map;
        self.frozen = false;
        let _ = msg.reply.send(());
    }
}

impl Handler<CrashInstance> for GrdMasterActor {
    type Result = ();
    fn handle(&mut self, _: CrashInstance, _ctx: &mut Self::Context) {
        self.down = true;
        self.drop_state();
    }
}

impl Handler<RejoinInstance> for GrdMasterActor {
    type Result = Result<(), RacError>;
    fn handle(&mut self, _: RejoinInstance, _ctx: &mut Self::Context) -> Self::Result {
        // Up, but frozen until the reconfiguration that takes the instance in rebuilds it.
        self.down = false;
        self.frozen = true;
        Ok(())
    }
}
