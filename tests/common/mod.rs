//! Helpers shared by the integration tests: configurations that start fast and keep nothing on
//! disk, waiting for an event with a timeout, and barriers that make "everything published so far
//! has reached the registry" a fact rather than a hope.
//!
//! Nothing here sleeps to synchronise: every wait is on an event, an actor's answer, or (for state
//! that publishes no event) a short poll inside an overall timeout.

#![allow(dead_code)]

pub mod api;
pub mod graphql;

use std::future::Future;
use std::time::Duration;

use clusterd::config::{Config, StorageEngine};
use clusterd::messages::cluster::{AddNode, ListNodes, NodeMetadata, NodeView};
use clusterd::messages::events::{EventFilter, EventType, PublishedEvent, SharedEvent, SubjectKind};
use clusterd::messages::registry::{Delivery, GetRegistryStatus, ReadRetained, RegistryStatus};
use clusterd::runtime::EventSubscription;
use clusterd::RuntimeHandle;

/// How long any single wait in a test may take before the test fails. Generous: it only bounds a
/// failure, a passing test never waits for it.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A three-node cluster (`node-1`..`node-3`) in memory, with short cluster ticks so heartbeats run
/// often, but an `unreachable` threshold (one second) far from anything a loaded test machine could
/// hit: the tests decide when quorum changes, not the scheduler. No replication replicas (async
/// mode), so replication publishes nothing these membership tests would have to count.
pub fn memory_config() -> Config {
    let mut c = Config::default();
    c.storage.engine = StorageEngine::Memory;
    c.storage.data_dir = String::new();
    c.replication.replicas = Vec::new();
    c.replication.mode = clusterd::model::ReplicationMode::Async;
    c.cluster.nodes = vec!["node-1".into(), "node-2".into(), "node-3".into()];
    c.cluster.tick_ms = 20;
    c.cluster.heartbeat_tick = 2;
    c.cluster.election_tick = 50;
    c.validate().expect("the test configuration is valid");
    c
}

/// Like [`memory_config`], but with a failure detector so slow (heartbeat every second, `degraded`
/// after three) that no node changes health unless a test makes it: for tests that count events
/// or read exact health states.
pub fn quiet_config() -> Config {
    let mut c = memory_config();
    c.cluster.tick_ms = 500;
    c.cluster.heartbeat_tick = 2;
    c.cluster.election_tick = 20;
    c.validate().expect("the test configuration is valid");
    c
}

/// Like [`memory_config`], durable in `dir`.
pub fn disk_config(dir: &std::path::Path) -> Config {
    let mut c = memory_config();
    c.storage.engine = StorageEngine::Disk;
    c.storage.data_dir = dir.to_string_lossy().into_owned();
    c
}

/// Awaits `fut`, failing the test with `what` if it takes longer than [`TIMEOUT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {TIMEOUT:?} waiting for {what}"),
    }
}

/// The next event on `sub` that `pred` accepts, skipping others and `Lagged` notices. Fails the
/// test if the subscription ends or nothing matching arrives within `timeout`.
pub async fn next_event_matching(
    sub: &mut EventSubscription,
    mut pred: impl FnMut(&PublishedEvent) -> bool,
    timeout: Duration,
) -> SharedEvent {
    let wait = async {
        loop {
            match sub.next_delivery().await {
                Some(Delivery::Event(e)) if pred(&e) => return e,
                Some(Delivery::Event(_)) | Some(Delivery::Lagged { .. }) => continue,
                Some(Delivery::Close { code, reason }) => {
                    panic!("subscription closed ({code:?}: {reason}) while waiting for an event")
                }
                None => panic!("subscription ended while waiting for an event"),
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(e) => e,
        Err(_) => panic!("no matching event within {timeout:?}"),
    }
}

/// The next event of type `t` about `node_id` on `sub`.
pub async fn next_node_event(sub: &mut EventSubscription, t: EventType, node_id: &str) -> SharedEvent {
    next_event_matching(
        sub,
        |e| e.event_type == t && e.subjects.of(SubjectKind::Node).iter().any(|n| n == node_id),
        TIMEOUT,
    )
    .await
}

/// The next delivery of any kind (event, lagged, close), or `None` once the subscription ended;
/// fails the test if nothing comes within [`TIMEOUT`].
pub async fn next_delivery(sub: &mut EventSubscription) -> Option<Delivery> {
    within("the next delivery", sub.next_delivery()).await
}

/// A barrier: returns once everything the membership actor published before this call has been
/// stamped by the registry. (The membership actor sends `Publish` before it answers; the registry's
/// mailbox is one queue, so our status request is handled after those publishes.)
pub async fn settle(runtime: &RuntimeHandle) -> RegistryStatus {
    within("the membership actor", runtime.membership().send(ListNodes))
        .await
        .expect("membership actor answers");
    registry_status(runtime).await
}

pub async fn registry_status(runtime: &RuntimeHandle) -> RegistryStatus {
    within("the registry", runtime.registry().send(GetRegistryStatus))
        .await
        .expect("registry answers")
}

/// Retained events the filter admits, oldest first.
pub async fn retained(runtime: &RuntimeHandle, filter: EventFilter) -> Vec<SharedEvent> {
    within("the registry", runtime.registry().send(ReadRetained { filter, limit: usize::MAX }))
        .await
        .expect("registry answers")
        .events
}

pub fn only_types(types: &[EventType]) -> EventFilter {
    EventFilter { event_types: types.to_vec(), ..EventFilter::default() }
}

/// Adds `node_id` through the membership actor and returns its view.
pub async fn add_node(runtime: &RuntimeHandle, node_id: &str, metadata: NodeMetadata) -> NodeView {
    within(
        "AddNode",
        runtime.membership().send(AddNode { node_id: node_id.into(), address: None, metadata }),
    )
    .await
    .expect("membership actor answers")
    .unwrap_or_else(|e| panic!("adding {node_id} failed: {e}"))
}

/// Polls `probe` every few milliseconds until it returns `Some`, within [`TIMEOUT`]. Only for state
/// that publishes no event of its own.
pub async fn poll_until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(what, async {
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}
