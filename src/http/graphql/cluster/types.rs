//! The cluster domain's GraphQL types beyond its views (`Node`, `ClusterStatus` and
//! `ClusterHealth` are the views of `messages::cluster` themselves): the node's fields that
//! GraphQL serves in its own terms, and the typed event objects of its subscriptions.

use async_graphql::{ComplexObject, Enum, SimpleObject, ID};
use serde_json::Value as JsonValue;

use crate::http::graphql::events::EventStamp;
use crate::messages::cluster::{ClusterEvent, FailoverChange, NodeView};
use crate::messages::events::{EventPayload, EventType, SharedEvent};
use crate::model::{ClusterHealthStatus, NodeHealth, NodeRole};

#[ComplexObject]
impl NodeView {
    /// Free-form metadata, a JSON object.
    async fn metadata(&self) -> JsonValue {
        JsonValue::Object(self.metadata.clone().into_iter().collect())
    }
}

/// A change of one node's health (`node_health_change`).
#[derive(SimpleObject)]
pub struct NodeStatusEvent {
    pub node_id: ID,
    pub old_status: NodeHealth,
    pub new_status: NodeHealth,
    pub role: NodeRole,
    pub reason: String,
    /// Real measurements taken when the change was seen (heartbeat_age_ms, …).
    pub metrics: JsonValue,
    #[graphql(flatten)]
    pub stamp: EventStamp,
}

impl NodeStatusEvent {
    /// The typed view of a `node_health_change` event; `None` for any other event.
    pub fn from_event(e: &SharedEvent) -> Option<async_graphql::Result<Self>> {
        let EventPayload::Cluster(ClusterEvent::NodeHealthChange(p)) = &e.payload else {
            return None;
        };
        Some(Ok({
            NodeStatusEvent {
                node_id: ID(p.node_id.clone()),
                old_status: p.old_status,
                new_status: p.new_status,
                role: p.role,
                reason: p.reason.clone(),
                metrics: JsonValue::Object(
                    p.metrics
                        .iter()
                        .map(|(k, v)| (k.clone(), JsonValue::from(*v)))
                        .collect(),
                ),
                stamp: EventStamp::of(e),
            }
        }))
    }
}

/// A change of overall cluster health: a node's health changed, or quorum was lost or restored.
/// `nodeId`, `oldStatus` and `newStatus` are set for `node_health_change` only.
#[derive(SimpleObject)]
pub struct ClusterHealthEvent {
    /// `node_health_change`, `quorum_lost` or `quorum_restored`.
    pub event_type: String,
    pub node_id: Option<ID>,
    pub old_status: Option<NodeHealth>,
    pub new_status: Option<NodeHealth>,
    /// Overall health after the change.
    pub cluster_status: ClusterHealthStatus,
    pub healthy_nodes: usize,
    pub total_nodes: usize,
    pub has_quorum: bool,
    #[graphql(flatten)]
    pub stamp: EventStamp,
}

impl ClusterHealthEvent {
    /// The event types this view is built from.
    pub const EVENT_TYPES: [EventType; 3] = [
        EventType::NodeHealthChange,
        EventType::QuorumLost,
        EventType::QuorumRestored,
    ];

    /// The typed view of a health or quorum event; `None` for any other event.
    pub fn from_event(e: &SharedEvent) -> Option<Self> {
        let (node, cluster_status, healthy, total, has_quorum) = match &e.payload {
            EventPayload::Cluster(ClusterEvent::NodeHealthChange(p)) => (
                Some((p.node_id.clone(), p.old_status, p.new_status)),
                p.cluster_status,
                p.healthy_nodes,
                p.total_nodes,
                // The payload carries the overall status, which is critical exactly when there
                // is no quorum.
                p.cluster_status != ClusterHealthStatus::Critical,
            ),
            EventPayload::Cluster(
                ClusterEvent::QuorumLost(q) | ClusterEvent::QuorumRestored(q),
            ) => {
                // Quorum events carry counts only; the overall status follows from them by the
                // definition of `ClusterHealthStatus`.
                let status = if !q.has_quorum {
                    ClusterHealthStatus::Critical
                } else if q.healthy_nodes == q.total_nodes {
                    ClusterHealthStatus::Healthy
                } else {
                    ClusterHealthStatus::Degraded
                };
                (None, status, q.healthy_nodes, q.total_nodes, q.has_quorum)
            }
            _ => return None,
        };
        let (node_id, old_status, new_status) = match node {
            Some((id, old, new)) => (Some(ID(id)), Some(old), Some(new)),
            None => (None, None, None),
        };
        Some(ClusterHealthEvent {
            event_type: e.event_type.as_str().to_string(),
            node_id,
            old_status,
            new_status,
            cluster_status,
            healthy_nodes: healthy,
            total_nodes: total,
            has_quorum,
            stamp: EventStamp::of(e),
        })
    }
}

/// What a failover moves: Raft leadership or the replication primary.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverScope {
    Raft,
    Replication,
}

/// Whether a failover was started by the failure detector or by an operator.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverType {
    Automatic,
    Manual,
}

/// `failover_initiated` / `failover_completed`.
#[derive(SimpleObject)]
pub struct FailoverEvent {
    pub event_type: String,
    pub failover_id: ID,
    pub scope: FailoverScope,
    pub failed_node: Option<ID>,
    pub replacement_node: Option<ID>,
    pub failover_type: FailoverType,
    /// Set once completed.
    pub duration_seconds: Option<f64>,
    pub success: Option<bool>,
    pub error_message: Option<String>,
    /// Acknowledged writes lost by the failover (0 expected).
    pub lost_writes: Option<u64>,
    #[graphql(flatten)]
    pub stamp: EventStamp,
}

/// `leader_elected`.
#[derive(SimpleObject)]
pub struct LeaderElectionEvent {
    pub leader_id: ID,
    pub previous_leader: Option<ID>,
    pub term: u64,
    pub votes_received: Option<u32>,
    pub total_voters: u32,
    #[graphql(flatten)]
    pub stamp: EventStamp,
}

impl FailoverEvent {
    /// The event types this view is built from.
    pub const EVENT_TYPES: [EventType; 2] = [EventType::FailoverInitiated, EventType::FailoverCompleted];

    /// The typed view of a failover event; `None` for any other event.
    pub fn from_event(e: &SharedEvent) -> Option<Self> {
        let (p, completed): (&FailoverChange, bool) = match &e.payload {
            EventPayload::Cluster(ClusterEvent::FailoverInitiated(p)) => (p, false),
            EventPayload::Cluster(ClusterEvent::FailoverCompleted(p)) => (p, true),
            _ => return None,
        };
        Some(FailoverEvent {
            event_type: e.event_type.as_str().to_string(),
            failover_id: ID(p.failover_id.clone()),
            scope: if p.scope == "replication" { FailoverScope::Replication } else { FailoverScope::Raft },
            failed_node: Some(ID(p.failed_node.clone())),
            replacement_node: p.replacement_node.clone().map(ID),
            failover_type: if p.failover_type == "manual" { FailoverType::Manual } else { FailoverType::Automatic },
            duration_seconds: completed.then_some(p.duration_seconds),
            success: completed.then_some(p.success),
            error_message: p.error_message.clone(),
            lost_writes: completed.then_some(p.lost_writes),
            stamp: EventStamp::of(e),
        })
    }
}

impl LeaderElectionEvent {
    /// The typed view of a `leader_elected` event; `None` for any other event.
    pub fn from_event(e: &SharedEvent) -> Option<Self> {
        let EventPayload::Cluster(ClusterEvent::LeaderElected(p)) = &e.payload else {
            return None;
        };
        Some(LeaderElectionEvent {
            leader_id: ID(p.leader_id.clone()),
            previous_leader: p.previous_leader.clone().map(ID),
            term: p.term,
            votes_received: p.votes_received.map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
            total_voters: u32::try_from(p.total_voters).unwrap_or(u32::MAX),
            stamp: EventStamp::of(e),
        })
    }
}
