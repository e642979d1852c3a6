//! Cluster queries: status, health, nodes, Raft state and the metadata key-value space, each one
//! message to the membership actor.

use async_graphql::{Context, Object, ID};

use crate::http::graphql::schema::{runtime, to_gql};
use crate::messages::cluster::{
    ClusterError, ClusterHealthReport, ClusterStatus, GetClusterHealth, GetClusterStatus, GetKv,
    GetNode, GetRaftNodes, KvEntry, ListNodes, NodeView, RaftNodeView,
};

#[derive(Default)]
pub struct ClusterQuery;

#[Object]
impl ClusterQuery {
    /// Leader, term, members and quorum.
    async fn cluster_status(&self, ctx: &Context<'_>) -> async_graphql::Result<ClusterStatus> {
        runtime(ctx)?
            .membership()
            .send(GetClusterStatus)
            .await
            .map_err(to_gql)
    }

    /// Overall health (`HEALTHY`, `DEGRADED`, `CRITICAL`) and every node.
    async fn cluster_health(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<ClusterHealthReport> {
        runtime(ctx)?
            .membership()
            .send(GetClusterHealth)
            .await
            .map_err(to_gql)
    }

    /// Every member.
    async fn nodes(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<NodeView>> {
        runtime(ctx)?
            .membership()
            .send(ListNodes)
            .await
            .map_err(to_gql)
    }

    /// One member; null if there is none by that id.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<NodeView>> {
        let answer = runtime(ctx)?
            .membership()
            .send(GetNode { node_id: id.0 })
            .await
            .map_err(to_gql)?;
        match answer {
            Ok(view) => Ok(Some(view)),
            Err(ClusterError::NodeNotFound { .. }) => Ok(None),
            Err(e) => Err(to_gql(e)),
        }
    }

    /// Each node's Raft state: role, term, vote, commit, applied and last index, and on the
    /// leader each peer's progress.
    async fn raft_nodes(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<RaftNodeView>> {
        runtime(ctx)?.membership().send(GetRaftNodes).await.map_err(to_gql)
    }

    /// Completed failovers, oldest first, read linearizably from the Raft state machine.
    async fn failover_history(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<crate::model::FailoverRecord>> {
        runtime(ctx)?.membership().send(crate::messages::cluster::GetFailoverHistory).await.map_err(to_gql)?.map_err(to_gql)
    }

    /// A key of the metadata, read at the leader's confirmed read index; null if absent.
    async fn kv(&self, ctx: &Context<'_>, key: String) -> async_graphql::Result<Option<KvEntry>> {
        match runtime(ctx)?.membership().send(GetKv { key }).await.map_err(to_gql)? {
            Ok(entry) => Ok(Some(entry)),
            Err(ClusterError::KeyNotFound { .. }) => Ok(None),
            Err(e) => Err(to_gql(e)),
        }
    }
}
