//! The replication domain's GraphQL types beyond its views (`Replica`, `ReplicationStatus`,
//! `ReplicationSettings`, `LagSample`, `ReplicationSlot` … are the views of
//! `messages::replication` themselves): the `OpInput` of `replicate`, the fields GraphQL adds to
//! or serves differently from a view, the `ReplicationHealth` answer, and the typed event objects
//! of the two subscriptions.

use async_graphql::{ComplexObject, InputObject, SimpleObject, ID};
use serde_json::Value as JsonValue;

use crate::http::graphql::events::EventStamp;
use crate::messages::events::{EventPayload, SharedEvent};
use crate::messages::replication::{LagSample, ReplicaHealth, ReplicationEvent};
use crate::model::{lsn_text, Op, OpKind, ReplicaStatus, RowValue};

/// One operation of a `replicate` batch.
#[derive(InputObject, Debug, Clone)]
pub struct OpInput {
    pub op: OpKind,
    pub table: String,
    pub key: String,
    /// Any JSON; required for `INSERT` and `UPDATE`, absent (or null) for `DELETE`.
    pub value: Option<JsonValue>,
}

impl From<OpInput> for Op {
    fn from(o: OpInput) -> Self {
        Op {
            op: o.op,
            table: o.table.into(),
            key: o.key.into(),
            value: o.value.map(RowValue::new),
        }
    }
}

#[ComplexObject]
impl LagSample {
    /// Epoch seconds.
    async fn timestamp(&self) -> i64 {
        self.timestamp_ms / 1000
    }

    async fn replay_lsn(&self) -> String {
        lsn_text(self.replay_lsn_u64)
    }
}

/// Replication health, as `GET /api/v1/replication/health` shows it.
#[derive(SimpleObject, Debug, Clone)]
pub struct ReplicationHealth {
    /// Whether every replica is healthy.
    pub healthy: bool,
    pub replicas: Vec<ReplicaHealth>,
}

impl From<Vec<ReplicaHealth>> for ReplicationHealth {
    fn from(replicas: Vec<ReplicaHealth>) -> Self {
        ReplicationHealth {
            healthy: replicas.iter().all(|r| r.healthy),
            replicas,
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
    /// The replica's status when measured (`STREAMING`, `PAUSED` …).
    pub status: ReplicaStatus,
    #[graphql(flatten)]
    pub stamp: EventStamp,
}

impl ReplicationLagEvent {
    /// The typed view of a `replication_lag_sample` event; `None` for any other event.
    pub fn from_event(e: &SharedEvent) -> Option<async_graphql::Result<Self>> {
        let EventPayload::Replication(ReplicationEvent::ReplicationLagSample(p)) = &e.payload
        else {
            return None;
        };
        Some(Ok(ReplicationLagEvent {
            replica_id: ID(p.replica_id.clone()),
            lag_bytes: p.lag_bytes,
            lag_seconds: p.lag_seconds,
            threshold_bytes: p.threshold_bytes,
            status: p.status,
            stamp: EventStamp::of(e),
        }))
    }
}

/// A change of one replica's status (`replica_status_change`).
#[derive(SimpleObject, Debug, Clone)]
pub struct ReplicaStatusEvent {
    pub replica_id: ID,
    pub old_status: ReplicaStatus,
    pub new_status: ReplicaStatus,
    pub reason: String,
    /// Measurements as strings (wal_position, bytes_behind, catchup_duration_seconds …), a JSON
    /// object.
    pub metadata: JsonValue,
    #[graphql(flatten)]
    pub stamp: EventStamp,
}

impl ReplicaStatusEvent {
    /// The typed view of a `replica_status_change` event; `None` for any other event.
    pub fn from_event(e: &SharedEvent) -> Option<async_graphql::Result<Self>> {
        let EventPayload::Replication(ReplicationEvent::ReplicaStatusChange(p)) = &e.payload else {
            return None;
        };
        Some(Ok({
            ReplicaStatusEvent {
                replica_id: ID(p.replica_id.clone()),
                old_status: p.old_status,
                new_status: p.new_status,
                reason: p.reason.clone(),
                metadata: JsonValue::Object(
                    p.metadata
                        .iter()
                        .map(|(k, v)| (k.clone(), JsonValue::String(v.clone())))
                        .collect(),
                ),
                stamp: EventStamp::of(e),
            }
        }))
    }
}
