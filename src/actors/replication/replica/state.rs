//! A replica's state, apart from the actor that drives it: where it stands in its life
//! ([`Phase`]), its positions, what it received and has not made durable, what is durable and not
//! yet confirmed by its primary, and its rows. Methods take what happened and say what to do next;
//! the actor ([`super::ReplicaActor`]) runs the store tasks, timers and checkpoints.
//!
//! A record is applied (readable here, counted as replayed) only once the primary of the same
//! timeline says it is durable there, so a replica never shows a write its primary could still
//! lose. Until then it is the log's unconfirmed tail, dropped past the old timeline's durable end
//! if a primary of a newer timeline says so ([`Reconcile`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::task::{position_meta, LoadedReplica, StoreTask, TaskDone};
use crate::messages::replication::*;
use crate::model::LogRecord;
use crate::storage::table::{Checkpoint, TableState};
use crate::storage::LogCommit;

/// Most bytes a replica nobody waits for gathers before making them durable.
pub const LAZY_FLUSH_BYTES: usize = 1 << 20;
/// Most confirmed ops a replica a write waits for applies on its actor rather than in a store
/// task ([`ReplicaState::apply_here`]): a few microseconds of the arbiter's time.
const APPLY_HERE_OPS: usize = 256;

/// What a replica serves reads from: its rows and the lsn it has replayed to, changed together
/// so that a read's `replay_lsn` always covers the row it returns.
#[derive(Debug, Default)]
pub struct Replayed {
    pub rows: TableState,
    pub lsn: u64,
}

impl Replayed {
    /// Applies one record; its ops.
    pub fn apply(&mut self, record: &LogRecord) -> usize {
        self.rows.apply(&record.ops);
        self.lsn = record.end_lsn();
        record.ops.len()
    }
}

/// The replica's rows, shared with its own store task and checkpoint only, which take the write
/// lock one record (or one shard) at a time, never across an await. Each incarnation and each
/// reseed gets a fresh one, so a task still running for an earlier one applies to rows nobody
/// reads any more.
pub type ReplicaRows = Arc<RwLock<Replayed>>;

/// Where a replica stands in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading its rows and log back; shipments are not taken (the load's report says where it
    /// stands, and the primary ships from there).
    Loading,
    /// Taking shipments and confirmations.
    Streaming(Work),
    /// Stopped by an injected crash or by its primary: a restart by its supervisor keeps it down.
    Down,
}

/// What a streaming replica's storage is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// No store task runs.
    Idle,
    /// Work nobody waits for is held until [`super::LAZY_FLUSH_DELAY`] passes (its timer runs).
    Gathering,
    /// That delay passed: the next store task starts at once.
    Due,
    /// A store task runs (one at a time, so records are applied in lsn order).
    Storing,
}

/// A reseed or reconcile that arrived while a store task or a checkpoint was in flight: it runs
/// once they are done, so a commit can neither land over the replaced or truncated store nor
/// move positions back after it, and a checkpoint's result is never taken for the new rows.
/// A reseed replaces whatever else waits: it sets the timeline a reconcile would.
#[derive(Debug)]
pub enum Resync {
    Reseed(Reseed),
    Reconcile(Reconcile),
}

/// What the actor does next.
#[derive(Debug)]
pub enum Next {
    Nothing,
    /// Arm the lazy timer (if it does not run).
    Gather,
    /// Run this store task (boxed: it is large, the other answers are empty).
    Store(Box<StoreTask>),
}

pub struct ReplicaState {
    pub id: String,
    pub incarnation: u64,
    pub phase: Phase,
    /// A write may wait for what it was last shipped (`ShipWal::flush_awaited`): its work runs
    /// at once and at normal priority.
    pub awaited: bool,
    pub write_lsn: u64,
    pub flush_lsn: u64,
    pub replay_lsn: u64,
    /// The primary timeline `pending`, `unapplied` and the log came from.
    pub timeline: u64,
    /// How far the primary of `timeline` has said its records are durable. Written by the actor,
    /// read by its store task after its fsync, so a confirmation that arrives during the fsync
    /// is applied by the same task. A fresh one per incarnation, reseed and reconcile.
    pub primary_durable: Arc<AtomicU64>,
    /// Received, not yet durable.
    pending: Vec<LogRecord>,
    pending_bytes: usize,
    /// Durable here, not yet applied (not yet confirmed by the primary), in lsn order from
    /// `replay_lsn`; held by the store task while one runs.
    unapplied: Vec<LogRecord>,
    pub rows: ReplicaRows,
    /// Applied records whose rows are not in the store yet.
    pub checkpoint: Checkpoint,
    /// The next report says `restarted` (a reconcile is done); it waits for the apply of what
    /// was kept, so the primary sees where the replica really stands.
    pub announce: bool,
    pub deferred: Option<Resync>,
}

impl ReplicaState {
    pub fn new(id: String, incarnation: u64) -> Self {
        ReplicaState {
            id,
            incarnation,
            phase: Phase::Loading,
            awaited: false,
            write_lsn: 0,
            flush_lsn: 0,
            replay_lsn: 0,
            timeline: 0,
            primary_durable: Arc::new(AtomicU64::new(0)),
            pending: Vec::new(),
            pending_bytes: 0,
            unapplied: Vec::new(),
            rows: ReplicaRows::default(),
            checkpoint: Checkpoint::default(),
            announce: false,
            deferred: None,
        }
    }

    /// Forgets everything in memory (a supervised restart rebuilds it from the store).
    pub fn forget(&mut self) {
        let down = self.phase == Phase::Down;
        *self = ReplicaState::new(std::mem::take(&mut self.id), self.incarnation);
        if down {
            self.phase = Phase::Down;
        }
    }

    pub fn streaming(&self) -> bool {
        matches!(self.phase, Phase::Streaming(_))
    }

    pub fn storing(&self) -> bool {
        self.phase == Phase::Streaming(Work::Storing)
    }

    /// Where it stands now, as a report (`Restarted` also when an announcement is due).
    pub fn report(&mut self, kind: ReportKind) -> ReplicaReport {
        let kind = if std::mem::take(&mut self.announce) { ReportKind::Restarted } else { kind };
        self.report_as(kind)
    }

    /// The report of where it stands, without taking an announcement.
    pub fn report_as(&self, kind: ReportKind) -> ReplicaReport {
        ReplicaReport {
            replica_id: self.id.clone(),
            incarnation: self.incarnation,
            timeline: self.timeline,
            positions: ReplicaPositions { write_lsn: self.write_lsn, flush_lsn: self.flush_lsn, replay_lsn: self.replay_lsn },
            kind,
        }
    }

    /// Takes what a load read back: rows up to the confirmed position, the log's durable
    /// tail after it.
    pub fn loaded(&mut self, l: LoadedReplica) {
        self.rows = Arc::new(RwLock::new(Replayed { rows: l.table.table, lsn: l.confirmed }));
        self.checkpoint.reset(l.table.shard_lsns, l.table.epoch);
        self.write_lsn = l.flush;
        self.flush_lsn = l.flush;
        self.replay_lsn = l.confirmed;
        self.timeline = l.timeline;
        self.primary_durable = Arc::new(AtomicU64::new(l.confirmed));
        self.unapplied = l.tail;
        self.phase = Phase::Streaming(Work::Idle);
    }

    /// Whether what the primary of `timeline` sends may be taken: it is this replica's timeline,
    /// or a newer one while the replica holds nothing past what it applied (all of which some
    /// primary made durable, and durable records carry over to every later timeline), which it
    /// then adopts without a [`Reconcile`].
    fn adopt(&mut self, timeline: u64) -> bool {
        if timeline == self.timeline {
            return true;
        }
        if timeline > self.timeline && self.write_lsn == self.replay_lsn {
            self.timeline = timeline;
            return true;
        }
        false
    }

    /// Takes shipped records; a report if it must say where it stands: a gap, or a newer
    /// primary that has not reconciled its tail yet (which reconciles first). Shipments of an
    /// older timeline are stale: dropped.
    pub fn ship(&mut self, msg: ShipWal) -> Option<ReplicaReport> {
        if !self.streaming() {
            return None;
        }
        if !self.adopt(msg.timeline) {
            return (msg.timeline > self.timeline).then(|| self.report(ReportKind::Restarted));
        }
        self.receive(msg)
    }

    fn receive(&mut self, msg: ShipWal) -> Option<ReplicaReport> {
        let mut accepted = false;
        let mut gap = None;
        for record in msg.records {
            if record.lsn == self.write_lsn {
                self.write_lsn = record.end_lsn();
                self.pending_bytes += record.bytes.len();
                self.pending.push(record);
                accepted = true;
            } else if record.end_lsn() > self.write_lsn {
                // A gap: the primary ships from where this replica says it stands.
                tracing::warn!(replica_id = %self.id, expected = self.write_lsn, got = record.lsn, "gap in shipped WAL");
                gap = Some(self.report(ReportKind::Restarted));
                break;
            }
            // Otherwise shipped again after a restart of the stream: it has it already.
        }
        self.primary_durable.fetch_max(msg.durable_lsn, Ordering::AcqRel);
        if accepted {
            // No report for the receipt alone: the write position goes with the commit's report
            // and every heartbeat (a report per shipment doubled the primary's work per group).
            self.awaited = msg.flush_awaited;
        }
        gap
    }

    /// The primary says what is durable there; whether it was taken (same or adoptable
    /// timeline).
    pub fn durable(&mut self, msg: PrimaryDurable) -> bool {
        if !self.streaming() || !self.adopt(msg.timeline) {
            return false;
        }
        self.primary_durable.fetch_max(msg.lsn, Ordering::AcqRel);
        true
    }

    /// How many of `unapplied` are durable here and confirmed by the primary.
    fn confirmed_unapplied(&self) -> usize {
        let confirmed = self.primary_durable.load(Ordering::Acquire).min(self.flush_lsn);
        self.unapplied.partition_point(|r| r.end_lsn() <= confirmed)
    }

    /// Whether some durable record waits only for its apply.
    pub fn can_apply(&self) -> bool {
        self.confirmed_unapplied() > 0
    }

    /// What to do next: nothing, gather, or a store task. When a write may wait (`awaited`), or
    /// an announcement does, or enough was received: a task at once, which commits what was
    /// received (applying what is confirmed before and after) or only applies. Otherwise the
    /// work is gathered for up to the lazy delay: a task per group commit of the primary cost
    /// the machine the primary's cores for work nobody waits for.
    pub fn next(&mut self) -> Next {
        let Phase::Streaming(work) = self.phase else { return Next::Nothing };
        if work == Work::Storing {
            return Next::Nothing;
        }
        let apply = self.can_apply();
        if self.pending.is_empty() && !apply {
            return Next::Nothing;
        }
        if !(self.awaited || self.announce || work == Work::Due || self.pending_bytes >= LAZY_FLUSH_BYTES) {
            self.phase = Phase::Streaming(Work::Gathering);
            return Next::Gather;
        }
        if apply && self.pending.is_empty() {
            return Next::Store(Box::new(self.store_task(None)));
        }
        let records = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let end = records.last().map(LogRecord::end_lsn).unwrap_or(self.flush_lsn);
        let confirmed = self.primary_durable.load(Ordering::Acquire).min(end).max(self.replay_lsn);
        let commit = LogCommit {
            records: records.iter().map(|r| (r.lsn, r.bytes.clone())).collect(),
            meta: position_meta(&self.id, end, confirmed, self.timeline),
            ..Default::default()
        };
        self.unapplied.extend(records);
        Next::Store(Box::new(self.store_task(Some((commit, end)))))
    }

    /// The lazy delay passed.
    pub fn gathered(&mut self) {
        if self.phase == Phase::Streaming(Work::Gathering) {
            self.phase = Phase::Streaming(Work::Due);
        }
    }

    /// A store task for `commit` (if any) and the apply of `unapplied`, which it holds until it
    /// is done.
    fn store_task(&mut self, commit: Option<(LogCommit, u64)>) -> StoreTask {
        self.phase = Phase::Streaming(Work::Storing);
        // A write may wait for the replay of what is confirmed already: the task reports it
        // before its commit, from its own thread, rather than in a task of its own.
        let early = (commit.is_some() && self.awaited && !self.announce).then(|| self.report_as(ReportKind::Progress));
        StoreTask {
            owner: self.id.clone(),
            rows: self.rows.clone(),
            durable_there: self.primary_durable.clone(),
            records: std::mem::take(&mut self.unapplied),
            flushed: self.flush_lsn,
            commit,
            early,
        }
    }

    /// Applies on the actor what the primary confirmed, when a write may be waiting for it and it
    /// is small ([`APPLY_HERE_OPS`]); the report, if it did. This is the one apply outside a
    /// store task, and worth it: a task for it cost the waiting write a blocking thread's
    /// wake-up and a report from another thread for a few hash-map inserts (in `sync` the apply
    /// most often comes due as the primary's commit ends, after this replica's own commit).
    /// Never while a task runs (it holds `unapplied`), nor while a checkpoint holds the rows'
    /// lock (`try_write`: the arbiter never waits for it), nor for an announcement, whose report
    /// the task sends.
    pub fn apply_here(&mut self) -> Option<ReplicaReport> {
        if !self.awaited || self.storing() || self.announce || !self.streaming() {
            return None;
        }
        let due = self.confirmed_unapplied();
        if due == 0 || self.unapplied[..due].iter().map(|r| r.ops.len()).sum::<usize>() > APPLY_HERE_OPS {
            return None;
        }
        let mut replayed = self.rows.try_write()?;
        let ops: usize = self.unapplied.drain(..due).map(|r| replayed.apply(&r)).sum();
        self.replay_lsn = replayed.lsn;
        drop(replayed);
        self.checkpoint.applied(ops);
        Some(self.report(ReportKind::Progress))
    }

    /// The store task ended; its report.
    pub fn task_done(&mut self, done: TaskDone) -> ReplicaReport {
        self.phase = Phase::Streaming(Work::Idle);
        if let Some(end) = done.committed {
            self.flush_lsn = end;
        }
        if let Some(lsn) = done.applied_to {
            self.replay_lsn = lsn;
        }
        self.checkpoint.applied(done.applied_ops);
        // Anything that arrived meanwhile went to `pending`; `unapplied` is empty until now.
        self.unapplied = done.rest;
        self.report(ReportKind::Progress)
    }

    /// Holds `resync` until no store task or checkpoint runs; whether it must wait.
    pub fn defer(&mut self, resync: Resync) -> Option<Resync> {
        if self.storing() || self.checkpoint.in_flight() {
            match (&self.deferred, resync) {
                (Some(Resync::Reseed(_)), Resync::Reconcile(_)) => {}
                (_, resync) => self.deferred = Some(resync),
            }
            return None;
        }
        Some(resync)
    }

    /// The reseed or reconcile that waited, once no store task or checkpoint runs.
    pub fn take_deferred(&mut self) -> Option<Resync> {
        if self.storing() || self.checkpoint.in_flight() {
            return None;
        }
        self.deferred.take()
    }

    /// Drops what it holds from `msg.keep_until` on (received or durable) and adopts the new
    /// timeline (no store task or checkpoint runs). Returns the report to send now, if any, and
    /// the store task that drops its durable records past `keep`, if it must.
    pub fn reconcile(&mut self, msg: Reconcile) -> Reconciled {
        if msg.from_timeline != self.timeline {
            // Reconciled already (the primary sends one per report of the old timeline). An
            // announcement still waiting for its apply says where it stands once it can.
            return if self.announce { Reconciled::Nothing } else { Reconciled::Report(self.report(ReportKind::Restarted)) };
        }
        let keep = msg.keep_until.max(self.replay_lsn);
        if keep > msg.keep_until {
            // Never below what it applied: that was confirmed durable by a primary, and every
            // later timeline starts after it.
            tracing::warn!(replica_id = %self.id, keep_until = msg.keep_until, replay_lsn = self.replay_lsn, "reconcile below the applied position; keeping that");
        }
        self.pending.retain(|r| r.end_lsn() <= keep);
        self.pending_bytes = self.pending.iter().map(|r| r.bytes.len()).sum();
        self.unapplied.retain(|r| r.end_lsn() <= keep);
        let dropped = self.write_lsn.saturating_sub(keep);
        self.write_lsn = self.write_lsn.min(keep);
        self.timeline = msg.timeline;
        // Everything kept is durable on the primary: the timeline that shipped it made it so.
        self.primary_durable = Arc::new(AtomicU64::new(keep));
        self.announce = true;
        if self.flush_lsn <= keep {
            if dropped > 0 {
                tracing::info!(replica_id = %self.id, keep, dropped, "replica dropped received records of an earlier primary timeline");
            }
            // The announcement goes after the apply of what was kept, if anything is to apply.
            return if self.can_apply() { Reconciled::Nothing } else { Reconciled::Report(self.report(ReportKind::Restarted)) };
        }
        tracing::warn!(replica_id = %self.id, keep, flush_lsn = self.flush_lsn, "replica drops durable records its earlier primary never made durable");
        let commit = LogCommit {
            meta: position_meta(&self.id, keep, keep, msg.timeline),
            truncate_from: Some(keep),
            ..Default::default()
        };
        // An ordinary store task: its commit moves the flushed position back to `keep`, it
        // applies what is kept, and its report is the announcement.
        Reconciled::Store(self.store_task(Some((commit, keep))))
    }

    /// A base copy replaced the rows and log, at `lsn`, from timeline `timeline`.
    pub fn reseeded(&mut self, table: TableState, epoch: u64, lsn: u64, timeline: u64) -> ReplicaReport {
        self.rows = Arc::new(RwLock::new(Replayed { rows: table, lsn }));
        self.checkpoint.reset(vec![lsn; crate::model::rows::SHARDS], epoch);
        self.pending.clear();
        self.pending_bytes = 0;
        self.unapplied.clear();
        self.timeline = timeline;
        self.primary_durable = Arc::new(AtomicU64::new(lsn));
        self.write_lsn = lsn;
        self.flush_lsn = lsn;
        self.replay_lsn = lsn;
        self.phase = Phase::Streaming(Work::Idle);
        self.report(ReportKind::Restarted)
    }
}

/// What a reconcile asks for.
pub enum Reconciled {
    Nothing,
    Report(ReplicaReport),
    Store(StoreTask),
}
