//! What the primary's state asks its actor to do next: messages for replicas, events to publish,
//! WAL to read back for a replica, a checkpoint to start. The state fills it; the actor empties it
//! after every step, so the state never does I/O and is tested without actix.

use crate::messages::events::{Event, Severity};
use crate::messages::replication::{PrimaryDurable, Reconcile, ReplicationErrorEvent, ReplicationEvent, Reseed, ShipWal};

/// A message for one replica, sent through the fault-injecting link.
#[derive(Debug)]
pub enum ToReplica {
    Ship(ShipWal),
    Durable(PrimaryDurable),
    Reconcile(Reconcile),
    Reseed(Reseed),
    ReportEvery(std::time::Duration),
}

/// WAL a replica needs that is no longer in memory: read it back from `from` (off the arbiter,
/// at the priority `awaited` asks for) and hand it to `Primary::on_fetched`, which ships it as
/// of the timeline and durable position of the moment it was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub replica_id: String,
    pub from: u64,
    pub awaited: bool,
    pub timeline: u64,
    pub durable_lsn: u64,
}

#[derive(Debug, Default)]
pub struct Outbox {
    pub sends: Vec<(String, ToReplica)>,
    pub events: Vec<Event>,
    pub fetches: Vec<Fetch>,
    /// Enough was applied since the last checkpoint that one should start.
    pub checkpoint_due: bool,
}

impl Outbox {
    pub fn send(&mut self, replica_id: &str, msg: ToReplica) {
        self.sends.push((replica_id.to_string(), msg));
    }

    pub fn publish(&mut self, severity: Severity, source: String, payload: ReplicationEvent) {
        self.events.push(Event::now(severity, source, payload));
    }

    /// A `replication_error`, at its own severity.
    pub fn publish_error(&mut self, source: String, error: ReplicationErrorEvent) {
        self.publish(error.severity, source, ReplicationEvent::ReplicationError(error));
    }

    pub fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.events.is_empty() && self.fetches.is_empty() && !self.checkpoint_due
    }
}
