//! RAC's typed event objects: the payloads of `block_transfer` and the lock events, camelCase,
//! with the stamp every typed event carries.

use async_graphql::{SimpleObject, ID};

use crate::http::graphql::events::EventStamp;
use crate::messages::events::{EventPayload, SharedEvent};
use crate::messages::rac::RacEvent;
use crate::model::rac::{LockMode, TransferKind};

/// `block_transfer`.
#[derive(SimpleObject)]
pub struct CacheFusionEvent {
    pub block_id: ID,
    /// None when it came from disk.
    pub source_instance: Option<ID>,
    pub target_instance: ID,
    pub block_mode: LockMode,
    pub transfer_kind: TransferKind,
    /// Bytes.
    pub transfer_size: u64,
    pub duration_micros: u64,
    pub success: bool,
    pub data_version: u64,
    #[graphql(flatten)]
    pub stamp: EventStamp,
}

impl CacheFusionEvent {
    pub fn from_event(e: &SharedEvent) -> Option<Self> {
        let EventPayload::Rac(RacEvent::BlockTransfer(p)) = &e.payload else { return None };
        Some(CacheFusionEvent {
            block_id: ID(p.block_id.clone()),
            source_instance: p.source_instance.clone().map(ID),
            target_instance: ID(p.target_instance.clone()),
            block_mode: p.block_mode,
            transfer_kind: p.transfer_kind,
            transfer_size: p.transfer_size as u64,
            duration_micros: p.duration_micros,
            success: p.success,
            data_version: p.data_version,
            stamp: EventStamp::of(e),
        })
    }
}

/// `lock_granted` / `lock_released` / `lock_converted`.
#[derive(SimpleObject)]
pub struct LockEvent {
    pub event_type: String,
    pub resource_id: String,
    pub lock_type: LockMode,
    pub previous_lock_type: LockMode,
    pub instance_id: ID,
    pub granted: bool,
    pub wait_time_ms: f64,
    #[graphql(flatten)]
    pub stamp: EventStamp,
}

impl LockEvent {
    pub fn from_event(e: &SharedEvent) -> Option<Self> {
        let EventPayload::Rac(RacEvent::LockGranted(p) | RacEvent::LockReleased(p) | RacEvent::LockConverted(p)) = &e.payload else { return None };
        Some(LockEvent {
            event_type: e.payload.event_type().as_str().to_string(),
            resource_id: p.resource_id.clone(),
            lock_type: p.lock_type,
            previous_lock_type: p.previous_lock_type,
            instance_id: ID(p.instance_id.clone()),
            granted: p.granted,
            wait_time_ms: p.wait_time_ms,
            stamp: EventStamp::of(e),
        })
    }
}

/// `query_started` / `query_completed`.
#[derive(SimpleObject)]
pub struct ParallelQueryEvent {
    pub event_type: String,
    pub query_id: ID,
    /// The plan's text.
    pub sql_text: String,
    /// Degree of parallelism.
    pub dop: u32,
    pub instances: Vec<ID>,
    /// Set once completed.
    pub rows_processed: Option<u64>,
    pub duration_ms: Option<f64>,
    pub success: Option<bool>,
    #[graphql(flatten)]
    pub stamp: EventStamp,
}

impl ParallelQueryEvent {
    pub fn from_event(e: &SharedEvent) -> Option<Self> {
        let EventPayload::Rac(RacEvent::QueryStarted(p) | RacEvent::QueryCompleted(p)) = &e.payload else { return None };
        Some(ParallelQueryEvent {
            event_type: e.payload.event_type().as_str().to_string(),
            query_id: ID(p.query_id.clone()),
            sql_text: p.sql_text.clone(),
            dop: u32::try_from(p.dop).unwrap_or(u32::MAX),
            instances: p.instances.iter().cloned().map(ID).collect(),
            rows_processed: p.rows_processed,
            duration_ms: p.duration_ms,
            success: p.success,
            stamp: EventStamp::of(e),
        })
    }
}

/// `recovery_started` / `recovery_progress` / `recovery_completed`.
#[derive(SimpleObject)]
pub struct RecoveryEvent {
    pub event_type: String,
    pub recovery_id: ID,
    pub failed_instance: ID,
    pub recovering_instance: ID,
    pub recovery_phase: String,
    pub progress_percent: f64,
    pub redo_logs_applied: u64,
    pub total_redo_logs: u64,
    pub eta_seconds: Option<f64>,
    pub blocks_recovered: u64,
    pub redo_records_applied: u64,
    pub success: Option<bool>,
    #[graphql(flatten)]
    pub stamp: EventStamp,
}

impl RecoveryEvent {
    pub fn from_event(e: &SharedEvent) -> Option<Self> {
        let EventPayload::Rac(RacEvent::RecoveryStarted(p) | RacEvent::RecoveryProgress(p) | RacEvent::RecoveryCompleted(p)) = &e.payload else { return None };
        Some(RecoveryEvent {
            event_type: e.payload.event_type().as_str().to_string(),
            recovery_id: ID(p.recovery_id.clone()),
            failed_instance: ID(p.failed_instance.clone()),
            recovering_instance: ID(p.recovering_instance.clone()),
            recovery_phase: p.recovery_phase.clone(),
            progress_percent: p.progress_percent,
            redo_logs_applied: p.redo_logs_applied,
            total_redo_logs: p.total_redo_logs,
            eta_seconds: p.eta_seconds,
            blocks_recovered: p.blocks_recovered,
            redo_records_applied: p.redo_records_applied,
            success: p.success,
            stamp: EventStamp::of(e),
        })
    }
}
