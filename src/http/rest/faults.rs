//! Fault injection over REST: `/api/v1/cluster/faults…`. Each route hands its target to the
//! runtime, which routes it to the domain that owns it; partitions and lossy or slow links go to
//! the fault-injecting link. No route here names a domain.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{Array, ArrayBuilder, Object, ObjectBuilder, SchemaType, Type};
use utoipa::ToSchema;

use crate::http::error::ApiError;
use crate::http::json::Json;
use crate::messages::faults::{CrashMode, FaultApplied, InjectedFault, LinkFaults, SetLinkFault};
use crate::runtime::RuntimeHandle;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/cluster/faults", web::get().to(list_faults))
        .route("/api/v1/cluster/faults/crash", web::post().to(crash))
        .route("/api/v1/cluster/faults/restart", web::post().to(restart))
        .route("/api/v1/cluster/faults/partition", web::post().to(partition))
        .route("/api/v1/cluster/faults/heal", web::post().to(heal))
        .route("/api/v1/cluster/faults/link", web::post().to(set_link));
}

/// The OpenAPI description of the fault injection routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_faults,
        crash,
        restart,
        partition,
        heal,
        set_link,
    ),
    components(schemas(
        FaultBody,
        RestartBody,
        PartitionBody,
        LinkBody,
        FaultList,
        crate::messages::faults::FaultApplied,
        crate::messages::faults::LinkFaults,
        crate::messages::faults::LinkFaultView,
        crate::messages::faults::InjectedFault,
    ))
)]
pub struct FaultsApi;

/// Answer of `GET /api/v1/cluster/faults`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FaultList {
    pub fault_injection_enabled: bool,
    /// Crashes held in place.
    pub faults: Vec<InjectedFault>,
    /// The partition and the lossy or slow links in force.
    pub links: LinkFaults,
}

/// Body of `POST /api/v1/cluster/faults/crash`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultBody {
    /// The node, replica (or the primary) to act on (`node-2`, `replica-001`).
    pub target: String,
    /// `crash` (default): the target stops and stays down until restarted.
    /// `internal_fault` (nodes): the actor fails and its supervisor restarts it at once
    /// (published as `actor_restarted`, counted in `/metrics`).
    #[schema(schema_with = crash_mode)]
    pub mode: Option<String>,
}

/// Body of `POST /api/v1/cluster/faults/restart`: a target, and no mode (null is taken as none).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartBody {
    /// The node, replica (or the primary) to start again.
    pub target: String,
    #[schema(schema_with = no_mode)]
    pub mode: Option<String>,
}

/// Two groups or more, each naming one endpoint or more, none twice.
fn partition_groups() -> Array {
    let group = ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)).min_items(Some(1)).unique_items(true);
    ArrayBuilder::new().items(group).min_items(Some(2)).build()
}

/// The modes [`crash`] takes, or null (for `crash`).
fn crash_mode() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::String, Type::Null]))
        .enum_values(Some(["crash", "internal_fault"].map(serde_json::Value::from).into_iter().chain([serde_json::Value::Null])))
        .build()
}

fn no_mode() -> Object {
    ObjectBuilder::new().schema_type(Type::Null).description(Some("Restart takes no mode")).build()
}

/// Body of `POST /api/v1/cluster/faults/partition`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionBody {
    /// Endpoints in different groups cannot reach each other; endpoints not named keep every
    /// link (`[["primary","replica-001"],["replica-002"]]`). At least two groups, each naming at
    /// least one endpoint; an endpoint in one group only; at most 1024 endpoints in all.
    #[schema(schema_with = partition_groups)]
    pub groups: Vec<Vec<String>>,
}

/// Body of `POST /api/v1/cluster/faults/link`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    pub from: String,
    /// Another endpoint than `from`.
    pub to: String,
    /// Share of messages lost, 0 to 1.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    pub drop_rate: f64,
    /// Delay added to every message, in order, up to 60000.
    #[serde(default)]
    #[schema(maximum = 60000)]
    pub delay_ms: u64,
    /// Also the link from `to` to `from` (default true).
    pub both_ways: Option<bool>,
}

/// Refuses fault injection when it is turned off.
fn check_enabled(runtime: &RuntimeHandle) -> Result<(), ApiError> {
    if !runtime.config().server.allow_fault_injection {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "fault_injection_disabled",
            "fault injection is turned off (server.allow_fault_injection = false)",
        ));
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/cluster/faults", tag = "faults",
    responses((status = 200, description = "Crashes, the partition and the faulty links in force now", body = FaultList)))]
pub async fn list_faults(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let faults = runtime.faults();
    Ok(HttpResponse::Ok().json(FaultList {
        fault_injection_enabled: runtime.config().server.allow_fault_injection,
        faults: faults.injected().await,
        links: faults.links().await?,
    }))
}

#[utoipa::path(post, path = "/api/v1/cluster/faults/crash", tag = "faults", request_body = FaultBody,
    responses((status = 200, description = "The target crashed", body = FaultApplied),
              (status = 400, description = "A mode the target does not take"),
              (status = 403, description = "Fault injection is turned off"),
              (status = 404, description = "No such target"),
              (status = 409, description = "Already crashed"),
              (status = 501, description = "A target of a domain not built yet")))]
pub async fn crash(runtime: web::Data<RuntimeHandle>, body: Json<FaultBody>) -> Result<HttpResponse, ApiError> {
    check_enabled(&runtime)?;
    let body = body.into_inner();
    let mode = match body.mode.as_deref().unwrap_or("crash") {
        "crash" => CrashMode::Crash,
        "internal_fault" => CrashMode::InternalFault,
        other => return Err(ApiError::invalid("mode", format!("expected crash or internal_fault, got '{other}'"))),
    };
    Ok(HttpResponse::Ok().json(runtime.faults().crash(body.target, mode).await?))
}

#[utoipa::path(post, path = "/api/v1/cluster/faults/restart", tag = "faults", request_body = RestartBody,
    responses((status = 200, description = "The target runs again (a node: once it answered a heartbeat)", body = FaultApplied),
              (status = 400, description = "A mode (restart takes none)"),
              (status = 403, description = "Fault injection is turned off"),
              (status = 404, description = "No such target"),
              (status = 409, description = "The target is not crashed"),
              (status = 501, description = "A target of a domain not built yet")))]
pub async fn restart(runtime: web::Data<RuntimeHandle>, body: Json<RestartBody>) -> Result<HttpResponse, ApiError> {
    check_enabled(&runtime)?;
    let body = body.into_inner();
    if body.mode.is_some() {
        return Err(ApiError::invalid("mode", "restart takes no mode"));
    }
    Ok(HttpResponse::Ok().json(runtime.faults().restart(body.target).await?))
}

#[utoipa::path(post, path = "/api/v1/cluster/faults/partition", tag = "faults", request_body = PartitionBody,
    responses((status = 200, description = "The partition in force (it replaces any earlier one)", body = LinkFaults),
              (status = 400, description = "Fewer than two groups, an empty group, or an endpoint named twice"),
              (status = 403, description = "Fault injection is turned off"),
              (status = 404, description = "An endpoint nobody owns"),
              (status = 501, description = "An endpoint of a domain not built yet")))]
pub async fn partition(runtime: web::Data<RuntimeHandle>, body: Json<PartitionBody>) -> Result<HttpResponse, ApiError> {
    check_enabled(&runtime)?;
    Ok(HttpResponse::Ok().json(runtime.faults().partition(body.into_inner().groups).await?))
}

#[utoipa::path(post, path = "/api/v1/cluster/faults/heal", tag = "faults",
    responses((status = 200, description = "No partition and no faulty link any more", body = LinkFaults),
              (status = 403, description = "Fault injection is turned off")))]
pub async fn heal(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    check_enabled(&runtime)?;
    Ok(HttpResponse::Ok().json(runtime.faults().heal().await?))
}

#[utoipa::path(post, path = "/api/v1/cluster/faults/link", tag = "faults", request_body = LinkBody,
    responses((status = 200, description = "The links' faults in force (drop_rate 0 and delay_ms 0 heal the link)", body = LinkFaults),
              (status = 400, description = "A rate outside 0..1, a delay over 60000, or a link from an endpoint to itself"),
              (status = 403, description = "Fault injection is turned off"),
              (status = 404, description = "An endpoint nobody owns"),
              (status = 501, description = "An endpoint of a domain not built yet")))]
pub async fn set_link(runtime: web::Data<RuntimeHandle>, body: Json<LinkBody>) -> Result<HttpResponse, ApiError> {
    check_enabled(&runtime)?;
    let b = body.into_inner();
    let fault = SetLinkFault { from: b.from, to: b.to, drop_rate: b.drop_rate, delay_ms: b.delay_ms, both_ways: b.both_ways.unwrap_or(true) };
    Ok(HttpResponse::Ok().json(runtime.faults().set_link(fault).await?))
}
