//! The runtime embedded without HTTP: cluster membership driven by typed messages, and what the
//! event registry makes of it (filters, replay, truncation, lag, fault injection, durability).
//!
//! Each test is a scenario told in its comments; every wait is on an event or an actor's answer,
//! bounded by `common::TIMEOUT`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use clusterd::messages::cluster::*;
use clusterd::messages::events::*;
use clusterd::messages::system::SystemEvent;
use clusterd::model::{ClusterHealthStatus, NodeHealth};
use clusterd::messages::registry::{Delivery, ListSubscriptions};
use clusterd::Runtime;
use serde_json::json;

use common::*;

fn node_filter(ids: &[&str]) -> EventFilter {
    EventFilter::default().with_ids(SubjectKind::Node, ids.iter().copied())
}

fn metadata(v: serde_json::Value) -> NodeMetadata {
    serde_json::from_value(v).expect("metadata is an object")
}

fn joined_node(e: &PublishedEvent) -> Option<&str> {
    match &e.payload {
        EventPayload::Cluster(ClusterEvent::NodeJoined(p)) => Some(p.node_id.as_str()),
        _ => None,
    }
}

async fn get_node(runtime: &clusterd::RuntimeHandle, id: &str) -> Result<NodeView, ClusterError> {
    within("GetNode", runtime.membership().send(GetNode { node_id: id.into() }))
        .await
        .expect("membership answers")
}

/// The next `node_health_change` of `node_id` that `pred` accepts. (With short ticks a loaded
/// machine can make a node `degraded` for a moment; such changes are real and skipped here.)
async fn next_health_change(
    sub: &mut clusterd::runtime::EventSubscription,
    node_id: &str,
    mut pred: impl FnMut(&NodeHealthChange) -> bool,
) -> SharedEvent {
    next_event_matching(
        sub,
        |e| matches!(&e.payload, EventPayload::Cluster(ClusterEvent::NodeHealthChange(p)) if p.node_id == node_id && pred(p)),
        TIMEOUT,
    )
    .await
}

#[actix_web::test]
async fn a_joining_node_is_announced_only_to_subscribers_that_asked_about_it() {
    // A three-node cluster, and two watchers: one interested in node-4, one in node-5.
    let runtime = Runtime::start(quiet_config()).expect("runtime starts");
    settle(&runtime).await;
    let mut watches_4 = runtime.subscribe(node_filter(&["node-4"])).await.expect("subscribe");
    let mut watches_5 = runtime.subscribe(node_filter(&["node-5"])).await.expect("subscribe");

    // node-4 joins with some metadata.
    let view = add_node(&runtime, "node-4", metadata(json!({"rack": "r1"}))).await;
    assert_eq!(view.node_id, "node-4");
    assert_eq!(view.metadata.get("rack"), Some(&json!("r1")));

    // The node-4 watcher's first delivery is exactly that join, with a complete envelope.
    let e = match next_delivery(&mut watches_4).await {
        Some(Delivery::Event(e)) => e,
        other => panic!("expected node-4's join, got {other:?}"),
    };
    assert_eq!(e.event_type, EventType::NodeJoined);
    assert_eq!(e.category, Category::Clustering);
    assert_eq!(e.severity, Severity::Info);
    assert_eq!(e.source, "node:node-4");
    assert_eq!(e.subjects.of(SubjectKind::Node), vec!["node-4".to_string()]);
    assert_eq!(e.event_id, format!("evt_{:012}", e.seq));
    match &e.payload {
        EventPayload::Cluster(ClusterEvent::NodeJoined(p)) => {
            assert_eq!(p.node_id, "node-4");
            assert_eq!(p.cluster_size, 4, "the size after the join");
            assert!(p.has_quorum);
        }
        other => panic!("expected a node_joined payload, got {other:?}"),
    }
    let env: serde_json::Value = serde_json::from_str(&e.json).expect("the envelope is JSON");
    assert_eq!(env["payload"]["node_id"], "node-4");
    assert_eq!(env["seq"], e.seq);

    // Now node-5 joins. The node-5 watcher's queue is first-in first-out, so if node-4's join had
    // leaked into it, that would come out first. It does not: node-5's join is the first delivery.
    add_node(&runtime, "node-5", NodeMetadata::new()).await;
    let e5 = match next_delivery(&mut watches_5).await {
        Some(Delivery::Event(e)) => e,
        other => panic!("expected node-5's join, got {other:?}"),
    };
    assert_eq!(joined_node(&e5), Some("node-5"), "node-5's watcher saw {} first", e5.json);
    assert!(e5.seq > e.seq);

    // And nothing about node-5 reached the node-4 watcher: its next event is node-4's departure.
    within("RemoveNode", runtime.membership().send(RemoveNode { node_id: "node-4".into() }))
        .await
        .expect("membership answers")
        .expect("node-4 leaves");
    let left = match next_delivery(&mut watches_4).await {
        Some(Delivery::Event(e)) => e,
        other => panic!("expected node-4's departure, got {other:?}"),
    };
    assert_eq!(left.event_type, EventType::NodeLeft, "node-4's watcher got {}", left.json);
    assert_eq!(left.subjects.of(SubjectKind::Node), vec!["node-4".to_string()]);
}

#[actix_web::test]
async fn replay_then_live_has_no_gap_and_no_duplicate_while_nodes_keep_joining() {
    let runtime = Runtime::start(quiet_config()).expect("runtime starts");
    settle(&runtime).await;
    // Some history: node-1..3 joined at bootstrap, node-4..6 join now.
    for n in 4..=6 {
        add_node(&runtime, &format!("node-{n}"), NodeMetadata::new()).await;
    }

    // Twenty more nodes join one after another in the background. Once half of them are in, we
    // subscribe from the beginning while the other half are still joining.
    let (half_tx, half_rx) = tokio::sync::oneshot::channel();
    let adder = {
        let runtime = runtime.clone();
        actix_web::rt::spawn(async move {
            let mut half_tx = Some(half_tx);
            for n in 10..30 {
                add_node(&runtime, &format!("node-{n}"), NodeMetadata::new()).await;
                if n == 19 {
                    let _ = half_tx.take().map(|tx| tx.send(()));
                }
            }
        })
    };
    within("the first ten background joins", half_rx).await.expect("adder runs");
    let filter = EventFilter { since_seq: Some(0), ..only_types(&[EventType::NodeJoined]) };
    let mut sub = runtime.subscribe(filter).await.expect("subscribe");
    assert!(!sub.replay_truncated(), "nothing has left the retained window yet");

    // Everything that joined must come through once: 3 bootstrap + 3 + 20.
    let expected: BTreeSet<String> =
        (1..=6).chain(10..30).map(|n| format!("node-{n}")).collect();
    let mut seen: Vec<(u64, String)> = Vec::new();
    while seen.len() < expected.len() {
        let e = next_event_matching(&mut sub, |_| true, TIMEOUT).await;
        let node = joined_node(&e).unwrap_or_else(|| panic!("the filter admits joins only: {}", e.json));
        seen.push((e.seq, node.to_string()));
    }
    within("the background joins", adder).await.expect("adder finished");

    let seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs are not strictly increasing: {seqs:?}");
    let nodes: BTreeSet<String> = seen.iter().map(|(_, n)| n.clone()).collect();
    assert_eq!(nodes.len(), seen.len(), "a join was delivered twice: {seen:?}");
    assert_eq!(nodes, expected);

    // The replay was exactly the retained events the filter admits: what we got equals what the
    // registry holds, seq for seq.
    settle(&runtime).await;
    let held: Vec<u64> =
        retained(&runtime, only_types(&[EventType::NodeJoined])).await.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, held);

    // Nothing else is queued behind: the next delivery is the next join.
    add_node(&runtime, "node-99", NodeMetadata::new()).await;
    let next = next_event_matching(&mut sub, |_| true, TIMEOUT).await;
    assert_eq!(joined_node(&next), Some("node-99"), "a stray event followed the replay: {}", next.json);
    assert!(next.seq > *seqs.last().expect("events were seen"));
}

#[actix_web::test]
async fn a_since_seq_older_than_the_retained_window_is_reported_as_truncated() {
    // Only four events are kept.
    let mut config = quiet_config();
    config.events.retained = 4;
    let runtime = Runtime::start(config).expect("runtime starts");
    settle(&runtime).await;
    for n in 4..=7 {
        add_node(&runtime, &format!("node-{n}"), NodeMetadata::new()).await;
    }
    let status = settle(&runtime).await;
    assert_eq!(status.retained, 4);
    assert_eq!(status.current_seq, 7, "3 bootstrap joins and 4 more");
    let oldest = status.oldest_retained_seq;
    assert_eq!(oldest, status.current_seq - 3);

    // Asking from the very start: events 1..oldest-1 are gone, and the subscriber is told so.
    // What is still retained is replayed, oldest first.
    let mut from_zero = runtime.subscribe(EventFilter { since_seq: Some(0), ..EventFilter::default() })
        .await
        .expect("subscribe");
    assert!(from_zero.replay_truncated());
    for expected in oldest..=status.current_seq {
        let e = next_event_matching(&mut from_zero, |_| true, TIMEOUT).await;
        assert_eq!(e.seq, expected);
    }

    // One short of the window is truncated too; the window's edge is not.
    let gap = runtime
        .subscribe(EventFilter { since_seq: Some(oldest - 2), ..EventFilter::default() })
        .await
        .expect("subscribe");
    assert!(gap.replay_truncated(), "event {} is gone", oldest - 1);
    let mut edge = runtime
        .subscribe(EventFilter { since_seq: Some(oldest - 1), ..EventFilter::default() })
        .await
        .expect("subscribe");
    assert!(!edge.replay_truncated(), "every event after {} is still retained", oldest - 1);
    assert_eq!(next_event_matching(&mut edge, |_| true, TIMEOUT).await.seq, oldest);

    // Resuming from the newest seq replays nothing and is not truncated: the next delivery is live.
    let mut live = runtime
        .subscribe(EventFilter { since_seq: Some(status.current_seq), ..EventFilter::default() })
        .await
        .expect("subscribe");
    assert!(!live.replay_truncated());
    add_node(&runtime, "node-8", NodeMetadata::new()).await;
    let e = next_event_matching(&mut live, |_| true, TIMEOUT).await;
    assert_eq!(joined_node(&e), Some("node-8"));
    assert_eq!(e.seq, status.current_seq + 1);
}

#[actix_web::test]
async fn a_subscriber_that_falls_behind_is_told_what_it_missed_then_closed_if_it_stays_behind() {
    // Queues hold eight deliveries.
    let mut config = quiet_config();
    config.events.session_queue = 8;
    let runtime = Runtime::start(config).expect("runtime starts");
    settle(&runtime).await;
    let mut sub = runtime.subscribe(only_types(&[EventType::NodeJoined])).await.expect("subscribe");
    let id = sub.subscription_id();

    // Ten nodes join while the subscriber reads nothing: eight fit, two are dropped.
    for n in 10..20 {
        add_node(&runtime, &format!("node-{n}"), NodeMetadata::new()).await;
    }
    settle(&runtime).await;
    let rows = within("ListSubscriptions", runtime.registry().send(ListSubscriptions)).await.expect("registry");
    let row = rows.iter().find(|r| r.subscription_id == id).expect("the subscriber is still registered");
    assert!(row.lagging);
    assert_eq!(row.dropped, 2);
    assert_eq!(row.delivered, 8);
    assert!(runtime.metrics().total("clusterd_events_dropped_total").unwrap_or(0) >= 2);

    // The subscriber catches up on the eight it has: node-10..17.
    let mut last_seen = 0;
    for n in 10..18 {
        let e = match next_delivery(&mut sub).await {
            Some(Delivery::Event(e)) => e,
            other => panic!("expected node-{n}'s join, got {other:?}"),
        };
        assert_eq!(joined_node(&e), Some(format!("node-{n}").as_str()));
        last_seen = e.seq;
    }

    // With room again, it is told what it lost without waiting for another event (a quiet
    // stream must not hide a loss): two missed, resume after the last one delivered.
    match next_delivery(&mut sub).await {
        Some(Delivery::Lagged { missed, resume_from_seq }) => {
            assert_eq!(missed, 2);
            assert_eq!(resume_from_seq, last_seen);
        }
        other => panic!("expected a lagged notice, got {other:?}"),
    }
    // Live delivery goes on after the notice.
    add_node(&runtime, "node-20", NodeMetadata::new()).await;
    match next_delivery(&mut sub).await {
        Some(Delivery::Event(e)) => assert_eq!(joined_node(&e), Some("node-20"), "{}", e.json),
        other => panic!("expected node-20's join, got {other:?}"),
    }
    // Resubscribing from the resume point replays exactly what it lost, then what followed.
    let mut resumed = runtime
        .subscribe(EventFilter { since_seq: Some(last_seen), ..only_types(&[EventType::NodeJoined]) })
        .await
        .expect("subscribe");
    assert!(!resumed.replay_truncated());
    for n in 18..=20 {
        let e = next_event_matching(&mut resumed, |_| true, TIMEOUT).await;
        assert_eq!(joined_node(&e), Some(format!("node-{n}").as_str()), "{}", e.json);
    }
    drop(resumed);

    // Now it stops reading for good: eight more fill its queue, and nine more missed in a row is
    // more than a queue's worth. The registry gives up on it.
    let dropped_before = runtime.metrics().total("clusterd_events_dropped_total").unwrap_or(0);
    for n in 21..39 {
        add_node(&runtime, &format!("node-{n}"), NodeMetadata::new()).await;
    }
    settle(&runtime).await;
    let rows = within("ListSubscriptions", runtime.registry().send(ListSubscriptions)).await.expect("registry");
    assert!(
        rows.iter().all(|r| r.subscription_id != id),
        "a subscriber that stayed behind is still registered"
    );
    assert!(runtime.metrics().total("clusterd_events_dropped_total").unwrap_or(0) > dropped_before);

    // What was queued is still readable; then the subscription ends.
    let mut drained = 0;
    loop {
        match next_delivery(&mut sub).await {
            Some(Delivery::Event(_)) => drained += 1,
            Some(Delivery::Lagged { .. }) => {}
            Some(Delivery::Close { .. }) | None => break,
        }
        assert!(drained <= 8, "more deliveries than the queue holds");
    }
    assert_eq!(drained, 8);
    assert!(sub.next_delivery().await.is_none(), "an ended subscription stays ended");
}

#[actix_web::test]
async fn crash_restart_and_internal_fault_are_published_with_real_measurements() {
    let runtime = Runtime::start(memory_config()).expect("runtime starts");
    settle(&runtime).await;
    let mut sub = runtime.subscribe(node_filter(&["node-2"])).await.expect("subscribe");

    // An internal fault: node-2's actor fails and its supervisor starts it again at once.
    within(
        "InjectNodeFault",
        runtime.membership().send(InjectNodeFault { node_id: "node-2".into(), reason: "disk on fire".into() }),
    )
    .await
    .expect("membership answers")
    .expect("the fault is injected");
    let e = next_node_event(&mut sub, EventType::ActorRestarted, "node-2").await;
    assert_eq!(e.category, Category::System);
    assert_eq!(e.source, "node:node-2");
    match &e.payload {
        EventPayload::System(SystemEvent::ActorRestarted(p)) => {
            assert_eq!(p.actor_kind, "node");
            assert_eq!(p.actor_id, "node-2");
            assert_eq!(p.reason, "disk on fire");
            assert_eq!(p.restart_count, 1);
        }
        other => panic!("expected actor_restarted, got {other:?}"),
    }
    assert_eq!(runtime.metrics().total("clusterd_actor_restarts_total"), Some(1));
    // The membership actor learns the count from the restarted actor's next heartbeat answer.
    poll_until("node-2's view to count the restart", || async {
        get_node(&runtime, "node-2").await.ok().filter(|v| v.restarts == 1)
    })
    .await;
    let v = get_node(&runtime, "node-2").await.expect("node-2 exists");
    assert!(!v.crashed);
    assert!(v.status.is_up());

    // A crash: node-2 goes down and stays down, and its health change carries the measurements
    // taken at that moment, among them the one restart.
    within("CrashNode", runtime.membership().send(CrashNode { node_id: "node-2".into() }))
        .await
        .expect("membership answers")
        .expect("node-2 crashes");
    let e = next_health_change(&mut sub, "node-2", |p| p.new_status == NodeHealth::Failed).await;
    assert_eq!(e.severity, Severity::Error);
    match &e.payload {
        EventPayload::Cluster(ClusterEvent::NodeHealthChange(p)) => {
            assert!(p.old_status.is_up(), "it was up before: {:?}", p.old_status);
            assert_eq!(p.new_status, NodeHealth::Failed);
            assert_eq!(p.metrics.get("restarts"), Some(&1.0), "metrics: {:?}", p.metrics);
            assert!(p.metrics.values().all(|v| v.is_finite()));
            assert_eq!(p.total_nodes, 3);
            assert_eq!(p.healthy_nodes, 2);
            assert_eq!(p.cluster_status, ClusterHealthStatus::Degraded);
        }
        other => panic!("expected node_health_change, got {other:?}"),
    }
    let v = get_node(&runtime, "node-2").await.expect("node-2 exists");
    assert!(v.crashed);
    assert_eq!(v.status, NodeHealth::Failed);
    assert_eq!(v.heartbeat_age_ms, None, "a crashed node answers no heartbeat");
    let faults = within("ListFaults", runtime.membership().send(ListFaults)).await.expect("membership");
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0].target, "node-2");
    assert_eq!(faults[0].kind, "crash");

    // A crashed node cannot crash again, nor take an internal fault.
    let again = runtime.membership().send(CrashNode { node_id: "node-2".into() }).await.expect("answers");
    assert_eq!(again, Err(ClusterError::AlreadyCrashed { node_id: "node-2".into() }));
    let fault = runtime
        .membership()
        .send(InjectNodeFault { node_id: "node-2".into(), reason: "x".into() })
        .await
        .expect("answers");
    assert_eq!(fault, Err(ClusterError::NodeDown { node_id: "node-2".into() }));
    // It stays down: the supervisor does not bring it back. A heartbeat round later it is still
    // failed (the other nodes' views show heartbeats were answered meanwhile).
    poll_until("a heartbeat answered by node-1 after the crash", || async {
        get_node(&runtime, "node-1").await.ok().and_then(|v| v.heartbeat_age_ms)
    })
    .await;
    assert_eq!(get_node(&runtime, "node-2").await.expect("node-2").status, NodeHealth::Failed);

    // An operator restart brings it back, published as failed -> healthy.
    let v = within("RestartNode", runtime.membership().send(RestartNode { node_id: "node-2".into() }))
        .await
        .expect("membership answers")
        .expect("node-2 restarts");
    assert!(!v.crashed);
    assert_eq!(v.status, NodeHealth::Healthy);
    let e = next_health_change(&mut sub, "node-2", |p| p.old_status == NodeHealth::Failed).await;
    match &e.payload {
        EventPayload::Cluster(ClusterEvent::NodeHealthChange(p)) => {
            assert_eq!(p.old_status, NodeHealth::Failed);
            assert_eq!(p.new_status, NodeHealth::Healthy);
            assert!(p.metrics.contains_key("restarts"), "metrics: {:?}", p.metrics);
            assert!(p.metrics.values().all(|v| v.is_finite()));
            assert_eq!(p.healthy_nodes, 3);
        }
        other => panic!("expected node_health_change, got {other:?}"),
    }
    let faults = within("ListFaults", runtime.membership().send(ListFaults)).await.expect("membership");
    assert!(faults.is_empty(), "no fault after the restart: {faults:?}");
    let again = runtime.membership().send(RestartNode { node_id: "node-2".into() }).await.expect("answers");
    assert_eq!(again, Err(ClusterError::NotCrashed { node_id: "node-2".into() }));

    // The restarted node answers heartbeats again.
    poll_until("node-2's first heartbeat after the restart", || async {
        get_node(&runtime, "node-2").await.ok().and_then(|v| v.heartbeat_age_ms)
    })
    .await;

    // Unknown nodes are refused by every fault message.
    let unknown = ClusterError::NodeNotFound { node_id: "node-9".into() };
    assert_eq!(
        runtime.membership().send(CrashNode { node_id: "node-9".into() }).await.expect("answers"),
        Err(unknown.clone())
    );
    assert_eq!(
        runtime.membership().send(RestartNode { node_id: "node-9".into() }).await.expect("answers").map(|_| ()),
        Err(unknown.clone())
    );
    assert_eq!(
        runtime
            .membership()
            .send(InjectNodeFault { node_id: "node-9".into(), reason: "x".into() })
            .await
            .expect("answers"),
        Err(unknown)
    );
}

#[actix_web::test]
async fn a_node_view_keeps_counting_supervised_restarts_across_an_operator_restart() {
    // NodeView::restarts is documented as "supervised restarts after internal faults, in this
    // process's life", and /metrics' clusterd_actor_restarts_total keeps counting across a crash
    // and an operator restart. The node's own view must agree with /metrics, however quickly the
    // crash follows the fault. (Slow heartbeats: the crash comes before the membership actor's
    // next probe of node-2.)
    let runtime = Runtime::start(quiet_config()).expect("runtime starts");
    settle(&runtime).await;
    let mut sub = runtime
        .subscribe(only_types(&[EventType::ActorRestarted]).with_ids(SubjectKind::Node, ["node-2"]))
        .await
        .expect("subscribe");

    // An internal fault, restarted by the supervisor: one restart, as the event and /metrics say.
    runtime
        .membership()
        .send(InjectNodeFault { node_id: "node-2".into(), reason: "fault".into() })
        .await
        .expect("answers")
        .expect("injected");
    next_node_event(&mut sub, EventType::ActorRestarted, "node-2").await;
    assert_eq!(runtime.metrics().total("clusterd_actor_restarts_total"), Some(1));

    // Right after it, a crash and an operator restart.
    runtime.membership().send(CrashNode { node_id: "node-2".into() }).await.expect("answers").expect("crash");
    runtime.membership().send(RestartNode { node_id: "node-2".into() }).await.expect("answers").expect("restart");

    // Once the new actor has answered a heartbeat (its answer carries its own count), the view
    // still counts the restart of the earlier actor.
    let v = poll_until("node-2's first heartbeat after the restart", || async {
        get_node(&runtime, "node-2").await.ok().filter(|v| v.heartbeat_age_ms.is_some())
    })
    .await;
    assert_eq!(runtime.metrics().total("clusterd_actor_restarts_total"), Some(1));
    assert_eq!(
        v.restarts, 1,
        "node-2 had one supervised restart in this process's life, as /metrics still says"
    );
}

#[actix_web::test]
async fn losing_and_regaining_quorum_is_published_once_each() {
    let runtime = Runtime::start(quiet_config()).expect("runtime starts");
    settle(&runtime).await;
    let mut sub = runtime
        .subscribe(only_types(&[EventType::QuorumLost, EventType::QuorumRestored]))
        .await
        .expect("subscribe");

    // One node down of three: still a quorum, nothing published about quorum.
    runtime.membership().send(CrashNode { node_id: "node-2".into() }).await.expect("answers").expect("crash");
    let status = runtime.membership().send(GetClusterStatus).await.expect("answers");
    assert!(status.has_quorum);
    assert_eq!(status.health, ClusterHealthStatus::Degraded);

    // Two down: quorum lost.
    runtime.membership().send(CrashNode { node_id: "node-3".into() }).await.expect("answers").expect("crash");
    let e = next_event_matching(&mut sub, |_| true, TIMEOUT).await;
    assert_eq!(e.event_type, EventType::QuorumLost, "{}", e.json);
    assert_eq!(e.severity, Severity::Critical);
    match &e.payload {
        EventPayload::Cluster(ClusterEvent::QuorumLost(q)) => {
            assert_eq!((q.healthy_nodes, q.total_nodes, q.quorum_size, q.has_quorum), (1, 3, 2, false));
        }
        other => panic!("expected quorum_lost, got {other:?}"),
    }
    let health = runtime.membership().send(GetClusterHealth).await.expect("answers");
    assert_eq!(health.status, ClusterHealthStatus::Critical);
    assert!(!health.has_quorum);

    // One back: quorum restored, and that is the very next quorum event (no repeat of the loss).
    runtime.membership().send(RestartNode { node_id: "node-3".into() }).await.expect("answers").expect("restart");
    let e = next_event_matching(&mut sub, |_| true, TIMEOUT).await;
    assert_eq!(e.event_type, EventType::QuorumRestored, "{}", e.json);
    match &e.payload {
        EventPayload::Cluster(ClusterEvent::QuorumRestored(q)) => {
            assert_eq!((q.healthy_nodes, q.total_nodes, q.quorum_size, q.has_quorum), (2, 3, 2, true));
        }
        other => panic!("expected quorum_restored, got {other:?}"),
    }
}

#[actix_web::test]
async fn membership_and_event_ids_survive_a_restart_on_the_same_data_dir() {
    let dir = tempfile::tempdir().expect("temp dir");

    // First life: node-4 joins with metadata which is then patched, node-5 joins and leaves, and
    // node-3 (a bootstrap node) leaves.
    let (before_max_seq, before_ids, node4_before, mut watcher) = {
        let runtime = Runtime::start(disk_config(dir.path())).expect("runtime starts on disk");
        assert!(runtime.store().is_durable());
        settle(&runtime).await;
        add_node(&runtime, "node-4", metadata(json!({"rack": "r1", "zone": "z1"}))).await;
        let patched = runtime
            .membership()
            .send(UpdateNodeMetadata {
                node_id: "node-4".into(),
                patch: metadata(json!({"zone": null, "row": 7})),
            })
            .await
            .expect("answers")
            .expect("patched");
        assert_eq!(serde_json::to_value(&patched.metadata).unwrap(), json!({"rack": "r1", "row": 7}));
        add_node(&runtime, "node-5", NodeMetadata::new()).await;
        for gone in ["node-5", "node-3"] {
            runtime
                .membership()
                .send(RemoveNode { node_id: gone.into() })
                .await
                .expect("answers")
                .unwrap_or_else(|e| panic!("{gone} leaves: {e}"));
        }
        let status = settle(&runtime).await;
        let events = retained(&runtime, EventFilter::default()).await;
        assert!(!events.is_empty());
        let ids: BTreeSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
        let max = events.iter().map(|e| e.seq).max().expect("events");
        assert_eq!(max, status.current_seq);
        let node4 = get_node(&runtime, "node-4").await.expect("node-4 exists");
        let watcher = runtime.subscribe(EventFilter::default()).await.expect("subscribe");
        // Shut down. Once this returns, the data directory is free for the next runtime.
        runtime.shutdown().await;
        (max, ids, node4, watcher)
    };

    // Second life on the same directory, started as soon as the first one's shutdown returned.
    let runtime = Runtime::start(disk_config(dir.path())).expect("runtime starts again on the same dir");

    // A subscriber of the first life was told the runtime went away: its stream ended.
    match next_delivery(&mut watcher).await {
        None | Some(Delivery::Close { .. }) => {}
        Some(Delivery::Event(e)) => panic!("no event after shutdown: {}", e.json),
        Some(Delivery::Lagged { .. }) => panic!("nothing was published to lag behind"),
    }
    drop(watcher);

    // The membership is the durable one, not the bootstrap list.
    settle(&runtime).await;
    let nodes = runtime.membership().send(ListNodes).await.expect("answers");
    let ids: Vec<&str> = nodes.iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(ids, vec!["node-1", "node-2", "node-4"], "node-3 and node-5 stay removed");
    let node4 = get_node(&runtime, "node-4").await.expect("node-4 is still a member");
    assert_eq!(node4.metadata, node4_before.metadata);
    assert_eq!(node4.joined_at_ms, node4_before.joined_at_ms);
    let expected: BTreeMap<String, serde_json::Value> =
        serde_json::from_value(json!({"rack": "r1", "row": 7})).unwrap();
    assert_eq!(node4.metadata, expected);

    // Events of the second life never reuse a seq or an event id of the first.
    let mut sub = runtime.subscribe(node_filter(&["node-6"])).await.expect("subscribe");
    add_node(&runtime, "node-6", NodeMetadata::new()).await;
    let e = next_node_event(&mut sub, EventType::NodeJoined, "node-6").await;
    assert!(e.seq > before_max_seq, "seq {} after a restart, {} before it", e.seq, before_max_seq);
    assert!(!before_ids.contains(&e.event_id), "{} was already used", e.event_id);
    for e in retained(&runtime, EventFilter::default()).await {
        assert!(e.seq > before_max_seq, "seq {} reused after the restart", e.seq);
        assert!(!before_ids.contains(&e.event_id));
    }
    drop(sub);

    // The operator keeps restarting the process. Each time the next runtime starts as soon as the
    // previous shutdown returned, finds the same members, and numbers its events after every
    // event of every earlier life.
    let mut runtime = runtime;
    let mut highest = e.seq;
    let mut used_ids: BTreeSet<String> = before_ids;
    used_ids.insert(e.event_id.clone());
    for life in 3..=12 {
        runtime.shutdown().await;
        drop(runtime);
        runtime = Runtime::start(disk_config(dir.path()))
            .unwrap_or_else(|e| panic!("life {life}: the runtime starts again on the same dir: {e}"));
        let nodes = runtime.membership().send(ListNodes).await.expect("answers");
        let ids: Vec<&str> = nodes.iter().map(|n| n.node_id.as_str()).collect();
        assert_eq!(ids, vec!["node-1", "node-2", "node-4", "node-6"], "life {life}");
        let node = format!("node-{}", 100 + life);
        let mut sub = runtime.subscribe(node_filter(&[&node])).await.expect("subscribe");
        add_node(&runtime, &node, NodeMetadata::new()).await;
        let e = next_node_event(&mut sub, EventType::NodeJoined, &node).await;
        assert!(e.seq > highest, "life {life}: seq {} is not after {highest}", e.seq);
        assert!(used_ids.insert(e.event_id.clone()), "life {life}: {} was already used", e.event_id);
        highest = e.seq;
        runtime
            .membership()
            .send(RemoveNode { node_id: node.clone() })
            .await
            .expect("answers")
            .expect("the visitor leaves");
    }
    runtime.shutdown().await;
}
