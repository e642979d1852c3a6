//! What a domain (cluster membership, replication, later Raft, RAC, shards) gives the runtime:
//! where fault injection for its targets goes, how it stops, and itself as a typed handle. Each
//! domain has a `start(&DomainContext)` that builds its actors from the shared pieces here; the
//! runtime starts them in a list and stops them in reverse.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix::dev::ToEnvelope;
use actix::prelude::*;

use crate::actors::net::Link;
use crate::actors::registry::{EventPublisher, InterestTable};
use crate::config::Config;
use crate::exec::BackgroundPool;
use crate::messages::cluster::{PutKv, RecordFailover};
use crate::messages::faults::*;
use crate::messages::runtime::StopRuntimeActor;
use crate::metrics::Metrics;
use crate::storage::Store;

/// What every domain starts from.
pub struct DomainContext {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    /// Where its actors publish events.
    pub events: EventPublisher,
    /// Where it registers its series for `/metrics`.
    pub metrics: Arc<Metrics>,
    pub interest: Arc<InterestTable>,
    /// The one way messages between a domain's actors travel.
    pub link: Link,
    /// Low-priority threads for storage work nobody waits for.
    pub background: Arc<BackgroundPool>,
    /// The cluster's replicated metadata, once the domain that keeps it has started.
    pub metadata: Option<ClusterMetadata>,
    /// The process's load, as peers are told it.
    pub load: Arc<crate::process::LoadSampler>,
}

/// The cluster's replicated metadata, for the domains that record their decisions in it (the
/// replication primary chosen by a failover, the failover history): answered once applied
/// through the Raft log, wherever its leader runs.
#[derive(Clone)]
pub struct ClusterMetadata {
    pub put: Recipient<PutKv>,
    pub record_failover: Recipient<RecordFailover>,
}

impl DomainContext {
    /// A publisher of the domain's events.
    pub fn publisher(&self) -> EventPublisher {
        self.events.clone()
    }
}

/// A domain's `start`: its actors built from the shared pieces, as a started [`Domain`].
pub type StartDomain = fn(&DomainContext) -> Result<Box<dyn Domain>, DomainStartError>;

/// Why a domain could not start.
#[derive(Debug, thiserror::Error)]
#[error("the {domain} domain could not start: {reason}")]
pub struct DomainStartError {
    pub domain: &'static str,
    pub reason: String,
}

/// A started domain.
pub trait Domain: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Where fault injection for the targets it owns goes.
    fn faults(&self) -> &FaultTargets;
    /// Stops its actors.
    fn stop(&self) -> Pin<Box<dyn Future<Output = ()>>>;
    /// Itself, for [`crate::runtime::RuntimeHandle::domain`].
    fn as_any(&self) -> &dyn Any;
    /// The replicated metadata it keeps for the domains started after it, if it keeps it.
    fn metadata(&self) -> Option<ClusterMetadata> {
        None
    }
}

/// The recipients of the fault-injection messages of one actor that answers them all.
#[derive(Clone)]
pub struct FaultTargets {
    pub owns: Recipient<OwnsTarget>,
    pub crash: Recipient<CrashTarget>,
    pub restart: Recipient<RestartTarget>,
    pub list: Recipient<ListInjectedFaults>,
}

impl FaultTargets {
    pub fn of<A>(addr: &Addr<A>) -> FaultTargets
    where
        A: Actor + Handler<OwnsTarget> + Handler<CrashTarget> + Handler<RestartTarget> + Handler<ListInjectedFaults>,
        A::Context: ToEnvelope<A, OwnsTarget> + ToEnvelope<A, CrashTarget> + ToEnvelope<A, RestartTarget> + ToEnvelope<A, ListInjectedFaults>,
    {
        FaultTargets {
            owns: addr.clone().recipient(),
            crash: addr.clone().recipient(),
            restart: addr.clone().recipient(),
            list: addr.clone().recipient(),
        }
    }
}

/// Stops actor `addr` and waits until it has taken the message.
pub fn stop<A>(addr: &Addr<A>) -> Pin<Box<dyn Future<Output = ()>>>
where
    A: Actor + Handler<StopRuntimeActor>,
    A::Context: ToEnvelope<A, StopRuntimeActor>,
{
    let addr = addr.clone();
    Box::pin(async move {
        let _ = addr.send(StopRuntimeActor).await;
    })
}
