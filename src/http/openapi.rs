//! The OpenAPI 3 document of every REST route (`/api/v1/openapi.json`) and the Swagger UI that
//! renders it (`/swagger-ui/`, served from files compiled into the binary: it works offline).
//!
//! Built routes are described by their handlers' `#[utoipa::path]` annotations; the routes of
//! domains not built yet are added from [`crate::http::rest::not_built::ROUTES`] with their 501.

use actix_web::web;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ResponseBuilder, ResponsesBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::http::rest;

#[derive(OpenApi)]
#[openapi(
    info(title = "clusterd", description = "The cluster layer of a distributed database: membership, events, and (as they arrive) replication, Raft, RAC and sharding. Errors always have the shape {\"error\": {\"code\", \"message\", \"details\"}}. WebSocket event streams: /api/v1/ws/events, /api/v1/ws/cluster/{replication,nodes,rac,sharding}. GraphQL: POST /graphql, subscriptions at /graphql/ws."),
    paths(
        rest::health::health,
        rest::health::metrics,
        rest::events::retained_events,
        rest::ws_admin::ws_status,
        rest::ws_admin::connections,
        rest::ws_admin::subscriptions,
        rest::ws_admin::close_connection,
        rest::cluster::add_node,
        rest::cluster::list_nodes,
        rest::cluster::get_node,
        rest::cluster::update_node,
        rest::cluster::remove_node,
        rest::cluster::cluster_status,
        rest::cluster::cluster_health,
        rest::cluster::node_health,
        rest::faults::list_faults,
        rest::faults::crash,
        rest::faults::restart,
        rest::faults::partition,
        rest::faults::heal,
        rest::faults::set_link,
        rest::replication::add_replica,
        rest::replication::list_replicas,
        rest::replication::get_replica,
        rest::replication::remove_replica,
        rest::replication::pause_replica,
        rest::replication::resume_replica,
        rest::replication::status,
        rest::replication::lag,
        rest::replication::lag_history,
        rest::replication::throughput,
        rest::replication::replication_health,
        rest::replication::replicate,
        rest::replication::set_config,
        rest::replication::set_conflict_strategy,
        rest::replication::set_heartbeat,
        rest::replication::read_row,
        rest::replication::wal_status,
        rest::replication::create_snapshot,
        rest::replication::list_snapshots,
        rest::replication::restore_snapshot,
        rest::replication::wal_truncate,
        rest::replication::create_slot,
        rest::replication::list_slots,
        rest::replication::get_slot,
        rest::replication::drop_slot,
        rest::replication::slot_changes,
        rest::replication::advance_slot,
        rest::replication::health_primary,
        rest::replication::health_replica,
    ),
    components(schemas(
        rest::cluster::AddNodeBody,
        rest::cluster::PatchNodeBody,
        rest::faults::FaultBody,
        rest::faults::PartitionBody,
        rest::faults::LinkBody,
        rest::cluster::NodeList,
        rest::faults::FaultList,
        rest::cluster::NodeHealthView,
        crate::messages::faults::FaultApplied,
        crate::messages::faults::LinkFaults,
        crate::messages::faults::LinkFaultView,
        crate::messages::cluster::NodeView,
        crate::messages::cluster::ClusterStatus,
        crate::messages::cluster::ClusterHealthReport,
        crate::messages::faults::InjectedFault,
        crate::model::NodeHealth,
        crate::model::ClusterHealthStatus,
        rest::replication::AddReplicaBody,
        rest::replication::OperationsBody,
        rest::replication::ReplicaList,
        rest::replication::LagRow,
        rest::replication::ConfigBody,
        rest::replication::ConflictStrategyBody,
        rest::replication::HeartbeatBody,
        crate::messages::replication::ReplicationSettingsView,
        crate::messages::replication::LagSample,
        crate::messages::replication::LagHistory,
        crate::messages::replication::Throughput,
        crate::messages::replication::ReplicaThroughput,
        crate::messages::replication::ReplicaHealth,
        rest::replication::CreateSlotBody,
        rest::replication::RestoreBody,
        crate::messages::replication::SnapshotView,
        rest::replication::AdvanceSlotBody,
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
    )),
    modifiers(&NotBuiltRoutes, &BearerAuth)
)]
pub struct ApiDoc;

struct NotBuiltRoutes;

impl Modify for NotBuiltRoutes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (method, path, domain) in rest::not_built::ROUTES.iter() {
            let method = match *method {
                "GET" => HttpMethod::Get,
                "POST" => HttpMethod::Post,
                "PUT" => HttpMethod::Put,
                "PATCH" => HttpMethod::Patch,
                "DELETE" => HttpMethod::Delete,
                _ => continue,
            };
            let operation = OperationBuilder::new()
                .tag(*domain)
                .summary(Some(format!("Part of the {domain} domain; answers 501 until it is built")))
                .responses(
                    ResponsesBuilder::new()
                        .response("501", ResponseBuilder::new().description("not_implemented, with the error shape"))
                        .build(),
                )
                .build();
            let item = PathItem::new(method, operation);
            match openapi.paths.paths.get_mut(*path) {
                Some(existing) => existing.merge_operations(item),
                None => {
                    openapi.paths.paths.insert((*path).to_string(), item);
                }
            }
        }
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // SwaggerUi serves the document at /api/v1/openapi.json (behind auth when a token is set, like
    // every /api route) and the UI, which stays open, at /swagger-ui/.
    cfg.service(SwaggerUi::new("/swagger-ui/{_:.*}").url("/api/v1/openapi.json", ApiDoc::openapi()));
}
