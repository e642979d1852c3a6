//! The role a cluster member plays: a snake_case string in JSON, a GraphQL enum (`VOTER`).

use serde::{Deserialize, Serialize};

/// What a member is in the Raft group: a voter, or a learner that receives the log without
/// voting (a joining node, until it has caught up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    Voter,
    Learner,
}

impl NodeRole {
    /// The role of a record written before roles were stored: every member voted.
    pub fn voter() -> NodeRole {
        NodeRole::Voter
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Voter => "voter",
            NodeRole::Learner => "learner",
        }
    }
}
