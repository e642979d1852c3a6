//! Messages of the RAC domain: what the faces ask of an instance, a GRD master or the control
//! (read, write, convert or release a block's lock; statistics; the directory's state;
//! remastering; recovery), the views, and the error. What the actors send each other is in
//! `protocol.rs`, the events in `events.rs`.

mod events;
mod protocol;

pub use events::*;
pub use protocol::*;

use std::sync::Arc;

use actix::prelude::*;
use async_graphql::SimpleObject;
use serde::{Deserialize, Serialize};

use crate::messages::errors::{invalid_field_details, DescribedError, ErrorKind};
use crate::model::master_ring::MasterMap;
use crate::model::rac::{BlockId, LockMode, TransferKind};

// ---- What the faces ask ----

/// Reads a block at an instance: its cached copy if it holds one, else a shared lock and the
/// block from whoever has it (or disk).
#[derive(Debug, Message)]
#[rtype(result = "Result<BlockRead, RacError>")]
pub struct ReadBlock {
    pub block: BlockId,
}

/// Writes a block at an instance, under an exclusive lock; answered once its redo is durable.
#[derive(Debug, Message)]
#[rtype(result = "Result<BlockWritten, RacError>")]
pub struct WriteBlock {
    pub block: BlockId,
    pub data: Vec<u8>,
}

/// Converts an instance's lock on a block: up (shared, exclusive: as a read or write would get
/// it) or down (shared; null is a release, written back first if its changes are not on disk).
#[derive(Debug, Message)]
#[rtype(result = "Result<LockChanged, RacError>")]
pub struct ConvertLock {
    pub block: BlockId,
    pub to: LockMode,
}

/// An instance's state and Cache Fusion statistics.
#[derive(Debug, Message)]
#[rtype(result = "Result<InstanceView, RacError>")]
pub struct GetInstance;

/// How many blocks a master has an entry for.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct CountResources;

/// An instance's view of the interconnect: per peer, what it sent and heard.
#[derive(Debug, Message)]
#[rtype(result = "Vec<PeerLinkView>")]
pub struct GetInterconnect;

/// What a master's directory holds: every block it has an entry for (at most `limit`), or one.
#[derive(Debug, Message)]
#[rtype(result = "Vec<ResourceView>")]
pub struct GetResources {
    pub block: Option<BlockId>,
    pub limit: usize,
}

/// Runs a parallel query: a scan of a range of blocks, split across instances.
#[derive(Debug, Message)]
#[rtype(result = "Result<QueryResult, RacError>")]
pub struct RunParallelQuery {
    pub query: ParallelQuery,
    /// The instances open now: the scan is split over these.
    pub open: Vec<String>,
}

/// The instances open now: live in the GRD configuration and not crashed.
#[derive(Debug, Message)]
#[rtype(result = "Vec<String>")]
pub struct GetOpenInstances;

/// What parallel queries did so far.
#[derive(Debug, Message)]
#[rtype(result = "ParallelQueryStats")]
pub struct GetParallelQueryStats;

/// An aggregate over the rows a scan keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

/// A scan of blocks `first` to `last` (inclusive) whose rows are lines of `name=value` pairs
/// separated by commas: the rows `filter` keeps, aggregated (over `column`, for all but
/// count), per value of `group_by` if given; split into `dop` ranges, each scanned by one
/// instance through its cache.
#[derive(Debug, Clone, PartialEq)]
pub struct ParallelQuery {
    pub first: BlockId,
    pub last: BlockId,
    pub aggregate: Aggregate,
    pub column: Option<String>,
    pub group_by: Option<String>,
    /// (column, value): only rows whose column has this value.
    pub filter: Option<(String, String)>,
    pub dop: usize,
}

/// Moves the mastership of blocks (`moves`: block, new master), or runs the affinity pass
/// (`moves` empty, `affinity` true): one reconfiguration of the GRD.
#[derive(Debug, Message)]
#[rtype(result = "Result<RemasterOutcome, RacError>")]
pub struct Remaster {
    pub moves: Vec<(BlockId, String)>,
    pub reason: RemasterReason,
}

/// Runs the affinity pass now, over the accesses counted so far in this window; of one block
/// only if given.
#[derive(Debug, Message)]
#[rtype(result = "Result<RemasterOutcome, RacError>")]
pub struct RunAffinityPass {
    pub block: Option<BlockId>,
}

/// Spreads the mastership of the blocks with an entry evenly over the live instances.
#[derive(Debug, Message)]
#[rtype(result = "Result<RemasterOutcome, RacError>")]
pub struct LoadBalance;

/// The GRD configuration in force.
#[derive(Debug, Message)]
#[rtype(result = "Arc<MasterMap>")]
pub struct GetMasterMap;

/// Starts the recovery of a failed instance now, without waiting for the survivors to find it
/// silent.
#[derive(Debug, Message)]
#[rtype(result = "Result<RecoveryView, RacError>")]
pub struct StartRecovery {
    pub failed: String,
}

/// Recoveries, running and past; of one id if given.
#[derive(Debug, Message)]
#[rtype(result = "Vec<RecoveryView>")]
pub struct GetRecoveries {
    pub id: Option<String>,
}

/// Why a block's mastership moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
pub enum RemasterReason {
    Affinity,
    Manual,
    LoadBalance,
    /// An instance failed or rejoined: its blocks moved on the ring.
    Recovery,
}

// ---- Views ----

/// One block whose mastership moved.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct RemasteredResource {
    pub resource_id: String,
    pub old_master: String,
    pub new_master: String,
}

/// What a reconfiguration of the GRD did.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct RemasterOutcome {
    pub reason: RemasterReason,
    /// The configuration in force after it.
    pub epoch: u64,
    /// Blocks with holders whose master changed (a block nobody holds has no entry to move).
    pub remastered: Vec<RemasteredResource>,
    pub duration_ms: f64,
}

/// One instance recovery.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct RecoveryView {
    pub recovery_id: String,
    pub failed_instance: String,
    /// The survivor that applied the failed instance's redo.
    pub recovering_instance: String,
    /// `heartbeat` (the survivors found it silent), `manual` (POST /recovery) or `restart`.
    pub detected_by: String,
    /// `running`, `completed` or `failed`.
    pub status: String,
    /// `detect`, `freeze`, `redo_apply`, `rebuild`, `resume` or `done`.
    pub recovery_phase: String,
    pub started_at_ms: i64,
    pub duration_ms: Option<f64>,
    pub redo_records_applied: u64,
    pub blocks_recovered: u64,
    pub resources_remastered: u64,
    pub error: Option<String>,
}



#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct BlockRead {
    pub block_id: String,
    pub instance_id: String,
    /// The block's bytes as text (invalid UTF-8 replaced); empty for a block never written.
    pub data: String,
    /// The version read: the SCN of the write that made it (0: never written).
    pub data_version: u64,
    pub lock_mode: LockMode,
    /// How the block came: `local` (cached here already), `2-way`, `3-way` or `disk`.
    pub transfer_kind: TransferKind,
    /// The instance that shipped it, for a 2-way or 3-way transfer.
    pub source_instance: Option<String>,
    /// From the request to the block in this instance's cache.
    pub micros: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct BlockWritten {
    pub block_id: String,
    pub instance_id: String,
    /// The version written.
    pub data_version: u64,
    pub bytes: usize,
    /// How the block came for the write: `local`, `2-way`, `3-way` or `disk`.
    pub transfer_kind: TransferKind,
    pub source_instance: Option<String>,
    /// From the request to the redo record durable.
    pub micros: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct LockChanged {
    pub resource_id: String,
    pub instance_id: String,
    pub previous_lock_type: LockMode,
    pub lock_type: LockMode,
    pub wait_time_ms: f64,
}

/// Blocks received by one instance, as Oracle's `V$INSTANCE_CACHE_TRANSFER` counts them: `cr`
/// for blocks received for a read (shared), `current` for a write (exclusive); 2-hop when the
/// master held it, 3-hop when another holder shipped it; busy when the holder made it wait
/// behind its own operation on the block; lost when a request or block had to be asked again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct CacheTransferStats {
    pub cr_block: u64,
    pub cr_2hop: u64,
    pub cr_3hop: u64,
    pub cr_busy: u64,
    pub current_block: u64,
    pub current_2hop: u64,
    pub current_3hop: u64,
    pub current_busy: u64,
    pub lost: u64,
    /// Locks granted on this instance's own copy or already held: no block moved.
    pub grants_without_transfer: u64,
    pub disk_reads: u64,
    pub disk_writes: u64,
    /// Shared copies this instance dropped for another's write.
    pub invalidations: u64,
    /// Blocks this instance shipped to others.
    pub blocks_served: u64,
    /// From a request to the block received, over the blocks received from other instances.
    pub receive_micros_avg: f64,
    pub receive_micros_p99: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct InstanceView {
    pub instance_id: String,
    /// `open`.
    pub status: String,
    pub cached_blocks: usize,
    pub cache_capacity: usize,
    pub past_images: usize,
    /// Blocks whose lock entry this instance masters now.
    pub mastered_resources: usize,
    /// This instance's Lamport clock.
    pub scn: u64,
    pub statistics: CacheTransferStats,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct LockHolder {
    pub instance_id: String,
    pub lock_mode: LockMode,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct PastImageView {
    pub instance_id: String,
    pub scn: u64,
}

/// A block's entry in the GRD.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct ResourceView {
    pub resource_id: String,
    pub master: String,
    pub holders: Vec<LockHolder>,
    pub past_images: Vec<PastImageView>,
    /// The instance whose request is being granted.
    pub granting: Option<String>,
    /// Requests waiting behind it.
    pub waiting: usize,
}

/// One instance's link to a peer, as it measured it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct PeerLinkView {
    pub instance_id: String,
    pub peer: String,
    /// `up` while heartbeats come back; `unreachable` once none did for three intervals.
    pub status: String,
    /// Cache Fusion messages this instance (its cache and its master) sent the peer.
    pub messages_sent: u64,
    pub heartbeats_sent: u64,
    pub heartbeats_answered: u64,
    /// Since the peer last answered a heartbeat; none if it never did.
    pub last_heard_ms: Option<u64>,
    /// Heartbeat round trips, over the latest ones.
    pub rtt_micros_avg: f64,
    pub rtt_micros_p99: u64,
}

/// One group's aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct ResultRow {
    /// The `group_by` column's value; none without `group_by`.
    pub group: Option<String>,
    /// The aggregate; none for sum, min, max and avg over no numeric value.
    pub value: Option<f64>,
    /// Rows of the group the filter kept.
    pub rows: u64,
}

/// What one instance scanned for a query.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct InstanceWork {
    pub instance_id: String,
    /// The range it scanned, `file:block-file:block`.
    pub blocks: String,
    pub blocks_scanned: u64,
    pub rows_scanned: u64,
    pub micros: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct QueryResult {
    pub query_id: String,
    /// The plan, as text.
    pub plan: String,
    pub rows: Vec<ResultRow>,
    /// Rows read from the blocks, before the filter.
    pub rows_processed: u64,
    pub blocks_scanned: u64,
    pub dop: usize,
    pub instances: Vec<InstanceWork>,
    pub duration_ms: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct ParallelQueryStats {
    pub queries: u64,
    pub failed: u64,
    pub rows_processed: u64,
    pub blocks_scanned: u64,
    pub avg_duration_ms: f64,
    /// Per instance, what it scanned over all queries.
    pub per_instance: Vec<InstanceScanTotals>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct InstanceScanTotals {
    pub instance_id: String,
    pub blocks_scanned: u64,
    pub rows_scanned: u64,
}

// ---- Errors ----

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RacError {
    #[error("no RAC instance named '{instance_id}'")]
    InstanceNotFound { instance_id: String },
    #[error("no block '{block_id}': {reason}")]
    BlockNotFound { block_id: String, reason: String },
    #[error("invalid field '{field}': {reason}")]
    InvalidField { field: String, reason: String },
    #[error("{what} did not finish within {seconds} s (its lock request stays queued and is granted when it can be)")]
    TimedOut { what: String, seconds: u64 },
    #[error("instance '{instance_id}' is down")]
    InstanceDown { instance_id: String },
    #[error("storage failed: {message}")]
    Storage { message: String },
    #[error("{what} is not built yet")]
    NotBuilt { what: String },
    #[error("{component} is not available")]
    Unavailable { component: String },
    #[error("instance '{instance_id}' is crashed already")]
    AlreadyCrashed { instance_id: String },
    #[error("instance '{instance_id}' is not crashed")]
    NotCrashed { instance_id: String },
    #[error("no recovery '{recovery_id}'")]
    RecoveryNotFound { recovery_id: String },
    #[error("nothing to recover on '{instance_id}': {reason}")]
    NothingToRecover { instance_id: String, reason: String },
}

impl DescribedError for RacError {
    fn kind(&self) -> ErrorKind {
        match self {
            RacError::InstanceNotFound { .. } | RacError::BlockNotFound { .. } | RacError::RecoveryNotFound { .. } => ErrorKind::NotFound,
            RacError::InvalidField { .. } => ErrorKind::Invalid,
            RacError::TimedOut { .. } => ErrorKind::Timeout,
            RacError::InstanceDown { .. } | RacError::Storage { .. } | RacError::Unavailable { .. } => ErrorKind::Unavailable,
            RacError::NotBuilt { .. } => ErrorKind::NotBuilt,
            RacError::NothingToRecover { .. } | RacError::AlreadyCrashed { .. } | RacError::NotCrashed { .. } => ErrorKind::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            RacError::InstanceNotFound { .. } => "instance_not_found",
            RacError::BlockNotFound { .. } => "block_not_found",
            RacError::InvalidField { .. } => "invalid_field",
            RacError::TimedOut { .. } => "timed_out",
            RacError::InstanceDown { .. } => "instance_down",
            RacError::Storage { .. } => "storage_error",
            RacError::NotBuilt { .. } => "not_implemented",
            RacError::Unavailable { .. } => "unavailable",
            RacError::NothingToRecover { .. } => "nothing_to_recover",
            RacError::RecoveryNotFound { .. } => "recovery_not_found",
            RacError::AlreadyCrashed { .. } => "already_crashed",
            RacError::NotCrashed { .. } => "not_crashed",
        }
    }

    fn details(&self) -> serde_json::Value {
        match self {
            RacError::InstanceNotFound { instance_id }
            | RacError::InstanceDown { instance_id }
            | RacError::AlreadyCrashed { instance_id }
            | RacError::NotCrashed { instance_id } => serde_json::json!({ "instance_id": instance_id }),
            RacError::BlockNotFound { block_id, reason } => serde_json::json!({ "block_id": block_id, "reason": reason }),
            RacError::InvalidField { field, reason } => invalid_field_details(field, reason),
            RacError::TimedOut { what, seconds } => serde_json::json!({ "what": what, "seconds": seconds }),
            RacError::Storage { message } => serde_json::json!({ "message": message }),
            RacError::NotBuilt { what } => serde_json::json!({ "domain": "rac", "what": what }),
            RacError::Unavailable { component } => serde_json::json!({ "component": component }),
            RacError::RecoveryNotFound { recovery_id } => serde_json::json!({ "recovery_id": recovery_id }),
            RacError::NothingToRecover { instance_id, reason } => serde_json::json!({ "instance_id": instance_id, "reason": reason }),
        }
    }
}

impl From<crate::storage::StorageError> for RacError {
    fn from(e: crate::storage::StorageError) -> Self {
        RacError::Storage { message: e.to_string() }
    }
}

impl From<crate::exec::TaskFailed> for RacError {
    fn from(e: crate::exec::TaskFailed) -> Self {
        RacError::Storage { message: e.to_string() }
    }
}
