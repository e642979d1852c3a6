//! What the integration tests share: the one configuration builder ([`TestConfig`]), the one way
//! to wait (an event with [`next_event_matching`], anything else with [`within`] and
//! [`poll_until`]), barriers that make "everything published so far has reached the registry" a
//! fact rather than a hope, and short forms of the messages many scenarios send.
//!
//! Nothing here sleeps to synchronise: every wait is on an event, an actor's answer, or (for state
//! that publishes no event) a short poll inside an overall timeout.

#![allow(dead_code)]

pub mod api;
pub mod binary;
pub mod graphql;
pub mod raw_ws;
pub mod replication;
pub mod server;

use std::future::Future;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clusterd::config::{Config, ReplicaConfig, StorageEngine};
use clusterd::messages::cluster::{
    AddNode, ClusterError, CrashNode, GetNode, ListNodes, NodeMetadata, NodeView, RestartNode,
};
use clusterd::messages::events::{EventFilter, EventType, PublishedEvent, SharedEvent, SubjectKind};
use clusterd::messages::registry::{
    Delivery, GetRegistryStatus, ListSubscriptions, ReadRetained, RegistryStatus, SubscriptionRow,
};
use clusterd::model::{ReplicaMode, ReplicationMode};
use clusterd::runtime::EventSubscription;
use clusterd::RuntimeHandle;

/// How long any single wait in a test may take before the test fails. Generous: it only bounds a
/// failure, a passing test never waits for it.
pub const TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The configuration builder.

/// A test's configuration, built from [`Config::in_memory`]: the embedded default (nodes
/// `node-1`..`node-3`; primary `primary` with `replica-001` sync and `replica-002` async;
/// `semi_sync` with a quorum of one) keeping nothing on disk. Each method changes one thing, and
/// [`TestConfig::build`] validates the result.
#[derive(Clone)]
pub struct TestConfig(Config);

impl TestConfig {
    pub fn memory() -> TestConfig {
        TestConfig(Config::in_memory())
    }

    /// Durable in `dir`.
    pub fn disk(mut self, dir: &Path) -> TestConfig {
        self.0.storage.engine = StorageEngine::Disk;
        self.0.storage.data_dir = dir.to_string_lossy().into_owned();
        self
    }

    /// No replication replicas, in `async` mode: replication publishes nothing a membership test
    /// would have to count.
    pub fn without_replicas(self) -> TestConfig {
        TestConfig(self.0.without_replicas())
    }

    /// Exactly these replicas, in this order.
    pub fn replicas(mut self, replicas: &[(&str, ReplicaMode)]) -> TestConfig {
        self.0.replication.replicas =
            replicas.iter().map(|(id, mode)| ReplicaConfig { id: (*id).into(), mode: *mode }).collect();
        self
    }

    pub fn mode(mut self, mode: ReplicationMode) -> TestConfig {
        self.0.replication.mode = mode;
        self
    }

    /// How long a write waits for its replicas before it answers `replication_timeout`.
    pub fn sync_timeout_ms(mut self, ms: u64) -> TestConfig {
        self.0.replication.sync_timeout_ms = ms;
        self
    }

    /// Replication heartbeats every `interval_ms`; a replica silent for `timeout_ms` is
    /// disconnected.
    pub fn heartbeat_ms(mut self, interval_ms: u64, timeout_ms: u64) -> TestConfig {
        self.0.replication.heartbeat_interval_ms = interval_ms;
        self.0.replication.heartbeat_timeout_ms = timeout_ms;
        self
    }

    /// Short cluster ticks so node heartbeats run often, but an `unreachable` threshold (one
    /// second) far from anything a loaded test machine could hit: the tests decide when quorum
    /// changes, not the scheduler.
    pub fn frequent_node_heartbeats(mut self) -> TestConfig {
        self.0.cluster.tick_ms = 20;
        self.0.cluster.heartbeat_tick = 2;
        self.0.cluster.election_tick = 50;
        self
    }

    /// A failure detector so slow (a node heartbeat every second, `degraded` after three) that no
    /// node changes health unless a test makes it: for tests that count events or read exact
    /// health states.
    pub fn quiet(mut self) -> TestConfig {
        self.0.cluster.tick_ms = 500;
        self.0.cluster.heartbeat_tick = 2;
        self.0.cluster.election_tick = 20;
        self
    }

    /// As [`TestConfig::quiet`] (a heartbeat a second), with an election timeout of two
    /// seconds, for tests that change members: that goes through the Raft leader.
    pub fn quiet_with_leader(mut self) -> TestConfig {
        self.0.cluster.tick_ms = 50;
        self.0.cluster.heartbeat_tick = 20;
        self.0.cluster.election_tick = 40;
        self
    }

    /// Every API and GraphQL route needs `Authorization: Bearer <token>`.
    pub fn token(mut self, token: &str) -> TestConfig {
        self.0.server.auth_token = token.into();
        self
    }

    pub fn no_fault_injection(mut self) -> TestConfig {
        self.0.server.allow_fault_injection = false;
        self
    }

    /// How many events the registry keeps for replay.
    pub fn retained(mut self, events: usize) -> TestConfig {
        self.0.events.retained = events;
        self
    }

    /// How many deliveries a subscriber's queue holds before it lags.
    pub fn session_queue(mut self, deliveries: usize) -> TestConfig {
        self.0.events.session_queue = deliveries;
        self
    }

    /// WebSocket pings every `interval_ms`; a client silent for `client_timeout_ms` is closed.
    pub fn ws_heartbeat_ms(mut self, interval_ms: u64, client_timeout_ms: u64) -> TestConfig {
        self.0.ws.heartbeat_interval_ms = interval_ms;
        self.0.ws.client_timeout_ms = client_timeout_ms;
        self
    }

    pub fn max_ws_sessions(mut self, sessions: usize) -> TestConfig {
        self.0.ws.max_sessions = sessions;
        self
    }

    pub fn max_frame_bytes(mut self, bytes: usize) -> TestConfig {
        self.0.ws.max_frame_bytes = bytes;
        self
    }

    /// Any other setting, for the one test that needs it.
    pub fn with(mut self, change: impl FnOnce(&mut Config)) -> TestConfig {
        change(&mut self.0);
        self
    }

    /// The configuration, which must be valid.
    pub fn build(self) -> Config {
        self.0.validate().unwrap_or_else(|e| panic!("the test configuration is invalid: {e}"));
        self.0
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting.

/// Awaits `fut`, failing the test with `what` if it takes longer than [`TIMEOUT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {TIMEOUT:?} waiting for {what}"),
    }
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

// ---------------------------------------------------------------------------------------------
// The registry.

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

/// Every subscription the registry holds.
pub async fn subscriptions(runtime: &RuntimeHandle) -> Vec<SubscriptionRow> {
    within("ListSubscriptions", runtime.registry().send(ListSubscriptions)).await.expect("registry answers")
}

/// Retained events the filter admits, oldest first.
pub async fn retained(runtime: &RuntimeHandle, filter: EventFilter) -> Vec<SharedEvent> {
    within("the registry", runtime.registry().send(ReadRetained { filter, limit: usize::MAX }))
        .await
        .expect("registry answers")
        .events
}

/// Subscribes live (no replay) to `filter`.
pub async fn subscribe(runtime: &RuntimeHandle, filter: EventFilter) -> EventSubscription {
    within("subscribe", runtime.subscribe(filter)).await.expect("registry answers")
}

/// A filter for these event types only (never "everything": a filter without event types would
/// also ask for the high-rate `wal_position_update`).
pub fn only_types(types: &[EventType]) -> EventFilter {
    EventFilter { event_types: types.to_vec(), ..EventFilter::default() }
}

/// A filter for events about these nodes.
pub fn node_filter(ids: &[&str]) -> EventFilter {
    EventFilter::default().with_ids(SubjectKind::Node, ids.iter().copied())
}

// ---------------------------------------------------------------------------------------------
// Membership.

pub fn metadata(v: serde_json::Value) -> NodeMetadata {
    serde_json::from_value(v).expect("metadata is an object")
}

/// Adds `node_id` through the membership actor and returns its view.
/// Adds a node and waits until it votes (a join answers with a learner after 5 s of catching up).
pub async fn add_node(runtime: &RuntimeHandle, node_id: &str, metadata: NodeMetadata) -> NodeView {
    let view = within(
        "AddNode",
        runtime.membership().send(AddNode { node_id: node_id.into(), address: None, metadata }),
    )
    .await
    .expect("membership actor answers")
    .unwrap_or_else(|e| panic!("adding {node_id} failed: {e}"));
    if view.role == clusterd::model::NodeRole::Voter {
        return view;
    }
    poll_until(&format!("{node_id} to vote"), || async {
        get_node(runtime, node_id).await.ok().filter(|v| v.role == clusterd::model::NodeRole::Voter)
    })
    .await
}

pub async fn get_node(runtime: &RuntimeHandle, id: &str) -> Result<NodeView, ClusterError> {
    within("GetNode", runtime.membership().send(GetNode { node_id: id.into() }))
        .await
        .expect("membership answers")
}

/// Crashes `node_id` through the membership actor, which must accept it.
pub async fn crash_node(runtime: &RuntimeHandle, node_id: &str) {
    within("CrashNode", runtime.membership().send(CrashNode { node_id: node_id.into() }))
        .await
        .expect("membership answers")
        .unwrap_or_else(|e| panic!("crashing {node_id} failed: {e}"));
}

/// Restarts the crashed `node_id` through the membership actor and returns its view.
pub async fn restart_node(runtime: &RuntimeHandle, node_id: &str) -> NodeView {
    within("RestartNode", runtime.membership().send(RestartNode { node_id: node_id.into() }))
        .await
        .expect("membership answers")
        .unwrap_or_else(|e| panic!("restarting {node_id} failed: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The binary.

/// The `clusterd` binary with no `CLUSTERD_*` variables inherited, so the developer's environment
/// cannot change what the tests see.
pub fn clusterd_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clusterd"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CLUSTERD_") {
            cmd.env_remove(name);
        }
    }
    cmd
}
