//! Replicas joining, leaving, pausing, resuming, and the faults injected into the primary and its
//! replicas, as the primary's state sees them (the actor starts and stops the replicas' actors).

use std::sync::Arc;

use super::commit::replication_error;
use super::outbox::Outbox;
use super::replicas::ReplicaEntry;
use super::snapshots::SnapshotRecord;
use super::state::Primary;
use crate::messages::events::*;
use crate::messages::faults::InjectedFault;
use crate::messages::replication::*;
use crate::model::{lsn_text, validate_id, ReplicaMode, ReplicaStatus, ReplicationMode};

impl Primary {
    /// Whether `id` may be added as a replica.
    pub fn check_new_replica(&self, id: &str) -> Result<(), ReplicationError> {
        if let Err(reason) = validate_id(id) {
            return Err(ReplicationError::InvalidField { field: "replica_id".into(), reason });
        }
        if id == self.settings.primary {
            return Err(ReplicationError::InvalidField { field: "replica_id".into(), reason: "is the primary's id".into() });
        }
        if self.replicas.contains_key(id) {
            return Err(ReplicationError::ReplicaExists { replica_id: id.to_string() });
        }
        Ok(())
    }

    /// Replica `id` is durable as a member; its actor starts next (`replica_started`).
    pub fn replica_added(&mut self, id: &str, mode: ReplicaMode, reason: String, out: &mut Outbox) {
        self.replicas.insert(id.to_string(), ReplicaEntry::new(mode));
        out.publish(
            Severity::Info,
            format!("replica:{id}"),
            ReplicationEvent::ReplicaAdded(ReplicaMembershipChange { replica_id: id.to_string(), mode, reason }),
        );
    }

    /// Starts a new replica from a base copy of the committed rows at the flushed lsn (what
    /// pg_basebackup does) if the WAL from the beginning is gone.
    pub fn seed_if_wal_gone(&mut self, id: &str, out: &mut Outbox) {
        if self.oldest_retained > 0 {
            let rows = self.rows.sorted_rows();
            let lsn = self.log.flush_lsn;
            self.reseed(id, Arc::new(rows), lsn, out);
        }
    }

    /// Whether snapshot `snap` can seed `target`: the WAL since its lsn is still kept.
    pub fn check_restorable(&self, snap: &SnapshotRecord, target: &str) -> Result<(), ReplicationError> {
        if snap.lsn < self.oldest_retained || snap.lsn > self.log.flush_lsn {
            return Err(ReplicationError::WalGone {
                lsn: lsn_text(snap.lsn),
                oldest: lsn_text(self.oldest_retained),
                what: target.to_string(),
            });
        }
        Ok(())
    }

    /// Reseeds `target` from `snap` (checked restorable).
    /// `status` names the status `target` takes while it catches up, if it changes (a replica
    /// already streaming); a new replica keeps `starting`.
    pub fn restore(&mut self, snap: &SnapshotRecord, target: &str, status: Option<ReplicaStatus>, out: &mut Outbox) {
        self.reseed(target, Arc::new(snap.rows.clone()), snap.lsn, out);
        if let Some(status) = status {
            self.set_status(target, status, format!("reseeded from snapshot {}", snap.snapshot_id), out);
        }
        out.publish(Severity::Info, format!("replica:{target}"), ReplicationEvent::SnapshotRestored(snap.change(Some(target))));
    }

    /// A snapshot was stored.
    pub fn snapshot_created(&mut self, record: &SnapshotRecord, out: &mut Outbox) {
        self.newest_snapshot = Some((record.snapshot_id.clone(), record.lsn));
        out.publish(Severity::Info, self.source(), ReplicationEvent::SnapshotCreated(record.change(None)));
    }

    /// Replica `id`'s actor (incarnation `incarnation`) started: nothing is shipped to it until
    /// its first report.
    pub fn replica_started(&mut self, id: &str, incarnation: u64) {
        if let Some(e) = self.replicas.get_mut(id) {
            e.stream.running = Some(incarnation);
            e.stream.connected = false;
            e.stream.fetch_in_flight = false;
        }
    }

    /// The replicas configured `sync`: the only ones semi_sync's quorum counts.
    pub fn sync_replicas(&self) -> usize {
        self.replicas.values().filter(|e| e.mode == ReplicaMode::Sync).count()
    }

    /// Whether replica `id` may be removed: not if it is a sync replica semi_sync's quorum needs
    /// (the quorum would be out of reach, and every write would time out).
    pub fn check_removal(&self, id: &str) -> Result<(), ReplicationError> {
        let e = self.replica(id)?;
        let (quorum, sync_replicas) = (self.settings.sync_quorum, self.sync_replicas());
        if self.settings.mode == ReplicationMode::SemiSync && e.mode == ReplicaMode::Sync && sync_replicas <= quorum {
            return Err(ReplicationError::QuorumUnreachable { replica_id: id.to_string(), sync_quorum: quorum, sync_replicas });
        }
        Ok(())
    }

    /// Replica `id` left (durably); a removed sync replica no longer holds writes back.
    pub fn replica_removed(&mut self, id: &str, out: &mut Outbox) -> Result<(), ReplicationError> {
        let e = self.replicas.remove(id).ok_or_else(|| ReplicationError::ReplicaNotFound { replica_id: id.to_string() })?;
        out.publish(
            Severity::Warning,
            format!("replica:{id}"),
            ReplicationEvent::ReplicaRemoved(ReplicaMembershipChange {
                replica_id: id.to_string(),
                mode: e.mode,
                reason: "removed by operator".into(),
            }),
        );
        self.settle_waiters();
        Ok(())
    }

    /// Stops shipping to replica `id`; it keeps what it has and its WAL is kept for it.
    pub fn pause(&mut self, id: &str, out: &mut Outbox) -> Result<ReplicaView, ReplicationError> {
        let e = self.replica_mut(id)?;
        if e.stream.paused {
            return Err(ReplicationError::WrongState { replica_id: id.to_string(), state: "paused".into() });
        }
        e.stream.paused = true;
        self.set_status(id, ReplicaStatus::Paused, "paused by operator".into(), out);
        self.replica_view(id)
    }

    /// Ships again to replica `id`, from what it has: it catches up from where it stopped.
    pub fn resume(&mut self, id: &str, out: &mut Outbox) -> Result<ReplicaView, ReplicationError> {
        let e = self.replica_mut(id)?;
        if !e.stream.paused {
            return Err(ReplicationError::WrongState { replica_id: id.to_string(), state: "not paused".into() });
        }
        e.stream.paused = false;
        e.health.caught_up_once = false;
        e.stream.shipped_lsn = e.pos.write_lsn;
        e.health.catchup_started = Some(std::time::Instant::now());
        if e.stream.running.is_some() {
            self.set_status(id, ReplicaStatus::CatchingUp, "resumed by operator".into(), out);
            let (flush, t) = (self.log.flush_lsn, self.thresholds());
            if let Some(e) = self.replicas.get_mut(id) {
                e.evaluate(id, flush, &t, out);
            }
            self.ship_more(id, out);
        }
        self.replica_view(id)
    }

    /// An injected crash of the primary: it refuses writes until restarted.
    pub fn crash(&mut self, out: &mut Outbox) -> Result<(), ReplicationError> {
        if self.is_down() {
            return Err(ReplicationError::WrongState { replica_id: self.settings.primary.clone(), state: "down".into() });
        }
        self.go_down("crashed by fault injection", Some(now_ms()));
        let message = "the primary crashed (fault injection); writes are refused until it is restarted";
        out.publish_error(self.source(), replication_error(Severity::Critical, vec![self.id().to_string()], "primary_down", "crash", message.into()));
        Ok(())
    }

    /// Whether the primary may be restarted (it is down).
    pub fn check_restart(&self) -> Result<(), ReplicationError> {
        if !self.is_down() {
            return Err(ReplicationError::WrongState { replica_id: self.settings.primary.clone(), state: "up".into() });
        }
        Ok(())
    }

    /// An injected crash of replica `id` (its actor is stopped by the caller and stays down).
    pub fn crash_replica(&mut self, id: &str, out: &mut Outbox) -> Result<(), ReplicationError> {
        let e = self.replica_mut(id)?;
        if e.stream.running.take().is_none() {
            return Err(ReplicationError::WrongState { replica_id: id.to_string(), state: "down".into() });
        }
        e.stream.connected = false;
        e.stream.crashed_at_ms = Some(now_ms());
        self.set_status(id, ReplicaStatus::Failed, "crashed by fault injection".into(), out);
        Ok(())
    }

    /// Whether replica `id` may be restarted (it is down).
    pub fn check_restart_replica(&self, id: &str) -> Result<(), ReplicationError> {
        if self.replica(id)?.stream.running.is_some() {
            return Err(ReplicationError::WrongState { replica_id: id.to_string(), state: "up".into() });
        }
        Ok(())
    }

    /// Replica `id` was restarted by the operator (its actor started as `incarnation`).
    pub fn replica_restarted(&mut self, id: &str, incarnation: u64, out: &mut Outbox) {
        self.replica_started(id, incarnation);
        if let Some(e) = self.replicas.get_mut(id) {
            e.stream.crashed_at_ms = None;
        }
        self.set_status(id, ReplicaStatus::Starting, "restarted by operator".into(), out);
    }

    /// What fault injection holds down here now.
    pub fn injected_faults(&self) -> Vec<InjectedFault> {
        let primary = self.down.and_then(|d| d.injected_at_ms).map(|since_ms| InjectedFault {
            kind: "crash".into(),
            target: self.settings.primary.clone(),
            since_ms,
        });
        primary
            .into_iter()
            .chain(self.replicas.iter().filter_map(|(id, e)| {
                e.stream.crashed_at_ms.map(|since_ms| InjectedFault { kind: "crash".into(), target: id.clone(), since_ms })
            }))
            .collect()
    }
}
