//! RAC over REST: instances and their state, block reads and writes through Cache Fusion, lock
//! conversion and release, Cache Fusion statistics, the GRD's entries and its remastering, the
//! interconnect, parallel query and instance recovery.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::actors::rac::Rac;
use crate::http::error::ApiError;
use crate::http::json::Json;
use crate::messages::rac::*;
use crate::model::rac::LockMode;
use crate::runtime::RuntimeHandle;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/rac/status", web::get().to(rac_status))
        .route("/api/v1/rac/instances", web::get().to(list_instances))
        .route("/api/v1/rac/blocks/{block_id}/read", web::post().to(read_block))
        .route("/api/v1/rac/blocks/{block_id}/write", web::post().to(write_block))
        .route("/api/v1/rac/locks/{resource_id}/release", web::post().to(release_lock))
        .route("/api/v1/rac/locks/{resource_id}/convert", web::post().to(convert_lock))
        .route("/api/v1/rac/cache-fusion/statistics", web::get().to(cache_fusion_statistics))
        .route("/api/v1/rac/grd/resources", web::get().to(list_resources))
        .route("/api/v1/rac/grd/resources/{resource_id}", web::get().to(get_resource))
        .route("/api/v1/rac/interconnect", web::get().to(interconnect))
        .route("/api/v1/rac/parallel-query", web::post().to(parallel_query))
        .route("/api/v1/rac/parallel-query/statistics", web::get().to(parallel_query_statistics))
        .route("/api/v1/rac/grd/remaster", web::post().to(remaster))
        .route("/api/v1/rac/grd/load-balance", web::post().to(load_balance))
        .route("/api/v1/rac/recovery", web::get().to(list_recoveries))
        .route("/api/v1/rac/recovery", web::post().to(start_recovery))
        .route("/api/v1/rac/recovery/{id}", web::get().to(get_recovery));
}

/// The OpenAPI description of the RAC routes built so far.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(rac_status, list_instances, read_block, write_block, release_lock, convert_lock, cache_fusion_statistics, list_resources, get_resource, interconnect, parallel_query, parallel_query_statistics, remaster, load_balance, list_recoveries, start_recovery, get_recovery),
    components(schemas(
        InstanceBody,
        WriteBody,
        ConvertBody,
        RacStatus,
        InstanceList,
        BlockRead,
        BlockWritten,
        LockChanged,
        CacheFusionStatistics,
        CacheTransferStats,
        InstanceView,
        ResourceList,
        ResourceView,
        LockHolder,
        PastImageView,
        InterconnectView,
        PeerLinkView,
        ParallelQueryBody,
        RowFilterBody,
        Aggregate,
        QueryResult,
        ResultRow,
        InstanceWork,
        ParallelQueryStats,
        InstanceScanTotals,
        LockMode,
        crate::model::rac::TransferKind,
        RemasterBody,
        RemasterOutcome,
        RemasteredResource,
        RemasterReason,
        RecoveryBody,
        RecoveryList,
        RecoveryView,
    ))
)]
pub struct RacApi;

fn rac(runtime: &RuntimeHandle) -> Result<&Rac, ApiError> {
    runtime.domain::<Rac>().ok_or_else(|| ApiError::not_implemented("rac"))
}

/// Body naming the instance that acts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceBody {
    pub instance_id: String,
}

/// Body of a block write.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteBody {
    pub instance_id: String,
    /// The block's new contents, as text: at most `rac.block_size` bytes of UTF-8.
    pub data: String,
}

/// Body of a lock conversion.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvertBody {
    pub instance_id: String,
    /// `shared`, `exclusive` or `null` (a release).
    pub to: LockMode,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RacStatus {
    pub instances: Vec<InstanceView>,
    pub block_size: usize,
    pub blocks: u64,
    /// GRD entries (blocks with a holder, a past image or a request), over all masters.
    pub grd_resources: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceList {
    pub instances: Vec<InstanceView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CacheFusionStatistics {
    /// Per instance, what it received, served and read.
    pub instances: Vec<InstanceStatistics>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceStatistics {
    pub instance_id: String,
    #[serde(flatten)]
    pub statistics: CacheTransferStats,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceList {
    pub resources: Vec<ResourceView>,
    pub count: usize,
}

#[utoipa::path(get, path = "/api/v1/rac/status", tag = "rac",
    responses((status = 200, description = "Instances, their state and the GRD's size", body = RacStatus)))]
pub async fn rac_status(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let rac = rac(&runtime)?;
    let instances = rac.instance_views().await?;
    let grd_resources = instances.iter().map(|i| i.mastered_resources).sum();
    Ok(HttpResponse::Ok().json(RacStatus { instances, block_size: rac.block_size, blocks: rac.blocks, grd_resources }))
}

#[utoipa::path(get, path = "/api/v1/rac/instances", tag = "rac",
    responses((status = 200, description = "Every instance", body = InstanceList)))]
pub async fn list_instances(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(InstanceList { instances: rac(&runtime)?.instance_views().await? }))
}

#[utoipa::path(post, path = "/api/v1/rac/blocks/{block_id}/read", tag = "rac", request_body = InstanceBody,
    params(("block_id" = String, Path, description = "file:block, e.g. 1:42")),
    responses((status = 200, description = "The block's current version, and how it came", body = BlockRead),
        (status = 400, description = "Invalid body"),
        (status = 404, description = "No such instance or block"),
        (status = 504, description = "The lock was not granted in time")))]
pub async fn read_block(runtime: web::Data<RuntimeHandle>, block_id: web::Path<String>, body: Json<InstanceBody>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(rac(&runtime)?.read(&body.instance_id, &block_id).await?))
}

#[utoipa::path(post, path = "/api/v1/rac/blocks/{block_id}/write", tag = "rac", request_body = WriteBody,
    params(("block_id" = String, Path, description = "file:block, e.g. 1:42")),
    responses((status = 200, description = "Written under an exclusive lock, its redo durable", body = BlockWritten),
        (status = 400, description = "Invalid body, or data longer than a block"),
        (status = 404, description = "No such instance or block"),
        (status = 504, description = "The lock was not granted in time")))]
pub async fn write_block(runtime: web::Data<RuntimeHandle>, block_id: web::Path<String>, body: Json<WriteBody>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    Ok(HttpResponse::Ok().json(rac(&runtime)?.write(&body.instance_id, &block_id, body.data).await?))
}

#[utoipa::path(post, path = "/api/v1/rac/locks/{resource_id}/release", tag = "rac", request_body = InstanceBody,
    params(("resource_id" = String, Path, description = "The block, file:block")),
    responses((status = 200, description = "The lock is null now; changes not on disk were written back first", body = LockChanged),
        (status = 404, description = "No such instance or block")))]
pub async fn release_lock(runtime: web::Data<RuntimeHandle>, resource_id: web::Path<String>, body: Json<InstanceBody>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(rac(&runtime)?.convert(&body.instance_id, &resource_id, LockMode::Null).await?))
}

#[utoipa::path(post, path = "/api/v1/rac/locks/{resource_id}/convert", tag = "rac", request_body = ConvertBody,
    params(("resource_id" = String, Path, description = "The block, file:block")),
    responses((status = 200, description = "The lock is in the mode asked for", body = LockChanged),
        (status = 400, description = "Invalid body"),
        (status = 404, description = "No such instance or block"),
        (status = 504, description = "The conversion was not granted in time")))]
pub async fn convert_lock(runtime: web::Data<RuntimeHandle>, resource_id: web::Path<String>, body: Json<ConvertBody>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(rac(&runtime)?.convert(&body.instance_id, &resource_id, body.to).await?))
}

#[utoipa::path(get, path = "/api/v1/rac/cache-fusion/statistics", tag = "rac",
    responses((status = 200, description = "Per instance: blocks received 2-way and 3-way for reads (cr) and writes (current), busy, lost, grants without transfer, disk reads and writes, invalidations, receive time", body = CacheFusionStatistics)))]
pub async fn cache_fusion_statistics(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let views = rac(&runtime)?.instance_views().await?;
    let instances = views.into_iter().map(|v| InstanceStatistics { instance_id: v.instance_id, statistics: v.statistics }).collect();
    Ok(HttpResponse::Ok().json(CacheFusionStatistics { instances }))
}

/// Query of `GET /api/v1/rac/grd/resources`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ResourcesQuery {
    /// Only the entries this instance masters.
    pub instance_id: Option<String>,
    /// At most this many (default 100, at most 10,000).
    pub limit: Option<usize>,
}

const RESOURCES_LIMIT: usize = 10_000;

#[utoipa::path(get, path = "/api/v1/rac/grd/resources", tag = "rac", params(ResourcesQuery),
    responses((status = 200, description = "GRD entries: master, holders and modes, past images, the grant in flight", body = ResourceList),
        (status = 400, description = "Invalid limit"),
        (status = 404, description = "No such instance")))]
pub async fn list_resources(runtime: web::Data<RuntimeHandle>, query: web::Query<ResourcesQuery>) -> Result<HttpResponse, ApiError> {
    let rac = rac(&runtime)?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > RESOURCES_LIMIT {
        return Err(RacError::InvalidField { field: "limit".into(), reason: format!("must be 1 to {RESOURCES_LIMIT}") }.into());
    }
    let resources = rac.resources(query.instance_id.as_deref(), limit).await?;
    Ok(HttpResponse::Ok().json(ResourceList { count: resources.len(), resources }))
}

#[utoipa::path(get, path = "/api/v1/rac/grd/resources/{resource_id}", tag = "rac",
    params(("resource_id" = String, Path, description = "The block, file:block")),
    responses((status = 200, description = "Its master and entry (no holders: nobody holds it)", body = ResourceView),
        (status = 404, description = "No such block")))]
pub async fn get_resource(runtime: web::Data<RuntimeHandle>, resource_id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(rac(&runtime)?.resource(&resource_id).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InterconnectView {
    /// Every instance's link to every peer: heartbeats, their round trips, messages sent.
    pub links: Vec<PeerLinkView>,
    /// The pairs whose heartbeats stopped coming back (a partition, a lossy link).
    pub unreachable: Vec<[String; 2]>,
}

#[utoipa::path(get, path = "/api/v1/rac/interconnect", tag = "rac",
    responses((status = 200, description = "Per instance pair: heartbeat status and round trips, Cache Fusion messages sent", body = InterconnectView)))]
pub async fn interconnect(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let links = rac(&runtime)?.interconnect().await?;
    let unreachable = links.iter().filter(|l| l.status == "unreachable").map(|l| [l.instance_id.clone(), l.peer.clone()]).collect();
    Ok(HttpResponse::Ok().json(InterconnectView { links, unreachable }))
}

/// Body of `POST /api/v1/rac/parallel-query`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParallelQueryBody {
    /// The blocks to scan, `first-last` inclusive (`1:0-1:99`). Each block's rows are its
    /// lines, each `name=value` pairs separated by commas.
    pub blocks: Option<String>,
    /// Named tables are not built yet (501); give `blocks`.
    pub table: Option<String>,
    pub aggregate: Aggregate,
    /// The column sum, min, max and avg aggregate (values that are not numbers are left out).
    pub column: Option<String>,
    pub group_by: Option<String>,
    pub filter: Option<RowFilterBody>,
    /// Degree of parallelism: how many ranges, each scanned by one instance (default 4).
    pub dop: Option<usize>,
}

/// Keeps the rows whose `column` is `equals`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RowFilterBody {
    pub column: String,
    pub equals: String,
}

#[utoipa::path(post, path = "/api/v1/rac/parallel-query", tag = "rac", request_body = ParallelQueryBody,
    responses((status = 200, description = "The aggregate per group, each instance's part of the scan, the plan and the duration", body = QueryResult),
        (status = 400, description = "Invalid range, dop or aggregate"),
        (status = 404, description = "A block out of the store"),
        (status = 501, description = "A named table (not built yet)"),
        (status = 504, description = "A block could not be read in time")))]
pub async fn parallel_query(runtime: web::Data<RuntimeHandle>, body: Json<ParallelQueryBody>) -> Result<HttpResponse, ApiError> {
    let rac = rac(&runtime)?;
    let body = body.into_inner();
    let blocks = match (body.blocks, body.table) {
        (Some(blocks), None) => blocks,
        (None, Some(_)) => return Err(RacError::NotBuilt { what: "a query of a named table".into() }.into()),
        _ => return Err(RacError::InvalidField { field: "blocks".into(), reason: "give blocks (first-last), and no table".into() }.into()),
    };
    let filter = body.filter.map(|f| (f.column, f.equals));
    let result = rac.parallel_query(&blocks, body.aggregate, body.column, body.group_by, filter, body.dop.unwrap_or(4)).await?;
    Ok(HttpResponse::Ok().json(result))
}

#[utoipa::path(get, path = "/api/v1/rac/parallel-query/statistics", tag = "rac",
    responses((status = 200, description = "Queries run and failed, rows and blocks scanned, average duration, per instance totals", body = ParallelQueryStats)))]
pub async fn parallel_query_statistics(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(rac(&runtime)?.parallel_query_stats().await?))
}

/// Body of `POST /api/v1/rac/grd/remaster` (may be empty: the affinity pass over every block).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemasterBody {
    /// The block to remaster, file:block. Alone: the affinity pass on it only.
    pub resource_id: Option<String>,
    /// Where its mastership goes (a live instance); needs `resource_id`.
    pub to_instance: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/rac/grd/remaster", tag = "rac", request_body = RemasterBody,
    responses((status = 200, description = "The reconfiguration done: the blocks with holders whose master moved (none if the affinity pass found nothing to move)", body = RemasterOutcome),
        (status = 400, description = "Invalid body"),
        (status = 404, description = "No such instance or block"),
        (status = 503, description = "The instance named is down")))]
pub async fn remaster(runtime: web::Data<RuntimeHandle>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let body: RemasterBody = if body.iter().all(u8::is_ascii_whitespace) { RemasterBody::default() } else { crate::http::json::parse(&body)? };
    Ok(HttpResponse::Ok().json(rac(&runtime)?.remaster(body.resource_id.as_deref(), body.to_instance.as_deref()).await?))
}

#[utoipa::path(post, path = "/api/v1/rac/grd/load-balance", tag = "rac",
    responses((status = 200, description = "Mastership of the blocks with an entry spread evenly over the live instances", body = RemasterOutcome)))]
pub async fn load_balance(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(rac(&runtime)?.load_balance().await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryList {
    /// Newest first: running, then past ones (the last 64).
    pub recoveries: Vec<RecoveryView>,
}

/// Body of `POST /api/v1/rac/recovery`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryBody {
    /// A crashed instance not recovered yet.
    pub failed_instance: String,
}

#[utoipa::path(get, path = "/api/v1/rac/recovery", tag = "rac",
    responses((status = 200, description = "Instance recoveries, running and past", body = RecoveryList)))]
pub async fn list_recoveries(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(RecoveryList { recoveries: rac(&runtime)?.recoveries(None).await? }))
}

#[utoipa::path(post, path = "/api/v1/rac/recovery", tag = "rac", request_body = RecoveryBody,
    responses((status = 202, description = "Recovery started (or the one running already)", body = RecoveryView),
        (status = 404, description = "No such instance"),
        (status = 409, description = "The instance is open, or was recovered already")))]
pub async fn start_recovery(runtime: web::Data<RuntimeHandle>, body: Json<RecoveryBody>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted().json(rac(&runtime)?.start_recovery(body.into_inner().failed_instance).await?))
}

#[utoipa::path(get, path = "/api/v1/rac/recovery/{id}", tag = "rac",
    params(("id" = String, Path, description = "recovery-N")),
    responses((status = 200, description = "One recovery", body = RecoveryView),
        (status = 404, description = "No such recovery")))]
pub async fn get_recovery(runtime: web::Data<RuntimeHandle>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let found = rac(&runtime)?.recoveries(Some(id.clone())).await?.into_iter().next();
    let view = found.ok_or(RacError::RecoveryNotFound { recovery_id: id })?;
    Ok(HttpResponse::Ok().json(view))
}
