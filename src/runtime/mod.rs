//! Builds the supervised actor tree from a [`Config`] and hands back a [`RuntimeHandle`]: the
//! shared pieces (store, event registry, the fault-injecting link, background threads), then each
//! domain of [`DOMAINS`] by its own `start`, stopped in reverse. Tests and embedding programs use
//! it without HTTP; the server builds its faces on top of it.
//!
//! The event registry runs on an arbiter (thread) of its own, so fan-out never competes with HTTP
//! workers or domain actors for a thread.

mod failover;
mod faults;
mod subscription;

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

pub use self::faults::Faults;
pub use self::subscription::EventSubscription;

use crate::actors::cluster::{Cluster, MembershipActor};
use crate::actors::domain::{Domain, DomainContext, DomainStartError, StartDomain};
use crate::actors::net::{Link, NetActor};
use crate::actors::registry::{EventMetrics, EventPublisher, EventRegistry, InterestTable, RegistrySettings};
use crate::actors::replication::{PrimaryActor, Replication};
use crate::config::Config;
use crate::exec::background::Lowered;
use crate::exec::BackgroundPool;
use crate::messages::events::{Category, EventFilter};
use crate::messages::registry::*;
use crate::messages::runtime::StopRuntimeActor;
use crate::metrics::Metrics;
use crate::process::LoadSampler;
use crate::storage::{StorageError, Store};

/// The domains, in the order they start; they stop in reverse. A new domain is one line here.
const DOMAINS: &[StartDomain] = &[crate::actors::cluster::start, crate::actors::replication::start, crate::actors::rac::start];

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Domain(#[from] DomainStartError),
    #[error("the background threads could not start: {0}")]
    Threads(std::io::Error),
}

/// Starts runtimes. (A unit type so that `Runtime::start` reads as the entry point it is.)
pub struct Runtime;

impl Runtime {
    /// Builds the actor tree for `config`. Must be called inside a running actix `System`. Opens
    /// the store (blocking, once, before any actor runs).
    pub fn start(config: Config) -> Result<RuntimeHandle, RuntimeError> {
        let config = Arc::new(config);
        let store = Arc::new(Store::open(config.storage.durable_dir().as_deref())?);
        let metrics = Arc::new(Metrics::default());
        let event_metrics = EventMetrics::register(&metrics);
        let interest = Arc::new(InterestTable::default());

        let (last_seq, seq_reserved) = if store.is_durable() {
            EventRegistry::reserve_first_block(&store)?
        } else {
            (0, u64::MAX)
        };
        let registry_settings = RegistrySettings {
            retained: config.events.retained,
            session_queue: config.events.session_queue,
            last_seq,
            seq_reserved,
        };
        let registry_arbiter = Arbiter::new();
        let registry = {
            let (store, counts, interest) = (store.clone(), event_metrics.clone(), interest.clone());
            EventRegistry::start_in_arbiter(&registry_arbiter.handle(), move |_| {
                EventRegistry::new(registry_settings, store, counts, interest)
            })
        };
        // A thread per core (at least two): more would only take turns on the same cores.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let lowered = Lowered::for_work(store.is_durable());
        let background = BackgroundPool::start("replica-bg", cores.max(2), lowered).map_err(RuntimeError::Threads)?;
        let link = Link::new(Arbiter::current());
        let net = NetActor::new(link.clone()).start();

        let load = Arc::new(LoadSampler::new(metrics.clone(), config.storage.durable_dir()));
        let mut context = DomainContext {
            config: config.clone(),
            store: store.clone(),
            events: EventPublisher::new(registry.clone(), event_metrics, metrics.clone()),
            metrics: metrics.clone(),
            interest: interest.clone(),
            link,
            background,
            metadata: None,
            load: load.clone(),
        };
        let mut domains: Vec<Box<dyn Domain>> = Vec::with_capacity(DOMAINS.len());
        for start in DOMAINS {
            let domain = start(&context)?;
            context.metadata = domain.metadata().or(context.metadata.take());
            domains.push(domain);
        }

        tracing::info!(
            durable = store.is_durable(),
            location = ?store.location(),
            first_seq = last_seq + 1,
            domains = ?domains.iter().map(|d| d.name()).collect::<Vec<_>>(),
            "runtime started"
        );
        Ok(RuntimeHandle {
            inner: Arc::new(Inner {
                config,
                store,
                metrics,
                interest,
                load,
                registry,
                net,
                domains,
                registry_arbiter,
                started_at: Instant::now(),
                shutting_down: tokio::sync::watch::channel(false).0,
            }),
        })
    }
}

struct Inner {
    config: Arc<Config>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    interest: Arc<InterestTable>,
    load: Arc<LoadSampler>,
    registry: Addr<EventRegistry>,
    net: Addr<NetActor>,
    domains: Vec<Box<dyn Domain>>,
    registry_arbiter: Arbiter,
    started_at: Instant,
    /// Flips to true when shutdown begins, for connections the registry does not own (GraphQL
    /// subscription transports) to close themselves.
    shutting_down: tokio::sync::watch::Sender<bool>,
}

/// A running runtime: cheap to clone, shared by every HTTP worker.
#[derive(Clone)]
pub struct RuntimeHandle {
    inner: Arc<Inner>,
}

impl RuntimeHandle {
    pub fn config(&self) -> &Config {
        &self.inner.config
    }
    pub fn registry(&self) -> &Addr<EventRegistry> {
        &self.inner.registry
    }

    /// The started domain of type `D`, if the runtime runs one.
    pub fn domain<D: Domain>(&self) -> Option<&D> {
        self.inner.domains.iter().find_map(|d| d.as_any().downcast_ref::<D>())
    }

    /// Every started domain, in start order.
    pub fn domains(&self) -> impl Iterator<Item = &dyn Domain> {
        self.inner.domains.iter().map(|d| d.as_ref())
    }

    /// Cluster membership.
    pub fn membership(&self) -> &Addr<MembershipActor> {
        // `Runtime::start` starts every domain of `DOMAINS` or fails, and cluster is one.
        &self.domain::<Cluster>().expect("the cluster domain always runs").membership
    }

    /// Where each Raft node is reached: peer processes' messages are delivered through it.
    pub fn raft_peers(&self) -> &crate::actors::cluster::RaftPeers {
        // As for `membership`: the cluster domain always runs.
        &self.domain::<Cluster>().expect("the cluster domain always runs").peers
    }

    /// The replication primary: the data path, replicas, lag.
    pub fn primary(&self) -> &Addr<PrimaryActor> {
        // `Runtime::start` starts every domain of `DOMAINS` or fails, and replication is one.
        &self.domain::<Replication>().expect("the replication domain always runs").primary
    }

    /// Fault injection, routed to the domain that owns each target, and the link's faults.
    pub fn faults(&self) -> Faults<'_> {
        Faults::new(self)
    }

    /// The fault-injecting link's rules: partitions, lossy and slow links.
    pub fn net(&self) -> &Addr<NetActor> {
        &self.inner.net
    }
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }
    /// The process's load, measured over its last window.
    pub fn load(&self) -> &LoadSampler {
        &self.inner.load
    }
    pub fn interest(&self) -> &Arc<InterestTable> {
        &self.inner.interest
    }
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }
    pub fn uptime(&self) -> std::time::Duration {
        self.inner.started_at.elapsed()
    }

    /// Becomes true when [`RuntimeHandle::shutdown`] begins.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.shutting_down.subscribe()
    }

    /// Subscribes in-process: the events `filter` admits (after replaying retained ones if it has
    /// `since_seq`), as a stream. The stream ends if the subscriber stays behind past
    /// `events.session_queue` or the runtime shuts down.
    pub async fn subscribe(&self, filter: EventFilter) -> Result<EventSubscription, MailboxError> {
        let info = SubscriberInfo {
            transport: Transport::InProcess,
            stream: "in_process".into(),
            peer: "in-process".into(),
            connected_at_ms: crate::messages::events::now_ms(),
            session_id: None,
        };
        self.subscribe_as(filter, Vec::new(), info).await
    }

    /// Like [`RuntimeHandle::subscribe`], restricted to the `stream` categories (empty: all), for a
    /// subscriber described by `info` (as `/api/v1/ws/subscriptions` lists it).
    pub async fn subscribe_as(&self, filter: EventFilter, stream: Vec<Category>, info: SubscriberInfo) -> Result<EventSubscription, MailboxError> {
        let (tx, rx) = tokio::sync::mpsc::channel(self.inner.config.events.session_queue);
        let ack = self.inner.registry.send(Subscribe { filter, stream, sink: Box::new(tx), info }).await?;
        Ok(EventSubscription::new(self.inner.registry.clone(), ack, rx))
    }

    /// Ends every event subscription (WebSocket sessions close with 1001) and tells GraphQL
    /// transports to close, while the actors keep answering: the first step of a clean shutdown,
    /// before in-flight requests are drained.
    pub async fn close_sessions(&self) {
        self.inner.shutting_down.send_replace(true);
        let _ = self.inner.registry.send(CloseAllSubscriptions).await;
    }

    /// Stops every domain (the last started first), then the registry. Durable state needs no
    /// flush: every change was committed (fsynced) before it was acknowledged.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.shutting_down.send_replace(true);
        for domain in inner.domains.iter().rev() {
            domain.stop().await;
        }
        let _ = inner.registry.send(StopRuntimeActor).await;
        inner.registry_arbiter.stop();
        // Actors that still hold the store are dropped later on their own threads; release the
        // file now so the data directory can be opened again as soon as this returns.
        inner.store.close();
        tracing::info!("runtime stopped");
    }
}
