//! Cluster membership and Raft over REST: `/api/v1/cluster/nodes…`, `/status`, `/health`,
//! `/raft` and the metadata key-value space `/kv/{key}`.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::error::ApiError;
use crate::http::json::Json;
use crate::http::rest::schemas;
use crate::messages::cluster::*;
use crate::runtime::RuntimeHandle;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/cluster/nodes", web::post().to(add_node))
        .route("/api/v1/cluster/nodes", web::get().to(list_nodes))
        .route("/api/v1/cluster/nodes/{id}", web::get().to(get_node))
        .route("/api/v1/cluster/nodes/{id}", web::patch().to(update_node))
        .route("/api/v1/cluster/nodes/{id}", web::delete().to(remove_node))
        .route("/api/v1/cluster/status", web::get().to(cluster_status))
        .route("/api/v1/cluster/health", web::get().to(cluster_health))
        .route("/api/v1/cluster/health/{node_id}", web::get().to(node_health))
        .route("/api/v1/cluster/nodes/{id}/promote", web::post().to(promote_node))
        .route("/api/v1/cluster/nodes/{id}/demote", web::post().to(demote_node))
        .route("/api/v1/cluster/raft", web::get().to(raft_nodes))
        .route("/api/v1/cluster/raft/log", web::get().to(raft_log))
        .route("/api/v1/cluster/kv/{key}", web::put().to(put_kv))
        .route("/api/v1/cluster/kv/{key}", web::get().to(get_kv))
        .route("/api/v1/cluster/failover", web::post().to(failover))
        .route("/api/v1/cluster/failover/history", web::get().to(failover_history));
}

/// The OpenAPI description of the cluster membership routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        add_node,
        list_nodes,
        get_node,
        update_node,
        remove_node,
        cluster_status,
        cluster_health,
        node_health,
        raft_nodes,
        raft_log,
        promote_node,
        demote_node,
        put_kv,
        get_kv,
        failover,
        failover_history,
    ),
    components(schemas(
        FailoverBody,
        FailoverStarted,
        crate::model::FailoverRecord,
        AddNodeBody,
        PatchNodeBody,
        NodeList,
        NodeHealthView,
        crate::messages::cluster::NodeView,
        crate::messages::cluster::ClusterStatus,
        crate::messages::cluster::ClusterHealthReport,
        RaftNodeList,
        crate::messages::cluster::RaftLogView,
        crate::messages::cluster::RaftLogEntryView,
        PutKvBody,
        crate::messages::cluster::KvWritten,
        crate::messages::cluster::KvEntry,
        crate::messages::cluster::RaftNodeView,
        crate::messages::cluster::RaftPeerProgress,
        crate::model::NodeHealth,
        crate::model::ClusterHealthStatus,
    ))
)]
pub struct ClusterApi;

/// Answer of `GET /api/v1/cluster/raft`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RaftNodeList {
    pub nodes: Vec<RaftNodeView>,
}

#[utoipa::path(get, path = "/api/v1/cluster/raft", tag = "cluster",
    responses((status = 200, description = "Each node's Raft state: role, term, vote, commit, applied, last index, and on the leader each peer's progress", body = RaftNodeList)))]
pub async fn raft_nodes(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let nodes = runtime.membership().send(GetRaftNodes).await?;
    Ok(HttpResponse::Ok().json(RaftNodeList { nodes }))
}

/// Query of `GET /api/v1/cluster/raft/log`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RaftLogQuery {
    /// The node whose log to read.
    pub node: String,
    /// The first index wanted (default: the log's first).
    pub from: Option<u64>,
    /// At most this many entries (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/cluster/raft/log", tag = "cluster", params(RaftLogQuery),
    responses((status = 200, description = "Entries of the node's log: index, term, kind, what it does", body = RaftLogView),
        (status = 400, description = "Bad query"),
        (status = 404, description = "No such node"),
        (status = 409, description = "The node is down")))]
pub async fn raft_log(runtime: web::Data<RuntimeHandle>, q: web::Query<RaftLogQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > RAFT_LOG_MAX_LIMIT {
        return Err(ClusterError::InvalidField { field: "limit".into(), reason: format!("must be 1 to {RAFT_LOG_MAX_LIMIT}") }.into());
    }
    let view = runtime.membership().send(ReadRaftLog { node_id: q.node, from: q.from, limit }).await??;
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(post, path = "/api/v1/cluster/nodes/{id}/promote", tag = "cluster",
    params(("id" = String, Path, description = "The voter to make leader")),
    responses((status = 200, description = "It leads: the cluster's status", body = ClusterStatus),
        (status = 404, description = "No such node"),
        (status = 409, description = "The node is down or not a voter"),
        (status = 503, description = "No leader to hand over from"),
        (status = 504, description = "It did not take office in time")))]
pub async fn promote_node(runtime: web::Data<RuntimeHandle>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(runtime.membership().send(PromoteNode { node_id: id.into_inner() }).await??))
}

#[utoipa::path(post, path = "/api/v1/cluster/nodes/{id}/demote", tag = "cluster",
    params(("id" = String, Path, description = "The leader to step down")),
    responses((status = 200, description = "Another voter leads: the cluster's status", body = ClusterStatus),
        (status = 404, description = "No such node"),
        (status = 409, description = "The node does not lead, or no other voter is up"),
        (status = 504, description = "No successor took office in time")))]
pub async fn demote_node(runtime: web::Data<RuntimeHandle>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(runtime.membership().send(DemoteNode { node_id: id.into_inner() }).await??))
}

/// Body of `PUT /api/v1/cluster/kv/{key}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutKvBody {
    /// Any JSON value.
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
}

#[utoipa::path(put, path = "/api/v1/cluster/kv/{key}", tag = "cluster", request_body = PutKvBody,
    params(("key" = String, Path, description = "Key (an id: letters, digits, '.', '_', '-')")),
    responses((status = 200, description = "Committed through the Raft log and applied: its index and term", body = KvWritten),
        (status = 400, description = "Invalid key or body"),
        (status = 503, description = "No leader yet, or the leader changed: retry"),
        (status = 504, description = "No answer in time: the write may or may not have been applied")))]
pub async fn put_kv(runtime: web::Data<RuntimeHandle>, key: web::Path<String>, body: Json<PutKvBody>) -> Result<HttpResponse, ApiError> {
    let key = valid_key(key.into_inner())?;
    let written = runtime.membership().send(PutKv { key, value: body.into_inner().value }).await??;
    Ok(HttpResponse::Ok().json(written))
}

#[utoipa::path(get, path = "/api/v1/cluster/kv/{key}", tag = "cluster",
    params(("key" = String, Path, description = "Key")),
    responses((status = 200, description = "The value, read at the leader's confirmed read index", body = KvEntry),
        (status = 404, description = "No such key"),
        (status = 503, description = "No leader yet, or the leader changed: retry")))]
pub async fn get_kv(runtime: web::Data<RuntimeHandle>, key: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let key = valid_key(key.into_inner())?;
    Ok(HttpResponse::Ok().json(runtime.membership().send(GetKv { key }).await??))
}

/// Body of `POST /api/v1/cluster/failover`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverBody {
    /// The voter to take over; absent: the running voter the leader knows to be most up to date.
    pub target_node: Option<String>,
    /// `raft` (the Raft leader: a leadership transfer) or `replication` (the replication
    /// primary: a switchover to a replica).
    pub scope: String,
}

#[utoipa::path(post, path = "/api/v1/cluster/failover", tag = "cluster", request_body = FailoverBody,
    responses((status = 202, description = "raft: done, the new leader and term; replication: started, and `failover_completed` follows. The history records both", body = FailoverStarted),
        (status = 400, description = "Unknown scope"),
        (status = 404, description = "No such node"),
        (status = 409, description = "The target leads already, is down or not a voter; or no other voter is up"),
        (status = 503, description = "No leader to hand over from"),
        (status = 504, description = "No successor took office in time")))]
pub async fn failover(runtime: web::Data<RuntimeHandle>, body: web::Json<FailoverBody>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    Ok(HttpResponse::Accepted().json(runtime.failover(&body.scope, body.target_node).await?))
}

#[utoipa::path(get, path = "/api/v1/cluster/failover/history", tag = "cluster",
    responses((status = 200, description = "Completed failovers, oldest first, read linearizably from the replicated state machine", body = Object),
        (status = 503, description = "No leader yet: retry")))]
pub async fn failover_history(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let failovers = runtime.membership().send(GetFailoverHistory).await??;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "total": failovers.len(), "failovers": failovers })))
}

fn valid_key(key: String) -> Result<String, ClusterError> {
    crate::model::validate_id(&key).map_err(|reason| ClusterError::InvalidField { field: "key".into(), reason })?;
    Ok(key)
}

/// Answer of `GET /api/v1/cluster/nodes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeList {
    pub total: usize,
    pub nodes: Vec<NodeView>,
}

/// Answer of `GET /api/v1/cluster/health/{node_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeHealthView {
    pub node_id: String,
    pub status: crate::model::NodeHealth,
    pub reason: String,
    pub heartbeat_age_ms: Option<u64>,
    pub heartbeat_rtt_micros: Option<u64>,
    pub restarts: u64,
    pub crashed: bool,
}

/// Body of `POST /api/v1/cluster/nodes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNodeBody {
    /// 1 to 64 characters of `[A-Za-z0-9._-]`, chosen by the caller.
    #[schema(schema_with = schemas::caller_id)]
    pub node_id: String,
    /// Where the node is reached (at most 256 characters); omitted: hosted in this process.
    #[schema(max_length = 256)]
    pub address: Option<String>,
    /// Free-form JSON object.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<NodeMetadata>,
}

/// Body of `PATCH /api/v1/cluster/nodes/{id}`: a merge patch of the metadata (`null` removes a key).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchNodeBody {
    #[schema(value_type = Object)]
    pub metadata: NodeMetadata,
}

#[utoipa::path(post, path = "/api/v1/cluster/nodes", tag = "cluster", request_body = AddNodeBody,
    responses((status = 201, description = "The node joined the Raft group (a conf change): as a learner, then, caught up, as a voter; its view once it votes, or after 5 s of catching up", body = NodeView),
              (status = 400, description = "Invalid node id or body (in the multi-process form, a node another process hosts needs that process's host:port as address)"),
              (status = 409, description = "A node with that id or Raft id exists, or another change of members is still applying"),
              (status = 503, description = "No Raft leader is known")))]
pub async fn add_node(
    runtime: web::Data<RuntimeHandle>,
    body: Json<AddNodeBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let view = runtime
        .membership()
        .send(AddNode { node_id: body.node_id, address: body.address, metadata: body.metadata.unwrap_or_default() })
        .await??;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(get, path = "/api/v1/cluster/nodes", tag = "cluster",
    responses((status = 200, description = "Every member", body = NodeList)))]
pub async fn list_nodes(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let nodes = runtime.membership().send(ListNodes).await?;
    Ok(HttpResponse::Ok().json(NodeList { total: nodes.len(), nodes }))
}

#[utoipa::path(get, path = "/api/v1/cluster/nodes/{id}", tag = "cluster",
    params(("id" = String, Path, description = "Node id")),
    responses((status = 200, description = "Role, status, heartbeat age, metadata; term and indexes are null until Raft runs", body = NodeView),
              (status = 404, description = "No such node")))]
pub async fn get_node(runtime: web::Data<RuntimeHandle>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let view = runtime.membership().send(GetNode { node_id: id.into_inner() }).await??;
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(patch, path = "/api/v1/cluster/nodes/{id}", tag = "cluster", request_body = PatchNodeBody,
    params(("id" = String, Path, description = "Node id")),
    responses((status = 200, description = "The node after the patch, applied through the Raft log", body = NodeView),
              (status = 404, description = "No such node"),
              (status = 503, description = "No Raft leader is known")))]
pub async fn update_node(
    runtime: web::Data<RuntimeHandle>,
    id: web::Path<String>,
    body: Json<PatchNodeBody>,
) -> Result<HttpResponse, ApiError> {
    let view = runtime
        .membership()
        .send(UpdateNodeMetadata { node_id: id.into_inner(), patch: body.into_inner().metadata })
        .await??;
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(delete, path = "/api/v1/cluster/nodes/{id}", tag = "cluster",
    params(("id" = String, Path, description = "Node id")),
    responses((status = 204, description = "The node left the Raft group (a conf change, applied)"), (status = 404, description = "No such node"),
              (status = 409, description = "would_lose_quorum: the voters left would have no live quorum, or there would be none"),
              (status = 503, description = "No Raft leader is known")))]
pub async fn remove_node(runtime: web::Data<RuntimeHandle>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    runtime.membership().send(RemoveNode { node_id: id.into_inner() }).await??;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/v1/cluster/status", tag = "cluster",
    responses((status = 200, description = "Leader and term (null until Raft), members, quorum, health", body = ClusterStatus)))]
pub async fn cluster_status(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(runtime.membership().send(GetClusterStatus).await?))
}

#[utoipa::path(get, path = "/api/v1/cluster/health", tag = "cluster",
    responses((status = 200, description = "healthy|degraded|critical and every node", body = ClusterHealthReport)))]
pub async fn cluster_health(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(runtime.membership().send(GetClusterHealth).await?))
}

#[utoipa::path(get, path = "/api/v1/cluster/health/{node_id}", tag = "cluster",
    params(("node_id" = String, Path, description = "Node id")),
    responses((status = 200, description = "The node's health and measurements", body = NodeHealthView),
              (status = 404, description = "No such node")))]
pub async fn node_health(runtime: web::Data<RuntimeHandle>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let view = runtime.membership().send(GetNode { node_id: id.into_inner() }).await??;
    Ok(HttpResponse::Ok().json(NodeHealthView {
        node_id: view.node_id,
        status: view.status,
        reason: view.status_reason,
        heartbeat_age_ms: view.heartbeat_age_ms,
        heartbeat_rtt_micros: view.heartbeat_rtt_micros,
        restarts: view.restarts,
        crashed: view.crashed,
    }))
}
