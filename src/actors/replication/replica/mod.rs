//! One replica, as a supervised actor. It receives WAL records shipped by the primary, makes them
//! durable in its own log (one fsynced transaction for all that arrived meanwhile, off the
//! arbiter), applies them to its rows once the primary has them durably too, and reports its
//! write, flush and replay positions to the primary after each step and on every heartbeat.
//!
//! [`ReplicaActor`] is the shell: it runs the store tasks, checkpoints, the heartbeat and the lazy
//! timer, and sends through the fault-injecting link. What the replica knows and decides is
//! [`state::ReplicaState`].
//!
//! When no write can be waiting for its flush (the primary says so with each shipment), it
//! gathers what it receives for up to [`LAZY_FLUSH_DELAY`] or [`state::LAZY_FLUSH_BYTES`] before
//! the fsync, as MySQL replicas sync their relay log every `sync_relay_log` events: fewer fsyncs
//! compete with the primary's. Nothing acknowledged is at risk: the primary has it durably and
//! keeps it until the replica's applied position passes it.
//!
//! On start it loads its rows, replays its log after them up to the confirmed position, and
//! reports as restarted, so the primary ships from its flushed position (never from zero) and
//! confirms or reconciles the rest.

mod state;
mod task;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use self::state::{Next, Phase, Reconciled, ReplicaState, Resync};
use self::task::{CheckpointFailed, StoreTask};
use crate::actors::net::Link;
use crate::exec::{self, BackgroundPool, Lane, Priority};
use crate::messages::replication::*;
use crate::metrics::Histogram;
use crate::model::rows::SHARDS;
use crate::storage::table::TableState;
use crate::storage::{StorageError, Store};

pub use self::task::{flush_key, position_meta};

/// How often what was applied since the last checkpoint is written to the store (sooner when
/// enough is pending).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Longest a replica nobody waits for holds received records before making them durable.
pub const LAZY_FLUSH_DELAY: Duration = Duration::from_millis(10);
/// How long a replica that could not load waits before it tries again.
const LOAD_RETRY: Duration = Duration::from_secs(1);
/// The mailbox bound. Shipping is flow-controlled by the primary (a window of bytes in flight),
/// so the mailbox stays small; this only guards against a bug there.
const MAILBOX: usize = 4096;

/// Where a replica reports to: its primary, through the link.
struct Reporter {
    link: Link,
    replica_id: String,
    primary_id: String,
    primary: Recipient<ReplicaReport>,
}

impl Reporter {
    /// The one way a report leaves a replica, from its actor or from its store task's thread.
    fn send(&self, report: ReplicaReport) {
        self.link.deliver(&self.replica_id, &self.primary_id, &self.primary, report);
    }
}

pub struct ReplicaActor {
    state: ReplicaState,
    store: Arc<Store>,
    /// Where its work nobody waits for runs, and its checkpoints.
    background: Arc<BackgroundPool>,
    reporter: Arc<Reporter>,
    heartbeat_interval: Duration,
    heartbeat: Option<SpawnHandle>,
    lazy_timer: Option<SpawnHandle>,
    /// Where its log commits' durations go.
    commit_timer: Histogram,
    /// Where its store tasks run while a write waits for them; started on first use (a replica
    /// nobody waits for never needs it).
    lane: Option<Lane>,
    /// Where its answer to [`Relinquish`] goes once its storage work is done.
    relinquishing: Option<tokio::sync::oneshot::Sender<Relinquished>>,
}

impl ReplicaActor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        replica_id: String,
        incarnation: u64,
        store: Arc<Store>,
        background: Arc<BackgroundPool>,
        link: Link,
        primary_id: String,
        primary: Recipient<ReplicaReport>,
        heartbeat_interval: Duration,
        commit_timer: Histogram,
    ) -> Self {
        let reporter = Arc::new(Reporter { link, replica_id: replica_id.clone(), primary_id, primary });
        ReplicaActor {
            state: ReplicaState::new(replica_id, incarnation),
            store,
            background,
            reporter,
            heartbeat_interval,
            heartbeat: None,
            lazy_timer: None,
            commit_timer,
            lane: None,
            relinquishing: None,
        }
    }

    pub fn start_supervised(self) -> Addr<ReplicaActor> {
        actix::Supervisor::start(|_| self)
    }

    fn report(&mut self, kind: ReportKind) {
        let report = self.state.report(kind);
        self.reporter.send(report);
    }

    /// Loads rows up to the confirmed position, the unconfirmed tail of the log after it, and
    /// the positions, holding messages back until done.
    fn load(&mut self, ctx: &mut Context<Self>) {
        let (store, id) = (self.store.clone(), self.state.id.clone());
        let load = move || task::load(&store, &id);
        ctx.wait(exec::then_on_actor(load, |res, act: &mut Self, ctx| match res {
            Ok(loaded) => {
                act.state.loaded(loaded);
                act.report(ReportKind::Restarted);
            }
            Err(e) => {
                tracing::error!(replica_id = %act.state.id, error = %e, "replica cannot load its state; retrying");
                ctx.run_later(LOAD_RETRY, |act, ctx| act.load(ctx));
            }
        }));
    }

    /// Does the next piece of work, if there is one and no store task runs: an apply on the
    /// actor, a checkpoint that came due, a store task, or gathering for the lazy delay.
    fn next(&mut self, ctx: &mut Context<Self>) {
        if self.state.storing() || self.relinquished(ctx) {
            return;
        }
        if let Some(report) = self.state.apply_here() {
            self.reporter.send(report);
            if self.state.checkpoint.due() {
                self.write_checkpoint(ctx);
            }
        }
        match self.state.next() {
            Next::Nothing => {}
            Next::Gather => {
                if self.lazy_timer.is_none() {
                    self.lazy_timer = Some(ctx.run_later(LAZY_FLUSH_DELAY, |act, ctx| {
                        act.lazy_timer = None;
                        act.state.gathered();
                        act.next(ctx);
                    }));
                }
            }
            Next::Store(task) => self.run(*task, ctx),
        }
    }

    /// Runs a store task: at normal priority when a write or an announcement waits for it (on
    /// the idle-priority threads a busy machine could hold it back for seconds), otherwise in
    /// the background.
    fn run(&mut self, task: StoreTask, ctx: &mut Context<Self>) {
        if let Some(timer) = self.lazy_timer.take() {
            ctx.cancel_future(timer);
        }
        let (store, reporter) = (self.store.clone(), self.reporter.clone());
        let run = move || task.run(&store, |early| reporter.send(early));
        let work = match Priority::waited_for(self.state.awaited || self.state.announce) {
            Priority::Normal => self.lane.get_or_insert_with(|| Lane::start(&format!("wal-{}", self.state.id))).run(run),
            Priority::Background => self.background.run_at(Priority::Background, run),
        };
        ctx.spawn(actix::fut::wrap_future::<_, Self>(work).map(|res, act, ctx| {
            let done = match res {
                Ok(done) => done,
                Err(e) => {
                    // What was received is not durable; the supervisor restarts the actor from
                    // its durable state and the primary ships the rest again.
                    tracing::error!(replica_id = %act.state.id, error = %e, "replica could not make WAL durable; restarting");
                    return ctx.stop();
                }
            };
            if let Some(took) = done.commit_took {
                act.commit_timer.observe(took);
            }
            let report = act.state.task_done(done);
            act.reporter.send(report);
            if act.relinquished(ctx) || act.run_deferred(ctx) {
                return;
            }
            if act.state.checkpoint.due() {
                act.write_checkpoint(ctx);
            }
            act.next(ctx);
        }));
    }

    /// Writes the shards changed since the last checkpoint (about as many rows as were applied
    /// since), and drops the received log no shard needs any more. At normal priority while a
    /// write may wait for this replica's applies: an idle-priority thread holding the rows' lock
    /// would be the last to get a core back, and the apply (and the write) would wait for it.
    fn write_checkpoint(&mut self, ctx: &mut Context<Self>) {
        let Some(plan) = self.state.checkpoint.start(false, true) else { return };
        let (store, id, rows) = (self.store.clone(), self.state.id.clone(), self.state.rows.clone());
        let captured_from = rows.clone();
        let work = self.background.run_at(Priority::waited_for(self.state.awaited), move || task::checkpoint(&store, &id, &rows, &plan));
        ctx.spawn(actix::fut::wrap_future::<_, Self>(work).map(move |res, act, ctx| {
            match res {
                Ok(written) => act.state.checkpoint.finished(written.as_ref().map(|(lsn, shards)| (*lsn, &shards[..]))),
                Err(CheckpointFailed { error, shards }) => {
                    // Nothing is lost: the log keeps what the stored shards lack, and a start
                    // replays it; the shards are written again by a later checkpoint.
                    tracing::error!(replica_id = %act.state.id, %error, "replica checkpoint failed");
                    let mut rows = captured_from.write();
                    match shards {
                        Some(shards) => rows.rows.mark_dirty(shards.into_iter().map(usize::from)),
                        None => rows.rows.mark_dirty(0..SHARDS),
                    }
                    drop(rows);
                    act.state.checkpoint.finished(None);
                }
            }
            if !act.relinquished(ctx) {
                act.run_deferred(ctx);
            }
        }));
    }

    /// Runs the reseed or reconcile that waited for a store task or checkpoint, if one waited
    /// and none is in flight any more; says whether it did.
    fn run_deferred(&mut self, ctx: &mut Context<Self>) -> bool {
        match self.state.take_deferred() {
            Some(Resync::Reseed(msg)) => self.reseed(msg, ctx),
            Some(Resync::Reconcile(msg)) => self.reconcile(msg, ctx),
            None => return false,
        }
        true
    }

    fn reconcile(&mut self, msg: Reconcile, ctx: &mut Context<Self>) {
        match self.state.reconcile(msg) {
            Reconciled::Nothing => self.next(ctx),
            Reconciled::Report(report) => {
                self.reporter.send(report);
                self.next(ctx);
            }
            Reconciled::Store(task) => self.run(task, ctx),
        }
    }

    /// Replaces the stored and in-memory state with `msg`'s rows at its lsn (no store task in
    /// flight); nothing shipped is applied over the old state meanwhile.
    fn reseed(&mut self, msg: Reseed, ctx: &mut Context<Self>) {
        let (store, id, lsn, timeline, count) = (self.store.clone(), self.state.id.clone(), msg.lsn, msg.timeline, msg.rows.len());
        let write = move || {
            let table = TableState::from_rows(&msg.rows);
            let epoch = store.replace_rows(&id, table.rows(), lsn, &task::position_meta(&id, lsn, lsn, timeline))?;
            Ok::<_, StorageError>((table, epoch))
        };
        ctx.wait(exec::then_on_actor(write, move |res, act: &mut Self, ctx| match res {
            Ok((table, epoch)) => {
                let report = act.state.reseeded(table, epoch, lsn, timeline);
                tracing::info!(replica_id = %act.state.id, lsn, rows = count, "replica reseeded");
                act.reporter.send(report);
            }
            Err(e) => {
                tracing::error!(replica_id = %act.state.id, error = %e, "replica could not be reseeded; restarting");
                ctx.stop();
            }
        }));
    }

    /// If it is being relinquished and none of its storage work runs, answers where its durable
    /// log ends and stops; says whether it is being relinquished.
    fn relinquished(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.relinquishing.is_none() {
            return false;
        }
        if !self.state.storing() && !self.state.checkpoint.in_flight() {
            if let Some(tx) = self.relinquishing.take() {
                let _ = tx.send(Relinquished { flush_lsn: self.state.flush_lsn, timeline: self.state.timeline });
            }
            self.state.phase = Phase::Down;
            ctx.stop();
        }
        true
    }

    fn start_heartbeat(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.heartbeat.take() {
            ctx.cancel_future(h);
        }
        self.heartbeat = Some(ctx.run_interval(self.heartbeat_interval, |act, _| {
            // Not while an announcement waits for its apply: the heartbeat would send it early,
            // and the primary would judge the restarted replica behind by the tail it kept.
            if act.state.streaming() && !act.state.announce {
                act.report(ReportKind::Progress);
            }
        }));
    }
}

impl Actor for ReplicaActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.state.phase == Phase::Down {
            return;
        }
        ctx.set_mailbox_capacity(MAILBOX);
        self.load(ctx);
        self.start_heartbeat(ctx);
        ctx.run_interval(CHECKPOINT_EVERY, |act, ctx| {
            if act.state.streaming() {
                act.write_checkpoint(ctx);
            }
        });
    }
}

impl actix::Supervised for ReplicaActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // In-memory state is rebuilt from the store in `started`, never assumed.
        self.state.forget();
        self.lazy_timer = None;
    }
}

impl Handler<ShipWal> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, msg: ShipWal, ctx: &mut Self::Context) {
        if let Some(report) = self.state.ship(msg) {
            self.reporter.send(report);
        }
        self.next(ctx);
    }
}

impl Handler<PrimaryDurable> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, msg: PrimaryDurable, ctx: &mut Self::Context) {
        if self.state.durable(msg) {
            self.next(ctx);
        }
    }
}

impl Handler<Reconcile> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, msg: Reconcile, ctx: &mut Self::Context) {
        if !self.state.streaming() {
            return;
        }
        if let Some(Resync::Reconcile(msg)) = self.state.defer(Resync::Reconcile(msg)) {
            self.reconcile(msg, ctx);
        }
    }
}

impl Handler<Reseed> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, msg: Reseed, ctx: &mut Self::Context) {
        if self.state.phase == Phase::Down {
            return;
        }
        if let Some(Resync::Reseed(msg)) = self.state.defer(Resync::Reseed(msg)) {
            self.reseed(msg, ctx);
        }
    }
}

impl Handler<SetReportInterval> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, msg: SetReportInterval, ctx: &mut Self::Context) {
        self.heartbeat_interval = msg.interval;
        self.start_heartbeat(ctx);
    }
}

impl Handler<GetReplicaPositions> for ReplicaActor {
    type Result = Result<ReplicaPositions, ReplicationError>;
    fn handle(&mut self, _: GetReplicaPositions, _ctx: &mut Self::Context) -> Self::Result {
        if self.state.phase == Phase::Down {
            return Err(ReplicationError::ReplicaDown { replica_id: self.state.id.clone() });
        }
        Ok(self.state.report_as(ReportKind::Progress).positions)
    }
}

impl Handler<ReadLocalRow> for ReplicaActor {
    type Result = Result<Option<(serde_json::Value, u64)>, ReplicationError>;
    fn handle(&mut self, msg: ReadLocalRow, _ctx: &mut Self::Context) -> Self::Result {
        if !self.state.streaming() {
            return Err(ReplicationError::ReplicaDown { replica_id: self.state.id.clone() });
        }
        // The rows' own lsn, not `replay_lsn`: the store task may have applied more records
        // than it has reported back yet.
        let replayed = self.state.rows.read();
        Ok(replayed.rows.get(&msg.table, &msg.key).map(|v| (v.clone(), replayed.lsn)))
    }
}

impl Handler<Relinquish> for ReplicaActor {
    type Result = ResponseFuture<Result<Relinquished, ReplicationError>>;
    fn handle(&mut self, _: Relinquish, ctx: &mut Self::Context) -> Self::Result {
        let down = ReplicationError::ReplicaDown { replica_id: self.state.id.clone() };
        if self.state.phase == Phase::Down || self.relinquishing.is_some() {
            return Box::pin(std::future::ready(Err(down)));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.relinquishing = Some(tx);
        self.relinquished(ctx);
        Box::pin(async move { rx.await.map_err(|_| down) })
    }
}

impl Handler<CrashReplica> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, _: CrashReplica, ctx: &mut Self::Context) {
        tracing::warn!(replica_id = %self.state.id, "replica crashed by fault injection");
        self.state.phase = Phase::Down;
        ctx.stop();
    }
}

impl Handler<StopReplica> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, _: StopReplica, ctx: &mut Self::Context) {
        self.state.phase = Phase::Down;
        ctx.stop();
    }
}
