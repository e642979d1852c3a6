//! The OpenAPI 3 document of every REST route (`/api/v1/openapi.json`) and the Swagger UI that
//! renders it (`/swagger-ui/`, served from files compiled into the binary: it works offline).
//!
//! Built routes are described by their handlers' `#[utoipa::path]` annotations, listed with the
//! schemas they use in each REST file's own `OpenApi` part and merged here (one line per area); the
//! routes of domains not built yet are added from [`crate::http::rest::not_built::ROUTES`] with
//! their 501.

use actix_web::web;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ResponseBuilder, ResponsesBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::http::rest;

#[derive(OpenApi)]
#[openapi(
    info(title = "clusterd", description = "The cluster layer of a distributed database: membership, replication, events, fault injection, and (as they arrive) Raft, RAC and sharding. Errors always have the shape {\"error\": {\"code\", \"message\", \"details\"}}. WebSocket event streams: /api/v1/ws/events, /api/v1/ws/cluster/{replication,nodes,rac,sharding}. GraphQL: POST /graphql, subscriptions at /graphql/ws."),
    modifiers(&BearerAuth)
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

/// The whole document: every area's part merged into the common one.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in [
        rest::health::HealthApi::openapi(),
        rest::events::EventsApi::openapi(),
        rest::ws_admin::WsAdminApi::openapi(),
        rest::cluster::ClusterApi::openapi(),
        rest::faults::FaultsApi::openapi(),
        rest::replication::ReplicationApi::openapi(),
    ] {
        doc.merge(part);
    }
    // The 501 routes go in after every built one, so a built method on the same path wins.
    NotBuiltRoutes.modify(&mut doc);
    doc
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // SwaggerUi serves the document at /api/v1/openapi.json (behind auth when a token is set, like
    // every /api route) and the UI, which stays open, at /swagger-ui/.
    cfg.service(SwaggerUi::new("/swagger-ui/{_:.*}").url("/api/v1/openapi.json", document()));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in `value`, recursively.
    fn refs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", serde_json::Value::String(r)) => out.push(r.clone()),
                        _ => refs(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_schema_the_document_refers_to_is_in_it() {
        let doc = serde_json::to_value(document()).expect("the document serializes");
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("a schema reference: {r}"));
            assert!(doc["components"]["schemas"].get(name).is_some(), "{r} is referred to but not defined");
        }
        assert!(doc["paths"]["/api/v1/replication/operations"]["post"].is_object());
        assert!(doc["paths"]["/api/v1/cluster/faults/partition"]["post"].is_object());
    }
}
