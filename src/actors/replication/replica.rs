//! One replica, as a supervised actor. It receives WAL records shipped by the primary, makes them
//! durable in its own log (one fsynced transaction for all that arrived meanwhile, off the
//! arbiter thread), applies them to its table state, and reports its write, flush and replay
//! positions to the primary after each step and on every heartbeat. The rows reach its store in
//! checkpoints, as on the primary ([`super::table`]); its log is trimmed up to the oldest shard
//! stored.
//!
//! When no write can be waiting for its flush (the primary says so with each shipment: an async
//! replica in `sync` mode, any replica in `async` mode), it gathers what it receives for up to
//! [`LAZY_FLUSH_DELAY`] or [`LAZY_FLUSH_BYTES`] before the fsync, as MySQL replicas sync their
//! relay log every `sync_relay_log` events: fewer, larger transactions, and fewer fsyncs competing
//! with the primary's on a shared disk. Its flush and replay lag show the delay. Nothing
//! acknowledged is at risk: the primary has it durably and keeps it until the replica's flushed
//! position passes it.
//!
//! Applying what arrived is memory-bound hash-map work as large as the primary's own, so it is
//! done on the blocking pool right after the commit that made it durable, not on the arbiter
//! thread the primary shares: the replica's table state is behind a lock of its own
//! ([`ReplicaRows`]).
//!
//! Positions: `write` is what it has received (in memory), `flush` what is durable, `replay`
//! what its readable state shows. On start it loads its rows, replays its log after them, and
//! reports its flushed position with `restarted`, so the primary ships from there: a replica
//! resumes from its own flushed position, never from zero.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use parking_lot::RwLock;

use crate::messages::replication::*;
use crate::actors::replication::table::{load_table, stored_shards, Checkpoint, TableState};
use crate::storage::rows::SHARDS;
use crate::storage::{LogCommit, Store};

/// How often what was applied since the last checkpoint is written to the rows table (sooner
/// when enough is pending).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Longest a replica nobody waits for holds received records before making them durable.
pub const LAZY_FLUSH_DELAY: Duration = Duration::from_millis(10);
/// Most bytes it holds so.
pub const LAZY_FLUSH_BYTES: usize = 1 << 20;

/// The meta key of a replica's durable (flushed) position.
pub fn flush_key(replica_id: &str) -> String {
    format!("replica:{replica_id}:flush_lsn")
}

/// What a replica serves reads from: its table state and the lsn it has replayed to, changed
/// together so that a read's `replay_lsn` always covers the row it returns.
#[derive(Debug, Default)]
struct Replayed {
    rows: TableState,
    lsn: u64,
}

/// The actor owns it and hands a clone of the `Arc` only to its own commit task, which applies
/// each received record under the write lock once the record is durable (one record at a time,
/// so a read waits for at most one record's apply; never held across an await). Each
/// incarnation and each reseed gets a fresh one, so a commit task still running for an earlier
/// one applies to a table nobody reads any more.
type ReplicaRows = Arc<RwLock<Replayed>>;

/// Where a replica reports to: the primary.
pub type ProgressSink = Recipient<ReplicaReport>;

/// A replica's report: its positions, and whether it just (re)started (the primary then ships
/// from its flushed position).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ReplicaReport {
    pub progress: ReplicaProgress,
    pub restarted: bool,
    /// Which actor of the replica sent it; reports from an earlier one are ignored.
    pub incarnation: u64,
}

pub struct ReplicaActor {
    replica_id: String,
    incarnation: u64,
    store: Arc<Store>,
    primary: ProgressSink,
    heartbeat_interval: Duration,
    rows: ReplicaRows,
    /// Applied batches whose rows are not in the store yet.
    checkpoint: Checkpoint,
    write_lsn: u64,
    flush_lsn: u64,
    replay_lsn: u64,
    /// Received, not yet durable.
    pending: Vec<ShippedRecord>,
    pending_bytes: usize,
    /// `pending` should be made durable as soon as possible: a write may wait for it, or it
    /// has been held for [`LAZY_FLUSH_DELAY`].
    flush_due: bool,
    flush_timer: Option<SpawnHandle>,
    commit_in_flight: bool,
    /// A reseed that arrived while a commit or a checkpoint was in flight: it runs once they are
    /// done, so a commit can neither land over the reseeded store nor move positions back after
    /// it, and a checkpoint's result is never taken for the reseeded table's.
    deferred_reseed: Option<Reseed>,
    loaded: bool,
    heartbeat: Option<SpawnHandle>,
    /// Set by an injected crash, so a restart by the supervisor keeps it down.
    crashed: bool,
}

impl ReplicaActor {
    pub fn new(
        replica_id: String,
        incarnation: u64,
        store: Arc<Store>,
        primary: ProgressSink,
        heartbeat_interval: Duration,
    ) -> Self {
        ReplicaActor {
            replica_id,
            incarnation,
            store,
            primary,
            heartbeat_interval,
            rows: ReplicaRows::default(),
            checkpoint: Checkpoint::default(),
            write_lsn: 0,
            flush_lsn: 0,
            replay_lsn: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            flush_due: false,
            flush_timer: None,
            commit_in_flight: false,
            deferred_reseed: None,
            loaded: false,
            heartbeat: None,
            crashed: false,
        }
    }

    pub fn start_supervised(self) -> Addr<ReplicaActor> {
        actix::Supervisor::start(|_| self)
    }

    fn report(&self, restarted: bool) {
        self.primary.do_send(ReplicaReport {
            progress: ReplicaProgress {
                replica_id: self.replica_id.clone(),
                write_lsn: self.write_lsn,
                flush_lsn: self.flush_lsn,
                replay_lsn: self.replay_lsn,
            },
            restarted,
            incarnation: self.incarnation,
        });
    }

    /// Loads rows and the flushed position (blocking, so in `spawn_blocking`), holding messages
    /// back until done.
    fn load(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let id = self.replica_id.clone();
        let load = actix_web::rt::task::spawn_blocking(move || {
            let flush = store.get_log_meta(&id, &flush_key(&id))?.unwrap_or(0);
            let loaded = load_table(&store, &id, flush)?;
            Ok::<_, crate::storage::StorageError>((flush, loaded))
        });
        ctx.wait(load.into_actor(self).map(|res, act, ctx| match res {
            Ok(Ok((flush, loaded))) => {
                act.rows = Arc::new(RwLock::new(Replayed { rows: loaded.table, lsn: flush }));
                act.checkpoint.reset(loaded.shard_lsns, loaded.epoch);
                act.write_lsn = flush;
                act.flush_lsn = flush;
                act.replay_lsn = flush;
                act.loaded = true;
                act.report(true);
            }
            Ok(Err(e)) => {
                tracing::error!(replica_id = %act.replica_id, error = %e, "replica cannot load its state; stopping");
                ctx.stop();
            }
            Err(e) => {
                tracing::error!(replica_id = %act.replica_id, error = %e, "replica load task failed; stopping");
                ctx.stop();
            }
        }));
    }

    /// Commits what was received now if it is due (or large), otherwise once it is.
    fn schedule_commit(&mut self, ctx: &mut Context<Self>) {
        if self.pending.is_empty() {
            return;
        }
        if self.flush_due || self.pending_bytes >= LAZY_FLUSH_BYTES {
            self.commit(ctx);
        } else if self.flush_timer.is_none() {
            self.flush_timer = Some(ctx.run_later(LAZY_FLUSH_DELAY, |act, ctx| {
                act.flush_timer = None;
                act.flush_due = true;
                act.schedule_commit(ctx);
            }));
        }
    }

    /// Makes everything received durable, in one transaction (the records and the flushed
    /// position), then applies it (both on the blocking pool).
    fn commit(&mut self, ctx: &mut Context<Self>) {
        if self.commit_in_flight || self.pending.is_empty() {
            return;
        }
        self.commit_in_flight = true;
        self.flush_due = false;
        self.pending_bytes = 0;
        if let Some(timer) = self.flush_timer.take() {
            ctx.cancel_future(timer);
        }
        let records = std::mem::take(&mut self.pending);
        let end = records.last().map(ShippedRecord::end_lsn).unwrap_or(self.flush_lsn);
        let commit = LogCommit {
            records: records.iter().map(|r| (r.lsn, r.bytes.clone())).collect(),
            meta: vec![(flush_key(&self.replica_id), end)],
            truncate_before: None,
        };
        let store = self.store.clone();
        let id = self.replica_id.clone();
        let rows = self.rows.clone();
        let work = actix_web::rt::task::spawn_blocking(move || {
            store.commit_log(&id, commit)?;
            for r in &records {
                let mut replayed = rows.write();
                replayed.rows.apply(&r.ops);
                replayed.lsn = r.end_lsn();
            }
            Ok::<_, crate::storage::StorageError>(records)
        });
        ctx.spawn(work.into_actor(self).map(move |res, act, ctx| {
            act.commit_in_flight = false;
            let records = match res {
                Ok(Ok(records)) => records,
                Ok(Err(e)) => return act.commit_failed(e.to_string(), ctx),
                Err(e) => return act.commit_failed(e.to_string(), ctx),
            };
            act.flush_lsn = end;
            act.checkpoint.applied(records.iter().map(|r| r.ops.len()).sum());
            act.replay_lsn = end;
            act.report(false);
            if act.run_deferred_reseed(ctx) {
                return;
            }
            if act.checkpoint.due() {
                act.write_checkpoint(ctx);
            }
            act.schedule_commit(ctx);
        }));
    }

    /// What was received is not durable; the supervisor restarts the actor from its durable
    /// state and the primary ships the rest again.
    fn commit_failed(&mut self, e: String, ctx: &mut Context<Self>) {
        tracing::error!(replica_id = %self.replica_id, error = %e, "replica could not make WAL durable; restarting");
        ctx.stop();
    }

    /// Writes the shards changed since the last checkpoint (about as many rows as were applied
    /// since), and drops the received log no shard needs any more.
    fn write_checkpoint(&mut self, ctx: &mut Context<Self>) {
        let Some(plan) = self.checkpoint.start(false, true) else { return };
        let store = self.store.clone();
        let id = self.replica_id.clone();
        let rows = self.rows.clone();
        let captured_from = self.rows.clone();
        // The lock is taken per shard (a shard's pointers copied under it), never across the
        // disk: the commit task applying received records waits for one shard at most.
        let task = actix_web::rt::task::spawn_blocking(move || {
            let (picked, lsn) = {
                let replayed = rows.read();
                (replayed.rows.pick(&plan), replayed.lsn)
            };
            let images = picked.into_iter().map(|shard| rows.write().rows.take(shard)).collect();
            let images = rows.read().rows.finish(&plan, lsn, images);
            let Some(images) = images else { return Ok(None) };
            let (lsn, shards) = (images.lsn, stored_shards(&images));
            match store.write_row_images(&id, images) {
                Ok(true) => Ok(Some((lsn, shards))),
                // A reseed came since: those rows belong to the table it replaced.
                Ok(false) => Ok(None),
                Err(e) => Err((e, shards)),
            }
        });
        ctx.spawn(task.into_actor(self).map(move |res, act, ctx| {
            match res {
                Ok(Ok(written)) => act.checkpoint.finished(written.as_ref().map(|(lsn, shards)| (*lsn, &shards[..]))),
                Ok(Err((e, shards))) => {
                    // Nothing is lost: the log keeps what the stored shards lack, and a start
                    // replays it; the shards are written again by a later checkpoint.
                    tracing::error!(replica_id = %act.replica_id, error = %e, "replica checkpoint failed");
                    captured_from.write().rows.mark_dirty(shards.into_iter().map(usize::from));
                    act.checkpoint.finished(None);
                }
                Err(e) => {
                    tracing::error!(replica_id = %act.replica_id, error = %e, "replica checkpoint task failed");
                    captured_from.write().rows.mark_dirty(0..SHARDS);
                    act.checkpoint.finished(None);
                }
            }
            act.run_deferred_reseed(ctx);
        }));
    }

    /// Runs the reseed that waited for a commit or checkpoint, if it waited and none is in
    /// flight any more; says whether it did.
    fn run_deferred_reseed(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.commit_in_flight || self.checkpoint.in_flight() {
            return false;
        }
        match self.deferred_reseed.take() {
            Some(reseed) => {
                self.reseed(reseed, ctx);
                true
            }
            None => false,
        }
    }
}

impl ReplicaActor {
    fn start_heartbeat(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.heartbeat.take() {
            ctx.cancel_future(h);
        }
        self.heartbeat = Some(ctx.run_interval(self.heartbeat_interval, |act, _| {
            if act.loaded {
                act.report(false);
            }
        }));
    }
}

impl Handler<SetReportInterval> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, msg: SetReportInterval, ctx: &mut Self::Context) {
        self.heartbeat_interval = msg.interval;
        self.start_heartbeat(ctx);
    }
}

impl Actor for ReplicaActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.crashed {
            return;
        }
        // Shipping is flow-controlled by the primary (a window of bytes in flight), so the
        // mailbox stays small; this bound only guards against a bug there.
        ctx.set_mailbox_capacity(4096);
        self.load(ctx);
        self.start_heartbeat(ctx);
        ctx.run_interval(CHECKPOINT_EVERY, |act, ctx| {
            if act.loaded && !act.crashed {
                act.write_checkpoint(ctx);
            }
        });
    }
}

impl actix::Supervised for ReplicaActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // In-memory state is rebuilt from the store in `started`, never assumed.
        self.pending.clear();
        self.pending_bytes = 0;
        self.flush_due = false;
        self.flush_timer = None;
        self.commit_in_flight = false;
        self.deferred_reseed = None;
        self.loaded = false;
        self.rows = ReplicaRows::default();
        self.checkpoint = Checkpoint::default();
    }
}

impl Handler<ShipWal> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, msg: ShipWal, ctx: &mut Self::Context) {
        if self.crashed || !self.loaded {
            return;
        }
        let mut accepted = false;
        for record in msg.records {
            if record.lsn == self.write_lsn {
                self.write_lsn = record.end_lsn();
                self.pending_bytes += record.bytes.len();
                self.pending.push(record);
                accepted = true;
            } else if record.end_lsn() <= self.write_lsn {
                // Shipped again after a restart of the stream: already have it.
            } else {
                // A gap: say where we are; the primary ships from there.
                tracing::warn!(replica_id = %self.replica_id, expected = self.write_lsn, got = record.lsn, "gap in shipped WAL");
                self.report(true);
                break;
            }
        }
        if accepted {
            self.flush_due |= msg.flush_awaited;
            self.report(false);
            self.schedule_commit(ctx);
        }
    }
}

impl Handler<GetReplicaPositions> for ReplicaActor {
    type Result = Result<ReplicaPositions, ReplicationError>;
    fn handle(&mut self, _: GetReplicaPositions, _ctx: &mut Self::Context) -> Self::Result {
        if self.crashed {
            return Err(ReplicationError::ReplicaDown { replica_id: self.replica_id.clone() });
        }
        Ok(ReplicaPositions { write_lsn: self.write_lsn, flush_lsn: self.flush_lsn, replay_lsn: self.replay_lsn })
    }
}

impl Handler<ReadLocalRow> for ReplicaActor {
    type Result = Result<Option<(serde_json::Value, u64)>, ReplicationError>;
    fn handle(&mut self, msg: ReadLocalRow, _ctx: &mut Self::Context) -> Self::Result {
        if self.crashed || !self.loaded {
            return Err(ReplicationError::ReplicaDown { replica_id: self.replica_id.clone() });
        }
        // The table's own lsn, not `replay_lsn`: the commit task may have applied more records
        // than it has reported back yet.
        let replayed = self.rows.read();
        Ok(replayed.rows.get(&msg.table, &msg.key).map(|v| (v.clone(), replayed.lsn)))
    }
}

impl Handler<Reseed> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, msg: Reseed, ctx: &mut Self::Context) {
        if self.crashed {
            return;
        }
        if self.commit_in_flight || self.checkpoint.in_flight() {
            self.deferred_reseed = Some(msg);
            return;
        }
        self.reseed(msg, ctx);
    }
}

impl ReplicaActor {
    /// Replaces the stored and in-memory state with `msg`'s rows at its lsn (no commit in
    /// flight).
    fn reseed(&mut self, msg: Reseed, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let id = self.replica_id.clone();
        let lsn = msg.lsn;
        let count = msg.rows.len();
        let write = actix_web::rt::task::spawn_blocking(move || {
            let table = TableState::from_rows(&msg.rows);
            let epoch = store.replace_rows(&id, table.rows(), lsn, &[(flush_key(&id), lsn)])?;
            Ok::<_, crate::storage::StorageError>((table, epoch))
        });
        // ctx.wait: nothing shipped may be applied on top of the old state meanwhile.
        ctx.wait(write.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Ok((table, epoch))) => {
                act.rows = Arc::new(RwLock::new(Replayed { rows: table, lsn }));
                act.checkpoint.reset(vec![lsn; SHARDS], epoch);
                act.pending.clear();
                act.pending_bytes = 0;
                act.write_lsn = lsn;
                act.flush_lsn = lsn;
                act.replay_lsn = lsn;
                act.loaded = true;
                tracing::info!(replica_id = %act.replica_id, lsn, rows = count, "replica reseeded");
                act.report(true);
            }
            Ok(Err(e)) => {
                tracing::error!(replica_id = %act.replica_id, error = %e, "replica could not be reseeded; restarting");
                ctx.stop();
            }
            Err(e) => {
                tracing::error!(replica_id = %act.replica_id, error = %e, "reseed task failed; restarting");
                ctx.stop();
            }
        }));
    }
}

/// Fault injection: stops as a crash would (what was received but not flushed is lost).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CrashReplica;

impl Handler<CrashReplica> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, _: CrashReplica, ctx: &mut Self::Context) {
        tracing::warn!(replica_id = %self.replica_id, "replica crashed by fault injection");
        self.crashed = true;
        ctx.stop();
    }
}

impl Handler<StopReplica> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, _: StopReplica, ctx: &mut Self::Context) {
        self.crashed = true;
        ctx.stop();
    }
}
