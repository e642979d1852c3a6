//! When a durable batch is answered: the acknowledgement rule of each mode (which replicas count,
//! how many must have replayed it) and the batches waiting for it, answered in lsn order, or with
//! 504 once their deadline passes.
//!
//! Semi-sync on timeout: the write is refused, never degraded. The caller gets 504 saying the batch
//! is durable on the primary and which replicas did not confirm it in time; the next write waits
//! again. (MySQL degrades to async instead; a client asking for `semi_sync` should never get an
//! `async` answer without knowing.)

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::intake::Reply;
use super::replicas::ReplicaEntry;
use crate::messages::replication::{ReplicateAck, ReplicationError};
use crate::metrics::Histogram;
use crate::model::{lsn_text, ReplicaMode, ReplicationMode};

/// The rule a write is acknowledged by.
#[derive(Debug, Clone, Copy)]
pub struct AckRule {
    pub mode: ReplicationMode,
    pub sync_quorum: usize,
}

/// Who has a batch, and who the rule still waits for.
pub struct Acks {
    pub acknowledged_by: Vec<String>,
    pub missing: Vec<String>,
}

impl AckRule {
    /// Replicas that have flushed and replayed `lsn` (a replica replays only what is durable on
    /// both sides), and the sync replicas the mode still waits for. An async replica is never
    /// waited for: it is listed when it has the write, but never counts.
    pub fn acks(&self, lsn: u64, replicas: &BTreeMap<String, ReplicaEntry>) -> Acks {
        let has = |e: &ReplicaEntry| e.pos.replay_lsn >= lsn;
        let acknowledged_by: Vec<String> = replicas.iter().filter(|(_, e)| has(e)).map(|(id, _)| id.clone()).collect();
        let counted = || replicas.iter().filter(|(_, e)| e.mode == ReplicaMode::Sync);
        let missing = match self.mode {
            ReplicationMode::Async => Vec::new(),
            ReplicationMode::SemiSync if counted().filter(|(_, e)| has(e)).count() >= self.sync_quorum => Vec::new(),
            ReplicationMode::Sync | ReplicationMode::SemiSync => {
                counted().filter(|(_, e)| !has(e)).map(|(id, _)| id.clone()).collect()
            }
        };
        Acks { acknowledged_by, missing }
    }

    /// The highest lsn the mode is satisfied for, from the sync replicas' replayed positions:
    /// every waiting batch ending at or below it can be answered. Semi-sync counts sync replicas
    /// only, as PostgreSQL's `ANY k (...)` counts only the standbys it names.
    pub fn satisfied_lsn(&self, replicas: &BTreeMap<String, ReplicaEntry>) -> u64 {
        let counted = replicas.values().filter(|e| e.mode == ReplicaMode::Sync).map(|e| e.pos.replay_lsn);
        match self.mode {
            ReplicationMode::Async => u64::MAX,
            ReplicationMode::Sync => counted.min().unwrap_or(u64::MAX),
            ReplicationMode::SemiSync => {
                let mut replayed: Vec<u64> = counted.collect();
                replayed.sort_unstable_by(|a, b| b.cmp(a));
                match self.sync_quorum {
                    0 => u64::MAX,
                    q => replayed.get(q - 1).copied().unwrap_or(0),
                }
            }
        }
    }

    pub fn ack(&self, lsn: u64, acknowledged_by: Vec<String>) -> ReplicateAck {
        ReplicateAck { lsn: lsn_text(lsn), lsn_u64: lsn, acknowledged_by, mode: self.mode }
    }
}

/// A durable batch waiting for replicas.
struct Waiter {
    end_lsn: u64,
    /// When it is answered 504 if the mode is still not satisfied.
    deadline: Instant,
    /// When it became durable on the primary.
    durable_at: Instant,
    reply: Reply,
}

/// A batch answered 504: what the timeout error says, for the `replication_error` event.
pub struct TimedOut {
    pub error: ReplicationError,
    pub missing: Vec<String>,
}

/// Acknowledged batches remembered while no replica is known to hold them; past it the oldest
/// are forgotten, and a failover counts its lost writes from those left (a lower bound then).
const UNHELD_KEPT: usize = 1 << 20;

/// Durable batches waiting for replicas, in lsn order (commits are).
#[derive(Default)]
pub struct Waiters {
    waiting: VecDeque<Waiter>,
    /// Where the time from durable to acknowledged is observed, if anywhere.
    waited: Option<Histogram>,
    /// End positions of acknowledged batches that no replica had flushed by its last report,
    /// oldest first: what a failover to a replica lacking them loses.
    unheld: VecDeque<u64>,
}

impl Waiters {
    /// Waiters observing in `waited` how long each acknowledged batch waited for its replicas.
    pub fn observing(waited: Histogram) -> Self {
        Waiters { waiting: VecDeque::new(), waited: Some(waited), unheld: VecDeque::new() }
    }

    /// Forgets acknowledged batches some replica now holds.
    fn forget_held(&mut self, replicas: &BTreeMap<String, ReplicaEntry>) -> u64 {
        let held = replicas.values().map(|e| e.pos.flush_lsn).max().unwrap_or(0);
        while self.unheld.front().is_some_and(|&end| end <= held) {
            self.unheld.pop_front();
        }
        held
    }

    /// A batch ending at `end_lsn` was acknowledged.
    fn acknowledged(&mut self, end_lsn: u64, replicas: &BTreeMap<String, ReplicaEntry>) {
        if end_lsn > self.forget_held(replicas) {
            if self.unheld.len() == UNHELD_KEPT {
                self.unheld.pop_front();
            }
            self.unheld.push_back(end_lsn);
        }
    }

    /// How many acknowledged batches end past `lsn` (of those remembered): what a replica
    /// durable up to `lsn` lacks.
    pub fn acknowledged_after(&self, lsn: u64) -> u64 {
        self.unheld.iter().filter(|&&end| end > lsn).count() as u64
    }

    /// Answers a batch durable up to `end_lsn` (since `durable_at`) now if the rule is satisfied
    /// and nothing older waits, or queues it until `timeout` from now.
    pub fn settle_or_wait(&mut self, rule: &AckRule, replicas: &BTreeMap<String, ReplicaEntry>, end_lsn: u64, timeout: Duration, durable_at: Instant, reply: Reply) {
        if self.waiting.is_empty() && end_lsn <= rule.satisfied_lsn(replicas) {
            let acks = rule.acks(end_lsn, replicas);
            self.observe(durable_at);
            if reply.send(Ok(rule.ack(end_lsn, acks.acknowledged_by))).is_ok() {
                self.acknowledged(end_lsn, replicas);
            }
            return;
        }
        self.waiting.push_back(Waiter { end_lsn, deadline: durable_at + timeout, durable_at, reply });
        self.settle(rule, replicas);
    }

    fn observe(&self, durable_at: Instant) {
        if let Some(h) = &self.waited {
            h.observe(durable_at.elapsed());
        }
    }

    /// Answers waiting batches from the oldest while the rule is satisfied for them.
    pub fn settle(&mut self, rule: &AckRule, replicas: &BTreeMap<String, ReplicaEntry>) {
        self.forget_held(replicas);
        if self.waiting.is_empty() {
            return;
        }
        let satisfied = rule.satisfied_lsn(replicas);
        while self.waiting.front().is_some_and(|w| w.end_lsn <= satisfied) {
            let Some(w) = self.waiting.pop_front() else { break };
            let acks = rule.acks(w.end_lsn, replicas);
            self.observe(w.durable_at);
            if w.reply.send(Ok(rule.ack(w.end_lsn, acks.acknowledged_by))).is_ok() {
                self.acknowledged(w.end_lsn, replicas);
            }
        }
    }

    /// Answers 504 to every waiting batch past its deadline; what each was told.
    pub fn expire(&mut self, rule: &AckRule, replicas: &BTreeMap<String, ReplicaEntry>, timeout_ms: u64, now: Instant) -> Vec<TimedOut> {
        if !self.waiting.iter().any(|w| w.deadline <= now) {
            return Vec::new();
        }
        let (expired, waiting): (Vec<Waiter>, Vec<Waiter>) = self.waiting.drain(..).partition(|w| w.deadline <= now);
        self.waiting = waiting.into();
        expired
            .into_iter()
            .map(|w| {
                let acks = rule.acks(w.end_lsn, replicas);
                let error = ReplicationError::SyncTimeout {
                    lsn: w.end_lsn,
                    timeout_ms,
                    acknowledged_by: acks.acknowledged_by,
                    missing: acks.missing.clone(),
                };
                let _ = w.reply.send(Err(error.clone()));
                TimedOut { error, missing: acks.missing }
            })
            .collect()
    }

    /// Answers every waiting batch with `error(lsn)` (the primary went down) and forgets them.
    pub fn refuse_all(&mut self, error: impl Fn(u64) -> ReplicationError) {
        for w in self.waiting.drain(..) {
            let _ = w.reply.send(Err(error(w.end_lsn)));
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    fn replicas(list: &[(&str, ReplicaMode, u64)]) -> BTreeMap<String, ReplicaEntry> {
        list.iter()
            .map(|(id, mode, replay)| {
                let mut e = ReplicaEntry::new(*mode);
                e.pos.replay_lsn = *replay;
                (id.to_string(), e)
            })
            .collect()
    }

    #[test]
    fn each_mode_counts_the_replicas_it_names() {
        let r = replicas(&[("a", ReplicaMode::Sync, 100), ("b", ReplicaMode::Async, 50), ("c", ReplicaMode::Sync, 70)]);
        let sync = AckRule { mode: ReplicationMode::Sync, sync_quorum: 1 };
        assert_eq!(sync.satisfied_lsn(&r), 70, "the slowest sync replica");
        let acks = sync.acks(80, &r);
        assert_eq!(acks.missing, vec!["c"]);
        assert_eq!(acks.acknowledged_by, vec!["a"]);
        let semi = AckRule { mode: ReplicationMode::SemiSync, sync_quorum: 2 };
        assert_eq!(semi.satisfied_lsn(&r), 70, "the second highest replay");
        assert!(semi.acks(70, &r).missing.is_empty());
        assert_eq!(AckRule { mode: ReplicationMode::Async, sync_quorum: 1 }.satisfied_lsn(&r), u64::MAX);
    }

    #[test]
    fn semi_sync_counts_sync_replicas_only() {
        // The async replica has everything, the sync one nothing: no quorum of one.
        let mut r = replicas(&[("sync-1", ReplicaMode::Sync, 0), ("async-1", ReplicaMode::Async, 100)]);
        let semi = AckRule { mode: ReplicationMode::SemiSync, sync_quorum: 1 };
        assert_eq!(semi.satisfied_lsn(&r), 0, "an async replica never counts");
        assert_eq!(semi.acks(100, &r).missing, vec!["sync-1"], "only sync replicas are waited for");
        let mut waiters = Waiters::default();
        let (tx, mut rx) = oneshot::channel();
        waiters.settle_or_wait(&semi, &r, 100, Duration::from_secs(60), Instant::now(), tx);
        assert!(rx.try_recv().is_err(), "not acknowledged by the async replica alone");
        r.get_mut("sync-1").expect("sync-1").pos.replay_lsn = 100;
        waiters.settle(&semi, &r);
        let ack = rx.try_recv().expect("answered").expect("acknowledged");
        assert!(ack.acknowledged_by.contains(&"sync-1".to_string()), "{:?}", ack.acknowledged_by);
    }

    #[test]
    fn waiting_batches_are_answered_in_order_or_time_out() {
        let rule = AckRule { mode: ReplicationMode::Sync, sync_quorum: 1 };
        let mut r = replicas(&[("a", ReplicaMode::Sync, 0)]);
        let mut waiters = Waiters::default();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        waiters.settle_or_wait(&rule, &r, 10, Duration::from_secs(60), Instant::now(), tx1);
        waiters.settle_or_wait(&rule, &r, 20, Duration::ZERO, Instant::now(), tx2);
        assert!(rx1.try_recv().is_err() && rx2.try_recv().is_err(), "nothing replayed yet");
        r.get_mut("a").expect("a").pos.replay_lsn = 10;
        waiters.settle(&rule, &r);
        assert_eq!(rx1.try_recv().expect("answered").expect("acknowledged").acknowledged_by, vec!["a"]);
        let timed_out = waiters.expire(&rule, &r, 5, Instant::now());
        assert_eq!(timed_out.len(), 1);
        assert_eq!(timed_out[0].missing, vec!["a"]);
        assert!(matches!(rx2.try_recv().expect("answered"), Err(ReplicationError::SyncTimeout { lsn: 20, .. })));
    }
}
