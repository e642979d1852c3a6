//! The event contract (`shared/spec/events.md`): the catalogue of event types, categories and
//! severities, the typed payloads, the subjects an event concerns, and the filter that decides
//! which subscriber sees it.
//!
//! An [`Event`] is what an actor builds when its state changed; the registry turns it into a
//! [`PublishedEvent`] by stamping `seq` and `event_id` and serializing it once. Every transport
//! (WebSocket, GraphQL, `GET /api/v1/events`) shares those bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use bytestring::ByteString;
use serde::{Deserialize, Serialize};

use crate::model::{ClusterHealthStatus, NodeHealth};

/// Which part of the system an event comes from. WebSocket streams other than `/ws/events` are
/// restricted to one category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Replication,
    Clustering,
    Rac,
    Sharding,
    /// Events about the runtime itself (supervised actor restarts).
    System,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::Replication,
        Category::Clustering,
        Category::Rac,
        Category::Sharding,
        Category::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Replication => "replication",
            Category::Clustering => "clustering",
            Category::Rac => "rac",
            Category::Sharding => "sharding",
            Category::System => "system",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown category '{s}'"))
    }
}

/// `info` < `warning` < `error` < `critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] =
        [Severity::Info, Severity::Warning, Severity::Error, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown severity '{s}'; expected one of info, warning, error, critical"))
    }
}

macro_rules! event_types {
    ($($variant:ident => ($name:literal, $category:ident)),* $(,)?) => {
        /// The whole catalogue of event types, including those whose domains come later: a filter
        /// naming any of them is valid today.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType { $($variant),* }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name),* }
            }

            pub fn category(self) -> Category {
                match self { $(EventType::$variant => Category::$category),* }
            }
        }
    };
}

event_types! {
    ReplicaAdded => ("replica_added", Replication),
    ReplicaRemoved => ("replica_removed", Replication),
    ReplicaStatusChange => ("replica_status_change", Replication),
    ReplicationLagAlert => ("replication_lag_alert", Replication),
    WalPositionUpdate => ("wal_position_update", Replication),
    ReplicationError => ("replication_error", Replication),
    SlotCreated => ("slot_created", Replication),
    SlotDropped => ("slot_dropped", Replication),
    SnapshotCreated => ("snapshot_created", Replication),
    SnapshotRestored => ("snapshot_restored", Replication),
    ConflictDetected => ("conflict_detected", Replication),
    ConflictResolved => ("conflict_resolved", Replication),
    NodeJoined => ("node_joined", Clustering),
    NodeLeft => ("node_left", Clustering),
    NodeHealthChange => ("node_health_change", Clustering),
    LeaderElected => ("leader_elected", Clustering),
    QuorumLost => ("quorum_lost", Clustering),
    QuorumRestored => ("quorum_restored", Clustering),
    FailoverInitiated => ("failover_initiated", Clustering),
    FailoverCompleted => ("failover_completed", Clustering),
    MigrationStarted => ("migration_started", Clustering),
    MigrationProgress => ("migration_progress", Clustering),
    MigrationCompleted => ("migration_completed", Clustering),
    BlockTransfer => ("block_transfer", Rac),
    LockGranted => ("lock_granted", Rac),
    LockReleased => ("lock_released", Rac),
    LockConverted => ("lock_converted", Rac),
    ResourceRemastered => ("resource_remastered", Rac),
    RecoveryStarted => ("recovery_started", Rac),
    RecoveryProgress => ("recovery_progress", Rac),
    RecoveryCompleted => ("recovery_completed", Rac),
    ParallelQueryStarted => ("parallel_query_started", Rac),
    ParallelQueryCompleted => ("parallel_query_completed", Rac),
    ShardAdded => ("shard_added", Sharding),
    ShardRemoved => ("shard_removed", Sharding),
    ShardStatusChange => ("shard_status_change", Sharding),
    RebalanceStarted => ("rebalance_started", Sharding),
    RebalanceProgress => ("rebalance_progress", Sharding),
    RebalanceCompleted => ("rebalance_completed", Sharding),
    ActorRestarted => ("actor_restarted", System),
    ReplicationLagSample => ("replication_lag_sample", Replication),
}

impl EventType {
    /// Position in [`EventType::ALL`], for per-type tables.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown event type '{s}'"))
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The kinds of id an event can concern, in the order of [`Subjects`]' fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectKind {
    Replica,
    Node,
    Instance,
    Table,
    Shard,
    Resource,
    Query,
    Group,
}

impl SubjectKind {
    pub const ALL: [SubjectKind; 8] = [
        SubjectKind::Replica,
        SubjectKind::Node,
        SubjectKind::Instance,
        SubjectKind::Table,
        SubjectKind::Shard,
        SubjectKind::Resource,
        SubjectKind::Query,
        SubjectKind::Group,
    ];

    /// The field name in `subjects` and in filters.
    pub fn field(self) -> &'static str {
        match self {
            SubjectKind::Replica => "replica_ids",
            SubjectKind::Node => "node_ids",
            SubjectKind::Instance => "instance_ids",
            SubjectKind::Table => "tables",
            SubjectKind::Shard => "shard_ids",
            SubjectKind::Resource => "resource_ids",
            SubjectKind::Query => "query_ids",
            SubjectKind::Group => "group_ids",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The ids an event concerns, by kind. Derived from the payload by [`EventPayload::subjects`] alone,
/// so filters never need to know payload layouts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subjects {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replica_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shard_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_ids: Vec<String>,
}

impl Subjects {
    pub fn of(&self, kind: SubjectKind) -> &[String] {
        match kind {
            SubjectKind::Replica => &self.replica_ids,
            SubjectKind::Node => &self.node_ids,
            SubjectKind::Instance => &self.instance_ids,
            SubjectKind::Table => &self.tables,
            SubjectKind::Shard => &self.shard_ids,
            SubjectKind::Resource => &self.resource_ids,
            SubjectKind::Query => &self.query_ids,
            SubjectKind::Group => &self.group_ids,
        }
    }

    fn of_mut(&mut self, kind: SubjectKind) -> &mut Vec<String> {
        match kind {
            SubjectKind::Replica => &mut self.replica_ids,
            SubjectKind::Node => &mut self.node_ids,
            SubjectKind::Instance => &mut self.instance_ids,
            SubjectKind::Table => &mut self.tables,
            SubjectKind::Shard => &mut self.shard_ids,
            SubjectKind::Resource => &mut self.resource_ids,
            SubjectKind::Query => &mut self.query_ids,
            SubjectKind::Group => &mut self.group_ids,
        }
    }

    fn add(&mut self, kind: SubjectKind, id: &str) {
        if id.is_empty() {
            return;
        }
        let ids = self.of_mut(kind);
        if !ids.iter().any(|existing| existing == id) {
            ids.push(id.to_string());
        }
    }
}

/// `node_joined` / `node_left`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeMembershipChange {
    pub node_id: String,
    pub node_address: String,
    pub node_role: String,
    pub reason: String,
    pub cluster_size: usize,
    pub has_quorum: bool,
}

/// `node_health_change`. `metrics` holds real measurements taken when the change was seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeHealthChange {
    pub node_id: String,
    pub old_status: NodeHealth,
    pub new_status: NodeHealth,
    pub role: String,
    pub reason: String,
    pub metrics: BTreeMap<String, f64>,
    /// Overall health after this change, so a dashboard needs no second request.
    pub cluster_status: ClusterHealthStatus,
    pub healthy_nodes: usize,
    pub total_nodes: usize,
}

/// `quorum_lost` / `quorum_restored`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuorumChange {
    pub healthy_nodes: usize,
    pub total_nodes: usize,
    pub quorum_size: usize,
    pub has_quorum: bool,
}

/// `actor_restarted`: a supervised actor stopped on an internal fault and was started again
/// from its durable state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorRestart {
    /// `node`, later also `replica`, `instance`, `shard`.
    pub actor_kind: String,
    pub actor_id: String,
    pub reason: String,
    pub restart_count: u64,
}

/// `replica_added` / `replica_removed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaMembershipChange {
    pub replica_id: String,
    /// `sync` or `async`.
    pub mode: String,
    pub reason: String,
}

/// `replica_status_change`. `metadata` holds measurements as strings (wal_position,
/// bytes_replayed, catchup_duration_seconds …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatusChange {
    pub replica_id: String,
    pub old_status: String,
    pub new_status: String,
    pub reason: String,
    pub metadata: BTreeMap<String, String>,
}

/// `replication_lag_alert`: edge-triggered on `lag_alert_bytes`, once up, once back down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationLagAlert {
    pub replica_id: String,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub threshold_bytes: u64,
    pub severity: Severity,
    pub details: String,
}

/// `wal_position_update`: a sampled position report of one replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalPositionUpdate {
    pub replica_id: String,
    pub write_lsn: String,
    pub flush_lsn: String,
    pub replay_lsn: String,
    pub bytes_behind: u64,
}

/// `slot_created` / `slot_dropped`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotChange {
    pub slot_name: String,
    pub slot_type: String,
    pub active: bool,
    pub restart_lsn: String,
    pub confirmed_flush_lsn: String,
}

/// `snapshot_created` / `snapshot_restored`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotChange {
    pub snapshot_id: String,
    pub lsn: String,
    pub rows: u64,
    pub bytes: u64,
    /// The replica restored into (empty for `snapshot_created`).
    pub target: String,
}

/// `replication_lag_sample` (an addition to the catalogue): one real lag measurement of a
/// replica, taken at most once per heartbeat interval from its reports. Built only when a
/// subscriber wants it; feeds GraphQL's `replicationLagUpdates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationLagSample {
    pub replica_id: String,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub threshold_bytes: u64,
    pub status: String,
}

/// `replication_error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationErrorEvent {
    /// The replica the error is about; empty when it is about the primary or several replicas.
    pub replica_id: String,
    pub error_code: String,
    pub error_message: String,
    pub severity: Severity,
    pub failed_operation: String,
    pub retry_count: u32,
}

/// The typed payload of an event. The variant decides the `event_type`; variants arrive with their
/// domains (the catalogue in [`EventType`] is complete already).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", rename_all = "snake_case")]
pub enum EventPayload {
    NodeJoined(NodeMembershipChange),
    NodeLeft(NodeMembershipChange),
    NodeHealthChange(NodeHealthChange),
    QuorumLost(QuorumChange),
    QuorumRestored(QuorumChange),
    ActorRestarted(ActorRestart),
    ReplicaAdded(ReplicaMembershipChange),
    ReplicaRemoved(ReplicaMembershipChange),
    ReplicaStatusChange(ReplicaStatusChange),
    ReplicationLagAlert(ReplicationLagAlert),
    WalPositionUpdate(WalPositionUpdate),
    ReplicationError(ReplicationErrorEvent),
    ReplicationLagSample(ReplicationLagSample),
    SlotCreated(SlotChange),
    SlotDropped(SlotChange),
    SnapshotCreated(SnapshotChange),
    SnapshotRestored(SnapshotChange),
}

impl EventPayload {
    pub fn event_type(&self) -> EventType {
        match self {
            EventPayload::NodeJoined(_) => EventType::NodeJoined,
            EventPayload::NodeLeft(_) => EventType::NodeLeft,
            EventPayload::NodeHealthChange(_) => EventType::NodeHealthChange,
            EventPayload::QuorumLost(_) => EventType::QuorumLost,
            EventPayload::QuorumRestored(_) => EventType::QuorumRestored,
            EventPayload::ActorRestarted(_) => EventType::ActorRestarted,
            EventPayload::ReplicaAdded(_) => EventType::ReplicaAdded,
            EventPayload::ReplicaRemoved(_) => EventType::ReplicaRemoved,
            EventPayload::ReplicaStatusChange(_) => EventType::ReplicaStatusChange,
            EventPayload::ReplicationLagAlert(_) => EventType::ReplicationLagAlert,
            EventPayload::WalPositionUpdate(_) => EventType::WalPositionUpdate,
            EventPayload::ReplicationError(_) => EventType::ReplicationError,
            EventPayload::ReplicationLagSample(_) => EventType::ReplicationLagSample,
            EventPayload::SlotCreated(_) => EventType::SlotCreated,
            EventPayload::SlotDropped(_) => EventType::SlotDropped,
            EventPayload::SnapshotCreated(_) => EventType::SnapshotCreated,
            EventPayload::SnapshotRestored(_) => EventType::SnapshotRestored,
        }
    }

    /// The one function that derives `subjects` from a payload.
    pub fn subjects(&self) -> Subjects {
        let mut s = Subjects::default();
        match self {
            EventPayload::NodeJoined(p) | EventPayload::NodeLeft(p) => {
                s.add(SubjectKind::Node, &p.node_id)
            }
            EventPayload::NodeHealthChange(p) => s.add(SubjectKind::Node, &p.node_id),
            EventPayload::QuorumLost(_) | EventPayload::QuorumRestored(_) => {}
            EventPayload::ReplicaAdded(p) | EventPayload::ReplicaRemoved(p) => {
                s.add(SubjectKind::Replica, &p.replica_id)
            }
            EventPayload::ReplicaStatusChange(p) => s.add(SubjectKind::Replica, &p.replica_id),
            EventPayload::ReplicationLagAlert(p) => s.add(SubjectKind::Replica, &p.replica_id),
            EventPayload::WalPositionUpdate(p) => s.add(SubjectKind::Replica, &p.replica_id),
            EventPayload::ReplicationError(p) => s.add(SubjectKind::Replica, &p.replica_id),
            EventPayload::ReplicationLagSample(p) => s.add(SubjectKind::Replica, &p.replica_id),
            // A slot is no replica, table or shard: slot events are found by type and category.
            EventPayload::SlotCreated(_) | EventPayload::SlotDropped(_) => {}
            EventPayload::SnapshotCreated(_) => {}
            EventPayload::SnapshotRestored(p) => s.add(SubjectKind::Replica, &p.target),
            EventPayload::ActorRestarted(p) => {
                let kind = match p.actor_kind.as_str() {
                    "node" => Some(SubjectKind::Node),
                    "replica" => Some(SubjectKind::Replica),
                    "instance" => Some(SubjectKind::Instance),
                    "shard" => Some(SubjectKind::Shard),
                    _ => None,
                };
                if let Some(kind) = kind {
                    s.add(kind, &p.actor_id);
                }
            }
        }
        s
    }
}

/// An event as the actor that saw the change builds it, before the registry stamps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub severity: Severity,
    /// `component:identifier`, e.g. `node:node-2`.
    pub source: String,
    pub timestamp_ms: i64,
    pub payload: EventPayload,
}

impl Event {
    /// An event stamped with the current wall-clock time.
    pub fn now(severity: Severity, source: impl Into<String>, payload: EventPayload) -> Self {
        Event { severity, source: source.into(), timestamp_ms: now_ms(), payload }
    }

    pub fn event_type(&self) -> EventType {
        self.payload.event_type()
    }

    pub fn category(&self) -> Category {
        self.event_type().category()
    }
}

/// Milliseconds since the Unix epoch; 0 if the clock is before 1970 (it is not, but a clock is
/// not worth a panic).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The id the registry gives the event with sequence number `seq`.
pub fn event_id(seq: u64) -> String {
    format!("evt_{seq:012}")
}

/// An event after publication: stamped, serialized once, shared by every subscriber through an
/// [`Arc`]. `json` is the envelope; `ws_frame` is the WebSocket `event` frame around it, built once
/// so sessions copy nothing.
#[derive(Debug)]
pub struct PublishedEvent {
    pub seq: u64,
    pub event_id: String,
    pub category: Category,
    pub event_type: EventType,
    pub severity: Severity,
    pub source: String,
    pub timestamp_ms: i64,
    pub subjects: Subjects,
    pub payload: EventPayload,
    pub json: ByteString,
    pub ws_frame: ByteString,
}

pub type SharedEvent = Arc<PublishedEvent>;

#[derive(Serialize)]
struct Envelope<'a> {
    event_id: &'a str,
    seq: u64,
    category: Category,
    event_type: EventType,
    severity: Severity,
    source: &'a str,
    timestamp: i64,
    timestamp_ms: i64,
    subjects: &'a Subjects,
    payload: PayloadWithTimestamp<'a>,
}

/// The payload as sent: its fields (with `event_type` from the serde tag) plus `timestamp`, for
/// clients written against the older payload-only format.
#[derive(Serialize)]
struct PayloadWithTimestamp<'a> {
    #[serde(flatten)]
    payload: &'a EventPayload,
    timestamp: i64,
}

/// The WebSocket frame is this, the envelope, and `}`.
const WS_FRAME_PREFIX: &[u8] = b"{\"type\":\"event\",\"event\":";

impl PublishedEvent {
    /// Stamps `event` with `seq` and serializes it: the one place an event becomes bytes. The
    /// envelope is written once, straight into the WebSocket frame's buffer; `json` is a slice
    /// of that same buffer, so one allocation serves every transport.
    pub fn stamp(seq: u64, event: Event) -> Result<PublishedEvent, serde_json::Error> {
        let event_type = event.event_type();
        let subjects = event.payload.subjects();
        let event_id = event_id(seq);
        let mut buf = Vec::with_capacity(768);
        buf.extend_from_slice(WS_FRAME_PREFIX);
        serde_json::to_writer(
            &mut buf,
            &Envelope {
                event_id: &event_id,
                seq,
                category: event_type.category(),
                event_type,
                severity: event.severity,
                source: &event.source,
                timestamp: event.timestamp_ms / 1000,
                timestamp_ms: event.timestamp_ms,
                subjects: &subjects,
                payload: PayloadWithTimestamp { payload: &event.payload, timestamp: event.timestamp_ms / 1000 },
            },
        )?;
        let envelope_end = buf.len();
        buf.push(b'}');
        let frame = String::from_utf8(buf).map_err(|e| {
            // serde_json writes UTF-8 only; this is here so that a bug there is an error, not UB.
            <serde_json::Error as serde::ser::Error>::custom(e)
        })?;
        let ws_frame = ByteString::from(frame);
        let json = ws_frame.slice_ref(&ws_frame[WS_FRAME_PREFIX.len()..envelope_end]);
        Ok(PublishedEvent {
            seq,
            event_id,
            category: event_type.category(),
            event_type,
            severity: event.severity,
            source: event.source,
            timestamp_ms: event.timestamp_ms,
            subjects,
            payload: event.payload,
            json,
            ws_frame,
        })
    }
}

/// A subscriber's filter. Every field is optional; an absent or empty id list admits everything.
/// Id lists are ANDed with each other, ids within one list ORed; `event_types`, `categories` and
/// `min_severity` narrow further; the seed format's `include_*` flags, when false, take their event
/// types out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replica_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shard_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<EventType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<Category>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_lag_alerts: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_status_changes: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_conflicts: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_health_changes: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_failover_events: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_leader_elections: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_migrations: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_cache_fusion: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_lock_events: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_recovery_events: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_parallel_query: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_rebalance_events: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_shard_changes: Option<bool>,
}

/// Why a filter could not be understood: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FilterError {
    pub field: String,
    pub reason: String,
}

/// The seed format's booleans and the event types each one stands for.
const INCLUDE_FLAGS: &[(&str, &[EventType])] = &[
    ("include_lag_alerts", &[EventType::ReplicationLagAlert]),
    ("include_status_changes", &[EventType::ReplicaStatusChange]),
    ("include_conflicts", &[EventType::ConflictDetected, EventType::ConflictResolved]),
    (
        "include_health_changes",
        &[EventType::NodeHealthChange, EventType::QuorumLost, EventType::QuorumRestored],
    ),
    ("include_failover_events", &[EventType::FailoverInitiated, EventType::FailoverCompleted]),
    ("include_leader_elections", &[EventType::LeaderElected]),
    (
        "include_migrations",
        &[EventType::MigrationStarted, EventType::MigrationProgress, EventType::MigrationCompleted],
    ),
    ("include_cache_fusion", &[EventType::BlockTransfer]),
    (
        "include_lock_events",
        &[EventType::LockGranted, EventType::LockReleased, EventType::LockConverted],
    ),
    (
        "include_recovery_events",
        &[EventType::RecoveryStarted, EventType::RecoveryProgress, EventType::RecoveryCompleted],
    ),
    (
        "include_parallel_query",
        &[EventType::ParallelQueryStarted, EventType::ParallelQueryCompleted],
    ),
    (
        "include_rebalance_events",
        &[EventType::RebalanceStarted, EventType::RebalanceProgress, EventType::RebalanceCompleted],
    ),
    (
        "include_shard_changes",
        &[EventType::ShardAdded, EventType::ShardRemoved, EventType::ShardStatusChange],
    ),
];

/// The most ids one list may hold: a filter is a query, not a data set.
pub const MAX_FILTER_IDS: usize = 1024;

impl EventFilter {
    /// Parses a filter from a JSON text frame. Unknown fields, unknown event types, categories or
    /// severities are errors.
    pub fn from_json(text: &str) -> Result<EventFilter, FilterError> {
        let filter: EventFilter = serde_json::from_str(text).map_err(|e| {
            let msg = e.to_string();
            let field = msg
                .split('`')
                .nth(1)
                .filter(|_| msg.starts_with("unknown field"))
                .unwrap_or("filter")
                .to_string();
            FilterError { field, reason: msg }
        })?;
        filter.validate()?;
        Ok(filter)
    }

    /// Parses a filter from query-string pairs (`node_ids=a,b&min_severity=warning`). Pairs whose
    /// key is in `ignore` (e.g. `token`) are skipped; any other unknown key is an error.
    pub fn from_query_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        ignore: &[&str],
    ) -> Result<EventFilter, FilterError> {
        let mut f = EventFilter::default();
        for (key, value) in pairs {
            if ignore.contains(&key) {
                continue;
            }
            let err = |reason: String| FilterError { field: key.to_string(), reason };
            let list = || -> Vec<String> {
                value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
            };
            let flag = || -> Result<Option<bool>, FilterError> {
                match value {
                    "true" | "1" => Ok(Some(true)),
                    "false" | "0" => Ok(Some(false)),
                    other => Err(err(format!("expected true or false, got '{other}'"))),
                }
            };
            if let Some(kind) = SubjectKind::ALL.iter().find(|k| k.field() == key) {
                f.ids_mut(*kind).extend(list());
                continue;
            }
            match key {
                "event_types" => {
                    for t in list() {
                        f.event_types.push(t.parse().map_err(err)?);
                    }
                }
                "categories" => {
                    for c in list() {
                        f.categories.push(c.parse().map_err(err)?);
                    }
                }
                "min_severity" => f.min_severity = Some(value.parse().map_err(err)?),
                "since_seq" => {
                    f.since_seq = Some(value.parse().map_err(|_| {
                        err(format!("expected a non-negative integer, got '{value}'"))
                    })?)
                }
                other => match f.flag_mut(other) {
                    Some(slot) => *slot = flag()?,
                    None => return Err(err(format!("unknown filter field '{other}'"))),
                },
            }
        }
        f.validate()?;
        Ok(f)
    }

    fn validate(&self) -> Result<(), FilterError> {
        for kind in SubjectKind::ALL {
            let ids = self.ids(kind);
            if ids.len() > MAX_FILTER_IDS {
                return Err(FilterError {
                    field: kind.field().into(),
                    reason: format!("at most {MAX_FILTER_IDS} ids, got {}", ids.len()),
                });
            }
            if ids.iter().any(|id| id.is_empty() || id.len() > 256) {
                return Err(FilterError {
                    field: kind.field().into(),
                    reason: "ids must be 1 to 256 characters".into(),
                });
            }
        }
        Ok(())
    }

    pub fn ids(&self, kind: SubjectKind) -> &[String] {
        match kind {
            SubjectKind::Replica => &self.replica_ids,
            SubjectKind::Node => &self.node_ids,
            SubjectKind::Instance => &self.instance_ids,
            SubjectKind::Table => &self.tables,
            SubjectKind::Shard => &self.shard_ids,
            SubjectKind::Resource => &self.resource_ids,
            SubjectKind::Query => &self.query_ids,
            SubjectKind::Group => &self.group_ids,
        }
    }

    fn ids_mut(&mut self, kind: SubjectKind) -> &mut Vec<String> {
        match kind {
            SubjectKind::Replica => &mut self.replica_ids,
            SubjectKind::Node => &mut self.node_ids,
            SubjectKind::Instance => &mut self.instance_ids,
            SubjectKind::Table => &mut self.tables,
            SubjectKind::Shard => &mut self.shard_ids,
            SubjectKind::Resource => &mut self.resource_ids,
            SubjectKind::Query => &mut self.query_ids,
            SubjectKind::Group => &mut self.group_ids,
        }
    }

    fn flag(&self, name: &str) -> Option<bool> {
        match name {
            "include_lag_alerts" => self.include_lag_alerts,
            "include_status_changes" => self.include_status_changes,
            "include_conflicts" => self.include_conflicts,
            "include_health_changes" => self.include_health_changes,
            "include_failover_events" => self.include_failover_events,
            "include_leader_elections" => self.include_leader_elections,
            "include_migrations" => self.include_migrations,
            "include_cache_fusion" => self.include_cache_fusion,
            "include_lock_events" => self.include_lock_events,
            "include_recovery_events" => self.include_recovery_events,
            "include_parallel_query" => self.include_parallel_query,
            "include_rebalance_events" => self.include_rebalance_events,
            "include_shard_changes" => self.include_shard_changes,
            _ => None,
        }
    }

    fn flag_mut(&mut self, name: &str) -> Option<&mut Option<bool>> {
        Some(match name {
            "include_lag_alerts" => &mut self.include_lag_alerts,
            "include_status_changes" => &mut self.include_status_changes,
            "include_conflicts" => &mut self.include_conflicts,
            "include_health_changes" => &mut self.include_health_changes,
            "include_failover_events" => &mut self.include_failover_events,
            "include_leader_elections" => &mut self.include_leader_elections,
            "include_migrations" => &mut self.include_migrations,
            "include_cache_fusion" => &mut self.include_cache_fusion,
            "include_lock_events" => &mut self.include_lock_events,
            "include_recovery_events" => &mut self.include_recovery_events,
            "include_parallel_query" => &mut self.include_parallel_query,
            "include_rebalance_events" => &mut self.include_rebalance_events,
            "include_shard_changes" => &mut self.include_shard_changes,
            _ => return None,
        })
    }

    /// Compiles the filter for fast matching, restricted to `stream` (the categories a WebSocket
    /// endpoint carries; empty: all).
    pub fn compile(&self, stream: &[Category]) -> CompiledFilter {
        let mut types = [true; EVENT_TYPE_COUNT];
        for t in EventType::ALL {
            let mut admit = true;
            if !self.event_types.is_empty() && !self.event_types.contains(t) {
                admit = false;
            }
            if !self.categories.is_empty() && !self.categories.contains(&t.category()) {
                admit = false;
            }
            if !stream.is_empty() && !stream.contains(&t.category()) {
                admit = false;
            }
            types[t.index()] = admit;
        }
        for (flag, flagged) in INCLUDE_FLAGS {
            if self.flag(flag) == Some(false) {
                for t in *flagged {
                    types[t.index()] = false;
                }
            }
        }
        let ids = SubjectKind::ALL
            .iter()
            .filter(|k| !self.ids(**k).is_empty())
            .map(|k| (*k, self.ids(*k).to_vec()))
            .collect();
        CompiledFilter { types, min_severity: self.min_severity.unwrap_or(Severity::Info), ids }
    }
}

/// Number of event types in the catalogue.
pub const EVENT_TYPE_COUNT: usize = EventType::ALL.len();

/// A filter in the form the registry checks on every publish: one bool per event type, a severity
/// floor, and the non-empty id lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledFilter {
    pub types: [bool; EVENT_TYPE_COUNT],
    pub min_severity: Severity,
    /// Non-empty id lists only, in [`SubjectKind`] order.
    pub ids: Vec<(SubjectKind, Vec<String>)>,
}

impl CompiledFilter {
    /// Whether this filter admits an event of this type, severity and subjects.
    pub fn admits(&self, event_type: EventType, severity: Severity, subjects: &Subjects) -> bool {
        self.types[event_type.index()]
            && severity >= self.min_severity
            && self.ids.iter().all(|(kind, wanted)| {
                subjects.of(*kind).iter().any(|id| wanted.iter().any(|w| w == id))
            })
    }

    pub fn admits_event(&self, e: &PublishedEvent) -> bool {
        self.admits(e.event_type, e.severity, &e.subjects)
    }

    /// Whether any event of this type could pass (ignoring ids and severity): the interest table
    /// is built from this.
    pub fn wants_type(&self, t: EventType) -> bool {
        self.types[t.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(node: &str) -> PublishedEvent {
        PublishedEvent::stamp(
            7,
            Event::now(
                Severity::Info,
                format!("node:{node}"),
                EventPayload::NodeJoined(NodeMembershipChange {
                    node_id: node.into(),
                    node_address: String::new(),
                    node_role: "voter".into(),
                    reason: "test".into(),
                    cluster_size: 4,
                    has_quorum: true,
                }),
            ),
        )
        .expect("a payload of plain fields serializes")
    }

    fn check(filter: &str, stream: &[Category], node: &str, expected: bool) {
        let f = EventFilter::from_json(filter).expect("valid filter");
        assert_eq!(f.compile(stream).admits_event(&joined(node)), expected, "{filter} on {node}");
    }

    #[test]
    fn filters_admit_as_the_contract_says() {
        check("{}", &[], "node-4", true);
        check(r#"{"node_ids":["node-4"]}"#, &[], "node-4", true);
        check(r#"{"node_ids":["node-4"]}"#, &[], "node-5", false);
        check(r#"{"node_ids":["node-5","node-4"]}"#, &[], "node-4", true);
        check(r#"{"node_ids":["node-4"],"replica_ids":["r1"]}"#, &[], "node-4", false);
        check(r#"{"node_ids":[],"instance_ids":[]}"#, &[], "node-4", true);
        check(r#"{"event_types":["node_left"]}"#, &[], "node-4", false);
        check(r#"{"categories":["clustering"]}"#, &[], "node-4", true);
        check(r#"{"min_severity":"warning"}"#, &[], "node-4", false);
        check("{}", &[Category::Replication], "node-4", false);
        check(r#"{"include_health_changes":false}"#, &[], "node-4", true);
    }

    #[test]
    fn envelope_has_every_field_and_payload_repeats_type_and_timestamp() {
        let e = joined("node-4");
        let v: serde_json::Value = serde_json::from_str(&e.json).expect("envelope is JSON");
        for field in [
            "event_id", "seq", "category", "event_type", "severity", "source", "timestamp",
            "timestamp_ms", "subjects", "payload",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["event_id"], "evt_000000000007");
        assert_eq!(v["subjects"]["node_ids"][0], "node-4");
        assert_eq!(v["payload"]["event_type"], "node_joined");
        assert!(v["payload"]["timestamp"].is_i64());
        let frame: serde_json::Value = serde_json::from_str(&e.ws_frame).expect("frame is JSON");
        assert_eq!(frame["type"], "event");
        assert_eq!(frame["event"], v);
    }

    #[test]
    fn bad_filters_name_the_field() {
        let e = EventFilter::from_json(r#"{"nodes":["a"]}"#).unwrap_err();
        assert_eq!(e.field, "nodes");
        assert!(EventFilter::from_json(r#"{"event_types":["nope"]}"#).is_err());
        assert!(EventFilter::from_json(r#"{"min_severity":"loud"}"#).is_err());
        assert!(EventFilter::from_json("{not json").is_err());
        let e = EventFilter::from_query_pairs([("since_seq", "x")], &[]).unwrap_err();
        assert_eq!(e.field, "since_seq");
        let e = EventFilter::from_query_pairs([("bogus", "1")], &["token"]).unwrap_err();
        assert_eq!(e.field, "bogus");
        let f = EventFilter::from_query_pairs(
            [("node_ids", "node-4,node-5"), ("token", "t"), ("include_health_changes", "false")],
            &["token"],
        )
        .expect("valid");
        assert_eq!(f.node_ids, vec!["node-4", "node-5"]);
        assert_eq!(f.include_health_changes, Some(false));
    }

    #[test]
    fn every_event_type_round_trips_its_name() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(*t));
        }
    }
}
