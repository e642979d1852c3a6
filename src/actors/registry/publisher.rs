//! How actors publish: the registry's address plus a count of what was sent, so `/metrics` can
//! show how many events wait in the registry's mailbox (actix does not expose mailbox lengths).

use std::sync::Arc;

use actix::Addr;

use super::{EventMetrics, EventRegistry};
use crate::messages::events::Event;
use crate::messages::registry::Publish;
use crate::metrics::Metrics;

/// Every publisher in the runtime goes through one of these (clones of the one the runtime makes).
#[derive(Clone)]
pub struct EventPublisher {
    registry: Addr<EventRegistry>,
    counts: Arc<EventMetrics>,
    metrics: Arc<Metrics>,
}

impl EventPublisher {
    /// A publisher to `registry`, counting in `counts`; `metrics` is where publishers register
    /// series of their own.
    pub fn new(registry: Addr<EventRegistry>, counts: Arc<EventMetrics>, metrics: Arc<Metrics>) -> Self {
        EventPublisher { registry, counts, metrics }
    }

    /// Publishes `event` (see [`Publish`] for why this may not be refused).
    pub fn publish(&self, event: Event) {
        self.counts.enqueued();
        self.registry.do_send(Publish { event });
    }

    /// The process's series, for a publisher to register its own at start.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The registry itself, for requests that wait for an answer.
    pub fn registry(&self) -> &Addr<EventRegistry> {
        &self.registry
    }
}
