//! `GET /api/v1/events`: retained events, oldest first, filtered like a subscription. The body is
//! assembled from each event's pre-serialized envelope; nothing is serialized again.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::http::error::ApiError;
use crate::http::filter::filter_from_query;
use crate::messages::registry::ReadRetained;
use crate::runtime::RuntimeHandle;

/// Events one request may return at most.
pub const MAX_LIMIT: usize = 10_000;
const DEFAULT_LIMIT: usize = 1000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/events", web::get().to(retained_events));
}

/// The OpenAPI description of the retained events routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        retained_events,
    )
)]
pub struct EventsApi;

#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(("since_seq" = Option<u64>, Query, description = "Only events with a greater seq"),
           ("limit" = Option<usize>, Query, description = "At most this many (default 1000, max 10000)"),
           ("node_ids" = Option<String>, Query, description = "Comma-separated ids; likewise replica_ids, instance_ids, tables, shard_ids, resource_ids, query_ids, group_ids, event_types, categories, min_severity, include_*")),
    responses((status = 200, description = "{events: [envelope…], count, current_seq, oldest_retained_seq, replay_truncated}", body = Object),
              (status = 400, description = "Unknown filter field or value")))]
pub async fn retained_events(req: HttpRequest, runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid("query", e.to_string()))?;
    let mut limit = DEFAULT_LIMIT;
    let mut filter_pairs = Vec::new();
    for (k, v) in pairs.iter() {
        if k == "limit" {
            limit = v
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| ApiError::invalid("limit", format!("expected 1 to {MAX_LIMIT}, got '{v}'")))?;
        } else {
            filter_pairs.push((k.as_str(), v.as_str()));
        }
    }
    let filter = filter_from_query(filter_pairs, &["token"])
        .map_err(|e| ApiError::invalid(&e.field, e.reason))?;
    let read = runtime.registry().send(ReadRetained { filter, limit }).await?;
    let mut body = String::with_capacity(64 + read.events.iter().map(|e| e.json.len() + 1).sum::<usize>());
    body.push_str("{\"events\":[");
    for (i, e) in read.events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&e.json);
    }
    body.push_str("],");
    let tail = json!({
        "count": read.events.len(),
        "current_seq": read.current_seq,
        "oldest_retained_seq": read.oldest_retained_seq,
        "replay_truncated": read.replay_truncated,
    })
    .to_string();
    // `tail` is an object: drop its opening brace to continue ours.
    body.push_str(&tail[1..]);
    Ok(HttpResponse::Ok().content_type("application/json").body(body))
}
