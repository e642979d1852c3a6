//! `RacInstanceActor`: one RAC instance's shell. Its protocol is an [`InstanceState`]; the shell
//! routes what it sends (to each block's master by the ring, to other instances), does its I/O
//! (disk reads and write-backs on the blocking pool, redo on the instance's own lane on disk,
//! gathered into one commit per batch, checkpoints at low priority), answers the faces and publishes
//! events. Every message it sends is stamped with its GRD configuration's epoch, and one of
//! another configuration is dropped; a crash (fault injection) loses its cache and operations,
//! and what was under way then is ignored when it completes (its incarnation is over).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use actix::prelude::*;

use super::interconnect::{Interconnect, PairCounts, HEARTBEAT_EVERY};
use super::protocol::{Answer, InstanceState, Output, Wants, RETRY_AFTER};
use crate::model::master_ring::MasterMap;
use super::store::{BlockStore, RedoLog, RedoRecord};
use super::RacPeers;
use crate::actors::net::Link;
use crate::actors::registry::{EventPublisher, InterestTable};
use crate::exec::{BackgroundPool, Lane};
use crate::messages::events::{Event, Severity};
use crate::messages::rac::*;
use crate::model::rac::BlockId;

/// How long a face waits for an operation; the operation itself goes on.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Redo bytes between checkpoints: each writes back what this instance changed that is not on
/// disk, then drops the redo before it, so the log stays about this long.
const CHECKPOINT_EVERY_BYTES: u64 = 64 << 20;

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, RacError>>;

/// Who waits for an operation's answer.
enum Waiting {
    Read(Reply<BlockRead>),
    Write(Reply<BlockWritten>),
    Convert(Reply<LockChanged>),
}

/// What the shell is given to start an instance.
pub struct InstanceSetup {
    pub name: String,
    pub cache_blocks: usize,
    pub map: Arc<MasterMap>,
    pub store: Arc<crate::storage::Store>,
    pub peers: Arc<OnceLock<RacPeers>>,
    pub link: Link,
    pub blocks: Arc<BlockStore>,
    pub redo: RedoLog,
    pub events: EventPublisher,
    pub interest: Arc<InterestTable>,
    pub background: Arc<BackgroundPool>,
    /// Every instance, for heartbeats.
    pub instances: Vec<String>,
    pub counts: Arc<PairCounts>,
}

pub struct RacInstanceActor {
    state: InstanceState,
    cache_blocks: usize,
    wants: Wants,
    map: Arc<MasterMap>,
    store: Arc<crate::storage::Store>,
    /// Crashed: answers nothing, takes nothing, until it rejoins.
    down: bool,
    /// Bumped by a crash: I/O started before it finds the incarnation over when it completes.
    incarnation: u64,
    /// Operations asked per block since the control last took the counts (remastering by
    /// affinity). Holds at most the blocks touched in one window (`rac.remaster_window_ms`).
    accesses: HashMap<BlockId, u64>,
    peers: Arc<OnceLock<RacPeers>>,
    link: Link,
    blocks: Arc<BlockStore>,
    redo: Arc<parking_lot::Mutex<RedoLog>>,
    lane: Lane,
    events: EventPublisher,
    background: Arc<BackgroundPool>,
    waiting: HashMap<u64, Waiting>,
    next_op: u64,
    /// Redo records gathered while a commit is out, committed together next.
    redo_queue: Vec<RedoRecord>,
    redo_writing: bool,
    /// Where the redo log ended after the last commit, and where it ended at the last checkpoint.
    redo_end: u64,
    checkpointed_at: u64,
    checkpointing: bool,
    /// Stopped with the runtime: its supervisor may start it again, idle.
    stopped: bool,
    interconnect: Interconnect,
    counts: Arc<PairCounts>,
}

impl RacInstanceActor {
    pub fn new(setup: InstanceSetup) -> RacInstanceActor {
        let InstanceSetup { name, cache_blocks, map, store, peers, link, blocks, redo, events, interest, background, instances, counts } = setup;
        let interconnect = Interconnect::new(&name, &instances);
        let lane = Lane::start(&format!("rac-{name}"));
        let redo_end = redo.end();
        let wants: Wants = Arc::new(move |t| interest.wants(t));
        RacInstanceActor {
            state: InstanceState::new(name, cache_blocks, first_request(), wants.clone()),
            cache_blocks,
            wants,
            map,
            store,
            down: false,
            incarnation: 0,
            accesses: HashMap::new(),
            peers,
            link,
            blocks,
            redo: Arc::new(parking_lot::Mutex::new(redo)),
            lane,
            events,
            background,
            waiting: HashMap::new(),
            next_op: 0,
            redo_queue: Vec::new(),
            redo_writing: false,
            redo_end,
            checkpointed_at: redo_end,
            checkpointing: false,
            stopped: false,
            interconnect,
            counts,
        }
    }

    fn name(&self) -> &str {
        self.state.name()
    }

    /// Does what the protocol asked for.
    fn apply(&mut self, outputs: Vec<Output>, ctx: &mut Context<Self>) {
        for output in outputs {
            match output {
                Output::ToMaster(block, msg) => self.to_master(block, msg),
                Output::ToInstance(to, msg) => self.to_instance(&to, msg),
                Output::Redo(record) => {
                    self.redo_queue.push(record);
                    self.commit_redo(ctx);
                }
                Output::WriteBack(block, image) => self.write_back(block, image, ctx),
                Output::ReadDisk(request) => self.read_disk(request, ctx),
                Output::Answer(id, answer) => self.answer(id, answer),
                Output::Event(event) => self.events.publish(Event::now(Severity::Info, format!("rac:{}", self.name()), event)),
            }
        }
    }

    fn to_master(&self, block: BlockId, msg: ToMaster) {
        let (Some(master), Some(peers)) = (self.map.master_of(block), self.peers.get()) else { return };
        if let Some(addr) = peers.masters.get(master) {
            self.counts.sent(self.name(), master);
            self.link.deliver(self.name(), master, addr, Stamped { epoch: self.map.epoch, body: msg });
        }
    }

    fn to_instance(&self, to: &str, msg: ToInstance) {
        let Some(peers) = self.peers.get() else { return };
        if let Some(addr) = peers.instances.get(to) {
            self.counts.sent(self.name(), to);
            self.link.deliver(self.name(), to, addr, Stamped { epoch: self.map.epoch, body: msg });
        }
    }

    /// Whether I/O started in `incarnation` may still change this instance's state.
    fn current(&self, incarnation: u64) -> bool {
        !self.down && incarnation == self.incarnation
    }

    fn answer(&mut self, id: u64, answer: Result<Answer, RacError>) {
        let Some(waiting) = self.waiting.remove(&id) else { return };
        let mismatch = || RacError::Storage { message: "an operation was answered as another kind".into() };
        // A receiver gone is a caller that stopped waiting (`OP_TIMEOUT`): nothing to tell.
        match waiting {
            Waiting::Read(r) => drop(r.send(answer.and_then(|a| if let Answer::Read(a) = a { Ok(a) } else { Err(mismatch()) }))),
            Waiting::Write(r) => drop(r.send(answer.and_then(|a| if let Answer::Written(a) = a { Ok(a) } else { Err(mismatch()) }))),
            Waiting::Convert(r) => drop(r.send(answer.and_then(|a| if let Answer::Changed(a) = a { Ok(a) } else { Err(mismatch()) }))),
        }
    }

    /// Commits the redo gathered so far, if no commit is out: one fsync for all of it.
    fn commit_redo(&mut self, ctx: &mut Context<Self>) {
        if self.redo_writing || self.redo_queue.is_empty() {
            return;
        }
        self.redo_writing = true;
        if !self.store.is_durable() {
            // In memory there is no fsync to wait for: committed here, which saves the two
            // thread hops to the lane and back. What the answers queue meanwhile goes next.
            while !self.redo_queue.is_empty() {
                let records = std::mem::take(&mut self.redo_queue);
                let res = self.redo.lock().append(&records).map_err(RacError::from);
                self.redo_committed(written(&records), res, ctx);
            }
            self.redo_writing = false;
            return self.checkpoint(ctx);
        }
        let records = std::mem::take(&mut self.redo_queue);
        let versions = written(&records);
        let redo = self.redo.clone();
        let incarnation = self.incarnation;
        let commit = self.lane.run(move || redo.lock().append(&records).map_err(RacError::from));
        ctx.spawn(actix::fut::wrap_future::<_, Self>(commit).map(move |res: Result<u64, RacError>, act, ctx| {
            if !act.current(incarnation) {
                return;
            }
            act.redo_writing = false;
            act.redo_committed(versions, res, ctx);
            act.commit_redo(ctx);
            act.checkpoint(ctx);
        }));
    }

    /// The redo of the writes of these versions is durable (or failed): their operations go on.
    fn redo_committed(&mut self, versions: Vec<(BlockId, u64)>, res: Result<u64, RacError>, ctx: &mut Context<Self>) {
        if let Ok(end) = &res {
            self.redo_end = *end;
        }
        for (block, scn) in versions {
            let out = self.state.redo_durable(block, scn, res.as_ref().map(|_| ()).map_err(Clone::clone));
            self.apply(out, ctx);
        }
    }
    fn write_back(&mut self, block: BlockId, image: BlockImage, ctx: &mut Context<Self>) {
        let blocks = self.blocks.clone();
        let scn = image.scn;
        let incarnation = self.incarnation;
        let work = crate::exec::blocking(move || blocks.write_back(block, &image).map_err(RacError::from));
        ctx.spawn(actix::fut::wrap_future::<_, Self>(work).map(move |res, act, ctx| {
            if !act.current(incarnation) {
                return;
            }
            if let Err(e) = &res {
                tracing::warn!(instance = %act.name(), %block, error = %e, "write-back failed; the lock is kept");
            }
            let out = act.state.written_back(block, scn, res);
            act.apply(out, ctx);
        }));
    }

    fn read_disk(&mut self, request: LockRequest, ctx: &mut Context<Self>) {
        let blocks = self.blocks.clone();
        let block = request.block;
        // A grant of another configuration is void: its read is dropped.
        let (incarnation, epoch) = (self.incarnation, self.map.epoch);
        let work = crate::exec::blocking(move || blocks.read(block).map_err(RacError::from));
        ctx.spawn(actix::fut::wrap_future::<_, Self>(work).map(move |res, act, ctx| match res {
            _ if !act.current(incarnation) || act.map.epoch != epoch => {}
            Ok(image) => {
                let out = act.state.disk_read(request, image);
                act.apply(out, ctx);
            }
            // The grant stays in flight at the master, which sends it again.
            Err(e) => tracing::warn!(instance = %act.name(), %block, error = %e, "disk read failed"),
        }));
    }

    /// Once [`CHECKPOINT_EVERY_BYTES`] of redo were written since the last checkpoint: writes
    /// back, at low priority, every version this instance changed that is not on disk (its dirty
    /// buffers and its past images: a change shipped away lives on in one), then drops the redo
    /// committed before it started. Redo committed since stays: its changes may not be among
    /// those written.
    fn checkpoint(&mut self, ctx: &mut Context<Self>) {
        if self.checkpointing || self.redo_end < self.checkpointed_at + CHECKPOINT_EVERY_BYTES {
            return;
        }
        self.checkpointing = true;
        let mark = self.redo_end;
        let images = self.state.cache.not_on_disk();
        let (blocks, redo) = (self.blocks.clone(), self.redo.clone());
        let incarnation = self.incarnation;
        let work = self.background.run(move || {
            let mut written = Vec::with_capacity(images.len());
            for (block, image) in images {
                if blocks.write_back(block, &image)? {
                    written.push((block, image.scn));
                }
            }
            redo.lock().truncate_before(mark)?;
            Ok::<_, crate::storage::StorageError>(written)
        });
        ctx.spawn(actix::fut::wrap_future::<_, Self>(work).map(move |res, act, ctx| {
            if !act.current(incarnation) {
                return;
            }
            act.checkpointing = false;
            match res {
                Ok(Ok(written)) => {
                    act.checkpointed_at = mark;
                    let out = act.state.checkpointed(written);
                    act.apply(out, ctx);
                }
                Ok(Err(e)) => tracing::warn!(instance = %act.name(), error = %e, "redo checkpoint failed; the redo is kept"),
                Err(e) => tracing::warn!(instance = %act.name(), error = %e, "redo checkpoint did not run; the redo is kept"),
            }
        }));
    }

    /// Pings every peer through the link, as the interconnect's heartbeat, and tells the
    /// cluster's control which live peers stopped answering.
    fn heartbeat(&mut self) {
        let Some(peers) = self.peers.get() else { return };
        if self.down {
            return;
        }
        let now = Instant::now();
        for (peer, seq) in self.interconnect.heartbeat(now) {
            if let Some(addr) = peers.heartbeats.get(&peer) {
                self.link.deliver(self.state.name(), &peer, addr, Heartbeat::Ping { from: self.state.name().to_string(), seq });
            }
        }
        let unreachable = self.interconnect.unreachable(now).into_iter().filter(|p| self.map.is_live(p)).collect();
        // Direct, not through the link: the control is the clusterware's own path (Oracle's
        // voting disk), which a partition between instances does not cut.
        peers.control.do_send(Suspects { from: self.name().to_string(), unreachable });
    }

    fn counted(&mut self, block: BlockId) {
        *self.accesses.entry(block).or_default() += 1;
    }

    fn start_op(&mut self, waiting: Waiting) -> u64 {
        self.next_op += 1;
        self.waiting.insert(self.next_op, waiting);
        self.next_op
    }

    fn view(&self) -> InstanceView {
        InstanceView {
            instance_id: self.name().to_string(),
            status: if self.down { "down" } else if self.state.is_frozen() { "reconfiguring" } else { "open" }.into(),
            cached_blocks: self.state.cache.len(),
            cache_capacity: self.state.cache.capacity(),
            past_images: self.state.cache.past_images().count(),
            mastered_resources: 0,
            scn: self.state.cache.clock(),
            statistics: self.state.stats.view(),
        }
    }
}

impl Actor for RacInstanceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if !self.stopped {
            ctx.run_interval(RETRY_AFTER / 3, |act, ctx| {
                let out = act.state.retry(Instant::now());
                act.apply(out, ctx);
            });
            ctx.run_interval(HEARTBEAT_EVERY, |act, _| act.heartbeat());
        }
    }
}

impl Supervised for RacInstanceActor {}

impl Handler<Stamped<ToInstance>> for RacInstanceActor {
    type Result = ();
    fn handle(&mut self, msg: Stamped<ToInstance>, ctx: &mut Self::Context) {
        if self.down || msg.epoch != self.map.epoch {
            return;
        }
        let out = self.state.on_message(msg.body);
        self.apply(out, ctx);
    }
}

/// `what` names the operation in an error; built only then.
fn awaited<T: Send + 'static>(rx: tokio::sync::oneshot::Receiver<Result<T, RacError>>, what: impl FnOnce() -> String + Send + 'static) -> ResponseFuture<Result<T, RacError>> {
    Box::pin(async move {
        match tokio::time::timeout(OP_TIMEOUT, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(RacError::Storage { message: format!("{}: the instance stopped before it finished", what()) }),
            Err(_) => Err(RacError::TimedOut { what: what(), seconds: OP_TIMEOUT.as_secs() }),
        }
    })
}

impl Handler<ReadBlock> for RacInstanceActor {
    type Result = ResponseFuture<Result<BlockRead, RacError>>;
    fn handle(&mut self, msg: ReadBlock, ctx: &mut Self::Context) -> Self::Result {
        if self.down {
            return Box::pin(std::future::ready(Err(RacError::InstanceDown { instance_id: self.name().to_string() })));
        }
        self.counted(msg.block);
        let (reply, rx) = tokio::sync::oneshot::channel();
        let id = self.start_op(Waiting::Read(reply));
        let out = self.state.read(id, msg.block);
        self.apply(out, ctx);
        awaited(rx, move || format!("the read of {}", msg.block))
    }
}

impl Handler<WriteBlock> for RacInstanceActor {
    type Result = ResponseFuture<Result<BlockWritten, RacError>>;
    fn handle(&mut self, msg: WriteBlock, ctx: &mut Self::Context) -> Self::Result {
        if self.down {
            return Box::pin(std::future::ready(Err(RacError::InstanceDown { instance_id: self.name().to_string() })));
        }
        self.counted(msg.block);
        let (reply, rx) = tokio::sync::oneshot::channel();
        let id = self.start_op(Waiting::Write(reply));
        let out = self.state.write(id, msg.block, msg.data);
        self.apply(out, ctx);
        let block = msg.block;
        awaited(rx, move || format!("the write of {block}"))
    }
}

impl Handler<ConvertLock> for RacInstanceActor {
    type Result = ResponseFuture<Result<LockChanged, RacError>>;
    fn handle(&mut self, msg: ConvertLock, ctx: &mut Self::Context) -> Self::Result {
        if self.down {
            return Box::pin(std::future::ready(Err(RacError::InstanceDown { instance_id: self.name().to_string() })));
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        let id = self.start_op(Waiting::Convert(reply));
        let out = self.state.convert(id, msg.block, msg.to);
        self.apply(out, ctx);
        awaited(rx, move || format!("the conversion of {} to {}", msg.block, msg.to.as_str()))
    }
}

impl Handler<Heartbeat> for RacInstanceActor {
    type Result = ();
    fn handle(&mut self, msg: Heartbeat, _ctx: &mut Self::Context) {
        match msg {
            Heartbeat::Ping { .. } if self.down => {}
            Heartbeat::Ping { from, seq } => {
                let Some(addr) = self.peers.get().and_then(|p| p.heartbeats.get(&from)) else { return };
                self.link.deliver(self.state.name(), &from, addr, Heartbeat::Pong { from: self.state.name().to_string(), seq });
            }
            Heartbeat::Pong { from, seq } => self.interconnect.pong(&from, seq, Instant::now()),
        }
    }
}

impl Handler<GetInterconnect> for RacInstanceActor {
    type Result = Vec<PeerLinkView>;
    fn handle(&mut self, _: GetInterconnect, _ctx: &mut Self::Context) -> Self::Result {
        self.interconnect.view(Instant::now(), &self.counts)
    }
}

impl Handler<GetInstance> for RacInstanceActor {
    type Result = Result<InstanceView, RacError>;
    fn handle(&mut self, _: GetInstance, _ctx: &mut Self::Context) -> Self::Result {
        Ok(self.view())
    }
}

impl Handler<crate::messages::runtime::StopRuntimeActor> for RacInstanceActor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: crate::messages::runtime::StopRuntimeActor, _ctx: &mut Self::Context) -> Self::Result {
        // Answers once its lane's redo commits are done, so the store closes under nobody.
        self.stopped = true;
        let drained = self.lane.run(|| Ok::<(), crate::exec::TaskFailed>(()));
        Box::pin(actix::fut::wrap_future::<_, Self>(drained).map(|_, _, ctx: &mut Context<Self>| ctx.stop()))
    }
}

fn written(records: &[RedoRecord]) -> Vec<(BlockId, u64)> {
    records.iter().map(|r| (r.block, r.scn)).collect()
}

/// Request ids unique across an instance's lives: a request of an earlier life may still be on
/// the way.
fn first_request() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl Handler<FreezeInstance> for RacInstanceActor {
    type Result = ();
    fn handle(&mut self, msg: FreezeInstance, _ctx: &mut Self::Context) {
        let stale = msg.map.epoch < self.map.epoch || (msg.map.epoch == self.map.epoch && !self.state.is_frozen());
        if self.down || stale {
            return; // no answer: the control tries again, or counts this instance failed
        }
        let now = Instant::now();
        for peer in msg.map.live().iter().filter(|p| !self.map.is_live(p)) {
            self.interconnect.rejoined(peer, now);
        }
        self.map = msg.map;
        let _ = msg.reply.send(self.state.freeze());
    }
}

impl Handler<ResumeInstance> for RacInstanceActor {
    type Result = ();
    fn handle(&mut self, msg: ResumeInstance, ctx: &mut Self::Context) {
        if self.down || msg.epoch != self.map.epoch {
            return;
        }
        if self.state.is_frozen() {
            let out = self.state.resume(&msg.on_disk);
            self.apply(out, ctx);
        }
        let _ = msg.reply.send(());
    }
}

impl Handler<ApplyRedo> for RacInstanceActor {
    type Result = ResponseFuture<Result<RedoApplied, RacError>>;
    fn handle(&mut self, msg: ApplyRedo, _ctx: &mut Self::Context) -> Self::Result {
        if self.down {
            return Box::pin(std::future::ready(Err(RacError::InstanceDown { instance_id: self.name().to_string() })));
        }
        let (blocks, store) = (self.blocks.clone(), self.store.clone());
        Box::pin(async move {
            let work = crate::exec::blocking(move || {
                let mut on_disk = Vec::with_capacity(msg.past_images.len());
                for (block, image) in &msg.past_images {
                    blocks.write_back(*block, image).map_err(RacError::from)?;
                    on_disk.push((*block, image.scn));
                }
                let mut applied = RedoApplied { on_disk, ..RedoApplied::default() };
                if !msg.failed.is_empty() {
                    let mut logs = msg.failed.iter().map(|f| RedoLog::open(store.clone(), f)).collect::<Result<Vec<_>, _>>().map_err(RacError::from)?;
                    let recovered = super::store::recover_all(&blocks, &mut logs).map_err(RacError::from)?;
                    applied.redo_records = recovered.records;
                    applied.blocks_recovered = recovered.blocks;
                }
                Ok::<_, RacError>(applied)
            });
            work.await
        })
    }
}

impl Handler<TakeAccessCounts> for RacInstanceActor {
    type Result = MessageResult<TakeAccessCounts>;
    fn handle(&mut self, _: TakeAccessCounts, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(std::mem::take(&mut self.accesses).into_iter().collect())
    }
}

impl Handler<CrashInstance> for RacInstanceActor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: CrashInstance, _ctx: &mut Self::Context) -> Self::Result {
        self.down = true;
        self.incarnation += 1;
        let name = self.name().to_string();
        for (_, waiting) in std::mem::take(&mut self.waiting) {
            let down = RacError::InstanceDown { instance_id: name.clone() };
            match waiting {
                Waiting::Read(r) => drop(r.send(Err(down))),
                Waiting::Write(r) => drop(r.send(Err(down))),
                Waiting::Convert(r) => drop(r.send(Err(down))),
            }
        }
        self.state = InstanceState::new(name, self.cache_blocks, first_request(), self.wants.clone());
        self.redo_queue.clear();
        self.redo_writing = false;
        self.checkpointing = false;
        self.accesses.clear();
        // Answers once the redo commits under way are done: recovery reads the log after them.
        let drained = self.lane.run(|| Ok::<(), crate::exec::TaskFailed>(()));
        Box::pin(actix::fut::wrap_future::<_, Self>(drained).map(|_, _, _| ()))
    }
}

impl Handler<RejoinInstance> for RacInstanceActor {
    type Result = Result<(), RacError>;
    fn handle(&mut self, _: RejoinInstance, _ctx: &mut Self::Context) -> Self::Result {
        // Its redo was applied and emptied by its recovery: opened again, it goes on from there.
        let redo = RedoLog::open(self.store.clone(), self.name())?;
        self.redo_end = redo.end();
        self.checkpointed_at = self.redo_end;
        self.redo = Arc::new(parking_lot::Mutex::new(redo));
        self.state = InstanceState::new(self.name().to_string(), self.cache_blocks, first_request(), self.wants.clone());
        // Frozen until the reconfiguration that takes it in; its peers' silence while it was
        // down does not count.
        self.state.freeze();
        self.interconnect.rejoined_all(Instant::now());
        self.down = false;
        Ok(())
    }
}
