//! Queries: cluster status and health, nodes, and retained events, each one message to the
//! membership actor or the event registry; merged with the replication domain's queries into the
//! `Query` root.

use async_graphql::{Context, MergedObject, Object, ID};

use super::replication::ReplicationQuery;
use super::schema::{
    filter_of, gql_error, runtime, to_gql, ClusterEventObject, ClusterHealthObject,
    ClusterStatusObject, EventFilterInput, NodeObject,
};
use crate::http::error::ApiError;
use crate::messages::cluster::{
    ClusterError, GetClusterHealth, GetClusterStatus, GetNode, ListNodes,
};
use crate::messages::registry::ReadRetained;

/// Events one `events` query returns when no `limit` is given.
pub const DEFAULT_EVENTS_LIMIT: i32 = 100;
/// Most events one `events` query may return (the same bound as `GET /api/v1/events`).
pub const MAX_EVENTS_LIMIT: i32 = 10_000;

/// The `Query` root: every domain's queries side by side.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(ClusterQuery, ReplicationQuery);

/// The cluster's queries.
#[derive(Default)]
pub struct ClusterQuery;

#[Object]
impl ClusterQuery {
    /// Leader, term, members and quorum.
    async fn cluster_status(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<ClusterStatusObject> {
        let status = runtime(ctx)?
            .membership()
            .send(GetClusterStatus)
            .await
            .map_err(to_gql)?;
        Ok(status.into())
    }

    /// Overall health (`healthy`, `degraded`, `critical`) and every node.
    async fn cluster_health(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<ClusterHealthObject> {
        let report = runtime(ctx)?
            .membership()
            .send(GetClusterHealth)
            .await
            .map_err(to_gql)?;
        Ok(report.into())
    }

    /// Every member.
    async fn nodes(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<NodeObject>> {
        let nodes = runtime(ctx)?
            .membership()
            .send(ListNodes)
            .await
            .map_err(to_gql)?;
        Ok(nodes.into_iter().map(NodeObject).collect())
    }

    /// One member; null if there is none by that id.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<NodeObject>> {
        let answer = runtime(ctx)?
            .membership()
            .send(GetNode { node_id: id.0 })
            .await
            .map_err(to_gql)?;
        match answer {
            Ok(view) => Ok(Some(NodeObject(view))),
            Err(ClusterError::NodeNotFound { .. }) => Ok(None),
            Err(e) => Err(to_gql(e)),
        }
    }

    /// Retained events the filter admits, oldest first. `sinceSeq` (or `filter.sinceSeq`): only
    /// events with a greater seq. `limit`: 1 to 10000, default 100.
    async fn events(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilterInput>,
        since_seq: Option<u64>,
        limit: Option<i32>,
    ) -> async_graphql::Result<Vec<ClusterEventObject>> {
        let limit = limit.unwrap_or(DEFAULT_EVENTS_LIMIT);
        if !(1..=MAX_EVENTS_LIMIT).contains(&limit) {
            return Err(gql_error(ApiError::invalid(
                "limit",
                format!("expected 1 to {MAX_EVENTS_LIMIT}, got {limit}"),
            )));
        }
        let mut filter = filter_of(filter)?;
        if since_seq.is_some() {
            filter.since_seq = since_seq;
        }
        let read = runtime(ctx)?
            .registry()
            .send(ReadRetained {
                filter,
                limit: limit as usize,
            })
            .await
            .map_err(to_gql)?;
        Ok(read.events.into_iter().map(ClusterEventObject).collect())
    }
}
