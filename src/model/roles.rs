//! The role a cluster member plays: a snake_case string in JSON, a GraphQL enum (`VOTER`).

use serde::{Deserialize, Serialize};

/// What a member does in the cluster. Every member votes until Raft assigns leader, followers and
/// learners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    Voter,
}
