//! The five WebSocket event-stream endpoints of `events.md`. The filter comes from the query
//! string at connect time (`?node_ids=node-4&since_seq=10`) and from text frames afterwards.

pub mod frames;
pub mod peer;
pub mod session;
pub mod sessions;
pub mod upgrade;
pub mod watchdog;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::http::error::ApiError;
use crate::http::filter::filter_from_query;
use crate::http::metrics::HttpMetrics;
use crate::runtime::RuntimeHandle;
use crate::messages::registry::Transport;
use session::{StreamKind, WsSession};
use sessions::SessionTable;

pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, kind) in [
        ("/api/v1/ws/events", StreamKind::Events),
        ("/api/v1/ws/cluster/replication", StreamKind::Replication),
        ("/api/v1/ws/cluster/nodes", StreamKind::Nodes),
        ("/api/v1/ws/cluster/rac", StreamKind::Rac),
        ("/api/v1/ws/cluster/sharding", StreamKind::Sharding),
    ] {
        cfg.route(
            path,
            web::get().to(
                move |req: HttpRequest,
                      runtime: web::Data<RuntimeHandle>,
                      metrics: web::Data<HttpMetrics>,
                      sessions: web::Data<SessionTable>| open_stream(req, runtime, metrics, sessions, kind),
            ),
        );
    }
}

async fn open_stream(
    req: HttpRequest,
    runtime: web::Data<RuntimeHandle>,
    metrics: web::Data<HttpMetrics>,
    sessions: web::Data<SessionTable>,
    kind: StreamKind,
) -> Result<HttpResponse, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid("query", e.to_string()))?;
    let filter = filter_from_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), &["token"])
    .map_err(|e| {
        ApiError::new(actix_web::http::StatusCode::BAD_REQUEST, "invalid_filter", e.to_string())
            .with_details(json!({ "field": e.field, "reason": e.reason }))
    })?;
    let config = runtime.config();
    let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_else(|| "unknown".into());
    let slot = sessions
        .into_inner()
        .try_open(config.ws.max_sessions, Transport::WebSocket, kind.name(), peer.clone())
        .ok_or_else(|| too_many_sessions(config.ws.max_sessions))?;
    let session = WsSession::new(runtime.get_ref().clone(), metrics.into_inner(), kind, peer, filter, slot);
    // A message over the limit gets an `error` frame and the session goes on.
    match upgrade::start(session, &req, upgrade::ConnectionLimits::from_config(config), &[]) {
        Ok(res) => Ok(res),
        // The session was dropped with its slot: nothing is left counted.
        Err(e) => Err(ApiError::new(
                actix_web::http::StatusCode::BAD_REQUEST,
                "not_a_websocket_request",
                format!("this route speaks WebSocket only: {e}"),
            )),
    }
}

/// The answer when `ws.max_sessions` connections are open already.
pub fn too_many_sessions(max: usize) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "too_many_sessions",
        format!("ws.max_sessions ({max}) sessions are open already"),
    )
}
