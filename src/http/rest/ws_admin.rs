//! WebSocket management: counters, the open connections (event-stream sessions and GraphQL
//! connections, from the one session table), every live subscription, and closing a connection.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::http::error::ApiError;
use crate::http::ws::sessions::{SessionRow, SessionTable};
use crate::messages::registry::{GetRegistryStatus, ListSubscriptions, SubscriptionRow, Transport};
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
    sessions: web::Data<SessionTable>,
) -> Result<HttpResponse, ApiError> {
    let s = runtime.registry().send(GetRegistryStatus).await?;
    Ok(HttpResponse::Ok().json(json!({
        "active_sessions": sessions.len(),
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

/// A connection's row: who and since when from the session table; its filter and counts from its
/// registry subscriptions (an event session has one, a GraphQL connection one per subscription).
/// A session the registry has let go of (closed for lagging) is listed until its socket closes,
/// with `subscribed: false`.
fn connection_json(session: &SessionRow, subscriptions: &[&SubscriptionRow]) -> serde_json::Value {
    let filter = match (session.transport, subscriptions) {
        (Transport::WebSocket, [one]) => json!(one.filter),
        _ => serde_json::Value::Null,
    };
    json!({
        "session_id": session.session_id.to_string(),
        "transport": session.transport.as_str(),
        "stream": session.stream,
        "peer": session.peer,
        "connected_at": session.connected_at_ms / 1000,
        "connected_at_ms": session.connected_at_ms,
        "filter": filter,
        "subscribed": !subscriptions.is_empty(),
        "subscriptions": subscriptions.iter().map(|r| r.subscription_id.to_string()).collect::<Vec<_>>(),
        "delivered": subscriptions.iter().map(|r| r.delivered).sum::<u64>(),
        "dropped": subscriptions.iter().map(|r| r.dropped).sum::<u64>(),
        "lagging": subscriptions.iter().any(|r| r.lagging),
    })
}

#[utoipa::path(get, path = "/api/v1/ws/connections", tag = "websocket",
    responses((status = 200, description = "One row per open WebSocket connection: event-stream sessions and GraphQL connections", body = Object)))]
pub async fn connections(
    runtime: web::Data<RuntimeHandle>,
    sessions: web::Data<SessionTable>,
) -> Result<HttpResponse, ApiError> {
    let subscriptions = runtime.registry().send(ListSubscriptions).await?;
    // Grouped once: a listing of many sessions must not scan every subscription per session.
    let mut by_session: HashMap<u64, Vec<&SubscriptionRow>> = HashMap::new();
    for row in &subscriptions {
        if let Some(session_id) = row.info.session_id {
            by_session.entry(session_id).or_default().push(row);
        }
    }
    let rows: Vec<_> = sessions
        .rows()
        .iter()
        .map(|session| connection_json(session, by_session.get(&session.session_id).map_or(&[], Vec::as_slice)))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "total": rows.len(), "connections": rows })))
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
    sessions: web::Data<SessionTable>,
    session_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || {
        ApiError::not_found("session_not_found", format!("no WebSocket session '{session_id}'"))
            .with_details(json!({ "session_id": session_id.as_str() }))
    };
    let id: u64 = session_id.parse().map_err(|_| not_found())?;
    let session = sessions.get(id).ok_or_else(not_found)?;
    if !session.close("closed by operator") {
        return Err(ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "session_not_ready",
            format!("session '{session_id}' is still opening; try again"),
        ));
    }
    Ok(HttpResponse::NoContent().finish())
}
