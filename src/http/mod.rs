//! The faces of clusterd: REST (actix-web), WebSocket event streams, GraphQL. They translate
//! requests to messages and replies back to JSON; no domain logic lives here, and this is the only
//! layer that knows HTTP.

pub mod auth;
pub mod error;
pub mod filter;
pub mod graphql;
pub mod metrics;
pub mod openapi;
pub mod rest;
pub mod server;
pub mod ws;

pub use server::start_server;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Condition, Next};
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
        .configure(graphql::configure)
        .configure(openapi::configure)
        .default_service(web::to(unknown_route))
        .wrap(from_fn(auth::require_token))
        .wrap(Condition::new(cors_enabled, auth::cors(&config.server.cors_allowed_origins)))
        .wrap(from_fn(count_request))
}

async fn unknown_route(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    if req.resource_map().has_resource(req.path()) {
        return Err(ApiError::new(
            actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not a method of {}", req.method(), req.path()),
        ));
    }
    Err(ApiError::not_found("route_not_found", format!("no route for {} {}", req.method(), req.path())))
}

/// Counts every request by route pattern (not raw path, so ids do not explode the label set),
/// method and status.
async fn count_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req.app_data::<web::Data<HttpMetrics>>().cloned();
    // A fixed label set: a client inventing methods must not grow /metrics.
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    };
    let res = next.call(req).await?;
    if let Some(metrics) = metrics {
        let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
        metrics.http_request(&route, method, res.status());
    }
    Ok(res)
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
    let (server, addrs) = start_server(state, workers, &bind)
        .map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
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
