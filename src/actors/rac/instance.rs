//! `RacInstanceActor`: one RAC instance. It runs the faces' operations on blocks (read, write,
//! lock conversion) one at a time per block, asks each block's master for the lock they need,
//! answers its masters' directives (ship, invalidate, discard a past image) and takes blocks
//! shipped to it. Its cache and locks are an [`InstanceCache`]; disk reads and write-backs go
//! to the blocking pool, redo to the instance's own lane, gathered into one commit per batch.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::cache::InstanceCache;
use super::ring::MasterRing;
use super::stats::TransferStats;
use super::store::{BlockStore, RedoLog, RedoRecord};
use super::RacPeers;
use crate::actors::net::Link;
use crate::actors::registry::{EventPublisher, InterestTable};
use crate::exec::{BackgroundPool, Lane};
use crate::messages::events::{Event, EventType, Severity};
use crate::messages::rac::*;
use crate::model::rac::{BlockId, LockMode, TransferKind};

/// How long a lock request waits for its grant before it is sent again (counted as lost).
const RETRY_AFTER: Duration = Duration::from_millis(300);
/// How long a face waits for an operation; the operation itself goes on.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Redo bytes between checkpoints: each writes back what this instance changed that is not on
/// disk, then drops the redo before it, so the log stays about this long.
const CHECKPOINT_EVERY_BYTES: u64 = 64 << 20;

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, RacError>>;

/// An operation of this instance on a block, in the order asked for.
enum Op {
    Read { reply: Reply<BlockRead>, started: Instant, came: Option<Arrival> },
    Write { data: Vec<u8>, reply: Reply<BlockWritten>, started: Instant, came: Option<Arrival> },
    Convert { to: LockMode, reply: Option<Reply<LockChanged>>, started: Instant, from: LockMode },
}

/// How the block came for an operation that had to ask for it.
#[derive(Debug, Clone)]
struct Arrival {
    kind: TransferKind,
    source: Option<String>,
}

/// The lock request an operation waits for.
struct Asked {
    request: LockRequest,
    /// The mode held when it was asked.
    from: LockMode,
    sent: Instant,
    first_sent: Instant,
}

pub struct RacInstanceActor {
    name: String,
    cache: InstanceCache,
    ring: Arc<MasterRing>,
    peers: Arc<OnceLock<RacPeers>>,
    link: Link,
    blocks: Arc<BlockStore>,
    redo: Arc<parking_lot::Mutex<RedoLog>>,
    lane: Lane,
    events: EventPublisher,
    interest: Arc<InterestTable>,
    next_request: u64,
    /// Operations per block; the first is under way.
    ops: HashMap<BlockId, VecDeque<Op>>,
    /// The lock request each block's first operation waits for.
    asked: HashMap<BlockId, Asked>,
    /// Blocks with a redo write or a write-back under way: directives for them wait, so that no
    /// other instance sees a version before it is durable.
    durable_pending: HashSet<BlockId>,
    deferred: HashMap<BlockId, Vec<Directive>>,
    /// Redo records gathered while a commit is out, committed together next.
    redo_queue: Vec<RedoRecord>,
    redo_writing: bool,
    /// Where the redo log ended after the last commit, and where it ended at the last checkpoint.
    redo_end: u64,
    checkpointed_at: u64,
    checkpointing: bool,
    background: Arc<BackgroundPool>,
    stats: TransferStats,
    /// Stopped with the runtime: its supervisor may start it again, idle.
    stopped: bool,
}

impl RacInstanceActor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        cache_blocks: usize,
        ring: Arc<MasterRing>,
        peers: Arc<OnceLock<RacPeers>>,
        link: Link,
        blocks: Arc<BlockStore>,
        redo: RedoLog,
        events: EventPublisher,
        interest: Arc<InterestTable>,
        background: Arc<BackgroundPool>,
    ) -> RacInstanceActor {
        let lane = Lane::start(&format!("rac-{name}"));
        let redo_end = redo.end();
        RacInstanceActor {
            name,
            cache: InstanceCache::new(cache_blocks),
            ring,
            peers,
            link,
            blocks,
            redo: Arc::new(parking_lot::Mutex::new(redo)),
            lane,
            events,
            interest,
            // Unique across restarts: a request of an earlier life may still be in a master's line.
            next_request: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
            ops: HashMap::new(),
            asked: HashMap::new(),
            durable_pending: HashSet::new(),
            deferred: HashMap::new(),
            redo_queue: Vec::new(),
            redo_writing: false,
            redo_end,
            checkpointed_at: redo_end,
            checkpointing: false,
            background,
            stats: TransferStats::default(),
            stopped: false,
        }
    }

    fn peers(&self) -> Option<&RacPeers> {
        self.peers.get()
    }

    fn to_master(&self, block: BlockId, msg: ToMaster) {
        let Some(master) = self.ring.master_of(block) else { return };
        let Some(peers) = self.peers() else { return };
        if let Some(addr) = peers.masters.get(master) {
            self.link.deliver(&self.name, master, addr, msg);
        }
    }

    fn to_instance(&self, to: &str, msg: ToInstance) {
        let Some(peers) = self.peers() else { return };
        if let Some(addr) = peers.instances.get(to) {
            self.link.deliver(&self.name, to, addr, msg);
        }
    }

    fn enqueue(&mut self, block: BlockId, op: Op, ctx: &mut Context<Self>) {
        let queue = self.ops.entry(block).or_default();
        queue.push_back(op);
        if queue.len() == 1 {
            self.run(block, ctx);
        }
    }

    /// Moves the first operation on `block` on as far as it can go now.
    fn run(&mut self, block: BlockId, ctx: &mut Context<Self>) {
        loop {
            if self.asked.contains_key(&block) || self.durable_pending.contains(&block) {
                return;
            }
            let Some(op) = self.ops.get_mut(&block).and_then(|q| q.front_mut()) else {
                self.ops.remove(&block);
                return;
            };
            let held = self.cache.mode(block);
            let step = match op {
                Op::Read { .. } if held.covers(LockMode::Shared) => Step::ReadDone,
                Op::Read { .. } => Step::Ask(LockMode::Shared),
                Op::Write { .. } if held == LockMode::Exclusive => Step::WriteNow,
                Op::Write { .. } => Step::Ask(LockMode::Exclusive),
                Op::Convert { to, .. } if *to > held => Step::Ask(*to),
                Op::Convert { to, .. } if *to == held => Step::ConvertDone,
                Op::Convert { to: LockMode::Null, .. } => match self.cache.read(block).filter(|i| !i.on_disk) {
                    Some(image) => Step::WriteBack(image),
                    None => Step::Ask(LockMode::Null),
                },
                Op::Convert { to, .. } => Step::Ask(*to),
            };
            match step {
                Step::Ask(mode) => return self.ask(block, mode),
                Step::ReadDone => self.finish_read(block),
                Step::ConvertDone => self.finish_convert(block),
                Step::WriteNow => return self.write_now(block, ctx),
                Step::WriteBack(image) => return self.write_back(block, image, ctx),
            }
        }
    }

    fn ask(&mut self, block: BlockId, mode: LockMode) {
        self.next_request += 1;
        let request = LockRequest { request_id: self.next_request, requester: self.name.clone(), block, mode };
        let now = Instant::now();
        let from = self.cache.mode(block);
        self.asked.insert(block, Asked { request: request.clone(), from, sent: now, first_sent: now });
        self.to_master(block, ToMaster::Request(request));
    }

    fn finish_read(&mut self, block: BlockId) {
        let Some(Op::Read { reply, started, came }) = self.pop(block) else { return };
        let image = self.cache.read(block);
        let (kind, source) = came.map_or((TransferKind::Local, None), |a| (a.kind, a.source));
        if kind == TransferKind::Local {
            self.stats.grants_without_transfer += 1;
        }
        let read = image.map(|image| BlockRead {
            block_id: block.to_string(),
            instance_id: self.name.clone(),
            data: String::from_utf8_lossy(&image.data).into_owned(),
            data_version: image.scn,
            lock_mode: self.cache.mode(block),
            transfer_kind: kind,
            source_instance: source,
            micros: started.elapsed().as_micros() as u64,
        });
        let _ = reply.send(read.ok_or_else(|| RacError::Storage { message: format!("block {block} left the cache before it was read") }));
    }

    fn finish_convert(&mut self, block: BlockId) {
        let Some(Op::Convert { to, reply, started, from }) = self.pop(block) else { return };
        let changed = LockChanged {
            resource_id: block.to_string(),
            instance_id: self.name.clone(),
            previous_lock_type: from,
            lock_type: to,
            wait_time_ms: started.elapsed().as_secs_f64() * 1000.0,
        };
        if let Some(reply) = reply {
            let _ = reply.send(Ok(changed));
        }
    }

    /// Writes the first operation's data into the cache and makes its redo durable; the block
    /// stays here (directives wait) until it is.
    fn write_now(&mut self, block: BlockId, ctx: &mut Context<Self>) {
        let Some(Op::Write { data, .. }) = self.ops.get(&block).and_then(|q| q.front()) else { return };
        let data: BlockData = Arc::from(data.as_slice());
        let Some(scn) = self.cache.write(block, data.clone()) else { return };
        self.durable_pending.insert(block);
        self.redo_queue.push(RedoRecord { block, scn, data: data.to_vec() });
        self.commit_redo(ctx);
    }

    /// Commits the redo gathered so far, if no commit is out: one fsync for all of it.
    fn commit_redo(&mut self, ctx: &mut Context<Self>) {
        if self.redo_writing || self.redo_queue.is_empty() {
            return;
        }
        self.redo_writing = true;
        let records = std::mem::take(&mut self.redo_queue);
        let redo = self.redo.clone();
        let blocks: Vec<(BlockId, u64)> = records.iter().map(|r| (r.block, r.scn)).collect();
        let commit = self.lane.run(move || redo.lock().append(&records).map_err(RacError::from));
        ctx.spawn(actix::fut::wrap_future::<_, Self>(commit).map(move |res: Result<u64, RacError>, act, ctx| {
            act.redo_writing = false;
            if let Ok(end) = &res {
                act.redo_end = *end;
            }
            for (block, scn) in blocks {
                act.durable_pending.remove(&block);
                let Some(Op::Write { data, reply, started, came }) = act.pop(block) else { continue };
                let (kind, source) = came.map_or((TransferKind::Local, None), |a| (a.kind, a.source));
                let answer = match &res {
                    Ok(_) => Ok(BlockWritten {
                        block_id: block.to_string(),
                        instance_id: act.name.clone(),
                        data_version: scn,
                        bytes: data.len(),
                        transfer_kind: kind,
                        source_instance: source,
                        micros: started.elapsed().as_micros() as u64,
                    }),
                    Err(e) => Err(e.clone()),
                };
                let _ = reply.send(answer);
                act.after_durable(block, ctx);
            }
            act.commit_redo(ctx);
            act.checkpoint(ctx);
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
        let images = self.cache.not_on_disk();
        let (blocks, redo) = (self.blocks.clone(), self.redo.clone());
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
        ctx.spawn(actix::fut::wrap_future::<_, Self>(work).map(move |res, act, _| {
            act.checkpointing = false;
            match res {
                Ok(Ok(written)) => {
                    act.checkpointed_at = mark;
                    act.stats.disk_writes += written.len() as u64;
                    for (block, scn) in written {
                        act.cache.written_to_disk(block, scn);
                        act.to_master(block, ToMaster::WrittenToDisk { block, scn });
                    }
                }
                Ok(Err(e)) => tracing::warn!(instance = %act.name, error = %e, "redo checkpoint failed; the redo is kept"),
                Err(e) => tracing::warn!(instance = %act.name, error = %e, "redo checkpoint did not run; the redo is kept"),
            }
        }));
    }

    /// Writes `image` back to disk before the lock on `block` goes to null.
    fn write_back(&mut self, block: BlockId, image: BlockImage, ctx: &mut Context<Self>) {
        self.durable_pending.insert(block);
        let blocks = self.blocks.clone();
        let scn = image.scn;
        let work = crate::exec::blocking(move || blocks.write_back(block, &image).map_err(RacError::from));
        ctx.spawn(actix::fut::wrap_future::<_, Self>(work).map(move |res, act, ctx| {
            act.durable_pending.remove(&block);
            match res {
                Ok(written) => {
                    act.stats.disk_writes += u64::from(written);
                    act.cache.written_to_disk(block, scn);
                    act.to_master(block, ToMaster::WrittenToDisk { block, scn });
                    act.after_durable(block, ctx);
                }
                Err(e) => {
                    tracing::warn!(instance = %act.name, %block, error = %e, "write-back failed; the lock is kept");
                    if let Some(Op::Convert { reply: Some(reply), .. }) = act.pop(block) {
                        let _ = reply.send(Err(e));
                    }
                    act.after_durable(block, ctx);
                }
            }
        }));
    }

    /// The block's durable step is done: the directives that waited for it, then its next
    /// operation.
    fn after_durable(&mut self, block: BlockId, ctx: &mut Context<Self>) {
        for d in self.deferred.remove(&block).unwrap_or_default() {
            self.directive(d, true, ctx);
        }
        self.run(block, ctx);
    }

    fn pop(&mut self, block: BlockId) -> Option<Op> {
        let queue = self.ops.get_mut(&block)?;
        let op = queue.pop_front();
        if queue.is_empty() {
            self.ops.remove(&block);
        }
        op
    }

    /// A directive from a block's master.
    fn directive(&mut self, d: Directive, busy_counted: bool, ctx: &mut Context<Self>) {
        match d {
            Directive::Ship { request, holder_keeps, kind, .. } => {
                let block = request.block;
                if self.durable_pending.contains(&block) {
                    self.deferred.entry(block).or_default().push(Directive::Ship { holder: self.name.clone(), request, holder_keeps, kind });
                    return;
                }
                let Some(shipment) = self.cache.ship(block, request.request_id, &request.requester, holder_keeps) else {
                    tracing::warn!(instance = %self.name, %block, requester = %request.requester, "told to ship a block this instance does not hold");
                    return;
                };
                self.stats.blocks_served += 1;
                let to = request.requester.clone();
                let busy = busy_counted;
                self.to_instance(&to, ToInstance::Shipped { request, from: self.name.clone(), kind, image: shipment.image, past_image: shipment.past_image, busy });
            }
            Directive::Invalidate { block, .. } => {
                if self.durable_pending.contains(&block) {
                    self.deferred.entry(block).or_default().push(d);
                    return;
                }
                let past_image = self.cache.invalidate(block);
                self.stats.invalidations += 1;
                self.to_master(block, ToMaster::Invalidated { block, holder: self.name.clone(), past_image });
            }
            Directive::DiscardPastImage { block, up_to, .. } => self.cache.written_to_disk(block, up_to),
            Directive::GrantFromDisk { request } => {
                let block = request.block;
                if !self.waits_for(&request) {
                    return self.unsolicited(request, None, None, ctx);
                }
                let blocks = self.blocks.clone();
                let work = crate::exec::blocking(move || blocks.read(block).map_err(RacError::from));
                ctx.spawn(actix::fut::wrap_future::<_, Self>(work).map(move |res, act, ctx| match res {
                    Ok(image) => {
                        act.stats.disk_reads += 1;
                        act.granted(request, Some((image, Arrival { kind: TransferKind::Disk, source: None }, None, false)), ctx);
                    }
                    Err(e) => tracing::warn!(instance = %act.name, %block, error = %e, "disk read failed; the request is sent again"),
                }));
            }
            Directive::GrantLocal { request } => {
                if self.waits_for(&request) {
                    self.granted(request, None, ctx);
                } else {
                    // Repeated (its acknowledgement lost on the way): acknowledged again.
                    self.unsolicited(request, None, None, ctx);
                }
            }
        }
    }

    fn waits_for(&self, request: &LockRequest) -> bool {
        self.asked.get(&request.block).is_some_and(|a| a.request.request_id == request.request_id)
    }

    /// A grant for a request this instance no longer waits for (repeated, or of an earlier
    /// life): the master counts it held, so it is taken (unless a copy at least as strong is
    /// here) and acknowledged, never refused.
    fn unsolicited(&mut self, request: LockRequest, image: Option<BlockImage>, past_image: Option<u64>, ctx: &mut Context<Self>) {
        let block = request.block;
        let held = self.cache.mode(block);
        if !held.covers(request.mode) {
            match image {
                Some(image) => self.cache.install(block, request.mode, image),
                None if held != LockMode::Null => {
                    self.cache.convert(block, request.mode);
                }
                None => {
                    // Read from disk for a grant nobody here waits for: rare, and the grant must
                    // still be acknowledged to free the block.
                    let blocks = self.blocks.clone();
                    let work = crate::exec::blocking(move || blocks.read(block).map_err(RacError::from));
                    ctx.spawn(actix::fut::wrap_future::<_, Self>(work).map(move |res, act, ctx| {
                        if let Ok(image) = res {
                            act.unsolicited(request, Some(image), None, ctx);
                        }
                    }));
                    return;
                }
            }
        }
        self.to_master(block, ToMaster::Acquired { block, request_id: request.request_id, requester: self.name.clone(), past_image });
        self.evict(ctx);
    }

    /// The lock this instance asked for is granted: with a block shipped or read (`came`), or
    /// on its own copy.
    fn granted(&mut self, request: LockRequest, came: Option<(BlockImage, Arrival, Option<u64>, bool)>, ctx: &mut Context<Self>) {
        let block = request.block;
        let Some(asked) = self.asked.remove(&block) else { return };
        let mut past_image = None;
        let arrival = match came {
            Some((image, arrival, pi, busy)) => {
                past_image = pi;
                let micros = asked.first_sent.elapsed().as_micros() as u64;
                let size = image.data.len();
                let scn = image.scn;
                self.cache.install(block, request.mode, image);
                if arrival.kind != TransferKind::Disk {
                    self.stats.received(request.mode, arrival.kind, busy, micros);
                }
                if self.interest.wants(EventType::BlockTransfer) {
                    let payload = RacEvent::BlockTransfer(BlockTransfer {
                        block_id: block.to_string(),
                        source_instance: arrival.source.clone(),
                        target_instance: self.name.clone(),
                        block_mode: request.mode,
                        transfer_kind: arrival.kind,
                        transfer_size: size,
                        duration_micros: micros,
                        success: true,
                        data_version: scn,
                    });
                    self.events.publish(Event::now(Severity::Info, format!("rac:{}", self.name), payload));
                }
                Some(arrival)
            }
            None => {
                self.cache.convert(block, request.mode);
                if request.mode != LockMode::Null {
                    self.stats.grants_without_transfer += 1;
                }
                None
            }
        };
        self.to_master(block, ToMaster::Acquired { block, request_id: request.request_id, requester: self.name.clone(), past_image });
        if let Some(Op::Read { came, .. } | Op::Write { came, .. }) = self.ops.get_mut(&block).and_then(|q| q.front_mut()) {
            *came = arrival.or(Some(Arrival { kind: TransferKind::Local, source: None }));
        }
        if asked.from != request.mode {
            self.publish_lock(&LockChanged {
                resource_id: block.to_string(),
                instance_id: self.name.clone(),
                previous_lock_type: asked.from,
                lock_type: request.mode,
                wait_time_ms: asked.first_sent.elapsed().as_secs_f64() * 1000.0,
            });
        }
        self.run(block, ctx);
        self.evict(ctx);
    }

    fn publish_lock(&self, change: &LockChanged) {
        let event_type = match (change.previous_lock_type, change.lock_type) {
            (_, LockMode::Null) => EventType::LockReleased,
            (LockMode::Null, _) => EventType::LockGranted,
            _ => EventType::LockConverted,
        };
        if !self.interest.wants(event_type) {
            return;
        }
        let payload = LockChange {
            resource_id: change.resource_id.clone(),
            lock_type: change.lock_type,
            previous_lock_type: change.previous_lock_type,
            instance_id: change.instance_id.clone(),
            granted: true,
            wait_time_ms: change.wait_time_ms,
        };
        let event = match event_type {
            EventType::LockReleased => RacEvent::LockReleased(payload),
            EventType::LockGranted => RacEvent::LockGranted(payload),
            _ => RacEvent::LockConverted(payload),
        };
        self.events.publish(Event::now(Severity::Info, format!("rac:{}", self.name), event));
    }

    /// Starts evicting what is over capacity: each eviction is a release to null, behind the
    /// block's other operations.
    fn evict(&mut self, ctx: &mut Context<Self>) {
        let under_way = self.ops.values().filter(|q| matches!(q.front(), Some(Op::Convert { to: LockMode::Null, reply: None, .. }))).count();
        let evictions = self.cache.evictions(under_way, &|b| self.ops.contains_key(&b) || self.durable_pending.contains(&b));
        for e in evictions {
            let from = self.cache.mode(e.block);
            self.enqueue(e.block, Op::Convert { to: LockMode::Null, reply: None, started: Instant::now(), from }, ctx);
        }
    }

    /// Sends again the lock requests unanswered for [`RETRY_AFTER`]: one of them or its answer
    /// was lost on the link.
    fn retry(&mut self) {
        let now = Instant::now();
        let due: Vec<LockRequest> = self.asked.values_mut().filter(|a| now.duration_since(a.sent) >= RETRY_AFTER).map(|a| {
            a.sent = now;
            a.request.clone()
        }).collect();
        for request in due {
            self.stats.lost += 1;
            self.to_master(request.block, ToMaster::Request(request));
        }
    }

    fn view(&self) -> InstanceView {
        InstanceView {
            instance_id: self.name.clone(),
            status: "open".into(),
            cached_blocks: self.cache.len(),
            cache_capacity: self.cache.capacity(),
            past_images: self.cache.past_images().count(),
            mastered_resources: 0,
            scn: self.cache.clock(),
            statistics: self.stats.view(),
        }
    }
}

enum Step {
    Ask(LockMode),
    ReadDone,
    ConvertDone,
    WriteNow,
    WriteBack(BlockImage),
}

impl Actor for RacInstanceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if !self.stopped {
            ctx.run_interval(RETRY_AFTER / 3, |act, _| act.retry());
        }
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

impl Supervised for RacInstanceActor {}

impl Handler<ToInstance> for RacInstanceActor {
    type Result = ();
    fn handle(&mut self, msg: ToInstance, ctx: &mut Self::Context) {
        match msg {
            ToInstance::Directive(d) => self.directive(d, false, ctx),
            ToInstance::Shipped { request, from, kind, image, past_image, busy } => {
                self.cache.observe(image.scn);
                if self.waits_for(&request) {
                    self.granted(request, Some((image, Arrival { kind, source: Some(from) }, past_image, busy)), ctx);
                } else {
                    self.unsolicited(request, Some(image), past_image, ctx);
                }
            }
        }
    }
}

fn awaited<T: Send + 'static>(rx: tokio::sync::oneshot::Receiver<Result<T, RacError>>, what: String) -> ResponseFuture<Result<T, RacError>> {
    Box::pin(async move {
        match tokio::time::timeout(OP_TIMEOUT, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(RacError::Storage { message: format!("{what}: the instance stopped before it finished") }),
            Err(_) => Err(RacError::TimedOut { what, seconds: OP_TIMEOUT.as_secs() }),
        }
    })
}

impl Handler<ReadBlock> for RacInstanceActor {
    type Result = ResponseFuture<Result<BlockRead, RacError>>;
    fn handle(&mut self, msg: ReadBlock, ctx: &mut Self::Context) -> Self::Result {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.enqueue(msg.block, Op::Read { reply, started: Instant::now(), came: None }, ctx);
        awaited(rx, format!("the read of {}", msg.block))
    }
}

impl Handler<WriteBlock> for RacInstanceActor {
    type Result = ResponseFuture<Result<BlockWritten, RacError>>;
    fn handle(&mut self, msg: WriteBlock, ctx: &mut Self::Context) -> Self::Result {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.enqueue(msg.block, Op::Write { data: msg.data, reply, started: Instant::now(), came: None }, ctx);
        awaited(rx, format!("the write of {}", msg.block))
    }
}

impl Handler<ConvertLock> for RacInstanceActor {
    type Result = ResponseFuture<Result<LockChanged, RacError>>;
    fn handle(&mut self, msg: ConvertLock, ctx: &mut Self::Context) -> Self::Result {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let from = self.cache.mode(msg.block);
        self.enqueue(msg.block, Op::Convert { to: msg.to, reply: Some(reply), started: Instant::now(), from }, ctx);
        awaited(rx, format!("the conversion of {} to {}", msg.block, msg.to.as_str()))
    }
}

impl Handler<GetInstance> for RacInstanceActor {
    type Result = Result<InstanceView, RacError>;
    fn handle(&mut self, _: GetInstance, _ctx: &mut Self::Context) -> Self::Result {
        Ok(self.view())
    }
}
