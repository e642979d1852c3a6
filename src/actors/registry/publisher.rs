//! How actors publish: the registry's address plus a count of what was sent, so `/metrics` can
//! show how many events wait in the registry's mailbox (actix does not expose mailbox lengths).
//! What a thread publishes while it runs its ready tasks goes to the registry as one message
//! when they are done: one wake-up of the registry, and of each subscriber, per turn, not per
//! event.

use std::sync::Arc;

use actix::Addr;
use parking_lot::Mutex;

use super::{EventMetrics, EventRegistry};
use crate::messages::events::Event;
use crate::messages::registry::PublishAll;
use crate::metrics::Metrics;

/// Events published and not yet sent, in the order published. Emptied by the flush the first of
/// them scheduled, after the publishing thread's ready tasks: it holds what one turn of the
/// busiest publishing thread publishes.
#[derive(Default)]
struct Gathered {
    events: Vec<Event>,
    flush_scheduled: bool,
}

/// Sends what was gathered when dropped: when its task has run, or if the runtime drops the task
/// unrun (shutting down), so that a flush scheduled is never lost.
struct Flush {
    registry: Addr<EventRegistry>,
    gathered: Arc<Mutex<Gathered>>,
}

impl Drop for Flush {
    fn drop(&mut self) {
        // Sent under the lock: an event gathered after these, whichever thread's flush takes
        // it, reaches the registry after them.
        let mut g = self.gathered.lock();
        g.flush_scheduled = false;
        if !g.events.is_empty() {
            self.registry.do_send(PublishAll { events: std::mem::take(&mut g.events) });
        }
    }
}

/// Every publisher in the runtime goes through one of these (clones of the one the runtime makes).
#[derive(Clone)]
pub struct EventPublisher {
    registry: Addr<EventRegistry>,
    counts: Arc<EventMetrics>,
    metrics: Arc<Metrics>,
    gathered: Arc<Mutex<Gathered>>,
}

impl EventPublisher {
    /// A publisher to `registry`, counting in `counts`; `metrics` is where publishers register
    /// series of their own.
    pub fn new(registry: Addr<EventRegistry>, counts: Arc<EventMetrics>, metrics: Arc<Metrics>) -> Self {
        EventPublisher { registry, counts, metrics, gathered: Arc::default() }
    }

    /// Publishes `event` (see [`crate::messages::registry::Publish`] for why this may not be
    /// refused). On a thread that runs a runtime it goes with what else is published before the
    /// runtime's next turn; elsewhere (the blocking pool) at once. (A runtime driven only by
    /// `block_on` sends what its last turn published when it is next driven.)
    pub fn publish(&self, event: Event) {
        self.counts.enqueued();
        let schedule = {
            let mut g = self.gathered.lock();
            g.events.push(event);
            !std::mem::replace(&mut g.flush_scheduled, true)
        };
        if schedule {
            let flush = Flush { registry: self.registry.clone(), gathered: self.gathered.clone() };
            match tokio::runtime::Handle::try_current() {
                // Spawned from its own thread, the task queues behind the ready ones: no wake-up.
                Ok(runtime) => drop(runtime.spawn(async move { drop(flush) })),
                Err(_) => drop(flush),
            }
        }
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
