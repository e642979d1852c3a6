//! Process-wide counters for `/metrics`: events published, delivered and dropped per category,
//! sessions, supervised actor restarts, HTTP requests by route and status.
//!
//! This is the one piece of state shared outside actors: counters only ever go up (or a gauge is
//! set by its one owner), so atomics and a `DashMap` are enough and nobody waits on anybody.
//! Gauges that describe an actor's state (nodes, health, current seq) are not kept here: `/metrics`
//! asks the owning actor at scrape time.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use dashmap::DashMap;

use crate::messages::events::Category;

const CATEGORIES: usize = Category::ALL.len();

#[derive(Default)]
pub struct Metrics {
    /// Events sent to the registry by publishers; minus those it handled, its mailbox depth.
    events_enqueued: AtomicU64,
    events_published: [AtomicU64; CATEGORIES],
    events_delivered: [AtomicU64; CATEGORIES],
    events_dropped: [AtomicU64; CATEGORIES],
    /// Subscribers closed because they stayed behind.
    subscribers_closed_lagging: AtomicU64,
    /// Durable writes of the event sequence reservation that failed.
    seq_reservation_failures: AtomicU64,
    /// Group commits of the primary's WAL (one fsync each) and the batches they carried.
    wal_commits: AtomicU64,
    wal_batches: AtomicU64,
    ws_sessions_active: AtomicI64,
    ws_sessions_opened: AtomicU64,
    ws_sessions_refused: AtomicU64,
    ws_bad_frames: AtomicU64,
    graphql_subscriptions_active: AtomicI64,
    /// (actor kind, actor id) -> supervised restarts after an internal fault.
    actor_restarts: DashMap<(String, String), u64>,
    /// (route pattern, method, status) -> requests.
    http_requests: DashMap<(String, String, u16), u64>,
}

impl Metrics {
    pub fn event_enqueued(&self) {
        self.events_enqueued.fetch_add(1, Ordering::Relaxed);
    }
    /// Events sent to the registry and not handled yet.
    pub fn registry_backlog(&self) -> u64 {
        self.events_enqueued.load(Ordering::Relaxed).saturating_sub(self.events_published_total())
    }
    pub fn event_published(&self, c: Category) {
        self.events_published[c.index()].fetch_add(1, Ordering::Relaxed);
    }
    /// Counts `n` deliveries of one event at once (one atomic add per publish, not per
    /// subscriber).
    pub fn events_delivered(&self, c: Category, n: u64) {
        if n > 0 {
            self.events_delivered[c.index()].fetch_add(n, Ordering::Relaxed);
        }
    }
    pub fn events_dropped(&self, c: Category, n: u64) {
        if n > 0 {
            self.events_dropped[c.index()].fetch_add(n, Ordering::Relaxed);
        }
    }
    /// One group commit of the primary's WAL made `batches` batches durable with one fsync.
    pub fn wal_committed(&self, batches: u64) {
        self.wal_commits.fetch_add(1, Ordering::Relaxed);
        self.wal_batches.fetch_add(batches, Ordering::Relaxed);
    }
    pub fn wal_commits(&self) -> (u64, u64) {
        (self.wal_commits.load(Ordering::Relaxed), self.wal_batches.load(Ordering::Relaxed))
    }
    pub fn seq_reservation_failed(&self) {
        self.seq_reservation_failures.fetch_add(1, Ordering::Relaxed);
    }
    pub fn subscriber_closed_lagging(&self) {
        self.subscribers_closed_lagging.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts a new session if fewer than `max` are open; false (and counted as refused) if not.
    /// A compare-and-swap, so concurrent upgrades on several workers cannot overshoot `max`.
    pub fn try_open_ws_session(&self, max: usize) -> bool {
        let opened = self
            .ws_sessions_active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max as i64).then_some(n + 1)
            })
            .is_ok();
        if opened {
            self.ws_sessions_opened.fetch_add(1, Ordering::Relaxed);
        } else {
            self.ws_sessions_refused.fetch_add(1, Ordering::Relaxed);
        }
        opened
    }
    pub fn ws_session_closed(&self) {
        self.ws_sessions_active.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn ws_bad_frame(&self) {
        self.ws_bad_frames.fetch_add(1, Ordering::Relaxed);
    }
    pub fn ws_sessions_active(&self) -> i64 {
        self.ws_sessions_active.load(Ordering::Relaxed)
    }
    pub fn graphql_subscription_started(&self) {
        self.graphql_subscriptions_active.fetch_add(1, Ordering::Relaxed);
    }
    pub fn graphql_subscription_ended(&self) {
        self.graphql_subscriptions_active.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn actor_restarted(&self, kind: &str, id: &str) {
        *self.actor_restarts.entry((kind.to_string(), id.to_string())).or_insert(0) += 1;
    }
    pub fn actor_restarts_total(&self) -> u64 {
        self.actor_restarts.iter().map(|e| *e.value()).sum()
    }
    pub fn http_request(&self, route: &str, method: &str, status: u16) {
        *self
            .http_requests
            .entry((route.to_string(), method.to_string(), status))
            .or_insert(0) += 1;
    }

    pub fn events_published_total(&self) -> u64 {
        self.events_published.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }
    pub fn events_delivered_total(&self) -> u64 {
        self.events_delivered.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }
    pub fn events_dropped_total(&self) -> u64 {
        self.events_dropped.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }

    /// Renders the counters in the Prometheus text format, appending to `out`.
    pub fn render(&self, out: &mut String) {
        let per_category = |out: &mut String, name: &str, help: &str, arr: &[AtomicU64]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for c in Category::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{category=\"{c}\"}} {}",
                    arr[c.index()].load(Ordering::Relaxed)
                );
            }
        };
        let _ = writeln!(
            out,
            "# HELP clusterd_registry_mailbox_depth Events sent to the event registry and not handled yet.\n# TYPE clusterd_registry_mailbox_depth gauge\nclusterd_registry_mailbox_depth {}",
            self.registry_backlog()
        );
        per_category(out, "clusterd_events_published_total", "Events published.", &self.events_published);
        per_category(
            out,
            "clusterd_events_delivered_total",
            "Event deliveries into subscriber queues.",
            &self.events_delivered,
        );
        per_category(
            out,
            "clusterd_events_dropped_total",
            "Event deliveries dropped because a subscriber queue was full.",
            &self.events_dropped,
        );
        let scalar = |out: &mut String, name: &str, kind: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as i64;
        scalar(
            out,
            "clusterd_subscribers_closed_lagging_total",
            "counter",
            "Subscribers closed because they stayed behind.",
            load(&self.subscribers_closed_lagging),
        );
        scalar(
            out,
            "clusterd_replication_wal_commits_total",
            "counter",
            "Group commits of the primary's WAL, one fsync each.",
            load(&self.wal_commits),
        );
        scalar(
            out,
            "clusterd_replication_wal_batches_total",
            "counter",
            "Batches made durable by those commits (batches / commits = batches per fsync).",
            load(&self.wal_batches),
        );
        scalar(
            out,
            "clusterd_event_seq_reservation_failures_total",
            "counter",
            "Failed durable writes of the event sequence reservation (seqs may repeat after a restart).",
            load(&self.seq_reservation_failures),
        );
        scalar(
            out,
            "clusterd_ws_sessions_active",
            "gauge",
            "Open WebSocket event-stream sessions.",
            self.ws_sessions_active.load(Ordering::Relaxed),
        );
        scalar(
            out,
            "clusterd_ws_sessions_opened_total",
            "counter",
            "WebSocket event-stream sessions opened.",
            load(&self.ws_sessions_opened),
        );
        scalar(
            out,
            "clusterd_ws_sessions_refused_total",
            "counter",
            "WebSocket sessions refused because ws.max_sessions was reached.",
            load(&self.ws_sessions_refused),
        );
        scalar(
            out,
            "clusterd_ws_bad_frames_total",
            "counter",
            "WebSocket frames answered with an error frame.",
            load(&self.ws_bad_frames),
        );
        scalar(
            out,
            "clusterd_graphql_subscriptions_active",
            "gauge",
            "Running GraphQL subscriptions.",
            self.graphql_subscriptions_active.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP clusterd_actor_restarts_total Supervised actor restarts after an internal fault.\n# TYPE clusterd_actor_restarts_total counter"
        );
        let mut restarts: Vec<_> =
            self.actor_restarts.iter().map(|e| (e.key().clone(), *e.value())).collect();
        restarts.sort();
        for ((kind, id), n) in restarts {
            let _ = writeln!(out, "clusterd_actor_restarts_total{{kind=\"{kind}\",id=\"{id}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP clusterd_http_requests_total HTTP requests by route, method and status.\n# TYPE clusterd_http_requests_total counter"
        );
        let mut requests: Vec<_> =
            self.http_requests.iter().map(|e| (e.key().clone(), *e.value())).collect();
        requests.sort();
        for ((route, method, status), n) in requests {
            let _ = writeln!(
                out,
                "clusterd_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape_label(&route)
            );
        }
    }
}

/// Escapes a Prometheus label value.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
