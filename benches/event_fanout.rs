//! Event fan-out through the registry, against a hand-written fan-out of the same bytes.
//!
//! * `fanout_deliveries/{registry,baseline}/N`: N in-process subscribers (counting actors) whose
//!   filters are selective (`node_ids: ["node-hot"]`) and all admit the published events. The
//!   registry variant publishes `Publish` messages (stamp, serialize, retain, index lookup,
//!   filter check, `try_send` to each subscriber); the baseline sends one message per event to a
//!   plain actor that `do_send`s the same pre-serialized `Arc<PublishedEvent>` to the same
//!   recipients. One iteration = one event = N deliveries; a sample ends when every delivery has
//!   been handled by its subscriber.
//! * `selectivity/registry/10_of_10` and `10_of_10000`: one publish that 10 sessions admit, with
//!   10 sessions in total or with 10,000 (9,990 filtering on other node ids).
//!
//! Like the runtime (`src/runtime.rs`), the registry runs on an arbiter (thread) of its own; the
//! baseline's fan-out actor runs on that same arbiter; the subscribers run on the system arbiter
//! (the bench thread), as WebSocket sessions run on HTTP workers.
//!
//! After criterion, a summary with median figures and the ratios the issue sets targets for is
//! printed: registry deliveries/s at least half the baseline's, and a publish to 10,000 sessions of
//! which 10 are admitted under 3x a publish to 10 sessions.
//!
//! With `FANOUT_BREAKDOWN=1`, the run ends with the fan-out's cost on the sending thread alone:
//! the same fan-outs timed while the subscribers are held (the bench thread blocks until the
//! registry, or the baseline actor, has queued every delivery), which separates the registry's own
//! work from the interplay of two threads waking each other.
//!
//! `cargo bench --bench event_fanout` (criterion options after `--`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use criterion::{BenchmarkId, Criterion, Throughput};
use tokio::sync::Notify;

use clusterd::actors::registry::{EventMetrics, EventRegistry, InterestTable, RegistrySettings};
use clusterd::messages::cluster::{ClusterEvent, NodeHealthChange};
use clusterd::messages::events::{now_ms, Event, EventFilter, PublishedEvent, Severity, SharedEvent, SubjectKind};
use clusterd::model::{ClusterHealthStatus, NodeHealth};
use clusterd::messages::registry::{
    Delivery, GetRegistryStatus, Publish, Subscribe, SubscriberInfo, Transport, Unsubscribe,
};
use clusterd::metrics::Metrics;
use clusterd::storage::Store;

/// The server binary's allocator (src/main.rs), so that both sides of every ratio run on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Subscriber counts for the deliveries group.
const FANOUT_SIZES: [usize; 4] = [1, 100, 1_000, 10_000];
/// Sessions in the large selectivity case, and how many of them are admitted.
const SELECTIVITY_TOTAL: usize = 10_000;
const SELECTIVITY_HOT: usize = 10;
/// Mailbox bound of the counting actors and the registry's `session_queue`: large enough that
/// nothing is dropped in the bench (a drop would show as a missing delivery and a timeout).
const QUEUE: usize = 1 << 20;
/// At most this many deliveries in flight: a sample is sent in chunks, each waited for, so the
/// mailboxes never hold millions of messages.
const MAX_IN_FLIGHT: u64 = 200_000;
/// At most this many events per chunk (prebuilt before the chunk's clock starts).
const MAX_CHUNK_EVENTS: u64 = 20_000;
const SAMPLE_SIZE: usize = 15;
const HOT: &str = "node-hot";

/// State shared by every counting actor (all on the bench thread) and the waiting bench code.
#[derive(Default)]
struct Shared {
    count: AtomicU64,
    target: AtomicU64,
    lagged: AtomicU64,
    closed: AtomicU64,
    done: Notify,
}

impl Shared {
    fn arm(&self, target: u64) {
        self.count.store(0, Ordering::Relaxed);
        self.target.store(target, Ordering::Relaxed);
    }

    async fn wait(&self) {
        if tokio::time::timeout(Duration::from_secs(60), self.done.notified()).await.is_err() {
            panic!(
                "deliveries did not arrive: {} of {} counted, {} lagged notices, {} closed",
                self.count.load(Ordering::Relaxed),
                self.target.load(Ordering::Relaxed),
                self.lagged.load(Ordering::Relaxed),
                self.closed.load(Ordering::Relaxed),
            );
        }
    }
}

/// A subscriber: counts the events it receives and touches their bytes.
struct Counter {
    shared: Arc<Shared>,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<Delivery> for Counter {
    type Result = ();
    fn handle(&mut self, msg: Delivery, _ctx: &mut Self::Context) {
        match msg {
            Delivery::Event(e) => {
                let frame = e.ws_frame().as_bytes();
                black_box((frame.len(), frame[frame.len() - 1]));
                let n = self.shared.count.fetch_add(1, Ordering::Relaxed) + 1;
                if n == self.shared.target.load(Ordering::Relaxed) {
                    self.shared.done.notify_one();
                }
            }
            Delivery::Lagged { .. } => {
                self.shared.lagged.fetch_add(1, Ordering::Relaxed);
            }
            Delivery::Close { .. } => {
                self.shared.closed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The baseline: fans one pre-serialized event out to fixed recipients by hand.
struct HandFanout {
    targets: Vec<Recipient<Delivery>>,
}

impl Actor for HandFanout {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
struct SetTargets(Vec<Recipient<Delivery>>);

#[derive(Message)]
#[rtype(result = "()")]
struct FanOut(SharedEvent);

/// Answered once every `FanOut` sent before it has been handled.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for HandFanout {
    type Result = ();
    fn handle(&mut self, _: Flush, _ctx: &mut Self::Context) {}
}

impl Handler<SetTargets> for HandFanout {
    type Result = ();
    fn handle(&mut self, msg: SetTargets, _ctx: &mut Self::Context) {
        self.targets = msg.0;
    }
}

impl Handler<FanOut> for HandFanout {
    type Result = ();
    fn handle(&mut self, msg: FanOut, _ctx: &mut Self::Context) {
        for r in &self.targets {
            r.do_send(Delivery::Event(msg.0.clone()));
        }
    }
}

/// Which subscriptions the registry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// `n` subscribers, all on the hot node.
    AllHot(usize),
    /// `total` subscribers, the first `hot` on the hot node, the others on one other node each.
    Selective { total: usize, hot: usize },
}

impl Setup {
    fn total(self) -> usize {
        match self {
            Setup::AllHot(n) => n,
            Setup::Selective { total, .. } => total,
        }
    }

    fn admitted(self) -> usize {
        match self {
            Setup::AllHot(n) => n,
            Setup::Selective { hot, .. } => hot,
        }
    }

    fn node_of(self, i: usize) -> String {
        if i < self.admitted() {
            HOT.to_string()
        } else {
            format!("node-{i:05}")
        }
    }
}

struct Bench {
    registry: Addr<EventRegistry>,
    hand: Addr<HandFanout>,
    counters: Vec<Addr<Counter>>,
    shared: Arc<Shared>,
    /// The event each publish carries (cloned per publish, outside the clock).
    template: Event,
    /// The same event stamped and serialized once, for the baseline.
    prepared: SharedEvent,
    setup: Option<Setup>,
    subscriptions: Vec<u64>,
}

fn hot_event() -> Event {
    let metrics = [("cpu_percent", 71.5), ("rtt_ms", 12.25), ("disk_free_gb", 412.0)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    Event {
        severity: Severity::Warning,
        source: format!("node:{HOT}"),
        timestamp_ms: now_ms(),
        payload: ClusterEvent::NodeHealthChange(NodeHealthChange {
            node_id: HOT.into(),
            old_status: NodeHealth::Healthy,
            new_status: NodeHealth::Degraded,
            role: clusterd::model::NodeRole::Voter,
            reason: "heartbeat round trip above threshold".into(),
            metrics,
            cluster_status: ClusterHealthStatus::Degraded,
            healthy_nodes: 4,
            total_nodes: 5,
        })
        .into(),
    }
}

impl Bench {
    async fn start(arbiter: &ArbiterHandle) -> Bench {
        let settings = RegistrySettings {
            retained: 10_000,
            session_queue: QUEUE,
            last_seq: 0,
            seq_reserved: u64::MAX,
        };
        let registry = EventRegistry::start_in_arbiter(arbiter, move |_| {
            EventRegistry::new(
                settings,
                Arc::new(Store::memory()),
                EventMetrics::register(&Metrics::default()),
                Arc::new(InterestTable::default()),
            )
        });
        let hand = HandFanout::start_in_arbiter(arbiter, |_| HandFanout { targets: Vec::new() });
        let shared = Arc::new(Shared::default());
        let counters = (0..SELECTIVITY_TOTAL.max(FANOUT_SIZES[FANOUT_SIZES.len() - 1]))
            .map(|_| {
                let shared = shared.clone();
                Counter::create(move |ctx| {
                    ctx.set_mailbox_capacity(QUEUE);
                    Counter { shared }
                })
            })
            .collect();
        let template = hot_event();
        let prepared =
            Arc::new(PublishedEvent::stamp(1, template.clone()));
        Bench {
            registry,
            hand,
            counters,
            shared,
            template,
            prepared,
            setup: None,
            subscriptions: Vec::new(),
        }
    }

    /// Makes the registry hold the subscriptions of `setup` and the baseline fan out to the
    /// same admitted recipients.
    async fn ensure(&mut self, setup: Setup) {
        if self.setup == Some(setup) {
            return;
        }
        for id in self.subscriptions.drain(..) {
            self.registry.do_send(Unsubscribe { subscription_id: id });
        }
        for i in 0..setup.total() {
            let filter = EventFilter::default().with_ids(SubjectKind::Node, [setup.node_of(i)]);
            let info = SubscriberInfo {
                transport: Transport::InProcess,
                stream: "bench".into(),
                peer: format!("counter-{i}"),
                connected_at_ms: now_ms(),
                session_id: None,
            };
            let ack = self
                .registry
                .send(Subscribe {
                    filter,
                    stream: Vec::new(),
                    sink: Box::new(self.counters[i].clone().recipient::<Delivery>()),
                    info,
                })
                .await
                .expect("registry is running");
            self.subscriptions.push(ack.subscription_id);
        }
        let status = self.registry.send(GetRegistryStatus).await.expect("registry is running");
        assert_eq!(status.active_subscriptions, setup.total());
        let targets =
            self.counters[..setup.admitted()].iter().map(|a| a.clone().recipient()).collect();
        self.hand.send(SetTargets(targets)).await.expect("fan-out actor is running");
        self.setup = Some(setup);
    }

    fn chunk(&self, remaining: u64) -> u64 {
        let admitted = self.setup.expect("set up").admitted() as u64;
        remaining.min(MAX_CHUNK_EVENTS).min((MAX_IN_FLIGHT / admitted).max(1))
    }

    /// Publishes `iters` events through the registry; the time until every admitted subscriber
    /// has handled every one of them.
    async fn through_registry(&self, iters: u64) -> Duration {
        let admitted = self.setup.expect("set up").admitted() as u64;
        let mut total = Duration::ZERO;
        let mut remaining = iters;
        while remaining > 0 {
            let chunk = self.chunk(remaining);
            remaining -= chunk;
            let events: Vec<Event> = (0..chunk).map(|_| self.template.clone()).collect();
            self.shared.arm(chunk * admitted);
            let start = Instant::now();
            for event in events {
                self.registry.do_send(Publish { event });
            }
            self.shared.wait().await;
            total += start.elapsed();
        }
        total
    }

    /// Fans `iters` copies of the pre-serialized event out by hand to the same recipients.
    async fn by_hand(&self, iters: u64) -> Duration {
        let admitted = self.setup.expect("set up").admitted() as u64;
        let mut total = Duration::ZERO;
        let mut remaining = iters;
        while remaining > 0 {
            let chunk = self.chunk(remaining);
            remaining -= chunk;
            self.shared.arm(chunk * admitted);
            let start = Instant::now();
            for _ in 0..chunk {
                self.hand.do_send(FanOut(self.prepared.clone()));
            }
            self.shared.wait().await;
            total += start.elapsed();
        }
        total
    }
}

impl Bench {
    /// Publishes `k` events while the subscribers are held: the time until the registry has
    /// handled every publish (queued every delivery), then waits for the deliveries unclocked.
    fn registry_alone(&self, system: &SystemRunner, k: u64) -> Duration {
        let admitted = self.setup.expect("set up").admitted() as u64;
        let events: Vec<Event> = (0..k).map(|_| self.template.clone()).collect();
        self.shared.arm(k * admitted);
        let registry = self.registry.clone();
        // The bench thread (where the subscribers run) blocks in `join` meanwhile.
        let took = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let start = Instant::now();
            for event in events {
                registry.do_send(Publish { event });
            }
            rt.block_on(registry.send(GetRegistryStatus)).expect("registry is running");
            start.elapsed()
        })
        .join()
        .expect("sending thread");
        system.block_on(self.shared.wait());
        took
    }

    /// The baseline's counterpart of [`Bench::registry_alone`].
    fn baseline_alone(&self, system: &SystemRunner, k: u64) -> Duration {
        let admitted = self.setup.expect("set up").admitted() as u64;
        self.shared.arm(k * admitted);
        let (hand, event) = (self.hand.clone(), self.prepared.clone());
        let took = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let start = Instant::now();
            for _ in 0..k {
                hand.do_send(FanOut(event.clone()));
            }
            rt.block_on(hand.send(Flush)).expect("fan-out actor is running");
            start.elapsed()
        })
        .join()
        .expect("sending thread");
        system.block_on(self.shared.wait());
        took
    }
}

/// Per-delivery cost on the sending thread alone, registry against baseline (`FANOUT_BREAKDOWN`).
fn breakdown(system: &SystemRunner, bench: &mut Bench) {
    const REPS: usize = 9;
    println!();
    println!("== fan-out cost on the sending thread alone (subscribers held), medians of {REPS} ==");
    println!("{:>7}  {:>18} {:>18}  {:>9}", "subs", "registry ns/deliv", "baseline ns/deliv", "reg/base");
    for n in FANOUT_SIZES {
        system.block_on(bench.ensure(Setup::AllHot(n)));
        let k = (MAX_IN_FLIGHT / n as u64).clamp(1, MAX_CHUNK_EVENTS);
        let per_delivery = |d: Duration| d.as_nanos() as f64 / (k * n as u64) as f64;
        let (mut reg, mut base) = (Vec::new(), Vec::new());
        for _ in 0..REPS {
            reg.push(per_delivery(bench.registry_alone(system, k)));
            base.push(per_delivery(bench.baseline_alone(system, k)));
        }
        reg.sort_by(f64::total_cmp);
        base.sort_by(f64::total_cmp);
        let (r, b) = (reg[REPS / 2], base[REPS / 2]);
        println!("{n:>7}  {r:>18.0} {b:>18.0}  {:>9.2}", b / r);
    }
    println!("  (reg/base = baseline ns ÷ registry ns, i.e. registry deliveries/s ÷ baseline's)");
}

/// Per-iteration times (ns) of every sample criterion took, by bench id; criterion's warm-up
/// calls come first, so the last `SAMPLE_SIZE` are the measured samples.
type Samples = BTreeMap<String, Vec<f64>>;

fn record(samples: &mut Samples, id: &str, iters: u64, elapsed: Duration) {
    samples.entry(id.to_string()).or_default().push(elapsed.as_nanos() as f64 / iters as f64);
}

fn median_ns(samples: &Samples, id: &str) -> Option<f64> {
    let all = samples.get(id)?;
    let mut last: Vec<f64> = all[all.len().saturating_sub(SAMPLE_SIZE)..].to_vec();
    last.sort_by(f64::total_cmp);
    let n = last.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(last[n / 2]),
        _ => Some((last[n / 2 - 1] + last[n / 2]) / 2.0),
    }
}

fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else {
        format!("{:.1} k/s", per_s / 1e3)
    }
}

fn fmt_time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn summary(samples: &Samples, dropped: u64) {
    println!();
    println!("== event fan-out summary (medians of criterion's samples) ==");
    println!(
        "{:>7}  {:>14} {:>14}  {:>14} {:>14}  {:>9}",
        "subs", "registry/evt", "registry", "baseline/evt", "baseline", "reg/base"
    );
    for n in FANOUT_SIZES {
        let reg = median_ns(samples, &format!("fanout_deliveries/registry/{n}"));
        let base = median_ns(samples, &format!("fanout_deliveries/baseline/{n}"));
        let rate = |ns: f64| n as f64 * 1e9 / ns;
        let cell = |t: Option<f64>| match t {
            Some(ns) => (fmt_time(ns), fmt_rate(rate(ns))),
            None => ("-".into(), "-".into()),
        };
        let (rt, rr) = cell(reg);
        let (bt, br) = cell(base);
        let ratio = match (reg, base) {
            (Some(r), Some(b)) => {
                let ratio = b / r;
                format!("{ratio:.2} {}", if ratio >= 0.5 { "ok" } else { "LOW" })
            }
            _ => "-".into(),
        };
        println!("{n:>7}  {rt:>14} {rr:>14}  {bt:>14} {br:>14}  {ratio:>9}");
    }
    println!("  (reg/base = registry deliveries/s ÷ baseline deliveries/s; target >= 0.50)");
    let small = median_ns(samples, &format!("selectivity/registry/{SELECTIVITY_HOT}_of_{SELECTIVITY_HOT}"));
    let large = median_ns(
        samples,
        &format!("selectivity/registry/{SELECTIVITY_HOT}_of_{SELECTIVITY_TOTAL}"),
    );
    if let (Some(s), Some(l)) = (small, large) {
        let ratio = l / s;
        println!(
            "publish to {SELECTIVITY_HOT} of {SELECTIVITY_HOT} sessions: {} ; {SELECTIVITY_HOT} of {SELECTIVITY_TOTAL}: {} ; ratio {ratio:.2} {} (target < 3.00)",
            fmt_time(s),
            fmt_time(l),
            if ratio < 3.0 { "ok" } else { "HIGH" },
        );
    }
    println!("deliveries dropped by the registry during the run: {dropped}");
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();

    let system = System::new();
    let arbiter = Arbiter::new();
    let mut bench = system.block_on(Bench::start(&arbiter.handle()));
    let mut samples = Samples::new();

    {
        let mut group = criterion.benchmark_group("fanout_deliveries");
        for n in FANOUT_SIZES {
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::new("registry", n), |b| {
                system.block_on(bench.ensure(Setup::AllHot(n)));
                b.iter_custom(|iters| {
                    let t = system.block_on(bench.through_registry(iters));
                    record(&mut samples, &format!("fanout_deliveries/registry/{n}"), iters, t);
                    t
                })
            });
            group.bench_function(BenchmarkId::new("baseline", n), |b| {
                system.block_on(bench.ensure(Setup::AllHot(n)));
                b.iter_custom(|iters| {
                    let t = system.block_on(bench.by_hand(iters));
                    record(&mut samples, &format!("fanout_deliveries/baseline/{n}"), iters, t);
                    t
                })
            });
        }
        group.finish();
    }

    {
        let mut group = criterion.benchmark_group("selectivity");
        for total in [SELECTIVITY_HOT, SELECTIVITY_TOTAL] {
            let id = format!("{SELECTIVITY_HOT}_of_{total}");
            group.bench_function(BenchmarkId::new("registry", &id), |b| {
                system.block_on(bench.ensure(Setup::Selective { total, hot: SELECTIVITY_HOT }));
                b.iter_custom(|iters| {
                    let t = system.block_on(bench.through_registry(iters));
                    record(&mut samples, &format!("selectivity/registry/{id}"), iters, t);
                    t
                })
            });
        }
        group.finish();
    }

    criterion.final_summary();
    // `cargo test --benches` and `cargo bench -- --test` run every bench once, in whatever
    // profile: no figures worth printing.
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    if measuring {
        let status = system
            .block_on(bench.registry.send(GetRegistryStatus))
            .expect("registry is running");
        summary(&samples, status.events_dropped);
        if std::env::var_os("FANOUT_BREAKDOWN").is_some() {
            breakdown(&system, &mut bench);
        }
    }
    arbiter.stop();
    let _ = arbiter.join();
}
