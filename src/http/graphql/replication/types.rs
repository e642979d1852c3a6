//! The GraphQL types of the replication domain: enums for the modes and operation kinds, the
//! objects REST answers with (in camelCase), the `OpInput` of `replicate`, and the typed event
//! objects of the two subscriptions.
//!
//! Modes are GraphQL enums both ways (`SEMI_SYNC` in, `SEMI_SYNC` out), so what a query shows can
//! be sent back unchanged. Replica statuses stay strings (`in_sync`, `paused` …), the values the
//! events carry and the cluster types use for their statuses.


use async_graphql::{Enum, InputObject, SimpleObject, ID};
use serde_json::Value as JsonValue;

use crate::model::{lsn_text, ConflictStrategy, Op, OpKind, ReplicaMode, ReplicationMode, RowValue};
use crate::messages::events::{EventPayload, SharedEvent};
use crate::messages::replication::ReplicationEvent;
use crate::messages::replication::{
    LagHistory, LagSample, ReplicaHealth, ReplicaThroughput, ReplicaView,
    ReplicateAck, ReplicationSettingsView, ReplicationStatus, RowView, Throughput,
};

/// How the primary acknowledges a write.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(name = "ReplicationMode", remote = "ReplicationMode")]
pub enum ReplicationModeValue {
    /// Every sync replica has flushed the write.
    Sync,
    /// `syncQuorum` replicas have flushed the write.
    SemiSync,
    /// Durable on the primary; replicas follow.
    Async,
}

/// Whether the primary waits for a replica in `SYNC` mode.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(name = "ReplicaMode", remote = "ReplicaMode")]
pub enum ReplicaModeValue {
    /// Waited for in `SYNC` mode.
    Sync,
    /// Never waited for individually.
    Async,
}

/// The kind of one operation of a batch.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(name = "OpKind", remote = "OpKind")]
pub enum OpKindValue {
    /// Adds a row; the key must not exist.
    Insert,
    /// Replaces a row; the key must exist.
    Update,
    /// Removes a row; the key must exist.
    Delete,
}

/// One operation of a `replicate` batch.
#[derive(InputObject, Debug, Clone)]
#[graphql(name = "OpInput")]
pub struct OpInput {
    pub op: OpKindValue,
    pub table: String,
    pub key: String,
    /// Any JSON; required for `INSERT` and `UPDATE`, absent (or null) for `DELETE`.
    pub value: Option<JsonValue>,
}

impl From<OpInput> for Op {
    fn from(o: OpInput) -> Self {
        Op {
            op: o.op.into(),
            table: o.table.into(),
            key: o.key.into(),
            value: o.value.map(RowValue::new),
        }
    }
}

/// A replica, as `GET /api/v1/replication/replicas/{id}` shows it: pg_stat_replication's
/// columns, measured.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "Replica")]
pub struct ReplicaObject {
    pub replica_id: ID,
    pub mode: ReplicaModeValue,
    /// `starting`, `catching_up`, `streaming`, `in_sync`, `paused`, `disconnected`, `failed` or
    /// `promoted`.
    pub status: String,
    pub status_reason: String,
    /// LSNs in PostgreSQL's text form `X/Y`, and as byte positions.
    pub write_lsn: String,
    pub write_lsn_u64: u64,
    pub flush_lsn: String,
    pub flush_lsn_u64: u64,
    pub replay_lsn: String,
    pub replay_lsn_u64: u64,
    /// The primary's flushed LSN minus this replica's replay LSN.
    pub lag_bytes: u64,
    /// Age of the oldest record this replica has not replayed yet; 0 when caught up.
    pub lag_seconds: f64,
    /// PostgreSQL's write_lag, flush_lag and replay_lag; null until a record has been reported.
    pub write_lag_ms: Option<f64>,
    pub flush_lag_ms: Option<f64>,
    pub replay_lag_ms: Option<f64>,
    /// Milliseconds since the replica's last heartbeat or report.
    pub last_heartbeat_ms: Option<u64>,
}

impl From<ReplicaView> for ReplicaObject {
    fn from(r: ReplicaView) -> Self {
        ReplicaObject {
            replica_id: ID(r.replica_id),
            mode: r.mode.into(),
            status: r.status.as_str().to_string(),
            status_reason: r.status_reason,
            write_lsn: r.write_lsn,
            write_lsn_u64: r.write_lsn_u64,
            flush_lsn: r.flush_lsn,
            flush_lsn_u64: r.flush_lsn_u64,
            replay_lsn: r.replay_lsn,
            replay_lsn_u64: r.replay_lsn_u64,
            lag_bytes: r.lag_bytes,
            lag_seconds: r.lag_seconds,
            write_lag_ms: r.write_lag_ms,
            flush_lag_ms: r.flush_lag_ms,
            replay_lag_ms: r.replay_lag_ms,
            last_heartbeat_ms: r.last_heartbeat_ms,
        }
    }
}

/// Primary, mode, current LSN, replicas and health, as `GET /api/v1/replication/status` shows
/// them.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "ReplicationStatus")]
pub struct ReplicationStatusObject {
    pub primary: ID,
    /// `up`, or `down` while crashed.
    pub primary_state: String,
    pub mode: ReplicationModeValue,
    pub sync_quorum: u64,
    pub sync_timeout_ms: u64,
    pub current_lsn: String,
    pub current_lsn_u64: u64,
    pub replicas: Vec<ReplicaObject>,
    /// `healthy` when every replica streams within the lag threshold, `degraded` otherwise,
    /// `critical` while the primary is down.
    pub health: String,
}

impl From<ReplicationStatus> for ReplicationStatusObject {
    fn from(s: ReplicationStatus) -> Self {
        ReplicationStatusObject {
            primary: ID(s.primary),
            primary_state: s.primary_state,
            mode: s.mode.into(),
            sync_quorum: s.sync_quorum as u64,
            sync_timeout_ms: s.sync_timeout_ms,
            current_lsn: s.current_lsn,
            current_lsn_u64: s.current_lsn_u64,
            replicas: s.replicas.into_iter().map(ReplicaObject::from).collect(),
            health: s.health,
        }
    }
}

/// One replica's lag, as a row of `GET /api/v1/replication/lag`.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "ReplicaLag")]
pub struct ReplicaLagObject {
    pub replica_id: ID,
    pub status: String,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub write_lag_ms: Option<f64>,
    pub flush_lag_ms: Option<f64>,
    pub replay_lag_ms: Option<f64>,
}

impl From<ReplicaView> for ReplicaLagObject {
    fn from(r: ReplicaView) -> Self {
        ReplicaLagObject {
            replica_id: ID(r.replica_id),
            status: r.status.as_str().to_string(),
            lag_bytes: r.lag_bytes,
            lag_seconds: r.lag_seconds,
            write_lag_ms: r.write_lag_ms,
            flush_lag_ms: r.flush_lag_ms,
            replay_lag_ms: r.replay_lag_ms,
        }
    }
}

/// One real lag measurement (taken at most once per heartbeat interval).
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "LagSample")]
pub struct LagSampleObject {
    /// Epoch seconds.
    pub timestamp: i64,
    pub timestamp_ms: i64,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub replay_lsn: String,
    pub replay_lsn_u64: u64,
}

impl From<LagSample> for LagSampleObject {
    fn from(s: LagSample) -> Self {
        LagSampleObject {
            timestamp: s.timestamp_ms / 1000,
            timestamp_ms: s.timestamp_ms,
            lag_bytes: s.lag_bytes,
            lag_seconds: s.lag_seconds,
            replay_lsn: lsn_text(s.replay_lsn_u64),
            replay_lsn_u64: s.replay_lsn_u64,
        }
    }
}

/// One replica's lag samples, oldest first.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "LagHistory")]
pub struct LagHistoryObject {
    pub replica_id: ID,
    pub samples: Vec<LagSampleObject>,
}

impl From<LagHistory> for LagHistoryObject {
    fn from(h: LagHistory) -> Self {
        LagHistoryObject {
            replica_id: ID(h.replica_id),
            samples: h.samples.into_iter().map(LagSampleObject::from).collect(),
        }
    }
}

/// WAL bytes one replica replayed per second over the window.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "ReplicaThroughput")]
pub struct ReplicaThroughputObject {
    pub replica_id: ID,
    pub replayed_bytes_per_second: f64,
}

impl From<ReplicaThroughput> for ReplicaThroughputObject {
    fn from(r: ReplicaThroughput) -> Self {
        ReplicaThroughputObject {
            replica_id: ID(r.replica_id),
            replayed_bytes_per_second: r.replayed_bytes_per_second,
        }
    }
}

/// Throughput over the sliding window, on the primary and per replica.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "ReplicationThroughput")]
pub struct ReplicationThroughputObject {
    pub window_seconds: f64,
    /// Operations and WAL bytes made durable on the primary per second.
    pub primary_ops_per_second: f64,
    pub primary_bytes_per_second: f64,
    pub replicas: Vec<ReplicaThroughputObject>,
}

impl From<Throughput> for ReplicationThroughputObject {
    fn from(t: Throughput) -> Self {
        ReplicationThroughputObject {
            window_seconds: t.window_seconds,
            primary_ops_per_second: t.primary_ops_per_second,
            primary_bytes_per_second: t.primary_bytes_per_second,
            replicas: t
                .replicas
                .into_iter()
                .map(ReplicaThroughputObject::from)
                .collect(),
        }
    }
}

/// One replica's health, and every reason it is not healthy.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "ReplicaHealth")]
pub struct ReplicaHealthObject {
    pub replica_id: ID,
    pub healthy: bool,
    /// Empty when healthy.
    pub reasons: Vec<String>,
    pub status: String,
    pub lag_bytes: u64,
    pub last_heartbeat_ms: Option<u64>,
}

impl From<ReplicaHealth> for ReplicaHealthObject {
    fn from(h: ReplicaHealth) -> Self {
        ReplicaHealthObject {
            replica_id: ID(h.replica_id),
            healthy: h.healthy,
            reasons: h.reasons,
            status: h.status.as_str().to_string(),
            lag_bytes: h.lag_bytes,
            last_heartbeat_ms: h.last_heartbeat_ms,
        }
    }
}

/// Replication health, as `GET /api/v1/replication/health` shows it.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "ReplicationHealth")]
pub struct ReplicationHealthObject {
    /// Whether every replica is healthy.
    pub healthy: bool,
    pub replicas: Vec<ReplicaHealthObject>,
}

impl From<Vec<ReplicaHealth>> for ReplicationHealthObject {
    fn from(replicas: Vec<ReplicaHealth>) -> Self {
        ReplicationHealthObject {
            healthy: replicas.iter().all(|r| r.healthy),
            replicas: replicas
                .into_iter()
                .map(ReplicaHealthObject::from)
                .collect(),
        }
    }
}

/// One row, where it was read.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "Row")]
pub struct RowObject {
    pub table: String,
    pub key: String,
    pub value: JsonValue,
    /// `primary` or a replica id.
    pub from: String,
    /// The reader's replay position when it answered.
    pub replay_lsn: String,
    pub replay_lsn_u64: u64,
}

impl From<RowView> for RowObject {
    fn from(r: RowView) -> Self {
        RowObject {
            table: r.table,
            key: r.key,
            value: r.value,
            from: r.from,
            replay_lsn: r.replay_lsn,
            replay_lsn_u64: r.replay_lsn_u64,
        }
    }
}

/// The answer to `replicate`: the batch is durable as the mode requires.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "ReplicateAck")]
pub struct ReplicateAckObject {
    /// LSN just past the batch's record (what a replica must have flushed to hold it).
    pub lsn: String,
    pub lsn_u64: u64,
    /// Replicas that had flushed the batch when the answer was given.
    pub acknowledged_by: Vec<ID>,
    pub mode: ReplicationModeValue,
}

impl From<ReplicateAck> for ReplicateAckObject {
    fn from(a: ReplicateAck) -> Self {
        ReplicateAckObject {
            lsn: a.lsn,
            lsn_u64: a.lsn_u64,
            acknowledged_by: a.acknowledged_by.into_iter().map(ID).collect(),
            mode: a.mode.into(),
        }
    }
}

/// The replication settings in force.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "ReplicationSettings")]
pub struct ReplicationSettingsObject {
    pub mode: ReplicationModeValue,
    pub sync_quorum: u64,
    pub sync_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
    /// `last_writer_wins`, `first_writer_wins`, `primary_wins` or `site_priority`.
    pub conflict_strategy: String,
    /// Sites, highest priority first (with `site_priority`).
    pub site_priority: Vec<String>,
}

impl From<ReplicationSettingsView> for ReplicationSettingsObject {
    fn from(s: ReplicationSettingsView) -> Self {
        let conflict_strategy = match s.conflict_strategy {
            ConflictStrategy::LastWriterWins => "last_writer_wins",
            ConflictStrategy::FirstWriterWins => "first_writer_wins",
            ConflictStrategy::PrimaryWins => "primary_wins",
            ConflictStrategy::SitePriority => "site_priority",
        };
        ReplicationSettingsObject {
            mode: s.mode.into(),
            sync_quorum: s.sync_quorum as u64,
            sync_timeout_ms: s.sync_timeout_ms,
            heartbeat_interval_ms: s.heartbeat_interval_ms,
            heartbeat_timeout_ms: s.heartbeat_timeout_ms,
            conflict_strategy: conflict_strategy.to_string(),
            site_priority: s.site_priority,
        }
    }
}

/// One real lag measurement of a replica (`replication_lag_sample`), taken each heartbeat.
#[derive(SimpleObject, Debug, Clone)]
pub struct ReplicationLagEvent {
    pub replica_id: ID,
    /// The primary's flushed LSN minus the replica's replay LSN.
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    /// The server's lag alert threshold (`replication.lag_alert_bytes`), above which
    /// `replication_lag_alert` fires; not the subscription's `threshold` argument.
    pub threshold_bytes: u64,
    /// The replica's status when measured (`streaming`, `paused` …).
    pub status: String,
    pub seq: u64,
    pub event_id: ID,
    pub severity: String,
    /// Epoch seconds.
    pub timestamp: i64,
    pub timestamp_ms: i64,
}

impl ReplicationLagEvent {
    /// The typed view of a `replication_lag_sample` event; `None` for any other event.
    pub fn from_event(e: &SharedEvent) -> Option<Self> {
        let EventPayload::Replication(ReplicationEvent::ReplicationLagSample(p)) = &e.payload else {
            return None;
        };
        Some(ReplicationLagEvent {
            replica_id: ID(p.replica_id.clone()),
            lag_bytes: p.lag_bytes,
            lag_seconds: p.lag_seconds,
            threshold_bytes: p.threshold_bytes,
            status: p.status.clone(),
            seq: e.seq,
            event_id: ID(e.event_id.clone()),
            severity: e.severity.as_str().to_string(),
            timestamp: e.timestamp_ms / 1000,
            timestamp_ms: e.timestamp_ms,
        })
    }
}

/// A change of one replica's status (`replica_status_change`).
#[derive(SimpleObject, Debug, Clone)]
pub struct ReplicaStatusEvent {
    pub replica_id: ID,
    pub old_status: String,
    pub new_status: String,
    pub reason: String,
    /// Measurements as strings (wal_position, bytes_behind, catchup_duration_seconds …), a JSON
    /// object.
    pub metadata: JsonValue,
    pub seq: u64,
    pub event_id: ID,
    pub severity: String,
    /// Epoch seconds.
    pub timestamp: i64,
    pub timestamp_ms: i64,
}

impl ReplicaStatusEvent {
    /// The typed view of a `replica_status_change` event; `None` for any other event.
    pub fn from_event(e: &SharedEvent) -> Option<Self> {
        let EventPayload::Replication(ReplicationEvent::ReplicaStatusChange(p)) = &e.payload else {
            return None;
        };
        Some(ReplicaStatusEvent {
            replica_id: ID(p.replica_id.clone()),
            old_status: p.old_status.clone(),
            new_status: p.new_status.clone(),
            reason: p.reason.clone(),
            metadata: JsonValue::Object(
                p.metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), JsonValue::String(v.clone())))
                    .collect(),
            ),
            seq: e.seq,
            event_id: ID(e.event_id.clone()),
            severity: e.severity.as_str().to_string(),
            timestamp: e.timestamp_ms / 1000,
            timestamp_ms: e.timestamp_ms,
        })
    }
}

/// A replication slot, as `GET /api/v1/replication/slots/{name}` shows it.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "ReplicationSlot")]
pub struct SlotObject {
    pub slot_name: String,
    /// `physical` or `logical`.
    pub slot_type: String,
    pub active: bool,
    pub restart_lsn: String,
    pub restart_lsn_u64: u64,
    pub confirmed_flush_lsn: String,
    pub confirmed_flush_lsn_u64: u64,
    /// WAL bytes this slot holds back.
    pub retained_bytes: u64,
    pub wal_status: String,
}

impl From<crate::messages::replication::SlotView> for SlotObject {
    fn from(v: crate::messages::replication::SlotView) -> Self {
        SlotObject {
            slot_name: v.slot_name,
            slot_type: match v.slot_type {
                crate::model::SlotType::Physical => "physical".into(),
                crate::model::SlotType::Logical => "logical".into(),
            },
            active: v.active,
            restart_lsn: v.restart_lsn,
            restart_lsn_u64: v.restart_lsn_u64,
            confirmed_flush_lsn: v.confirmed_flush_lsn,
            confirmed_flush_lsn_u64: v.confirmed_flush_lsn_u64,
            retained_bytes: v.retained_bytes,
            wal_status: v.wal_status,
        }
    }
}

/// One change decoded from the WAL by a logical slot.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "DecodedChange")]
pub struct DecodedChangeObject {
    pub lsn: String,
    pub lsn_u64: u64,
    pub end_lsn_u64: u64,
    pub committed_at_ms: i64,
    /// `insert`, `update` or `delete`.
    pub op: String,
    pub table: String,
    pub key: String,
    pub value: Option<JsonValue>,
}

/// A logical slot's pending changes (not consumed) and where to advance to after using them.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "SlotChanges")]
pub struct SlotChangesObject {
    pub slot_name: String,
    pub confirmed_flush_lsn: String,
    pub changes: Vec<DecodedChangeObject>,
    pub next_lsn: String,
    pub next_lsn_u64: u64,
}

impl From<crate::messages::replication::SlotChanges> for SlotChangesObject {
    fn from(c: crate::messages::replication::SlotChanges) -> Self {
        SlotChangesObject {
            slot_name: c.slot_name,
            confirmed_flush_lsn: c.confirmed_flush_lsn,
            changes: c
                .changes
                .into_iter()
                .map(|d| DecodedChangeObject {
                    lsn: d.lsn,
                    lsn_u64: d.lsn_u64,
                    end_lsn_u64: d.end_lsn_u64,
                    committed_at_ms: d.committed_at_ms,
                    op: match d.op {
                        OpKind::Insert => "insert".into(),
                        OpKind::Update => "update".into(),
                        OpKind::Delete => "delete".into(),
                    },
                    table: d.table,
                    key: d.key,
                    value: d.value,
                })
                .collect(),
            next_lsn: c.next_lsn,
            next_lsn_u64: c.next_lsn_u64,
        }
    }
}
