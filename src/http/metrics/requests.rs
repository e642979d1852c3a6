//! The middleware that counts and times every request by route template (never the raw path,
//! so ids do not grow the series), method and status: `clusterd_http_requests_total` by status
//! code, `http_request_duration_seconds` by status class.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use super::HttpMetrics;

/// The route label of a request no route matched: one label for all of them.
const UNMATCHED: &str = "unmatched";

/// Counts and times one request, from the moment the app sees it to its response head.
pub async fn observe_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<HttpMetrics>>().cloned();
    let method = method_label(req.method().as_str());
    let res = next.call(req).await?;
    if let Some(metrics) = metrics {
        let route = res.request().match_pattern();
        let route = route.as_deref().unwrap_or(UNMATCHED);
        metrics.http_request(route, method, res.status(), started.elapsed());
    }
    Ok(res)
}

/// A fixed label set: a client inventing methods must not grow `/metrics`.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}
