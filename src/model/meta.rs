//! The cluster's metadata as the Raft log carries it: the commands an entry holds.

use serde::{Deserialize, Serialize};

/// A change to the cluster's metadata; one per normal Raft entry, encoded as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MetaCommand {
    /// Sets a key of the metadata key-value space.
    Put { key: String, value: serde_json::Value },
    /// Records a completed failover in the history (once per id: a second record replaces it).
    RecordFailover { record: FailoverRecord },
    /// Replaces a member's metadata (nothing if it is no member by then).
    SetNodeMetadata { node_id: String, metadata: std::collections::BTreeMap<String, serde_json::Value> },
}

/// `failover_initiated` / `failover_completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, async_graphql::SimpleObject)]
pub struct FailoverChange {
    /// `failover-t{term}`: the term of the leader that was lost, one failover per term.
    pub failover_id: String,
    /// `raft` (the Raft leader) or `replication` (the replication primary).
    pub scope: String,
    pub failed_node: String,
    /// The new leader or primary, once there is one.
    pub replacement_node: Option<String>,
    /// `automatic` or `manual`.
    pub failover_type: String,
    /// From the first election started after the leader was lost to the new leader (0 when
    /// initiated).
    pub duration_seconds: f64,
    pub success: bool,
    pub error_message: Option<String>,
    /// Acknowledged writes the replacement lacks: 0 in the raft scope, where an acknowledged
    /// write is a committed entry, which every later leader holds.
    pub lost_writes: u64,
}

/// A completed failover, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, async_graphql::SimpleObject)]
pub struct FailoverRecord {
    #[serde(flatten)]
    #[graphql(flatten)]
    pub failover: FailoverChange,
    /// When the new leader's process saw it complete, in ms since the Unix epoch.
    pub completed_at_ms: i64,
}
