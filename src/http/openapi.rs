//! The OpenAPI 3 document of every REST route (`/api/v1/openapi.json`) and the Swagger UI that
//! renders it (`/swagger-ui/`, served from files compiled into the binary: it works offline).
//!
//! Built routes are described by their handlers' `#[utoipa::path]` annotations, listed with the
//! schemas they use in each REST file's own `OpenApi` part and merged here (one line per area); the
//! routes of domains not built yet are added from [`crate::http::rest::not_built::ROUTES`] with
//! their 501, then the errors the app answers with and the security only the routes that need
//! the token require (`AppErrors`). The same document gives a 405 its `Allow` header.

use actix_web::web;
use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Required, Response, ResponseBuilder, ResponsesBuilder};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::http::{auth, rest};

/// Where the document is served. It is open like the pages that read it: it describes the API
/// and holds no data.
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(title = "clusterd", description = "The cluster layer of a distributed database: membership, replication, events, fault injection, and (as they arrive) Raft, RAC and sharding. Errors always have the shape {\"error\": {\"code\", \"message\", \"details\"}}. A method a path does not take answers 405 with an Allow header listing those it does. WebSocket event streams: /api/v1/ws/events, /api/v1/ws/cluster/{replication,nodes,rac,sharding}. GraphQL: POST /graphql, subscriptions at /graphql/ws."),
    components(schemas(ErrorBody, ErrorDetail))
)]
pub struct ApiDoc;

/// The error shape every route answers with (`http::error::ApiError`).
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable code, a message for people, and details (which field and why, the
/// id that was not found, the limit that was passed).
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// The parameters of a path template: `/a/{id}/b/{key}` -> `id`, `key`.
fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

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
            let parameters = path_parameters(path).map(|name| {
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build()
            });
            let operation = OperationBuilder::new()
                .tag(*domain)
                .summary(Some(format!("Part of the {domain} domain; answers 501 until it is built")))
                .parameters(Some(parameters))
                .responses(
                    ResponsesBuilder::new()
                        .response("501", error_response("not_implemented: the domain is not built yet (details.domain names it)"))
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

/// A response with the error shape.
fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", Content::new(Some(Ref::from_schema_name("Error"))))
        .build()
}

/// Every operation of a path item.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The errors the app itself answers with, documented on every operation that can get them:
/// 400 (a body or query that does not parse or breaks a rule), 401 (auth on, a route
/// [`auth::is_open`] does not let through), 404 (an id in the path nobody has), 413 (a body over
/// `server.max_body_bytes`), 503 (an actor that did not answer). Errors a handler names itself
/// keep their own description; every error response gets the error shape. With auth on, the
/// operations that need the token (and only those) require the bearer scheme.
struct AppErrors {
    auth: bool,
}

impl Modify for AppErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("server.auth_token, sent as 'Authorization: Bearer <token>'"))
                    .build(),
            ),
        );
        components.responses.insert(
            "MethodNotAllowed".into(),
            RefOr::T(
                ResponseBuilder::new()
                    .description("method_not_allowed: the path does not take this method (any path, any method not listed under it)")
                    .header(
                        "Allow",
                        HeaderBuilder::new()
                            .schema(ObjectBuilder::new().schema_type(Type::String))
                            .description(Some("The methods the path takes, e.g. 'GET, DELETE'"))
                            .build(),
                    )
                    .content("application/json", Content::new(Some(Ref::from_schema_name("Error"))))
                    .build(),
            ),
        );
        openapi.security = None;
        for (path, item) in openapi.paths.paths.iter_mut() {
            let secured = self.auth && !auth::is_open(path);
            for op in operations(item) {
                let built = !op.responses.responses.contains_key("501");
                let params = op.parameters.as_deref().unwrap_or_default();
                let has_query = params.iter().any(|p| p.parameter_in == ParameterIn::Query);
                let has_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
                let has_body = op.request_body.is_some();
                let mut add = |status: &str, description: &str| {
                    op.responses.responses.entry(status.into()).or_insert_with(|| RefOr::T(error_response(description)));
                };
                if built {
                    if has_body || has_query {
                        add("400", "invalid_json (a body that does not parse) or invalid_request (a field or parameter that breaks a rule), naming the field and why");
                    }
                    if has_path {
                        add("404", "No such resource (details name the id)");
                    }
                    if has_body {
                        add("413", "payload_too_large: the body is over server.max_body_bytes (details.limit)");
                    }
                    if path != "/health" {
                        add("503", "component_unavailable: an actor did not answer (the runtime is stopping or overloaded)");
                    }
                }
                if secured {
                    add("401", "unauthorized: missing or wrong bearer token");
                    op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
                }
                // Errors a handler documents itself get the shape too.
                for (status, response) in op.responses.responses.iter_mut() {
                    if let RefOr::T(response) = response {
                        if status.as_str() >= "400" && response.content.is_empty() {
                            response.content.insert("application/json".into(), Content::new(Some(Ref::from_schema_name("Error"))));
                        }
                    }
                }
            }
        }
    }
}

/// The whole document: every area's part merged into the common one, the routes of domains not
/// built yet, and the errors the app answers with. `auth`: whether `server.auth_token` is set,
/// so the document says which routes need the token only when one does.
pub fn document(auth: bool) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in [
        rest::health::HealthApi::openapi(),
        rest::events::EventsApi::openapi(),
        rest::ws_admin::WsAdminApi::openapi(),
        rest::cluster::ClusterApi::openapi(),
        rest::faults::FaultsApi::openapi(),
        rest::replication::ReplicationApi::openapi(),
        rest::rac::RacApi::openapi(),
    ] {
        doc.merge(part);
    }
    // The 501 routes go in after every built one, so a built method on the same path wins.
    NotBuiltRoutes.modify(&mut doc);
    AppErrors { auth }.modify(&mut doc);
    doc
}

/// The methods each path of the REST API takes, from the document (whatever auth says).
pub fn methods_by_path() -> Vec<(String, Vec<&'static str>)> {
    let doc = document(false);
    doc.paths
        .paths
        .iter()
        .map(|(path, item)| {
            let methods = [
                ("GET", item.get.is_some()),
                ("PUT", item.put.is_some()),
                ("POST", item.post.is_some()),
                ("DELETE", item.delete.is_some()),
                ("OPTIONS", item.options.is_some()),
                ("HEAD", item.head.is_some()),
                ("PATCH", item.patch.is_some()),
                ("TRACE", item.trace.is_some()),
            ];
            (path.clone(), methods.into_iter().filter(|(_, has)| *has).map(|(m, _)| m).collect())
        })
        .collect()
}

/// Swagger UI's start-up script, ours: a token field whose token goes with every request the page
/// makes, the fetch of the document included.
const SWAGGER_INITIALIZER: &str = include_str!("../../assets/swagger-ui/swagger-initializer.js");

/// Serves the document at [`DOCUMENT_PATH`] (an `/api` route: with a token set, it needs it) and
/// Swagger UI at `/swagger-ui/`, open (see `auth.rs`): the page asks for the token and sends it.
pub fn configure(cfg: &mut web::ServiceConfig, auth: bool) {
    // Registered before Swagger UI's own files, so this script replaces theirs.
    cfg.route(
        "/swagger-ui/swagger-initializer.js",
        web::get().to(|| async {
            actix_web::HttpResponse::Ok().content_type("text/javascript; charset=utf-8").body(SWAGGER_INITIALIZER)
        }),
    );
    cfg.service(
        SwaggerUi::new("/swagger-ui/{_:.*}")
            .url(DOCUMENT_PATH, document(auth))
            .config(Config::new([DOCUMENT_PATH])),
    );
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
        let doc = serde_json::to_value(document(true)).expect("the document serializes");
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
