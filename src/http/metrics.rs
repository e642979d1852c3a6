//! The faces' series in `/metrics`: WebSocket sessions (event streams and GraphQL connections share
//! the `ws.max_sessions` budget), bad frames, running GraphQL subscriptions, and HTTP requests by
//! route, method and status.

use std::sync::Arc;

use actix_web::http::StatusCode;

use crate::metrics::{Counter, CounterFamily, Gauge, Metrics};

pub struct HttpMetrics {
    ws_sessions_active: Gauge,
    ws_sessions_opened: Counter,
    ws_sessions_refused: Counter,
    ws_bad_frames: Counter,
    graphql_subscriptions_active: Gauge,
    requests: CounterFamily,
}

impl HttpMetrics {
    /// Registers the faces' series in `metrics` (or takes those already there: every app built on
    /// one runtime counts in the same series).
    pub fn register(metrics: &Metrics) -> Arc<HttpMetrics> {
        Arc::new(HttpMetrics {
            ws_sessions_active: metrics.gauge("clusterd_ws_sessions_active", "Open WebSocket connections: event-stream sessions and GraphQL connections."),
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
        })
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
    pub fn http_request(&self, route: &str, method: &str, status: StatusCode) {
        self.requests.inc(&[route, method, status.as_str()]);
    }
}
