//! Health as the cluster domain measures it: one node's, and the cluster's as a whole. Each is a
//! snake_case string in JSON and a GraphQL enum (`UNREACHABLE`, `CRITICAL`).

use serde::{Deserialize, Serialize};

/// Health of one cluster node, as `node_health_change` reports it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum,
)]
#[serde(rename_all = "snake_case")]
pub enum NodeHealth {
    Healthy,
    Degraded,
    Unreachable,
    Failed,
}

impl NodeHealth {
    pub const ALL: [NodeHealth; 4] =
        [NodeHealth::Healthy, NodeHealth::Degraded, NodeHealth::Unreachable, NodeHealth::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeHealth::Healthy => "healthy",
            NodeHealth::Degraded => "degraded",
            NodeHealth::Unreachable => "unreachable",
            NodeHealth::Failed => "failed",
        }
    }

    /// Whether the node counts towards quorum: it answers, perhaps slowly.
    pub fn is_up(self) -> bool {
        matches!(self, NodeHealth::Healthy | NodeHealth::Degraded)
    }
}

/// Overall cluster health: `healthy` when every node is, `degraded` while a quorum is up,
/// `critical` without one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum,
)]
#[serde(rename_all = "snake_case")]
pub enum ClusterHealthStatus {
    Healthy,
    Degraded,
    Critical,
}

impl ClusterHealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterHealthStatus::Healthy => "healthy",
            ClusterHealthStatus::Degraded => "degraded",
            ClusterHealthStatus::Critical => "critical",
        }
    }
}
