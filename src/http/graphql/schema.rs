//! The schema itself and the GraphQL types that queries, mutations and subscriptions share: the
//! `Node` object, cluster status and health, the `ClusterEvent` envelope, the typed event objects,
//! the `EventFilter` input, and the mapping of domain errors to GraphQL errors.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use async_graphql::{Context, ErrorExtensions, InputObject, Object, Schema, SimpleObject, ID};
use serde_json::Value as JsonValue;

use crate::http::error::ApiError;
use crate::http::metrics::HttpMetrics;
use crate::messages::cluster::{ClusterEvent, ClusterHealthReport, ClusterStatus, NodeView};
use crate::messages::events::{
    now_ms, EventFilter, EventPayload, EventType, SharedEvent, SubjectKind,
};
use crate::model::ClusterHealthStatus;
use crate::runtime::RuntimeHandle;

use super::{MutationRoot, QueryRoot, SubscriptionRoot};

pub type ClusterSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Deepest selection a request may make. Our own types nest at most three levels; the bound is
/// set by the introspection query GraphiQL sends (a dozen levels of `ofType`), with room to spare.
pub const MAX_DEPTH: usize = 20;

/// Most fields one request may select (each field counts 1, lists included), so a client cannot
/// make the server walk an arbitrarily large selection. GraphiQL's introspection stays well below.
pub const MAX_COMPLEXITY: usize = 1000;

/// Builds the schema on a running runtime: every resolver reaches the actors through the
/// [`RuntimeHandle`] in the schema data; subscriptions count themselves in `metrics`.
pub fn schema(runtime: RuntimeHandle, metrics: Arc<HttpMetrics>) -> ClusterSchema {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .data(runtime)
    .data(metrics)
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .finish()
}

/// Who is on the other end of a subscription connection, put in the connection data by the
/// transport so that `/api/v1/ws/subscriptions` can show it, and how many subscriptions the
/// connection runs (bounded by [`MAX_SUBSCRIPTIONS_PER_CONNECTION`]).
///
/// [`MAX_SUBSCRIPTIONS_PER_CONNECTION`]: super::MAX_SUBSCRIPTIONS_PER_CONNECTION
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub peer: String,
    pub connected_at_ms: i64,
    /// Subscription streams alive on this connection; every clone (one per connection) shares it.
    pub subscriptions: Arc<AtomicUsize>,
}

impl ConnectionInfo {
    /// A connection from `peer`, connected now, with no subscription yet.
    pub fn new(peer: String) -> Self {
        ConnectionInfo {
            peer,
            connected_at_ms: now_ms(),
            subscriptions: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// The runtime from the schema data.
pub(crate) fn runtime<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a RuntimeHandle> {
    // `schema()` always puts the runtime in the schema data; this only fails for a schema built
    // some other way, and then an error is the honest answer.
    ctx.data::<RuntimeHandle>()
}

/// Turns an [`ApiError`] into a GraphQL error carrying the same `code` (and HTTP status and
/// details) as the REST answer would, under `extensions`.
pub(crate) fn gql_error(e: ApiError) -> async_graphql::Error {
    let details = async_graphql::Value::from_json(e.details.clone()).unwrap_or_default();
    let status = i32::from(e.status.as_u16());
    async_graphql::Error::new(e.message).extend_with(move |_, ext| {
        ext.set("code", e.code.clone());
        ext.set("status", status);
        ext.set("details", details.clone());
    })
}

/// Anything that converts to an [`ApiError`] (domain errors, mailbox errors) as a GraphQL error.
pub(crate) fn to_gql<E: Into<ApiError>>(e: E) -> async_graphql::Error {
    gql_error(e.into())
}

/// A cluster member, as `GET /api/v1/cluster/nodes/{id}` shows it.
pub struct NodeObject(pub NodeView);

#[Object(name = "Node")]
impl NodeObject {
    async fn node_id(&self) -> ID {
        ID(self.0.node_id.clone())
    }
    /// Where the node is reached; empty when hosted in this process.
    async fn address(&self) -> &str {
        &self.0.address
    }
    /// `voter` for every member until Raft assigns leader/follower roles.
    async fn role(&self) -> &str {
        &self.0.role
    }
    /// `healthy`, `degraded`, `unreachable` or `failed`.
    async fn status(&self) -> &str {
        self.0.status.as_str()
    }
    async fn status_reason(&self) -> &str {
        &self.0.status_reason
    }
    /// Free-form metadata, a JSON object.
    async fn metadata(&self) -> JsonValue {
        JsonValue::Object(self.0.metadata.clone().into_iter().collect())
    }
    async fn joined_at_ms(&self) -> i64 {
        self.0.joined_at_ms
    }
    /// Milliseconds since the node last answered a heartbeat; null before its first answer and
    /// while it is down.
    async fn heartbeat_age_ms(&self) -> Option<u64> {
        self.0.heartbeat_age_ms
    }
    async fn heartbeat_rtt_micros(&self) -> Option<u64> {
        self.0.heartbeat_rtt_micros
    }
    /// Supervised restarts after internal faults, in this process's life.
    async fn restarts(&self) -> u64 {
        self.0.restarts
    }
    /// Whether a crash was injected and the node waits for a restart.
    async fn crashed(&self) -> bool {
        self.0.crashed
    }
    /// Raft term; null until Raft runs the membership.
    async fn term(&self) -> Option<u64> {
        self.0.term
    }
    async fn commit_index(&self) -> Option<u64> {
        self.0.commit_index
    }
    async fn applied_index(&self) -> Option<u64> {
        self.0.applied_index
    }
}

/// Leader, term, members and quorum, as `GET /api/v1/cluster/status` shows them.
#[derive(SimpleObject)]
#[graphql(name = "ClusterStatus")]
pub struct ClusterStatusObject {
    /// Null until Raft elects leaders.
    pub leader: Option<ID>,
    pub term: Option<u64>,
    pub members: Vec<ID>,
    pub healthy_nodes: u64,
    pub total_nodes: u64,
    pub quorum_size: u64,
    pub has_quorum: bool,
    /// `healthy`, `degraded` or `critical`.
    pub health: String,
}

impl From<ClusterStatus> for ClusterStatusObject {
    fn from(s: ClusterStatus) -> Self {
        ClusterStatusObject {
            leader: s.leader.map(ID),
            term: s.term,
            members: s.members.into_iter().map(ID).collect(),
            healthy_nodes: s.healthy_nodes as u64,
            total_nodes: s.total_nodes as u64,
            quorum_size: s.quorum_size as u64,
            has_quorum: s.has_quorum,
            health: s.health.as_str().to_string(),
        }
    }
}

/// Overall health and every node, as `GET /api/v1/cluster/health` shows them.
#[derive(SimpleObject)]
#[graphql(name = "ClusterHealth")]
pub struct ClusterHealthObject {
    /// `healthy`, `degraded` or `critical`.
    pub status: String,
    pub healthy_nodes: u64,
    pub total_nodes: u64,
    pub quorum_size: u64,
    pub has_quorum: bool,
    pub nodes: Vec<NodeObject>,
}

impl From<ClusterHealthReport> for ClusterHealthObject {
    fn from(r: ClusterHealthReport) -> Self {
        ClusterHealthObject {
            status: r.status.as_str().to_string(),
            healthy_nodes: r.healthy_nodes as u64,
            total_nodes: r.total_nodes as u64,
            quorum_size: r.quorum_size as u64,
            has_quorum: r.has_quorum,
            nodes: r.nodes.into_iter().map(NodeObject).collect(),
        }
    }
}

/// One event, the whole envelope of `events.md`. Wraps the shared published event: scalar fields
/// are read from its typed fields, `payload` from its serialized envelope (only when selected).
pub struct ClusterEventObject(pub SharedEvent);

#[Object(name = "ClusterEvent")]
impl ClusterEventObject {
    /// Unique for the life of the data directory, e.g. `evt_000000000042`.
    async fn event_id(&self) -> ID {
        ID(self.0.event_id.clone())
    }
    /// Strictly increasing per server; resume with `sinceSeq`.
    async fn seq(&self) -> u64 {
        self.0.seq
    }
    async fn category(&self) -> &str {
        self.0.category.as_str()
    }
    async fn event_type(&self) -> &str {
        self.0.event_type.as_str()
    }
    /// `info` < `warning` < `error` < `critical`.
    async fn severity(&self) -> &str {
        self.0.severity.as_str()
    }
    /// `component:identifier`, e.g. `node:node-2`.
    async fn source(&self) -> &str {
        &self.0.source
    }
    /// Epoch seconds.
    async fn timestamp(&self) -> i64 {
        self.0.timestamp_ms / 1000
    }
    async fn timestamp_ms(&self) -> i64 {
        self.0.timestamp_ms
    }
    /// The ids this event concerns, by kind (`node_ids`, `replica_ids`, …).
    async fn subjects(&self) -> async_graphql::Result<JsonValue> {
        serde_json::to_value(&self.0.subjects).map_err(|e| async_graphql::Error::new(e.to_string()))
    }
    /// The event-specific payload, exactly as in the envelope every transport shares.
    async fn payload(&self) -> async_graphql::Result<JsonValue> {
        // Parsed from the envelope the registry serialized once, so the payload is the same
        // bytes (including the repeated `event_type` and `timestamp`) as on the other transports.
        let mut envelope: JsonValue = serde_json::from_str(&self.0.json)
            .map_err(|e| async_graphql::Error::new(format!("event envelope: {e}")))?;
        Ok(envelope
            .get_mut("payload")
            .map(JsonValue::take)
            .unwrap_or(JsonValue::Null))
    }
}

/// A change of one node's health (`node_health_change`).
#[derive(SimpleObject)]
pub struct NodeStatusEvent {
    pub node_id: ID,
    pub old_status: String,
    pub new_status: String,
    pub role: String,
    pub reason: String,
    /// Real measurements taken when the change was seen (heartbeat_age_ms, …).
    pub metrics: JsonValue,
    pub seq: u64,
    pub event_id: ID,
    pub severity: String,
    /// Epoch seconds.
    pub timestamp: i64,
    pub timestamp_ms: i64,
}

impl NodeStatusEvent {
    /// The typed view of a `node_health_change` event; `None` for any other event.
    pub fn from_event(e: &SharedEvent) -> Option<Self> {
        let EventPayload::Cluster(ClusterEvent::NodeHealthChange(p)) = &e.payload else {
            return None;
        };
        Some(NodeStatusEvent {
            node_id: ID(p.node_id.clone()),
            old_status: p.old_status.as_str().to_string(),
            new_status: p.new_status.as_str().to_string(),
            role: p.role.clone(),
            reason: p.reason.clone(),
            metrics: JsonValue::Object(
                p.metrics
                    .iter()
                    .map(|(k, v)| (k.clone(), JsonValue::from(*v)))
                    .collect(),
            ),
            seq: e.seq,
            event_id: ID(e.event_id.clone()),
            severity: e.severity.as_str().to_string(),
            timestamp: e.timestamp_ms / 1000,
            timestamp_ms: e.timestamp_ms,
        })
    }
}

/// A change of overall cluster health: a node's health changed, or quorum was lost or restored.
/// `nodeId`, `oldStatus` and `newStatus` are set for `node_health_change` only.
#[derive(SimpleObject)]
pub struct ClusterHealthEvent {
    /// `node_health_change`, `quorum_lost` or `quorum_restored`.
    pub event_type: String,
    pub node_id: Option<ID>,
    pub old_status: Option<String>,
    pub new_status: Option<String>,
    /// Overall health after the change: `healthy`, `degraded` or `critical`.
    pub cluster_status: String,
    pub healthy_nodes: u64,
    pub total_nodes: u64,
    pub has_quorum: bool,
    pub seq: u64,
    pub event_id: ID,
    pub severity: String,
    /// Epoch seconds.
    pub timestamp: i64,
    pub timestamp_ms: i64,
}

impl ClusterHealthEvent {
    /// The event types this view is built from.
    pub const EVENT_TYPES: [EventType; 3] = [
        EventType::NodeHealthChange,
        EventType::QuorumLost,
        EventType::QuorumRestored,
    ];

    /// The typed view of a health or quorum event; `None` for any other event.
    pub fn from_event(e: &SharedEvent) -> Option<Self> {
        let (node, cluster_status, healthy, total, has_quorum) = match &e.payload {
            EventPayload::Cluster(ClusterEvent::NodeHealthChange(p)) => (
                Some((p.node_id.clone(), p.old_status, p.new_status)),
                p.cluster_status,
                p.healthy_nodes,
                p.total_nodes,
                // The payload carries the overall status, which is critical exactly when there
                // is no quorum.
                p.cluster_status != ClusterHealthStatus::Critical,
            ),
            EventPayload::Cluster(ClusterEvent::QuorumLost(q) | ClusterEvent::QuorumRestored(q)) => {
                // Quorum events carry counts only; the overall status follows from them by the
                // definition of `ClusterHealthStatus`.
                let status = if !q.has_quorum {
                    ClusterHealthStatus::Critical
                } else if q.healthy_nodes == q.total_nodes {
                    ClusterHealthStatus::Healthy
                } else {
                    ClusterHealthStatus::Degraded
                };
                (None, status, q.healthy_nodes, q.total_nodes, q.has_quorum)
            }
            _ => return None,
        };
        Some(ClusterHealthEvent {
            event_type: e.event_type.as_str().to_string(),
            node_id: node.as_ref().map(|(id, _, _)| ID(id.clone())),
            old_status: node.as_ref().map(|(_, old, _)| old.as_str().to_string()),
            new_status: node.as_ref().map(|(_, _, new)| new.as_str().to_string()),
            cluster_status: cluster_status.as_str().to_string(),
            healthy_nodes: healthy as u64,
            total_nodes: total as u64,
            has_quorum,
            seq: e.seq,
            event_id: ID(e.event_id.clone()),
            severity: e.severity.as_str().to_string(),
            timestamp: e.timestamp_ms / 1000,
            timestamp_ms: e.timestamp_ms,
        })
    }
}

/// The event filter of `events.md` with camelCase fields. Every field is optional; an absent one
/// admits everything.
#[derive(InputObject, Default, Debug, Clone)]
#[graphql(name = "EventFilter")]
pub struct EventFilterInput {
    pub replica_ids: Option<Vec<String>>,
    pub node_ids: Option<Vec<String>>,
    pub instance_ids: Option<Vec<String>>,
    pub tables: Option<Vec<String>>,
    pub shard_ids: Option<Vec<String>>,
    pub resource_ids: Option<Vec<String>>,
    pub query_ids: Option<Vec<String>>,
    pub group_ids: Option<Vec<String>>,
    /// Event types of the catalogue (`node_joined`, …); an unknown one is an error.
    pub event_types: Option<Vec<String>>,
    /// `replication`, `clustering`, `rac`, `sharding`, `system`.
    pub categories: Option<Vec<String>>,
    /// `info`, `warning`, `error` or `critical`.
    pub min_severity: Option<String>,
    /// Replay retained events with a greater seq first.
    pub since_seq: Option<u64>,
    pub include_lag_alerts: Option<bool>,
    pub include_status_changes: Option<bool>,
    pub include_conflicts: Option<bool>,
    pub include_health_changes: Option<bool>,
    pub include_failover_events: Option<bool>,
    pub include_leader_elections: Option<bool>,
    pub include_migrations: Option<bool>,
    pub include_cache_fusion: Option<bool>,
    pub include_lock_events: Option<bool>,
    pub include_recovery_events: Option<bool>,
    pub include_parallel_query: Option<bool>,
    pub include_rebalance_events: Option<bool>,
    pub include_shard_changes: Option<bool>,
}

/// `node_ids` -> `nodeIds`, so errors name the field as the client wrote it.
fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn invalid_filter(field: &str, reason: impl Into<String>) -> async_graphql::Error {
    gql_error(ApiError::invalid(
        &format!("filter.{}", camel_case(field)),
        reason,
    ))
}

fn parse_all<T: std::str::FromStr<Err = String>>(
    field: &str,
    values: Option<Vec<String>>,
) -> async_graphql::Result<Vec<T>> {
    values
        .unwrap_or_default()
        .iter()
        .map(|v| {
            v.parse()
                .map_err(|reason: String| invalid_filter(field, reason))
        })
        .collect()
}

impl EventFilterInput {
    /// The domain filter. Unknown event types, categories and severities, and id lists the
    /// contract does not allow, are `invalid_request` errors naming the field.
    pub fn into_filter(self) -> async_graphql::Result<EventFilter> {
        let mut filter = EventFilter::default();
        for (kind, ids) in [
            (SubjectKind::Replica, self.replica_ids),
            (SubjectKind::Node, self.node_ids),
            (SubjectKind::Instance, self.instance_ids),
            (SubjectKind::Table, self.tables),
            (SubjectKind::Shard, self.shard_ids),
            (SubjectKind::Resource, self.resource_ids),
            (SubjectKind::Query, self.query_ids),
            (SubjectKind::Group, self.group_ids),
        ] {
            *filter.ids_mut(kind) = ids.unwrap_or_default();
        }
        filter.event_types = parse_all("event_types", self.event_types)?;
        filter.categories = parse_all("categories", self.categories)?;
        filter.min_severity = self
            .min_severity
            .map(|s| {
                s.parse()
                    .map_err(|reason: String| invalid_filter("min_severity", reason))
            })
            .transpose()?;
        filter.since_seq = self.since_seq;
        for (name, value) in [
            ("include_lag_alerts", self.include_lag_alerts),
            ("include_status_changes", self.include_status_changes),
            ("include_conflicts", self.include_conflicts),
            ("include_health_changes", self.include_health_changes),
            ("include_failover_events", self.include_failover_events),
            ("include_leader_elections", self.include_leader_elections),
            ("include_migrations", self.include_migrations),
            ("include_cache_fusion", self.include_cache_fusion),
            ("include_lock_events", self.include_lock_events),
            ("include_recovery_events", self.include_recovery_events),
            ("include_parallel_query", self.include_parallel_query),
            ("include_rebalance_events", self.include_rebalance_events),
            ("include_shard_changes", self.include_shard_changes),
        ] {
            if let Some(slot) = filter.include_mut(name) {
                *slot = value;
            }
        }
        // The id-list rules (count, length) are the filter's own; checking them here keeps
        // GraphQL from admitting a filter the WebSocket and REST faces would refuse.
        filter
            .validate()
            .map_err(|e| invalid_filter(&e.field, e.reason))?;
        Ok(filter)
    }
}

/// The filter of an optional input (absent: everything).
pub(crate) fn filter_of(input: Option<EventFilterInput>) -> async_graphql::Result<EventFilter> {
    input.unwrap_or_default().into_filter()
}
