//! Cache Fusion's coherence under any order of events: instances ([`InstanceState`]) and masters
//! ([`Directory`]) wired by a simulated network, driven by random operations, deliveries (each
//! link in order, links in any order), losses with retries, and I/O completions, on 2 to 8
//! instances with caches smaller than the blocks in use, and GRD reconfigurations mixed in:
//! instance crashes (the instance's cache, operations and I/O under way lost; its redo kept)
//! recovered by the next reconfiguration, rejoins, and blocks remastered. A reconfiguration is
//! what the actors do: every live instance freezes and reports its locks and past images, the
//! messages of the configuration before are dropped (the shells drop them by their epoch), the
//! past images and the failed instances' redo go to disk, the masters are rebuilt from the
//! reports and the instances resume. After every step: at most one instance
//! holds a block exclusive, and none shared beside it (a copy whose release or downgrade is
//! asked for counts at the mode asked for: nothing is served from it meanwhile). Every read returns the latest write
//! acknowledged before it was asked, with its bytes; every write's version is past every version
//! acknowledged before it. Once everything is delivered, every operation is answered and every
//! instance reads the last acknowledged write.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use super::directory::Directory;
use super::protocol::{Answer, InstanceState, Output};
use crate::model::master_ring::MasterMap;
use crate::messages::rac::*;
use crate::model::rac::{BlockId, LockMode};

#[derive(Debug, Clone)]
enum Step {
    Read { instance: usize, block: u64 },
    Write { instance: usize, block: u64 },
    Release { instance: usize, block: u64 },
    /// Delivers the next message of one link (chosen among those with messages).
    Deliver(usize),
    /// Loses the next message of one link.
    Lose(usize),
    /// Completes one I/O under way.
    Complete(usize),
    /// Every instance and master sends again what waits for an answer.
    Retry,
    /// An instance crashes (if another stays up).
    Crash(usize),
    /// The GRD is reconfigured: crashed instances are recovered, one may rejoin, a block may be
    /// remastered to an instance.
    Reconfigure { rejoin: usize, remaster: Option<(u64, usize)> },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..8usize, 0..3u64).prop_map(|(instance, block)| Step::Read { instance, block }),
        2 => (0..8usize, 0..3u64).prop_map(|(instance, block)| Step::Write { instance, block }),
        1 => (0..8usize, 0..3u64).prop_map(|(instance, block)| Step::Release { instance, block }),
        8 => any::<usize>().prop_map(Step::Deliver),
        1 => any::<usize>().prop_map(Step::Lose),
        3 => any::<usize>().prop_map(Step::Complete),
        1 => Just(Step::Retry),
        1 => any::<usize>().prop_map(Step::Crash),
        1 => (any::<usize>(), prop::option::of((0..3u64, any::<usize>()))).prop_map(|(rejoin, remaster)| Step::Reconfigure { rejoin, remaster }),
    ]
}

#[derive(Debug)]
enum Msg {
    ToMaster(ToMaster),
    ToInstance(ToInstance),
}

#[derive(Debug)]
enum Io {
    Redo { instance: usize, block: BlockId, scn: u64, data: Vec<u8> },
    WriteBack { instance: usize, block: BlockId, image: BlockImage },
    ReadDisk { instance: usize, request: LockRequest },
}

/// An operation asked and not answered yet: what it must see.
#[derive(Debug)]
struct Asked {
    instance: usize,
    block: BlockId,
    /// The latest version acknowledged when it was asked.
    floor: u64,
    write: Option<Vec<u8>>,
}

struct Sim {
    names: Vec<String>,
    instances: Vec<InstanceState>,
    masters: Vec<Directory>,
    map: MasterMap,
    alive: Vec<bool>,
    /// Crashed, and not recovered yet.
    unrecovered: Vec<usize>,
    /// Per instance, its durable redo: (block, version).
    redo: Vec<Vec<(BlockId, u64)>>,
    /// Instances started so far: a rejoined one asks with request ids of its own.
    lives: u64,
    /// (from, to, to a master) -> messages in order.
    links: BTreeMap<(usize, usize, bool), VecDeque<Msg>>,
    io: Vec<Io>,
    disk: HashMap<BlockId, BlockImage>,
    asked: HashMap<u64, Asked>,
    next_op: u64,
    /// Per block, the latest acknowledged version and the bytes of every version acknowledged.
    acked: HashMap<BlockId, u64>,
    written: HashMap<(BlockId, u64), Vec<u8>>,
    /// What happened, to say how a failing case got there.
    trace: Vec<String>,
    /// The instances' clock for retries: past every request's sending (which reads the real
    /// clock), moved on one retry interval each retry.
    clock: std::time::Instant,
}

impl Sim {
    fn new(n: usize, cache: usize) -> Sim {
        let names: Vec<String> = (0..n).map(|i| format!("i{i}")).collect();
        let wants: super::protocol::Wants = Arc::new(|_| true);
        Sim {
            instances: names.iter().enumerate().map(|(i, name)| InstanceState::new(name.clone(), cache, (i as u64) << 40, wants.clone())).collect(),
            masters: names.iter().map(|name| Directory::new(name.clone())).collect(),
            map: MasterMap::new(1, &names, BTreeMap::new()),
            alive: vec![true; n],
            unrecovered: Vec::new(),
            redo: vec![Vec::new(); n],
            lives: n as u64,
            names,
            links: BTreeMap::new(),
            io: Vec::new(),
            disk: HashMap::new(),
            asked: HashMap::new(),
            next_op: 0,
            acked: HashMap::new(),
            written: HashMap::new(),
            trace: Vec::new(),
            clock: std::time::Instant::now() + std::time::Duration::from_secs(3600),
        }
    }

    fn index(&self, name: &str) -> usize {
        self.names.iter().position(|n| n == name).expect("a known instance")
    }

    fn master_of(&self, block: BlockId) -> usize {
        self.index(self.map.master_of(block).expect("instances"))
    }

    fn op(&mut self, instance: usize, block: BlockId, write: Option<Vec<u8>>) -> u64 {
        self.next_op += 1;
        let floor = self.acked.get(&block).copied().unwrap_or(0);
        self.asked.insert(self.next_op, Asked { instance, block, floor, write });
        self.next_op
    }

    fn outputs(&mut self, from: usize, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::ToMaster(block, msg) => {
                    let to = self.master_of(block);
                    self.links.entry((from, to, true)).or_default().push_back(Msg::ToMaster(msg));
                }
                Output::ToInstance(to, msg) => {
                    let to = self.index(&to);
                    self.links.entry((from, to, false)).or_default().push_back(Msg::ToInstance(msg));
                }
                Output::Redo(r) => self.io.push(Io::Redo { instance: from, block: r.block, scn: r.scn, data: r.data }),
                Output::WriteBack(block, image) => self.io.push(Io::WriteBack { instance: from, block, image }),
                Output::ReadDisk(request) => self.io.push(Io::ReadDisk { instance: from, request }),
                Output::Answer(id, answer) => self.answered(id, answer),
                Output::Event(_) => {}
            }
        }
    }

    fn directives(&mut self, master: usize, directives: Vec<Directive>) {
        for d in directives {
            let to = self.index(d.to());
            self.links.entry((master, to, false)).or_default().push_back(Msg::ToInstance(ToInstance::Directive(d)));
        }
    }

    fn answered(&mut self, id: u64, answer: Result<Answer, RacError>) {
        let asked = self.asked.remove(&id).expect("an operation answered once");
        let block = asked.block;
        match answer.expect("no operation fails in the simulation") {
            Answer::Read(r) => {
                assert!(r.data_version >= asked.floor, "a read of {block} saw version {} after {} was acknowledged", r.data_version, asked.floor);
                let expected = self.written.get(&(block, r.data_version)).cloned().unwrap_or_default();
                assert_eq!(r.data.as_bytes(), expected.as_slice(), "the bytes of version {} of {block}", r.data_version);
            }
            Answer::Written(w) => {
                assert!(w.data_version > asked.floor, "a write of {block} took version {} after {} was acknowledged", w.data_version, asked.floor);
                self.written.insert((block, w.data_version), asked.write.expect("a write"));
                let latest = self.acked.entry(block).or_default();
                *latest = (*latest).max(w.data_version);
            }
            Answer::Changed(_) => {}
        }
    }

    fn deliver(&mut self, key: (usize, usize, bool)) {
        let Some(msg) = self.links.get_mut(&key).and_then(VecDeque::pop_front) else { return };
        let (from, to, _) = key;
        self.trace.push(format!("{from}->{to} {msg:?}"));
        if !self.alive[to] {
            return;
        }
        match msg {
            Msg::ToMaster(m) => {
                let d = &mut self.masters[to];
                let directives = match m {
                    ToMaster::Request(r) => d.request(r),
                    ToMaster::Acquired { block, request_id, requester, past_image } => d.acquired(block, request_id, &requester, past_image),
                    ToMaster::Invalidated { block, holder, past_image } => d.invalidated(block, &holder, past_image),
                    ToMaster::WrittenToDisk { block, scn } => d.written_to_disk(block, scn),
                };
                self.directives(to, directives);
            }
            Msg::ToInstance(m) => {
                let out = self.instances[to].on_message(m);
                self.outputs(to, out);
            }
        }
    }

    fn complete(&mut self, i: usize) {
        if self.io.is_empty() {
            return;
        }
        let io = self.io.remove(i % self.io.len());
        self.trace.push(format!("io {io:?}"));
        match io {
            Io::Redo { instance, block, scn, data } => {
                // Durable: a read may see it even if a crash keeps it from being acknowledged.
                self.written.insert((block, scn), data);
                self.redo[instance].push((block, scn));
                let out = self.instances[instance].redo_durable(block, scn, Ok(()));
                self.outputs(instance, out);
            }
            Io::WriteBack { instance, block, image } => {
                let newer = self.disk.get(&block).is_none_or(|d| d.scn < image.scn);
                if newer {
                    self.disk.insert(block, BlockImage { on_disk: true, ..image.clone() });
                }
                let out = self.instances[instance].written_back(block, image.scn, Ok(newer));
                self.outputs(instance, out);
            }
            Io::ReadDisk { instance, request } => {
                let image = self.disk.get(&request.block).cloned().unwrap_or(BlockImage { scn: 0, data: Arc::from(&[][..]), on_disk: true });
                let out = self.instances[instance].disk_read(request, image);
                self.outputs(instance, out);
            }
        }
    }

    fn retry(&mut self) {
        // The retry interval passes: every request still waiting goes again.
        self.clock += super::protocol::RETRY_AFTER;
        for i in self.live().collect::<Vec<_>>() {
            let out = self.instances[i].retry(self.clock);
            self.outputs(i, out);
        }
        for m in self.live().collect::<Vec<_>>() {
            let busy: Vec<BlockId> = self.masters[m].busy().collect();
            for block in busy {
                let directives = self.masters[m].in_flight(block);
                self.directives(m, directives);
            }
        }
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.alive.len()).filter(|i| self.alive[*i])
    }

    /// Instance `i` fails: its cache, its directory, its operations and I/O under way are gone
    /// (the operations answered as failed); its durable redo stays.
    fn crash(&mut self, i: usize) {
        if !self.alive[i] || self.live().count() < 2 {
            return;
        }
        self.trace.push(format!("CRASH {i}"));
        self.alive[i] = false;
        self.unrecovered.push(i);
        self.asked.retain(|_, a| a.instance != i);
        self.io.retain(|io| !matches!(io, Io::Redo { instance, .. } | Io::WriteBack { instance, .. } | Io::ReadDisk { instance, .. } if *instance == i));
        // What it sent may still arrive (until a reconfiguration voids it); what is sent to it
        // is lost.
        self.links.retain(|(_, to, _), _| *to != i);
    }

    /// A reconfiguration of the GRD, as the cluster's control runs it.
    fn reconfigure(&mut self, rejoin: usize, remaster: Option<(u64, usize)>) {
        let n = self.names.len();
        let wants: super::protocol::Wants = Arc::new(|_| true);
        if rejoin < usize::MAX && !self.alive[rejoin % n] && !self.unrecovered.contains(&(rejoin % n)) {
            let r = rejoin % n;
            self.lives += 1;
            self.instances[r] = InstanceState::new(self.names[r].clone(), 2, self.lives << 40, wants);
            self.alive[r] = true;
        }
        self.trace.push(format!("RECONFIGURE unrecovered {:?} alive {:?} remaster {remaster:?}", self.unrecovered, self.alive));
        let reports: Vec<InstanceReport> = self.live().collect::<Vec<_>>().into_iter().map(|i| self.instances[i].freeze()).collect();
        // What was on the way belongs to the configuration before: dropped where it arrives.
        self.links.clear();
        let alive = self.alive.clone();
        self.io.retain(|io| !matches!(io, Io::ReadDisk { .. }) || matches!(io, Io::ReadDisk { instance, .. } if !alive[*instance]));
        for dead in std::mem::take(&mut self.unrecovered) {
            for (block, scn) in std::mem::take(&mut self.redo[dead]) {
                let data = self.written.get(&(block, scn)).cloned().unwrap_or_default();
                self.write_disk(block, BlockImage { scn, data: Arc::from(data.as_slice()), on_disk: true });
            }
            self.instances[dead] = InstanceState::new(self.names[dead].clone(), 2, 0, Arc::new(|_| true));
        }
        let mut on_disk = Vec::new();
        for r in &reports {
            for (block, image) in &r.past_images {
                self.write_disk(*block, image.clone());
                on_disk.push((*block, image.scn));
            }
        }
        let live: Vec<String> = self.live().map(|i| self.names[i].clone()).collect();
        let mut overrides = self.map.overrides().clone();
        if let Some((block, to)) = remaster {
            overrides.insert(BlockId { file: 1, block }, self.names[to % n].clone());
        }
        self.map = MasterMap::new(self.map.epoch + 1, &live, overrides);
        let mut entries: BTreeMap<usize, BTreeMap<BlockId, Vec<(String, Holding)>>> = BTreeMap::new();
        for r in &reports {
            for h in &r.holdings {
                let m = self.master_of(h.block);
                entries.entry(m).or_default().entry(h.block).or_default().push((r.instance.clone(), h.clone()));
            }
        }
        for m in 0..n {
            let mine = entries.remove(&m).unwrap_or_default().into_iter().collect();
            self.masters[m] = Directory::rebuilt(self.names[m].clone(), mine);
        }
        for i in self.live().collect::<Vec<_>>() {
            let out = self.instances[i].resume(&on_disk);
            self.outputs(i, out);
        }
    }

    fn write_disk(&mut self, block: BlockId, image: BlockImage) {
        if self.disk.get(&block).is_none_or(|d| d.scn < image.scn) {
            self.disk.insert(block, BlockImage { on_disk: true, ..image });
        }
    }

    fn busy_link(&self, pick: usize) -> Option<(usize, usize, bool)> {
        let busy: Vec<_> = self.links.iter().filter(|(_, q)| !q.is_empty()).map(|(k, _)| *k).collect();
        (!busy.is_empty()).then(|| busy[pick % busy.len()])
    }

    /// At most one exclusive holder of each block, and no shared one beside it, in the caches.
    fn check_holders(&self, blocks: &[BlockId]) {
        for block in blocks {
            let modes: Vec<LockMode> = self.live().map(|i| self.instances[i].mode_in_effect(*block)).filter(|m| *m != LockMode::Null).collect();
            let exclusive = modes.iter().filter(|m| **m == LockMode::Exclusive).count();
            if exclusive > 0 && modes.len() > 1 {
                let key = format!("{block:?}");
                let trace: Vec<&String> = self.trace.iter().filter(|t| t.contains(&key) || t.starts_with("LOST") || t == &"retry").collect();
                panic!("{block} held {modes:?}\n{}", trace.iter().map(|t| t.as_str()).collect::<Vec<_>>().join("\n"));
            }
        }
    }

    /// Delivers and completes everything (retrying what a loss left waiting) until quiet.
    fn settle(&mut self) {
        for round in 0..10_000 {
            if !self.unrecovered.is_empty() {
                self.reconfigure(usize::MAX, None);
            } else if let Some(key) = self.busy_link(0) {
                self.deliver(key);
            } else if !self.io.is_empty() {
                self.complete(0);
            } else if self.live().all(|i| self.instances[i].is_idle() && self.masters[i].busy().next().is_none()) {
                return;
            } else {
                if round > 9_000 {
                    let instances: Vec<String> = self.instances.iter().map(InstanceState::describe).collect();
                    let masters: Vec<String> =
                        self.masters.iter().flat_map(|m| m.busy().filter_map(|b| m.state(b)).map(|s| format!("{s:?}")).collect::<Vec<_>>()).collect();
                    let tail = 0; let _ = self.trace.len();
                    panic!("no progress:\n{}\nmasters: {masters:#?}\n{}", instances.join("\n"), self.trace[tail..self.trace.len().min(220)].join("\n"));
                }
                self.retry();
            }
        }
        panic!("the simulation did not settle");
    }
}

fn run(instances: usize, steps: &[Step]) {
    let mut sim = Sim::new(instances, 2);
    let blocks: Vec<BlockId> = (0..3).map(|b| BlockId { file: 1, block: b }).collect();
    for (n, s) in steps.iter().enumerate() {
        match s {
            Step::Read { instance, block } if sim.alive[instance % instances] => {
                let (i, b) = (instance % instances, blocks[*block as usize]);
                let id = sim.op(i, b, None);
                let out = sim.instances[i].read(id, b);
                sim.outputs(i, out);
            }
            Step::Write { instance, block } if sim.alive[instance % instances] => {
                let (i, b) = (instance % instances, blocks[*block as usize]);
                let data = format!("w{n} by i{i}").into_bytes();
                let id = sim.op(i, b, Some(data.clone()));
                let out = sim.instances[i].write(id, b, data);
                sim.outputs(i, out);
            }
            Step::Release { instance, block } if sim.alive[instance % instances] => {
                let (i, b) = (instance % instances, blocks[*block as usize]);
                let id = sim.op(i, b, None);
                let out = sim.instances[i].convert(id, b, LockMode::Null);
                sim.outputs(i, out);
            }
            Step::Deliver(pick) => {
                if let Some(key) = sim.busy_link(*pick) {
                    sim.deliver(key);
                }
            }
            Step::Lose(pick) => {
                if let Some(key) = sim.busy_link(*pick) {
                    let lost = sim.links.get_mut(&key).and_then(VecDeque::pop_front);
                    sim.trace.push(format!("LOST {key:?} {lost:?}"));
                }
            }
            Step::Complete(pick) => sim.complete(*pick),
            Step::Retry => {
                sim.trace.push("retry".into());
                sim.retry();
            }
            Step::Crash(i) => sim.crash(i % instances),
            Step::Reconfigure { rejoin, remaster } => sim.reconfigure(*rejoin, *remaster),
            Step::Read { .. } | Step::Write { .. } | Step::Release { .. } => {}
        }
        sim.check_holders(&blocks);
    }
    sim.settle();
    sim.check_holders(&blocks);
    assert!(sim.asked.is_empty(), "every operation is answered once everything is delivered: {:?}", sim.asked);
    // Quiet: every instance reads the last acknowledged write of every block.
    for block in &blocks {
        for i in sim.live().collect::<Vec<_>>() {
            let id = sim.op(i, *block, None);
            let out = sim.instances[i].read(id, *block);
            sim.outputs(i, out);
            sim.settle();
            assert!(sim.asked.is_empty());
        }
    }
}

#[test]
fn random_operations_deliveries_and_losses_keep_the_caches_coherent() {
    // A fixed seed: the same sequences every run.
    let config = Config { cases: 500, rng_seed: RngSeed::Fixed(18), failure_persistence: None, ..Config::default() };
    proptest!(config, |(instances in 2..=8usize, steps in prop::collection::vec(step(), 1..150))| run(instances, &steps));
}
