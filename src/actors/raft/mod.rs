//! Raft consensus over the cluster's metadata: one node per configured cluster node, each owning
//! a raft-rs `RawNode` (`core.rs`) over its group's durable log (`storage.rs`), applying
//! committed entries to the metadata state machine (`machine.rs`).

pub mod core;
pub mod machine;
pub mod storage;

#[cfg(test)]
mod tests;

/// raft-rs logs through slog; its records go to tracing under the `raft` target.
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, _values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::error!(target: "raft", "{}", record.msg()),
            slog::Level::Warning => tracing::warn!(target: "raft", "{}", record.msg()),
            slog::Level::Info => tracing::info!(target: "raft", "{}", record.msg()),
            slog::Level::Debug | slog::Level::Trace => tracing::debug!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}

/// The logger a node of group `owner` hands raft-rs.
fn logger(owner: &str) -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!("group" => owner.to_string()))
}
