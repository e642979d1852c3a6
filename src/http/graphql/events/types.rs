//! The GraphQL types of the event registry: `ClusterEvent` (the whole envelope), the stamp every
//! typed event object carries (`seq`, `eventId`, `severity`, `timestamp`), and the `EventFilter`
//! input with its translation to the registry's filter.

use async_graphql::{InputObject, Object, SimpleObject, ID};
use serde_json::Value as JsonValue;

use crate::http::error::ApiError;
use crate::http::graphql::schema::gql_error;
use crate::messages::events::{Category, EventFilter, Severity, SharedEvent, SubjectKind};

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
    async fn category(&self) -> Category {
        self.0.category
    }
    async fn event_type(&self) -> &str {
        self.0.event_type.as_str()
    }
    /// `INFO` < `WARNING` < `ERROR` < `CRITICAL`.
    async fn severity(&self) -> Severity {
        self.0.severity
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
        // Parsed from the envelope every transport shares, so the payload is the same bytes
        // (including the repeated `event_type` and `timestamp`) as on the other transports.
        let mut envelope: JsonValue = serde_json::from_str(self.0.json())
            .map_err(|e| async_graphql::Error::new(format!("event envelope: {e}")))?;
        Ok(envelope
            .get_mut("payload")
            .map(JsonValue::take)
            .unwrap_or(JsonValue::Null))
    }
}

/// What every typed event object carries beside its payload's fields, flattened into it.
#[derive(SimpleObject, Debug, Clone)]
pub struct EventStamp {
    pub seq: u64,
    pub event_id: ID,
    pub severity: Severity,
    /// Epoch seconds.
    pub timestamp: i64,
    pub timestamp_ms: i64,
}

impl EventStamp {
    pub fn of(e: &SharedEvent) -> Self {
        EventStamp {
            seq: e.seq,
            event_id: ID(e.event_id.clone()),
            severity: e.severity,
            timestamp: e.timestamp_ms / 1000,
            timestamp_ms: e.timestamp_ms,
        }
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
