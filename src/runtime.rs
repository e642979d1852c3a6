//! Builds the supervised actor tree from a [`Config`] and hands back a [`RuntimeHandle`]: the
//! addresses of the actors, typed calls, and a clean shutdown. Tests and embedding programs use it
//! without HTTP; the server builds its faces on top of it.
//!
//! The event registry runs on an arbiter (thread) of its own, so fan-out never competes with HTTP
//! workers or domain actors for a thread.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures_util::Stream;

use crate::actors::cluster::{MembershipActor, MembershipSettings};
use crate::actors::registry::{EventMetrics, EventPublisher, EventRegistry, InterestTable, RegistrySettings};
use crate::exec::BackgroundPool;
use crate::actors::replication::{PrimaryActor, ReplicationSettings};
use crate::config::Config;
use crate::messages::cluster::ClusterError;
use crate::messages::events::{EventFilter, SharedEvent};
use crate::messages::registry::*;
use crate::messages::runtime::StopRuntimeActor;
use crate::metrics::Metrics;
use crate::storage::{StorageError, Store};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cluster membership could not start: {0}")]
    Cluster(#[from] ClusterError),
    #[error("the replicas' background threads could not start: {0}")]
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
        let publisher = EventPublisher::new(registry.clone(), event_metrics, metrics.clone());

        let membership = MembershipActor::load(
            MembershipSettings::from_config(&config.cluster),
            &config.cluster.nodes,
            store.clone(),
            publisher.clone(),
        )?
        .start();

        // A thread per core (at least two): more would only take turns on the same cores.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let background = BackgroundPool::start("replica-bg", cores.max(2)).map_err(RuntimeError::Threads)?;
        let primary = PrimaryActor::new(
            ReplicationSettings::from_config(&config.replication, config.events.wal_position_interval_ms),
            config.replication.replicas.iter().map(|r| (r.id.clone(), r.mode)).collect(),
            store.clone(),
            publisher,
            interest.clone(),
            background,
        )
        .start();

        tracing::info!(
            durable = store.is_durable(),
            location = ?store.location(),
            first_seq = last_seq + 1,
            "runtime started"
        );
        Ok(RuntimeHandle {
            inner: Arc::new(Inner {
                config,
                store,
                metrics,
                interest,
                registry,
                membership,
                primary,
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
    registry: Addr<EventRegistry>,
    membership: Addr<MembershipActor>,
    primary: Addr<PrimaryActor>,
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
    pub fn membership(&self) -> &Addr<MembershipActor> {
        &self.inner.membership
    }
    /// The replication primary: the data path, replicas, lag.
    pub fn primary(&self) -> &Addr<PrimaryActor> {
        &self.inner.primary
    }
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
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
        };
        self.subscribe_as(filter, Vec::new(), info).await
    }

    /// Like [`RuntimeHandle::subscribe`], restricted to the `stream` categories (empty: all), for a
    /// subscriber described by `info` (as `/api/v1/ws/subscriptions` lists it).
    pub async fn subscribe_as(
        &self,
        filter: EventFilter,
        stream: Vec<crate::messages::events::Category>,
        info: SubscriberInfo,
    ) -> Result<EventSubscription, MailboxError> {
        let (tx, rx) = tokio::sync::mpsc::channel(self.inner.config.events.session_queue);
        let ack = self
            .inner
            .registry
            .send(Subscribe { filter, stream, sink: Box::new(tx), info })
            .await?;
        Ok(EventSubscription {
            registry: self.inner.registry.clone(),
            subscription_id: ack.subscription_id,
            replay_truncated: ack.replay_truncated,
            replay: ack.replay.into_iter().collect(),
            last_seq: 0,
            rx,
        })
    }

    /// Ends every event subscription (WebSocket sessions close with 1001) and tells GraphQL
    /// transports to close, while the actors keep answering: the first step of a clean shutdown,
    /// before in-flight requests are drained.
    pub async fn close_sessions(&self) {
        self.inner.shutting_down.send_replace(true);
        let _ = self.inner.registry.send(CloseAllSubscriptions).await;
    }

    /// Stops every actor: subscribers are told the server is going away, node actors stop,
    /// and the registry's arbiter ends. Durable state needs no flush: every change was
    /// committed (fsynced) before it was acknowledged.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.shutting_down.send_replace(true);
        let _ = inner.primary.send(StopRuntimeActor).await;
        let _ = inner.membership.send(StopRuntimeActor).await;
        let _ = inner.registry.send(StopRuntimeActor).await;
        inner.registry_arbiter.stop();
        // Actors that still hold the store are dropped later on their own threads; release the
        // file now so the data directory can be opened again as soon as this returns.
        inner.store.close();
        tracing::info!("runtime stopped");
    }
}

/// An in-process subscription: replayed events first, then live ones, with no gap and no
/// duplicate. Unsubscribes when dropped.
pub struct EventSubscription {
    registry: Addr<EventRegistry>,
    subscription_id: u64,
    replay_truncated: bool,
    replay: std::collections::VecDeque<SharedEvent>,
    last_seq: u64,
    rx: tokio::sync::mpsc::Receiver<Delivery>,
}

impl EventSubscription {
    pub fn subscription_id(&self) -> u64 {
        self.subscription_id
    }

    /// Whether the requested `since_seq` was older than the retained window.
    pub fn replay_truncated(&self) -> bool {
        self.replay_truncated
    }

    /// The next delivery (`Event`, `Lagged` or `Close`); `None` once the subscription ended.
    pub async fn next_delivery(&mut self) -> Option<Delivery> {
        if let Some(e) = self.replay.pop_front() {
            self.last_seq = e.seq;
            return Some(Delivery::Event(e));
        }
        loop {
            let d = self.rx.recv().await?;
            if let Delivery::Event(e) = &d {
                // The registry registers and computes the replay in one step, so live events
                // never repeat replayed ones; this guard keeps it so if that ever changes.
                if e.seq <= self.last_seq {
                    continue;
                }
                self.last_seq = e.seq;
            }
            return Some(d);
        }
    }

    /// The next event, skipping `Lagged` notices; `None` once the subscription ended.
    pub async fn next_event(&mut self) -> Option<SharedEvent> {
        loop {
            match self.next_delivery().await? {
                Delivery::Event(e) => return Some(e),
                Delivery::Lagged { .. } => continue,
                Delivery::Close { .. } => return None,
            }
        }
    }

    /// The stream of events (for `async-graphql` subscriptions and tests).
    pub fn into_stream(self) -> impl Stream<Item = SharedEvent> {
        futures_util::stream::unfold(self, |mut s| async move { s.next_event().await.map(|e| (e, s)) })
    }
}

impl Drop for EventSubscription {
    fn drop(&mut self) {
        self.registry.do_send(Unsubscribe { subscription_id: self.subscription_id });
    }
}
