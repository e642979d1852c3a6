//! Replication failover as the primary's state sees it: when the primary has been down for the
//! heartbeat timeout, or an operator asks for a switchover, which replica is promoted (the one
//! with the highest flushed position; in `sync` and `semi_sync` only one holding every
//! acknowledged write), what the replacement lacks, and the replicas taken back after it.
//! The actor runs the steps between: recording the new primary in the cluster's metadata,
//! stopping the replica, preparing its store ([`prepare`]) and loading it as the primary.

use std::time::{Duration, Instant};

use super::load::REPLICAS;
use super::outbox::Outbox;
use super::replicas::ReplicaEntry;
use super::settings::SETTINGS;
use super::state::Primary;
use crate::messages::cluster::ClusterEvent;
use crate::messages::events::Severity;
use crate::messages::replication::{Relinquished, ReplicaView, ReplicationError};
use crate::model::{FailoverChange, ReplicaMode, ReplicaStatus, ReplicationMode};
use crate::storage::{LogCommit, StorageError, Store};

/// The record (in [`SETTINGS`]) naming the replication primary after a failover: it wins over
/// the config file's `replication.primary`.
const PRIMARY_RECORD: &str = "replication_primary";

/// The key of the cluster's metadata that names the replication primary.
pub const PRIMARY_KEY: &str = "replication.primary";

/// How long a switchover waits for its target to hold everything the primary made durable.
const SWITCHOVER_WAIT: Duration = Duration::from_secs(5);

/// A failover under way.
#[derive(Debug, Clone)]
pub struct FailoverPlan {
    pub id: String,
    pub failed: String,
    pub candidate: String,
    pub manual: bool,
    pub started: Instant,
}

impl FailoverPlan {
    pub fn change(&self, replacement: Option<String>, success: bool, error: Option<String>, lost_writes: u64) -> FailoverChange {
        FailoverChange {
            failover_id: self.id.clone(),
            scope: "replication".into(),
            failed_node: self.failed.clone(),
            replacement_node: replacement,
            failover_type: if self.manual { "manual" } else { "automatic" }.into(),
            duration_seconds: if success || error.is_some() { self.started.elapsed().as_secs_f64() } else { 0.0 },
            success,
            error_message: error,
            lost_writes,
        }
    }
}

/// What a check finds to do.
#[derive(Debug)]
pub enum FailoverStep {
    Start(FailoverPlan),
    /// A switchover whose target did not catch up in time: the primary comes back instead.
    Abandon(FailoverPlan, String),
}

/// What the primary's state keeps about failovers.
#[derive(Debug, Default)]
pub struct FailoverWatch {
    /// The failover under way.
    pub running: Option<FailoverPlan>,
    /// A switchover waiting for its target to catch up, and until when.
    switchover: Option<(FailoverPlan, Instant)>,
    /// The down period (its start) for which a failover was found impossible, said once.
    refused_for: Option<Instant>,
    /// The primary this one replaced, while it is the promoted replica.
    pub promoted_from: Option<String>,
}

impl Primary {
    /// The failover to start now, if one is due: the primary has been down (not merely loading)
    /// for the heartbeat timeout, or a switchover's target caught up (or ran out of time: then
    /// it is abandoned, as promoting it would lose what it lacks). Publishes `failover_initiated`
    /// for it, or, once per down period, a failed `failover_completed` when no replica can
    /// replace the primary.
    pub fn failover_due(&mut self, now: Instant, out: &mut Outbox) -> Option<FailoverStep> {
        if self.failover.running.is_some() {
            return None;
        }
        if let Some((plan, deadline)) = self.failover.switchover.take() {
            let caught_up = self.replicas.get(&plan.candidate).is_some_and(|e| e.pos.flush_lsn >= self.log.flush_lsn);
            if !caught_up && now < deadline {
                self.failover.switchover = Some((plan, deadline));
                return None;
            }
            if !caught_up {
                let why = format!("'{}' did not catch up with the primary within {} s", plan.candidate, SWITCHOVER_WAIT.as_secs());
                return Some(FailoverStep::Abandon(plan, why));
            }
            self.failover.running = Some(plan.clone());
            return Some(FailoverStep::Start(plan));
        }
        let since = self.down.and_then(|d| d.since)?;
        if now.duration_since(since) < self.settings.heartbeat_timeout || self.failover.refused_for == Some(since) {
            return None;
        }
        let plan = FailoverPlan {
            id: format!("failover-{}-tl{}", self.id(), self.log.timeline),
            failed: self.id().to_string(),
            candidate: String::new(),
            manual: false,
            started: since,
        };
        match self.candidate(None) {
            Ok(candidate) => {
                let plan = FailoverPlan { candidate, ..plan };
                out.events.push(failover_event(Severity::Warning, ClusterEvent::FailoverInitiated(plan.change(None, false, None, 0))));
                self.failover.running = Some(plan.clone());
                Some(FailoverStep::Start(plan))
            }
            Err(e) => {
                self.failover.refused_for = Some(since);
                tracing::error!(primary = %self.id(), error = %e, "replication primary is down and cannot be failed over");
                out.events.push(failover_event(Severity::Critical, ClusterEvent::FailoverCompleted(plan.change(None, false, Some(e.to_string()), 0))));
                None
            }
        }
    }

    /// An operator's switchover to `target` (or the best replica): the primary stops taking
    /// writes now, and the promotion starts once the target holds all it made durable; if that
    /// takes longer than [`SWITCHOVER_WAIT`], the switchover fails and the primary comes back.
    /// Answers the failover, naming the replica it promotes.
    pub fn switchover(&mut self, target: Option<&str>, out: &mut Outbox) -> Result<FailoverChange, ReplicationError> {
        if self.failover.running.is_some() || self.failover.switchover.is_some() {
            return Err(ReplicationError::ConflictsWithState { field: "scope".into(), reason: "a replication failover is under way".into() });
        }
        if self.is_down() {
            return Err(self.primary_down());
        }
        if target == Some(self.id()) {
            return Err(ReplicationError::ConflictsWithState { field: "target_node".into(), reason: format!("'{}' is the primary already", self.id()) });
        }
        let candidate = self.candidate(target)?;
        let plan = FailoverPlan {
            id: format!("failover-{}-tl{}", self.id(), self.log.timeline),
            failed: self.id().to_string(),
            candidate,
            manual: true,
            started: Instant::now(),
        };
        self.go_down("switchover to a replica", None);
        out.events.push(failover_event(Severity::Warning, ClusterEvent::FailoverInitiated(plan.change(None, false, None, 0))));
        let answer = plan.change(Some(plan.candidate.clone()), false, None, 0);
        self.failover.switchover = Some((plan.clone(), plan.started + SWITCHOVER_WAIT));
        Ok(answer)
    }

    /// The replicas' modes after `plan`, to store: the old primary takes the promoted replica's
    /// mode. A crashed one cannot hold writes back, so if it would be the only sync replica
    /// left, the sync role passes to the best running replica instead (as Patroni moves its
    /// synchronous standby) and the old primary rejoins async.
    pub fn roles_after(&self, plan: &FailoverPlan) -> Vec<(String, ReplicaMode)> {
        let mode = self.replicas.get(&plan.candidate).map_or(ReplicaMode::Sync, |e| e.mode);
        let running = |id: &String, e: &ReplicaEntry| *id != plan.candidate && e.stream.running.is_some();
        let sync_left = self.replicas.iter().any(|(id, e)| running(id, e) && e.mode == ReplicaMode::Sync);
        if plan.manual || mode == ReplicaMode::Async || self.settings.mode == ReplicationMode::Async || sync_left {
            return vec![(plan.failed.clone(), mode)];
        }
        match self.replicas.iter().filter(|(id, e)| running(id, e)).max_by_key(|(_, e)| e.pos.flush_lsn) {
            Some((heir, _)) => vec![(plan.failed.clone(), ReplicaMode::Async), (heir.clone(), ReplicaMode::Sync)],
            None => vec![(plan.failed.clone(), mode)],
        }
    }

    /// Whether a switchover waits for its target to catch up.
    pub fn switchover_waits(&self) -> bool {
        self.failover.switchover.is_some()
    }

    /// The replica to promote: `target` if it may be, else the running one with the highest
    /// flushed position. In `sync` and `semi_sync` it must hold every acknowledged write.
    fn candidate(&self, target: Option<&str>) -> Result<String, ReplicationError> {
        let eligible = |e: &ReplicaEntry| e.stream.running.is_some() && e.stream.connected && e.stream.seeding.is_none();
        let chosen = match target {
            Some(id) => {
                let e = self.replica(id)?;
                if !eligible(e) {
                    return Err(ReplicationError::ReplicaDown { replica_id: id.to_string() });
                }
                (id.to_string(), e)
            }
            None => self
                .replicas
                .iter()
                .filter(|(_, e)| eligible(e))
                // The highest flushed position; among equals a sync replica, then the first id.
                .max_by_key(|(id, e)| (e.pos.flush_lsn, e.mode == ReplicaMode::Sync, std::cmp::Reverse(id.as_str())))
                .map(|(id, e)| (id.clone(), e))
                .ok_or_else(|| ReplicationError::ConflictsWithState {
                    field: "replicas".into(),
                    reason: "no replica is running and connected to take over".into(),
                })?,
        };
        let (id, e) = chosen;
        let lacking = self.waiters.acknowledged_after(e.pos.flush_lsn);
        if self.settings.mode != ReplicationMode::Async && lacking > 0 {
            return Err(ReplicationError::ConflictsWithState {
                field: "replicas".into(),
                reason: format!(
                    "'{id}' lacks {lacking} acknowledged write(s) (mode {}): promoting it would lose them",
                    self.settings.mode.as_str()
                ),
            });
        }
        Ok(id)
    }

    /// A failover that could not go on: the primary stays as it is. An automatic one is tried
    /// again at the next check; a switchover ends, failed, and its primary comes back up.
    pub fn failover_failed(&mut self, plan: &FailoverPlan, error: &str, out: &mut Outbox) {
        tracing::warn!(failover_id = %plan.id, candidate = %plan.candidate, error, "replication failover did not complete");
        self.failover.running = None;
        if plan.manual {
            self.failover.switchover = None;
            let change = plan.change(None, false, Some(error.to_string()), 0);
            out.events.push(failover_event(Severity::Error, ClusterEvent::FailoverCompleted(change)));
        }
    }

    /// After a promotion: this state is the promoted replica's, loaded. `previous` is the state
    /// of the primary it replaced, `plan` the failover. A crashed old primary is a replica that
    /// waits for a restart (after a switchover it rejoins at once). Publishes the outcome and
    /// returns it.
    pub fn promoted(&mut self, previous: &Primary, plan: &FailoverPlan, out: &mut Outbox) -> FailoverChange {
        let lost = previous.waiters.acknowledged_after(self.log.flush_lsn);
        if !plan.manual {
            if let Some(e) = self.replicas.get_mut(&plan.failed) {
                e.stream.crashed_at_ms = previous.down.and_then(|d| d.injected_at_ms).or(Some(crate::messages::events::now_ms()));
            }
            self.set_status(&plan.failed, ReplicaStatus::Failed, "the former primary: restart it to rejoin as a replica".into(), out);
        }
        self.failover.promoted_from = Some(plan.failed.clone());
        // The status change is told from where the replica stood (its status, its positions).
        let was = previous.replicas.get(&plan.candidate);
        let mut view = ReplicaEntry::new(was.map_or(ReplicaMode::Sync, |e| e.mode));
        if let Some(was) = was {
            view.health.status = was.health.status;
            view.pos = was.pos;
        }
        view.set_status(
            &plan.candidate,
            ReplicaStatus::Promoted,
            format!("promoted to primary in place of '{}'", plan.failed),
            Default::default(),
            self.log.flush_lsn,
            out,
        );
        let change = plan.change(Some(plan.candidate.clone()), true, None, lost);
        let severity = if lost > 0 { Severity::Error } else { Severity::Info };
        out.events.push(failover_event(severity, ClusterEvent::FailoverCompleted(change.clone())));
        change
    }

    /// The promoted replica as `/replicas/{id}` shows it: status `promoted`.
    pub fn promoted_view(&self, id: &str) -> Option<ReplicaView> {
        self.failover.promoted_from.as_ref()?;
        if id != self.id() {
            return None;
        }
        let mut e = ReplicaEntry::new(ReplicaMode::Sync);
        e.health.status = ReplicaStatus::Promoted;
        e.health.reason = "the primary now".into();
        e.pos.write_lsn = self.log.flush_lsn;
        e.pos.flush_lsn = self.log.flush_lsn;
        e.pos.replay_lsn = self.log.flush_lsn;
        Some(e.view(id, self.log.flush_lsn))
    }
}

fn failover_event(severity: Severity, e: ClusterEvent) -> crate::messages::events::Event {
    crate::messages::events::Event::now(severity, "cluster:failover".to_string(), e)
}

/// The replication primary the store names (after a failover), if any. Blocking.
pub fn current_primary(store: &Store) -> Result<Option<String>, StorageError> {
    Ok(store.get_record(SETTINGS, PRIMARY_RECORD)?.and_then(|b| serde_json::from_slice::<String>(&b).ok()))
}

/// Prepares the store for `candidate` (relinquished as `r`) to take over from `failed`: the
/// candidate's log goes on as a primary's, on a timeline after every one `failed` had (earlier
/// ones end no later than the candidate's log, so a replica holding more drops or is reseeded);
/// `failed`'s log is kept as a replica's on its last timeline, fully applied; the replica list
/// swaps them, with the modes `roles` gives; last, the record naming the primary, which makes
/// the change. Blocking.
pub fn prepare(store: &Store, failed: &str, candidate: &str, roles: &[(String, ReplicaMode)], r: Relinquished) -> Result<(), StorageError> {
    use super::load::{flush_key, timeline_end_key, timeline_key, ReplicaRecord, TIMELINES_KEPT};
    let failed_timeline = store.get_log_meta(failed, &timeline_key(failed))?.unwrap_or(0);
    let failed_end = match store.log_bounds(failed)? {
        Some((_, last, len)) => last + len as u64,
        None => 0,
    };
    let failed_flush = store.get_log_meta(failed, &flush_key(failed))?.unwrap_or(0).max(failed_end);
    let mut meta = vec![(timeline_key(candidate), failed_timeline.max(r.timeline)), (flush_key(candidate), r.flush_lsn)];
    for t in failed_timeline.saturating_sub(TIMELINES_KEPT - 1)..failed_timeline {
        if let Some(end) = store.get_log_meta(failed, &timeline_end_key(failed, t))? {
            meta.push((timeline_end_key(candidate, t), end.min(r.flush_lsn)));
        }
    }
    store.commit_log(candidate, LogCommit { meta, ..Default::default() })?;
    let as_replica = crate::actors::replication::replica::position_meta(failed, failed_flush, failed_flush, failed_timeline);
    store.commit_log(failed, LogCommit { meta: as_replica, ..Default::default() })?;
    for (id, mode) in roles {
        store.put_record(REPLICAS, id, &ReplicaRecord::encode(*mode)?)?;
    }
    store.delete_record(REPLICAS, candidate)?;
    let record = serde_json::to_vec(candidate).map_err(|source| StorageError::Encode { what: "the primary's name", source })?;
    store.put_record(SETTINGS, PRIMARY_RECORD, &record)
}
