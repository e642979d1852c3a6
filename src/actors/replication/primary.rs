//! The replication primary: it takes batches of operations, appends them to its write-ahead log
//! (group commit: every batch that arrives while one fsync is in flight shares the next one),
//! applies them to its table state, ships the records to its replicas, and answers each batch
//! once the replication mode is satisfied. It starts one supervised [`ReplicaActor`] per replica
//! and measures each from its reports: positions, lag in bytes and seconds, and PostgreSQL-style
//! write/flush/replay lag.
//!
//! A group commit's records are shipped as its fsync starts, so the replicas' fsyncs run beside
//! the primary's; what is durable here is confirmed to them afterwards (on the next shipment, or
//! [`PrimaryDurable`]), and only then do they apply it. Each start of the primary is a new
//! timeline, stored with where the previous one ended: a replica whose log comes from an earlier
//! timeline may hold records that one never made durable, and is sent [`Reconcile`] (drop your
//! log past that end) before anything new is shipped to it.
//!
//! Every state change is published: `replica_added`, `replica_removed`, `replica_status_change`,
//! `replication_lag_alert` (edge-triggered with hysteresis), `wal_position_update` (sampled, and
//! only built when someone listens), `replication_error`.
//!
//! Semi-sync policy on timeout: the write is refused, never degraded. The caller gets 504 saying
//! the batch is durable on the primary and which replicas did not confirm it in time; the next
//! write waits again. (MySQL degrades to async instead; we prefer that a client asking for
//! `semi_sync` never gets an `async` answer without knowing.)

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use hashbrown::HashMap;
use tokio::sync::oneshot;

use crate::actors::registry::{EventPublisher, InterestTable};
use crate::exec::{BackgroundPool, Priority};
use crate::actors::replication::replica::{CrashReplica, ReplicaActor, ReplicaReport};
use crate::storage::table::{load_table, read_records, stored_shards, Checkpoint, TableState};
use crate::model::{lsn_text, json_len, LogRecord, Op, OpKind, RowKey, RowRef, WalRecord};
use crate::config::ReplicationConfig;
use crate::model::{ConflictStrategy, ReplicaMode, ReplicaStatus, ReplicationMode, SlotType};
use crate::messages::events::*;
use crate::messages::replication::*;
use crate::storage::{LogCommit, RecordTable, Store};

// This domain's record tables (each maps an id to the JSON of its durable record).
/// Replicas: replica id -> mode.
pub const REPLICAS: RecordTable = RecordTable::named("replicas");
/// Settings changed at run time: name -> settings.
pub const SETTINGS: RecordTable = RecordTable::named("settings");
/// Replication slots: name -> type and positions.
pub const SLOTS: RecordTable = RecordTable::named("slots");
/// Snapshots of the primary's tables: id -> lsn and rows.
pub const SNAPSHOTS: RecordTable = RecordTable::named("snapshots");

/// Most records kept in memory for shipping, in bytes; older ones are read back from the store.
const RECENT_BYTES: usize = 16 << 20;
/// Most bytes shipped to one replica and not yet reported durable there: the flow-control
/// window, which bounds what a replica holds in memory (received, not yet flushed) however slow
/// its storage is; past it, the replica catches up from what the primary keeps.
const SHIP_WINDOW: u64 = 4 << 20;
/// Lag samples kept per replica (one per heartbeat interval at most).
const LAG_SAMPLES: usize = 3600;
/// How often what was applied in memory since the last checkpoint is written to the rows table
/// (sooner when [`crate::actors::replication::table::CHECKPOINT_OPS`] ops are pending).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// The sliding window throughput is measured over.
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(10);
/// Most operations in one batch.
pub const MAX_OPS: usize = 10_000;
/// Most bytes of one value, serialized.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;

/// The meta key of the primary's durable position.
fn primary_flush_key(primary: &str) -> String {
    format!("primary:{primary}:flush_lsn")
}

/// The meta key of the primary's current timeline: one more at every start (see [`Reconcile`]).
fn timeline_key(primary: &str) -> String {
    format!("primary:{primary}:timeline")
}

/// The meta key of where timeline `timeline` ended: the durable end of the log when the next
/// one began.
fn timeline_end_key(primary: &str, timeline: u64) -> String {
    format!("primary:{primary}:timeline:{timeline}:end")
}

/// How many earlier timelines' ends a start reads back. A replica whose log comes from an
/// older one (it was away for that many restarts of the primary) keeps only what it applied.
const TIMELINES_KEPT: u64 = 64;

/// The replication settings that can change at run time.
#[derive(Debug, Clone)]
pub struct ReplicationSettings {
    pub primary: String,
    pub mode: ReplicationMode,
    pub sync_quorum: usize,
    pub sync_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub lag_alert_bytes: u64,
    pub wal_position_interval: Duration,
    pub conflict_strategy: ConflictStrategy,
    pub site_priority: Vec<String>,
}

impl ReplicationSettings {
    pub fn from_config(c: &ReplicationConfig, wal_position_interval_ms: u64) -> Self {
        ReplicationSettings {
            primary: c.primary.clone(),
            mode: c.mode,
            sync_quorum: c.sync_quorum,
            sync_timeout: Duration::from_millis(c.sync_timeout_ms),
            heartbeat_interval: Duration::from_millis(c.heartbeat_interval_ms),
            heartbeat_timeout: Duration::from_millis(c.heartbeat_timeout_ms),
            lag_alert_bytes: c.lag_alert_bytes,
            wal_position_interval: Duration::from_millis(wal_position_interval_ms),
            conflict_strategy: c.conflict_strategy,
            site_priority: Vec::new(),
        }
    }

    pub fn view(&self) -> ReplicationSettingsView {
        ReplicationSettingsView {
            mode: self.mode,
            sync_quorum: self.sync_quorum,
            sync_timeout_ms: self.sync_timeout.as_millis() as u64,
            heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u64,
            heartbeat_timeout_ms: self.heartbeat_timeout.as_millis() as u64,
            conflict_strategy: self.conflict_strategy,
            site_priority: self.site_priority.clone(),
        }
    }

    /// Takes the settings changed at run time (they win over the config file, as PostgreSQL's
    /// ALTER SYSTEM does over postgresql.conf).
    fn apply(&mut self, v: &ReplicationSettingsView) {
        self.mode = v.mode;
        self.sync_quorum = v.sync_quorum;
        self.sync_timeout = Duration::from_millis(v.sync_timeout_ms);
        self.heartbeat_interval = Duration::from_millis(v.heartbeat_interval_ms);
        self.heartbeat_timeout = Duration::from_millis(v.heartbeat_timeout_ms);
        self.conflict_strategy = v.conflict_strategy;
        self.site_priority = v.site_priority.clone();
    }
}

/// The settings record's name in [`SETTINGS`].
const SETTINGS_RECORD: &str = "replication";

fn mode_str(m: ReplicaMode) -> &'static str {
    match m {
        ReplicaMode::Sync => "sync",
        ReplicaMode::Async => "async",
    }
}

/// Whether a write in `mode` may wait for the flush of a replica in `replica_mode`: the replicas
/// [`PrimaryActor::acks`] counts. Such a replica makes what it receives durable at once; others
/// may gather it for a moment (see [`ReplicaActor`]).
fn flush_awaited(mode: ReplicationMode, replica_mode: ReplicaMode) -> bool {
    match mode {
        ReplicationMode::Async => false,
        ReplicationMode::Sync => replica_mode == ReplicaMode::Sync,
        ReplicationMode::SemiSync => true,
    }
}

/// A replica as the primary knows it.
struct ReplicaEntry {
    mode: ReplicaMode,
    /// `None` while crashed: the primary holds the only address, so letting go of it keeps the
    /// supervisor from restarting the actor.
    addr: Option<Addr<ReplicaActor>>,
    incarnation: u64,
    status: ReplicaStatus,
    reason: String,
    paused: bool,
    /// Cut off by an injected partition ([`PartitionReplica`]).
    partitioned: bool,
    /// Got a report from the current actor (since the last partition).
    connected: bool,
    /// The timeline its last report named: records are shipped only once it is the primary's
    /// own (after a [`Reconcile`]).
    timeline: u64,
    /// The durable position it was last told (by a shipment or a [`PrimaryDurable`]).
    confirmed_lsn: u64,
    write_lsn: u64,
    flush_lsn: u64,
    replay_lsn: u64,
    /// Shipped up to here.
    shipped_lsn: u64,
    fetch_in_flight: bool,
    last_heard: Option<Instant>,
    write_lag: Option<Duration>,
    flush_lag: Option<Duration>,
    replay_lag: Option<Duration>,
    /// Wall-clock ms when the oldest record it has not replayed was committed.
    behind_since_ms: Option<i64>,
    caught_up_once: bool,
    catchup_started: Option<Instant>,
    lag_alert_active: bool,
    last_position_event: Option<(Instant, u64, u64, u64)>,
    /// Being reseeded to this lsn: nothing is shipped until it reports having it.
    seeding: Option<u64>,
    /// When a crash was injected (while it waits for a restart).
    crashed_at_ms: Option<i64>,
    /// Real lag measurements, oldest first, bounded by [`LAG_SAMPLES`].
    samples: VecDeque<LagSample>,
    last_sample_at: Option<Instant>,
    /// (when, bytes replayed since the previous report), over [`THROUGHPUT_WINDOW`].
    replayed: VecDeque<(Instant, u64)>,
}

impl ReplicaEntry {
    fn new(mode: ReplicaMode) -> Self {
        ReplicaEntry {
            mode,
            addr: None,
            incarnation: 0,
            status: ReplicaStatus::Starting,
            reason: "starting".into(),
            paused: false,
            partitioned: false,
            connected: false,
            timeline: 0,
            confirmed_lsn: 0,
            write_lsn: 0,
            flush_lsn: 0,
            replay_lsn: 0,
            shipped_lsn: 0,
            fetch_in_flight: false,
            last_heard: None,
            write_lag: None,
            flush_lag: None,
            replay_lag: None,
            behind_since_ms: None,
            caught_up_once: false,
            catchup_started: None,
            lag_alert_active: false,
            last_position_event: None,
            seeding: None,
            crashed_at_ms: None,
            samples: VecDeque::new(),
            last_sample_at: None,
            replayed: VecDeque::new(),
        }
    }
}

/// A record of the log's tail kept in memory, and when it became durable here (`None` while its
/// commit runs: it was shipped as that commit started), for write/flush/replay lag.
struct RecentRecord {
    record: LogRecord,
    durable_at: Option<Instant>,
}

/// A batch accepted, waiting for its fsync.
struct Accepted {
    lsn: u64,
    bytes: Arc<[u8]>,
    committed_at_ms: i64,
    ops: Arc<Vec<Op>>,
    reply: oneshot::Sender<Result<ReplicateAck, ReplicationError>>,
}

/// A durable batch waiting for replicas.
struct Waiter {
    end_lsn: u64,
    /// When it is answered 504 if the mode is still not satisfied.
    deadline: Instant,
    reply: oneshot::Sender<Result<ReplicateAck, ReplicationError>>,
}

/// How often waiting batches are checked against their deadline. One sweep for all of them:
/// a timer per batch would leave thousands of live timers that the actor polls on every wake.
const DEADLINE_SWEEP: Duration = Duration::from_millis(10);

/// The durable record of a slot.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct SlotRecord {
    slot_type: SlotType,
    restart_lsn: u64,
    confirmed_flush_lsn: u64,
}

/// Most slots: each one holds WAL back.
pub const MAX_SLOTS: usize = 64;
/// How often WAL nobody needs is dropped on its own (`/wal/truncate` does it at once).
const AUTO_TRUNCATE_EVERY: Duration = Duration::from_secs(10);

/// The durable record of a replica's membership.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct ReplicaRecord {
    mode: ReplicaMode,
}

pub struct PrimaryActor {
    /// Where replicas run the storage work nobody waits for (see [`BackgroundPool`]).
    background: Arc<BackgroundPool>,
    settings: ReplicationSettings,
    store: Arc<Store>,
    events: EventPublisher,
    interest: Arc<InterestTable>,
    /// The committed rows: every durable batch applied.
    rows: TableState,
    /// Rows that accepted, not yet durable batches change: the lsn of the last batch that changed
    /// each, and whether the row exists after it. Later batches are checked against it.
    overlay: HashMap<RowKey, (u64, bool)>,
    /// Durable batches whose rows are not in the store yet.
    checkpoint: Checkpoint,
    /// `/wal/truncate` callers waiting for the checkpoint or truncation in flight to end.
    truncate_waiting: Vec<oneshot::Sender<Result<WalTruncated, ReplicationError>>>,
    next_lsn: u64,
    flush_lsn: u64,
    /// The end of what can be shipped: the durable log and the group commit in flight, whose
    /// records go out as its fsync starts.
    shipped_end: u64,
    /// This start's timeline, and where earlier ones ended (see [`Reconcile`]).
    timeline: u64,
    timeline_ends: BTreeMap<u64, u64>,
    pending: Vec<Accepted>,
    commit_in_flight: bool,
    /// Durable batches waiting for replicas, in lsn order (commits are).
    waiters: VecDeque<Waiter>,
    /// The tail of the log, for shipping without reading the store.
    recent: VecDeque<RecentRecord>,
    recent_bytes: usize,
    replicas: BTreeMap<String, ReplicaEntry>,
    next_incarnation: u64,
    crashed: bool,
    bootstrap_replicas: Vec<(String, ReplicaMode)>,
    heartbeat_check: Option<SpawnHandle>,
    /// (when, operations, WAL bytes) of each group commit, over [`THROUGHPUT_WINDOW`].
    commits: VecDeque<(Instant, u64, u64)>,
    slots: BTreeMap<String, SlotRecord>,
    /// A checkpoint or a truncation is running.
    maintenance_in_flight: bool,
    /// Start of the oldest WAL record kept: a replica needing older WAL must be reseeded.
    oldest_retained: u64,
    /// The newest snapshot (id, lsn): WAL since it is kept, so it can always seed a replica.
    newest_snapshot: Option<(String, u64)>,
    /// When a crash of the primary was injected.
    crashed_at_ms: Option<i64>,
}

impl PrimaryActor {
    pub fn new(
        settings: ReplicationSettings,
        bootstrap_replicas: Vec<(String, ReplicaMode)>,
        store: Arc<Store>,
        events: EventPublisher,
        interest: Arc<InterestTable>,
        background: Arc<BackgroundPool>,
    ) -> Self {
        PrimaryActor {
            background,
            settings,
            store,
            events,
            interest,
            rows: TableState::default(),
            overlay: HashMap::new(),
            checkpoint: Checkpoint::default(),
            truncate_waiting: Vec::new(),
            next_lsn: 0,
            flush_lsn: 0,
            shipped_end: 0,
            timeline: 0,
            timeline_ends: BTreeMap::new(),
            pending: Vec::new(),
            commit_in_flight: false,
            waiters: VecDeque::new(),
            recent: VecDeque::new(),
            recent_bytes: 0,
            replicas: BTreeMap::new(),
            next_incarnation: 0,
            crashed: false,
            bootstrap_replicas,
            heartbeat_check: None,
            commits: VecDeque::new(),
            slots: BTreeMap::new(),
            maintenance_in_flight: false,
            oldest_retained: 0,
            newest_snapshot: None,
            crashed_at_ms: None,
        }
    }

    fn publish(&self, severity: Severity, source: String, payload: EventPayload) {
        self.events.publish(Event::now(severity, source, payload));
    }

    // ---- loading and replicas ----------------------------------------------------------------

    /// Loads rows, the durable position and the replica list (bootstrapping it from the config on
    /// a fresh store), holding messages back until done.
    fn load(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let primary = self.settings.primary.clone();
        let bootstrap = self.bootstrap_replicas.clone();
        let load = actix_rt::task::spawn_blocking(move || -> Result<_, crate::storage::StorageError> {
            let bounds = store.log_bounds(&primary)?;
            let end = match bounds {
                Some((_, last, len)) => last + len as u64,
                None => 0,
            };
            let flush = store.get_log_meta(&primary, &primary_flush_key(&primary))?.unwrap_or(0).max(end);
            // A new timeline, durable before anything is shipped on it; the one before ends here.
            let previous = store.get_log_meta(&primary, &timeline_key(&primary))?.unwrap_or(0);
            let timeline = previous + 1;
            let mut timeline_ends = BTreeMap::new();
            for t in previous.saturating_sub(TIMELINES_KEPT - 1)..previous {
                if let Some(end) = store.get_log_meta(&primary, &timeline_end_key(&primary, t))? {
                    timeline_ends.insert(t, end);
                }
            }
            timeline_ends.insert(previous, flush);
            store.commit_log(
                &primary,
                LogCommit {
                    meta: vec![(timeline_end_key(&primary, previous), flush), (timeline_key(&primary), timeline)],
                    ..Default::default()
                },
            )?;
            let rows = load_table(&store, &primary, flush)?;
            let oldest = bounds.map(|b| b.0).unwrap_or(flush);
            let newest_snapshot = match (store.get_meta("snapshot_seq")?, store.get_meta("newest_snapshot_lsn")?) {
                (Some(n), Some(lsn)) => Some((format!("snap_{n:06}"), lsn)),
                _ => None,
            };
            let mut replicas = Vec::new();
            let mut fresh = Vec::new();
            if store.get_meta("replicas_bootstrapped")?.is_some() {
                for (id, bytes) in store.list_records(REPLICAS)? {
                    if let Ok(r) = serde_json::from_slice::<ReplicaRecord>(&bytes) {
                        replicas.push((id, r.mode));
                    }
                }
            } else {
                for (id, mode) in bootstrap {
                    let bytes = serde_json::to_vec(&ReplicaRecord { mode })
                        .map_err(|e| crate::storage::StorageError::Backend(e.to_string()))?;
                    store.put_record(REPLICAS, &id, &bytes)?;
                    fresh.push(id.clone());
                    replicas.push((id, mode));
                }
                store.put_meta("replicas_bootstrapped", 1)?;
            }
            let settings = match store.get_record(SETTINGS, SETTINGS_RECORD)? {
                Some(bytes) => serde_json::from_slice::<ReplicationSettingsView>(&bytes).ok(),
                None => None,
            };
            let mut slots = BTreeMap::new();
            for (name, bytes) in store.list_records(SLOTS)? {
                if let Ok(slot) = serde_json::from_slice::<SlotRecord>(&bytes) {
                    slots.insert(name, slot);
                }
            }
            Ok((rows, flush, (timeline, timeline_ends), replicas, fresh, settings, slots, oldest, newest_snapshot))
        });
        ctx.wait(load.into_actor(self).map(|res, act, ctx| match res {
            Ok(Ok((rows, flush, (timeline, timeline_ends), replicas, fresh, settings, slots, oldest, newest_snapshot))) => {
                act.slots = slots;
                act.newest_snapshot = newest_snapshot;
                act.oldest_retained = oldest;
                if let Some(saved) = settings {
                    if saved != act.settings.view() {
                        tracing::info!("replication settings changed at run time earlier override the config file");
                    }
                    act.settings.apply(&saved);
                    act.restart_heartbeat_check(ctx);
                }
                act.rows = rows.table;
                act.checkpoint.reset(rows.shard_lsns, rows.epoch);
                act.overlay.clear();
                act.flush_lsn = flush;
                act.next_lsn = flush;
                act.shipped_end = flush;
                act.timeline = timeline;
                act.timeline_ends = timeline_ends;
                for e in act.replicas.values_mut() {
                    e.confirmed_lsn = 0;
                }
                act.crashed = false;
                // Replicas still running from before (a restart after a crash) hold what the
                // last timeline shipped, maybe more than it made durable: reconcile them now
                // rather than at their next heartbeat.
                for e in act.replicas.values() {
                    if let Some(addr) = &e.addr {
                        addr.do_send(act.reconcile_for(e.timeline, e.replay_lsn));
                    }
                }
                if act.replicas.is_empty() {
                    for (id, mode) in replicas {
                        let reason = if fresh.contains(&id) { "bootstrap" } else { "" };
                        act.replicas.insert(id.clone(), ReplicaEntry::new(mode));
                        act.start_replica(&id, ctx);
                        if !reason.is_empty() {
                            act.publish(
                                Severity::Info,
                                format!("replica:{id}"),
                                EventPayload::ReplicaAdded(ReplicaMembershipChange {
                                    replica_id: id.clone(),
                                    mode: mode_str(mode).into(),
                                    reason: reason.into(),
                                }),
                            );
                        }
                    }
                }
                tracing::info!(primary = %act.settings.primary, flush_lsn = act.flush_lsn, rows = act.rows.len(), replicas = act.replicas.len(), "replication primary loaded");
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "replication primary cannot load its state; it stays down");
                act.crashed = true;
            }
            Err(e) => {
                tracing::error!(error = %e, "replication primary load task failed; it stays down");
                act.crashed = true;
            }
        }));
    }

    fn start_replica(&mut self, id: &str, ctx: &mut Context<Self>) {
        self.next_incarnation += 1;
        let incarnation = self.next_incarnation;
        let actor = ReplicaActor::new(
            id.to_string(),
            incarnation,
            self.store.clone(),
            self.background.clone(),
            ctx.address().recipient(),
            self.settings.heartbeat_interval,
        );
        if let Some(e) = self.replicas.get_mut(id) {
            e.addr = Some(actor.start_supervised());
            e.incarnation = incarnation;
            e.connected = false;
            e.fetch_in_flight = false;
        }
    }

    fn set_status(&mut self, id: &str, new: ReplicaStatus, reason: String, mut metadata: BTreeMap<String, String>) {
        let flush = self.flush_lsn;
        let Some(e) = self.replicas.get_mut(id) else { return };
        e.reason = reason.clone();
        if e.status == new {
            return;
        }
        let old = e.status;
        e.status = new;
        metadata.insert("wal_position".into(), lsn_text(e.replay_lsn));
        metadata.insert("bytes_behind".into(), flush.saturating_sub(e.replay_lsn).to_string());
        let severity = match new {
            ReplicaStatus::Failed | ReplicaStatus::Disconnected => Severity::Error,
            ReplicaStatus::CatchingUp | ReplicaStatus::Paused => Severity::Warning,
            _ => Severity::Info,
        };
        tracing::info!(replica_id = id, old = old.as_str(), new = new.as_str(), %reason, "replica status changed");
        self.publish(
            severity,
            format!("replica:{id}"),
            EventPayload::ReplicaStatusChange(ReplicaStatusChange {
                replica_id: id.to_string(),
                old_status: old.as_str().into(),
                new_status: new.as_str().into(),
                reason,
                metadata,
            }),
        );
    }

    fn lag_bytes(&self, e: &ReplicaEntry) -> u64 {
        self.flush_lsn.saturating_sub(e.replay_lsn)
    }

    fn lag_seconds(e: &ReplicaEntry) -> f64 {
        e.behind_since_ms.map(|t| (now_ms() - t).max(0) as f64 / 1000.0).unwrap_or(0.0)
    }

    /// Status of a live, unpaused replica from its measured lag.
    fn evaluate(&mut self, id: &str) {
        let Some(e) = self.replicas.get(id) else { return };
        if e.addr.is_none() || e.paused || !e.connected {
            return;
        }
        if e.last_heard.is_some_and(|t| t.elapsed() > self.settings.heartbeat_timeout) {
            return;
        }
        let lag = self.lag_bytes(e);
        let threshold = self.settings.lag_alert_bytes;
        let mut metadata = BTreeMap::new();
        let (status, reason) = if lag == 0 {
            if let Some(started) = e.catchup_started {
                metadata.insert("catchup_duration_seconds".into(), format!("{:.3}", started.elapsed().as_secs_f64()));
            }
            (ReplicaStatus::InSync, "replayed everything the primary has flushed".to_string())
        } else if !e.caught_up_once || lag > threshold {
            (ReplicaStatus::CatchingUp, format!("{lag} bytes behind"))
        } else {
            (ReplicaStatus::InSync, format!("{lag} bytes behind, within {threshold}"))
        };
        if let Some(e) = self.replicas.get_mut(id) {
            if lag == 0 {
                e.caught_up_once = true;
                e.catchup_started = None;
            } else if status == ReplicaStatus::CatchingUp && e.catchup_started.is_none() {
                e.catchup_started = Some(Instant::now());
            }
        }
        self.set_status(id, status, reason, metadata);
        self.check_lag_alert(id);
    }

    /// Edge-triggered alert: once when lag rises above the threshold, once when it falls below
    /// half of it (hysteresis, so a lag hovering at the threshold does not flap).
    fn check_lag_alert(&mut self, id: &str) {
        let threshold = self.settings.lag_alert_bytes;
        let Some(e) = self.replicas.get(id) else { return };
        let lag = self.lag_bytes(e);
        let lag_seconds = Self::lag_seconds(e);
        let (raise, clear) = (!e.lag_alert_active && lag > threshold, e.lag_alert_active && lag < threshold / 2);
        if !raise && !clear {
            return;
        }
        if let Some(e) = self.replicas.get_mut(id) {
            e.lag_alert_active = raise;
        }
        let severity = if clear {
            Severity::Info
        } else if lag > threshold.saturating_mul(4) {
            Severity::Error
        } else {
            Severity::Warning
        };
        let details = if clear {
            format!("recovered: {lag} bytes behind, below {} (half the threshold)", threshold / 2)
        } else {
            format!("{lag} bytes behind, above the threshold of {threshold}")
        };
        self.publish(
            severity,
            format!("replica:{id}"),
            EventPayload::ReplicationLagAlert(ReplicationLagAlert {
                replica_id: id.to_string(),
                lag_bytes: lag,
                lag_seconds,
                threshold_bytes: threshold,
                severity,
                details,
            }),
        );
    }

    /// A sampled position report: at most one per replica per interval, only when it moved,
    /// and only built when a subscriber wants it.
    fn maybe_position_event(&mut self, id: &str) {
        if !self.interest.wants(EventType::WalPositionUpdate) {
            return;
        }
        let interval = self.settings.wal_position_interval;
        let flush = self.flush_lsn;
        let Some(e) = self.replicas.get_mut(id) else { return };
        let now = Instant::now();
        let position = (e.write_lsn, e.flush_lsn, e.replay_lsn);
        if let Some((at, w, f, r)) = e.last_position_event {
            if now.duration_since(at) < interval || (w, f, r) == position {
                return;
            }
        }
        e.last_position_event = Some((now, position.0, position.1, position.2));
        let payload = WalPositionUpdate {
            replica_id: id.to_string(),
            write_lsn: lsn_text(position.0),
            flush_lsn: lsn_text(position.1),
            replay_lsn: lsn_text(position.2),
            bytes_behind: flush.saturating_sub(position.2),
        };
        self.publish(Severity::Info, format!("replica:{id}"), EventPayload::WalPositionUpdate(payload));
    }

    // ---- the data path -------------------------------------------------------------------

    /// Whether a row exists once every accepted batch is applied.
    fn exists(&self, row: RowRef<'_>) -> bool {
        match self.overlay.get(&row) {
            Some(&(_, exists)) => exists,
            None => self.rows.contains(row),
        }
    }

    /// Checks a batch against the current state (durable rows plus accepted batches).
    fn check_batch(&self, ops: &[Op]) -> Result<(), ReplicationError> {
        let invalid = |field: String, reason: &str| ReplicationError::InvalidField { field, reason: reason.into() };
        if ops.is_empty() {
            return Err(invalid("ops".into(), "at least one operation"));
        }
        if ops.len() > MAX_OPS {
            return Err(invalid("ops".into(), &format!("at most {MAX_OPS} operations")));
        }
        // What earlier ops of this batch leave (only needed when there are several).
        let mut batch: HashMap<RowRef<'_>, bool> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            for (name, v) in [("table", &op.table), ("key", &op.key)] {
                if v.is_empty() || v.len() > 256 || v.contains('\0') {
                    return Err(invalid(format!("ops[{i}].{name}"), "1 to 256 characters, no NUL"));
                }
            }
            match (op.op, &op.value) {
                (OpKind::Delete, Some(_)) => return Err(invalid(format!("ops[{i}].value"), "a delete takes no value")),
                (OpKind::Insert | OpKind::Update, None) => {
                    return Err(invalid(format!("ops[{i}].value"), "insert and update need a value"))
                }
                (_, Some(v)) if json_len(v) > MAX_VALUE_BYTES => {
                    return Err(invalid(format!("ops[{i}].value"), &format!("at most {MAX_VALUE_BYTES} bytes")))
                }
                _ => {}
            }
            let row = op.row();
            let exists = match batch.get(&row) {
                Some(&exists) => exists,
                None => self.exists(row),
            };
            match op.op {
                OpKind::Insert if exists => {
                    return Err(ReplicationError::DuplicateKey { table: op.table.to_string(), key: op.key.to_string() })
                }
                OpKind::Update | OpKind::Delete if !exists => {
                    return Err(ReplicationError::RowNotFound { table: op.table.to_string(), key: op.key.to_string() })
                }
                _ => {}
            }
            if ops.len() > 1 {
                batch.insert(row, op.op != OpKind::Delete);
            }
        }
        Ok(())
    }

    /// Starts the next group commit if none is in flight: every accepted batch goes into one
    /// transaction, one fsync.
    fn commit(&mut self, ctx: &mut Context<Self>) {
        if self.commit_in_flight || self.pending.is_empty() || self.crashed {
            return;
        }
        self.commit_in_flight = true;
        let batches = std::mem::take(&mut self.pending);
        let end = batches.last().map(|b| b.lsn + b.bytes.len() as u64).unwrap_or(self.flush_lsn);
        // The WAL records and the flushed position only: the rows follow in a checkpoint.
        let commit = LogCommit {
            records: batches.iter().map(|b| (b.lsn, b.bytes.clone())).collect(),
            meta: vec![(primary_flush_key(&self.settings.primary), end)],
            truncate_before: None,
            truncate_from: None,
        };
        let store = self.store.clone();
        let primary = self.settings.primary.clone();
        let write = actix_rt::task::spawn_blocking(move || store.commit_log(&primary, commit));
        // Shipped as the fsync starts, so replicas make the records durable beside it; they
        // apply them once told they are durable here (by the next shipment, or by
        // `confirm_durable`). No other commit is in flight: what was shipped before is durable.
        let start = self.shipped_end;
        let durable = self.flush_lsn;
        let shipped: Vec<LogRecord> = batches
            .iter()
            .map(|b| LogRecord {
                lsn: b.lsn,
                bytes: b.bytes.clone(),
                committed_at_ms: b.committed_at_ms,
                ops: b.ops.clone(),
            })
            .collect();
        self.keep_recent(&shipped);
        self.shipped_end = end;
        let mode = self.settings.mode;
        let timeline = self.timeline;
        for e in self.replicas.values_mut() {
            if Self::streams(e, timeline) && e.shipped_lsn == start && start.saturating_sub(e.flush_lsn) < SHIP_WINDOW {
                if let Some(addr) = &e.addr {
                    addr.do_send(ShipWal {
                        records: shipped.clone(),
                        flush_awaited: flush_awaited(mode, e.mode),
                        timeline,
                        durable_lsn: durable,
                    });
                    e.confirmed_lsn = durable;
                }
                e.shipped_lsn = end;
            }
        }
        ctx.spawn(write.into_actor(self).map(move |res, act, ctx| {
            act.commit_in_flight = false;
            if act.crashed {
                // Crashed while the fsync ran: the batches may be durable (a restart loads
                // them) but were never acknowledged; their callers were told the primary is down.
                return;
            }
            match res {
                Ok(Ok(())) => act.committed(batches, end, ctx),
                Ok(Err(e)) => act.storage_failed(batches, e.to_string()),
                Err(e) => act.storage_failed(batches, e.to_string()),
            }
            act.commit(ctx);
            act.confirm_durable();
        }));
    }

    /// Keeps shipped records in memory (up to [`RECENT_BYTES`]) for replicas that catch up.
    fn keep_recent(&mut self, records: &[LogRecord]) {
        for r in records {
            self.recent_bytes += r.bytes.len();
            self.recent.push_back(RecentRecord { record: r.clone(), durable_at: None });
        }
        while self.recent_bytes > RECENT_BYTES {
            match self.recent.pop_front() {
                Some(r) => self.recent_bytes -= r.record.bytes.len(),
                None => break,
            }
        }
    }

    /// Whether records are shipped to this replica now: it runs, reported since it (or the
    /// link) came back, is not paused, and is on this timeline.
    fn streams(e: &ReplicaEntry, timeline: u64) -> bool {
        e.addr.is_some() && e.connected && !e.paused && e.timeline == timeline
    }

    /// What a replica on timeline `from` (having applied up to `applied`) is told after this
    /// primary started: keep what that timeline made durable.
    fn reconcile_for(&self, from: u64, applied: u64) -> Reconcile {
        let keep_until = self.timeline_ends.get(&from).copied().unwrap_or(applied);
        Reconcile { from_timeline: from, timeline: self.timeline, keep_until }
    }

    /// Tells every replica on this timeline that has not heard it yet (no shipment carried it)
    /// what is durable here: it may apply what it holds up to there.
    fn confirm_durable(&mut self) {
        if self.crashed {
            return;
        }
        let confirm = PrimaryDurable { lsn: self.flush_lsn, timeline: self.timeline };
        for e in self.replicas.values_mut() {
            if e.connected && !e.partitioned && e.timeline == confirm.timeline && e.confirmed_lsn < confirm.lsn {
                if let Some(addr) = &e.addr {
                    addr.do_send(confirm);
                    e.confirmed_lsn = confirm.lsn;
                }
            }
        }
    }

    /// A group commit is durable: apply, answer or wait (replicas are confirmed it after).
    fn committed(&mut self, batches: Vec<Accepted>, end: u64, ctx: &mut Context<Self>) {
        self.events.metrics().wal_committed(batches.len() as u64);
        let old_flush = self.flush_lsn;
        self.flush_lsn = end;
        let durable_at = Instant::now();
        for r in self.recent.iter_mut().rev() {
            if r.record.lsn < old_flush {
                break;
            }
            r.durable_at.get_or_insert(durable_at);
        }
        let ops: u64 = batches.iter().map(|b| b.ops.len() as u64).sum();
        self.commits.push_back((durable_at, ops, end - old_flush));
        trim_window(&mut self.commits, durable_at, |c| c.0);
        let mut first_committed_ms = None;
        let mut replies = Vec::with_capacity(batches.len());
        for b in batches {
            self.rows.apply(&b.ops);
            // Rows no later accepted batch changed are now what the committed state says.
            for op in b.ops.iter() {
                let row = op.row();
                if self.overlay.get(&row).is_some_and(|&(lsn, _)| lsn == b.lsn) {
                    self.overlay.remove(&row);
                }
            }
            self.checkpoint.applied(b.ops.len());
            first_committed_ms.get_or_insert(b.committed_at_ms);
            replies.push((b.lsn + b.bytes.len() as u64, b.reply));
        }
        if self.checkpoint.due() {
            self.maintain(ctx, false);
        }
        // Ship to the replicas catching up (the shipment confirms `end` to them); the others
        // learn it with the next group commit's records, or from `confirm_durable`.
        let ids: Vec<String> = self.replicas.keys().cloned().collect();
        for id in &ids {
            if let Some(e) = self.replicas.get_mut(id) {
                if e.replay_lsn >= old_flush && e.behind_since_ms.is_none() {
                    e.behind_since_ms = first_committed_ms;
                }
            }
            self.ship_more(id, ctx);
            self.check_lag_alert(id);
        }
        for (end_lsn, reply) in replies {
            let waiter = Waiter { end_lsn, deadline: Instant::now() + self.settings.sync_timeout, reply };
            self.settle_or_wait(waiter);
        }
    }

    fn storage_failed(&mut self, batches: Vec<Accepted>, message: String) {
        // A failed fsync leaves the log in doubt: like PostgreSQL, stop taking writes rather than
        // guess. A restart reloads what is durable.
        tracing::error!(error = %message, "WAL commit failed; the primary goes down");
        for b in batches {
            let _ = b.reply.send(Err(ReplicationError::Storage { message: message.clone() }));
        }
        self.go_down("WAL commit failed");
        self.publish(
            Severity::Critical,
            format!("primary:{}", self.settings.primary),
            EventPayload::ReplicationError(ReplicationErrorEvent {
                replica_id: String::new(),
                error_code: "wal_commit_failed".into(),
                error_message: message,
                severity: Severity::Critical,
                failed_operation: "replicate_operations".into(),
                retry_count: 0,
            }),
        );
    }

    /// Replicas that have flushed and replayed `lsn` (a replica replays only what is durable on
    /// both sides), and whether the mode is satisfied; the missing ones. (Which replicas a mode
    /// waits for is also [`flush_awaited`].)
    fn acks(&self, lsn: u64) -> (Vec<String>, bool, Vec<String>) {
        let replayed: Vec<String> =
            self.replicas.iter().filter(|(_, e)| e.replay_lsn >= lsn).map(|(id, _)| id.clone()).collect();
        match self.settings.mode {
            ReplicationMode::Async => (replayed, true, Vec::new()),
            ReplicationMode::Sync => {
                let missing: Vec<String> = self
                    .replicas
                    .iter()
                    .filter(|(_, e)| e.mode == ReplicaMode::Sync && e.replay_lsn < lsn)
                    .map(|(id, _)| id.clone())
                    .collect();
                let ok = missing.is_empty();
                (replayed, ok, missing)
            }
            ReplicationMode::SemiSync => {
                let ok = replayed.len() >= self.settings.sync_quorum;
                let missing = if ok {
                    Vec::new()
                } else {
                    self.replicas.iter().filter(|(_, e)| e.replay_lsn < lsn).map(|(id, _)| id.clone()).collect()
                };
                (replayed, ok, missing)
            }
        }
    }

    fn ack(&self, lsn: u64, acknowledged_by: Vec<String>) -> ReplicateAck {
        ReplicateAck { lsn: lsn_text(lsn), lsn_u64: lsn, acknowledged_by, mode: self.settings.mode }
    }

    /// The highest lsn the mode is satisfied for, from the replicas' replayed positions: every
    /// waiting batch ending at or below it can be answered.
    fn satisfied_lsn(&self) -> u64 {
        match self.settings.mode {
            ReplicationMode::Async => u64::MAX,
            ReplicationMode::Sync => self
                .replicas
                .values()
                .filter(|e| e.mode == ReplicaMode::Sync)
                .map(|e| e.replay_lsn)
                .min()
                .unwrap_or(u64::MAX),
            ReplicationMode::SemiSync => {
                let mut replayed: Vec<u64> = self.replicas.values().map(|e| e.replay_lsn).collect();
                replayed.sort_unstable_by(|a, b| b.cmp(a));
                match self.settings.sync_quorum {
                    0 => u64::MAX,
                    q => replayed.get(q - 1).copied().unwrap_or(0),
                }
            }
        }
    }

    fn settle_or_wait(&mut self, waiter: Waiter) {
        if waiter.end_lsn <= self.satisfied_lsn() && self.waiters.is_empty() {
            let (by, _, _) = self.acks(waiter.end_lsn);
            let _ = waiter.reply.send(Ok(self.ack(waiter.end_lsn, by)));
            return;
        }
        self.waiters.push_back(waiter);
        self.settle_waiters();
    }

    /// Answers waiting batches from the oldest while the mode is satisfied for them.
    fn settle_waiters(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let satisfied = self.satisfied_lsn();
        while self.waiters.front().is_some_and(|w| w.end_lsn <= satisfied) {
            let Some(w) = self.waiters.pop_front() else { break };
            let (by, _, _) = self.acks(w.end_lsn);
            let _ = w.reply.send(Ok(self.ack(w.end_lsn, by)));
        }
    }

    /// Answers 504 to every waiting batch past its deadline.
    fn sweep_deadlines(&mut self) {
        let now = Instant::now();
        if !self.waiters.iter().any(|w| w.deadline <= now) {
            return;
        }
        let (expired, waiting): (Vec<Waiter>, Vec<Waiter>) = self.waiters.drain(..).partition(|w| w.deadline <= now);
        self.waiters = waiting.into();
        for w in expired {
            self.time_out(w);
        }
    }

    fn time_out(&mut self, w: Waiter) {
        let (by, _, missing) = self.acks(w.end_lsn);
        let timeout_ms = self.settings.sync_timeout.as_millis() as u64;
        let error = ReplicationError::SyncTimeout {
            lsn: w.end_lsn,
            timeout_ms,
            acknowledged_by: by,
            missing: missing.clone(),
        };
        self.publish(
            Severity::Error,
            format!("primary:{}", self.settings.primary),
            EventPayload::ReplicationError(ReplicationErrorEvent {
                replica_id: if missing.len() == 1 { missing[0].clone() } else { String::new() },
                error_code: "sync_timeout".into(),
                error_message: error.to_string(),
                severity: Severity::Error,
                failed_operation: "replicate_operations".into(),
                retry_count: 0,
            }),
        );
        let _ = w.reply.send(Err(error));
    }

    /// Ships what a replica is missing, within the window: from memory when the records are
    /// still there, from the store otherwise.
    fn ship_more(&mut self, id: &str, ctx: &mut Context<Self>) {
        let shippable = self.shipped_end;
        let flush = self.flush_lsn;
        let timeline = self.timeline;
        let oldest_recent = self.recent.front().map(|r| r.record.lsn);
        let Some(e) = self.replicas.get_mut(id) else { return };
        let Some(addr) = e.addr.clone() else { return };
        if !Self::streams(e, timeline) || e.fetch_in_flight || e.seeding.is_some() || e.shipped_lsn >= shippable {
            return;
        }
        if e.shipped_lsn.saturating_sub(e.flush_lsn) >= SHIP_WINDOW {
            return;
        }
        let from = e.shipped_lsn;
        let awaited = flush_awaited(self.settings.mode, e.mode);
        if oldest_recent.is_some_and(|oldest| oldest <= from) {
            let start = self.recent.partition_point(|r| r.record.lsn < from);
            if self.recent.get(start).is_some_and(|r| r.record.lsn == from) {
                let mut batch = Vec::new();
                let mut bytes = 0u64;
                for r in self.recent.range(start..) {
                    bytes += r.record.bytes.len() as u64;
                    batch.push(r.record.clone());
                    if bytes >= SHIP_WINDOW {
                        break;
                    }
                }
                let shipped_to = batch.last().map(LogRecord::end_lsn).unwrap_or(from);
                addr.do_send(ShipWal { records: batch, flush_awaited: awaited, timeline, durable_lsn: flush });
                if let Some(e) = self.replicas.get_mut(id) {
                    e.confirmed_lsn = e.confirmed_lsn.max(flush);
                    e.shipped_lsn = shipped_to;
                }
                return;
            }
        }
        // Older than what is kept in memory: read it back.
        e.fetch_in_flight = true;
        let store = self.store.clone();
        let primary = self.settings.primary.clone();
        // Decoded there, off the arbiter. Only durable records are in the store. A replica no
        // write waits for catches up at the background's priority: on the blocking pool, the
        // decoding of a far-behind async replica's WAL took a core from the primary's writes.
        let read = self.background.run_at(Priority::waited_for(awaited), move || read_records(&store, &primary, from, u64::MAX, SHIP_WINDOW as usize));
        let id = id.to_string();
        ctx.spawn(read.into_actor(self).map(move |res, act, ctx| {
            let Some(e) = act.replicas.get_mut(&id) else { return };
            e.fetch_in_flight = false;
            if !e.connected {
                // Cut off or restarted meanwhile: its next report says where to ship from.
                return;
            }
            match res {
                Ok(batch) if batch.first().is_some_and(|r| r.lsn == from) && e.shipped_lsn == from && e.timeline == timeline => {
                    let to = batch.last().map(LogRecord::end_lsn).unwrap_or(from);
                    if let Some(addr) = &e.addr {
                        addr.do_send(ShipWal { records: batch, flush_awaited: awaited, timeline, durable_lsn: flush });
                        e.confirmed_lsn = e.confirmed_lsn.max(flush);
                        e.shipped_lsn = to;
                    }
                    act.ship_more(&id, ctx);
                }
                Ok(records) if records.first().is_none_or(|r| r.lsn > from) && e.shipped_lsn == from => {
                    // The WAL it needs is gone: it cannot catch up by streaming. Say so; a
                    // snapshot restore (or removing and adding it again) reseeds it.
                    let oldest = records.first().map(|r| r.lsn).unwrap_or(act.oldest_retained);
                    let error = ReplicationError::WalGone {
                        lsn: lsn_text(from),
                        oldest: lsn_text(oldest),
                        what: id.clone(),
                    };
                    act.set_status(&id, ReplicaStatus::Failed, error.to_string(), BTreeMap::new());
                    act.publish(
                        Severity::Error,
                        format!("replica:{id}"),
                        EventPayload::ReplicationError(ReplicationErrorEvent {
                            replica_id: id.clone(),
                            error_code: "wal_gone".into(),
                            error_message: error.to_string(),
                            severity: Severity::Error,
                            failed_operation: "ship_wal".into(),
                            retry_count: 0,
                        }),
                    );
                }
                Ok(_) => {}
                Err(err) => tracing::error!(replica_id = %id, error = %err, "cannot read WAL to ship"),
            }
        }));
    }

    /// How long ago the record ending at `lsn` became durable here, for lag measurement, if it
    /// is still in memory: zero if it is not durable here yet (the replica was the quicker).
    fn lag_since(&self, lsn: u64, now: Instant) -> Option<Duration> {
        let i = self.recent.partition_point(|r| r.record.end_lsn() <= lsn);
        if i == 0 {
            return None;
        }
        let record = self.recent.get(i - 1).filter(|r| r.record.end_lsn() == lsn)?;
        Some(record.durable_at.map_or(Duration::ZERO, |t| now.saturating_duration_since(t)))
    }

    /// The commit time of the oldest record that ends after `lsn`, if still in memory.
    fn first_after(&self, lsn: u64) -> Option<i64> {
        let i = self.recent.partition_point(|r| r.record.end_lsn() <= lsn);
        self.recent.get(i).map(|r| r.record.committed_at_ms)
    }

    fn go_down(&mut self, why: &str) {
        self.crashed = true;
        for b in self.pending.drain(..) {
            let _ = b.reply.send(Err(ReplicationError::PrimaryDown { primary: self.settings.primary.clone() }));
        }
        for w in self.waiters.drain(..) {
            // These batches are durable already: say so, so a client does not retry blindly.
            let _ = w.reply.send(Err(ReplicationError::PrimaryDownAfterCommit {
                primary: self.settings.primary.clone(),
                lsn: w.end_lsn,
            }));
        }
        self.rows.clear();
        self.overlay.clear();
        for reply in self.truncate_waiting.drain(..) {
            let _ = reply.send(Err(ReplicationError::PrimaryDown { primary: self.settings.primary.clone() }));
        }
        self.recent.clear();
        self.recent_bytes = 0;
        tracing::warn!(primary = %self.settings.primary, why, "replication primary is down");
    }

    fn view(&self, id: &str, e: &ReplicaEntry) -> ReplicaView {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        ReplicaView {
            replica_id: id.to_string(),
            mode: e.mode,
            status: e.status,
            status_reason: e.reason.clone(),
            write_lsn: lsn_text(e.write_lsn),
            write_lsn_u64: e.write_lsn,
            flush_lsn: lsn_text(e.flush_lsn),
            flush_lsn_u64: e.flush_lsn,
            replay_lsn: lsn_text(e.replay_lsn),
            replay_lsn_u64: e.replay_lsn,
            lag_bytes: self.lag_bytes(e),
            lag_seconds: Self::lag_seconds(e),
            write_lag_ms: ms(e.write_lag),
            flush_lag_ms: ms(e.flush_lag),
            replay_lag_ms: ms(e.replay_lag),
            last_heartbeat_ms: e.last_heard.map(|t| t.elapsed().as_millis() as u64),
        }
    }

    fn replica_view(&self, id: &str) -> Result<ReplicaView, ReplicationError> {
        self.replicas
            .get(id)
            .map(|e| self.view(id, e))
            .ok_or_else(|| ReplicationError::ReplicaNotFound { replica_id: id.to_string() })
    }

    fn check_heartbeats(&mut self) {
        let timeout = self.settings.heartbeat_timeout;
        let silent: Vec<(String, u128)> = self
            .replicas
            .iter()
            .filter(|(_, e)| e.addr.is_some() && e.status != ReplicaStatus::Disconnected)
            .filter_map(|(id, e)| {
                let t = e.last_heard?;
                (t.elapsed() > timeout).then(|| (id.clone(), t.elapsed().as_millis()))
            })
            .collect();
        for (id, ms) in silent {
            self.set_status(&id, ReplicaStatus::Disconnected, format!("no heartbeat for {ms} ms"), BTreeMap::new());
        }
    }
}

impl Actor for PrimaryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.load(ctx);
        self.restart_heartbeat_check(ctx);
        ctx.run_interval(DEADLINE_SWEEP, |act, _| act.sweep_deadlines());
        ctx.run_interval(CHECKPOINT_EVERY, |act, ctx| act.maintain(ctx, false));
        ctx.run_interval(AUTO_TRUNCATE_EVERY, |act, ctx| {
            act.maintain(ctx, true);
        });
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        for e in self.replicas.values_mut() {
            if let Some(addr) = e.addr.take() {
                addr.do_send(StopReplica);
            }
        }
        Running::Stop
    }
}

impl Handler<ReplicateOps> for PrimaryActor {
    type Result = ResponseFuture<Result<ReplicateAck, ReplicationError>>;
    fn handle(&mut self, msg: ReplicateOps, ctx: &mut Self::Context) -> Self::Result {
        let refuse = |e| -> Self::Result { Box::pin(async move { Err(e) }) };
        if self.crashed {
            return refuse(ReplicationError::PrimaryDown { primary: self.settings.primary.clone() });
        }
        if let Err(e) = self.check_batch(&msg.ops) {
            return refuse(e);
        }
        let committed_at_ms = now_ms();
        let record = WalRecord { committed_at_ms, ops: msg.ops };
        let bytes: Arc<[u8]> = match serde_json::to_vec(&record) {
            Ok(b) => b.into(),
            Err(e) => return refuse(ReplicationError::Storage { message: e.to_string() }),
        };
        let lsn = self.next_lsn;
        self.next_lsn += bytes.len() as u64;
        for op in &record.ops {
            let exists = op.op != OpKind::Delete;
            // Hashed once: the owned key shares the op's table and key (no copy).
            let row = op.row_key();
            match self.overlay.get_mut(&row.as_ref()) {
                Some(slot) => *slot = (lsn, exists),
                None => {
                    self.overlay.insert(row, (lsn, exists));
                }
            }
        }
        let (reply, answer) = oneshot::channel();
        self.pending.push(Accepted { lsn, bytes, committed_at_ms, ops: Arc::new(record.ops), reply });
        self.commit(ctx);
        let primary = self.settings.primary.clone();
        Box::pin(async move { answer.await.unwrap_or(Err(ReplicationError::PrimaryDown { primary })) })
    }
}

impl Handler<ReplicaReport> for PrimaryActor {
    type Result = ();
    fn handle(&mut self, msg: ReplicaReport, ctx: &mut Self::Context) {
        let mut p = msg.progress;
        let id = p.replica_id.clone();
        // Only a restart (a load, a reconcile, a reseed, a gap) moves a position back: a store
        // task's early report and a heartbeat sent meanwhile may arrive in either order.
        if let Some(e) = self.replicas.get(&id).filter(|e| !msg.restarted && e.incarnation == msg.incarnation) {
            p.write_lsn = p.write_lsn.max(e.write_lsn);
            p.flush_lsn = p.flush_lsn.max(e.flush_lsn);
            p.replay_lsn = p.replay_lsn.max(e.replay_lsn);
        }
        let now = Instant::now();
        let (write_lag, flush_lag, replay_lag) =
            (self.lag_since(p.write_lsn, now), self.lag_since(p.flush_lsn, now), self.lag_since(p.replay_lsn, now));
        let first_unreplayed = if p.replay_lsn < self.flush_lsn { self.first_after(p.replay_lsn) } else { None };
        let crashed = self.crashed;
        // A replica holding nothing past what it applied has nothing to drop: it takes this
        // timeline with the next message it gets ([`ReplicaActor`]'s `adopt`).
        let on_timeline = msg.timeline == self.timeline || p.write_lsn == p.replay_lsn;
        let reconcile = (!on_timeline).then(|| self.reconcile_for(msg.timeline, p.replay_lsn));
        let timeline = self.timeline;
        let confirm = PrimaryDurable { lsn: self.flush_lsn, timeline: self.timeline };
        let Some(e) = self.replicas.get_mut(&id) else { return };
        if e.incarnation != msg.incarnation || e.addr.is_none() || e.partitioned {
            return;
        }
        e.last_heard = Some(now);
        if let Some(seed_lsn) = e.seeding {
            if msg.restarted && p.flush_lsn == seed_lsn {
                e.seeding = None;
            } else {
                // Still loading its old state; the reseed comes next.
                e.connected = true;
                return;
            }
        }
        e.timeline = if on_timeline { timeline } else { msg.timeline };
        if let Some(reconcile) = reconcile {
            // Its log comes from an earlier start of the primary: nothing is shipped to it until
            // it has dropped what that start may never have made durable (and says so).
            if let Some(addr) = &e.addr {
                addr.do_send(reconcile);
            }
            return;
        }
        let was_connected = e.connected;
        e.connected = true;
        if msg.restarted || !was_connected {
            if !crashed {
                // What it holds that is durable here may be applied (a tail it kept over its
                // restart, or what arrived before a partition).
                if let Some(addr) = &e.addr {
                    addr.do_send(confirm);
                    e.confirmed_lsn = confirm.lsn;
                }
            }
            e.shipped_lsn = p.write_lsn;
            e.fetch_in_flight = false;
            e.catchup_started = Some(now);
            // In sync again only once it has replayed everything, not merely within the threshold.
            e.caught_up_once = false;
        }
        if p.write_lsn > e.write_lsn && write_lag.is_some() {
            e.write_lag = write_lag;
        }
        if p.flush_lsn > e.flush_lsn && flush_lag.is_some() {
            e.flush_lag = flush_lag;
        }
        if p.replay_lsn > e.replay_lsn && replay_lag.is_some() {
            e.replay_lag = replay_lag;
        }
        if p.replay_lsn > e.replay_lsn && !msg.restarted {
            e.replayed.push_back((now, p.replay_lsn - e.replay_lsn));
        }
        trim_window(&mut e.replayed, now, |r| r.0);
        e.write_lsn = p.write_lsn;
        e.flush_lsn = p.flush_lsn;
        e.replay_lsn = p.replay_lsn;
        e.behind_since_ms = if crashed { e.behind_since_ms } else { first_unreplayed.or(e.behind_since_ms.filter(|_| p.replay_lsn < self.flush_lsn)) };
        if e.shipped_lsn < e.write_lsn {
            e.shipped_lsn = e.write_lsn;
        }
        let paused = e.paused;
        if paused {
            // A paused replica that (re)started is still paused: say so, not `starting`.
            self.set_status(&id, ReplicaStatus::Paused, "paused by operator".into(), BTreeMap::new());
        } else {
            self.evaluate(&id);
        }
        self.maybe_position_event(&id);
        self.sample_lag(&id);
        self.settle_waiters();
        self.ship_more(&id, ctx);
    }
}

/// Drops entries older than [`THROUGHPUT_WINDOW`] from the front of a time-ordered window.
fn trim_window<T>(window: &mut VecDeque<T>, now: Instant, at: impl Fn(&T) -> Instant) {
    while window.front().is_some_and(|x| now.duration_since(at(x)) > THROUGHPUT_WINDOW) {
        window.pop_front();
    }
}

impl PrimaryActor {
    /// Takes one lag measurement of a replica, at most once per heartbeat interval: into its
    /// history, and to the registry when someone listens.
    fn sample_lag(&mut self, id: &str) {
        let interval = self.settings.heartbeat_interval;
        let threshold = self.settings.lag_alert_bytes;
        let flush = self.flush_lsn;
        let Some(e) = self.replicas.get_mut(id) else { return };
        let now = Instant::now();
        if e.last_sample_at.is_some_and(|t| now.duration_since(t) < interval) {
            return;
        }
        e.last_sample_at = Some(now);
        let sample = LagSample {
            timestamp_ms: now_ms(),
            lag_bytes: flush.saturating_sub(e.replay_lsn),
            lag_seconds: Self::lag_seconds(e),
            replay_lsn_u64: e.replay_lsn,
        };
        if e.samples.len() >= LAG_SAMPLES {
            e.samples.pop_front();
        }
        e.samples.push_back(sample.clone());
        let status = e.status.as_str().to_string();
        if self.interest.wants(EventType::ReplicationLagSample) {
            self.publish(
                Severity::Info,
                format!("replica:{id}"),
                EventPayload::ReplicationLagSample(ReplicationLagSample {
                    replica_id: id.to_string(),
                    lag_bytes: sample.lag_bytes,
                    lag_seconds: sample.lag_seconds,
                    threshold_bytes: threshold,
                    status,
                }),
            );
        }
    }
}

impl Handler<GetLagHistory> for PrimaryActor {
    type Result = Result<Vec<LagHistory>, ReplicationError>;
    fn handle(&mut self, msg: GetLagHistory, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(id) = &msg.replica_id {
            if !self.replicas.contains_key(id) {
                return Err(ReplicationError::ReplicaNotFound { replica_id: id.clone() });
            }
        }
        let since = now_ms() - (msg.seconds.min(86_400) as i64) * 1000;
        Ok(self
            .replicas
            .iter()
            .filter(|(id, _)| msg.replica_id.as_ref().is_none_or(|wanted| wanted == *id))
            .map(|(id, e)| LagHistory {
                replica_id: id.clone(),
                samples: e.samples.iter().filter(|s| s.timestamp_ms >= since).cloned().collect(),
            })
            .collect())
    }
}

impl Handler<GetThroughput> for PrimaryActor {
    type Result = MessageResult<GetThroughput>;
    fn handle(&mut self, _: GetThroughput, _ctx: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        trim_window(&mut self.commits, now, |c| c.0);
        let window = THROUGHPUT_WINDOW.as_secs_f64();
        let (ops, bytes) = self.commits.iter().fold((0u64, 0u64), |(o, b), c| (o + c.1, b + c.2));
        let replicas = self
            .replicas
            .iter_mut()
            .map(|(id, e)| {
                trim_window(&mut e.replayed, now, |r| r.0);
                ReplicaThroughput {
                    replica_id: id.clone(),
                    replayed_bytes_per_second: e.replayed.iter().map(|r| r.1).sum::<u64>() as f64 / window,
                }
            })
            .collect();
        MessageResult(Throughput {
            window_seconds: window,
            primary_ops_per_second: ops as f64 / window,
            primary_bytes_per_second: bytes as f64 / window,
            replicas,
        })
    }
}

impl Handler<GetReplicationHealth> for PrimaryActor {
    type Result = MessageResult<GetReplicationHealth>;
    fn handle(&mut self, _: GetReplicationHealth, _ctx: &mut Self::Context) -> Self::Result {
        let threshold = self.settings.lag_alert_bytes;
        let timeout = self.settings.heartbeat_timeout;
        MessageResult(
            self.replicas
                .iter()
                .map(|(id, e)| {
                    let lag = self.lag_bytes(e);
                    let mut reasons = Vec::new();
                    if e.addr.is_none() {
                        reasons.push("down: crashed, waiting for a restart".to_string());
                    }
                    if e.paused {
                        reasons.push("paused by operator: nothing is shipped to it".to_string());
                    }
                    match e.last_heard {
                        None => reasons.push("has not reported yet".to_string()),
                        Some(t) if t.elapsed() > timeout => {
                            reasons.push(format!("no heartbeat for {} ms (timeout {} ms)", t.elapsed().as_millis(), timeout.as_millis()))
                        }
                        _ => {}
                    }
                    if lag > threshold {
                        reasons.push(format!("{lag} bytes behind, above the alert threshold of {threshold}"));
                    }
                    if reasons.is_empty() && e.status != ReplicaStatus::InSync {
                        reasons.push(format!("status is {}", e.status.as_str()));
                    }
                    ReplicaHealth {
                        replica_id: id.clone(),
                        healthy: reasons.is_empty(),
                        reasons,
                        status: e.status,
                        lag_bytes: lag,
                        last_heartbeat_ms: e.last_heard.map(|t| t.elapsed().as_millis() as u64),
                    }
                })
                .collect(),
        )
    }
}

impl PrimaryActor {
    /// Writes (`Some`) or deletes (`None`) one durable record off the arbiter, then applies;
    /// AtomicResponse holds other messages back until both are done.
    fn persist_record<R: serde::Serialize + Send + 'static, T: 'static>(
        &mut self,
        table: RecordTable,
        key: String,
        record: Option<R>,
        apply: impl FnOnce(&mut Self, &mut Context<Self>) -> Result<T, ReplicationError> + 'static,
    ) -> AtomicResponse<Self, Result<T, ReplicationError>> {
        let store = self.store.clone();
        let write = actix_rt::task::spawn_blocking(move || match record {
            Some(r) => {
                let bytes = serde_json::to_vec(&r).map_err(|e| crate::storage::StorageError::Backend(e.to_string()))?;
                store.put_record(table, &key, &bytes)
            }
            None => store.delete_record(table, &key),
        });
        AtomicResponse::new(Box::pin(write.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Ok(())) => apply(act, ctx),
            Ok(Err(e)) => Err(ReplicationError::Storage { message: e.to_string() }),
            Err(e) => Err(ReplicationError::Storage { message: e.to_string() }),
        })))
    }

    fn persist_replica<T: 'static>(
        &mut self,
        id: String,
        record: Option<ReplicaRecord>,
        apply: impl FnOnce(&mut Self, &mut Context<Self>) -> Result<T, ReplicationError> + 'static,
    ) -> AtomicResponse<Self, Result<T, ReplicationError>> {
        self.persist_record(REPLICAS, id, record, apply)
    }
}

impl Handler<AddReplica> for PrimaryActor {
    type Result = AtomicResponse<Self, Result<ReplicaView, ReplicationError>>;
    fn handle(&mut self, msg: AddReplica, _ctx: &mut Self::Context) -> Self::Result {
        let refuse_now = |e| AtomicResponse::new(Box::pin(actix::fut::ready(Err(e))));
        if let Err(reason) = crate::model::validate_id(&msg.replica_id) {
            return refuse_now(ReplicationError::InvalidField { field: "replica_id".into(), reason });
        }
        if msg.replica_id == self.settings.primary {
            return refuse_now(ReplicationError::InvalidField {
                field: "replica_id".into(),
                reason: "is the primary's id".into(),
            });
        }
        if self.replicas.contains_key(&msg.replica_id) {
            return refuse_now(ReplicationError::ReplicaExists { replica_id: msg.replica_id });
        }
        let id = msg.replica_id;
        let mode = msg.mode;
        let snapshot = msg.from_snapshot;
        if let Some(snapshot_id) = snapshot {
            // Seeded from a snapshot: registered like any replica, then restored.
            let target = id.clone();
            let store = self.store.clone();
            let read = actix_rt::task::spawn_blocking(move || store.get_record(SNAPSHOTS, &snapshot_id).map(|r| (snapshot_id, r)));
            let store = self.store.clone();
            return AtomicResponse::new(Box::pin(read.into_actor(self).then(move |res, act, _ctx| {
                let snap = match res {
                    Ok(Ok((_, Some(bytes)))) => serde_json::from_slice::<SnapshotRecord>(&bytes)
                        .map_err(|e| ReplicationError::Storage { message: e.to_string() }),
                    Ok(Ok((snapshot_id, None))) => Err(ReplicationError::SnapshotNotFound { snapshot_id }),
                    Ok(Err(e)) => Err(ReplicationError::Storage { message: e.to_string() }),
                    Err(e) => Err(ReplicationError::Storage { message: e.to_string() }),
                };
                let snap = match snap.and_then(|s| act.check_restorable(&s, &target).map(|()| s)) {
                    Ok(s) => s,
                    Err(e) => return Box::pin(actix::fut::ready(Err(e))) as std::pin::Pin<Box<dyn ActorFuture<Self, Output = _>>>,
                };
                let write = actix_rt::task::spawn_blocking(move || {
                    let bytes = serde_json::to_vec(&ReplicaRecord { mode }).map_err(|e| crate::storage::StorageError::Backend(e.to_string()))?;
                    store.put_record(REPLICAS, &target, &bytes).map(|()| target)
                });
                Box::pin(write.into_actor(act).map(move |res, act, ctx| {
                    let target = match res {
                        Ok(Ok(t)) => t,
                        Ok(Err(e)) => return Err(ReplicationError::Storage { message: e.to_string() }),
                        Err(e) => return Err(ReplicationError::Storage { message: e.to_string() }),
                    };
                    act.replicas.insert(target.clone(), ReplicaEntry::new(mode));
                    act.start_replica(&target, ctx);
                    act.publish(
                        Severity::Info,
                        format!("replica:{target}"),
                        EventPayload::ReplicaAdded(ReplicaMembershipChange {
                            replica_id: target.clone(),
                            mode: mode_str(mode).into(),
                            reason: format!("added by operator from snapshot {}", snap.snapshot_id),
                        }),
                    );
                    act.reseed(&target, Arc::new(snap.rows.clone()), snap.lsn);
                    act.publish(
                        Severity::Info,
                        format!("replica:{target}"),
                        EventPayload::SnapshotRestored(snap.change(&target)),
                    );
                    act.replica_view(&target)
                }))
            })));
        }
        self.persist_replica(id.clone(), Some(ReplicaRecord { mode }), move |act, ctx| {
            act.replicas.insert(id.clone(), ReplicaEntry::new(mode));
            act.start_replica(&id, ctx);
            if act.oldest_retained > 0 {
                // The WAL from the beginning is gone: start it from a base copy of the
                // committed rows at the flushed lsn (what pg_basebackup does).
                let rows = act.rows.sorted_rows();
                let lsn = act.flush_lsn;
                act.reseed(&id, Arc::new(rows), lsn);
            }
            act.publish(
                Severity::Info,
                format!("replica:{id}"),
                EventPayload::ReplicaAdded(ReplicaMembershipChange {
                    replica_id: id.clone(),
                    mode: mode_str(mode).into(),
                    reason: "added by operator".into(),
                }),
            );
            act.replica_view(&id)
        })
    }
}

impl Handler<RemoveReplica> for PrimaryActor {
    type Result = AtomicResponse<Self, Result<(), ReplicationError>>;
    fn handle(&mut self, msg: RemoveReplica, _ctx: &mut Self::Context) -> Self::Result {
        if !self.replicas.contains_key(&msg.replica_id) {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(ReplicationError::ReplicaNotFound {
                replica_id: msg.replica_id,
            }))));
        }
        let id = msg.replica_id;
        self.persist_replica(id.clone(), None, move |act, _ctx| {
            let Some(mut e) = act.replicas.remove(&id) else {
                return Err(ReplicationError::ReplicaNotFound { replica_id: id });
            };
            if let Some(addr) = e.addr.take() {
                addr.do_send(StopReplica);
            }
            act.publish(
                Severity::Warning,
                format!("replica:{id}"),
                EventPayload::ReplicaRemoved(ReplicaMembershipChange {
                    replica_id: id.clone(),
                    mode: mode_str(e.mode).into(),
                    reason: "removed by operator".into(),
                }),
            );
            // A removed sync replica no longer holds writes back.
            act.settle_waiters();
            Ok(())
        })
    }
}

impl Handler<PauseReplica> for PrimaryActor {
    type Result = Result<ReplicaView, ReplicationError>;
    fn handle(&mut self, msg: PauseReplica, _ctx: &mut Self::Context) -> Self::Result {
        let id = msg.replica_id;
        let e = self.replicas.get_mut(&id).ok_or_else(|| ReplicationError::ReplicaNotFound { replica_id: id.clone() })?;
        if e.paused {
            return Err(ReplicationError::WrongState { replica_id: id, state: "paused".into() });
        }
        e.paused = true;
        self.set_status(&id, ReplicaStatus::Paused, "paused by operator".into(), BTreeMap::new());
        self.replica_view(&id)
    }
}

impl Handler<PartitionReplica> for PrimaryActor {
    type Result = Result<ReplicaView, ReplicationError>;
    fn handle(&mut self, msg: PartitionReplica, _ctx: &mut Self::Context) -> Self::Result {
        let id = msg.replica_id;
        let e = self.replicas.get_mut(&id).ok_or_else(|| ReplicationError::ReplicaNotFound { replica_id: id.clone() })?;
        e.partitioned = msg.cut;
        if msg.cut {
            // Nothing is shipped until it is heard from again, and then from what it reports
            // having (whatever was in flight when the link was cut may be lost).
            e.connected = false;
        }
        tracing::warn!(replica_id = %id, cut = msg.cut, "replica partition injected");
        self.replica_view(&id)
    }
}

impl Handler<ResumeReplica> for PrimaryActor {
    type Result = Result<ReplicaView, ReplicationError>;
    fn handle(&mut self, msg: ResumeReplica, ctx: &mut Self::Context) -> Self::Result {
        let id = msg.replica_id;
        let e = self.replicas.get_mut(&id).ok_or_else(|| ReplicationError::ReplicaNotFound { replica_id: id.clone() })?;
        if !e.paused {
            return Err(ReplicationError::WrongState { replica_id: id, state: "not paused".into() });
        }
        e.paused = false;
        e.caught_up_once = false;
        // Ship from what it has: it catches up from where it stopped, not from zero.
        e.shipped_lsn = e.write_lsn;
        e.catchup_started = Some(Instant::now());
        if e.addr.is_some() {
            self.set_status(&id, ReplicaStatus::CatchingUp, "resumed by operator".into(), BTreeMap::new());
            self.evaluate(&id);
            self.ship_more(&id, ctx);
        }
        self.replica_view(&id)
    }
}

impl Handler<ListReplicas> for PrimaryActor {
    type Result = MessageResult<ListReplicas>;
    fn handle(&mut self, _: ListReplicas, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.replicas.iter().map(|(id, e)| self.view(id, e)).collect())
    }
}

impl Handler<GetReplica> for PrimaryActor {
    type Result = Result<ReplicaView, ReplicationError>;
    fn handle(&mut self, msg: GetReplica, _ctx: &mut Self::Context) -> Self::Result {
        self.replica_view(&msg.replica_id)
    }
}

impl Handler<GetReplicationStatus> for PrimaryActor {
    type Result = MessageResult<GetReplicationStatus>;
    fn handle(&mut self, _: GetReplicationStatus, _ctx: &mut Self::Context) -> Self::Result {
        let replicas: Vec<ReplicaView> = self.replicas.iter().map(|(id, e)| self.view(id, e)).collect();
        let health = if self.crashed {
            "critical"
        } else if replicas.iter().all(|r| r.status == ReplicaStatus::InSync) {
            "healthy"
        } else {
            "degraded"
        };
        MessageResult(ReplicationStatus {
            primary: self.settings.primary.clone(),
            primary_state: if self.crashed { "down".into() } else { "up".into() },
            mode: self.settings.mode,
            sync_quorum: self.settings.sync_quorum,
            sync_timeout_ms: self.settings.sync_timeout.as_millis() as u64,
            current_lsn: lsn_text(self.flush_lsn),
            current_lsn_u64: self.flush_lsn,
            replicas,
            health: health.into(),
        })
    }
}

impl Handler<ReadRow> for PrimaryActor {
    type Result = ResponseFuture<Result<Option<RowView>, ReplicationError>>;
    fn handle(&mut self, msg: ReadRow, _ctx: &mut Self::Context) -> Self::Result {
        match msg.from {
            ReadFrom::Primary => {
                let result = if self.crashed {
                    Err(ReplicationError::PrimaryDown { primary: self.settings.primary.clone() })
                } else {
                    Ok(self.rows.get(&msg.table, &msg.key).map(|v| RowView {
                        table: msg.table,
                        key: msg.key,
                        value: v.clone(),
                        from: "primary".into(),
                        replay_lsn: lsn_text(self.flush_lsn),
                        replay_lsn_u64: self.flush_lsn,
                    }))
                };
                Box::pin(async move { result })
            }
            ReadFrom::Replica(id) => {
                let addr = match self.replicas.get(&id) {
                    None => return Box::pin(async move { Err(ReplicationError::ReplicaNotFound { replica_id: id }) }),
                    Some(e) => e.addr.clone(),
                };
                let Some(addr) = addr else {
                    return Box::pin(async move { Err(ReplicationError::ReplicaDown { replica_id: id }) });
                };
                Box::pin(async move {
                    let row = addr
                        .send(ReadLocalRow { table: msg.table.clone(), key: msg.key.clone() })
                        .await
                        .map_err(|_| ReplicationError::ReplicaDown { replica_id: id.clone() })??;
                    Ok(row.map(|(value, lsn)| RowView {
                        table: msg.table,
                        key: msg.key,
                        value,
                        from: id,
                        replay_lsn: lsn_text(lsn),
                        replay_lsn_u64: lsn,
                    }))
                })
            }
        }
    }
}

/// Fault injection on the replication domain: `target` is the primary's id or a replica's.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ReplicationError>")]
pub struct CrashTarget {
    pub target: String,
}

/// Starts a crashed primary or replica again from its durable state.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ReplicationError>")]
pub struct RestartTarget {
    pub target: String,
}

/// Whether `target` names the primary or a replica (for fault-injection routing).
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct IsReplicationTarget {
    pub target: String,
}

impl Handler<IsReplicationTarget> for PrimaryActor {
    type Result = bool;
    fn handle(&mut self, msg: IsReplicationTarget, _ctx: &mut Self::Context) -> bool {
        msg.target == self.settings.primary || self.replicas.contains_key(&msg.target)
    }
}

impl Handler<CrashTarget> for PrimaryActor {
    type Result = Result<(), ReplicationError>;
    fn handle(&mut self, msg: CrashTarget, _ctx: &mut Self::Context) -> Self::Result {
        if msg.target == self.settings.primary {
            if self.crashed {
                return Err(ReplicationError::WrongState { replica_id: msg.target, state: "down".into() });
            }
            self.go_down("crashed by fault injection");
            self.crashed_at_ms = Some(now_ms());
            self.publish(
                Severity::Critical,
                format!("primary:{}", self.settings.primary),
                EventPayload::ReplicationError(ReplicationErrorEvent {
                    replica_id: String::new(),
                    error_code: "primary_down".into(),
                    error_message: "the primary crashed (fault injection); writes are refused until it is restarted".into(),
                    severity: Severity::Critical,
                    failed_operation: "crash".into(),
                    retry_count: 0,
                }),
            );
            return Ok(());
        }
        let id = msg.target;
        let e = self.replicas.get_mut(&id).ok_or_else(|| ReplicationError::ReplicaNotFound { replica_id: id.clone() })?;
        let addr = e.addr.take().ok_or_else(|| ReplicationError::WrongState { replica_id: id.clone(), state: "down".into() })?;
        addr.do_send(CrashReplica);
        drop(addr);
        e.connected = false;
        e.crashed_at_ms = Some(now_ms());
        self.set_status(&id, ReplicaStatus::Failed, "crashed by fault injection".into(), BTreeMap::new());
        Ok(())
    }
}

impl Handler<RestartTarget> for PrimaryActor {
    type Result = Result<(), ReplicationError>;
    fn handle(&mut self, msg: RestartTarget, ctx: &mut Self::Context) -> Self::Result {
        if msg.target == self.settings.primary {
            if !self.crashed {
                return Err(ReplicationError::WrongState { replica_id: msg.target, state: "up".into() });
            }
            // A new timeline: replicas are reconciled, then shipped again from what they have.
            self.load(ctx);
            self.crashed_at_ms = None;
            return Ok(());
        }
        let id = msg.target;
        let e = self.replicas.get(&id).ok_or_else(|| ReplicationError::ReplicaNotFound { replica_id: id.clone() })?;
        if e.addr.is_some() {
            return Err(ReplicationError::WrongState { replica_id: id, state: "up".into() });
        }
        self.start_replica(&id, ctx);
        if let Some(e) = self.replicas.get_mut(&id) {
            e.crashed_at_ms = None;
        }
        self.set_status(&id, ReplicaStatus::Starting, "restarted by operator".into(), BTreeMap::new());
        Ok(())
    }
}

impl PrimaryActor {
    fn restart_heartbeat_check(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.heartbeat_check.take() {
            ctx.cancel_future(h);
        }
        self.heartbeat_check = Some(ctx.run_interval(self.settings.heartbeat_interval, |act, _| act.check_heartbeats()));
    }

    /// Makes `next` durable, then puts it in force.
    fn save_settings(&mut self, next: ReplicationSettingsView) -> AtomicResponse<Self, Result<ReplicationSettingsView, ReplicationError>> {
        let store = self.store.clone();
        let bytes = serde_json::to_vec(&next);
        let write = actix_rt::task::spawn_blocking(move || {
            let bytes = bytes.map_err(|e| crate::storage::StorageError::Backend(e.to_string()))?;
            store.put_record(SETTINGS, SETTINGS_RECORD, &bytes)
        });
        AtomicResponse::new(Box::pin(write.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Ok(())) => {
                let heartbeat_changed = next.heartbeat_interval_ms != act.settings.view().heartbeat_interval_ms;
                act.settings.apply(&next);
                if heartbeat_changed {
                    act.restart_heartbeat_check(ctx);
                    for e in act.replicas.values() {
                        if let Some(addr) = &e.addr {
                            addr.do_send(SetReportInterval { interval: act.settings.heartbeat_interval });
                        }
                    }
                }
                // A weaker mode may release writes that wait.
                act.settle_waiters();
                Ok(act.settings.view())
            }
            Ok(Err(e)) => Err(ReplicationError::Storage { message: e.to_string() }),
            Err(e) => Err(ReplicationError::Storage { message: e.to_string() }),
        })))
    }
}

fn invalid_now<T: 'static>(field: &str, reason: String) -> AtomicResponse<PrimaryActor, Result<T, ReplicationError>> {
    AtomicResponse::new(Box::pin(actix::fut::ready(Err(ReplicationError::InvalidField { field: field.into(), reason }))))
}

impl Handler<SetReplicationConfig> for PrimaryActor {
    type Result = AtomicResponse<Self, Result<ReplicationSettingsView, ReplicationError>>;
    fn handle(&mut self, msg: SetReplicationConfig, _ctx: &mut Self::Context) -> Self::Result {
        let mut next = self.settings.view();
        next.mode = msg.mode;
        if let Some(q) = msg.sync_quorum {
            next.sync_quorum = q;
        }
        if let Some(t) = msg.sync_timeout_ms {
            if !(1..=3_600_000).contains(&t) {
                return invalid_now("sync_timeout_ms", format!("must be between 1 and 3600000 (got {t})"));
            }
            next.sync_timeout_ms = t;
        }
        if next.mode == ReplicationMode::SemiSync && !(1..=self.replicas.len()).contains(&next.sync_quorum) {
            return invalid_now(
                "sync_quorum",
                format!("semi_sync needs a quorum between 1 and the {} replicas (got {})", self.replicas.len(), next.sync_quorum),
            );
        }
        self.save_settings(next)
    }
}

impl Handler<SetConflictStrategy> for PrimaryActor {
    type Result = AtomicResponse<Self, Result<ReplicationSettingsView, ReplicationError>>;
    fn handle(&mut self, msg: SetConflictStrategy, _ctx: &mut Self::Context) -> Self::Result {
        let mut next = self.settings.view();
        match (msg.strategy, msg.site_priority) {
            (ConflictStrategy::SitePriority, None) => {
                return invalid_now("site_priority", "site_priority needs the list of sites, highest first".into())
            }
            (ConflictStrategy::SitePriority, Some(sites)) => {
                if sites.is_empty() {
                    return invalid_now("site_priority", "at least one site".into());
                }
                for (i, site) in sites.iter().enumerate() {
                    if let Err(reason) = crate::model::validate_id(site) {
                        return invalid_now(&format!("site_priority[{i}]"), reason);
                    }
                    if sites[..i].contains(site) {
                        return invalid_now(&format!("site_priority[{i}]"), format!("'{site}' is listed twice"));
                    }
                }
                next.site_priority = sites;
            }
            (_, Some(_)) => {
                return invalid_now("site_priority", "only the site_priority strategy takes a site list".into())
            }
            (_, None) => next.site_priority = Vec::new(),
        }
        next.conflict_strategy = msg.strategy;
        self.save_settings(next)
    }
}

impl Handler<SetHeartbeat> for PrimaryActor {
    type Result = AtomicResponse<Self, Result<ReplicationSettingsView, ReplicationError>>;
    fn handle(&mut self, msg: SetHeartbeat, _ctx: &mut Self::Context) -> Self::Result {
        if !(1..=3_600_000).contains(&msg.interval_ms) {
            return invalid_now("interval_ms", format!("must be between 1 and 3600000 (got {})", msg.interval_ms));
        }
        if msg.timeout_ms <= msg.interval_ms || msg.timeout_ms > 86_400_000 {
            return invalid_now(
                "timeout_ms",
                format!("must be greater than interval_ms ({}) and at most 86400000 (got {})", msg.interval_ms, msg.timeout_ms),
            );
        }
        let mut next = self.settings.view();
        next.heartbeat_interval_ms = msg.interval_ms;
        next.heartbeat_timeout_ms = msg.timeout_ms;
        self.save_settings(next)
    }
}

impl PrimaryActor {
    /// What holds WAL back: every replica (from its flushed position: what it has not made
    /// durable yet, it may need again) and every slot (from its restart position).
    fn holders(&self) -> Vec<WalHolder> {
        let flush = self.flush_lsn;
        let holder = |kind: &str, name: &str, lsn: u64| WalHolder {
            kind: kind.into(),
            name: name.into(),
            needs_from_lsn: lsn_text(lsn),
            needs_from_lsn_u64: lsn,
            retained_bytes: flush.saturating_sub(lsn),
        };
        let mut out: Vec<WalHolder> = self
            .replicas
            .iter()
            .map(|(id, e)| holder("replica", id, e.seeding.map_or(e.replay_lsn, |seed| seed.min(e.replay_lsn))))
            .collect();
        out.extend(self.slots.iter().map(|(name, s)| holder("slot", name, s.restart_lsn)));
        // The stored rows reflect the WAL up to here; the rest is replayed after a crash.
        out.push(holder("checkpoint", &self.settings.primary, self.checkpoint.needs_from()));
        if let Some((id, lsn)) = &self.newest_snapshot {
            out.push(holder("snapshot", id, *lsn));
        }
        out
    }

    /// WAL before this lsn goes at the next truncation: what no replica, slot or snapshot needs.
    /// The checkpoint's own need is left out: a truncation checkpoints first.
    fn truncatable_before(&self) -> u64 {
        self.holders()
            .iter()
            .filter(|h| h.kind != "checkpoint")
            .map(|h| h.needs_from_lsn_u64)
            .min()
            .unwrap_or(self.flush_lsn)
            .min(self.flush_lsn)
    }

    /// Writes the shards changed since the last checkpoint (about as many rows as were applied
    /// since) and, when `truncate` (or a `/wal/truncate` caller waits), every changed shard and
    /// then drops the WAL nobody needs. One at a time, off the arbiter (but for copying the
    /// shards' pointers); what is asked meanwhile runs next.
    fn maintain(&mut self, ctx: &mut Context<Self>, truncate: bool) {
        if self.crashed {
            for reply in self.truncate_waiting.drain(..) {
                let _ = reply.send(Err(ReplicationError::PrimaryDown { primary: self.settings.primary.clone() }));
            }
            return;
        }
        if self.maintenance_in_flight {
            return;
        }
        let replies = std::mem::take(&mut self.truncate_waiting);
        let truncate = truncate || !replies.is_empty();
        let images = match self.checkpoint.start(truncate, false) {
            Some(plan) => {
                let images = self.rows.capture(&plan, self.flush_lsn);
                if images.is_none() {
                    self.checkpoint.finished(None);
                }
                images
            }
            None => None,
        };
        if images.is_none() && !truncate {
            return;
        }
        let written = images.as_ref().map(|i| (i.lsn, stored_shards(i)));
        let before = self.truncatable_before();
        let store = self.store.clone();
        let primary = self.settings.primary.clone();
        self.maintenance_in_flight = true;
        let task = actix_rt::task::spawn_blocking(move || {
            if let Some(images) = images {
                if !store.write_row_images(&primary, images)? {
                    return Err(crate::storage::StorageError::Backend(format!("{primary}'s rows were replaced while being written")));
                }
            }
            if !truncate {
                return Ok(None);
            }
            // Up to what every shard stored reflects: all of them, after the full checkpoint.
            let before = before.min(store.rows_lsn(&primary)?);
            let removed = store.truncate_log(&primary, before)?;
            let oldest = store.log_bounds(&primary)?.map(|b| b.0).unwrap_or(before);
            Ok::<_, crate::storage::StorageError>(Some((removed, oldest)))
        });
        ctx.spawn(task.into_actor(self).map(move |res, act, ctx| {
            act.maintenance_in_flight = false;
            let res = match res {
                Ok(r) => r,
                Err(e) => Err(crate::storage::StorageError::Backend(e.to_string())),
            };
            if act.checkpoint.in_flight() {
                match (&res, &written) {
                    (Ok(_), Some((lsn, shards))) => act.checkpoint.finished(Some((*lsn, shards))),
                    _ => {
                        // A failed checkpoint loses nothing: the WAL from its shards' older lsn
                        // is kept (the checkpoint holds it) and replayed on the next start; a
                        // later checkpoint writes the shards again.
                        if let Some((_, shards)) = &written {
                            act.rows.mark_dirty(shards.iter().map(|&s| usize::from(s)));
                        }
                        act.checkpoint.finished(None);
                    }
                }
            }
            let result = match res {
                Ok(Some((removed, oldest))) => {
                    act.oldest_retained = oldest;
                    if removed > 0 {
                        tracing::info!(removed, oldest_retained_lsn = %lsn_text(oldest), "WAL truncated");
                    }
                    Ok(WalTruncated { records_removed: removed, oldest_retained_lsn: lsn_text(oldest), oldest_retained_lsn_u64: oldest })
                }
                Ok(None) => return act.maintain_again(ctx),
                Err(e) => {
                    tracing::error!(error = %e, "checkpoint or WAL truncation failed");
                    Err(ReplicationError::Storage { message: e.to_string() })
                }
            };
            for reply in replies {
                let _ = reply.send(result.clone());
            }
            act.maintain_again(ctx);
        }));
    }

    /// After a checkpoint or truncation: the next one, if one is waiting or due.
    fn maintain_again(&mut self, ctx: &mut Context<Self>) {
        if !self.truncate_waiting.is_empty() || self.checkpoint.due() {
            self.maintain(ctx, false);
        }
    }

    fn slot_view(&self, name: &str, s: &SlotRecord) -> SlotView {
        SlotView {
            slot_name: name.to_string(),
            slot_type: s.slot_type,
            active: false,
            restart_lsn: lsn_text(s.restart_lsn),
            restart_lsn_u64: s.restart_lsn,
            confirmed_flush_lsn: lsn_text(s.confirmed_flush_lsn),
            confirmed_flush_lsn_u64: s.confirmed_flush_lsn,
            retained_bytes: self.flush_lsn.saturating_sub(s.restart_lsn),
            wal_status: "reserved".into(),
        }
    }

    fn slot_event(&self, created: bool, name: &str, s: &SlotRecord) {
        let change = SlotChange {
            slot_name: name.to_string(),
            slot_type: match s.slot_type {
                SlotType::Physical => "physical".into(),
                SlotType::Logical => "logical".into(),
            },
            active: false,
            restart_lsn: lsn_text(s.restart_lsn),
            confirmed_flush_lsn: lsn_text(s.confirmed_flush_lsn),
        };
        let payload = if created { EventPayload::SlotCreated(change) } else { EventPayload::SlotDropped(change) };
        self.publish(Severity::Info, format!("slot:{name}"), payload);
    }

    fn persist_slot<T: 'static>(
        &mut self,
        name: String,
        record: Option<SlotRecord>,
        apply: impl FnOnce(&mut Self) -> Result<T, ReplicationError> + 'static,
    ) -> AtomicResponse<Self, Result<T, ReplicationError>> {
        self.persist_record(SLOTS, name, record, move |act, _| apply(act))
    }
}

fn slot_not_found(slot_name: String) -> ReplicationError {
    ReplicationError::SlotNotFound { slot_name }
}

impl Handler<GetWalStatus> for PrimaryActor {
    type Result = ResponseActFuture<Self, Result<WalStatus, ReplicationError>>;
    fn handle(&mut self, _: GetWalStatus, _ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let primary = self.settings.primary.clone();
        let bounds = actix_rt::task::spawn_blocking(move || store.log_bounds(&primary));
        Box::pin(bounds.into_actor(self).map(|res, act, _| {
            let oldest = match res {
                Ok(Ok(b)) => b.map(|b| b.0).unwrap_or(act.flush_lsn),
                Ok(Err(e)) => return Err(ReplicationError::Storage { message: e.to_string() }),
                Err(e) => return Err(ReplicationError::Storage { message: e.to_string() }),
            };
            Ok(WalStatus {
                current_lsn: lsn_text(act.next_lsn),
                current_lsn_u64: act.next_lsn,
                flushed_lsn: lsn_text(act.flush_lsn),
                flushed_lsn_u64: act.flush_lsn,
                oldest_retained_lsn: lsn_text(oldest),
                oldest_retained_lsn_u64: oldest,
                retained_bytes: act.flush_lsn.saturating_sub(oldest),
                retained_by: act.holders(),
                truncatable_before_u64: act.truncatable_before(),
            })
        }))
    }
}

impl Handler<TruncateWal> for PrimaryActor {
    type Result = ResponseFuture<Result<WalTruncated, ReplicationError>>;
    fn handle(&mut self, _: TruncateWal, ctx: &mut Self::Context) -> Self::Result {
        if self.crashed {
            let primary = self.settings.primary.clone();
            return Box::pin(async move { Err(ReplicationError::PrimaryDown { primary }) });
        }
        let (reply, answer) = oneshot::channel();
        self.truncate_waiting.push(reply);
        self.maintain(ctx, true);
        Box::pin(async move {
            answer.await.unwrap_or(Err(ReplicationError::Storage { message: "truncation was abandoned".into() }))
        })
    }
}

impl Handler<CreateSlot> for PrimaryActor {
    type Result = AtomicResponse<Self, Result<SlotView, ReplicationError>>;
    fn handle(&mut self, msg: CreateSlot, _ctx: &mut Self::Context) -> Self::Result {
        let refuse_now = |e| AtomicResponse::new(Box::pin(actix::fut::ready(Err(e))));
        if let Err(reason) = crate::model::validate_id(&msg.slot_name) {
            return refuse_now(ReplicationError::InvalidField { field: "slot_name".into(), reason });
        }
        if self.slots.contains_key(&msg.slot_name) {
            return refuse_now(ReplicationError::SlotExists { slot_name: msg.slot_name });
        }
        if self.slots.len() >= MAX_SLOTS {
            return refuse_now(ReplicationError::InvalidField {
                field: "slot_name".into(),
                reason: format!("at most {MAX_SLOTS} slots; drop one first"),
            });
        }
        let record = SlotRecord { slot_type: msg.slot_type, restart_lsn: self.flush_lsn, confirmed_flush_lsn: self.flush_lsn };
        let name = msg.slot_name;
        let stored = record.clone();
        self.persist_slot(name.clone(), Some(record), move |act| {
            act.slots.insert(name.clone(), stored.clone());
            act.slot_event(true, &name, &stored);
            Ok(act.slot_view(&name, &stored))
        })
    }
}

impl Handler<ListSlots> for PrimaryActor {
    type Result = MessageResult<ListSlots>;
    fn handle(&mut self, _: ListSlots, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.slots.iter().map(|(n, s)| self.slot_view(n, s)).collect())
    }
}

impl Handler<GetSlot> for PrimaryActor {
    type Result = Result<SlotView, ReplicationError>;
    fn handle(&mut self, msg: GetSlot, _ctx: &mut Self::Context) -> Self::Result {
        match self.slots.get(&msg.slot_name) {
            Some(s) => Ok(self.slot_view(&msg.slot_name, s)),
            None => Err(slot_not_found(msg.slot_name)),
        }
    }
}

impl Handler<DropSlot> for PrimaryActor {
    type Result = AtomicResponse<Self, Result<(), ReplicationError>>;
    fn handle(&mut self, msg: DropSlot, _ctx: &mut Self::Context) -> Self::Result {
        let Some(record) = self.slots.get(&msg.slot_name).cloned() else {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(slot_not_found(msg.slot_name)))));
        };
        let name = msg.slot_name;
        self.persist_slot(name.clone(), None, move |act| {
            act.slots.remove(&name);
            act.slot_event(false, &name, &record);
            Ok(())
        })
    }
}

impl Handler<AdvanceSlot> for PrimaryActor {
    type Result = AtomicResponse<Self, Result<SlotView, ReplicationError>>;
    fn handle(&mut self, msg: AdvanceSlot, _ctx: &mut Self::Context) -> Self::Result {
        let refuse_now = |e| AtomicResponse::new(Box::pin(actix::fut::ready(Err(e))));
        let Some(current) = self.slots.get(&msg.slot_name).cloned() else {
            return refuse_now(slot_not_found(msg.slot_name));
        };
        if msg.lsn > self.flush_lsn {
            return refuse_now(ReplicationError::InvalidField {
                field: "lsn".into(),
                reason: format!("{} is past the flushed WAL ({})", lsn_text(msg.lsn), lsn_text(self.flush_lsn)),
            });
        }
        if msg.lsn < current.confirmed_flush_lsn {
            return refuse_now(ReplicationError::InvalidField {
                field: "lsn".into(),
                reason: format!(
                    "{} is before the slot's confirmed position {}: a slot only moves forward",
                    lsn_text(msg.lsn),
                    lsn_text(current.confirmed_flush_lsn)
                ),
            });
        }
        let record = SlotRecord { slot_type: current.slot_type, restart_lsn: msg.lsn, confirmed_flush_lsn: msg.lsn };
        let name = msg.slot_name;
        let stored = record.clone();
        self.persist_slot(name.clone(), Some(record), move |act| {
            act.slots.insert(name.clone(), stored.clone());
            Ok(act.slot_view(&name, &stored))
        })
    }
}

impl Handler<PeekSlotChanges> for PrimaryActor {
    type Result = ResponseFuture<Result<SlotChanges, ReplicationError>>;
    fn handle(&mut self, msg: PeekSlotChanges, _ctx: &mut Self::Context) -> Self::Result {
        let Some(slot) = self.slots.get(&msg.slot_name).cloned() else {
            return Box::pin(async move { Err(slot_not_found(msg.slot_name)) });
        };
        if slot.slot_type != SlotType::Logical {
            return Box::pin(async move {
                Err(ReplicationError::InvalidField {
                    field: "slot_name".into(),
                    reason: format!("'{}' is a physical slot: only logical slots decode changes", msg.slot_name),
                })
            });
        }
        let store = self.store.clone();
        let primary = self.settings.primary.clone();
        let limit = msg.limit.max(1);
        let name = msg.slot_name;
        Box::pin(async move {
            let from = slot.confirmed_flush_lsn;
            let decode = actix_rt::task::spawn_blocking(move || {
                let mut changes = Vec::new();
                let mut next = from;
                let mut cursor = from;
                'records: loop {
                    let records = store.read_log(&primary, cursor, 1 << 20)?;
                    if records.is_empty() {
                        break;
                    }
                    for (lsn, bytes) in records {
                        let end = lsn + bytes.len() as u64;
                        let record: WalRecord = serde_json::from_slice(&bytes).map_err(|e| {
                            crate::storage::StorageError::Backend(format!("WAL record at {} unreadable: {e}", lsn_text(lsn)))
                        })?;
                        // Whole records only: a consumer advances to a record boundary.
                        if !changes.is_empty() && changes.len() + record.ops.len() > limit {
                            break 'records;
                        }
                        for op in record.ops {
                            changes.push(DecodedChange {
                                lsn: lsn_text(lsn),
                                lsn_u64: lsn,
                                end_lsn_u64: end,
                                committed_at_ms: record.committed_at_ms,
                                op: op.op,
                                table: op.table.to_string(),
                                key: op.key.to_string(),
                                value: op.value.map(|v| v.value().clone()),
                            });
                        }
                        next = end;
                        cursor = end;
                        if changes.len() >= limit {
                            break 'records;
                        }
                    }
                }
                Ok::<_, crate::storage::StorageError>((changes, next))
            });
            let (changes, next) = decode
                .await
                .map_err(|e| ReplicationError::Storage { message: e.to_string() })?
                .map_err(|e| ReplicationError::Storage { message: e.to_string() })?;
            Ok(SlotChanges {
                slot_name: name,
                confirmed_flush_lsn: lsn_text(from),
                changes,
                next_lsn: lsn_text(next),
                next_lsn_u64: next,
            })
        })
    }
}

/// A snapshot as stored: the primary's committed rows at `lsn`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct SnapshotRecord {
    snapshot_id: String,
    lsn: u64,
    created_at_ms: i64,
    bytes: u64,
    rows: Vec<(String, String, serde_json::Value)>,
}

impl SnapshotRecord {
    fn view(&self) -> SnapshotView {
        SnapshotView {
            snapshot_id: self.snapshot_id.clone(),
            lsn: lsn_text(self.lsn),
            lsn_u64: self.lsn,
            rows: self.rows.len() as u64,
            bytes: self.bytes,
            created_at_ms: self.created_at_ms,
        }
    }

    fn change(&self, target: &str) -> SnapshotChange {
        SnapshotChange {
            snapshot_id: self.snapshot_id.clone(),
            lsn: lsn_text(self.lsn),
            rows: self.rows.len() as u64,
            bytes: self.bytes,
            target: target.to_string(),
        }
    }
}

impl PrimaryActor {
    /// Sends a replica a base copy at `lsn`; nothing is shipped to it until it reports having it.
    fn reseed(&mut self, id: &str, rows: Arc<Vec<(String, String, serde_json::Value)>>, lsn: u64) {
        let Some(e) = self.replicas.get_mut(id) else { return };
        e.seeding = Some(lsn);
        e.shipped_lsn = lsn;
        if let Some(addr) = &e.addr {
            addr.do_send(Reseed { rows, lsn, timeline: self.timeline });
        }
    }

    /// A snapshot can seed a replica only if the WAL since its lsn is still kept.
    fn check_restorable(&self, snap: &SnapshotRecord, target: &str) -> Result<(), ReplicationError> {
        if snap.lsn < self.oldest_retained || snap.lsn > self.flush_lsn {
            return Err(ReplicationError::WalGone {
                lsn: lsn_text(snap.lsn),
                oldest: lsn_text(self.oldest_retained),
                what: target.to_string(),
            });
        }
        Ok(())
    }
}

impl Handler<CreateSnapshot> for PrimaryActor {
    type Result = AtomicResponse<Self, Result<SnapshotView, ReplicationError>>;
    fn handle(&mut self, _: CreateSnapshot, _ctx: &mut Self::Context) -> Self::Result {
        if self.crashed {
            let primary = self.settings.primary.clone();
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(ReplicationError::PrimaryDown { primary }))));
        }
        // The in-memory rows are exactly the committed state at flush_lsn (accepted, not yet
        // durable batches live in the overlay): a consistent snapshot without a pause.
        let rows = self.rows.sorted_rows();
        let lsn = self.flush_lsn;
        let store = self.store.clone();
        let write = actix_rt::task::spawn_blocking(move || {
            let n = store.get_meta("snapshot_seq")?.unwrap_or(0) + 1;
            let bytes = rows.iter().map(|r| json_len(&r.2) as u64).sum();
            let record = SnapshotRecord { snapshot_id: format!("snap_{n:06}"), lsn, created_at_ms: now_ms(), bytes, rows };
            let encoded = serde_json::to_vec(&record).map_err(|e| crate::storage::StorageError::Backend(e.to_string()))?;
            store.put_record(SNAPSHOTS, &record.snapshot_id, &encoded)?;
            store.put_meta("newest_snapshot_lsn", lsn)?;
            store.put_meta("snapshot_seq", n)?;
            Ok::<_, crate::storage::StorageError>(record)
        });
        AtomicResponse::new(Box::pin(write.into_actor(self).map(|res, act, _| match res {
            Ok(Ok(record)) => {
                act.newest_snapshot = Some((record.snapshot_id.clone(), record.lsn));
                act.publish(Severity::Info, format!("primary:{}", act.settings.primary), EventPayload::SnapshotCreated(record.change("")));
                Ok(record.view())
            }
            Ok(Err(e)) => Err(ReplicationError::Storage { message: e.to_string() }),
            Err(e) => Err(ReplicationError::Storage { message: e.to_string() }),
        })))
    }
}

impl Handler<ListSnapshots> for PrimaryActor {
    type Result = ResponseFuture<Result<Vec<SnapshotView>, ReplicationError>>;
    fn handle(&mut self, _: ListSnapshots, _ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            let rows = actix_rt::task::spawn_blocking(move || store.list_records(SNAPSHOTS))
                .await
                .map_err(|e| ReplicationError::Storage { message: e.to_string() })?
                .map_err(|e| ReplicationError::Storage { message: e.to_string() })?;
            Ok(rows
                .into_iter()
                .filter_map(|(_, bytes)| serde_json::from_slice::<SnapshotRecord>(&bytes).ok())
                .map(|r| r.view())
                .collect())
        })
    }
}

impl Handler<RestoreSnapshot> for PrimaryActor {
    type Result = AtomicResponse<Self, Result<SnapshotView, ReplicationError>>;
    fn handle(&mut self, msg: RestoreSnapshot, _ctx: &mut Self::Context) -> Self::Result {
        match self.replicas.get(&msg.target) {
            None => {
                return AtomicResponse::new(Box::pin(actix::fut::ready(Err(ReplicationError::ReplicaNotFound {
                    replica_id: msg.target,
                }))))
            }
            Some(e) if e.addr.is_none() => {
                return AtomicResponse::new(Box::pin(actix::fut::ready(Err(ReplicationError::ReplicaDown {
                    replica_id: msg.target,
                }))))
            }
            Some(_) => {}
        }
        let store = self.store.clone();
        let snapshot_id = msg.snapshot_id;
        let target = msg.target;
        let read = actix_rt::task::spawn_blocking(move || store.get_record(SNAPSHOTS, &snapshot_id).map(|r| (snapshot_id, r)));
        AtomicResponse::new(Box::pin(read.into_actor(self).map(move |res, act, _| {
            let snap = match res {
                Ok(Ok((_, Some(bytes)))) => serde_json::from_slice::<SnapshotRecord>(&bytes)
                    .map_err(|e| ReplicationError::Storage { message: e.to_string() })?,
                Ok(Ok((snapshot_id, None))) => return Err(ReplicationError::SnapshotNotFound { snapshot_id }),
                Ok(Err(e)) => return Err(ReplicationError::Storage { message: e.to_string() }),
                Err(e) => return Err(ReplicationError::Storage { message: e.to_string() }),
            };
            act.check_restorable(&snap, &target)?;
            act.reseed(&target, Arc::new(snap.rows.clone()), snap.lsn);
            act.set_status(&target, ReplicaStatus::CatchingUp, format!("reseeded from snapshot {}", snap.snapshot_id), BTreeMap::new());
            act.publish(Severity::Info, format!("replica:{target}"), EventPayload::SnapshotRestored(snap.change(&target)));
            Ok(snap.view())
        })))
    }
}

/// What fault injection holds down in replication now.
#[derive(Debug, Message)]
#[rtype(result = "Vec<crate::messages::cluster::InjectedFault>")]
pub struct ListReplicationFaults;

impl Handler<ListReplicationFaults> for PrimaryActor {
    type Result = MessageResult<ListReplicationFaults>;
    fn handle(&mut self, _: ListReplicationFaults, _ctx: &mut Self::Context) -> Self::Result {
        use crate::messages::cluster::InjectedFault;
        let mut out: Vec<InjectedFault> = self
            .crashed_at_ms
            .map(|since_ms| InjectedFault { kind: "crash".into(), target: self.settings.primary.clone(), since_ms })
            .into_iter()
            .collect();
        out.extend(self.replicas.iter().filter_map(|(id, e)| {
            e.crashed_at_ms.map(|since_ms| InjectedFault { kind: "crash".into(), target: id.clone(), since_ms })
        }));
        MessageResult(out)
    }
}
