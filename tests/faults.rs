//! Fault injection across domains: nodes crashed, restarted and given internal faults (over REST
//! and the runtime, with what is published and measured), replicas and the primary crashed and
//! restarted with writes in flight, partitions and faulty links checked, shown and healed, and all
//! of it refused when fault injection is off.
//!
//! Each test is a scenario told in its comments. Every wait is on an event, an answer, or (for
//! state that publishes no event of its own) a short poll inside `common::TIMEOUT`.

mod common;

use std::time::{Duration, Instant};

use clusterd::messages::cluster::*;
use clusterd::messages::events::*;
use clusterd::messages::replication::ReplicationEvent;
use clusterd::messages::system::SystemEvent;
use clusterd::model::{lsn_text, ClusterHealthStatus, NodeHealth, ReplicaMode, ReplicationMode};
use clusterd::Runtime;
use serde_json::json;

use common::api::{metric, start};
use common::replication::*;
use common::*;

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

// ---------------------------------------------------------------------------------------------
// Nodes.

#[actix_web::test]
async fn fault_injection_crashes_restarts_and_faults_a_node() {
    let (runtime, api) = start(TestConfig::memory().without_replicas().quiet().build()).await;

    // Crash node-2: it is failed and crashed, and listed as an injected fault.
    let r = api.post("/api/v1/cluster/faults/crash", json!({"target": "node-2"})).await.expect(200);
    assert_eq!(r["target"], "node-2");
    let node = api.get("/api/v1/cluster/nodes/node-2").await.expect(200);
    assert_eq!(node["status"], "failed");
    assert_eq!(node["crashed"], true);
    let h = api.get("/api/v1/cluster/health/node-2").await.expect(200);
    assert_eq!(h["status"], "failed");
    assert_eq!(h["crashed"], true);
    let faults = api.get("/api/v1/cluster/faults").await.expect(200);
    assert_eq!(faults["fault_injection_enabled"], true);
    let list = faults["faults"].as_array().expect("faults is an array");
    assert_eq!(list.len(), 1, "{faults}");
    assert_eq!(list[0]["target"], "node-2");
    assert_eq!(list[0]["kind"], "crash");
    let failed = api.events("node_ids=node-2&event_types=node_health_change").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["payload"]["new_status"], "failed");

    // Crashing it again is a conflict; so is an internal fault in a node that is down.
    let d = api.post("/api/v1/cluster/faults/crash", json!({"target": "node-2"})).await.expect_error(409, "already_crashed");
    assert_eq!(d["node_id"], "node-2");
    api.post("/api/v1/cluster/faults/crash", json!({"target": "node-2", "mode": "internal_fault"}))
        .await
        .expect_error(409, "node_down");

    // Restart: healthy again, no fault left; restarting a running node is a conflict.
    let r = api.post("/api/v1/cluster/faults/restart", json!({"target": "node-2"})).await.expect(200);
    assert_eq!(r["status"], "healthy");
    assert_eq!(r["crashed"], false);
    let node = api.get("/api/v1/cluster/nodes/node-2").await.expect(200);
    assert_eq!(node["status"], "healthy");
    assert_eq!(node["crashed"], false);
    assert!(api.get("/api/v1/cluster/faults").await.expect(200)["faults"].as_array().unwrap().is_empty());
    api.post("/api/v1/cluster/faults/restart", json!({"target": "node-2"})).await.expect_error(409, "not_crashed");
    let changes = api.events("node_ids=node-2&event_types=node_health_change").await;
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1]["payload"]["old_status"], "failed");
    assert_eq!(changes[1]["payload"]["new_status"], "healthy");

    // An internal fault: the supervisor restarts node-2's actor, which is published as
    // actor_restarted and counted in /metrics. We watch for it in-process, so the wait is on the
    // event itself; GET /api/v1/events then holds it (delivery implies retention).
    let mut watch = runtime
        .subscribe(only_types(&[EventType::ActorRestarted]).with_ids(SubjectKind::Node, ["node-2"]))
        .await
        .expect("subscribe");
    api.post("/api/v1/cluster/faults/crash", json!({"target": "node-2", "mode": "internal_fault"}))
        .await
        .expect(200);
    next_node_event(&mut watch, EventType::ActorRestarted, "node-2").await;
    let restarted = api.events("event_types=actor_restarted").await;
    assert_eq!(restarted.len(), 1);
    assert_eq!(restarted[0]["category"], "system");
    assert_eq!(restarted[0]["subjects"]["node_ids"], json!(["node-2"]));
    assert_eq!(restarted[0]["payload"]["actor_kind"], "node");
    assert_eq!(restarted[0]["payload"]["actor_id"], "node-2");
    assert_eq!(restarted[0]["payload"]["restart_count"], 1);
    let text = api.metrics().await;
    assert_eq!(metric(&text, r#"clusterd_actor_restarts_total{kind="node",id="node-2"}"#), Some(1.0), "{text}");
    assert!(metric(&text, r#"clusterd_cluster_node_phi{node_id="node-1"}"#).is_some_and(|phi| phi >= 0.0), "{text}");
    // The node stays a running member through an internal fault.
    assert_eq!(api.get("/api/v1/cluster/nodes/node-2").await.expect(200)["crashed"], false);

    // Targets that are not nodes: a RAC instance is its domain's (it takes mode crash only);
    // anything else is unknown (404).
    api.post("/api/v1/cluster/faults/crash", json!({"target": "instance-3", "mode": "internal_fault"})).await.expect_error(400, "invalid_request");
    let applied = api.post("/api/v1/cluster/faults/crash", json!({"target": "instance-3"})).await;
    assert_eq!(applied.json()["status"], "failed", "{}", applied.json());
    api.post("/api/v1/cluster/faults/crash", json!({"target": "node-77"})).await.expect_error(404, "node_not_found");
    api.post("/api/v1/cluster/faults/restart", json!({"target": "node-77"})).await.expect_error(404, "node_not_found");
}

#[actix_web::test]
async fn crash_restart_and_internal_fault_are_published_with_real_measurements() {
    let runtime = Runtime::start(TestConfig::memory().without_replicas().frequent_node_heartbeats().build()).expect("runtime starts");
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
    crash_node(&runtime, "node-2").await;
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
    let v = restart_node(&runtime, "node-2").await;
    assert!(!v.crashed);
    assert_eq!(v.status, NodeHealth::Healthy);
    let e = next_health_change(&mut sub, "node-2", |p| p.old_status == NodeHealth::Failed).await;
    match &e.payload {
        EventPayload::Cluster(ClusterEvent::NodeHealthChange(p)) => {
            assert_eq!(p.old_status, NodeHealth::Failed);
            assert_eq!(p.new_status, NodeHealth::Healthy);
            assert!(p.metrics.contains_key("restarts"), "metrics: {:?}", p.metrics);
            assert!(p.metrics.values().all(|v| v.is_finite()));
            // The failure detector's view: phi low again once the node answers (silence counts
            // from its restart), and the intervals it judges by.
            assert!(p.metrics["phi"] < 3.0, "metrics: {:?}", p.metrics);
            assert!(p.metrics["heartbeat_interval_mean_ms"] > 0.0 && p.metrics.contains_key("heartbeat_interval_std_ms"));
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
    let runtime = Runtime::start(TestConfig::memory().without_replicas().quiet().build()).expect("runtime starts");
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
    crash_node(&runtime, "node-2").await;
    restart_node(&runtime, "node-2").await;

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

// ---------------------------------------------------------------------------------------------
// Replicas and the primary.

#[actix_web::test]
async fn a_crashed_sync_replica_makes_sync_writes_time_out_and_catches_up_when_restarted() {
    let (runtime, api) = start_in_sync(TestConfig::replication().mode(ReplicationMode::Sync).sync_timeout_ms(300).build()).await;
    let mut events = subscribe(
        &runtime,
        only_types(&[EventType::ReplicaStatusChange, EventType::ReplicationError]),
    )
    .await;

    // A first write, acknowledged by the sync replica.
    let ack = api.insert("t", "before", json!("b")).await;
    assert!(acked_by(&ack).contains(&"replica-001".to_string()));

    // replica-001 crashes: the fault route takes a replica id. Its status goes to failed, and
    // that is published.
    let applied = api.crash("replica-001").await.expect(200);
    assert_eq!(applied["target"], "replica-001");
    let e = next_event_matching(&mut events, |e| is_status(e, "replica-001", "failed"), TIMEOUT).await;
    assert_eq!(e.severity, Severity::Error);
    assert_eq!(status_change(&e).unwrap().old_status, "in_sync");
    let view = api.replica("replica-001").await;
    assert_eq!(view["status"], "failed", "{view}");
    // A crashed replica serves no reads, and cannot be crashed twice.
    api.read("t", "before", "replica-001").await.expect_error(503, "replica_down");
    api.crash("replica-001").await.expect_error(409, "wrong_state");

    // A sync write now cannot be confirmed: 504 after sync_timeout_ms, saying it is durable on
    // the primary and that replica-001 is what is missing.
    let d = api.write(json!([{"op": "insert", "table": "t", "key": "during", "value": "d"}])).await.expect_error(504, "replication_timeout");
    assert_eq!(d["durable_on_primary"], true, "{d}");
    assert_eq!(d["missing"], json!(["replica-001"]), "{d}");
    assert_eq!(d["timeout_ms"], 300, "{d}");
    let timed_out_lsn = d["lsn_u64"].as_u64().expect("the 504 names the lsn");
    assert_eq!(d["lsn"], lsn_text(timed_out_lsn));
    assert!(!d["acknowledged_by"].as_array().unwrap().contains(&json!("replica-001")), "{d}");
    // It is on the primary.
    assert_eq!(api.value_at("t", "during", "primary").await, json!("d"));
    assert_eq!(api.current_lsn().await, timed_out_lsn);
    // And the timeout was published as a replication_error about replica-001.
    let e = next_event_matching(&mut events, |e| e.event_type == EventType::ReplicationError, TIMEOUT).await;
    match &e.payload {
        EventPayload::Replication(ReplicationEvent::ReplicationError(p)) => {
            assert_eq!(p.error_code, "sync_timeout", "{}", e.json());
            assert_eq!(p.replica_id, "replica-001", "{}", e.json());
            assert_eq!(p.failed_operation, "replicate_operations", "{}", e.json());
        }
        other => panic!("expected replication_error, got {other:?}"),
    }
    assert!(e.subjects.of(SubjectKind::Replica).contains(&"replica-001".to_string()));
    let status = api.status().await;
    assert_eq!(status["health"], "degraded", "{status}");

    // Restarted, replica-001 starts from its own durable state, catches up with the write it
    // missed, and reports in_sync again.
    api.restart("replica-001").await.expect(200);
    next_event_matching(&mut events, |e| is_status(e, "replica-001", "starting"), TIMEOUT).await;
    next_event_matching(&mut events, |e| is_status(e, "replica-001", "in_sync"), TIMEOUT).await;
    assert_eq!(api.eventually_value_at("t", "during", "replica-001").await, json!("d"));
    assert_eq!(api.value_at("t", "before", "replica-001").await, json!("b"));
    api.wait_caught_up(&["replica-001"]).await;
    assert_eq!(api.replica("replica-001").await["status"], "in_sync");
    api.restart("replica-001").await.expect_error(409, "wrong_state");

    // Sync writes work again.
    let ack = api.insert("t", "after", json!("a")).await;
    assert!(acked_by(&ack).contains(&"replica-001".to_string()), "{ack}");
    assert_eq!(api.read("t", "after", "replica-001").await.expect(200)["value"], json!("a"));
}

#[actix_web::test]
async fn a_crashed_primary_refuses_writes_and_comes_back_with_its_rows() {
    let (runtime, api) = start_in_sync(TestConfig::replication().build()).await;
    let mut errors = subscribe(&runtime, only_types(&[EventType::ReplicationError])).await;

    let ack = api.insert("t", "r1", json!("one")).await;
    let lsn1 = ack["lsn_u64"].as_u64().unwrap();
    api.wait_caught_up(&["replica-001", "replica-002"]).await;
    let h = api.get("/health/primary").await.expect(200);
    assert_eq!(h["role"], "primary", "{h}");

    // The primary crashes (fault injection names it by its id). That is published.
    let applied = api.crash("primary").await.expect(200);
    assert_eq!(applied["target"], "primary");
    let e = next_event_matching(&mut errors, |_| true, TIMEOUT).await;
    match &e.payload {
        EventPayload::Replication(ReplicationEvent::ReplicationError(p)) => assert_eq!(p.error_code, "primary_down", "{}", e.json()),
        other => panic!("expected replication_error, got {other:?}"),
    }
    assert_eq!(e.severity, Severity::Critical);

    // While it is down: writes and primary reads answer 503 primary_down, /health/primary 503,
    // and the status says so.
    let d = api.write(json!([{"op": "insert", "table": "t", "key": "r2", "value": "two"}])).await.expect_error(503, "primary_down");
    assert_eq!(d["primary"], "primary");
    api.read("t", "r1", "primary").await.expect_error(503, "primary_down");
    api.get("/health/primary").await.expect_error(503, "primary_down");
    let s = api.status().await;
    assert_eq!(s["primary_state"], "down", "{s}");
    assert_eq!(s["health"], "critical", "{s}");
    // The replicas still hold what they had and serve it.
    assert_eq!(api.value_at("t", "r1", "replica-001").await, json!("one"));
    // It cannot crash twice.
    api.crash("primary").await.expect_error(409, "wrong_state");

    // Restarted, it is writable again with its earlier rows, and lsns continue where they were.
    api.restart("primary").await.expect(200);
    api.get("/health/primary").await.expect(200);
    assert_eq!(api.status().await["primary_state"], "up");
    assert_eq!(api.value_at("t", "r1", "primary").await, json!("one"));
    assert_eq!(api.current_lsn().await, lsn1, "nothing was written while down");
    let ack = api.insert("t", "r2", json!("two")).await;
    assert!(ack["lsn_u64"].as_u64().unwrap() > lsn1, "{ack}");
    assert!(!acked_by(&ack).is_empty(), "semi_sync: a replica confirmed it: {ack}");
    api.restart("primary").await.expect_error(409, "wrong_state");
    // The replicas keep streaming from the restarted primary.
    api.wait_caught_up(&["replica-001", "replica-002"]).await;
    for from in ["primary", "replica-001", "replica-002"] {
        assert_eq!(api.value_at("t", "r1", from).await, json!("one"), "{from}");
        assert_eq!(api.value_at("t", "r2", from).await, json!("two"), "{from}");
    }
}

#[actix_web::test]
async fn a_write_waiting_for_replicas_when_the_primary_crashes_is_answered_at_once() {
    // A sync timeout long enough that an answer before it cannot be the timeout.
    let config = TestConfig::replication().mode(ReplicationMode::Sync).sync_timeout_ms(5000).build();
    let (_runtime, api) = start_in_sync(config).await;
    api.insert("t", "a", json!(1)).await;
    let before = api.current_lsn().await;

    // The sync replica is down, so the next write becomes durable on the primary and then waits.
    api.crash("replica-001").await.expect(200);
    let started = Instant::now();
    let write = api.write(json!([{"op": "insert", "table": "t", "key": "w", "value": 2}]));
    // While it waits (the primary's lsn moved: it is durable there), the primary crashes.
    let crash = async {
        poll_until("the write to be durable on the primary", || async {
            (api.current_lsn().await > before).then_some(())
        })
        .await;
        api.crash("primary").await.expect(200);
    };
    let (reply, ()) = futures_util::join!(write, crash);
    // The waiting caller is told at once that the primary is down, not left hanging until the
    // sync timeout.
    let d = reply.expect_error(503, "primary_down");
    assert_eq!(d["primary"], "primary");
    assert!(started.elapsed() < Duration::from_millis(5000), "answered before the sync timeout");

    // The batch was durable before the crash, so a restarted primary has it, and the sync replica
    // gets it once it is back.
    api.restart("primary").await.expect(200);
    assert_eq!(api.value_at("t", "w", "primary").await, json!(2));
    api.restart("replica-001").await.expect(200);
    assert_eq!(api.eventually_value_at("t", "w", "replica-001").await, json!(2));
}

#[actix_web::test]
async fn a_paused_replica_restarted_after_a_crash_is_still_paused() {
    let (runtime, api) = start_in_sync(TestConfig::replication().build()).await;
    let mut events = subscribe(
        &runtime,
        only_types(&[EventType::ReplicaStatusChange]).with_ids(SubjectKind::Replica, ["replica-002"]),
    )
    .await;

    // replica-002 is paused, then crashes, then is restarted. Pausing is the operator's decision
    // and survives the crash: nothing is shipped to it after the restart…
    api.pause("replica-002").await;
    next_event_matching(&mut events, |e| is_status(e, "replica-002", "paused"), TIMEOUT).await;
    api.crash("replica-002").await.expect(200);
    next_event_matching(&mut events, |e| is_status(e, "replica-002", "failed"), TIMEOUT).await;
    api.restart("replica-002").await.expect(200);
    next_event_matching(&mut events, |e| is_status(e, "replica-002", "starting"), TIMEOUT).await;
    api.insert("t", "x", json!(1)).await;

    // …so once it is up again its status says paused (published as starting -> paused), not
    // `starting` for as long as it stays paused.
    let e = match tokio::time::timeout(TIMEOUT, events.next_event()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("subscription ended"),
        Err(_) => panic!(
            "a restarted paused replica never left `starting`: GET says {}",
            api.replica("replica-002").await
        ),
    };
    let p = status_change(&e).unwrap();
    assert_eq!((p.old_status.as_str(), p.new_status.as_str()), ("starting", "paused"), "{}", e.json());
    assert_eq!(api.replica("replica-002").await["status"], "paused");
    api.read("t", "x", "replica-002").await.expect_error(404, "row_not_found");

    // Resumed, it catches up.
    api.resume("replica-002").await;
    assert_eq!(api.eventually_value_at("t", "x", "replica-002").await, json!(1));
}

// ---------------------------------------------------------------------------------------------
// Partitions and faulty links.

#[actix_web::test]
async fn a_replica_cut_off_by_a_partition_turns_disconnected_and_streams_again_once_healed() {
    // Heartbeats every 50 ms; silence for 300 ms means disconnected.
    let (runtime, api) = start_in_sync(TestConfig::replication().heartbeat_ms(50, 300).build()).await;
    let mut events = subscribe(
        &runtime,
        only_types(&[EventType::ReplicaStatusChange]).with_ids(SubjectKind::Replica, ["replica-002"]),
    )
    .await;
    let partition = |cut: bool| {
        let api = &api;
        async move {
            if cut {
                let groups = json!({"groups": [["primary", "replica-001"], ["replica-002"]]});
                let links = api.post("/api/v1/cluster/faults/partition", groups).await.expect(200);
                assert_eq!(links["partition"], json!([["primary", "replica-001"], ["replica-002"]]), "{links}");
                let faults = api.get("/api/v1/cluster/faults").await.expect(200);
                assert_eq!(faults["links"]["partition"], links["partition"], "GET shows the partition: {faults}");
            } else {
                let links = api.post("/api/v1/cluster/faults/heal", json!({})).await.expect(200);
                assert_eq!(links["partition"], json!([]), "{links}");
            }
        }
    };

    // The link to replica-002 (async) is cut. Writes go on: semi_sync's quorum of one is
    // replica-001. Once no heartbeat has come for the timeout, replica-002 is disconnected.
    partition(true).await;
    let ack = api.insert("t", "during", json!(1)).await;
    assert_eq!(acked_by(&ack), vec!["replica-001".to_string()], "{ack}");
    let e = next_event_matching(&mut events, |e| is_status(e, "replica-002", "disconnected"), TIMEOUT).await;
    let change = status_change(&e).unwrap();
    assert!(change.reason.starts_with("no heartbeat for "), "{}", e.json());
    assert_eq!(api.replica("replica-002").await["status"], "disconnected");
    let health = api.get("/api/v1/replication/health").await.expect(200);
    assert_eq!(health["healthy"], false, "{health}");
    let r2 = health["replicas"].as_array().unwrap().iter().find(|r| r["replica_id"] == "replica-002").unwrap().clone();
    assert_eq!(r2["healthy"], false, "{health}");
    assert!(
        r2["reasons"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().starts_with("no heartbeat for ")),
        "health says why: {health}"
    );
    // Nothing was shipped across the cut.
    api.read("t", "during", "replica-002").await.expect_error(404, "row_not_found");

    // Healed: its next heartbeat reconnects it, it is shipped what it missed from where it
    // stopped, and it is in sync again.
    partition(false).await;
    let e = next_event_matching(&mut events, |e| status_change(e).is_some_and(|p| p.old_status == "disconnected"), TIMEOUT).await;
    assert_ne!(status_change(&e).unwrap().new_status, "disconnected", "{}", e.json());
    next_event_matching(&mut events, |e| is_status(e, "replica-002", "in_sync"), TIMEOUT).await;
    assert_eq!(api.value_at("t", "during", "replica-002").await, json!(1));
    api.wait_caught_up(&["replica-001", "replica-002"]).await;
}

#[actix_web::test]
async fn partitions_and_faulty_links_are_checked_shown_and_healed() {
    let config = TestConfig::memory().without_replicas().quiet().replicas(&[("replica-001", ReplicaMode::Async)]).build();
    let (_runtime, api) = start(config).await;

    // Endpoints must be known to some domain (an unknown one is an unknown id: 404, as for a
    // crash); groups must be two or more, each endpoint in one.
    let d = api.post("/api/v1/cluster/faults/partition", json!({"groups": [["primary"], ["replica-404"]]})).await.expect_error(404, "node_not_found");
    assert_eq!(d["target"], "replica-404", "{d}");
    api.post("/api/v1/cluster/faults/partition", json!({"groups": [["primary", "replica-001"]]})).await.expect_error(400, "invalid_request");
    api.post("/api/v1/cluster/faults/partition", json!({"groups": [["primary"], ["primary"]]})).await.expect_error(400, "invalid_request");
    api.post("/api/v1/cluster/faults/link", json!({"from": "primary", "to": "replica-001", "drop_rate": 2.0})).await.expect_error(400, "invalid_request");
    let faults = api.get("/api/v1/cluster/faults").await.expect(200);
    assert_eq!(faults["links"]["partition"], json!([]), "nothing refused took effect: {faults}");
    assert_eq!(faults["links"]["links"], json!([]), "{faults}");

    // Node and replication endpoints can be named together; a link rule goes both ways.
    let p = api.post("/api/v1/cluster/faults/partition", json!({"groups": [["node-1", "primary"], ["replica-001"]]})).await.expect(200);
    assert_eq!(p["partition"], json!([["node-1", "primary"], ["replica-001"]]));
    let l = api.post("/api/v1/cluster/faults/link", json!({"from": "primary", "to": "replica-001", "delay_ms": 20})).await.expect(200);
    assert_eq!(l["links"].as_array().map(Vec::len), Some(2), "{l}");
    let faults = api.get("/api/v1/cluster/faults").await.expect(200);
    assert_eq!(faults["links"]["partition"], p["partition"]);
    assert_eq!(faults["links"]["links"], l["links"]);

    let healed = api.post("/api/v1/cluster/faults/heal", json!({})).await.expect(200);
    assert_eq!((healed["partition"].clone(), healed["links"].clone()), (json!([]), json!([])));
}

// ---------------------------------------------------------------------------------------------
// Fault injection off.

#[actix_web::test]
async fn fault_injection_can_be_turned_off() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().quiet().no_fault_injection().build()).await;

    api.post("/api/v1/cluster/faults/crash", json!({"target": "node-2"})).await.expect_error(403, "fault_injection_disabled");
    api.post("/api/v1/cluster/faults/crash", json!({"target": "node-2", "mode": "internal_fault"}))
        .await
        .expect_error(403, "fault_injection_disabled");
    api.post("/api/v1/cluster/faults/restart", json!({"target": "node-2"})).await.expect_error(403, "fault_injection_disabled");

    // Nothing happened to node-2.
    let node = api.get("/api/v1/cluster/nodes/node-2").await.expect(200);
    assert_eq!(node["status"], "healthy");
    assert_eq!(node["crashed"], false);
    let faults = api.get("/api/v1/cluster/faults").await.expect(200);
    assert_eq!(faults["fault_injection_enabled"], false);
    assert!(faults["faults"].as_array().unwrap().is_empty());
    assert!(api.events("event_types=node_health_change,actor_restarted").await.is_empty());
}

#[actix_web::test]
async fn partitions_are_refused_when_fault_injection_is_off() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().quiet().no_fault_injection().build()).await;
    api.post("/api/v1/cluster/faults/partition", json!({"groups": [["node-1"], ["node-2"]]})).await.expect_error(403, "fault_injection_disabled");
    api.post("/api/v1/cluster/faults/heal", json!({})).await.expect_error(403, "fault_injection_disabled");
    api.post("/api/v1/cluster/faults/link", json!({"from": "node-1", "to": "node-2", "drop_rate": 1.0})).await.expect_error(403, "fault_injection_disabled");
}
