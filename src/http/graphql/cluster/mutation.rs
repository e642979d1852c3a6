//! Cluster mutations: add, update and remove members, each one message to the membership actor,
//! answered once the change is durable; domain errors carry the REST error codes.

use async_graphql::{Context, Object, ID};
use serde_json::Value as JsonValue;

use crate::http::error::ApiError;
use crate::http::graphql::schema::{gql_error, runtime, to_gql};
use crate::messages::cluster::{
    AddNode, ClusterError, ClusterStatus, DemoteNode, FailoverStarted, KvWritten, NodeMetadata, NodeView, PromoteNode, PutKv, RemoveNode,
    UpdateNodeMetadata,
};

#[derive(Default)]
pub struct ClusterMutation;

/// Metadata must be a JSON object (what REST accepts too); anything else names the argument.
fn metadata_object(value: JsonValue) -> async_graphql::Result<NodeMetadata> {
    match value {
        JsonValue::Object(map) => Ok(map.into_iter().collect()),
        other => Err(gql_error(ApiError::invalid(
            "metadata",
            format!("expected a JSON object, got {}", json_kind(&other)),
        ))),
    }
}

fn json_kind(v: &JsonValue) -> &'static str {
    match v {
        JsonValue::Null => "null",
        JsonValue::Bool(_) => "a boolean",
        JsonValue::Number(_) => "a number",
        JsonValue::String(_) => "a string",
        JsonValue::Array(_) => "an array",
        JsonValue::Object(_) => "an object",
    }
}

#[Object]
impl ClusterMutation {
    /// Adds a member (it joins the cluster and its node actor starts).
    async fn add_node(
        &self,
        ctx: &Context<'_>,
        node_id: ID,
        address: Option<String>,
        metadata: Option<JsonValue>,
    ) -> async_graphql::Result<NodeView> {
        let metadata = match metadata {
            None | Some(JsonValue::Null) => NodeMetadata::new(),
            Some(v) => metadata_object(v)?,
        };
        runtime(ctx)?
            .membership()
            .send(AddNode {
                node_id: node_id.0,
                address,
                metadata,
            })
            .await
            .map_err(to_gql)?
            .map_err(to_gql)
    }

    /// Removes a member (it leaves the cluster and its node actor stops). True once durable.
    async fn remove_node(&self, ctx: &Context<'_>, node_id: ID) -> async_graphql::Result<bool> {
        runtime(ctx)?
            .membership()
            .send(RemoveNode { node_id: node_id.0 })
            .await
            .map_err(to_gql)?
            .map_err(to_gql)?;
        Ok(true)
    }

    /// Merges `metadata` into the node's metadata: a key set to null is removed.
    async fn update_node(
        &self,
        ctx: &Context<'_>,
        node_id: ID,
        metadata: JsonValue,
    ) -> async_graphql::Result<NodeView> {
        let patch = metadata_object(metadata)?;
        runtime(ctx)?
            .membership()
            .send(UpdateNodeMetadata {
                node_id: node_id.0,
                patch,
            })
            .await
            .map_err(to_gql)?
            .map_err(to_gql)
    }

    /// Makes the voter `nodeId` the Raft leader; the status once it leads.
    async fn promote_node(&self, ctx: &Context<'_>, node_id: ID) -> async_graphql::Result<ClusterStatus> {
        runtime(ctx)?.membership().send(PromoteNode { node_id: node_id.0 }).await.map_err(to_gql)?.map_err(to_gql)
    }

    /// Moves leadership away from the leader `nodeId`; the status once another voter leads.
    async fn demote_node(&self, ctx: &Context<'_>, node_id: ID) -> async_graphql::Result<ClusterStatus> {
        runtime(ctx)?.membership().send(DemoteNode { node_id: node_id.0 }).await.map_err(to_gql)?.map_err(to_gql)
    }

    /// A manual failover: `raft` moves leadership (to `targetNode`, or the most up-to-date
    /// voter); `replication` switches the primary over to a replica (`failover_completed` says
    /// when it is done).
    async fn failover(&self, ctx: &Context<'_>, scope: String, target_node: Option<ID>) -> async_graphql::Result<FailoverStarted> {
        runtime(ctx)?.failover(&scope, target_node.map(|t| t.0)).await.map_err(to_gql)
    }

    /// Writes a key of the metadata through the Raft log; where it landed once applied.
    async fn put_kv(&self, ctx: &Context<'_>, key: String, value: JsonValue) -> async_graphql::Result<KvWritten> {
        crate::model::validate_id(&key).map_err(|reason| to_gql(ClusterError::InvalidField { field: "key".into(), reason }))?;
        runtime(ctx)?.membership().send(PutKv { key, value }).await.map_err(to_gql)?.map_err(to_gql)
    }
}
