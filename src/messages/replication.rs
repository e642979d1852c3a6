//! Messages of the replication domain: the data path (replicate a batch of operations, read a
//! row), the replica lifecycle, status and lag, and what the primary and its replicas tell each
//! other (shipped WAL, progress reports). The events the domain publishes are in
//! `replication/events.rs`.
//!
//! LSNs are byte positions in the primary's write-ahead log, as in PostgreSQL: a record that
//! starts at `lsn` and is `n` bytes long ends at `lsn + n`, where the next one starts.

use std::sync::Arc;

use actix::prelude::*;
use async_graphql::SimpleObject;
use serde::{Deserialize, Serialize};

use crate::model::{ReplicaMode, ReplicaStatus, ReplicationMode, SlotType};
use crate::messages::errors::{invalid_field_details, DescribedError, ErrorKind};
use crate::model::{lsn_text, ClusterHealthStatus, ConflictStrategy, LogRecord, Op, OpKind};

mod events;
pub use events::*;

/// Why a replication request failed; each carries what it is about.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplicationError {
    #[error("no replica named '{replica_id}'")]
    ReplicaNotFound { replica_id: String },
    #[error("a replica named '{replica_id}' exists already")]
    ReplicaExists { replica_id: String },
    #[error("invalid field '{field}': {reason}")]
    InvalidField { field: String, reason: String },
    /// A well-formed value that the current state does not allow (a quorum larger than the
    /// replicas, an lsn past the WAL, changes of a physical slot): 409, as the contract says.
    #[error("{field}: {reason}")]
    ConflictsWithState { field: String, reason: String },
    #[error("row {table}/{key} exists already")]
    DuplicateKey { table: String, key: String },
    #[error("no row {table}/{key}")]
    RowNotFound { table: String, key: String },
    #[error("the primary '{primary}' is down: it refuses writes until it is restarted")]
    PrimaryDown { primary: String },
    /// The batch was durable on the primary, which then went down before the replicas the mode
    /// waits for confirmed it: it is there after a restart.
    #[error("the primary '{primary}' went down after making the write durable (lsn {lsn}) but before the replicas confirmed it")]
    PrimaryDownAfterCommit { primary: String, lsn: u64 },
    #[error("replica '{replica_id}' is down")]
    ReplicaDown { replica_id: String },
    #[error("replica '{replica_id}' is {state} already")]
    WrongState { replica_id: String, state: String },
    /// The write is durable on the primary, but the replicas the mode waits for did not flush it
    /// in time.
    #[error("timed out after {timeout_ms} ms waiting for {missing:?} to flush lsn {lsn}; the write is durable on the primary")]
    SyncTimeout { lsn: u64, timeout_ms: u64, acknowledged_by: Vec<String>, missing: Vec<String> },
    #[error("no snapshot named '{snapshot_id}'")]
    SnapshotNotFound { snapshot_id: String },
    #[error("the WAL after {lsn} is gone (oldest kept: {oldest}); {what} cannot stream from there")]
    WalGone { lsn: String, oldest: String, what: String },
    #[error("no slot named '{slot_name}'")]
    SlotNotFound { slot_name: String },
    #[error("a slot named '{slot_name}' exists already")]
    SlotExists { slot_name: String },
    /// Removing sync replica `replica_id` would leave fewer sync replicas than semi_sync's
    /// quorum counts, and no write could be acknowledged.
    #[error("removing sync replica '{replica_id}' would leave {} sync replica(s), fewer than sync_quorum ({sync_quorum}); lower sync_quorum or change the mode first (PUT /api/v1/replication/config)", .sync_replicas - 1)]
    QuorumUnreachable { replica_id: String, sync_quorum: usize, sync_replicas: usize },
    #[error("storage failed: {message}")]
    Storage { message: String },
}

impl DescribedError for ReplicationError {
    fn kind(&self) -> ErrorKind {
        use ReplicationError::*;
        match self {
            InvalidField { .. } => ErrorKind::Invalid,
            ReplicaNotFound { .. } | RowNotFound { .. } | SnapshotNotFound { .. } | SlotNotFound { .. } => ErrorKind::NotFound,
            ReplicaExists { .. } | DuplicateKey { .. } | WrongState { .. } | WalGone { .. } | SlotExists { .. } | QuorumUnreachable { .. } | ConflictsWithState { .. } => {
                ErrorKind::Conflict
            }
            PrimaryDown { .. } | PrimaryDownAfterCommit { .. } | ReplicaDown { .. } | Storage { .. } => ErrorKind::Unavailable,
            SyncTimeout { .. } => ErrorKind::Timeout,
        }
    }

    fn code(&self) -> &'static str {
        use ReplicationError::*;
        match self {
            ReplicaNotFound { .. } => "replica_not_found",
            ReplicaExists { .. } => "replica_exists",
            InvalidField { .. } => "invalid_request",
            ConflictsWithState { .. } => "conflicts_with_state",
            DuplicateKey { .. } => "duplicate_key",
            RowNotFound { .. } => "row_not_found",
            PrimaryDown { .. } | PrimaryDownAfterCommit { .. } => "primary_down",
            ReplicaDown { .. } => "replica_down",
            WrongState { .. } => "wrong_state",
            SyncTimeout { .. } => "replication_timeout",
            SnapshotNotFound { .. } => "snapshot_not_found",
            WalGone { .. } => "wal_gone",
            SlotNotFound { .. } => "slot_not_found",
            SlotExists { .. } => "slot_exists",
            QuorumUnreachable { .. } => "sync_quorum_unreachable",
            Storage { .. } => "storage_unavailable",
        }
    }

    fn details(&self) -> serde_json::Value {
        use serde_json::json;
        use ReplicationError::*;
        match self {
            ReplicaNotFound { replica_id } | ReplicaExists { replica_id } | ReplicaDown { replica_id } => json!({ "replica_id": replica_id }),
            InvalidField { field, reason } | ConflictsWithState { field, reason } => invalid_field_details(field, reason),
            DuplicateKey { table, key } | RowNotFound { table, key } => json!({ "table": table, "key": key }),
            PrimaryDown { primary } => json!({ "primary": primary }),
            PrimaryDownAfterCommit { primary, lsn } => {
                json!({ "primary": primary, "durable_on_primary": true, "lsn": lsn_text(*lsn), "lsn_u64": lsn })
            }
            WrongState { replica_id, state } => json!({ "target": replica_id, "state": state }),
            SyncTimeout { lsn, timeout_ms, acknowledged_by, missing } => json!({
                "durable_on_primary": true,
                "lsn": lsn_text(*lsn),
                "lsn_u64": lsn,
                "timeout_ms": timeout_ms,
                "acknowledged_by": acknowledged_by,
                "missing": missing,
            }),
            SnapshotNotFound { snapshot_id } => json!({ "snapshot_id": snapshot_id }),
            WalGone { lsn, oldest, what } => json!({ "lsn": lsn, "oldest_retained_lsn": oldest, "target": what }),
            SlotNotFound { slot_name } | SlotExists { slot_name } => json!({ "slot_name": slot_name }),
            QuorumUnreachable { replica_id, sync_quorum, sync_replicas } => {
                json!({ "replica_id": replica_id, "sync_quorum": sync_quorum, "sync_replicas": sync_replicas })
            }
            Storage { .. } => json!({}),
        }
    }

    fn message(&self) -> String {
        match self {
            ReplicationError::InvalidField { field, reason } | ReplicationError::ConflictsWithState { field, reason } => {
                format!("{field}: {reason}")
            }
            other => other.to_string(),
        }
    }
}

/// Appends a batch to the WAL and answers once the replication mode is satisfied.
#[derive(Debug, Message)]
#[rtype(result = "Result<ReplicateAck, ReplicationError>")]
pub struct ReplicateOps {
    pub ops: Vec<Op>,
}

/// The answer to `replicate`: the batch is durable as the mode requires.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct ReplicateAck {
    /// LSN just past the batch's record (what a replica must have flushed to hold it).
    pub lsn: String,
    pub lsn_u64: u64,
    /// Replicas that had flushed and replayed the batch when the answer was given: it is
    /// durable there and a read there returns it (PostgreSQL's `remote_apply`).
    pub acknowledged_by: Vec<String>,
    #[schema(value_type = String)]
    pub mode: ReplicationMode,
}

/// Where a read is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFrom {
    Primary,
    Replica(String),
}

/// Reads one row where it lives now. `Ok(None)`: no such row there.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<RowView>, ReplicationError>")]
pub struct ReadRow {
    pub table: String,
    pub key: String,
    pub from: ReadFrom,
}

/// One row, where it was read.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
#[graphql(name = "Row")]
pub struct RowView {
    pub table: String,
    pub key: String,
    /// The row's value: any JSON.
    #[schema(value_type = serde_json::Value)]
    pub value: serde_json::Value,
    /// Where it was read: `primary` or a replica id.
    pub from: String,
    /// The reader's replay position when it answered.
    pub replay_lsn: String,
    pub replay_lsn_u64: u64,
}

/// Adds a replica; it starts empty (or from a snapshot) and catches up from the WAL.
#[derive(Debug, Message)]
#[rtype(result = "Result<ReplicaView, ReplicationError>")]
pub struct AddReplica {
    pub replica_id: String,
    pub mode: ReplicaMode,
    pub from_snapshot: Option<String>,
}

#[derive(Debug, Message)]
#[rtype(result = "Result<(), ReplicationError>")]
pub struct RemoveReplica {
    pub replica_id: String,
}

/// Stops shipping to a replica; it keeps what it has and its WAL is retained for it.
#[derive(Debug, Message)]
#[rtype(result = "Result<ReplicaView, ReplicationError>")]
pub struct PauseReplica {
    pub replica_id: String,
}

/// Ships again from where the replica stopped.
#[derive(Debug, Message)]
#[rtype(result = "Result<ReplicaView, ReplicationError>")]
pub struct ResumeReplica {
    pub replica_id: String,
}

#[derive(Debug, Message)]
#[rtype(result = "Vec<ReplicaView>")]
pub struct ListReplicas;

#[derive(Debug, Message)]
#[rtype(result = "Result<ReplicaView, ReplicationError>")]
pub struct GetReplica {
    pub replica_id: String,
}

/// What an operator sees of a replica: pg_stat_replication's columns, measured.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
#[graphql(name = "Replica")]
pub struct ReplicaView {
    pub replica_id: String,
    #[schema(value_type = String)]
    pub mode: ReplicaMode,
    pub status: ReplicaStatus,
    pub status_reason: String,
    pub write_lsn: String,
    pub write_lsn_u64: u64,
    pub flush_lsn: String,
    pub flush_lsn_u64: u64,
    pub replay_lsn: String,
    pub replay_lsn_u64: u64,
    /// Primary's flushed lsn minus this replica's replay lsn.
    pub lag_bytes: u64,
    /// Age of the oldest record this replica has not replayed yet; 0 when caught up.
    pub lag_seconds: f64,
    /// Time from local durability on the primary to this replica's report of having written,
    /// flushed and replayed the same record (PostgreSQL's write_lag, flush_lag, replay_lag);
    /// `None` until a record has been reported.
    pub write_lag_ms: Option<f64>,
    pub flush_lag_ms: Option<f64>,
    pub replay_lag_ms: Option<f64>,
    /// Milliseconds since the replica's last heartbeat or report.
    pub last_heartbeat_ms: Option<u64>,
}

#[derive(Debug, Message)]
#[rtype(result = "ReplicationStatus")]
pub struct GetReplicationStatus;

/// Primary, mode, current LSN, replicas and health.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct ReplicationStatus {
    pub primary: String,
    /// `up`, or `down` while crashed.
    pub primary_state: String,
    #[schema(value_type = String)]
    pub mode: ReplicationMode,
    pub sync_quorum: usize,
    pub sync_timeout_ms: u64,
    pub current_lsn: String,
    pub current_lsn_u64: u64,
    pub replicas: Vec<ReplicaView>,
    /// `healthy` when every replica streams within the lag threshold, `degraded` otherwise,
    /// `critical` while the primary is down.
    pub health: ClusterHealthStatus,
}

// Between the primary and its replicas.

/// The primary ships records to a replica, in lsn order, contiguous with what it shipped
/// before (the replica says where it stands after any restart). Records may not be durable on
/// the primary yet: the replica makes them durable at once, but applies them (makes them
/// readable) only up to what a [`PrimaryDurable`] of the same timeline covers.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ShipWal {
    pub records: Vec<LogRecord>,
    /// Whether a write may be waiting for this replica's flush (it is a sync replica in `sync`
    /// mode, or any replica in `semi_sync`): the replica then makes the records durable at once;
    /// otherwise it may gather them for a moment first (see `ReplicaActor`).
    pub flush_awaited: bool,
    /// The primary's timeline (see [`Reconcile`]).
    pub timeline: u64,
    /// What is durable on the primary as it ships these, as a [`PrimaryDurable`] says: the
    /// confirmation of the group before rides on the next one.
    pub durable_lsn: u64,
}

/// Everything the primary of `timeline` shipped up to `lsn` is durable there: a replica may
/// apply its records up to it. Sent after a group commit to each replica that the next group
/// (whose shipment carries it) does not go to, and when a replica (re)connects.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct PrimaryDurable {
    pub lsn: u64,
    pub timeline: u64,
}

/// Sent to a replica whose received log comes from an earlier timeline of the primary (each
/// start of the primary begins a new one, as a PostgreSQL promotion does). The earlier primary
/// may have shipped records it never made durable; after its restart the same lsns hold other
/// records. The replica drops what it holds from `keep_until` on (the end of what that timeline
/// made durable, or the replica's applied position if the primary no longer knows that end),
/// may apply the rest, adopts `timeline` and reports as restarted.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Reconcile {
    /// The timeline the primary believes the replica is on; a replica on another one ignores
    /// the message and reports, and the primary answers that report.
    pub from_timeline: u64,
    pub timeline: u64,
    pub keep_until: u64,
}

/// Why a replica reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Where it stands now (after a store task, an apply, or on its heartbeat). Positions in it
    /// never move back: a task's report and a heartbeat may cross.
    Progress,
    /// It (re)started, reconciled, was reseeded or found a gap: the primary takes its positions
    /// as they are, even if lower, and ships from its write position.
    Restarted,
}

/// A replica tells the primary where it stands.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ReplicaReport {
    pub replica_id: String,
    /// Which actor of the replica sent it; reports from an earlier one are ignored.
    pub incarnation: u64,
    /// The primary timeline its log's records came from ([`Reconcile`]).
    pub timeline: u64,
    pub positions: ReplicaPositions,
    pub kind: ReportKind,
}

/// Asks a replica where it stands (its durable position), e.g. to decide where to ship from.
#[derive(Debug, Message)]
#[rtype(result = "Result<ReplicaPositions, ReplicationError>")]
pub struct GetReplicaPositions;

/// PostgreSQL's write, flush and replay positions of a replica: received, durable, readable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaPositions {
    pub write_lsn: u64,
    pub flush_lsn: u64,
    pub replay_lsn: u64,
}

/// Reads a row from a replica's own state.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<(serde_json::Value, u64)>, ReplicationError>")]
pub struct ReadLocalRow {
    pub table: String,
    pub key: String,
}

/// Stops a replica actor for good (removed, or the runtime shuts down).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopReplica;

/// An operator's switchover: the primary stops taking writes and `target` (or the replica with
/// the highest flushed position) is promoted once it holds all the primary made durable.
#[derive(Debug, Message)]
#[rtype(result = "Result<crate::model::FailoverChange, ReplicationError>")]
pub struct Switchover {
    pub target: Option<String>,
}

/// Stops a replica to promote it: once none of its storage work runs (nothing writes its log or
/// rows after the answer), it answers where its durable log ends and stops.
#[derive(Debug, Message)]
#[rtype(result = "Result<Relinquished, ReplicationError>")]
pub struct Relinquish;

/// A relinquished replica's durable log: its end and the primary timeline it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relinquished {
    pub flush_lsn: u64,
    pub timeline: u64,
}

/// Fault injection: the replica stops as a crash would (what it received and did not flush is
/// lost) and stays down until the primary starts it again.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CrashReplica;

/// Changes the acknowledgement mode at run time (`set_replication_mode`); durable.
#[derive(Debug, Message)]
#[rtype(result = "Result<ReplicationSettingsView, ReplicationError>")]
pub struct SetReplicationConfig {
    pub mode: ReplicationMode,
    pub sync_quorum: Option<usize>,
    pub sync_timeout_ms: Option<u64>,
}

/// Stores the conflict strategy multi-master will use; durable.
#[derive(Debug, Message)]
#[rtype(result = "Result<ReplicationSettingsView, ReplicationError>")]
pub struct SetConflictStrategy {
    pub strategy: ConflictStrategy,
    pub site_priority: Option<Vec<String>>,
}

/// Changes how often replicas report and when a silent one counts as disconnected; durable.
#[derive(Debug, Message)]
#[rtype(result = "Result<ReplicationSettingsView, ReplicationError>")]
pub struct SetHeartbeat {
    pub interval_ms: u64,
    pub timeout_ms: u64,
}

/// The replication settings in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, SimpleObject)]
#[graphql(name = "ReplicationSettings")]
pub struct ReplicationSettingsView {
    #[schema(value_type = String)]
    pub mode: ReplicationMode,
    pub sync_quorum: usize,
    pub sync_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
    #[schema(value_type = String)]
    pub conflict_strategy: ConflictStrategy,
    pub site_priority: Vec<String>,
}

/// Tells a replica how often to report.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetReportInterval {
    pub interval: std::time::Duration,
}

/// One real lag measurement (taken at most once per heartbeat interval).
// GraphQL adds `timestamp` (epoch seconds) and `replayLsn` (text form), in the face's
// `ComplexObject`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
#[graphql(complex)]
pub struct LagSample {
    pub timestamp_ms: i64,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub replay_lsn_u64: u64,
}

/// Lag samples of the last `seconds`, per replica (of `replica_id` only, when given).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<LagHistory>, ReplicationError>")]
pub struct GetLagHistory {
    pub replica_id: Option<String>,
    pub seconds: u64,
}

/// One replica's lag samples, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct LagHistory {
    pub replica_id: String,
    pub samples: Vec<LagSample>,
}

/// Throughput over the sliding window.
#[derive(Debug, Message)]
#[rtype(result = "Throughput")]
pub struct GetThroughput;

/// Throughput over the sliding window, on the primary and per replica.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
#[graphql(name = "ReplicationThroughput")]
pub struct Throughput {
    pub window_seconds: f64,
    /// Operations and WAL bytes made durable on the primary per second.
    pub primary_ops_per_second: f64,
    pub primary_bytes_per_second: f64,
    pub replicas: Vec<ReplicaThroughput>,
}

/// WAL bytes one replica replayed per second over the window.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct ReplicaThroughput {
    pub replica_id: String,
    /// WAL bytes replayed per second.
    pub replayed_bytes_per_second: f64,
}

/// Per replica: healthy or not, and why.
#[derive(Debug, Message)]
#[rtype(result = "Vec<ReplicaHealth>")]
pub struct GetReplicationHealth;

/// One replica's health, and every reason it is not healthy.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct ReplicaHealth {
    pub replica_id: String,
    pub healthy: bool,
    /// Every reason it is not healthy; empty when healthy.
    pub reasons: Vec<String>,
    pub status: ReplicaStatus,
    pub lag_bytes: u64,
    pub last_heartbeat_ms: Option<u64>,
}

/// Where the primary's WAL stands and what holds it back.
#[derive(Debug, Message)]
#[rtype(result = "Result<WalStatus, ReplicationError>")]
pub struct GetWalStatus;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WalStatus {
    pub current_lsn: String,
    pub current_lsn_u64: u64,
    pub flushed_lsn: String,
    pub flushed_lsn_u64: u64,
    /// Start of the oldest record still kept.
    pub oldest_retained_lsn: String,
    pub oldest_retained_lsn_u64: u64,
    pub retained_bytes: u64,
    /// Everything that needs WAL kept, with the lsn it needs from: replicas and slots.
    pub retained_by: Vec<WalHolder>,
    /// WAL before this lsn is needed by nobody and goes at the next truncation.
    pub truncatable_before_u64: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WalHolder {
    /// `replica`, `slot`, `snapshot` (the newest snapshot keeps the WAL since it, so it can
    /// always seed a replica; a newer snapshot moves that point forward), or `checkpoint` (the
    /// primary's stored rows reflect the WAL up to here; what follows is replayed after a crash.
    /// A truncation checkpoints first, so this one never holds WAL past it).
    pub kind: String,
    pub name: String,
    pub needs_from_lsn: String,
    pub needs_from_lsn_u64: u64,
    pub retained_bytes: u64,
}

/// Drops WAL that no replica or slot needs (`advance_wal`).
#[derive(Debug, Message)]
#[rtype(result = "Result<WalTruncated, ReplicationError>")]
pub struct TruncateWal;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WalTruncated {
    pub records_removed: usize,
    pub oldest_retained_lsn: String,
    pub oldest_retained_lsn_u64: u64,
}


#[derive(Debug, Message)]
#[rtype(result = "Result<SlotView, ReplicationError>")]
pub struct CreateSlot {
    pub slot_name: String,
    pub slot_type: SlotType,
}

#[derive(Debug, Message)]
#[rtype(result = "Vec<SlotView>")]
pub struct ListSlots;

#[derive(Debug, Message)]
#[rtype(result = "Result<SlotView, ReplicationError>")]
pub struct GetSlot {
    pub slot_name: String,
}

#[derive(Debug, Message)]
#[rtype(result = "Result<(), ReplicationError>")]
pub struct DropSlot {
    pub slot_name: String,
}

/// Confirms consumption up to `lsn`: WAL before it is no longer held for the slot.
#[derive(Debug, Message)]
#[rtype(result = "Result<SlotView, ReplicationError>")]
pub struct AdvanceSlot {
    pub slot_name: String,
    pub lsn: u64,
}

/// A logical slot's changes decoded from the WAL after its confirmed position (not consumed).
#[derive(Debug, Message)]
#[rtype(result = "Result<SlotChanges, ReplicationError>")]
pub struct PeekSlotChanges {
    pub slot_name: String,
    pub limit: usize,
}

/// A replication slot.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
#[graphql(name = "ReplicationSlot")]
pub struct SlotView {
    pub slot_name: String,
    pub slot_type: SlotType,
    /// Whether a consumer streams from it now (none does until streaming consumers arrive).
    pub active: bool,
    pub restart_lsn: String,
    pub restart_lsn_u64: u64,
    /// Logical slots: consumed up to here. Physical slots: equal to restart_lsn.
    pub confirmed_flush_lsn: String,
    pub confirmed_flush_lsn_u64: u64,
    /// WAL bytes this slot holds back.
    pub retained_bytes: u64,
    /// `reserved`: every byte it needs is kept (clusterd never drops WAL a slot needs).
    pub wal_status: String,
}

/// A logical slot's pending changes (not consumed) and where to advance to after using them.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct SlotChanges {
    pub slot_name: String,
    pub confirmed_flush_lsn: String,
    pub changes: Vec<DecodedChange>,
    /// Where to advance the slot to after consuming these.
    pub next_lsn: String,
    pub next_lsn_u64: u64,
}

/// One change decoded from the WAL by a logical slot.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct DecodedChange {
    /// The record holding the change, and where it ends.
    pub lsn: String,
    pub lsn_u64: u64,
    pub end_lsn_u64: u64,
    pub committed_at_ms: i64,
    pub op: OpKind,
    pub table: String,
    pub key: String,
    /// The value an insert or update wrote (any JSON); null for a delete.
    #[schema(value_type = Option<serde_json::Value>)]
    pub value: Option<serde_json::Value>,
}

/// The primary reseeds a replica from a base copy (its committed rows, or a snapshot's) at
/// `lsn`; the replica then streams from there.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Reseed {
    pub rows: Arc<Vec<(String, String, serde_json::Value)>>,
    pub lsn: u64,
    /// The primary's timeline, which the reseeded replica adopts.
    pub timeline: u64,
}

/// Takes a consistent snapshot of the primary's tables at its flushed lsn, durably.
#[derive(Debug, Message)]
#[rtype(result = "Result<SnapshotView, ReplicationError>")]
pub struct CreateSnapshot;

#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<SnapshotView>, ReplicationError>")]
pub struct ListSnapshots;

/// Reseeds `target` from a snapshot, then streams to it from the snapshot's lsn.
#[derive(Debug, Message)]
#[rtype(result = "Result<SnapshotView, ReplicationError>")]
pub struct RestoreSnapshot {
    pub snapshot_id: String,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotView {
    pub snapshot_id: String,
    pub lsn: String,
    pub lsn_u64: u64,
    pub rows: u64,
    /// Size of the rows' values, serialized.
    pub bytes: u64,
    pub created_at_ms: i64,
}
