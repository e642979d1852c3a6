//! The actors: one folder per domain, one file per actor (or a shell and the state it drives).
//! Each owns its state and is reached only through the messages in [`crate::messages`].

pub mod cluster;
pub mod domain;
pub mod net;
pub mod rac;
pub mod raft;
pub mod registry;
pub mod replication;

/// The restarts of supervised actors, by actor kind and id, as `/metrics` shows them. Every
/// supervisor counts in this one family, whichever kind of actor it restarts.
pub fn actor_restarts(metrics: &crate::metrics::Metrics) -> crate::metrics::CounterFamily {
    metrics.counter_family(
        "clusterd_actor_restarts_total",
        "Supervised actor restarts after an internal fault.",
        &["kind", "id"],
    )
}
