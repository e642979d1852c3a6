//! What the RAC domain publishes: Cache Fusion transfers, global lock changes, remastering,
//! instance recovery and parallel queries, with the seed's fields.

use serde::{Deserialize, Serialize};

use super::RemasterReason;
use crate::messages::events::{domain_events, SubjectKind};
use crate::model::rac::{LockMode, TransferKind};

domain_events! {
    /// What the RAC domain publishes.
    pub enum RacEvent {
        BlockTransfer(BlockTransfer) => |p, s| {
            s.add(SubjectKind::Resource, &p.block_id);
            s.add(SubjectKind::Instance, &p.target_instance);
            if let Some(source) = &p.source_instance {
                s.add(SubjectKind::Instance, source);
            }
        },
        LockGranted(LockChange) => |p, s| {
            s.add(SubjectKind::Resource, &p.resource_id);
            s.add(SubjectKind::Instance, &p.instance_id);
        },
        LockReleased(LockChange) => |p, s| {
            s.add(SubjectKind::Resource, &p.resource_id);
            s.add(SubjectKind::Instance, &p.instance_id);
        },
        LockConverted(LockChange) => |p, s| {
            s.add(SubjectKind::Resource, &p.resource_id);
            s.add(SubjectKind::Instance, &p.instance_id);
        },
        ResourceRemastered(Remastered) => |p, s| {
            s.add(SubjectKind::Resource, &p.resource_id);
            s.add(SubjectKind::Instance, &p.old_master);
            s.add(SubjectKind::Instance, &p.new_master);
        },
        RecoveryStarted(RecoveryChange) => |p, s| {
            s.add(SubjectKind::Instance, &p.failed_instance);
            s.add(SubjectKind::Instance, &p.recovering_instance);
        },
        RecoveryProgress(RecoveryChange) => |p, s| {
            s.add(SubjectKind::Instance, &p.failed_instance);
            s.add(SubjectKind::Instance, &p.recovering_instance);
        },
        RecoveryCompleted(RecoveryChange) => |p, s| {
            s.add(SubjectKind::Instance, &p.failed_instance);
            s.add(SubjectKind::Instance, &p.recovering_instance);
        },
        QueryStarted(QueryChange) => |p, s| {
            s.add(SubjectKind::Query, &p.query_id);
            for i in &p.instances {
                s.add(SubjectKind::Instance, i);
            }
        },
        QueryCompleted(QueryChange) => |p, s| {
            s.add(SubjectKind::Query, &p.query_id);
            for i in &p.instances {
                s.add(SubjectKind::Instance, i);
            }
        },
    }
}

/// `query_started` / `query_completed` (a parallel query).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryChange {
    pub query_id: String,
    /// The plan, as text.
    pub sql_text: String,
    pub dop: usize,
    pub instances: Vec<String>,
    /// Once completed.
    pub rows_processed: Option<u64>,
    pub duration_ms: Option<f64>,
    pub success: Option<bool>,
}

/// `block_transfer`: a block reached an instance from another's cache or from disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockTransfer {
    pub block_id: String,
    /// The instance that shipped it; none when it came from disk.
    pub source_instance: Option<String>,
    pub target_instance: String,
    pub block_mode: LockMode,
    /// `2-way`, `3-way` or `disk`.
    pub transfer_kind: TransferKind,
    pub transfer_size: usize,
    pub duration_micros: u64,
    pub success: bool,
    pub data_version: u64,
}

/// `lock_granted`, `lock_released`, `lock_converted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockChange {
    pub resource_id: String,
    pub lock_type: LockMode,
    pub previous_lock_type: LockMode,
    pub instance_id: String,
    pub granted: bool,
    pub wait_time_ms: f64,
}

/// `resource_remastered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Remastered {
    pub resource_id: String,
    pub old_master: String,
    pub new_master: String,
    pub reason: RemasterReason,
    /// The whole reconfiguration it was part of.
    pub duration_ms: f64,
    pub epoch: u64,
}

/// `recovery_started`, `recovery_progress`, `recovery_completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryChange {
    pub recovery_id: String,
    pub failed_instance: String,
    pub recovering_instance: String,
    pub recovery_phase: String,
    pub progress_percent: f64,
    /// Of the failed instance's one redo log.
    pub redo_logs_applied: u64,
    pub total_redo_logs: u64,
    /// Not estimated: none while running (the redo's length is known only once read).
    pub eta_seconds: Option<f64>,
    pub blocks_recovered: u64,
    pub redo_records_applied: u64,
    pub success: Option<bool>,
}
