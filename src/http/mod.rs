//! The faces of clusterd: REST (actix-web), WebSocket event streams, GraphQL. They translate
//! requests to messages and replies back to JSON; no domain logic lives here, and this is the only
//! layer that knows HTTP.

pub mod auth;
pub mod error;
pub mod filter;
pub mod graphql;
pub mod json;
pub mod metrics;
pub mod openapi;
pub mod rest;
pub mod server;
pub mod ws;

pub use server::start_server;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, App, HttpResponse};

use crate::config::Config;
use crate::http::error::{json_error, ApiError};
use crate::http::metrics::HttpMetrics;
use crate::http::ws::sessions::SessionTable;
use crate::runtime::{Runtime, RuntimeHandle};

/// What every handler can reach: the runtime, the faces' own series, and the GraphQL schema
/// built on them.
#[derive(Clone)]
pub struct AppState {
    pub runtime: RuntimeHandle,
    pub metrics: Arc<HttpMetrics>,
    /// The open WebSocket connections, shared by every worker.
    pub sessions: Arc<SessionTable>,
    pub schema: graphql::ClusterSchema,
}

impl AppState {
    pub fn new(runtime: RuntimeHandle) -> Self {
        let metrics = HttpMetrics::register(runtime.metrics());
        let schema = graphql::schema(runtime.clone(), metrics.clone());
        let sessions = SessionTable::new(metrics.clone());
        AppState { runtime, metrics, sessions, schema }
    }
}

/// The whole application: every route, the error shape for malformed input, auth, CORS and
/// request metrics. The server and the tests build the same one.
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let config = state.runtime.config().clone();
    let max_body = config.server.max_body_bytes;
    let cors_enabled = !config.server.cors_allowed_origins.is_empty();
    let auth_on = !config.server.auth_token.is_empty();
    App::new()
        .app_data(web::Data::new(state.runtime.clone()))
        .app_data(web::Data::new(state.schema.clone()))
        .app_data(web::Data::from(state.metrics.clone()))
        .app_data(web::Data::from(state.sessions.clone()))
        .app_data(web::Data::new(state.clone()))
        .app_data(
            web::JsonConfig::default()
                .limit(max_body)
                .content_type_required(false)
                .error_handler(|err, _req| json_error(err).into()),
        )
        .app_data(web::PayloadConfig::default().limit(max_body))
        .app_data(web::PathConfig::default().error_handler(|err, _req| {
            ApiError::invalid("path", err.to_string()).into()
        }))
        .app_data(web::QueryConfig::default().error_handler(|err, _req| {
            ApiError::invalid("query", err.to_string()).into()
        }))
        .configure(rest::configure)
        .configure(ws::configure)
        .configure(ws::peer::configure)
        .configure(graphql::configure)
        .configure(|cfg| openapi::configure(cfg, auth_on))
        .default_service(web::to(unknown_route))
        .wrap(from_fn(auth::require_token))
        .wrap(Condition::new(cors_enabled, auth::cors(&config.server.cors_allowed_origins)))
        .wrap(from_fn(metrics::observe_request))
}

/// The routes the OpenAPI document does not describe (pages, GraphQL, WebSocket streams), with
/// their methods, for the `Allow` header of a 405.
const ROUTES_OUTSIDE_THE_DOCUMENT: &[(&str, &str)] = &[
    ("/graphql", "GET, POST"),
    ("/graphql/ws", "GET"),
    ("/api/v1/ws/events", "GET"),
    ("/api/v1/ws/cluster/{stream}", "GET"),
    ("/swagger-ui", "GET"),
    ("/swagger-ui/{_:.*}", "GET"),
    (openapi::DOCUMENT_PATH, "GET"),
    ("/graphiql/{asset}", "GET"),
];

/// The methods each route pattern takes: the OpenAPI document's paths and the routes outside it.
fn allowed_methods() -> &'static [(actix_web::dev::ResourceDef, String)] {
    static TABLE: std::sync::OnceLock<Vec<(actix_web::dev::ResourceDef, String)>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let documented = openapi::methods_by_path().into_iter().map(|(path, methods)| (path, methods.join(", ")));
        let outside = ROUTES_OUTSIDE_THE_DOCUMENT.iter().map(|(path, methods)| (path.to_string(), methods.to_string()));
        documented.chain(outside).map(|(path, methods)| (actix_web::dev::ResourceDef::new(path), methods)).collect()
    })
}

/// What `Allow` says for `path`: the methods of the route patterns it matches with the fewest
/// parameters (`/rebalance/plan` is its own resource, not a `/rebalance/{plan_id}`), as the
/// document lists them for that path.
pub fn allow_header(path: &str) -> String {
    let matching: Vec<(usize, &str)> = allowed_methods()
        .iter()
        .filter(|(pattern, _)| pattern.is_match(path))
        .map(|(pattern, methods)| (pattern.pattern().map_or(0, |p| p.matches('{').count()), methods.as_str()))
        .collect();
    let fewest = matching.iter().map(|(params, _)| *params).min().unwrap_or(0);
    let mut methods: Vec<&str> = Vec::new();
    for m in matching.iter().filter(|(params, _)| *params == fewest).flat_map(|(_, allowed)| allowed.split(", ")) {
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    methods.join(", ")
}

/// Every request no route took: 405 with `Allow` (RFC 9110) when the path exists with other
/// methods, else 404.
async fn unknown_route(req: actix_web::HttpRequest) -> HttpResponse {
    if req.resource_map().has_resource(req.path()) {
        let mut res = actix_web::ResponseError::error_response(&ApiError::new(
            actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not a method of {}", req.method(), req.path()),
        ));
        if let Ok(allow) = actix_web::http::header::HeaderValue::from_str(&allow_header(req.path())) {
            res.headers_mut().insert(actix_web::http::header::ALLOW, allow);
        }
        return res;
    }
    actix_web::ResponseError::error_response(&ApiError::not_found(
        "route_not_found",
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

/// How long sessions get to close on shutdown, as long as requests get to finish.
const SESSIONS_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the server for `config` until SIGINT or SIGTERM, then shuts down cleanly: event sessions
/// are closed (WebSocket 1001), in-flight requests finish, actors stop. Every acknowledged change
/// was already durable, so there is nothing left to flush.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let bind = config.server.bind.clone();
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        n => n,
    };
    let runtime = Runtime::start(config)?;
    let state = AppState::new(runtime.clone());
    let sessions = state.sessions.clone();
    let (server, addrs) = match start_server(state, workers, &bind) {
        Ok(started) => started,
        Err(e) => {
            // The actors run already: they stop here, inside the system, not as it is dropped.
            runtime.shutdown().await;
            return Err(anyhow::anyhow!("cannot listen on {bind}: {e}"));
        }
    };
    for addr in addrs {
        tracing::info!(%addr, "clusterd listening on http://{addr}");
    }
    let handle = server.handle();
    let stopping = runtime.clone();
    actix_web::rt::spawn(async move {
        let signal = wait_for_signal().await;
        tracing::info!(signal, "shutting down: closing sessions, finishing requests");
        // Sessions first (they would hold the drain up), then in-flight requests finish while
        // the actors still answer them; the actors stop after the server has.
        stopping.close_sessions().await;
        // A WebSocket connection runs on its own task, which the server does not wait for: let
        // the sessions write their close frames first.
        if actix_web::rt::time::timeout(SESSIONS_CLOSE_TIMEOUT, sessions.closed()).await.is_err() {
            tracing::warn!(open = sessions.len(), "sessions still open after the close timeout; cutting them");
        }
        handle.stop(true).await;
    });
    let served = server.await;
    runtime.shutdown().await;
    served?;
    tracing::info!("clusterd stopped");
    Ok(())
}

async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// The answer of a route of the contract whose domain is not built yet.
pub async fn not_built(domain: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_implemented(domain))
}
