//! A replica's state driven without actix: what its actor does on each message, done here in
//! order (store tasks run on the test's thread), with every report it would send kept.

use std::sync::Arc;

use super::state::{Next, Reconciled, ReplicaState, Resync};
use super::task::{self, StoreTask};
use crate::messages::replication::*;
use crate::model::{LogRecord, Op, OpKind, WalRecord};
use crate::storage::Store;

/// A replica state on `store` and the reports it sent, oldest first.
struct Harness {
    store: Arc<Store>,
    state: ReplicaState,
    reports: Vec<ReplicaReport>,
}

impl Harness {
    /// A replica `r` (incarnation `incarnation`) loaded from `store`, as its actor starts.
    fn start(store: &Arc<Store>, incarnation: u64) -> Harness {
        let mut state = ReplicaState::new("r".into(), incarnation);
        state.loaded(task::load(store, "r").expect("loads"));
        let first = state.report(ReportKind::Restarted);
        Harness { store: store.clone(), state, reports: vec![first] }
    }

    fn last(&self) -> &ReplicaReport {
        self.reports.last().expect("reported at least once")
    }

    /// The last report `pred` accepts, failing with `what` if none did.
    fn reported(&self, what: &str, pred: impl Fn(&ReplicaReport) -> bool) -> &ReplicaReport {
        self.reports.iter().rev().find(|r| pred(r)).unwrap_or_else(|| panic!("no report with {what}: {:?}", self.reports))
    }

    fn ship(&mut self, records: Vec<LogRecord>, timeline: u64) {
        let report = self.state.ship(ShipWal { records, flush_awaited: true, timeline, durable_lsn: 0 });
        self.reports.extend(report);
        self.drive();
    }

    fn durable(&mut self, lsn: u64, timeline: u64) {
        if self.state.durable(PrimaryDurable { lsn, timeline }) {
            self.drive();
        }
    }

    fn reconcile(&mut self, msg: Reconcile) {
        let Some(Resync::Reconcile(msg)) = self.state.defer(Resync::Reconcile(msg)) else { panic!("nothing runs: not deferred") };
        match self.state.reconcile(msg) {
            Reconciled::Nothing => {}
            Reconciled::Report(r) => self.reports.push(r),
            Reconciled::Store(task) => self.run(task),
        }
        self.drive();
    }

    fn run(&mut self, task: StoreTask) {
        let mut early = None;
        let done = task.run(&self.store, |r| early = Some(r)).expect("the store task runs");
        self.reports.extend(early);
        let report = self.state.task_done(done);
        self.reports.push(report);
    }

    /// What the actor does after a message: applies on the actor, or runs store tasks, until
    /// nothing is left (the lazy delay passes at once).
    fn drive(&mut self) {
        loop {
            if self.state.storing() {
                return;
            }
            self.reports.extend(self.state.apply_here());
            match self.state.next() {
                Next::Nothing => return,
                Next::Gather => self.state.gathered(),
                Next::Store(task) => self.run(*task),
            }
        }
    }

    fn read_k(&self) -> Option<(serde_json::Value, u64)> {
        let replayed = self.state.rows.read();
        replayed.rows.get("t", "k").map(|v| (v.clone(), replayed.lsn))
    }
}

/// A record of one op on `t`/`k` at `lsn`, as the primary ships it.
fn record(lsn: u64, op: OpKind, value: Option<i64>) -> LogRecord {
    let ops = vec![Op { op, table: "t".into(), key: "k".into(), value: value.map(|v| serde_json::json!(v).into()) }];
    let bytes = serde_json::to_vec(&WalRecord { committed_at_ms: 0, ops: ops.clone() }).expect("serializes");
    LogRecord { lsn, bytes: bytes.into(), committed_at_ms: 0, ops: Arc::new(ops) }
}

fn restarted(r: &ReplicaReport) -> bool {
    r.kind == ReportKind::Restarted
}

#[test]
fn a_replica_applies_only_what_its_primary_made_durable_and_drops_what_an_earlier_primary_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open_dir(dir.path()).expect("store"));
    let mut replica = Harness::start(&store, 1);
    let first = replica.last().clone();
    assert!(restarted(&first));
    assert_eq!((first.timeline, first.positions.flush_lsn), (0, 0));
    // The primary's first timeline: nothing to drop yet.
    replica.reconcile(Reconcile { from_timeline: 0, timeline: 1, keep_until: 0 });
    replica.reported("adopting timeline 1", |r| restarted(r) && r.timeline == 1);

    // Shipped before the primary's fsync ends: durable here, but not readable until confirmed.
    let a = record(0, OpKind::Insert, Some(1));
    let end_a = a.end_lsn();
    replica.ship(vec![a], 1);
    let r = replica.reported("a flushed", |r| r.positions.flush_lsn == end_a);
    assert_eq!(r.positions.replay_lsn, 0, "not applied before the primary confirms it");
    assert_eq!(replica.read_k(), None, "a replica never shows what its primary could still lose");
    replica.durable(end_a, 1);
    replica.reported("a replayed", |r| r.positions.replay_lsn == end_a);
    assert_eq!(replica.read_k(), Some((serde_json::json!(1), end_a)));

    // b is durable here; the primary goes down before confirming it. So does the replica.
    let b = record(end_a, OpKind::Update, Some(2));
    let end_b = b.end_lsn();
    replica.ship(vec![b], 1);
    replica.reported("b flushed", |r| r.positions.flush_lsn == end_b);
    let mut replica = Harness::start(&store, 2);
    let back = replica.last().clone();
    assert!(restarted(&back));
    assert_eq!(
        (back.timeline, back.positions.write_lsn, back.positions.flush_lsn, back.positions.replay_lsn),
        (1, end_b, end_b, end_a),
        "it kept b in its log, unconfirmed"
    );
    assert_eq!(replica.read_k(), Some((serde_json::json!(1), end_a)));

    // A stale shipment of an earlier timeline is refused once a newer one is known to it: here
    // the primary restarted having made durable only up to a: b is dropped.
    replica.reconcile(Reconcile { from_timeline: 1, timeline: 2, keep_until: end_a });
    let r = replica.reported("reconciled to timeline 2", |r| restarted(r) && r.timeline == 2);
    assert_eq!((r.positions.write_lsn, r.positions.flush_lsn, r.positions.replay_lsn), (end_a, end_a, end_a));
    replica.ship(vec![record(end_a, OpKind::Update, Some(99))], 1);
    // The new primary writes something else at the same lsn.
    let b2 = record(end_a, OpKind::Update, Some(3));
    let end_b2 = b2.end_lsn();
    replica.ship(vec![b2], 2);
    replica.durable(end_b2, 2);
    replica.reported("b2 replayed", |r| r.positions.replay_lsn == end_b2);
    assert_eq!(replica.read_k(), Some((serde_json::json!(3), end_b2)));

    // Restarted once more, it rebuilds the same state from its own store (b2 stored before its
    // confirmation came, so confirmed again on reconnect): b never comes back.
    let mut replica = Harness::start(&store, 3);
    let back = replica.last().clone();
    assert!(restarted(&back));
    assert_eq!((back.timeline, back.positions.flush_lsn), (2, end_b2));
    replica.durable(end_b2, 2);
    replica.reported("b2 replayed again", |r| r.positions.replay_lsn == end_b2);
    assert_eq!(replica.read_k(), Some((serde_json::json!(3), end_b2)));
    let log: Vec<u64> = store.read_log("r", 0, usize::MAX).expect("read").into_iter().map(|r| r.0).collect();
    assert_eq!(log, vec![0, end_a], "a, then b2 where b was");
}

/// Confirmations that come in pieces, small (applied on the actor) and large (by a store task),
/// apply every record once and in lsn order, and only what is confirmed.
#[test]
fn a_replica_applies_confirmed_records_in_order_whether_few_or_many_are_confirmed_at_once() {
    let store = Arc::new(Store::memory());
    let mut replica = Harness::start(&store, 1);
    replica.reconcile(Reconcile { from_timeline: 0, timeline: 1, keep_until: 0 });
    replica.reported("adopting timeline 1", |r| restarted(r) && r.timeline == 1);

    // 400 updates of one row, value i at record i: the value read says how far it applied.
    let mut records = Vec::new();
    let mut lsn = 0;
    for i in 1..=400 {
        let r = record(lsn, if i == 1 { OpKind::Insert } else { OpKind::Update }, Some(i));
        lsn = r.end_lsn();
        records.push(r);
    }
    let end = |i: usize| records[i - 1].end_lsn();
    replica.ship(records.clone(), 1);
    replica.reported("all flushed", |r| r.positions.flush_lsn == end(400));
    assert_eq!(replica.read_k(), None, "nothing confirmed yet");

    for (upto, what) in [(3, "a few"), (4, "one more"), (350, "hundreds"), (352, "two more"), (400, "the rest")] {
        replica.durable(end(upto), 1);
        let r = replica.reported(what, |r| r.positions.replay_lsn >= end(upto));
        assert_eq!(r.positions.replay_lsn, end(upto), "{what}: applied exactly what was confirmed");
        assert_eq!(replica.read_k(), Some((serde_json::json!(upto), end(upto))), "{what}");
    }
    // A confirmation that falls inside a record applies up to the record before it.
    let more = record(end(400), OpKind::Update, Some(401));
    let end_more = more.end_lsn();
    replica.ship(vec![more], 1);
    replica.reported("401 flushed", |r| r.positions.flush_lsn == end_more);
    replica.durable(end_more - 1, 1);
    replica.durable(end_more, 1);
    let r = replica.reported("401 replayed", |r| r.positions.replay_lsn == end_more);
    assert_eq!(r.positions.replay_lsn, end_more);
    assert_eq!(replica.read_k(), Some((serde_json::json!(401), end_more)));
}

/// The lazy path: a replica nobody waits for gathers what it receives and makes it durable in
/// one task when the delay passes, applying what was confirmed meanwhile in the same task.
#[test]
fn a_replica_nobody_waits_for_gathers_then_commits_and_applies_in_one_task() {
    let store = Arc::new(Store::memory());
    let mut replica = Harness::start(&store, 1);
    replica.reconcile(Reconcile { from_timeline: 0, timeline: 1, keep_until: 0 });
    let a = record(0, OpKind::Insert, Some(1));
    let b = record(a.end_lsn(), OpKind::Update, Some(2));
    let end_b = b.end_lsn();
    for r in [a, b] {
        assert!(replica.state.ship(ShipWal { records: vec![r], flush_awaited: false, timeline: 1, durable_lsn: 0 }).is_none());
        assert!(matches!(replica.state.next(), Next::Gather), "held for the lazy delay");
    }
    assert!(replica.state.durable(PrimaryDurable { lsn: end_b, timeline: 1 }));
    replica.state.gathered();
    let Next::Store(task) = replica.state.next() else { panic!("the delay passed: a task") };
    replica.run(*task);
    let r = replica.last();
    assert_eq!((r.positions.flush_lsn, r.positions.replay_lsn), (end_b, end_b), "one task made both durable and applied them");
    assert!(matches!(replica.state.next(), Next::Nothing));
}
