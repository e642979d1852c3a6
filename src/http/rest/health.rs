//! Liveness and scrape endpoints that stay open without a token: `/health`, the Patroni-style
//! `/health/primary` and `/health/replica` (replication domain), and `/metrics`.

use std::fmt::Write;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::http::error::ApiError;
use crate::messages::cluster::GetClusterHealth;
use crate::model::NodeHealth;
use crate::messages::registry::GetRegistryStatus;
use crate::runtime::RuntimeHandle;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health)).route("/metrics", web::get().to(metrics));
}

/// The OpenAPI description of the health and metrics routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        health,
        metrics,
    )
)]
pub struct HealthApi;

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
    crate::http::metrics::render_nodes(&mut out, &health.nodes);
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
    let _ = writeln!(
        out,
        "# HELP clusterd_cluster_node_phi The failure detector's phi for the node (phi accrual; unreachable from 8).\n# TYPE clusterd_cluster_node_phi gauge"
    );
    for n in &health.nodes {
        if let Some(phi) = n.phi {
            let _ = writeln!(out, "clusterd_cluster_node_phi{{node_id=\"{}\"}} {phi}", crate::metrics::escape_label(&n.node_id));
        }
    }
    let replication = runtime.primary().send(crate::messages::replication::GetReplicationStatus).await?;
    gauge(
        &mut out,
        "clusterd_replication_primary_up",
        "1 while the replication primary is up and writable.",
        f64::from(u8::from(replication.primary_state == "up")),
    );
    gauge(&mut out, "clusterd_replication_flushed_lsn_bytes", "The primary's flushed WAL position, in bytes.", replication.current_lsn_u64 as f64);
    let per_replica = |out: &mut String, name: &str, help: &str, value: &dyn Fn(&crate::messages::replication::ReplicaView) -> f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for r in &replication.replicas {
            let _ = writeln!(out, "{name}{{replica_id=\"{}\"}} {}", crate::metrics::escape_label(&r.replica_id), value(r));
        }
    };
    per_replica(&mut out, "clusterd_replication_lag_bytes", "Primary's flushed lsn minus the replica's replay lsn.", &|r| r.lag_bytes as f64);
    per_replica(&mut out, "clusterd_replication_lag_seconds", "Age of the oldest record the replica has not replayed.", &|r| r.lag_seconds);
    per_replica(&mut out, "clusterd_replication_replay_lag_seconds", "Time from durability on the primary to the replica's replay report.", &|r| {
        r.replay_lag_ms.map_or(f64::NAN, |ms| ms / 1000.0)
    });
    per_replica(&mut out, "clusterd_replication_replica_in_sync", "1 while the replica is in_sync.", &|r| {
        f64::from(u8::from(r.status == crate::model::ReplicaStatus::InSync))
    });
    runtime.metrics().render(&mut out);
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(out))
}
