//! The registry's series in `/metrics`: events published, delivered and dropped per category,
//! what waits in its mailbox, subscribers closed for staying behind, failed seq reservations.

use std::sync::Arc;

use crate::messages::events::Category;
use crate::metrics::{Counter, CounterArray, Metrics};

pub struct EventMetrics {
    /// Events sent to the registry by publishers; minus those it handled, its mailbox depth.
    enqueued: Counter,
    published: CounterArray,
    delivered: CounterArray,
    dropped: CounterArray,
    closed_lagging: Counter,
    seq_reservation_failures: Counter,
}

impl EventMetrics {
    /// Registers the registry's series in `metrics`. Once per runtime: the mailbox depth is
    /// computed from the count of what was sent through this handle.
    pub fn register(metrics: &Metrics) -> Arc<EventMetrics> {
        let categories: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        let per_category = |name, help| metrics.counter_array(name, help, "category", &categories);
        let enqueued = Counter::default();
        let published = per_category("clusterd_events_published_total", "Events published.");
        let (sent, handled) = (enqueued.clone(), published.clone());
        metrics.computed_gauge(
            "clusterd_registry_mailbox_depth",
            "Events sent to the event registry and not handled yet.",
            move || sent.get().saturating_sub(handled.total()) as i64,
        );
        Arc::new(EventMetrics {
            enqueued,
            published,
            delivered: per_category("clusterd_events_delivered_total", "Event deliveries into subscriber queues."),
            dropped: per_category(
                "clusterd_events_dropped_total",
                "Event deliveries dropped because a subscriber queue was full.",
            ),
            closed_lagging: metrics.counter(
                "clusterd_subscribers_closed_lagging_total",
                "Subscribers closed because they stayed behind.",
            ),
            seq_reservation_failures: metrics.counter(
                "clusterd_event_seq_reservation_failures_total",
                "Failed durable writes of the event sequence reservation (seqs may repeat after a restart).",
            ),
        })
    }

    pub(super) fn enqueued(&self) {
        self.enqueued.inc();
    }
    pub(super) fn published(&self, c: Category) {
        self.published.add(c.index(), 1);
    }
    /// Counts `n` deliveries of one event at once (one atomic add per publish, not per
    /// subscriber).
    pub(super) fn delivered(&self, c: Category, n: u64) {
        if n > 0 {
            self.delivered.add(c.index(), n);
        }
    }
    pub(super) fn dropped(&self, c: Category, n: u64) {
        if n > 0 {
            self.dropped.add(c.index(), n);
        }
    }
    pub(super) fn subscribers_closed_lagging(&self, n: u64) {
        if n > 0 {
            self.closed_lagging.add(n);
        }
    }
    pub(super) fn seq_reservation_failed(&self) {
        self.seq_reservation_failures.inc();
    }
}
