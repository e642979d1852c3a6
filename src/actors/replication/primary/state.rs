//! The primary's state, apart from the actor that drives it: its settings, the batches it took
//! in, its log, its rows, the writes waiting for replicas, the replicas, slots and retention.
//! Methods take an input (a message, a finished piece of storage work, a tick) and say what to do
//! next in an [`Outbox`]; the actor ([`super::PrimaryActor`]) runs timers and storage work and
//! routes messages. The flows live in files of their own: `commit.rs` (intake to acknowledgement),
//! `stream.rs` (shipping and reports), `membership.rs` (replicas joining, leaving, faults),
//! `retention.rs` (checkpoints, WAL kept and dropped).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::acks::{AckRule, Waiters};
use super::failover::FailoverWatch;
use super::intake::Intake;
use super::load::LoadedPrimary;
use super::log::LogTail;
use super::outbox::{Outbox, ToReplica};
use super::replicas::{ReplicaEntry, Thresholds};
use super::retention::Maintenance;
use super::settings::ReplicationSettings;
use super::slots::SlotRecord;
use crate::actors::registry::InterestTable;
use crate::actors::replication::metrics::WriteStages;
use crate::messages::events::*;
use crate::messages::replication::*;
use crate::model::{lsn_text, ClusterHealthStatus, ReplicaStatus, ReplicationMode};
use crate::storage::table::{Checkpoint, TableState};

/// Why the primary refuses writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Down {
    /// When a crash was injected, if that is why.
    pub injected_at_ms: Option<i64>,
    /// When it went down (`None`: it has not loaded yet, or is loading again).
    pub since: Option<Instant>,
}

pub struct Primary {
    pub settings: ReplicationSettings,
    /// Whether anyone listens for the sampled events, so they are built only then.
    pub(super) interest: Arc<InterestTable>,
    pub(super) intake: Intake,
    pub(super) log: LogTail,
    /// The committed rows: every durable batch applied.
    pub(super) rows: TableState,
    /// Durable batches whose rows are not in the store yet.
    pub(super) checkpoint: Checkpoint,
    pub(super) waiters: Waiters,
    /// Where each write's stage timings go.
    pub(super) stages: WriteStages,
    pub(super) replicas: BTreeMap<String, ReplicaEntry>,
    pub(super) slots: BTreeMap<String, SlotRecord>,
    pub(super) maintenance: Maintenance,
    /// Start of the oldest WAL record kept: a replica needing older WAL must be reseeded.
    pub(super) oldest_retained: u64,
    /// The newest snapshot (id, lsn): WAL since it is kept, so it can always seed a replica.
    pub(super) newest_snapshot: Option<(String, u64)>,
    /// `Some` while writes are refused: before the first load, after a crash, a failed load or
    /// a failed WAL commit.
    pub(super) down: Option<Down>,
    pub(super) failover: FailoverWatch,
}

/// What the actor does after a load.
pub struct Loaded {
    /// Replicas to start an actor for.
    pub start: Vec<String>,
    /// The settings changed at run time came back: the heartbeat timers restart with them.
    pub settings_restored: bool,
}

impl Primary {
    pub fn new(settings: ReplicationSettings, interest: Arc<InterestTable>, stages: WriteStages) -> Self {
        Primary {
            settings,
            interest,
            intake: Intake::default(),
            log: LogTail::default(),
            rows: TableState::default(),
            checkpoint: Checkpoint::default(),
            waiters: Waiters::observing(stages.replicas.clone()),
            stages,
            replicas: BTreeMap::new(),
            slots: BTreeMap::new(),
            maintenance: Maintenance::default(),
            oldest_retained: 0,
            newest_snapshot: None,
            down: Some(Down { injected_at_ms: None, since: None }),
            failover: FailoverWatch::default(),
        }
    }

    pub fn id(&self) -> &str {
        &self.settings.primary
    }

    pub fn is_down(&self) -> bool {
        self.down.is_some()
    }

    pub fn flush_lsn(&self) -> u64 {
        self.log.flush_lsn
    }

    pub(super) fn rule(&self) -> AckRule {
        AckRule { mode: self.settings.mode, sync_quorum: self.settings.sync_quorum }
    }

    pub(super) fn thresholds(&self) -> Thresholds {
        Thresholds {
            lag_alert_bytes: self.settings.lag_alert_bytes,
            heartbeat_interval: self.settings.heartbeat_interval,
            heartbeat_timeout: self.settings.heartbeat_timeout,
            wal_position_interval: self.settings.wal_position_interval,
        }
    }

    pub(super) fn primary_down(&self) -> ReplicationError {
        ReplicationError::PrimaryDown { primary: self.settings.primary.clone() }
    }

    /// Takes what a start read back: a new timeline, so every replica still running from
    /// before is reconciled now (it may hold what the last timeline shipped and never made
    /// durable) rather than at its next heartbeat. The first load also takes the replica list.
    pub fn loaded(&mut self, l: LoadedPrimary, out: &mut Outbox) -> Loaded {
        self.slots = l.slots;
        self.newest_snapshot = l.newest_snapshot;
        self.oldest_retained = l.oldest_retained;
        let settings_restored = match l.settings {
            Some(saved) => {
                if saved != self.settings.view() {
                    tracing::info!("replication settings changed at run time earlier override the config file");
                }
                self.settings.apply(&saved);
                true
            }
            None => false,
        };
        self.rows = l.table.table;
        self.checkpoint.reset(l.table.shard_lsns, l.table.epoch);
        self.intake.reset(l.flush);
        self.log.loaded(l.flush, l.timeline, l.timeline_ends);
        for e in self.replicas.values_mut() {
            e.stream.confirmed_lsn = 0;
        }
        self.down = None;
        for (id, e) in &self.replicas {
            if e.stream.running.is_some() {
                out.send(id, ToReplica::Reconcile(self.log.reconcile_for(e.stream.timeline, e.pos.replay_lsn)));
            }
        }
        let mut start = Vec::new();
        if self.replicas.is_empty() {
            for (id, mode, fresh) in l.replicas {
                self.replicas.insert(id.clone(), ReplicaEntry::new(mode));
                start.push(id.clone());
                if fresh {
                    out.publish(
                        Severity::Info,
                        format!("replica:{id}"),
                        ReplicationEvent::ReplicaAdded(ReplicaMembershipChange {
                            replica_id: id,
                            mode,
                            reason: "bootstrap".into(),
                        }),
                    );
                }
            }
        }
        tracing::info!(primary = %self.settings.primary, flush_lsn = self.log.flush_lsn, rows = self.rows.len(), replicas = self.replicas.len(), "replication primary loaded");
        let sync_replicas = self.sync_replicas();
        if self.settings.mode == ReplicationMode::SemiSync && self.settings.sync_quorum > sync_replicas {
            // Possible only when the config file and the durable replica list disagree (the
            // run-time paths refuse it): say so, since no write can be acknowledged like this.
            tracing::warn!(
                sync_quorum = self.settings.sync_quorum,
                sync_replicas,
                "semi_sync quorum is out of reach: every write will answer 504 until a sync replica is added or sync_quorum lowered"
            );
        }
        Loaded { start, settings_restored }
    }

    /// Stops taking writes: what waits is answered (durable batches say they are), the
    /// in-memory state is dropped (a restart reloads it).
    pub fn go_down(&mut self, why: &str, injected_at_ms: Option<i64>) {
        self.down = Some(Down { injected_at_ms, since: Some(Instant::now()) });
        let primary = self.settings.primary.clone();
        self.intake.refuse_all(|| ReplicationError::PrimaryDown { primary: primary.clone() });
        // These batches are durable already: say so, so a client does not retry blindly.
        self.waiters.refuse_all(|lsn| ReplicationError::PrimaryDownAfterCommit { primary: primary.clone(), lsn });
        self.maintenance.refuse_all(|| ReplicationError::PrimaryDown { primary: primary.clone() });
        self.rows.clear();
        self.log.forget_recent();
        tracing::warn!(primary = %self.settings.primary, why, "replication primary is down");
    }

    /// A restart of the primary begins: down, but no longer an injected crash (a failed load
    /// leaves it down).
    pub fn restarting(&mut self) {
        self.down = Some(Down { injected_at_ms: None, since: None });
    }

    /// The replica `id`, or why not.
    pub(super) fn replica(&self, id: &str) -> Result<&ReplicaEntry, ReplicationError> {
        self.replicas.get(id).ok_or_else(|| ReplicationError::ReplicaNotFound { replica_id: id.to_string() })
    }

    pub(super) fn replica_mut(&mut self, id: &str) -> Result<&mut ReplicaEntry, ReplicationError> {
        self.replicas.get_mut(id).ok_or_else(|| ReplicationError::ReplicaNotFound { replica_id: id.to_string() })
    }

    /// Whether `target` is this primary or one of its replicas.
    pub fn owns(&self, target: &str) -> bool {
        target == self.settings.primary || self.replicas.contains_key(target)
    }

    /// Changes replica `id`'s status (publishing the change).
    pub(super) fn set_status(&mut self, id: &str, status: ReplicaStatus, reason: String, out: &mut Outbox) {
        let flush = self.log.flush_lsn;
        if let Some(e) = self.replicas.get_mut(id) {
            e.set_status(id, status, reason, BTreeMap::new(), flush, out);
        }
    }

    // ---- what an operator sees ---------------------------------------------------------------

    pub fn replica_view(&self, id: &str) -> Result<ReplicaView, ReplicationError> {
        if let Some(view) = self.promoted_view(id) {
            return Ok(view);
        }
        Ok(self.replica(id)?.view(id, self.log.flush_lsn))
    }

    pub fn replica_views(&self) -> Vec<ReplicaView> {
        self.replicas.iter().map(|(id, e)| e.view(id, self.log.flush_lsn)).collect()
    }

    pub fn status(&self) -> ReplicationStatus {
        let replicas = self.replica_views();
        let health = if self.is_down() {
            ClusterHealthStatus::Critical
        } else if replicas.iter().all(|r| r.status == ReplicaStatus::InSync) {
            ClusterHealthStatus::Healthy
        } else {
            ClusterHealthStatus::Degraded
        };
        ReplicationStatus {
            primary: self.settings.primary.clone(),
            primary_state: if self.is_down() { "down".into() } else { "up".into() },
            mode: self.settings.mode,
            sync_quorum: self.settings.sync_quorum,
            sync_timeout_ms: self.settings.sync_timeout.as_millis() as u64,
            current_lsn: lsn_text(self.log.flush_lsn),
            current_lsn_u64: self.log.flush_lsn,
            replicas,
            health,
        }
    }

    pub fn health(&self) -> Vec<ReplicaHealth> {
        let t = self.thresholds();
        self.replicas.iter().map(|(id, e)| e.health_report(id, self.log.flush_lsn, &t)).collect()
    }

    pub fn lag_history(&self, replica_id: Option<&str>, seconds: u64) -> Result<Vec<LagHistory>, ReplicationError> {
        if let Some(id) = replica_id {
            self.replica(id)?;
        }
        let since = now_ms() - (seconds.min(86_400) as i64) * 1000;
        Ok(self
            .replicas
            .iter()
            .filter(|(id, _)| replica_id.is_none_or(|wanted| wanted == id.as_str()))
            .map(|(id, e)| LagHistory { replica_id: id.clone(), samples: e.samples_since(since) })
            .collect())
    }

    pub fn throughput(&mut self) -> Throughput {
        let now = Instant::now();
        let (ops, bytes) = self.log.throughput(now);
        let replicas = self
            .replicas
            .iter_mut()
            .map(|(id, e)| ReplicaThroughput { replica_id: id.clone(), replayed_bytes_per_second: e.replayed_per_second(now) })
            .collect();
        Throughput {
            window_seconds: super::log::THROUGHPUT_WINDOW.as_secs_f64(),
            primary_ops_per_second: ops,
            primary_bytes_per_second: bytes,
            replicas,
        }
    }

    /// A row of the committed state.
    pub fn read(&self, table: String, key: String) -> Result<Option<RowView>, ReplicationError> {
        if self.is_down() {
            return Err(self.primary_down());
        }
        Ok(self.rows.get(&table, &key).map(|v| RowView {
            value: v.clone(),
            table,
            key,
            from: "primary".into(),
            replay_lsn: lsn_text(self.log.flush_lsn),
            replay_lsn_u64: self.log.flush_lsn,
        }))
    }
}

impl Primary {
    /// Settings `next` are durable: in force now. A new heartbeat interval goes to every
    /// running replica (its report interval); whether it changed is returned (the actor restarts
    /// its heartbeat check). A weaker mode may release writes that wait.
    pub fn settings_saved(&mut self, next: &ReplicationSettingsView, out: &mut Outbox) -> bool {
        let heartbeat_changed = next.heartbeat_interval_ms != self.settings.view().heartbeat_interval_ms;
        self.settings.apply(next);
        if heartbeat_changed {
            for (id, e) in &self.replicas {
                if e.stream.running.is_some() {
                    out.send(id, ToReplica::ReportEvery(self.settings.heartbeat_interval));
                }
            }
        }
        self.settle_waiters();
        heartbeat_changed
    }
}
