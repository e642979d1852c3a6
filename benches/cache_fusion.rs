//! Cache Fusion throughput and latency on a hot set of blocks, against the floor of a 3-way
//! transfer in the same run.
//!
//! * `cache_fusion/chain/16`, **the baseline**: three bare actix actors, a requester, a master
//!   and a holder; a client asks the requester, which sends to the master, which sends to the
//!   holder, which sends to the requester, which answers the client: the messages of a 3-way
//!   transfer and nothing else, 16 in flight.
//! * `cache_fusion/{read_mostly,write_heavy}/{2,4,8}`: a runtime (memory engine) with 2, 4 or 8
//!   RAC instances; 16 lanes, each reading (90% or 50% of the time) or writing a random block of
//!   a hot set of 32 at a random instance. A read of a block the instance holds, or a write of
//!   one it holds exclusive, is answered from its cache; the others move the block from another
//!   instance's cache (2-way or 3-way) or from disk.
//! * `cache_fusion/every_write_moves/4`: every operation a transfer: each lane writes its own
//!   block at each of 4 instances in turn, so that each write first ships the block from the
//!   instance that wrote it last (a current-block transfer) and then commits its redo.
//! * `.../with_subscriber/4`: the 4-instance workloads with an in-process subscriber taking every
//!   `block_transfer` event. Each sample is paired with the same operations with the subscriber
//!   gone, run just before or just after it (in turn): its cost is the median of those pairs'
//!   ratios, which the machine's drift from one case to the next does not move.
//!
//! The summary prints, per case, the operations/s and the block transfers/s (2-way and 3-way,
//! from the instances' own statistics over the measured run), the p50 and p99 of the
//! operations that moved a block, the transfer rate against the baseline's, and what the
//! subscriber costs. Each ratio is the median of pairs measured back to back (a sample, then
//! the chain or the same operations without the subscriber): this machine's speed drifts by a
//! third from one minute to the next, and a ratio of two cases measured apart would carry it. About a minute; `-- --quick` is shorter.

// Shared by the benches; each takes what it needs.
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_rt::{System, SystemRunner};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};

use clusterd::actors::rac::Rac;
use clusterd::messages::events::{now_ms, EventFilter, EventType};
use clusterd::messages::rac::{GetInstance, ReadBlock, WriteBlock};
use clusterd::messages::registry::{Delivery, Subscribe, SubscriberInfo, Transport, Unsubscribe};
use clusterd::model::rac::{BlockId, TransferKind};
use clusterd::{Config, Runtime, RuntimeHandle};
use support::{fmt_time, median_rate, quantile, record, Client, Engine, Samples};

/// The server binary's allocator (src/main.rs), so that both sides of every ratio run on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LANES: usize = 16;
const HOT_BLOCKS: u64 = 32;
const INSTANCES: [usize; 3] = [2, 4, 8];
/// Not a share of reads: every operation a write of the lane's own block by the next instance.
const MOVE_EVERY_WRITE: u64 = 0;

// ---- The baseline: a bare chain of three messages ----

#[derive(Message)]
#[rtype(result = "()")]
struct Ask(tokio::sync::oneshot::Sender<()>);

#[derive(Message)]
#[rtype(result = "()")]
struct Hop(u64);

struct Requester {
    master: Option<Recipient<Hop>>,
    next: u64,
    waiting: std::collections::HashMap<u64, tokio::sync::oneshot::Sender<()>>,
}

impl Actor for Requester {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
struct Wire(Recipient<Hop>);

impl Handler<Wire> for Requester {
    type Result = ();
    fn handle(&mut self, msg: Wire, _ctx: &mut Self::Context) {
        self.master = Some(msg.0);
    }
}

impl Handler<Ask> for Requester {
    type Result = ();
    fn handle(&mut self, msg: Ask, _ctx: &mut Self::Context) {
        self.next += 1;
        self.waiting.insert(self.next, msg.0);
        if let Some(m) = &self.master {
            m.do_send(Hop(self.next));
        }
    }
}

impl Handler<Hop> for Requester {
    type Result = ();
    fn handle(&mut self, msg: Hop, _ctx: &mut Self::Context) {
        if let Some(reply) = self.waiting.remove(&msg.0) {
            let _ = reply.send(());
        }
    }
}

/// A master or a holder: passes each hop on.
struct Relay(Recipient<Hop>);

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Handler<Hop> for Relay {
    type Result = ();
    fn handle(&mut self, msg: Hop, _ctx: &mut Self::Context) {
        self.0.do_send(msg);
    }
}

fn start_chain(system: &SystemRunner) -> Addr<Requester> {
    system.block_on(async {
        let requester = Requester { master: None, next: 0, waiting: Default::default() }.start();
        let holder = Relay(requester.clone().recipient()).start();
        let master = Relay(holder.recipient()).start();
        requester.do_send(Wire(master.recipient()));
        requester
    })
}

fn run_chain(system: &SystemRunner, client: &Client, requester: &Addr<Requester>, n: u64) -> Vec<Duration> {
    let requester = requester.clone();
    client.run(system, move || async move {
        let lanes = (0..LANES as u64).map(|lane| {
            let requester = requester.clone();
            async move {
                let mut out = Vec::new();
                let mut i = lane;
                while i < n {
                    let t0 = Instant::now();
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    requester.do_send(Ask(tx));
                    rx.await.expect("the chain answers");
                    out.push(t0.elapsed());
                    i += LANES as u64;
                }
                out
            }
        });
        futures_util::future::join_all(lanes).await.into_iter().flatten().collect()
    })
}

// ---- The RAC workload ----

/// Counts the events it receives; its queue is a WebSocket session's.
struct Counter(Arc<AtomicU64>, usize);

impl Actor for Counter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // A WebSocket session's queue (`events.session_queue`), not actix's default of 16: the
        // registry drops what a full queue cannot take.
        ctx.set_mailbox_capacity(self.1);
    }
}

impl Handler<Delivery> for Counter {
    type Result = ();
    fn handle(&mut self, msg: Delivery, _ctx: &mut Self::Context) {
        if let Delivery::Event(e) = msg {
            std::hint::black_box(e.ws_frame().len());
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Cluster {
    runtime: RuntimeHandle,
    instances: Vec<Addr<clusterd::actors::rac::RacInstanceActor>>,
    /// The subscriber's sink and what it counted.
    sink: Recipient<Delivery>,
    events: Arc<AtomicU64>,
}

/// What one case measured besides the operations' latencies.
#[derive(Default)]
struct Moved {
    transfers: u64,
    elapsed: Duration,
    /// Latencies of the operations that moved a block from another instance.
    transfer_latencies: Vec<f64>,
    events: u64,
    /// With a subscriber: per sample, the rate with it over the rate without it just after.
    ratios: Vec<f64>,
    /// Per sample, its transfers/s over the chain's rate on as many operations just after.
    against_chain: Vec<f64>,
}

impl Cluster {
    fn start(system: &SystemRunner, n: usize) -> Cluster {
        let mut config = Config::in_memory().without_replicas();
        Engine::Memory.configure(&mut config);
        config.rac.instances = (1..=n).map(|i| format!("instance-{i}")).collect();
        let queue = config.events.session_queue;
        let runtime = system.block_on(async move { Runtime::start(config) }).expect("runtime starts");
        let rac = runtime.domain::<Rac>().expect("the RAC domain runs");
        let instances = rac.instances.values().cloned().collect();
        let events = Arc::new(AtomicU64::new(0));
        let c = events.clone();
        // On a thread of its own, as a WebSocket session runs on an HTTP worker's.
        let sink = system.block_on(async move { Counter::start_in_arbiter(&Arbiter::new().handle(), move |_| Counter(c, queue)).recipient::<Delivery>() });
        Cluster { runtime, instances, sink, events }
    }

    /// Subscribes the counter to every `block_transfer`: the instances build them from now on.
    fn subscribe(&self, system: &SystemRunner) -> u64 {
        let (registry, sink) = (self.runtime.registry().clone(), self.sink.clone());
        system.block_on(async move {
            let filter = EventFilter { event_types: vec![EventType::BlockTransfer], ..EventFilter::default() };
            let info = SubscriberInfo { transport: Transport::InProcess, stream: "bench".into(), peer: "counter".into(), connected_at_ms: now_ms(), session_id: None };
            registry.send(Subscribe { filter, stream: Vec::new(), sink: Box::new(sink), info }).await.expect("the registry answers").subscription_id
        })
    }

    fn unsubscribe(&self, system: &SystemRunner, subscription_id: u64) {
        let registry = self.runtime.registry().clone();
        system.block_on(async move { registry.send(Unsubscribe { subscription_id }).await.expect("the registry answers") });
    }

    /// Blocks received from other instances, over every instance.
    fn transfers(&self, system: &SystemRunner) -> u64 {
        let addrs = self.instances.clone();
        system.block_on(async move {
            let mut total = 0;
            for a in addrs {
                let s = a.send(GetInstance).await.expect("instance answers").expect("a view").statistics;
                total += s.cr_2hop + s.cr_3hop + s.current_2hop + s.current_3hop;
            }
            total
        })
    }

    /// `n` operations over [`LANES`] lanes, `reads` of them (per cent) reads: each operation's
    /// latency, and whether it moved a block from another instance.
    fn run(&self, system: &SystemRunner, client: &Client, n: u64, reads: u64) -> Vec<(Duration, bool)> {
        let instances = self.instances.clone();
        client.run(system, move || async move {
            let lanes = (0..LANES as u64).map(|lane| {
                let instances = instances.clone();
                async move {
                    let mut out = Vec::new();
                    // xorshift64 per lane: the same sequence every run.
                    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (lane + 1);
                    let mut next = move || {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x
                    };
                    let mut i = lane;
                    while i < n {
                        // Every operation moving the block: the lane's own block, written by each
                        // instance in turn. Otherwise a random block of the hot set at a random one.
                        let (at, block) = if reads == MOVE_EVERY_WRITE {
                            (&instances[((i / LANES as u64) % instances.len() as u64) as usize], BlockId { file: 1, block: lane })
                        } else {
                            (&instances[(next() % instances.len() as u64) as usize], BlockId { file: 1, block: next() % HOT_BLOCKS })
                        };
                        let t0 = Instant::now();
                        let kind = if next() % 100 < reads {
                            at.send(ReadBlock { block }).await.expect("instance answers").expect("read").transfer_kind
                        } else {
                            at.send(WriteBlock { block, data: format!("write {i}").into_bytes() }).await.expect("instance answers").expect("written").transfer_kind
                        };
                        out.push((t0.elapsed(), matches!(kind, TransferKind::TwoWay | TransferKind::ThreeWay)));
                        i += LANES as u64;
                    }
                    out
                }
            });
            futures_util::future::join_all(lanes).await.into_iter().flatten().collect()
        })
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let system = System::new();
    let client = Client::start();
    let mut samples = Samples::new();
    let mut moved: BTreeMap<String, Moved> = BTreeMap::new();

    let mut group = criterion.benchmark_group("cache_fusion");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(1));
    let chain = start_chain(&system);
    group.bench_function(BenchmarkId::new("chain", LANES), |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            let lat = run_chain(&system, &client, &chain, iters);
            record(&mut samples, "chain", t0.elapsed(), lat)
        })
    });
    let mut cases: Vec<(&str, u64, usize, bool)> = Vec::new();
    for n in INSTANCES {
        cases.push(("read_mostly", 90, n, false));
        cases.push(("write_heavy", 50, n, false));
    }
    cases.push(("every_write_moves", MOVE_EVERY_WRITE, 4, false));
    cases.push(("read_mostly/with_subscriber", 90, 4, true));
    cases.push(("write_heavy/with_subscriber", 50, 4, true));
    for (case, reads, n, subscriber) in cases {
        // A fresh runtime per case: the other cases' caches and statistics do not carry over.
        let cluster = Cluster::start(&system, n);
        let id = format!("{case}/{n}");
        let mut m = Moved::default();
        let events_before = cluster.events.load(Ordering::Relaxed);
        group.bench_function(BenchmarkId::new(case, n), |b| {
            b.iter_custom(|iters| {
                // Pairs of a few operations (criterion's warm-up starts at one) say nothing.
                let paired = subscriber && iters >= 1_000;
                // Every other pair runs without the subscriber first, so that whatever the
                // order itself costs (draining the last events, a first run after a pause)
                // falls on both sides alike.
                let without_first = (paired && m.ratios.len() % 2 == 1).then(|| {
                    let t1 = Instant::now();
                    cluster.run(&system, &client, iters, reads);
                    t1.elapsed()
                });
                let subscription = subscriber.then(|| cluster.subscribe(&system));
                let before = cluster.transfers(&system);
                let t0 = Instant::now();
                let ops = cluster.run(&system, &client, iters, reads);
                let elapsed = t0.elapsed();
                let transfers = cluster.transfers(&system) - before;
                m.transfers += transfers;
                if iters >= 1_000 {
                    // The chain on as many operations at once: the ratio of the pair holds
                    // whatever the machine did around it.
                    let t1 = Instant::now();
                    run_chain(&system, &client, &chain, iters);
                    let chain_rate = iters as f64 / t1.elapsed().as_secs_f64().max(f64::EPSILON);
                    m.against_chain.push(transfers as f64 / elapsed.as_secs_f64().max(f64::EPSILON) / chain_rate);
                }
                m.elapsed += elapsed;
                m.transfer_latencies.extend(ops.iter().filter(|(_, t)| *t).map(|(d, _)| d.as_secs_f64()));
                if let Some(subscription) = subscription {
                    cluster.unsubscribe(&system, subscription);
                }
                if paired {
                    // The same operations at once, nobody listening: the subscriber's cost is the
                    // ratio of the pair, whatever the machine did around it.
                    let without = without_first.unwrap_or_else(|| {
                        let t1 = Instant::now();
                        cluster.run(&system, &client, iters, reads);
                        t1.elapsed()
                    });
                    m.ratios.push(without.as_secs_f64() / elapsed.as_secs_f64().max(f64::EPSILON));
                }
                record(&mut samples, &id, elapsed, ops.into_iter().map(|(d, _)| d).collect())
            })
        });
        m.events = cluster.events.load(Ordering::Relaxed) - events_before;
        moved.insert(id, m);
        let runtime = cluster.runtime.clone();
        system.block_on(async move { runtime.shutdown().await });
    }
    group.finish();

    criterion.final_summary();
    if support::measuring() {
        summary(&samples, &moved);
    }
    client.stop();
}

fn summary(samples: &Samples, moved: &BTreeMap<String, Moved>) {
    let Some(chain) = median_rate(samples, "chain") else { return };
    let mut lat: Vec<f64> = samples["chain"].iter().flat_map(|(_, l)| l.iter().map(|d| d.as_secs_f64())).collect();
    lat.sort_by(f64::total_cmp);
    let (c50, c99) = (quantile(&lat, 0.5), quantile(&lat, 0.99));
    println!();
    println!("Baseline, a bare chain of three actix messages (requester -> master -> holder -> requester), {LANES} in flight:");
    println!("  {chain:>9.0} chains/s  p50 {:>9}  p99 {:>9}", fmt_time(Duration::from_secs_f64(c50)), fmt_time(Duration::from_secs_f64(c99)));
    println!();
    println!("Cache Fusion, {LANES} lanes on a hot set of {HOT_BLOCKS} blocks: operations/s (median over samples), block");
    println!("transfers/s (2-way and 3-way, over the measured run), the transfer rate against the chain's (median and range");
    println!("of the pairs, each sample followed at once by the chain on as many operations), and the p50,");
    println!("p99 and p99/p50 of the operations that moved a block:");
    for (id, m) in moved {
        let Some(ops) = median_rate(samples, id) else { continue };
        let transfers = m.transfers as f64 / m.elapsed.as_secs_f64().max(f64::EPSILON);
        let mut t = m.transfer_latencies.clone();
        t.sort_by(f64::total_cmp);
        let (p50, p99) = (quantile(&t, 0.5), quantile(&t, 0.99));
        let events = if m.events > 0 { format!("  events taken {} of {} transfers", m.events, m.transfers) } else { String::new() };
        let mut against = m.against_chain.clone();
        against.sort_by(f64::total_cmp);
        let against = if against.is_empty() { format!("x{:.3}", transfers / chain) } else { format!("x{:.3} (x{:.2} to x{:.2})", quantile(&against, 0.5), against[0], against[against.len() - 1]) };
        println!(
            "  {id:<30} {ops:>8.0} ops/s  {transfers:>8.0} transfers/s  {against} of the chain  p50 {:>9}  p99 {:>9}  p99/p50 {:.1}{events}",
            fmt_time(Duration::from_secs_f64(p50)),
            fmt_time(Duration::from_secs_f64(p99)),
            p99 / p50.max(f64::EPSILON),
        );
    }
    for (id, m) in moved.iter().filter(|(_, m)| !m.ratios.is_empty()) {
        let mut r = m.ratios.clone();
        r.sort_by(f64::total_cmp);
        let cost = |ratio: f64| (1.0 - ratio) * 100.0;
        println!(
            "  subscriber cost, {id}: {:.1}% of the operations/s (median of {} pairs, with it and without it back to back, in turn first; {:.1}% to {:.1}%)",
            cost(quantile(&r, 0.5)),
            r.len(),
            cost(r[r.len() - 1]),
            cost(r[0]),
        );
    }
}
