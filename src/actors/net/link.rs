//! The sending side of the fault-injecting link: every message between the actors of a domain
//! (the replication primary and its replicas today, Raft's next) goes through [`Link::deliver`],
//! which delivers it, drops it (a cut or a lossy link) or delays it (in order), as the rules the
//! [`super::NetActor`] publishes say. With no fault anywhere it costs two atomic loads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    /// It will be delivered after the link's delay, after every message sent before it.
    Delayed,
    /// Lost: the link is cut or dropped it. The sender learns it at once, as a connection that
    /// broke would tell it, and resynchronises from what the peer next reports.
    Dropped,
}

/// The faults on one directed link.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkFault {
    pub drop_rate: f64,
    pub delay: Duration,
}

/// The rules in force: written only by the [`super::NetActor`], read by every sender.
#[derive(Debug, Default, Clone)]
pub struct Rules {
    /// Endpoint -> its group in the partition in force; endpoints in different groups are cut.
    pub groups: HashMap<String, usize>,
    /// Per directed link (from, to).
    pub links: HashMap<(String, String), LinkFault>,
}

impl Rules {
    fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.links.is_empty()
    }

    fn cut(&self, from: &str, to: &str) -> bool {
        matches!((self.groups.get(from), self.groups.get(to)), (Some(a), Some(b)) if a != b)
    }
}

type Delivery = Box<dyn FnOnce() + Send>;

/// Where a message can be delivered: an actor's address or a recipient.
pub trait Destination<M>: Clone + Send + 'static {
    fn deliver(&self, msg: M);
}

impl<A, M> Destination<M> for Addr<A>
where
    A: Actor + Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    fn deliver(&self, msg: M) {
        self.do_send(msg);
    }
}

impl<M> Destination<M> for Recipient<M>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    fn deliver(&self, msg: M) {
        self.do_send(msg);
    }
}

/// A directed link's queue of delayed messages, delivered in order by a task of its own. Not
/// bounded: what a sender can have in flight is bounded by its own flow control (the primary's
/// ship window, Raft's in-flight limit), and delays are milliseconds.
struct DelayLine {
    queue: mpsc::UnboundedSender<(Instant, Delivery)>,
    /// Messages queued and not yet delivered: while any are, later ones queue behind them even
    /// if the delay was lifted, so the link never reorders.
    pending: Arc<AtomicUsize>,
}

struct LinkTable {
    /// Where delayed messages wait: a delay may start on any thread (a blocking task's report).
    arbiter: ArbiterHandle,
    /// Whether any rule is in force: the fast path skips everything else when not.
    faulty: AtomicBool,
    rules: RwLock<Rules>,
    lines: Mutex<HashMap<(String, String), DelayLine>>,
    /// Delayed messages not yet delivered, over every line.
    queued: Arc<AtomicUsize>,
    dropped: AtomicU64,
    delayed: AtomicU64,
    /// xorshift state for drop decisions.
    random: AtomicU64,
}

/// A handle on the link, cheap to clone: one per sender.
#[derive(Clone)]
pub struct Link {
    table: Arc<LinkTable>,
}

impl Link {
    /// A link with no fault; delayed messages wait on `arbiter`.
    pub fn new(arbiter: ArbiterHandle) -> Link {
        Link {
            table: Arc::new(LinkTable {
                arbiter,
                faulty: AtomicBool::new(false),
                rules: RwLock::new(Rules::default()),
                lines: Mutex::new(HashMap::new()),
                queued: Arc::new(AtomicUsize::new(0)),
                dropped: AtomicU64::new(0),
                delayed: AtomicU64::new(0),
                random: AtomicU64::new(0),
            }),
        }
    }

    /// Sends `msg` from endpoint `from` to endpoint `to` (whose actor `recipient` is).
    pub fn deliver<M, R>(&self, from: &str, to: &str, recipient: &R, msg: M) -> Sent
    where
        M: Message + Send + 'static,
        M::Result: Send,
        R: Destination<M>,
    {
        if !self.table.faulty.load(Ordering::Acquire) && self.table.queued.load(Ordering::Acquire) == 0 {
            recipient.deliver(msg);
            return Sent::Delivered;
        }
        let fault = {
            let rules = self.table.rules.read();
            if rules.cut(from, to) {
                None
            } else {
                Some(rules.links.get(&(from.to_string(), to.to_string())).copied().unwrap_or_default())
            }
        };
        let Some(fault) = fault.filter(|f| !self.drops(f.drop_rate)) else {
            self.table.dropped.fetch_add(1, Ordering::Relaxed);
            return Sent::Dropped;
        };
        let recipient = recipient.clone();
        if fault.delay.is_zero() && !self.has_delay_line(from, to) {
            recipient.deliver(msg);
            return Sent::Delivered;
        }
        self.table.delayed.fetch_add(1, Ordering::Relaxed);
        self.delay(from, to, fault.delay, Box::new(move || recipient.deliver(msg)));
        Sent::Delayed
    }

    /// Puts `rules` in force (the [`super::NetActor`] alone calls it).
    pub(super) fn set_rules(&self, rules: Rules) {
        let faulty = !rules.is_empty();
        *self.table.rules.write() = rules;
        self.table.faulty.store(faulty, Ordering::Release);
    }

    /// (dropped, delayed) since the start.
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.table.dropped.load(Ordering::Relaxed), self.table.delayed.load(Ordering::Relaxed))
    }

    fn has_delay_line(&self, from: &str, to: &str) -> bool {
        let lines = self.table.lines.lock();
        lines.get(&(from.to_string(), to.to_string())).is_some_and(|l| l.pending.load(Ordering::Acquire) > 0)
    }

    fn drops(&self, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        if rate >= 1.0 {
            return true;
        }
        // xorshift64*: not for secrets, only to spread drops; seeded from the clock once.
        let mut x = self.table.random.load(Ordering::Relaxed);
        if x == 0 {
            x = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.table.random.store(x, Ordering::Relaxed);
        let r = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        r < rate
    }

    fn delay(&self, from: &str, to: &str, delay: Duration, delivery: Delivery) {
        let mut lines = self.table.lines.lock();
        let line = lines.entry((from.to_string(), to.to_string())).or_insert_with(|| {
            let (queue, mut rx) = mpsc::unbounded_channel::<(Instant, Delivery)>();
            let pending = Arc::new(AtomicUsize::new(0));
            let (left, queued) = (pending.clone(), self.table.queued.clone());
            self.table.arbiter.spawn(async move {
                while let Some((at, deliver)) = rx.recv().await {
                    tokio::time::sleep_until(at.into()).await;
                    deliver();
                    left.fetch_sub(1, Ordering::AcqRel);
                    queued.fetch_sub(1, Ordering::AcqRel);
                }
            });
            DelayLine { queue, pending }
        });
        line.pending.fetch_add(1, Ordering::AcqRel);
        self.table.queued.fetch_add(1, Ordering::AcqRel);
        if line.queue.send((Instant::now() + delay, delivery)).is_err() {
            // The line's task is gone (its arbiter stopped): nothing can be delivered later.
            line.pending.fetch_sub(1, Ordering::AcqRel);
            self.table.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
