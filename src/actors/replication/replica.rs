//! One replica, as a supervised actor. It receives WAL records shipped by the primary, makes them
//! durable in its own log (one fsynced transaction for all that arrived meanwhile, off the
//! arbiter thread), applies them to its table state once the primary has them durably too, and
//! reports its write, flush and replay positions to the primary after each step and on every
//! heartbeat. The rows reach its store in checkpoints, as on the primary ([`super::table`]); its
//! log is trimmed up to the oldest shard stored.
//!
//! The primary ships a group commit's records as its own fsync starts, so the two fsyncs run at
//! once (as a Raft leader appends to its log while it replicates): a sync write waits for the
//! slower of them, not for both in a row. A record can therefore be durable here before it is on
//! the primary. It is applied (readable here, counted as replayed) only once the primary says it
//! is durable there ([`PrimaryDurable`]), so a replica never shows a write its primary could
//! still lose. Until then it is the log's unconfirmed tail. A primary that restarts begins a new
//! timeline; a tail shipped by an earlier one may hold records that primary never made
//! durable, and the lsns they sit at hold other records now: on the first report of the new
//! timeline the primary sends a [`Reconcile`], and the replica drops its tail past what the old
//! timeline made durable. The confirmed position and the timeline are stored with each commit, so
//! a restarted replica knows which part of its log it may apply.
//!
//! When no write can be waiting for its flush (the primary says so with each shipment: an async
//! replica in `sync` mode, any replica in `async` mode), it gathers what it receives for up to
//! [`LAZY_FLUSH_DELAY`] or [`LAZY_FLUSH_BYTES`] before the fsync, as MySQL replicas sync their
//! relay log every `sync_relay_log` events: fewer, larger transactions, and fewer fsyncs competing
//! with the primary's on a shared disk. It applies what the primary confirms on the same beat (in
//! that commit's task, or in one of its own when nothing new arrived), not once per confirmation.
//! Its flush and replay lag show the delay. Nothing acknowledged is at risk: the primary has it
//! durably and keeps it until the replica's applied position passes it.
//!
//! Applying is memory-bound hash-map work as large as the primary's own, so it is done on the
//! blocking pool, in the task that made the records durable (or one of its own), not on the
//! arbiter thread the primary shares: the replica's table state is behind a lock of its own
//! ([`ReplicaRows`]). One store task runs at a time, so records are applied in lsn order. The one
//! exception is a few confirmed records a write waits for, with no task running and the lock
//! free: those the actor applies itself (`ReplicaActor::apply_here`), which takes a thread's
//! wake-up and a cross-thread report off the write's path.
//!
//! Positions: `write` is what it has received (in memory), `flush` what is durable here,
//! `replay` what its readable state shows. On start it loads its rows, replays its log after
//! them up to the confirmed position, and reports with `restarted`, so the primary ships from
//! its flushed position (never from zero) and confirms or reconciles the rest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use parking_lot::RwLock;

use crate::exec::{BackgroundPool, Priority, TaskFailed};
use crate::storage::table::{load_table, read_contiguous, stored_shards, Checkpoint, TableState};
use crate::model::LogRecord;
use crate::messages::replication::*;
use crate::model::rows::SHARDS;
use crate::storage::{LogCommit, ShardImage, StorageError, Store};

/// How often what was applied since the last checkpoint is written to the rows table (sooner
/// when enough is pending).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Longest a replica nobody waits for holds received records before making them durable.
pub const LAZY_FLUSH_DELAY: Duration = Duration::from_millis(10);
/// Most bytes it holds so.
pub const LAZY_FLUSH_BYTES: usize = 1 << 20;
/// Most confirmed ops a replica a write waits for applies on its actor, not in a store task
/// (`ReplicaActor::apply_here`): a few microseconds of the arbiter's time.
const APPLY_HERE_OPS: usize = 256;

/// How long a replica that could not load waits before it tries again.
const LOAD_RETRY: Duration = Duration::from_secs(1);

/// The meta key of a replica's durable (flushed) position.
pub fn flush_key(replica_id: &str) -> String {
    format!("replica:{replica_id}:flush_lsn")
}

/// The meta key of the position up to which its log is known durable on the primary (what a
/// start may apply). Absent in data dirs from before records were shipped early: there, every
/// flushed record had been applied.
fn confirmed_key(replica_id: &str) -> String {
    format!("replica:{replica_id}:confirmed_lsn")
}

/// The meta key of the primary timeline its log's records came from.
fn timeline_key(replica_id: &str) -> String {
    format!("replica:{replica_id}:timeline")
}

/// The positions a replica stores with each commit of its log, in the same transaction: what
/// is durable here, what of it is known durable on the primary, and the primary timeline it
/// came from.
fn position_meta(replica_id: &str, flush: u64, confirmed: u64, timeline: u64) -> Vec<(String, u64)> {
    vec![(flush_key(replica_id), flush), (confirmed_key(replica_id), confirmed), (timeline_key(replica_id), timeline)]
}

/// What a replica serves reads from: its table state and the lsn it has replayed to, changed
/// together so that a read's `replay_lsn` always covers the row it returns.
#[derive(Debug, Default)]
struct Replayed {
    rows: TableState,
    lsn: u64,
}

impl Replayed {
    /// Applies one record; its ops.
    fn apply(&mut self, record: &LogRecord) -> usize {
        self.rows.apply(&record.ops);
        self.lsn = record.end_lsn();
        record.ops.len()
    }
}

/// The actor owns it and hands a clone of the `Arc` only to its own store task, which applies
/// each record under the write lock (one record at a time, so a read waits for at most one
/// record's apply; never held across an await). Each incarnation and each reseed gets a fresh
/// one, so a task still running for an earlier one applies to a table nobody reads any more.
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
    /// The primary timeline its log's records came from ([`Reconcile`]).
    pub timeline: u64,
}

/// What a store task did: made `committed` durable (if it committed), applied `applied` (their
/// ops, up to `applied_to`), and the records left to apply.
struct TaskDone {
    committed: Option<u64>,
    applied_ops: usize,
    applied_to: Option<u64>,
    rest: Vec<LogRecord>,
}

/// The report a store task sends of the replay it did before its commit, from its own thread
/// (a `Recipient` may be used from any thread): the positions the actor had when the task
/// started, with the replay filled in. The primary takes a report that is not a restart as never
/// moving a position back, so a heartbeat sent meanwhile and this report may arrive in either
/// order.
struct EarlyReport {
    sink: ProgressSink,
    report: ReplicaReport,
}

impl EarlyReport {
    fn send(mut self, replay_lsn: u64) {
        self.report.progress.replay_lsn = replay_lsn;
        self.sink.do_send(self.report);
    }
}

/// A checkpoint that failed, and the shards it had taken (`None`: not known, so all of them),
/// which are out of date in the store again.
struct CheckpointFailed {
    error: StorageError,
    shards: Option<Vec<u16>>,
}

impl From<TaskFailed> for CheckpointFailed {
    fn from(e: TaskFailed) -> Self {
        CheckpointFailed { error: e.into(), shards: None }
    }
}

/// A message that waits for the store task or checkpoint in flight.
struct Deferred {
    reseed: Option<Reseed>,
    reconcile: Option<Reconcile>,
}

pub struct ReplicaActor {
    replica_id: String,
    incarnation: u64,
    store: Arc<Store>,
    /// Where its commits and applies go while no write waits for them, and its checkpoints.
    background: Arc<BackgroundPool>,
    /// A write may wait for what it was last shipped (`ShipWal::flush_awaited`): its store
    /// tasks then run on the normal blocking pool, not in the background.
    awaited: bool,
    primary: ProgressSink,
    heartbeat_interval: Duration,
    rows: ReplicaRows,
    /// Applied batches whose rows are not in the store yet.
    checkpoint: Checkpoint,
    write_lsn: u64,
    flush_lsn: u64,
    replay_lsn: u64,
    /// The primary timeline `pending`, `unapplied` and the log came from.
    timeline: u64,
    /// How far the primary of `timeline` has said its records are durable. Written by the actor
    /// ([`PrimaryDurable`]), read by its store task after its fsync, so a confirmation that
    /// arrives during the fsync is applied by the same task, without another round trip. Shared
    /// with nobody else; a fresh one per incarnation.
    primary_durable: Arc<AtomicU64>,
    /// Received, not yet durable.
    pending: Vec<LogRecord>,
    pending_bytes: usize,
    /// Durable here, not yet applied (not yet confirmed by the primary), in lsn order from
    /// `replay_lsn`. At most what the primary shipped ahead of its own fsync, plus what it
    /// shipped while it was going down.
    unapplied: Vec<LogRecord>,
    /// The gathered work (commit or apply) of a replica nobody waits for has been held for
    /// [`LAZY_FLUSH_DELAY`]: the next store task starts at once.
    work_due: bool,
    lazy_timer: Option<SpawnHandle>,
    /// A store task (commit, apply or truncation) is running; one at a time.
    task_in_flight: bool,
    /// A reseed or reconcile that arrived while a store task or a checkpoint was in flight: it
    /// runs once they are done, so a commit can neither land over the reseeded or truncated
    /// store nor move positions back after it, and a checkpoint's result is never taken for the
    /// reseeded table's.
    deferred: Deferred,
    loaded: bool,
    /// The next report says `restarted`: a reconcile is done, and the report waits for the
    /// apply of what it kept, so the primary sees it where it really stands.
    announce: bool,
    heartbeat: Option<SpawnHandle>,
    /// Set by an injected crash, so a restart by the supervisor keeps it down.
    crashed: bool,
}

impl ReplicaActor {
    pub fn new(
        replica_id: String,
        incarnation: u64,
        store: Arc<Store>,
        background: Arc<BackgroundPool>,
        primary: ProgressSink,
        heartbeat_interval: Duration,
    ) -> Self {
        ReplicaActor {
            replica_id,
            incarnation,
            store,
            background,
            awaited: false,
            primary,
            heartbeat_interval,
            rows: ReplicaRows::default(),
            checkpoint: Checkpoint::default(),
            write_lsn: 0,
            flush_lsn: 0,
            replay_lsn: 0,
            timeline: 0,
            primary_durable: Arc::new(AtomicU64::new(0)),
            pending: Vec::new(),
            pending_bytes: 0,
            unapplied: Vec::new(),
            work_due: false,
            lazy_timer: None,
            task_in_flight: false,
            deferred: Deferred { reseed: None, reconcile: None },
            loaded: false,
            announce: false,
            heartbeat: None,
            crashed: false,
        }
    }

    pub fn start_supervised(self) -> Addr<ReplicaActor> {
        actix::Supervisor::start(|_| self)
    }

    fn report(&mut self, restarted: bool) {
        let restarted = restarted || std::mem::take(&mut self.announce);
        self.primary.do_send(self.progress(restarted));
    }

    /// Where it stands now, as a report.
    fn progress(&self, restarted: bool) -> ReplicaReport {
        ReplicaReport {
            progress: ReplicaProgress {
                replica_id: self.replica_id.clone(),
                write_lsn: self.write_lsn,
                flush_lsn: self.flush_lsn,
                replay_lsn: self.replay_lsn,
            },
            restarted,
            incarnation: self.incarnation,
            timeline: self.timeline,
        }
    }

    /// Loads rows up to the confirmed position, the unconfirmed tail of the log after it, and
    /// the positions (blocking, so in `spawn_blocking`), holding messages back until done.
    fn load(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let id = self.replica_id.clone();
        let load = actix_rt::task::spawn_blocking(move || {
            let flush = store.get_log_meta(&id, &flush_key(&id))?.unwrap_or(0);
            let confirmed = store.get_log_meta(&id, &confirmed_key(&id))?.unwrap_or(flush).min(flush);
            let timeline = store.get_log_meta(&id, &timeline_key(&id))?.unwrap_or(0);
            let loaded = load_table(&store, &id, confirmed)?;
            // Its checkpoints may have stored more than it had stored as confirmed: that was
            // applied, so confirmed too.
            let confirmed = loaded.lsn;
            if confirmed > flush {
                return Err(StorageError::Backend(format!(
                    "{id}'s stored rows reflect lsn {confirmed}, past its flushed position {flush}"
                )));
            }
            let mut tail: Vec<LogRecord> = Vec::new();
            read_contiguous(&store, &id, confirmed, flush, "as its unconfirmed tail", |r| tail.push(r))?;
            Ok::<_, StorageError>((flush, confirmed, timeline, loaded, tail))
        });
        ctx.wait(load.into_actor(self).map(|res, act, ctx| match res {
            Ok(Ok((flush, confirmed, timeline, loaded, tail))) => {
                act.rows = Arc::new(RwLock::new(Replayed { rows: loaded.table, lsn: confirmed }));
                act.checkpoint.reset(loaded.shard_lsns, loaded.epoch);
                act.write_lsn = flush;
                act.flush_lsn = flush;
                act.replay_lsn = confirmed;
                act.timeline = timeline;
                act.primary_durable = Arc::new(AtomicU64::new(confirmed));
                act.unapplied = tail;
                act.loaded = true;
                act.report(true);
            }
            Ok(Err(e)) => act.load_failed(e.to_string(), ctx),
            Err(e) => act.load_failed(e.to_string(), ctx),
        }));
    }

    /// The supervisor restarts it to load again, after a pause: a store that cannot be read
    /// now would otherwise be retried in a hot loop. The primary meanwhile hears nothing and
    /// shows it `disconnected`.
    fn load_failed(&mut self, e: String, ctx: &mut Context<Self>) {
        tracing::error!(replica_id = %self.replica_id, error = %e, "replica cannot load its state; retrying in {LOAD_RETRY:?}");
        ctx.run_later(LOAD_RETRY, |_, ctx| ctx.stop());
    }

    /// Whether what the primary of `timeline` sends may be taken: it is this replica's timeline,
    /// or a newer one and the replica holds nothing past what it applied (all of which some
    /// primary made durable, and durable records carry over to every later timeline), in which
    /// case it adopts it without a [`Reconcile`].
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

    /// Whether some durable record waits only for its apply: the primary confirmed it.
    fn can_apply(&self) -> bool {
        self.confirmed_unapplied() > 0
    }

    /// How many of `unapplied` are durable here and confirmed by the primary.
    fn confirmed_unapplied(&self) -> usize {
        let confirmed = self.primary_durable.load(Ordering::Acquire).min(self.flush_lsn);
        self.unapplied.partition_point(|r| r.end_lsn() <= confirmed)
    }

    /// Starts the next store task, if none runs and there is work. When a write may wait for
    /// it (`awaited`): at once, a commit of what was received, whose task first applies (and
    /// reports) what was confirmed, or an apply alone if nothing was received. Otherwise the
    /// work is gathered for up to [`LAZY_FLUSH_DELAY`] (or [`LAZY_FLUSH_BYTES`] received) and
    /// done in one such task: a task per group commit of the primary cost the machine the
    /// primary's cores (the task, its wake-ups and its report) for work nobody waits for.
    fn next_task(&mut self, ctx: &mut Context<Self>) {
        if self.task_in_flight {
            return;
        }
        if self.apply_here() && self.checkpoint.due() {
            self.write_checkpoint(ctx);
        }
        let apply = self.can_apply();
        if self.pending.is_empty() && !apply {
            return;
        }
        // An announcement waits for nothing: the primary streams to the replica only after it.
        if !(self.awaited || self.announce || self.work_due || self.pending_bytes >= LAZY_FLUSH_BYTES) {
            if self.lazy_timer.is_none() {
                self.lazy_timer = Some(ctx.run_later(LAZY_FLUSH_DELAY, |act, ctx| {
                    act.lazy_timer = None;
                    act.work_due = true;
                    act.next_task(ctx);
                }));
            }
            return;
        }
        if apply && self.pending.is_empty() {
            self.run_task(None, ctx);
        } else {
            self.commit(ctx);
        }
    }

    /// Applies on the actor what the primary has confirmed, and reports, when a write may be
    /// waiting for it and it is small ([`APPLY_HERE_OPS`]); says whether it did. A store task
    /// for it would cost that write a blocking thread's wake-up and a report from another
    /// thread (the primary's arbiter woken again) for a few hash-map inserts: in `sync` the
    /// apply most often comes due after this replica's commit is done, as the primary's commit
    /// ends, so it was a second task in a row on the write's path. Never while a store task runs
    /// (records are applied in lsn order, and the task holds `unapplied` meanwhile), nor while a
    /// checkpoint holds the table's lock (`try_write`: the arbiter never waits for it), nor for
    /// an announcement, whose report the task sends.
    fn apply_here(&mut self) -> bool {
        if !self.awaited || self.task_in_flight || self.announce {
            return false;
        }
        let due = self.confirmed_unapplied();
        if due == 0 || self.unapplied[..due].iter().map(|r| r.ops.len()).sum::<usize>() > APPLY_HERE_OPS {
            return false;
        }
        let Some(mut replayed) = self.rows.try_write() else { return false };
        let ops: usize = self.unapplied.drain(..due).map(|r| replayed.apply(&r)).sum();
        self.replay_lsn = replayed.lsn;
        drop(replayed);
        self.checkpoint.applied(ops);
        self.report(false);
        true
    }

    /// Makes everything received durable, in one transaction (the records, the flushed and
    /// confirmed positions and the timeline), then applies what the primary has confirmed
    /// (both on the blocking pool).
    fn commit(&mut self, ctx: &mut Context<Self>) {
        if self.task_in_flight || self.pending.is_empty() {
            return;
        }
        self.pending_bytes = 0;
        let records = std::mem::take(&mut self.pending);
        let end = records.last().map(LogRecord::end_lsn).unwrap_or(self.flush_lsn);
        let confirmed = self.primary_durable.load(Ordering::Acquire).min(end).max(self.replay_lsn);
        let commit = LogCommit {
            records: records.iter().map(|r| (r.lsn, r.bytes.clone())).collect(),
            meta: position_meta(&self.replica_id, end, confirmed, self.timeline),
            ..Default::default()
        };
        self.unapplied.extend(records);
        self.run_task(Some((commit, end)), ctx);
    }

    /// Runs a store task: the apply of what of `unapplied` the primary has confirmed already,
    /// `commit` (if any), then the apply of every record the primary has confirmed by the time
    /// the commit is durable.
    fn run_task(&mut self, commit: Option<(LogCommit, u64)>, ctx: &mut Context<Self>) {
        self.task_in_flight = true;
        self.work_due = false;
        if let Some(timer) = self.lazy_timer.take() {
            ctx.cancel_future(timer);
        }
        let store = self.store.clone();
        let id = self.replica_id.clone();
        let rows = self.rows.clone();
        let durable_there = self.primary_durable.clone();
        let mut records = std::mem::take(&mut self.unapplied);
        let flushed = self.flush_lsn;
        let committed = commit.as_ref().map(|(_, end)| *end);
        // A write may wait for the replay of what is confirmed already: it is applied before the
        // commit and reported from the task at once, rather than in a store task of its own
        // (two tasks per group commit, each with its wake-ups, cost the primary's arbiter more
        // than the work). The actor's own report follows at the end.
        let early = (commit.is_some() && self.awaited && !self.announce)
            .then(|| EarlyReport { sink: self.primary.clone(), report: self.progress(false) });
        // An announcement's task at normal priority too: heartbeats wait for it, and on the
        // idle-priority threads a busy machine could hold it (and them) back for seconds.
        let work = self.background.run_at(Priority::waited_for(self.awaited || self.announce), move || {
            let apply = |records: &[LogRecord]| records.iter().map(|r| rows.write().apply(r)).sum::<usize>();
            // Durable here and confirmed there before this commit: applied first.
            let confirmed = durable_there.load(Ordering::Acquire).min(flushed);
            let mut rest = records.split_off(records.partition_point(|r| r.end_lsn() <= confirmed));
            let mut applied_ops = apply(&records);
            let mut applied_to = records.last().map(LogRecord::end_lsn);
            if let (Some(early), Some(replay_lsn)) = (early, applied_to) {
                early.send(replay_lsn);
            }
            if let Some((commit, _)) = commit {
                store.commit_log(&id, commit)?;
            }
            let durable_here = committed.unwrap_or(flushed);
            let confirmed = durable_there.load(Ordering::Acquire).min(durable_here);
            let later = rest.split_off(rest.partition_point(|r| r.end_lsn() <= confirmed));
            applied_ops += apply(&rest);
            applied_to = rest.last().map(LogRecord::end_lsn).or(applied_to);
            Ok::<_, StorageError>(TaskDone { committed, applied_ops, applied_to, rest: later })
        });
        ctx.spawn(work.into_actor(self).map(move |res, act, ctx| {
            act.task_in_flight = false;
            let done = match res {
                Ok(done) => done,
                Err(e) => return act.commit_failed(e.to_string(), ctx),
            };
            if let Some(end) = done.committed {
                act.flush_lsn = end;
            }
            if let Some(lsn) = done.applied_to {
                act.replay_lsn = lsn;
            }
            act.checkpoint.applied(done.applied_ops);
            // Anything that arrived meanwhile went to `pending`; `unapplied` is empty until now.
            act.unapplied = done.rest;
            act.report(false);
            if act.run_deferred(ctx) {
                return;
            }
            if act.checkpoint.due() {
                act.write_checkpoint(ctx);
            }
            act.next_task(ctx);
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
        // The lock is taken per shard (a shard serialized under it), never across the disk: the
        // store task applying records waits for one shard at most. Nobody waits for the
        // checkpoint itself, but while a write may wait for this replica's applies (`awaited`)
        // it runs at normal priority: an idle-priority thread holding the table's lock would be
        // the last to get a core back, and the apply (and the write) would wait for it.
        let task = self.background.run_at(Priority::waited_for(self.awaited), move || {
            let (picked, lsn) = {
                let replayed = rows.read();
                (replayed.rows.pick(&plan), replayed.lsn)
            };
            // Serialized under the lock, a shard at a time: copying the rows' pointers instead
            // wrote to every row's shared reference counts, pulling the lines the primary's
            // table uses onto this core and back (a fifth of the primary's speed, measured).
            let mut images = Vec::with_capacity(picked.len());
            for &shard in &picked {
                match rows.write().rows.take_encoded(shard) {
                    Ok(image) => images.push(image),
                    Err(error) => {
                        return Err(CheckpointFailed { error, shards: Some(images.iter().map(|i: &ShardImage| i.shard).collect()) })
                    }
                }
            }
            let images = rows.read().rows.finish(&plan, lsn, images);
            let Some(images) = images else { return Ok(None) };
            let (lsn, shards) = (images.lsn, stored_shards(&images));
            match store.write_row_images(&id, images) {
                Ok(true) => Ok(Some((lsn, shards))),
                // A reseed came since: those rows belong to the table it replaced.
                Ok(false) => Ok(None),
                Err(error) => Err(CheckpointFailed { error, shards: Some(shards) }),
            }
        });
        ctx.spawn(task.into_actor(self).map(move |res, act, ctx| {
            match res {
                Ok(written) => act.checkpoint.finished(written.as_ref().map(|(lsn, shards)| (*lsn, &shards[..]))),
                Err(CheckpointFailed { error, shards }) => {
                    // Nothing is lost: the log keeps what the stored shards lack, and a start
                    // replays it; the shards are written again by a later checkpoint.
                    tracing::error!(replica_id = %act.replica_id, %error, "replica checkpoint failed");
                    let mut rows = captured_from.write();
                    match shards {
                        Some(shards) => rows.rows.mark_dirty(shards.into_iter().map(usize::from)),
                        None => rows.rows.mark_dirty(0..SHARDS),
                    }
                    drop(rows);
                    act.checkpoint.finished(None);
                }
            }
            act.run_deferred(ctx);
        }));
    }

    /// Runs the reseed or reconcile that waited for a store task or checkpoint, if one waited
    /// and none is in flight any more; says whether it did.
    fn run_deferred(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.task_in_flight || self.checkpoint.in_flight() {
            return false;
        }
        if let Some(reseed) = self.deferred.reseed.take() {
            self.reseed(reseed, ctx);
            return true;
        }
        if let Some(reconcile) = self.deferred.reconcile.take() {
            self.reconcile(reconcile, ctx);
            return true;
        }
        false
    }

    /// Drops what it holds from `msg.keep_until` on (received or durable), adopts the new
    /// timeline and reports as restarted (no store task or checkpoint in flight).
    fn reconcile(&mut self, msg: Reconcile, ctx: &mut Context<Self>) {
        if msg.from_timeline != self.timeline {
            // Reconciled already (the primary sent one per report of the old timeline). An
            // announcement still waiting for its apply says where it stands once it can.
            if !self.announce {
                self.report(true);
            }
            return;
        }
        let keep = msg.keep_until.max(self.replay_lsn);
        if keep > msg.keep_until {
            // Never below what it applied: that was confirmed durable by a primary, and every
            // later timeline starts after it.
            tracing::warn!(replica_id = %self.replica_id, keep_until = msg.keep_until, replay_lsn = self.replay_lsn, "reconcile below the applied position; keeping that");
        }
        self.pending.retain(|r| r.end_lsn() <= keep);
        self.pending_bytes = self.pending.iter().map(|r| r.bytes.len()).sum();
        self.unapplied.retain(|r| r.end_lsn() <= keep);
        let dropped = self.write_lsn.saturating_sub(keep);
        self.write_lsn = self.write_lsn.min(keep);
        self.timeline = msg.timeline;
        // Everything kept is durable on the primary: the timeline that shipped it made it so.
        self.primary_durable = Arc::new(AtomicU64::new(keep));
        if self.flush_lsn <= keep {
            if dropped > 0 {
                tracing::info!(replica_id = %self.replica_id, keep, dropped, "replica dropped received records of an earlier primary timeline");
            }
            self.announce_after_apply(ctx);
            return;
        }
        tracing::warn!(replica_id = %self.replica_id, keep, flush_lsn = self.flush_lsn, "replica drops durable records its earlier primary never made durable");
        let commit = LogCommit {
            meta: position_meta(&self.replica_id, keep, keep, msg.timeline),
            truncate_from: Some(keep),
            ..Default::default()
        };
        // An ordinary store task: its commit moves the flushed position back to `keep`, it
        // applies what is kept, and its report is the announcement.
        self.announce = true;
        self.run_task(Some((commit, keep)), ctx);
    }

    /// Reports as restarted (no store task in flight): after applying what is confirmed, if
    /// anything is (the apply's report carries it), otherwise now.
    fn announce_after_apply(&mut self, ctx: &mut Context<Self>) {
        self.announce = true;
        if !self.can_apply() {
            self.report(true);
        }
        self.next_task(ctx);
    }
}

impl ReplicaActor {
    fn start_heartbeat(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.heartbeat.take() {
            ctx.cancel_future(h);
        }
        self.heartbeat = Some(ctx.run_interval(self.heartbeat_interval, |act, _| {
            // Not while an announcement waits for its apply (`announce_after_apply`, a
            // reconcile's task): the heartbeat would send it early, before the kept tail is
            // applied, and the primary would judge the restarted replica behind by that tail.
            if act.loaded && !act.announce {
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
        self.unapplied.clear();
        self.primary_durable = Arc::new(AtomicU64::new(0));
        self.work_due = false;
        self.lazy_timer = None;
        self.task_in_flight = false;
        self.deferred = Deferred { reseed: None, reconcile: None };
        self.loaded = false;
        self.announce = false;
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
        if !self.adopt(msg.timeline) {
            if msg.timeline > self.timeline {
                // A newer primary that has not reconciled this replica's tail yet: say where it
                // stands, the primary reconciles first. (An older timeline's is stale: dropped.)
                self.report(true);
            }
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
        self.primary_durable.fetch_max(msg.durable_lsn, Ordering::AcqRel);
        if accepted {
            self.awaited = msg.flush_awaited;
            // No report for the receipt alone: the write position goes with the commit's report
            // (at once when a write waits, within LAZY_FLUSH_DELAY otherwise) and every
            // heartbeat. A report per shipment doubled the primary's work per group commit.
        }
        self.next_task(ctx);
    }
}

impl Handler<PrimaryDurable> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, msg: PrimaryDurable, ctx: &mut Self::Context) {
        if self.crashed || !self.loaded || !self.adopt(msg.timeline) {
            return;
        }
        self.primary_durable.fetch_max(msg.lsn, Ordering::AcqRel);
        self.next_task(ctx);
    }
}

impl Handler<Reconcile> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, msg: Reconcile, ctx: &mut Self::Context) {
        if self.crashed || !self.loaded {
            return;
        }
        if self.task_in_flight || self.checkpoint.in_flight() {
            self.deferred.reconcile = Some(msg);
            return;
        }
        self.reconcile(msg, ctx);
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
        // The table's own lsn, not `replay_lsn`: the store task may have applied more records
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
        if self.task_in_flight || self.checkpoint.in_flight() {
            self.deferred.reseed = Some(msg);
            return;
        }
        self.reseed(msg, ctx);
    }
}

impl ReplicaActor {
    /// Replaces the stored and in-memory state with `msg`'s rows at its lsn (no store task in
    /// flight).
    fn reseed(&mut self, msg: Reseed, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let id = self.replica_id.clone();
        let lsn = msg.lsn;
        let timeline = msg.timeline;
        let count = msg.rows.len();
        let write = actix_rt::task::spawn_blocking(move || {
            let table = TableState::from_rows(&msg.rows);
            let epoch = store.replace_rows(&id, table.rows(), lsn, &position_meta(&id, lsn, lsn, timeline))?;
            Ok::<_, StorageError>((table, epoch))
        });
        // ctx.wait: nothing shipped may be applied on top of the old state meanwhile.
        ctx.wait(write.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Ok((table, epoch))) => {
                act.rows = Arc::new(RwLock::new(Replayed { rows: table, lsn }));
                act.checkpoint.reset(vec![lsn; SHARDS], epoch);
                act.pending.clear();
                act.pending_bytes = 0;
                act.unapplied.clear();
                act.timeline = timeline;
                act.primary_durable = Arc::new(AtomicU64::new(lsn));
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
