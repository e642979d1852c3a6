//! The faces' series in `/metrics`: WebSocket sessions (event streams and GraphQL connections share
//! the `ws.max_sessions` budget), bad frames, running GraphQL subscriptions, HTTP requests and
//! their durations by route, method and status ([`observe_request`]), and the process's own
//! series ([`process`]), registered with the faces since `/metrics` is where they are read.

mod process;
mod requests;

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;

pub use requests::observe_request;

use crate::messages::cluster::NodeView;
use crate::metrics::{escape_label, Counter, CounterFamily, Gauge, HistogramFamily, Metrics};
use crate::model::NodeHealth;

/// Request duration buckets, seconds: most answers take well under a millisecond, writes wait
/// for fsync and replicas (up to `sync_timeout_ms`).
const REQUEST_SECONDS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct HttpMetrics {
    connections_active: Gauge,
    ws_sessions_active: Gauge,
    ws_sessions_opened: Counter,
    ws_sessions_refused: Counter,
    ws_bad_frames: Counter,
    graphql_subscriptions_active: Gauge,
    requests: CounterFamily,
    request_durations: HistogramFamily,
}

impl HttpMetrics {
    /// Registers the faces' series in `metrics` (or takes those already there: every app built on
    /// one runtime counts in the same series).
    pub fn register(metrics: &Metrics) -> Arc<HttpMetrics> {
        process::register(metrics);
        Arc::new(HttpMetrics {
            connections_active: metrics.gauge(crate::process::CONNECTIONS_SERIES, "Open HTTP connections and peer processes' connections (a client WebSocket counts among the sessions once its handshake is done)."),
            ws_sessions_active: metrics.gauge(crate::process::WS_SESSIONS_SERIES, "Open WebSocket connections: event-stream sessions and GraphQL connections."),
            ws_sessions_opened: metrics
                .counter("clusterd_ws_sessions_opened_total", "WebSocket connections opened: event-stream sessions and GraphQL connections."),
            ws_sessions_refused: metrics.counter(
                "clusterd_ws_sessions_refused_total",
                "WebSocket sessions refused because ws.max_sessions was reached.",
            ),
            ws_bad_frames: metrics
                .counter("clusterd_ws_bad_frames_total", "WebSocket frames answered with an error frame."),
            graphql_subscriptions_active: metrics
                .gauge("clusterd_graphql_subscriptions_active", "Running GraphQL subscriptions."),
            requests: metrics.counter_family(
                "clusterd_http_requests_total",
                "HTTP requests by route, method and status.",
                &["route", "method", "status"],
            ),
            request_durations: metrics.histogram_family(
                crate::process::REQUESTS_SERIES,
                "Time from a request's arrival to its response head, by method, route template (`unmatched` for none) and status class.",
                &["method", "route", "status"],
                REQUEST_SECONDS,
            ),
        })
    }

    /// The gauge of open HTTP connections, which the server moves.
    pub fn connections_gauge(&self) -> Gauge {
        self.connections_active.clone()
    }

    /// A connection was opened; `open` are open now (the session table's count, set under its lock).
    pub fn ws_session_opened(&self, open: usize) {
        self.ws_sessions_opened.inc();
        self.ws_sessions_now(open);
    }
    pub fn ws_session_refused(&self) {
        self.ws_sessions_refused.inc();
    }
    pub fn ws_sessions_now(&self, open: usize) {
        self.ws_sessions_active.set(i64::try_from(open).unwrap_or(i64::MAX));
    }
    pub fn ws_bad_frame(&self) {
        self.ws_bad_frames.inc();
    }
    pub fn graphql_subscription_started(&self) {
        self.graphql_subscriptions_active.inc();
    }
    pub fn graphql_subscription_ended(&self) {
        self.graphql_subscriptions_active.dec();
    }
    pub fn http_request(&self, route: &str, method: &str, status: StatusCode, took: Duration) {
        self.requests.inc(&[route, method, status.as_str()]);
        self.request_durations.observe(&[method, route, status_class(status)], took);
    }
}

/// Per member: `clusterd_cluster_node_up{node_id}` (1 while it counts towards quorum) and the
/// info-style `clusterd_cluster_node_status{node_id,status}`, every status present with 1 for the
/// one it has, so a change of status moves values, never creates or ends series. A crashed node
/// is still a member (at 0) until it is removed.
pub fn render_nodes(out: &mut String, nodes: &[NodeView]) {
    let _ = writeln!(out, "# HELP clusterd_cluster_node_up 1 while the node answers heartbeats.\n# TYPE clusterd_cluster_node_up gauge");
    for n in nodes {
        let _ = writeln!(out, "clusterd_cluster_node_up{{node_id=\"{}\"}} {}", escape_label(&n.node_id), u8::from(n.status.is_up()));
    }
    let _ = writeln!(
        out,
        "# HELP clusterd_cluster_node_status The node's health: 1 for the status it has now, 0 for the others.\n# TYPE clusterd_cluster_node_status gauge"
    );
    for n in nodes {
        let id = escape_label(&n.node_id);
        for status in NodeHealth::ALL {
            let _ = writeln!(out, "clusterd_cluster_node_status{{node_id=\"{id}\",status=\"{}\"}} {}", status.as_str(), u8::from(n.status == status));
        }
    }
}

/// `2xx` … `5xx`: five values, where codes would multiply every route's buckets.
fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// One open connection in the gauge (HTTP, or a peer process's WebSocket), while this lives.
pub struct OpenConnection(Gauge);

impl OpenConnection {
    pub fn new(gauge: Gauge) -> OpenConnection {
        gauge.inc();
        OpenConnection(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}
