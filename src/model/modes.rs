//! The closed sets of values the replication domain's config, messages, storage and faces share:
//! acknowledgement modes, replica modes and statuses, conflict strategies, slot types. Each is a
//! snake_case string in JSON and a GraphQL enum (`SEMI_SYNC`, `CATCHING_UP`).

use serde::{Deserialize, Serialize};

/// How the primary acknowledges a write: once durable on every sync replica (`sync`), on
/// `sync_quorum` replicas (`semi_sync`), or on itself alone (`async`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationMode {
    /// Every sync replica has flushed the write.
    Sync,
    /// `sync_quorum` replicas have flushed the write.
    SemiSync,
    /// Durable on the primary; replicas follow.
    Async,
}

/// Whether a write in `sync` mode waits for the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaMode {
    /// Waited for in `sync` mode.
    Sync,
    /// Never waited for individually.
    Async,
}

/// How multi-master resolves a conflict between two sites' writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
pub enum ConflictStrategy {
    LastWriterWins,
    FirstWriterWins,
    PrimaryWins,
    SitePriority,
}

/// A replica's state, as `replica_status_change` names them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum,
)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaStatus {
    Starting,
    CatchingUp,
    Streaming,
    InSync,
    Paused,
    Disconnected,
    Failed,
    Promoted,
}

/// A status equals its text form (`"in_sync"`), as events and REST carry it.
impl PartialEq<&str> for ReplicaStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl ReplicaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaStatus::Starting => "starting",
            ReplicaStatus::CatchingUp => "catching_up",
            ReplicaStatus::Streaming => "streaming",
            ReplicaStatus::InSync => "in_sync",
            ReplicaStatus::Paused => "paused",
            ReplicaStatus::Disconnected => "disconnected",
            ReplicaStatus::Failed => "failed",
            ReplicaStatus::Promoted => "promoted",
        }
    }
}

/// A replication slot's kind: physical (holds WAL) or logical (also decodes changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
pub enum SlotType {
    Physical,
    Logical,
}
