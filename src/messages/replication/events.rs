//! The events the replication domain publishes, and their payloads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::messages::events::{domain_events, Severity, SubjectKind};
use crate::model::{ReplicaMode, ReplicaStatus, SlotType};

domain_events! {
    /// What the primary publishes about itself, its replicas, slots and snapshots.
    pub enum ReplicationEvent {
        ReplicaAdded(ReplicaMembershipChange) => |p, s| s.add(SubjectKind::Replica, &p.replica_id),
        ReplicaRemoved(ReplicaMembershipChange) => |p, s| s.add(SubjectKind::Replica, &p.replica_id),
        ReplicaStatusChange(ReplicaStatusChange) => |p, s| s.add(SubjectKind::Replica, &p.replica_id),
        ReplicationLagAlert(ReplicationLagAlert) => |p, s| s.add(SubjectKind::Replica, &p.replica_id),
        WalPositionUpdate(WalPositionUpdate) => |p, s| s.add(SubjectKind::Replica, &p.replica_id),
        ReplicationError(ReplicationErrorEvent) => |p, s| {
            s.add(SubjectKind::Replica, &p.replica_id);
            for id in &p.replica_ids {
                s.add(SubjectKind::Replica, id);
            }
        },
        ReplicationLagSample(ReplicationLagSample) => |p, s| s.add(SubjectKind::Replica, &p.replica_id),
        // A slot is no replica, table or shard: slot events are found by type and category.
        SlotCreated(SlotChange) => |_, _| {},
        SlotDropped(SlotChange) => |_, _| {},
        SnapshotCreated(SnapshotChange) => |_, _| {},
        SnapshotRestored(SnapshotChange) => |p, s| {
            if let Some(target) = &p.target {
                s.add(SubjectKind::Replica, target);
            }
        },
    }
}

/// `replica_added` / `replica_removed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaMembershipChange {
    pub replica_id: String,
    /// `sync` or `async`.
    pub mode: ReplicaMode,
    pub reason: String,
}

/// `replica_status_change`. `metadata` holds measurements as strings (wal_position,
/// bytes_replayed, catchup_duration_seconds …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatusChange {
    pub replica_id: String,
    pub old_status: ReplicaStatus,
    pub new_status: ReplicaStatus,
    pub reason: String,
    pub metadata: BTreeMap<String, String>,
}

/// `replication_lag_alert`: edge-triggered on `lag_alert_bytes`, once up, once back down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationLagAlert {
    pub replica_id: String,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub threshold_bytes: u64,
    pub severity: Severity,
    pub details: String,
}

/// `wal_position_update`: a sampled position report of one replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalPositionUpdate {
    pub replica_id: String,
    pub write_lsn: String,
    pub flush_lsn: String,
    pub replay_lsn: String,
    pub bytes_behind: u64,
}

/// `slot_created` / `slot_dropped`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotChange {
    pub slot_name: String,
    pub slot_type: SlotType,
    pub active: bool,
    pub restart_lsn: String,
    pub confirmed_flush_lsn: String,
}

/// `snapshot_created` / `snapshot_restored`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotChange {
    pub snapshot_id: String,
    pub lsn: String,
    pub rows: u64,
    pub bytes: u64,
    /// The replica restored into (`snapshot_restored`); absent from `snapshot_created`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// `replication_lag_sample` (an addition to the catalogue): one real lag measurement of a
/// replica, taken at most once per heartbeat interval from its reports. Built only when a
/// subscriber wants it; feeds GraphQL's `replicationLagUpdates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationLagSample {
    pub replica_id: String,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub threshold_bytes: u64,
    pub status: ReplicaStatus,
}

/// `replication_error`. It names every member it is about, so a filter on any of them sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationErrorEvent {
    /// The member the error is about: a replica, or the primary's own id for an error of the
    /// primary; for one about several replicas, the first of `replica_ids`. Never empty.
    pub replica_id: String,
    /// Every member the error is about (for `sync_timeout`, each replica that missed the write),
    /// `replica_id` first.
    pub replica_ids: Vec<String>,
    pub error_code: String,
    pub error_message: String,
    pub severity: Severity,
    pub failed_operation: String,
    pub retry_count: u32,
}
