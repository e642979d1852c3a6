//! The closed sets of values the replication domain's config, messages, storage and faces share:
//! acknowledgement modes, replica modes and statuses, conflict strategies, slot types. Each is a
//! snake_case string in JSON and a GraphQL enum (`SEMI_SYNC`, `CATCHING_UP`).

use serde::{Deserialize, Serialize};

/// How the primary acknowledges a write: once durable on every sync replica (`sync`), on
/// `sync_quorum` replicas (`semi_sync`), or on itself alone (`async`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaMode {
    /// Waited for in `sync` mode.
    Sync,
    /// Never waited for individually.
    Async,
}

/// How multi-master resolves a conflict between two sites' writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum)]
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

/// A replication slot's kind: physical (holds WAL) or logical (also decodes changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
pub enum SlotType {
    Physical,
    Logical,
}

/// The text form of a closed set's values (what events and REST carry), and a value equal to its
/// text, for the sets read as text in events: `ReplicaStatus::InSync == "in_sync"`.
macro_rules! text_form {
    ($name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),*
                }
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

text_form!(ReplicationMode { Sync => "sync", SemiSync => "semi_sync", Async => "async" });
text_form!(ReplicaMode { Sync => "sync", Async => "async" });
text_form!(SlotType { Physical => "physical", Logical => "logical" });
text_form!(ReplicaStatus {
    Starting => "starting",
    CatchingUp => "catching_up",
    Streaming => "streaming",
    InSync => "in_sync",
    Paused => "paused",
    Disconnected => "disconnected",
    Failed => "failed",
    Promoted => "promoted",
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The text form is what serde writes, so events, REST and comparisons agree.
    #[test]
    fn the_text_form_is_the_json_form() {
        let statuses = [
            ReplicaStatus::Starting,
            ReplicaStatus::CatchingUp,
            ReplicaStatus::Streaming,
            ReplicaStatus::InSync,
            ReplicaStatus::Paused,
            ReplicaStatus::Disconnected,
            ReplicaStatus::Failed,
            ReplicaStatus::Promoted,
        ];
        for s in statuses {
            assert_eq!(serde_json::to_value(s).expect("serializes"), serde_json::json!(s.as_str()));
        }
        for m in [ReplicaMode::Sync, ReplicaMode::Async] {
            assert_eq!(serde_json::to_value(m).expect("serializes"), serde_json::json!(m.as_str()));
        }
        for t in [SlotType::Physical, SlotType::Logical] {
            assert_eq!(serde_json::to_value(t).expect("serializes"), serde_json::json!(t.as_str()));
        }
        assert!(ReplicaStatus::InSync == "in_sync" && ReplicaMode::Async == "async");
    }
}
