//! WebSocket management: counters, the open sessions, every live subscription (WebSocket and
//! GraphQL), and closing one session.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::http::error::ApiError;
use crate::http::metrics::HttpMetrics;
use crate::messages::registry::{
    CloseCode, CloseSubscription, GetRegistryStatus, ListSubscriptions, SubscriptionRow, Transport,
};
use crate::runtime::RuntimeHandle;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/ws/status", web::get().to(ws_status))
        .route("/api/v1/ws/connections", web::get().to(connections))
        .route("/api/v1/ws/subscriptions", web::get().to(subscriptions))
        .route("/api/v1/ws/connections/{session_id}", web::delete().to(close_connection));
}

/// The OpenAPI description of the WebSocket administration routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        ws_status,
        connections,
        subscriptions,
        close_connection,
    )
)]
pub struct WsAdminApi;

#[utoipa::path(get, path = "/api/v1/ws/status", tag = "websocket",
    responses((status = 200, description = "active_sessions, events_published, events_delivered, events_dropped, current_seq", body = Object)))]
pub async fn ws_status(
    runtime: web::Data<RuntimeHandle>,
    metrics: web::Data<HttpMetrics>,
) -> Result<HttpResponse, ApiError> {
    let s = runtime.registry().send(GetRegistryStatus).await?;
    Ok(HttpResponse::Ok().json(json!({
        "active_sessions": metrics.ws_sessions_active(),
        "active_subscriptions": s.active_subscriptions,
        "events_published": s.events_published,
        "events_delivered": s.events_delivered,
        "events_dropped": s.events_dropped,
        "current_seq": s.current_seq,
        "oldest_retained_seq": s.oldest_retained_seq,
        "retained_events": s.retained,
        "max_sessions": runtime.config().ws.max_sessions,
    })))
}

fn row_json(r: &SubscriptionRow) -> serde_json::Value {
    json!({
        "session_id": r.subscription_id.to_string(),
        "stream": r.info.stream,
        "peer": r.info.peer,
        "connected_at": r.info.connected_at_ms / 1000,
        "connected_at_ms": r.info.connected_at_ms,
        "filter": r.filter,
        "delivered": r.delivered,
        "dropped": r.dropped,
        "lagging": r.lagging,
    })
}

#[utoipa::path(get, path = "/api/v1/ws/connections", tag = "websocket",
    responses((status = 200, description = "One row per WebSocket event-stream session", body = Object)))]
pub async fn connections(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let rows = runtime.registry().send(ListSubscriptions).await?;
    let sessions: Vec<_> =
        rows.iter().filter(|r| r.info.transport == Transport::WebSocket).map(row_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "total": sessions.len(), "connections": sessions })))
}

#[utoipa::path(get, path = "/api/v1/ws/subscriptions", tag = "websocket",
    responses((status = 200, description = "One row per live filter, WebSocket and GraphQL", body = Object)))]
pub async fn subscriptions(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let rows = runtime.registry().send(ListSubscriptions).await?;
    let subs: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.subscription_id.to_string(),
                "transport": r.info.transport.as_str(),
                "stream": r.info.stream,
                "filter": r.filter,
                "delivered": r.delivered,
                "dropped": r.dropped,
                "lagging": r.lagging,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "total": subs.len(), "subscriptions": subs })))
}

#[utoipa::path(delete, path = "/api/v1/ws/connections/{session_id}", tag = "websocket",
    params(("session_id" = String, Path, description = "From /api/v1/ws/connections")),
    responses((status = 204, description = "Closed (WebSocket close code 1000)"),
              (status = 404, description = "No such session")))]
pub async fn close_connection(
    runtime: web::Data<RuntimeHandle>,
    session_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || {
        ApiError::not_found("session_not_found", format!("no WebSocket session '{session_id}'"))
            .with_details(json!({ "session_id": session_id.as_str() }))
    };
    let id: u64 = session_id.parse().map_err(|_| not_found())?;
    let rows = runtime.registry().send(ListSubscriptions).await?;
    if !rows.iter().any(|r| r.subscription_id == id && r.info.transport == Transport::WebSocket) {
        return Err(not_found());
    }
    runtime
        .registry()
        .send(CloseSubscription {
            subscription_id: id,
            code: CloseCode::ClosedByOperator,
            reason: "closed by operator".into(),
        })
        .await?
        .map_err(|_| not_found())?;
    Ok(HttpResponse::NoContent().finish())
}
