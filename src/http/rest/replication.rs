//! Replication over REST: the data path (`/operations`, `/api/v1/data/{table}/{key}`), replicas,
//! status, lag, and the Patroni-style health checks `/health/primary` and `/health/replica`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::model::{ConflictStrategy, Op, ReplicaMode, ReplicaStatus, ReplicationMode, SlotType};
use crate::http::error::ApiError;
use crate::http::json::Json;
use crate::http::rest::schemas;
use crate::messages::replication::*;
use crate::runtime::RuntimeHandle;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/replication/replicas", web::post().to(add_replica))
        .route("/api/v1/replication/replicas", web::get().to(list_replicas))
        .route("/api/v1/replication/replicas/{id}", web::get().to(get_replica))
        .route("/api/v1/replication/replicas/{id}", web::delete().to(remove_replica))
        .route("/api/v1/replication/replicas/{id}/pause", web::post().to(pause_replica))
        .route("/api/v1/replication/replicas/{id}/resume", web::post().to(resume_replica))
        .route("/api/v1/replication/status", web::get().to(status))
        .route("/api/v1/replication/lag", web::get().to(lag))
        .route("/api/v1/replication/lag/history", web::get().to(lag_history))
        .route("/api/v1/replication/throughput", web::get().to(throughput))
        .route("/api/v1/replication/health", web::get().to(replication_health))
        .route("/api/v1/replication/operations", web::post().to(replicate))
        .route("/api/v1/replication/config", web::put().to(set_config))
        .route("/api/v1/replication/conflict-strategy", web::put().to(set_conflict_strategy))
        .route("/api/v1/replication/heartbeat", web::put().to(set_heartbeat))
        .route("/api/v1/data/{table}/{key}", web::get().to(read_row))
        .route("/api/v1/replication/wal", web::get().to(wal_status))
        .route("/api/v1/replication/snapshots", web::post().to(create_snapshot))
        .route("/api/v1/replication/snapshots", web::get().to(list_snapshots))
        .route("/api/v1/replication/snapshots/{id}/restore", web::post().to(restore_snapshot))
        .route("/api/v1/replication/wal/truncate", web::post().to(wal_truncate))
        .route("/api/v1/replication/slots", web::post().to(create_slot))
        .route("/api/v1/replication/slots", web::get().to(list_slots))
        .route("/api/v1/replication/slots/{name}", web::get().to(get_slot))
        .route("/api/v1/replication/slots/{name}", web::delete().to(drop_slot))
        .route("/api/v1/replication/slots/{name}/changes", web::get().to(slot_changes))
        .route("/api/v1/replication/slots/{name}/advance", web::post().to(advance_slot))
        .route("/health/primary", web::get().to(health_primary))
        .route("/health/replica", web::get().to(health_replica));
}

/// The OpenAPI description of the replication routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        add_replica,
        list_replicas,
        get_replica,
        remove_replica,
        pause_replica,
        resume_replica,
        status,
        lag,
        lag_history,
        throughput,
        replication_health,
        replicate,
        set_config,
        set_conflict_strategy,
        set_heartbeat,
        read_row,
        wal_status,
        create_snapshot,
        list_snapshots,
        restore_snapshot,
        wal_truncate,
        create_slot,
        list_slots,
        get_slot,
        drop_slot,
        slot_changes,
        advance_slot,
        health_primary,
        health_replica,
    ),
    components(schemas(
        AddReplicaBody,
        OperationsBody,
        ReplicaList,
        LagRow,
        ConfigBody,
        ConflictStrategyBody,
        HeartbeatBody,
        crate::messages::replication::ReplicationSettingsView,
        crate::messages::replication::LagSample,
        crate::messages::replication::LagHistory,
        crate::messages::replication::Throughput,
        crate::messages::replication::ReplicaThroughput,
        crate::messages::replication::ReplicaHealth,
        CreateSlotBody,
        RestoreBody,
        crate::messages::replication::SnapshotView,
        AdvanceSlotBody,
        crate::messages::replication::WalStatus,
        crate::messages::replication::WalHolder,
        crate::messages::replication::WalTruncated,
        crate::model::SlotType,
        crate::messages::replication::SlotView,
        crate::messages::replication::SlotChanges,
        crate::messages::replication::DecodedChange,
        crate::model::Op,
        crate::model::OpKind,
        crate::messages::replication::ReplicaView,
        crate::model::ReplicaStatus,
        crate::messages::replication::ReplicationStatus,
        crate::messages::replication::ReplicateAck,
        crate::messages::replication::RowView,
    ))
)]
pub struct ReplicationApi;

/// Body of `POST /api/v1/replication/replicas`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddReplicaBody {
    #[schema(schema_with = schemas::caller_id)]
    pub replica_id: String,
    /// `sync` or `async` (default async).
    pub mode: Option<ReplicaMode>,
    pub from_snapshot: Option<String>,
}

/// Body of `POST /api/v1/replication/operations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationsBody {
    #[schema(schema_with = schemas::ops)]
    pub ops: Vec<Op>,
}

/// Answer of `GET /api/v1/replication/replicas`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaList {
    pub total: usize,
    pub replicas: Vec<ReplicaView>,
}

/// One row of `GET /api/v1/replication/lag`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LagRow {
    pub replica_id: String,
    pub status: ReplicaStatus,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub write_lag_ms: Option<f64>,
    pub flush_lag_ms: Option<f64>,
    pub replay_lag_ms: Option<f64>,
}

#[utoipa::path(post, path = "/api/v1/replication/replicas", tag = "replication", request_body = AddReplicaBody,
    responses((status = 201, description = "Added; it catches up from the WAL", body = ReplicaView),
              (status = 404, description = "No such snapshot (from_snapshot)"),
              (status = 409, description = "A replica with that id exists")))]
pub async fn add_replica(runtime: web::Data<RuntimeHandle>, body: Json<AddReplicaBody>) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let view = runtime
        .primary()
        .send(AddReplica { replica_id: b.replica_id, mode: b.mode.unwrap_or(ReplicaMode::Async), from_snapshot: b.from_snapshot })
        .await??;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(get, path = "/api/v1/replication/replicas", tag = "replication",
    responses((status = 200, description = "Every replica", body = ReplicaList)))]
pub async fn list_replicas(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let replicas = runtime.primary().send(ListReplicas).await?;
    Ok(HttpResponse::Ok().json(ReplicaList { total: replicas.len(), replicas }))
}

#[utoipa::path(get, path = "/api/v1/replication/replicas/{id}", tag = "replication",
    params(("id" = String, Path, description = "Replica id")),
    responses((status = 200, description = "Status, write/flush/replay lsn, lag", body = ReplicaView),
              (status = 404, description = "No such replica")))]
pub async fn get_replica(runtime: web::Data<RuntimeHandle>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(runtime.primary().send(GetReplica { replica_id: id.into_inner() }).await??))
}

#[utoipa::path(delete, path = "/api/v1/replication/replicas/{id}", tag = "replication",
    params(("id" = String, Path, description = "Replica id")),
    responses((status = 204, description = "Removed"), (status = 404, description = "No such replica")))]
pub async fn remove_replica(runtime: web::Data<RuntimeHandle>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    runtime.primary().send(RemoveReplica { replica_id: id.into_inner() }).await??;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/v1/replication/replicas/{id}/pause", tag = "replication",
    params(("id" = String, Path, description = "Replica id")),
    responses((status = 200, description = "Paused: nothing is shipped to it", body = ReplicaView),
              (status = 409, description = "Already paused")))]
pub async fn pause_replica(runtime: web::Data<RuntimeHandle>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(runtime.primary().send(PauseReplica { replica_id: id.into_inner() }).await??))
}

#[utoipa::path(post, path = "/api/v1/replication/replicas/{id}/resume", tag = "replication",
    params(("id" = String, Path, description = "Replica id")),
    responses((status = 200, description = "Shipping again from where it stopped", body = ReplicaView),
              (status = 409, description = "Not paused")))]
pub async fn resume_replica(runtime: web::Data<RuntimeHandle>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(runtime.primary().send(ResumeReplica { replica_id: id.into_inner() }).await??))
}

#[utoipa::path(get, path = "/api/v1/replication/status", tag = "replication",
    responses((status = 200, description = "Primary, mode, current lsn, replicas, health", body = ReplicationStatus)))]
pub async fn status(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(runtime.primary().send(GetReplicationStatus).await?))
}

#[utoipa::path(get, path = "/api/v1/replication/lag", tag = "replication",
    responses((status = 200, description = "Per replica: lag in bytes and seconds, write/flush/replay lag", body = Object)))]
pub async fn lag(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let replicas = runtime.primary().send(ListReplicas).await?;
    let rows: Vec<LagRow> = replicas
        .into_iter()
        .map(|r| LagRow {
            replica_id: r.replica_id,
            status: r.status,
            lag_bytes: r.lag_bytes,
            lag_seconds: r.lag_seconds,
            write_lag_ms: r.write_lag_ms,
            flush_lag_ms: r.flush_lag_ms,
            replay_lag_ms: r.replay_lag_ms,
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "replicas": rows })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// One replica (default: all).
    replica_id: Option<String>,
    /// How far back, in seconds (default 300; samples are kept for 86400 at most).
    #[param(schema_with = any_u64)]
    seconds: Option<u64>,
}

/// Any u64 (the document's default for one says int64, which stops at 2^63 - 1).
fn any_u64() -> utoipa::openapi::Object {
    schemas::integer(0, usize::MAX).build()
}

#[utoipa::path(get, path = "/api/v1/replication/lag/history", tag = "replication",
    params(HistoryQuery),
    responses((status = 200, description = "Real samples, one per heartbeat interval at most, oldest first", body = Object),
              (status = 404, description = "No such replica")))]
pub async fn lag_history(runtime: web::Data<RuntimeHandle>, query: web::Query<HistoryQuery>) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let history = runtime
        .primary()
        .send(GetLagHistory { replica_id: q.replica_id, seconds: q.seconds.unwrap_or(300) })
        .await??;
    Ok(HttpResponse::Ok().json(json!({ "replicas": history })))
}

#[utoipa::path(get, path = "/api/v1/replication/throughput", tag = "replication",
    responses((status = 200, description = "Ops/s and bytes/s over a 10 s sliding window, primary and per replica", body = Throughput)))]
pub async fn throughput(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(runtime.primary().send(GetThroughput).await?))
}

#[utoipa::path(get, path = "/api/v1/replication/health", tag = "replication",
    responses((status = 200, description = "Per replica: healthy, and every reason it is not", body = Object)))]
pub async fn replication_health(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let replicas = runtime.primary().send(GetReplicationHealth).await?;
    let healthy = replicas.iter().all(|r| r.healthy);
    Ok(HttpResponse::Ok().json(json!({ "healthy": healthy, "replicas": replicas })))
}

#[utoipa::path(post, path = "/api/v1/replication/operations", tag = "replication", request_body = OperationsBody,
    responses((status = 200, description = "Durable as the mode requires", body = ReplicateAck),
              (status = 400, description = "Invalid batch"),
              (status = 404, description = "Update or delete of a row that does not exist"),
              (status = 409, description = "Insert of a row that exists"),
              (status = 503, description = "The primary is down"),
              (status = 504, description = "Durable on the primary; replicas the mode waits for did not confirm in time")))]
pub async fn replicate(runtime: web::Data<RuntimeHandle>, body: Json<OperationsBody>) -> Result<HttpResponse, ApiError> {
    let ack = runtime.primary().send(ReplicateOps { ops: body.into_inner().ops }).await??;
    Ok(HttpResponse::Ok().json(ack))
}

/// Body of `PUT /api/v1/replication/config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigBody {
    pub mode: ReplicationMode,
    pub sync_quorum: Option<usize>,
    pub sync_timeout_ms: Option<u64>,
}

/// `semi_sync` takes a quorum of at least one (more replicas than there are: 409); the other
/// modes keep whatever quorum they are given for a later `semi_sync`.
impl utoipa::PartialSchema for ConfigBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, Type};
        let body = |modes: &[ReplicationMode], least_quorum: usize| {
            ObjectBuilder::new()
                .property("mode", ObjectBuilder::new().schema_type(Type::String).enum_values(Some(modes.iter().map(|m| serde_json::json!(m)))))
                .required("mode")
                .property(
                    "sync_quorum",
                    schemas::optional_integer(least_quorum, usize::MAX)
                        .description(Some("How many replicas semi_sync waits for (default: as it is)")),
                )
                .property("sync_timeout_ms", schemas::optional_integer(1, MAX_SYNC_TIMEOUT_MS))
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        let one_of = OneOfBuilder::new()
            .item(body(&[ReplicationMode::SemiSync], 1))
            .item(body(&[ReplicationMode::Sync, ReplicationMode::Async], 0))
            .build();
        Schema::OneOf(one_of).into()
    }
}

impl utoipa::ToSchema for ConfigBody {}

/// The limits the primary's settings check (`actors::replication::primary::settings`) puts on
/// timings, in milliseconds.
const MAX_SYNC_TIMEOUT_MS: usize = 3_600_000;
const MAX_HEARTBEAT_INTERVAL_MS: usize = 3_600_000;
const MAX_HEARTBEAT_TIMEOUT_MS: usize = 86_400_000;

fn heartbeat_interval_ms() -> utoipa::openapi::Object {
    schemas::integer(1, MAX_HEARTBEAT_INTERVAL_MS).build()
}

fn heartbeat_timeout_ms() -> utoipa::openapi::Object {
    schemas::integer(2, MAX_HEARTBEAT_TIMEOUT_MS).description(Some("Greater than interval_ms")).build()
}

/// Body of `PUT /api/v1/replication/conflict-strategy`: `site_priority` with its list of
/// sites, or another strategy without one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConflictStrategyBody {
    pub strategy: ConflictStrategy,
    /// Sites, highest priority first; only with `site_priority`.
    pub site_priority: Option<Vec<String>>,
}

impl utoipa::PartialSchema for ConflictStrategyBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, Type};
        let strategy = |names: &[ConflictStrategy]| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(names.iter().map(|s| serde_json::json!(s))))
        };
        let others = [ConflictStrategy::LastWriterWins, ConflictStrategy::FirstWriterWins, ConflictStrategy::PrimaryWins];
        let one_of = OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .property("strategy", strategy(&[ConflictStrategy::SitePriority]))
                    .required("strategy")
                    .property("site_priority", schemas::site_list(false))
                    .required("site_priority")
                    .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            )
            .item(
                ObjectBuilder::new()
                    .property("strategy", strategy(&others))
                    .required("strategy")
                    .property("site_priority", ObjectBuilder::new().schema_type(Type::Null))
                    .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            )
            .build();
        Schema::OneOf(one_of).into()
    }
}

impl utoipa::ToSchema for ConflictStrategyBody {}

/// Body of `PUT /api/v1/replication/heartbeat`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    #[schema(schema_with = heartbeat_interval_ms)]
    pub interval_ms: u64,
    #[schema(schema_with = heartbeat_timeout_ms)]
    pub timeout_ms: u64,
}

#[utoipa::path(put, path = "/api/v1/replication/config", tag = "replication", request_body = ConfigBody,
    responses((status = 200, description = "The settings in force (durable: they survive a restart and win over the config file)", body = ReplicationSettingsView),
              (status = 400, description = "Invalid mode, quorum or timeout"),
              (status = 409, description = "A semi_sync quorum larger than the replicas there are")))]
pub async fn set_config(runtime: web::Data<RuntimeHandle>, body: Json<ConfigBody>) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let view = runtime
        .primary()
        .send(SetReplicationConfig { mode: b.mode, sync_quorum: b.sync_quorum, sync_timeout_ms: b.sync_timeout_ms })
        .await??;
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(put, path = "/api/v1/replication/conflict-strategy", tag = "replication", request_body = ConflictStrategyBody,
    responses((status = 200, description = "Stored (multi-master, which applies it, comes later)", body = ReplicationSettingsView),
              (status = 400, description = "Invalid strategy or site list")))]
pub async fn set_conflict_strategy(
    runtime: web::Data<RuntimeHandle>,
    body: Json<ConflictStrategyBody>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let view = runtime.primary().send(SetConflictStrategy { strategy: b.strategy, site_priority: b.site_priority }).await??;
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(put, path = "/api/v1/replication/heartbeat", tag = "replication", request_body = HeartbeatBody,
    responses((status = 200, description = "In force at once, durable", body = ReplicationSettingsView),
              (status = 400, description = "timeout_ms must exceed interval_ms")))]
pub async fn set_heartbeat(runtime: web::Data<RuntimeHandle>, body: Json<HeartbeatBody>) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let view = runtime.primary().send(SetHeartbeat { interval_ms: b.interval_ms, timeout_ms: b.timeout_ms }).await??;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// `primary` (default) or a replica id.
    #[param(min_length = 1)]
    from: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/data/{table}/{key}", tag = "replication",
    params(("table" = String, Path), ("key" = String, Path), ReadQuery),
    responses((status = 200, description = "The row where it lives now", body = RowView),
              (status = 404, description = "No such row there, or no such replica")))]
pub async fn read_row(
    runtime: web::Data<RuntimeHandle>,
    path: web::Path<(String, String)>,
    query: web::Query<ReadQuery>,
) -> Result<HttpResponse, ApiError> {
    let (table, key) = path.into_inner();
    let from = match query.into_inner().from.as_deref() {
        None | Some("primary") => ReadFrom::Primary,
        Some("") => return Err(ApiError::invalid("from", "expected primary or a replica id")),
        Some(id) => ReadFrom::Replica(id.to_string()),
    };
    let where_ = match &from {
        ReadFrom::Primary => "primary".to_string(),
        ReadFrom::Replica(id) => id.clone(),
    };
    match runtime.primary().send(ReadRow { table: table.clone(), key: key.clone(), from }).await?? {
        Some(row) => Ok(HttpResponse::Ok().json(row)),
        None => Err(ApiError::not_found("row_not_found", format!("no row {table}/{key} on {where_}"))
            .with_details(json!({ "table": table, "key": key, "from": where_ }))),
    }
}

#[utoipa::path(get, path = "/api/v1/replication/wal", tag = "replication",
    responses((status = 200, description = "Current, flushed and oldest retained lsn, retained bytes, what holds retention", body = WalStatus)))]
pub async fn wal_status(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(runtime.primary().send(GetWalStatus).await??))
}

#[utoipa::path(post, path = "/api/v1/replication/wal/truncate", tag = "replication",
    responses((status = 200, description = "advance_wal: WAL no replica or slot needs is dropped; the new oldest lsn", body = WalTruncated)))]
pub async fn wal_truncate(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(runtime.primary().send(TruncateWal).await??))
}

#[utoipa::path(post, path = "/api/v1/replication/snapshots", tag = "replication",
    responses((status = 201, description = "A consistent snapshot of the primary's tables at its flushed lsn, durable", body = SnapshotView)))]
pub async fn create_snapshot(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(runtime.primary().send(CreateSnapshot).await??))
}

#[utoipa::path(get, path = "/api/v1/replication/snapshots", tag = "replication",
    responses((status = 200, description = "Every snapshot", body = Object)))]
pub async fn list_snapshots(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let snapshots = runtime.primary().send(ListSnapshots).await??;
    Ok(HttpResponse::Ok().json(json!({ "total": snapshots.len(), "snapshots": snapshots })))
}

/// Body of `POST /api/v1/replication/snapshots/{id}/restore`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// The replica to reseed.
    pub target: String,
}

#[utoipa::path(post, path = "/api/v1/replication/snapshots/{id}/restore", tag = "replication", request_body = RestoreBody,
    params(("id" = String, Path, description = "Snapshot id")),
    responses((status = 200, description = "The replica is reseeded from the snapshot and streams from its lsn", body = SnapshotView),
              (status = 404, description = "No such snapshot or replica"),
              (status = 409, description = "The WAL since the snapshot is gone: take a new snapshot")))]
pub async fn restore_snapshot(
    runtime: web::Data<RuntimeHandle>,
    id: web::Path<String>,
    body: Json<RestoreBody>,
) -> Result<HttpResponse, ApiError> {
    let view = runtime.primary().send(RestoreSnapshot { snapshot_id: id.into_inner(), target: body.into_inner().target }).await??;
    Ok(HttpResponse::Ok().json(view))
}

/// Body of `POST /api/v1/replication/slots`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSlotBody {
    #[schema(schema_with = schemas::caller_id)]
    pub slot_name: String,
    pub slot_type: SlotType,
}

/// Body of `POST /api/v1/replication/slots/{name}/advance`: an lsn as `X/Y` text or a number.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceSlotBody {
    #[schema(schema_with = lsn)]
    pub lsn: serde_json::Value,
}

/// An lsn as [`parse_lsn`] reads it: `X/Y` text, each half at most 32 bits of hex, or a number.
const LSN_PATTERN: &str = "^0*[0-9A-Fa-f]{1,8}/0*[0-9A-Fa-f]{1,8}$";

fn lsn() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(LSN_PATTERN)))
        .item(schemas::integer(0, usize::MAX))
        .description(Some("An lsn like \"0/16B3748\", or the same position as a number"))
        .build()
        .into()
}

/// Parses an lsn given as PostgreSQL text (`0/16B3748`) or as a number.
pub fn parse_lsn(v: &serde_json::Value) -> Option<u64> {
    match v {
        // 5.0 is the integer 5 to JSON Schema, so to the document.
        serde_json::Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64).map(|f| f as u64)
        }),
        serde_json::Value::String(s) => {
            // Hex digits only (from_str_radix would also take a sign).
            if !s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'/') {
                return None;
            }
            let (hi, lo) = s.split_once('/')?;
            let hi = u64::from_str_radix(hi, 16).ok()?;
            let lo = u64::from_str_radix(lo, 16).ok()?;
            (hi <= 0xFFFF_FFFF && lo <= 0xFFFF_FFFF).then_some((hi << 32) | lo)
        }
        _ => None,
    }
}

#[utoipa::path(post, path = "/api/v1/replication/slots", tag = "replication", request_body = CreateSlotBody,
    responses((status = 201, description = "Created at the current flushed lsn; it holds WAL from there", body = SlotView),
              (status = 409, description = "A slot with that name exists")))]
pub async fn create_slot(runtime: web::Data<RuntimeHandle>, body: Json<CreateSlotBody>) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let view = runtime.primary().send(CreateSlot { slot_name: b.slot_name, slot_type: b.slot_type }).await??;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(get, path = "/api/v1/replication/slots", tag = "replication",
    responses((status = 200, description = "Every slot", body = Object)))]
pub async fn list_slots(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let slots = runtime.primary().send(ListSlots).await?;
    Ok(HttpResponse::Ok().json(json!({ "total": slots.len(), "slots": slots })))
}

#[utoipa::path(get, path = "/api/v1/replication/slots/{name}", tag = "replication",
    params(("name" = String, Path)),
    responses((status = 200, description = "active, restart_lsn, confirmed_flush_lsn, retained_bytes, wal_status", body = SlotView),
              (status = 404, description = "No such slot")))]
pub async fn get_slot(runtime: web::Data<RuntimeHandle>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(runtime.primary().send(GetSlot { slot_name: name.into_inner() }).await??))
}

#[utoipa::path(delete, path = "/api/v1/replication/slots/{name}", tag = "replication",
    params(("name" = String, Path)),
    responses((status = 204, description = "Dropped; the WAL it held can go"), (status = 404, description = "No such slot")))]
pub async fn drop_slot(runtime: web::Data<RuntimeHandle>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    runtime.primary().send(DropSlot { slot_name: name.into_inner() }).await??;
    Ok(HttpResponse::NoContent().finish())
}

/// Most changes one peek returns.
pub const MAX_CHANGES: usize = 10_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChangesQuery {
    /// Most changes (default 100); whole records only.
    #[param(schema_with = changes_limit)]
    limit: Option<usize>,
}

fn changes_limit() -> utoipa::openapi::Object {
    schemas::integer(1, MAX_CHANGES).build()
}

#[utoipa::path(get, path = "/api/v1/replication/slots/{name}/changes", tag = "replication",
    params(("name" = String, Path), ChangesQuery),
    responses((status = 200, description = "Changes decoded from the WAL after confirmed_flush_lsn, not consumed; advance to next_lsn after using them", body = SlotChanges),
              (status = 404, description = "No such slot"), (status = 409, description = "A physical slot: only logical slots decode changes")))]
pub async fn slot_changes(
    runtime: web::Data<RuntimeHandle>,
    name: web::Path<String>,
    query: web::Query<ChangesQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_CHANGES).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("expected 1 to {MAX_CHANGES}, got {limit}")));
    }
    Ok(HttpResponse::Ok().json(runtime.primary().send(PeekSlotChanges { slot_name: name.into_inner(), limit }).await??))
}

#[utoipa::path(post, path = "/api/v1/replication/slots/{name}/advance", tag = "replication", request_body = AdvanceSlotBody,
    params(("name" = String, Path)),
    responses((status = 200, description = "Consumption confirmed up to lsn", body = SlotView),
              (status = 400, description = "An lsn that does not read as one"),
              (status = 404, description = "No such slot"),
              (status = 409, description = "An lsn past the flushed WAL, or before the slot's position")))]
pub async fn advance_slot(
    runtime: web::Data<RuntimeHandle>,
    name: web::Path<String>,
    body: Json<AdvanceSlotBody>,
) -> Result<HttpResponse, ApiError> {
    let lsn = parse_lsn(&body.lsn).ok_or_else(|| ApiError::invalid("lsn", "expected an lsn like \"0/16B3748\" or a number"))?;
    Ok(HttpResponse::Ok().json(runtime.primary().send(AdvanceSlot { slot_name: name.into_inner(), lsn }).await??))
}

#[utoipa::path(get, path = "/health/primary", tag = "health",
    responses((status = 200, description = "The primary is up and writable"), (status = 503, description = "It is not")))]
pub async fn health_primary(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let s = runtime.primary().send(GetReplicationStatus).await?;
    if s.primary_state == "up" {
        Ok(HttpResponse::Ok().json(json!({ "role": "primary", "primary": s.primary, "current_lsn": s.current_lsn })))
    } else {
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "primary_down", format!("primary '{}' is down", s.primary)))
    }
}

/// Parses a size like `16kB`, `1MB`, `512` (bytes); units are powers of 1024, as PostgreSQL's.
/// Exactly what the document's pattern for `lag` admits; a size past u64 is no bound at all, so
/// it saturates rather than fails.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim_matches(' ');
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let n = digits.bytes().fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0')));
    let factor: u64 = match unit.trim_start_matches(' ').to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1 << 10,
        "mb" | "m" => 1 << 20,
        "gb" | "g" => 1 << 30,
        _ => return None,
    };
    Some(n.saturating_mul(factor))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReplicaHealthQuery {
    /// Most lag allowed, e.g. 16kB, 1MB, 4096 (units are powers of 1024): what [`parse_size`] reads.
    #[param(pattern = "^ *[0-9]+ *([kKmMgG][bB]?|[bB])? *$")]
    lag: Option<String>,
}

#[utoipa::path(get, path = "/health/replica", tag = "health",
    params(ReplicaHealthQuery),
    responses((status = 200, description = "At least one replica streams within the lag"), (status = 503, description = "None does")))]
pub async fn health_replica(
    runtime: web::Data<RuntimeHandle>,
    query: web::Query<ReplicaHealthQuery>,
) -> Result<HttpResponse, ApiError> {
    let max_lag = match &query.lag {
        None => u64::MAX,
        Some(text) => parse_size(text).ok_or_else(|| ApiError::invalid("lag", format!("expected a size like 16kB, got '{text}'")))?,
    };
    let replicas = runtime.primary().send(ListReplicas).await?;
    let streaming: Vec<&ReplicaView> = replicas
        .iter()
        .filter(|r| matches!(r.status, ReplicaStatus::InSync | ReplicaStatus::Streaming | ReplicaStatus::CatchingUp))
        .filter(|r| r.lag_bytes <= max_lag)
        .collect();
    if streaming.is_empty() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_replica_within_lag", "no replica is streaming within the given lag")
            .with_details(json!({ "max_lag_bytes": max_lag })));
    }
    Ok(HttpResponse::Ok().json(json!({
        "replicas": streaming.iter().map(|r| json!({ "replica_id": r.replica_id, "lag_bytes": r.lag_bytes, "status": r.status })).collect::<Vec<_>>()
    })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse_like_postgresql() {
        use super::parse_size;
        assert_eq!(parse_size("16kB"), Some(16 * 1024));
        assert_eq!(parse_size("1MB"), Some(1 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("3 parsecs"), None);
    }

    #[test]
    fn lsns_parse_in_both_forms() {
        use super::parse_lsn;
        use serde_json::json;
        assert_eq!(parse_lsn(&json!("0/6B")), Some(0x6B));
        assert_eq!(parse_lsn(&json!("1/0")), Some(1 << 32));
        assert_eq!(parse_lsn(&json!(107)), Some(107));
        assert_eq!(parse_lsn(&json!("6B")), None);
        assert_eq!(parse_lsn(&json!(-1)), None);
    }
}
