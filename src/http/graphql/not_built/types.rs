//! The result types of the not-built subscriptions, field for field the payloads `events.md`
//! gives their event types (camelCase), plus the stamp every typed event object carries; closed
//! sets the contract names are enums. Nothing builds them yet: they fix the schema clients
//! write against. With its domain, each moves to that domain's folder (its enums to `model`).

use async_graphql::{Enum, SimpleObject, ID};
use serde_json::Value as JsonValue;

use crate::http::graphql::events::EventStamp;
use crate::model::ConflictStrategy;

/// How two sites' writes to one row collided.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictType {
    UpdateUpdate,
    UpdateDelete,
    InsertInsert,
    DeleteUpdate,
}

/// `conflict_detected` / `conflict_resolved`.
#[derive(SimpleObject)]
pub struct ConflictEvent {
    pub event_type: String,
    pub conflict_id: ID,
    pub group_id: ID,
    pub table_name: String,
    pub key: String,
    pub conflict_type: ConflictType,
    pub local_value: JsonValue,
    pub remote_value: JsonValue,
    pub resolution_strategy: ConflictStrategy,
    /// Set once resolved.
    pub resolved_value: Option<JsonValue>,
    /// The site whose write collided with the local one.
    pub source_replica: ID,
    #[graphql(flatten)]
    pub stamp: EventStamp,
}

/// `rebalance_started` / `rebalance_progress` / `rebalance_completed`.
#[derive(SimpleObject)]
pub struct RebalanceProgressEvent {
    pub event_type: String,
    pub plan_id: ID,
    pub table_name: String,
    pub source_shard: ID,
    pub target_shard: ID,
    pub progress_percent: f64,
    pub rows_migrated: u64,
    pub total_rows: u64,
    pub eta_seconds: Option<f64>,
    #[graphql(flatten)]
    pub stamp: EventStamp,
}
