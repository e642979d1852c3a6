//! Cluster membership and health, over the runtime's messages, REST and GraphQL: nodes join, are
//! patched and leave; health is measured before it is claimed; quorum is lost and regained once
//! each; membership and event ids survive a restart on the same data directory; and GraphQL's
//! queries, mutations and `nodeStatusChanges` subscription.
//!
//! Each test is a scenario told in its comments. Every wait is on an event, an answer or a frame,
//! bounded by `common::TIMEOUT`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use actix_web::http::StatusCode;
use clusterd::messages::cluster::*;
use clusterd::messages::events::*;
use clusterd::messages::registry::Delivery;
use clusterd::model::{ClusterHealthStatus, NodeHealth};
use clusterd::Runtime;
use serde_json::{json, Value};

use common::api::{metric, seq, start, types};
use common::graphql::error_code;
use common::server::Server;
use common::*;

// ---------------------------------------------------------------------------------------------
// Membership and health over REST and the runtime.

#[actix_web::test]
async fn every_healthy_node_has_answered_a_heartbeat() {
    // Heartbeats every second: any answer seen below comes from the first, measuring probe.
    let runtime = Runtime::start(TestConfig::memory().without_replicas().quiet_with_leader().build()).expect("runtime starts");

    // At startup: every bootstrap node was probed before it was announced.
    for n in runtime.membership().send(ListNodes).await.expect("answers") {
        assert_eq!(n.status, NodeHealth::Healthy, "{n:?}");
        assert!(n.heartbeat_rtt_micros.is_some(), "{} is healthy without an answer", n.node_id);
    }

    // A joining node: healthy in the answer to AddNode, with its measured round trip.
    let view = add_node(&runtime, "node-4", Default::default()).await;
    assert_eq!(view.status, NodeHealth::Healthy);
    assert!(view.heartbeat_rtt_micros.is_some(), "node-4 is healthy without an answer");

    // A restarted node: failed -> healthy is published only after it answered.
    let mut sub = runtime
        .subscribe(only_types(&[EventType::NodeHealthChange]).with_ids(SubjectKind::Node, ["node-2"]))
        .await
        .expect("subscribe");
    crash_node(&runtime, "node-2").await;
    let crashed = next_node_event(&mut sub, EventType::NodeHealthChange, "node-2").await;
    let restarted = restart_node(&runtime, "node-2").await;
    assert_eq!(restarted.status, NodeHealth::Healthy);
    assert!(restarted.heartbeat_rtt_micros.is_some(), "restarted node-2 is healthy without an answer");
    let back = next_node_event(&mut sub, EventType::NodeHealthChange, "node-2").await;
    assert!(back.seq > crashed.seq);
    match &back.payload {
        EventPayload::Cluster(ClusterEvent::NodeHealthChange(p)) => {
            assert_eq!(p.old_status, NodeHealth::Failed);
            assert_eq!(p.new_status, NodeHealth::Healthy);
            assert!(p.metrics.contains_key("heartbeat_rtt_micros"), "{:?}", p.metrics);
        }
        other => panic!("expected a health change, got {other:?}"),
    }
    let view = get_node(&runtime, "node-2").await;
    assert_eq!(view.expect("node-2").status, NodeHealth::Healthy);
}

#[actix_web::test]
async fn a_node_joins_is_patched_and_leaves_over_rest_and_the_events_tell_the_story() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().quiet_with_leader().build()).await;

    // node-4 joins with an address and metadata: 201 with its view.
    let created = api
        .post(
            "/api/v1/cluster/nodes",
            json!({"node_id": "node-4", "address": "10.0.0.4:7000", "metadata": {"rack": "r1", "zone": "z1"}}),
        )
        .await
        .expect(201);
    assert_eq!(created["node_id"], "node-4");
    assert_eq!(created["address"], "10.0.0.4:7000");
    assert_eq!(created["metadata"], json!({"rack": "r1", "zone": "z1"}));
    assert_eq!(created["status"], "healthy");
    assert_eq!(created["crashed"], false);
    assert_eq!(created["role"], "voter", "it joined as a learner and, caught up, was promoted: {created}");

    // It is listed, and readable on its own.
    let (ids, list) = api.nodes().await;
    assert_eq!(ids, vec!["node-1", "node-2", "node-3", "node-4"]);
    assert_eq!(list["total"], 4);
    let one = api.get("/api/v1/cluster/nodes/node-4").await.expect(200);
    assert_eq!(one["metadata"], json!({"rack": "r1", "zone": "z1"}));
    assert_eq!(one["address"], "10.0.0.4:7000");
    let health = api.get("/api/v1/cluster/health/node-4").await.expect(200);
    assert_eq!(health["node_id"], "node-4");
    assert_eq!(health["status"], "healthy");

    // A metadata patch merges: null removes a key, others are set, the rest stays.
    let patched = api
        .patch("/api/v1/cluster/nodes/node-4", json!({"metadata": {"zone": null, "row": 7, "rack": "r2"}}))
        .await
        .expect(200);
    assert_eq!(patched["metadata"], json!({"rack": "r2", "row": 7}));
    let one = api.get("/api/v1/cluster/nodes/node-4").await.expect(200);
    assert_eq!(one["metadata"], json!({"rack": "r2", "row": 7}));
    let untouched = api.patch("/api/v1/cluster/nodes/node-4", json!({"metadata": {}})).await.expect(200);
    assert_eq!(untouched["metadata"], json!({"rack": "r2", "row": 7}));

    // It leaves: 204 with no body, then it is gone.
    let gone = api.delete("/api/v1/cluster/nodes/node-4").await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert!(gone.body.is_empty());
    api.get("/api/v1/cluster/nodes/node-4").await.expect_error(404, "node_not_found");
    api.delete("/api/v1/cluster/nodes/node-4").await.expect_error(404, "node_not_found");
    assert_eq!(api.nodes().await.0, vec!["node-1", "node-2", "node-3"]);

    // The events about node-4: its join as a learner, as a voter, then its departure, each a
    // complete envelope.
    let about_4 = api.events("node_ids=node-4").await;
    assert_eq!(types(&about_4), vec!["node_joined", "node_joined", "node_left"]);
    let roles: Vec<&str> = about_4.iter().map(|e| e["payload"]["node_role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["learner", "voter", "voter"]);
    for (e, (severity, size)) in about_4.iter().zip([("info", 4), ("info", 4), ("warning", 3)]) {
        for field in [
            "event_id", "seq", "category", "event_type", "severity", "source", "timestamp", "timestamp_ms",
            "subjects", "payload",
        ] {
            assert!(e.get(field).is_some(), "envelope lacks {field}: {e}");
        }
        assert_eq!(e["event_id"], format!("evt_{:012}", seq(e)));
        assert_eq!(e["category"], "clustering");
        assert_eq!(e["severity"], severity);
        assert_eq!(e["source"], "node:node-4");
        assert_eq!(e["timestamp"].as_i64().unwrap(), e["timestamp_ms"].as_i64().unwrap() / 1000);
        assert_eq!(e["subjects"]["node_ids"], json!(["node-4"]));
        assert_eq!(e["payload"]["event_type"], e["event_type"], "the payload repeats its type");
        assert_eq!(e["payload"]["timestamp"], e["timestamp"], "the payload repeats the timestamp");
        assert_eq!(e["payload"]["node_id"], "node-4");
        assert_eq!(e["payload"]["node_address"], "10.0.0.4:7000");
        assert_eq!(e["payload"]["cluster_size"], size);
        assert_eq!(e["payload"]["has_quorum"], true);
    }
    let (join_seq, left_seq) = (seq(&about_4[0]), seq(&about_4[2]));
    assert!(join_seq < left_seq);

    // Filters narrow: by type, by id and type together (ANDed), by several ids (ORed).
    assert_eq!(types(&api.events("event_types=node_left").await), vec!["node_left"]);
    let node1_joins = api.events("node_ids=node-1&event_types=node_joined").await;
    assert_eq!(node1_joins.len(), 1);
    assert_eq!(node1_joins[0]["payload"]["node_id"], "node-1");
    assert_eq!(node1_joins[0]["payload"]["reason"], "bootstrap");
    assert!(api.events("node_ids=node-1&event_types=node_left").await.is_empty());
    let either = api.events("node_ids=node-1,node-4&event_types=node_joined").await;
    let either_nodes: Vec<&str> = either.iter().map(|e| e["payload"]["node_id"].as_str().unwrap()).collect();
    assert_eq!(either_nodes, vec!["node-1", "node-4", "node-4"]);
    assert_eq!(api.events("categories=clustering&event_types=node_joined").await.len(), 5);
    assert!(api.events("categories=replication").await.is_empty());
    assert_eq!(api.events("min_severity=warning&event_types=node_joined,node_left").await.len(), 1);

    // since_seq: only what came after.
    let after_join = api.events(&format!("since_seq={join_seq}&event_types=node_joined,node_left")).await;
    assert_eq!(types(&after_join), vec!["node_joined", "node_left"]);
    assert!(api.events(&format!("since_seq={left_seq}&node_ids=node-4")).await.is_empty());

    // limit: the oldest `limit`, in order; with since_seq it pages.
    let joins = api.events("event_types=node_joined").await;
    assert_eq!(joins.len(), 5);
    let first_two = api.events("event_types=node_joined&limit=2").await;
    assert_eq!(first_two, joins[..2].to_vec());
    let page2 = api.events(&format!("event_types=node_joined&limit=2&since_seq={}", seq(&first_two[1]))).await;
    assert_eq!(page2, joins[2..4].to_vec());
    let all = api.events("").await;
    assert!(all.windows(2).all(|w| seq(&w[0]) < seq(&w[1])), "oldest first, strictly increasing");
}

#[actix_web::test]
async fn node_metadata_is_capped_the_same_way_when_a_node_joins_as_when_it_is_patched() {
    // PATCH refuses metadata over 64 KiB ("a node's metadata may hold at most 64 KiB"). A join must
    // hold to the same rule; otherwise a node can be created that no later patch can touch.
    let (_runtime, api) = start(TestConfig::memory().without_replicas().quiet().build()).await;
    let big = "x".repeat(70 * 1024);

    let d = api
        .patch("/api/v1/cluster/nodes/node-1", json!({"metadata": {"blob": big}}))
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(d["field"], "metadata");

    let joined = api.post("/api/v1/cluster/nodes", json!({"node_id": "node-4", "metadata": {"blob": big}})).await;
    if joined.status == StatusCode::CREATED {
        // Show what the inconsistency leads to before failing: even an empty patch is refused.
        let empty = api.patch("/api/v1/cluster/nodes/node-4", json!({"metadata": {}})).await;
        panic!(
            "a join with 70 KiB of metadata was accepted; afterwards an empty PATCH answers {} {}",
            empty.status,
            empty.text()
        );
    }
    let d = joined.expect_error(400, "invalid_request");
    assert_eq!(d["field"], "metadata");
    assert_eq!(api.nodes().await.0, vec!["node-1", "node-2", "node-3"]);
}

#[actix_web::test]
async fn a_removal_that_would_leave_no_live_quorum_of_voters_is_refused_and_changes_nothing() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().quiet_with_leader().build()).await;
    api.raft_leader().await;
    // node-2 down: of node-1 and node-2, left after node-3's removal, one is up and a quorum is two.
    api.post("/api/v1/cluster/faults/crash", json!({"target": "node-2"})).await.expect(200);
    let refused = api.delete("/api/v1/cluster/nodes/node-3").await.expect_error(409, "would_lose_quorum");
    assert_eq!(refused["node_id"], "node-3");
    assert!(refused["reason"].as_str().unwrap().contains("1 of the 2 voters left would be up"), "{refused}");
    assert_eq!(api.nodes().await.0, vec!["node-1", "node-2", "node-3"], "the refused removal changed nothing");
    assert!(api.events("event_types=node_left").await.is_empty());

    // node-2 back: node-3 leaves; then node-2 (node-1 alone is a quorum of one), but not node-1,
    // the only voter left: whoever led hands over first.
    api.post("/api/v1/cluster/faults/restart", json!({"target": "node-2"})).await.expect(200);
    common::poll_until("node-2 in the group again", || async {
        let raft = api.get("/api/v1/cluster/raft").await.expect(200);
        let back = |n: &&Value| n["node_id"] == "node-2" && (n["role"] == "leader" || n["role"] == "follower" && n["leader_id"].is_string());
        raft["nodes"].as_array()?.iter().find(back).map(|_| ())
    })
    .await;
    for n in ["node-3", "node-2"] {
        let r = api.delete(&format!("/api/v1/cluster/nodes/{n}")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{n}: {}", r.text());
    }
    let last = api.delete("/api/v1/cluster/nodes/node-1").await.expect_error(409, "would_lose_quorum");
    assert!(last["reason"].as_str().unwrap().contains("only voter"), "{last}");
    assert_eq!(api.nodes().await.0, vec!["node-1"]);
    assert_eq!(types(&api.events("event_types=node_left").await), vec!["node_left", "node_left"]);
    let status = api.get("/api/v1/cluster/status").await.expect(200);
    assert_eq!((status["leader"].as_str(), status["has_quorum"].as_bool()), (Some("node-1"), Some(true)), "{status}");
    let put = actix_web::test::TestRequest::put().uri("/api/v1/cluster/kv/alone").set_json(json!({"value": 1}));
    assert_eq!(api.send(put).await.status, StatusCode::OK, "one voter is a quorum");
}

#[actix_web::test]
async fn crashing_two_of_three_nodes_loses_quorum_and_restarting_one_restores_it() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().quiet().build()).await;
    let health = api.get("/api/v1/cluster/health").await.expect(200);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["has_quorum"], true);
    assert_eq!(health["nodes"].as_array().unwrap().len(), 3);

    // One down of three: degraded, still a quorum.
    api.post("/api/v1/cluster/faults/crash", json!({"target": "node-2"})).await.expect(200);
    let health = api.get("/api/v1/cluster/health").await.expect(200);
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["has_quorum"], true);
    assert!(api.events("event_types=quorum_lost").await.is_empty());

    // Two down: critical, no quorum, and quorum_lost is retained.
    api.post("/api/v1/cluster/faults/crash", json!({"target": "node-3"})).await.expect(200);
    let health = api.get("/api/v1/cluster/health").await.expect(200);
    assert_eq!(health["status"], "critical");
    assert_eq!(health["has_quorum"], false);
    assert_eq!(health["healthy_nodes"], 1);
    assert_eq!(health["total_nodes"], 3);
    assert_eq!(health["quorum_size"], 2);
    let status = api.get("/api/v1/cluster/status").await.expect(200);
    assert_eq!(status["has_quorum"], false);
    assert_eq!(status["health"], "critical");
    assert_eq!(status["members"], json!(["node-1", "node-2", "node-3"]));
    let lost = api.events("event_types=quorum_lost").await;
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0]["severity"], "critical");
    assert_eq!(lost[0]["category"], "clustering");
    assert_eq!(lost[0]["payload"]["has_quorum"], false);
    assert_eq!(lost[0]["payload"]["healthy_nodes"], 1);
    assert_eq!(lost[0]["payload"]["total_nodes"], 3);
    assert_eq!(lost[0]["payload"]["quorum_size"], 2);
    let node3 = api.events("node_ids=node-3&event_types=node_health_change").await;
    assert_eq!(node3.len(), 1);
    assert_eq!(node3[0]["payload"]["cluster_status"], "critical");
    let text = api.metrics().await;
    assert_eq!(metric(&text, "clusterd_cluster_has_quorum"), Some(0.0));

    // One back: quorum restored (once), degraded until the last one returns.
    api.post("/api/v1/cluster/faults/restart", json!({"target": "node-2"})).await.expect(200);
    let health = api.get("/api/v1/cluster/health").await.expect(200);
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["has_quorum"], true);
    let restored = api.events("event_types=quorum_restored").await;
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0]["payload"]["has_quorum"], true);
    assert_eq!(restored[0]["payload"]["healthy_nodes"], 2);
    assert!(seq(&restored[0]) > seq(&lost[0]));
    assert_eq!(api.events("event_types=quorum_lost").await.len(), 1);
    assert_eq!(metric(&api.metrics().await, "clusterd_cluster_has_quorum"), Some(1.0));
}

#[actix_web::test]
async fn losing_and_regaining_quorum_is_published_once_each() {
    let runtime = Runtime::start(TestConfig::memory().without_replicas().quiet().build()).expect("runtime starts");
    settle(&runtime).await;
    let mut sub = runtime
        .subscribe(only_types(&[EventType::QuorumLost, EventType::QuorumRestored]))
        .await
        .expect("subscribe");

    // One node down of three: still a quorum, nothing published about quorum.
    crash_node(&runtime, "node-2").await;
    let status = runtime.membership().send(GetClusterStatus).await.expect("answers");
    assert!(status.has_quorum);
    assert_eq!(status.health, ClusterHealthStatus::Degraded);

    // Two down: quorum lost.
    crash_node(&runtime, "node-3").await;
    let e = next_event_matching(&mut sub, |_| true, TIMEOUT).await;
    assert_eq!(e.event_type, EventType::QuorumLost, "{}", e.json());
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
    restart_node(&runtime, "node-3").await;
    let e = next_event_matching(&mut sub, |_| true, TIMEOUT).await;
    assert_eq!(e.event_type, EventType::QuorumRestored, "{}", e.json());
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
    let config = TestConfig::memory().without_replicas().frequent_node_heartbeats().disk(dir.path()).build();

    // First life: node-4 joins with metadata which is then patched, node-5 joins and leaves, and
    // node-3 (a bootstrap node) leaves.
    let (before_max_seq, before_ids, node4_before, mut watcher) = {
        let runtime = Runtime::start(config.clone()).expect("runtime starts on disk");
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
    let runtime = Runtime::start(config.clone()).expect("runtime starts again on the same dir");

    // A subscriber of the first life was told the runtime went away: its stream ended.
    match next_delivery(&mut watcher).await {
        None | Some(Delivery::Close { .. }) => {}
        Some(Delivery::Event(e)) => panic!("no event after shutdown: {}", e.json()),
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
        runtime = Runtime::start(config.clone())
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

// ---------------------------------------------------------------------------------------------
// GraphQL.

#[actix_web::test]
async fn queries_and_mutations_over_post() {
    let server = Server::start(TestConfig::memory().build());

    let r = server
        .post(
            "{ clusterStatus { members totalNodes quorumSize hasQuorum health leader } }",
            None,
        )
        .await;
    assert_eq!(
        r["data"]["clusterStatus"]["members"],
        json!(["node-1", "node-2", "node-3"]),
        "{r}"
    );
    assert_eq!(r["data"]["clusterStatus"]["totalNodes"], 3);
    assert_eq!(r["data"]["clusterStatus"]["hasQuorum"], true);
    assert_eq!(r["data"]["clusterStatus"]["leader"], Value::Null);

    let r = server
        .post(
            "{ clusterHealth { status totalNodes nodes { nodeId status } } }",
            None,
        )
        .await;
    assert_eq!(
        r["data"]["clusterHealth"]["nodes"].as_array().map(Vec::len),
        Some(3),
        "{r}"
    );

    let r = server
        .post("{ nodes { nodeId role status metadata crashed } }", None)
        .await;
    assert_eq!(r["data"]["nodes"][0]["nodeId"], "node-1", "{r}");
    let r = server
        .post(
            r#"{ node(id: "node-2") { nodeId status } missing: node(id: "node-9") { nodeId } }"#,
            None,
        )
        .await;
    assert_eq!(r["data"]["node"]["nodeId"], "node-2", "{r}");
    assert_eq!(r["data"]["missing"], Value::Null);

    let r = server
        .post(
            r#"mutation { addNode(nodeId: "node-4", address: "10.0.0.4:7000", metadata: {rack: "r1", zone: "a"}) { nodeId address metadata } }"#,
            None,
        )
        .await;
    assert_eq!(r["data"]["addNode"]["nodeId"], "node-4", "{r}");
    assert_eq!(r["data"]["addNode"]["address"], "10.0.0.4:7000");
    assert_eq!(
        r["data"]["addNode"]["metadata"],
        json!({"rack": "r1", "zone": "a"})
    );

    let r = server
        .post(r#"mutation { addNode(nodeId: "node-4") { nodeId } }"#, None)
        .await;
    assert_eq!(error_code(&r), "node_exists", "{r}");
    let r = server
        .post(
            r#"mutation { addNode(nodeId: "bad id!") { nodeId } }"#,
            None,
        )
        .await;
    assert_eq!(error_code(&r), "invalid_request", "{r}");
    let r = server
        .post(
            r#"mutation { addNode(nodeId: "node-5", metadata: [1]) { nodeId } }"#,
            None,
        )
        .await;
    assert_eq!(error_code(&r), "invalid_request", "{r}");

    // Merge patch: null removes a key, others are set.
    let r = server
        .post(r#"mutation { updateNode(nodeId: "node-4", metadata: {zone: null, tier: 2}) { metadata } }"#, None)
        .await;
    assert_eq!(
        r["data"]["updateNode"]["metadata"],
        json!({"rack": "r1", "tier": 2}),
        "{r}"
    );
    let r = server
        .post(
            r#"mutation { updateNode(nodeId: "node-9", metadata: {}) { nodeId } }"#,
            None,
        )
        .await;
    assert_eq!(error_code(&r), "node_not_found", "{r}");
    assert_eq!(r["errors"][0]["extensions"]["details"]["node_id"], "node-9");

    // The join was published and retained: as a learner, then as a voter.
    let r = server
        .post(
            r#"{ events(filter: {nodeIds: ["node-4"], eventTypes: ["node_joined"]}) { eventId seq category eventType severity source timestamp timestampMs subjects payload } }"#,
            None,
        )
        .await;
    let events = r["data"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("events: {r}"));
    assert_eq!(events.len(), 2, "{r}");
    assert_eq!(events[1]["payload"]["node_role"], "voter", "{r}");
    let e = &events[0];
    assert_eq!(e["payload"]["node_role"], "learner", "{r}");
    assert_eq!(e["eventType"], "node_joined");
    assert_eq!(e["category"], "CLUSTERING");
    assert_eq!(e["subjects"], json!({"node_ids": ["node-4"]}));
    assert_eq!(e["payload"]["node_id"], "node-4");
    assert_eq!(e["payload"]["event_type"], "node_joined");
    assert!(e["eventId"]
        .as_str()
        .is_some_and(|id| id.starts_with("evt_")));
    let seq = events[1]["seq"].as_u64().expect("seq");

    let r = server.post(&format!("{{ events(sinceSeq: {seq}, filter: {{nodeIds: [\"node-4\"], eventTypes: [\"node_joined\"]}}) {{ seq }} }}"), None).await;
    assert_eq!(r["data"]["events"], json!([]), "{r}");
    let r = server.post("{ events(limit: 1) { seq } }", None).await;
    assert_eq!(r["data"]["events"].as_array().map(Vec::len), Some(1), "{r}");
    let r = server.post("{ events(limit: 10001) { seq } }", None).await;
    assert_eq!(error_code(&r), "invalid_request", "{r}");
    let r = server
        .post(
            r#"{ events(filter: {eventTypes: ["no_such_event"]}) { seq } }"#,
            None,
        )
        .await;
    assert_eq!(error_code(&r), "invalid_request", "{r}");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("eventTypes")),
        "{r}"
    );
    let r = server
        .post(r#"{ events(filter: {minSeverity: "loud"}) { seq } }"#, None)
        .await;
    assert_eq!(error_code(&r), "invalid_request", "{r}");

    let r = server
        .post(r#"mutation { removeNode(nodeId: "node-4") }"#, None)
        .await;
    assert_eq!(r["data"]["removeNode"], true, "{r}");
    let r = server
        .post(r#"mutation { removeNode(nodeId: "node-4") }"#, None)
        .await;
    assert_eq!(error_code(&r), "node_not_found", "{r}");
}

#[actix_web::test]
async fn transport_ws_node_status_changes_for_one_node() {
    let server = Server::start(TestConfig::memory().build());
    let mut ws = server.ws("/graphql/ws", "graphql-transport-ws").await;
    ws.init(json!({})).await;
    ws.send(json!({
        "id": "1", "type": "subscribe",
        "payload": { "query": r#"subscription { nodeStatusChanges(nodeId: "node-2") { nodeId oldStatus newStatus role reason metrics seq eventId severity timestamp } }"# }
    }))
    .await;
    server.wait_subscribed("nodeStatusChanges").await;

    // node-3 first: its event comes earlier in seq order, so had the filter let it through it
    // would be seen before node-2's.
    crash_node(&server.runtime, "node-3").await;
    crash_node(&server.runtime, "node-2").await;
    loop {
        let msg = ws.json().await;
        assert_eq!(msg["type"], "next", "{msg}");
        assert_eq!(msg["id"], "1");
        let e = &msg["payload"]["data"]["nodeStatusChanges"];
        assert_eq!(e["nodeId"], "node-2", "only node-2's changes: {msg}");
        assert!(
            e["seq"].as_u64().is_some() && e["eventId"].as_str().is_some(),
            "{msg}"
        );
        if e["newStatus"] == "FAILED" {
            assert_eq!(e["severity"], "ERROR");
            assert!(e["metrics"].is_object());
            break;
        }
    }

    // A bad filter is an error for that subscription only.
    ws.send(json!({
        "id": "2", "type": "subscribe",
        "payload": { "query": r#"subscription { events(filter: {eventTypes: ["bogus"]}) { seq } }"# }
    }))
    .await;
    let msg = ws.json().await;
    assert_eq!(msg["id"], "2", "{msg}");
    assert_eq!(error_code(&msg["payload"]), "invalid_request", "{msg}");

    // Completing the subscription ends it in the registry and in the metrics. The server drops
    // the subscription (which unsubscribes it) before it answers `complete`, so by then both
    // show it gone. (The refused subscription "2" completes too, possibly first.)
    ws.send(json!({ "id": "1", "type": "complete" })).await;
    ws.until_complete("1", &["1", "2"]).await;
    assert_eq!(server.graphql_subscriptions().await, 0);
    let mut metrics = String::new();
    server.runtime.metrics().render(&mut metrics);
    assert!(
        metrics.contains("\nclusterd_graphql_subscriptions_active 0\n"),
        "{metrics}"
    );
}

#[actix_web::test]
async fn a_change_of_members_asked_for_while_the_leader_is_down_waits_for_the_next_one() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().quiet_with_leader().build()).await;
    let first = api.raft_leader().await;
    api.post("/api/v1/cluster/faults/crash", json!({"target": first})).await.expect(200);
    // At once: no leader runs, and the group elects another meanwhile.
    let created = api.post("/api/v1/cluster/nodes", json!({"node_id": "node-4"})).await.expect(201);
    assert_eq!(created["role"], "voter", "{created}");
    let status = api.get("/api/v1/cluster/status").await.expect(200);
    assert_ne!(status["leader"], first, "{status}");
}
