//! Replication: the primary (WAL, group commit, shipping, acknowledgement modes, lag) and one
//! supervised actor per replica (durable apply, position reports), talking through the
//! fault-injecting link.

pub mod metrics;
pub mod primary;
pub mod replica;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use actix::prelude::*;

pub use primary::{PrimaryActor, ReplicationSettings};
pub use replica::ReplicaActor;

use crate::actors::domain::{self, Domain, DomainContext, DomainStartError, FaultTargets};
use crate::messages::replication::ReplicationError;

/// The replication domain, started.
pub struct Replication {
    pub primary: Addr<PrimaryActor>,
    faults: FaultTargets,
}

/// Starts the primary, which loads its state and starts its replicas.
pub fn start(ctx: &DomainContext) -> Result<Box<dyn Domain>, DomainStartError> {
    let config = &ctx.config;
    let mut settings = ReplicationSettings::from_config(&config.replication, config.events.wal_position_interval_ms);
    // A failover's choice wins over the config file's.
    if let Some(promoted) = primary::current_primary(&ctx.store).map_err(|e| DomainStartError { domain: "replication", reason: e.to_string() })? {
        settings.primary = promoted;
    }
    let bootstrap = config.replication.replicas.iter().map(|r| (r.id.clone(), r.mode)).collect();
    let primary = PrimaryActor::new(settings, bootstrap, ctx).start();
    let faults = FaultTargets::of(&primary);
    Ok(Box::new(Replication { primary, faults }))
}

impl Domain for Replication {
    fn name(&self) -> &'static str {
        "replication"
    }
    fn faults(&self) -> &FaultTargets {
        &self.faults
    }
    fn stop(&self) -> Pin<Box<dyn Future<Output = ()>>> {
        domain::stop(&self.primary)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl From<crate::storage::StorageError> for ReplicationError {
    fn from(e: crate::storage::StorageError) -> Self {
        ReplicationError::Storage { message: e.to_string() }
    }
}

impl From<crate::exec::TaskFailed> for ReplicationError {
    fn from(e: crate::exec::TaskFailed) -> Self {
        ReplicationError::Storage { message: e.to_string() }
    }
}
