//! An instance's side of Cache Fusion, apart from its actor: the operations asked of it, run one
//! at a time per block; the lock requests they need; its masters' directives (ship, invalidate,
//! discard a past image); blocks shipped to it. Every method returns what to do next
//! ([`Output`]): messages to send, redo to make durable, blocks to write back or read from disk,
//! answers and events. The shell does the I/O and calls back with its result, so the protocol
//! runs here without actix (and in the property tests, under any order of delivery).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

// Block-keyed maps, looked up several times per operation: ahash (through hashbrown, as the
// memory engine's maps) costs a fraction of SipHash.
use hashbrown::{HashMap, HashSet};

use super::cache::InstanceCache;
use super::stats::TransferStats;
use super::store::RedoRecord;
use crate::messages::rac::*;
use crate::model::rac::{BlockId, LockMode, TransferKind};

/// How long a lock request waits for its grant before it is sent again (counted as lost).
pub const RETRY_AFTER: Duration = Duration::from_millis(300);

/// Whether anyone listens to an event type: a high-rate event is built only if so.
pub type Wants = Arc<dyn Fn(crate::messages::events::EventType) -> bool + Send + Sync>;

/// What the shell does next.
#[derive(Debug)]
pub enum Output {
    ToMaster(BlockId, ToMaster),
    ToInstance(String, ToInstance),
    /// Make this redo durable, then call [`InstanceState::redo_durable`].
    Redo(RedoRecord),
    /// Write this version back to disk, then call [`InstanceState::written_back`].
    WriteBack(BlockId, BlockImage),
    /// Read the block from disk, then call [`InstanceState::disk_read`].
    ReadDisk(LockRequest),
    /// Operation `id` is done.
    Answer(u64, Result<Answer, RacError>),
    Event(RacEvent),
}

/// What an operation answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Read(BlockRead),
    Written(BlockWritten),
    Changed(LockChanged),
}

/// An operation on a block, in the order asked for.
#[derive(Debug)]
enum Op {
    Read { id: u64, started: Instant, came: Option<Arrival> },
    Write { id: u64, data: Vec<u8>, started: Instant, came: Option<Arrival> },
    /// `id` is `None` for an eviction: nobody waits for it.
    Convert { id: Option<u64>, to: LockMode, from: LockMode, started: Instant },
}

/// How the block came for an operation that had to ask for it.
#[derive(Debug, Clone)]
struct Arrival {
    kind: TransferKind,
    source: Option<String>,
}

/// The lock request a block's first operation waits for.
#[derive(Debug)]
struct Asked {
    request: LockRequest,
    /// The mode held when it was asked.
    from: LockMode,
    sent: Instant,
    first_sent: Instant,
}

/// What a grant brought.
struct Grant {
    image: BlockImage,
    arrival: Arrival,
    past_image: Option<u64>,
    busy: bool,
}

enum Step {
    Ask(LockMode),
    ReadDone,
    ConvertDone,
    WriteNow,
    WriteBack(BlockImage),
}

/// One instance's protocol state.
pub struct InstanceState {
    name: String,
    pub cache: InstanceCache,
    /// Decides whether a high-rate event is built at all.
    wants: Wants,
    next_request: u64,
    ops: HashMap<BlockId, VecDeque<Op>>,
    asked: HashMap<BlockId, Asked>,
    /// Blocks with a redo write or a write-back under way: directives for them wait, so that no
    /// other instance sees a version before it is durable.
    durable_pending: HashSet<BlockId>,
    deferred: HashMap<BlockId, Vec<Directive>>,
    /// Per block, the last request granted here: a grant repeated for it (its acknowledgement
    /// was lost, or a directive came twice) is acknowledged again and changes nothing, however
    /// the block's lock moved since. One entry per block this instance ever asked for.
    granted: HashMap<BlockId, u64>,
    /// The version each write under way replaced, put back if its redo fails.
    before_write: HashMap<BlockId, BlockImage>,
    /// The GRD is being reconfigured: no lock is asked for until it resumes.
    frozen: bool,
    pub stats: TransferStats,
}

impl InstanceState {
    /// `first_request`: request ids start after it (they must not repeat across restarts).
    pub fn new(
        name: String,
        cache_blocks: usize,
        first_request: u64,
        wants: Wants,
    ) -> InstanceState {
        InstanceState {
            name,
            cache: InstanceCache::new(cache_blocks),
            wants,
            next_request: first_request,
            ops: HashMap::new(),
            asked: HashMap::new(),
            durable_pending: HashSet::new(),
            deferred: HashMap::new(),
            granted: HashMap::new(),
            before_write: HashMap::new(),
            frozen: false,
            stats: TransferStats::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn read(&mut self, id: u64, block: BlockId) -> Vec<Output> {
        self.enqueue(block, Op::Read { id, started: Instant::now(), came: None })
    }

    pub fn write(&mut self, id: u64, block: BlockId, data: Vec<u8>) -> Vec<Output> {
        self.enqueue(block, Op::Write { id, data, started: Instant::now(), came: None })
    }

    pub fn convert(&mut self, id: u64, block: BlockId, to: LockMode) -> Vec<Output> {
        let from = self.cache.mode(block);
        self.enqueue(block, Op::Convert { id: Some(id), to, from, started: Instant::now() })
    }

    /// The mode this instance may use `block` in: what it holds, or less while it waits for a
    /// downgrade or release it asked for (its operations wait behind it, and its master already
    /// counts it at the lower mode once it has taken the request).
    pub fn mode_in_effect(&self, block: BlockId) -> LockMode {
        let held = self.cache.mode(block);
        match self.asked.get(&block) {
            Some(a) if a.request.mode < held => a.request.mode,
            _ => held,
        }
    }

    /// Whether nothing is under way at all.
    pub fn is_idle(&self) -> bool {
        self.ops.is_empty() && self.asked.is_empty() && self.durable_pending.is_empty()
    }

    fn enqueue(&mut self, block: BlockId, op: Op) -> Vec<Output> {
        let queue = self.ops.entry(block).or_default();
        queue.push_back(op);
        let mut out = Vec::new();
        if queue.len() == 1 {
            self.run(block, &mut out);
        }
        out
    }

    /// Moves the first operation on `block` on as far as it can go now.
    fn run(&mut self, block: BlockId, out: &mut Vec<Output>) {
        loop {
            if self.asked.contains_key(&block) || self.durable_pending.contains(&block) {
                return;
            }
            let Some(op) = self.ops.get(&block).and_then(|q| q.front()) else {
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
                Step::Ask(_) if self.frozen => return,
                Step::Ask(mode) => return self.ask(block, mode, out),
                Step::ReadDone => self.finish_read(block, out),
                Step::ConvertDone => self.finish_convert(block, out),
                Step::WriteNow => return self.write_now(block, out),
                Step::WriteBack(image) => {
                    self.durable_pending.insert(block);
                    return out.push(Output::WriteBack(block, image));
                }
            }
        }
    }

    fn ask(&mut self, block: BlockId, mode: LockMode, out: &mut Vec<Output>) {
        self.next_request += 1;
        let request = LockRequest { request_id: self.next_request, requester: self.name.clone(), block, mode };
        let now = Instant::now();
        let from = self.cache.mode(block);
        self.asked.insert(block, Asked { request: request.clone(), from, sent: now, first_sent: now });
        out.push(Output::ToMaster(block, ToMaster::Request(request)));
    }

    fn pop(&mut self, block: BlockId) -> Option<Op> {
        let queue = self.ops.get_mut(&block)?;
        let op = queue.pop_front();
        if queue.is_empty() {
            self.ops.remove(&block);
        }
        op
    }

    fn finish_read(&mut self, block: BlockId, out: &mut Vec<Output>) {
        let Some(Op::Read { id, started, came }) = self.pop(block) else { return };
        let (kind, source) = came.map_or((TransferKind::Local, None), |a| (a.kind, a.source));
        if kind == TransferKind::Local {
            self.stats.grants_without_transfer += 1;
        }
        let read = self.cache.read(block).map(|image| {
            Answer::Read(BlockRead {
                block_id: block.to_string(),
                instance_id: self.name.clone(),
                data: String::from_utf8_lossy(&image.data).into_owned(),
                data_version: image.scn,
                lock_mode: self.cache.mode(block),
                transfer_kind: kind,
                source_instance: source,
                micros: started.elapsed().as_micros() as u64,
            })
        });
        out.push(Output::Answer(id, read.ok_or_else(|| RacError::Storage { message: format!("block {block} left the cache before it was read") })));
    }

    fn finish_convert(&mut self, block: BlockId, out: &mut Vec<Output>) {
        let Some(Op::Convert { id: Some(id), to, from, started }) = self.pop(block) else { return };
        let changed = LockChanged {
            resource_id: block.to_string(),
            instance_id: self.name.clone(),
            previous_lock_type: from,
            lock_type: to,
            wait_time_ms: started.elapsed().as_secs_f64() * 1000.0,
        };
        out.push(Output::Answer(id, Ok(Answer::Changed(changed))));
    }

    /// Writes the first operation's data into the cache; the block stays here (directives
    /// wait) until its redo is durable.
    fn write_now(&mut self, block: BlockId, out: &mut Vec<Output>) {
        let Some(Op::Write { data, .. }) = self.ops.get(&block).and_then(|q| q.front()) else { return };
        let data: BlockData = Arc::from(data.as_slice());
        let before = self.cache.read(block);
        let Some(scn) = self.cache.write(block, data.clone()) else { return };
        if let Some(before) = before {
            self.before_write.insert(block, before);
        }
        self.durable_pending.insert(block);
        out.push(Output::Redo(RedoRecord { block, scn, data: data.to_vec() }));
    }

    /// The redo of the write of version `scn` of `block` is durable (or failed).
    pub fn redo_durable(&mut self, block: BlockId, scn: u64, result: Result<(), RacError>) -> Vec<Output> {
        let mut out = Vec::new();
        self.durable_pending.remove(&block);
        let before = self.before_write.remove(&block);
        if let (Err(_), Some(before)) = (&result, before) {
            // A write whose redo failed never happened: nobody may be shipped it.
            self.cache.install(block, LockMode::Exclusive, before);
        }
        if let Some(Op::Write { id, data, started, came }) = self.pop(block) {
            let (kind, source) = came.map_or((TransferKind::Local, None), |a| (a.kind, a.source));
            let answer = result.map(|()| {
                Answer::Written(BlockWritten {
                    block_id: block.to_string(),
                    instance_id: self.name.clone(),
                    data_version: scn,
                    bytes: data.len(),
                    transfer_kind: kind,
                    source_instance: source,
                    micros: started.elapsed().as_micros() as u64,
                })
            });
            out.push(Output::Answer(id, answer));
        }
        self.after_durable(block, &mut out);
        out
    }

    /// A write-back of version `scn` of `block` is done (`Ok(written)`: false if the store had
    /// a version at least as new), or failed.
    pub fn written_back(&mut self, block: BlockId, scn: u64, result: Result<bool, RacError>) -> Vec<Output> {
        let mut out = Vec::new();
        self.durable_pending.remove(&block);
        match result {
            Ok(written) => {
                self.stats.disk_writes += u64::from(written);
                self.cache.written_to_disk(block, scn);
                out.push(Output::ToMaster(block, ToMaster::WrittenToDisk { block, scn }));
            }
            Err(e) => {
                // The lock is kept: what is not on disk must not be given up.
                if let Some(Op::Convert { id: Some(id), .. }) = self.pop(block) {
                    out.push(Output::Answer(id, Err(e)));
                }
            }
        }
        self.after_durable(block, &mut out);
        out
    }

    /// Versions a checkpoint wrote back: they are on disk.
    pub fn checkpointed(&mut self, written: Vec<(BlockId, u64)>) -> Vec<Output> {
        self.stats.disk_writes += written.len() as u64;
        written
            .into_iter()
            .map(|(block, scn)| {
                self.cache.written_to_disk(block, scn);
                Output::ToMaster(block, ToMaster::WrittenToDisk { block, scn })
            })
            .collect()
    }

    /// The block's durable step is done: the directives that waited for it, then its next
    /// operation.
    fn after_durable(&mut self, block: BlockId, out: &mut Vec<Output>) {
        for d in self.deferred.remove(&block).unwrap_or_default() {
            self.directive(d, true, out);
        }
        self.run(block, out);
    }

    /// A message from a master or another instance.
    pub fn on_message(&mut self, msg: ToInstance) -> Vec<Output> {
        let mut out = Vec::new();
        match msg {
            ToInstance::Directive(d) => self.directive(d, false, &mut out),
            ToInstance::Shipped { request, from, kind, image, past_image, busy } => {
                self.cache.observe(image.scn);
                if self.waits_for(&request) {
                    let grant = Grant { image, arrival: Arrival { kind, source: Some(from) }, past_image, busy };
                    self.granted(request, Some(grant), &mut out);
                } else {
                    self.unsolicited(request, Some(image), past_image, &mut out);
                }
            }
        }
        out
    }

    /// The block a grant from disk asked for was read.
    pub fn disk_read(&mut self, request: LockRequest, image: BlockImage) -> Vec<Output> {
        let mut out = Vec::new();
        if self.waits_for(&request) {
            self.stats.disk_reads += 1;
            let grant = Grant { image, arrival: Arrival { kind: TransferKind::Disk, source: None }, past_image: None, busy: false };
            self.granted(request, Some(grant), &mut out);
        } else {
            self.unsolicited(request, Some(image), None, &mut out);
        }
        out
    }

    fn directive(&mut self, d: Directive, was_deferred: bool, out: &mut Vec<Output>) {
        match d {
            Directive::Ship { request, holder_keeps, kind, holder, holder_grant } => {
                let block = request.block;
                if self.durable_pending.contains(&block) {
                    self.deferred.entry(block).or_default().push(Directive::Ship { holder, holder_grant, request, holder_keeps, kind });
                    return;
                }
                if self.granted.get(&block) != Some(&holder_grant) {
                    // For a lock this instance held before: the block went on since.
                    return;
                }
                let Some(shipment) = self.cache.ship(block, request.request_id, &request.requester, holder_keeps) else {
                    tracing::warn!(instance = %self.name, %block, requester = %request.requester, "told to ship a block this instance does not hold");
                    return;
                };
                self.stats.blocks_served += 1;
                let to = request.requester.clone();
                let msg = ToInstance::Shipped { request, from: self.name.clone(), kind, image: shipment.image, past_image: shipment.past_image, busy: was_deferred };
                out.push(Output::ToInstance(to, msg));
            }
            Directive::Invalidate { block, holder_grant, .. } => {
                if self.durable_pending.contains(&block) {
                    self.deferred.entry(block).or_default().push(d);
                    return;
                }
                if self.granted.get(&block) != Some(&holder_grant) {
                    return;
                }
                let past_image = self.cache.invalidate(block);
                self.stats.invalidations += 1;
                out.push(Output::ToMaster(block, ToMaster::Invalidated { block, holder: self.name.clone(), past_image }));
            }
            Directive::DiscardPastImage { block, up_to, .. } => self.cache.written_to_disk(block, up_to),
            Directive::GrantFromDisk { request } => {
                if self.waits_for(&request) || !self.cache.mode(request.block).covers(request.mode) {
                    out.push(Output::ReadDisk(request));
                } else {
                    self.unsolicited(request, None, None, out);
                }
            }
            Directive::GrantLocal { request } => {
                if self.waits_for(&request) {
                    self.granted(request, None, out);
                } else {
                    // Repeated (its acknowledgement lost on the way): acknowledged again.
                    self.unsolicited(request, None, None, out);
                }
            }
        }
    }

    fn waits_for(&self, request: &LockRequest) -> bool {
        self.asked.get(&request.block).is_some_and(|a| a.request.request_id == request.request_id)
    }

    /// A grant for a request this instance no longer waits for: a repeat of one granted here
    /// already is acknowledged again and changes nothing (the block may have moved on since);
    /// one of an earlier life is taken (unless a copy at least as strong is here), as the master
    /// counts it held, and acknowledged. Never refused.
    fn unsolicited(&mut self, request: LockRequest, image: Option<BlockImage>, past_image: Option<u64>, out: &mut Vec<Output>) {
        let block = request.block;
        let held = self.cache.mode(block);
        let repeated = self.granted.get(&block).is_some_and(|&id| request.request_id <= id);
        if !repeated {
            self.granted.insert(block, request.request_id);
        }
        if !repeated && !held.covers(request.mode) {
            match image {
                Some(image) => self.cache.install(block, request.mode, image),
                None => {
                    self.cache.convert(block, request.mode);
                }
            }
        }
        out.push(Output::ToMaster(block, ToMaster::Acquired { block, request_id: request.request_id, requester: self.name.clone(), past_image }));
        self.evict(out);
    }

    /// The lock this instance asked for is granted: with a block shipped or read, or on its
    /// own copy.
    fn granted(&mut self, request: LockRequest, grant: Option<Grant>, out: &mut Vec<Output>) {
        let block = request.block;
        let Some(asked) = self.asked.remove(&block) else { return };
        self.granted.insert(block, request.request_id);
        let mut past_image = None;
        let arrival = match grant {
            Some(Grant { image, arrival, past_image: pi, busy }) => {
                past_image = pi;
                let micros = asked.first_sent.elapsed().as_micros() as u64;
                let (size, scn) = (image.data.len(), image.scn);
                self.cache.install(block, request.mode, image);
                if arrival.kind != TransferKind::Disk {
                    self.stats.received(request.mode, arrival.kind, busy, micros);
                }
                if (self.wants)(crate::messages::events::EventType::BlockTransfer) {
                    out.push(Output::Event(RacEvent::BlockTransfer(BlockTransfer {
                        block_id: block.to_string(),
                        source_instance: arrival.source.clone(),
                        target_instance: self.name.clone(),
                        block_mode: request.mode,
                        transfer_kind: arrival.kind,
                        transfer_size: size,
                        duration_micros: micros,
                        success: true,
                        data_version: scn,
                    })));
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
        out.push(Output::ToMaster(block, ToMaster::Acquired { block, request_id: request.request_id, requester: self.name.clone(), past_image }));
        if let Some(Op::Read { came, .. } | Op::Write { came, .. }) = self.ops.get_mut(&block).and_then(|q| q.front_mut()) {
            *came = arrival.or(Some(Arrival { kind: TransferKind::Local, source: None }));
        }
        if asked.from != request.mode {
            self.lock_event(block, asked.from, request.mode, asked.first_sent.elapsed().as_secs_f64() * 1000.0, out);
        }
        self.run(block, out);
        self.evict(out);
    }

    fn lock_event(&self, block: BlockId, from: LockMode, to: LockMode, waited_ms: f64, out: &mut Vec<Output>) {
        use crate::messages::events::EventType;
        let event_type = match (from, to) {
            (_, LockMode::Null) => EventType::LockReleased,
            (LockMode::Null, _) => EventType::LockGranted,
            _ => EventType::LockConverted,
        };
        if !(self.wants)(event_type) {
            return;
        }
        let payload =
            LockChange { resource_id: block.to_string(), lock_type: to, previous_lock_type: from, instance_id: self.name.clone(), granted: true, wait_time_ms: waited_ms };
        out.push(Output::Event(match event_type {
            EventType::LockReleased => RacEvent::LockReleased(payload),
            EventType::LockGranted => RacEvent::LockGranted(payload),
            _ => RacEvent::LockConverted(payload),
        }));
    }

    /// Starts evicting what is over capacity: each eviction is a release to null, behind the
    /// block's other operations.
    fn evict(&mut self, out: &mut Vec<Output>) {
        let under_way = self.ops.values().filter(|q| matches!(q.front(), Some(Op::Convert { id: None, .. }))).count();
        let evictions = self.cache.evictions(under_way, &|b| self.ops.contains_key(&b) || self.durable_pending.contains(&b));
        for e in evictions {
            let from = self.cache.mode(e.block);
            out.extend(self.enqueue(e.block, Op::Convert { id: None, to: LockMode::Null, from, started: Instant::now() }));
        }
    }

    /// The GRD is being reconfigured (an instance failed or joined, or blocks are remastered):
    /// the lock requests under way are void (whatever answers them is of the configuration
    /// before, and dropped), directives waiting are dropped, and nothing is asked until
    /// [`InstanceState::resume`]. Returns what this instance holds, from which the masters of
    /// the new configuration rebuild their entries, and its past images, written to disk before
    /// it resumes (a block shipped in a message now dropped lives on in one).
    pub fn freeze(&mut self) -> InstanceReport {
        self.frozen = true;
        self.asked.clear();
        self.deferred.clear();
        let holdings = self
            .cache
            .modes()
            .map(|(block, mode)| Holding { block, mode, grant: self.granted.get(&block).copied().unwrap_or(0) })
            .collect();
        let past_images = self.cache.past_images().map(|(block, image)| (block, image.clone())).collect();
        InstanceReport { instance: self.name.clone(), holdings, past_images }
    }

    /// The new configuration is in place and `on_disk` versions are on disk (the past images
    /// reported): the operations that waited ask for their locks again, as new requests.
    pub fn resume(&mut self, on_disk: &[(BlockId, u64)]) -> Vec<Output> {
        self.frozen = false;
        for (block, scn) in on_disk {
            self.cache.written_to_disk(*block, *scn);
        }
        let mut out = Vec::new();
        let blocks: Vec<BlockId> = self.ops.keys().copied().collect();
        for block in blocks {
            self.run(block, &mut out);
        }
        out
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Sends again the lock requests unanswered for [`RETRY_AFTER`] at `now`: one of them or
    /// its answer was lost on the link.
    pub fn retry(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        for a in self.asked.values_mut() {
            if now.duration_since(a.sent) >= RETRY_AFTER {
                a.sent = now;
                self.stats.lost += 1;
                out.push(Output::ToMaster(a.request.block, ToMaster::Request(a.request.clone())));
            }
        }
        out
    }

    /// What is under way, for a test that stalls to say where.
    #[cfg(test)]
    pub fn describe(&self) -> String {
        let asked: Vec<String> = self.asked.values().map(|a| format!("{}:{}#{}", a.request.block, a.request.mode.as_str(), a.request.request_id)).collect();
        let ops: Vec<String> = self.ops.iter().map(|(b, q)| format!("{b}x{}", q.len())).collect();
        let held: Vec<String> = self.cache.holdings().iter().map(|(b, m, s)| format!("{b}={}@{s}", m.as_str())).collect();
        format!("{} asked {asked:?} ops {ops:?} durable {:?} deferred {:?} held {held:?}", self.name, self.durable_pending, self.deferred.keys().collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: BlockId = BlockId { file: 1, block: 3 };

    fn state() -> InstanceState {
        InstanceState::new("i1".into(), 4, 0, Arc::new(|_| false))
    }

    /// Grants every lock request at once from an empty disk, as a master with no other holder
    /// would; returns the other outputs.
    fn grant_all(s: &mut InstanceState, outputs: Vec<Output>) -> Vec<Output> {
        let mut rest = Vec::new();
        for o in outputs {
            match o {
                Output::ToMaster(_, ToMaster::Request(request)) => {
                    let image = BlockImage { scn: 0, data: Arc::from(&b""[..]), on_disk: true };
                    let more = s.disk_read(request, image);
                    rest.extend(grant_all(s, more));
                }
                other => rest.push(other),
            }
        }
        rest
    }

    #[test]
    fn a_write_whose_redo_fails_is_answered_as_failed_and_leaves_the_version_before_it() {
        let mut s = state();
        let out = s.write(1, B, b"first".to_vec());
        let out = grant_all(&mut s, out);
        assert!(out.iter().any(|o| matches!(o, Output::Redo(r) if r.scn == 1)), "{out:?}");
        let out = s.redo_durable(B, 1, Ok(()));
        assert!(out.iter().any(|o| matches!(o, Output::Answer(1, Ok(Answer::Written(_))))), "{out:?}");
        let out = s.write(2, B, b"second".to_vec());
        assert!(out.iter().any(|o| matches!(o, Output::Redo(r) if r.scn == 2)), "held exclusive: written at once");
        let failed = RacError::Storage { message: "disk full".into() };
        let out = s.redo_durable(B, 2, Err(failed));
        assert!(out.iter().any(|o| matches!(o, Output::Answer(2, Err(RacError::Storage { .. })))), "{out:?}");
        let out = s.read(3, B);
        let read = out.iter().find_map(|o| match o {
            Output::Answer(3, Ok(Answer::Read(r))) => Some(r.clone()),
            _ => None,
        });
        assert_eq!(read.map(|r| (r.data, r.data_version)), Some(("first".to_string(), 1)), "the failed write is not there");
    }
}
