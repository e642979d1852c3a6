//! Liveness and scrape endpoints that stay open without a token: `/health`, the Patroni-style
//! `/health/primary` and `/health/replica` (replication domain), and `/metrics`.

use std::fmt::Write;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::http::error::ApiError;
use crate::messages::cluster::GetClusterHealth;
use crate::messages::events::NodeHealth;
use crate::messages::registry::GetRegistryStatus;
use crate::runtime::RuntimeHandle;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health)).route("/metrics", web::get().to(metrics));
}

#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "{status: ok, version, uptime_seconds}", body = Object)))]
pub async fn health(runtime: web::Data<RuntimeHandle>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "version": crate::VERSION,
        "uptime_seconds": runtime.uptime().as_secs(),
    }))
}

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let registry = runtime.registry().send(GetRegistryStatus).await?;
    let health = runtime.membership().send(GetClusterHealth).await?;
    let mut out = String::with_capacity(4096);
    let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    };
    gauge(&mut out, "clusterd_uptime_seconds", "Seconds since the runtime started.", runtime.uptime().as_secs_f64());
    gauge(&mut out, "clusterd_events_current_seq", "Seq of the newest published event.", registry.current_seq as f64);
    gauge(&mut out, "clusterd_events_retained", "Events kept for replay.", registry.retained as f64);
    gauge(
        &mut out,
        "clusterd_event_subscriptions",
        "Live subscriptions (WebSocket, GraphQL, in-process).",
        registry.active_subscriptions as f64,
    );
    gauge(&mut out, "clusterd_cluster_nodes", "Cluster members.", health.total_nodes as f64);
    gauge(&mut out, "clusterd_cluster_has_quorum", "1 while a quorum of members is up.", f64::from(u8::from(health.has_quorum)));
    let _ = writeln!(out, "# HELP clusterd_cluster_node_up 1 while the node answers heartbeats.\n# TYPE clusterd_cluster_node_up gauge");
    for n in &health.nodes {
        let _ = writeln!(
            out,
            "clusterd_cluster_node_up{{node_id=\"{}\",status=\"{}\"}} {}",
            crate::metrics::escape_label(&n.node_id),
            n.status.as_str(),
            u8::from(n.status.is_up())
        );
    }
    let _ = writeln!(
        out,
        "# HELP clusterd_cluster_node_heartbeat_age_seconds Time since the node last answered a heartbeat.\n# TYPE clusterd_cluster_node_heartbeat_age_seconds gauge"
    );
    for n in health.nodes.iter().filter(|n| n.status != NodeHealth::Failed) {
        if let Some(age) = n.heartbeat_age_ms {
            let _ = writeln!(
                out,
                "clusterd_cluster_node_heartbeat_age_seconds{{node_id=\"{}\"}} {}",
                crate::metrics::escape_label(&n.node_id),
                age as f64 / 1000.0
            );
        }
    }
    runtime.metrics().render(&mut out);
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(out))
}
