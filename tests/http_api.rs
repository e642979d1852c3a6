//! The whole HTTP application (`clusterd::http::app`) driven in-process with `actix_web::test`:
//! the error shape, membership over REST, retained events, fault injection, cluster health, auth,
//! `/metrics`, the OpenAPI document and Swagger UI, the routes of later domains, and WebSocket
//! management.
//!
//! Each test is a scenario told in its comments. Every wait is on an event or an answer, bounded by
//! `common::TIMEOUT`.

mod common;


use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use clusterd::config::Config;
use clusterd::messages::events::{EventType, SubjectKind};
use clusterd::{Runtime, RuntimeHandle};
use serde_json::{json, Value};

use common::api::Api;
use common::*;

// ---------------------------------------------------------------------------------------------
// A small client for the in-process app.

impl Api {
    /// The node ids, in order, and the whole list.
    async fn nodes(&self) -> (Vec<String>, Value) {
        let list = self.get("/api/v1/cluster/nodes").await.expect(200);
        let ids = list["nodes"]
            .as_array()
            .expect("nodes is an array")
            .iter()
            .map(|n| n["node_id"].as_str().expect("node_id").to_string())
            .collect();
        (ids, list)
    }

    /// `GET /api/v1/events?<query>`: the events array (and checks the body's other fields).
    async fn events(&self, query: &str) -> Vec<Value> {
        let body = self.get(&format!("/api/v1/events?{query}")).await.expect(200);
        let events = body["events"].as_array().expect("events is an array").clone();
        assert_eq!(body["count"], events.len(), "count matches; body: {body}");
        assert!(body["current_seq"].is_u64());
        assert!(body["oldest_retained_seq"].is_u64());
        assert!(body["replay_truncated"].is_boolean());
        events
    }

    async fn metrics(&self) -> String {
        let r = self.get("/metrics").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(r.content_type.starts_with("text/plain"), "content-type {}", r.content_type);
        r.text()
    }
}

/// Starts a runtime for `config` and the app on it; returns once bootstrap events are published.
async fn start(config: Config) -> (RuntimeHandle, Api) {
    let runtime = Runtime::start(config).expect("runtime starts");
    let app = test::init_service(clusterd::http::app(clusterd::http::AppState::new(runtime.clone()))).await;
    settle(&runtime).await;
    (runtime, Api::new(app, TestRequest::to_request))
}

/// The value of one Prometheus series (`name{labels}` exactly as rendered), if present.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        if name == series {
            value.parse().ok()
        } else {
            None
        }
    })
}

fn seq(e: &Value) -> u64 {
    e["seq"].as_u64().unwrap_or_else(|| panic!("seq is a u64: {e}"))
}

fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["event_type"].as_str().expect("event_type").to_string()).collect()
}

// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn every_bad_request_gets_the_error_shape_and_changes_nothing() {
    let mut config = quiet_config();
    config.server.max_body_bytes = 4096;
    let (_runtime, api) = start(config).await;
    let (ids_before, list_before) = api.nodes().await;
    assert_eq!(ids_before, vec!["node-1", "node-2", "node-3"]);
    let nodes = "/api/v1/cluster/nodes";

    // Bodies that are not what POST /nodes takes.
    api.raw(TestRequest::post().uri(nodes), r#"{"node_id": "node-9""#).await.expect_error(400, "invalid_json");
    api.raw(TestRequest::post().uri(nodes), "not json at all").await.expect_error(400, "invalid_json");
    let d = api.post(nodes, json!({"node_id": "node-9", "colour": "red"})).await.expect_error(400, "invalid_json");
    assert_eq!(d["field"], "colour", "the unknown field is named: {d}");
    api.post(nodes, json!({"node_id": 42})).await.expect_error(400, "invalid_json");
    api.post(nodes, json!({"node_id": "node-9", "metadata": [1, 2]})).await.expect_error(400, "invalid_json");
    api.post(nodes, json!(["node-9"])).await.expect_error(400, "invalid_json");
    let d = api.post(nodes, json!({"address": "10.0.0.9:7000"})).await.expect_error(400, "invalid_json");
    assert_eq!(d["field"], "node_id", "the missing field is named: {d}");

    // Ids the server does not accept.
    let d = api.post(nodes, json!({"node_id": "bad id!"})).await.expect_error(400, "invalid_request");
    assert_eq!(d["field"], "node_id");
    api.post(nodes, json!({"node_id": ""})).await.expect_error(400, "invalid_request");
    api.post(nodes, json!({"node_id": "n".repeat(65)})).await.expect_error(400, "invalid_request");
    api.post(nodes, json!({"node_id": "node/9"})).await.expect_error(400, "invalid_request");

    // A body over server.max_body_bytes, valid JSON or not.
    let huge = json!({"node_id": "node-9", "metadata": {"blob": "x".repeat(8192)}});
    let d = api.post(nodes, huge.clone()).await.expect_error(413, "payload_too_large");
    assert_eq!(d["limit"], 4096);
    api.patch("/api/v1/cluster/nodes/node-1", json!({"metadata": {"blob": "x".repeat(8192)}}))
        .await
        .expect_error(413, "payload_too_large");

    // PATCH bodies that are not a metadata patch.
    api.patch("/api/v1/cluster/nodes/node-1", json!({"metadata": 5})).await.expect_error(400, "invalid_json");
    api.patch("/api/v1/cluster/nodes/node-1", json!({"labels": {}})).await.expect_error(400, "invalid_json");
    api.raw(TestRequest::patch().uri("/api/v1/cluster/nodes/node-1"), "{").await.expect_error(400, "invalid_json");

    // Ids nobody has.
    for reply in [
        api.get("/api/v1/cluster/nodes/node-404").await,
        api.patch("/api/v1/cluster/nodes/node-404", json!({"metadata": {"a": 1}})).await,
        api.delete("/api/v1/cluster/nodes/node-404").await,
        api.get("/api/v1/cluster/health/node-404").await,
    ] {
        let d = reply.expect_error(404, "node_not_found");
        assert_eq!(d["node_id"], "node-404");
    }

    // An id that is taken.
    let d = api.post(nodes, json!({"node_id": "node-1"})).await.expect_error(409, "node_exists");
    assert_eq!(d["node_id"], "node-1");

    // Paths and methods that do not exist still answer with the shape, never an empty or HTML body.
    api.get("/api/v1/nope").await.expect_error(404, "route_not_found");
    api.get("/nope").await.expect_error(404, "route_not_found");
    api.get("/api/v1/cluster/nodes/node-1/nope").await.expect_error(404, "route_not_found");
    // A known path with a method it does not have.
    api.send(TestRequest::put().uri(nodes)).await.expect_error(405, "method_not_allowed");
    api.send(TestRequest::post().uri("/api/v1/cluster/nodes/node-1")).await.expect_error(405, "method_not_allowed");
    api.send(TestRequest::delete().uri("/api/v1/events")).await.expect_error(405, "method_not_allowed");

    // Filters GET /api/v1/events does not understand.
    for (query, field) in [
        ("bogus=1", "bogus"),
        ("nodes=node-1", "nodes"),
        ("since_seq=abc", "since_seq"),
        ("since_seq=-1", "since_seq"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=10001", "limit"),
        ("event_types=node_exploded", "event_types"),
        ("categories=weather", "categories"),
        ("min_severity=loud", "min_severity"),
        ("include_health_changes=maybe", "include_health_changes"),
    ] {
        let d = api.get(&format!("/api/v1/events?{query}")).await.expect_error(400, "invalid_request");
        assert_eq!(d["field"], field, "GET /api/v1/events?{query}: {d}");
    }

    // Fault bodies that make no sense.
    api.post("/api/v1/cluster/faults/crash", json!({"target": "node-2", "mode": "explode"}))
        .await
        .expect_error(400, "invalid_request");
    api.post("/api/v1/cluster/faults/crash", json!({})).await.expect_error(400, "invalid_json");
    api.post("/api/v1/cluster/faults/crash", json!({"target": "node-2", "when": "now"}))
        .await
        .expect_error(400, "invalid_json");
    api.post("/api/v1/cluster/faults/restart", json!({"target": "node-2", "mode": "crash"}))
        .await
        .expect_error(400, "invalid_request");

    // None of it changed anything: same members, same metadata, nobody crashed, and the only
    // membership events are the bootstrap joins.
    let (ids_after, list_after) = api.nodes().await;
    assert_eq!(ids_after, ids_before);
    for (a, b) in list_before["nodes"].as_array().unwrap().iter().zip(list_after["nodes"].as_array().unwrap()) {
        assert_eq!(a["metadata"], b["metadata"]);
        assert_eq!(b["crashed"], false);
        assert_eq!(b["status"], "healthy");
    }
    assert!(api.get("/api/v1/cluster/faults").await.expect(200)["faults"].as_array().unwrap().is_empty());
    let events = api.events("event_types=node_joined,node_left,node_health_change").await;
    assert_eq!(types(&events), vec!["node_joined"; 3]);
}

#[actix_web::test]
async fn a_node_joins_is_patched_and_leaves_over_rest_and_the_events_tell_the_story() {
    let (_runtime, api) = start(quiet_config()).await;

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
    assert!(created["role"].is_string());

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

    // The events about node-4: its join, then its departure, each a complete envelope.
    let about_4 = api.events("node_ids=node-4").await;
    assert_eq!(types(&about_4), vec!["node_joined", "node_left"]);
    for (e, (severity, size)) in about_4.iter().zip([("info", 4), ("warning", 3)]) {
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
    let (join_seq, left_seq) = (seq(&about_4[0]), seq(&about_4[1]));
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
    assert_eq!(either_nodes, vec!["node-1", "node-4"]);
    assert_eq!(api.events("categories=clustering&event_types=node_joined").await.len(), 4);
    assert!(api.events("categories=replication").await.is_empty());
    assert_eq!(api.events("min_severity=warning&event_types=node_joined,node_left").await.len(), 1);

    // since_seq: only what came after.
    let after_join = api.events(&format!("since_seq={join_seq}&event_types=node_joined,node_left")).await;
    assert_eq!(types(&after_join), vec!["node_left"]);
    assert!(api.events(&format!("since_seq={left_seq}&node_ids=node-4")).await.is_empty());

    // limit: the oldest `limit`, in order; with since_seq it pages.
    let joins = api.events("event_types=node_joined").await;
    assert_eq!(joins.len(), 4);
    let first_two = api.events("event_types=node_joined&limit=2").await;
    assert_eq!(first_two, joins[..2].to_vec());
    let page2 = api.events(&format!("event_types=node_joined&limit=2&since_seq={}", seq(&first_two[1]))).await;
    assert_eq!(page2, joins[2..].to_vec());
    let all = api.events("").await;
    assert!(all.windows(2).all(|w| seq(&w[0]) < seq(&w[1])), "oldest first, strictly increasing");
}

#[actix_web::test]
async fn fault_injection_crashes_restarts_and_faults_a_node() {
    let (runtime, api) = start(quiet_config()).await;

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
    // The node stays a running member through an internal fault.
    assert_eq!(api.get("/api/v1/cluster/nodes/node-2").await.expect(200)["crashed"], false);

    // Targets that are not nodes: a configured RAC instance belongs to a domain not built yet
    // (501 naming it); anything else is unknown (404).
    let d = api.post("/api/v1/cluster/faults/crash", json!({"target": "instance-3"})).await.expect_error(501, "not_implemented");
    assert_eq!(d["domain"], "rac");
    api.post("/api/v1/cluster/faults/crash", json!({"target": "node-77"})).await.expect_error(404, "node_not_found");
    api.post("/api/v1/cluster/faults/restart", json!({"target": "node-77"})).await.expect_error(404, "node_not_found");
}

#[actix_web::test]
async fn fault_injection_can_be_turned_off() {
    let mut config = quiet_config();
    config.server.allow_fault_injection = false;
    let (_runtime, api) = start(config).await;

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
async fn crashing_two_of_three_nodes_loses_quorum_and_restarting_one_restores_it() {
    let (_runtime, api) = start(quiet_config()).await;
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
async fn with_a_token_every_api_and_graphql_route_needs_it_and_health_and_metrics_stay_open() {
    let mut config = quiet_config();
    config.server.auth_token = "s3cret".into();
    let (_runtime, anonymous) = start(config).await;

    // No header, a wrong token, another scheme, or the token in the query string of a plain
    // request: 401 with the shape.
    anonymous.get("/api/v1/cluster/nodes").await.expect_error(401, "unauthorized");
    for header in ["Bearer nope", "Bearer s3cret2", "Basic s3cret", "s3cret", "Bearer "] {
        anonymous
            .send(TestRequest::get().uri("/api/v1/cluster/nodes").insert_header((AUTHORIZATION, header)))
            .await
            .expect_error(401, "unauthorized");
    }
    anonymous.get("/api/v1/cluster/nodes?token=s3cret").await.expect_error(401, "unauthorized");
    anonymous.get("/api/v1/events").await.expect_error(401, "unauthorized");
    anonymous.get("/api/v1/ws/status").await.expect_error(401, "unauthorized");
    anonymous.get("/api/v1/openapi.json").await.expect_error(401, "unauthorized");
    anonymous.get("/api/v1/nope").await.expect_error(401, "unauthorized");
    anonymous
        .post("/graphql", json!({"query": "{ __typename }"}))
        .await
        .expect_error(401, "unauthorized");
    anonymous.get("/graphql").await.expect_error(401, "unauthorized");
    // An Upgrade header does not make a POST a WebSocket upgrade: a mutation sent that way
    // without the token is refused like any other request.
    for path in ["/graphql", "/graphql/ws"] {
        anonymous
            .send(
                TestRequest::post()
                    .uri(path)
                    .insert_header(("upgrade", "websocket"))
                    .insert_header(("connection", "upgrade"))
                    .insert_header((CONTENT_TYPE, "application/json"))
                    .set_payload(json!({"query": "mutation { removeNode(nodeId: \"node-1\") }"}).to_string()),
            )
            .await
            .expect_error(401, "unauthorized");
    }
    // A refused write changes nothing.
    anonymous.post("/api/v1/cluster/nodes", json!({"node_id": "node-4"})).await.expect_error(401, "unauthorized");
    anonymous.post("/api/v1/cluster/faults/crash", json!({"target": "node-2"})).await.expect_error(401, "unauthorized");

    // Health and metrics stay open.
    let health = anonymous.get("/health").await.expect(200);
    assert_eq!(health["status"], "ok");
    assert!(health["version"].is_string());
    assert!(health["uptime_seconds"].is_u64());
    anonymous.metrics().await;
    assert_eq!(anonymous.get("/swagger-ui/").await.status, StatusCode::OK);

    // The right token opens everything.
    let authed = anonymous.with_token("s3cret");
    let (ids, _) = authed.nodes().await;
    assert_eq!(ids, vec!["node-1", "node-2", "node-3"], "the refused POST added nothing");
    assert_eq!(authed.get("/api/v1/cluster/nodes/node-2").await.expect(200)["crashed"], false);
    authed.get("/api/v1/events").await.expect(200);
    authed.get("/api/v1/openapi.json").await.expect(200);
    let gql = authed.post("/graphql", json!({"query": "{ __typename }"})).await;
    assert_eq!(gql.status, StatusCode::OK, "{}", gql.text());
    assert!(gql.json()["data"]["__typename"].is_string(), "{}", gql.text());
    let lower = anonymous
        .send(TestRequest::get().uri("/api/v1/cluster/nodes").insert_header((AUTHORIZATION, "bearer s3cret")))
        .await;
    assert_eq!(lower.status, StatusCode::OK, "the scheme is case-insensitive: {}", lower.text());
    authed.post("/api/v1/cluster/nodes", json!({"node_id": "node-4"})).await.expect(201);
}

#[actix_web::test]
async fn without_a_token_everything_is_open() {
    let (_runtime, api) = start(quiet_config()).await;
    api.get("/api/v1/cluster/nodes").await.expect(200);
    api.get("/api/v1/events").await.expect(200);
    api.get("/api/v1/ws/status").await.expect(200);
    api.get("/api/v1/openapi.json").await.expect(200);
    let gql = api.post("/graphql", json!({"query": "{ __typename }"})).await;
    assert_eq!(gql.status, StatusCode::OK, "{}", gql.text());
    api.post("/api/v1/cluster/nodes", json!({"node_id": "node-4"})).await.expect(201);
    // A stray Authorization header is harmless when no token is configured.
    api.send(TestRequest::get().uri("/api/v1/cluster/nodes").insert_header((AUTHORIZATION, "Bearer whatever")))
        .await
        .expect(200);
}

#[actix_web::test]
async fn metrics_follow_what_happens() {
    let (_runtime, api) = start(quiet_config()).await;
    let before = api.metrics().await;
    let clustering = r#"clusterd_events_published_total{category="clustering"}"#;
    assert_eq!(metric(&before, clustering), Some(3.0), "three bootstrap joins:\n{before}");
    assert_eq!(metric(&before, "clusterd_cluster_nodes"), Some(3.0));
    assert_eq!(metric(&before, "clusterd_cluster_has_quorum"), Some(1.0));
    let seq_before = metric(&before, "clusterd_events_current_seq").expect("current seq gauge");
    // Settled: nothing waits in the registry's mailbox.
    assert_eq!(metric(&before, "clusterd_registry_mailbox_depth"), Some(0.0), "{before}");

    // A join, reads of two nodes by id, a miss, and a request to nowhere.
    api.post("/api/v1/cluster/nodes", json!({"node_id": "node-4"})).await.expect(201);
    api.get("/api/v1/cluster/nodes/node-4").await.expect(200);
    api.get("/api/v1/cluster/nodes/node-1").await.expect(200);
    api.get("/api/v1/cluster/nodes/node-404").await.expect_error(404, "node_not_found");
    api.get("/api/v1/garbage/12345").await.expect_error(404, "route_not_found");

    let after = api.metrics().await;
    assert_eq!(metric(&after, clustering), Some(4.0), "{after}");
    assert_eq!(metric(&after, "clusterd_cluster_nodes"), Some(4.0));
    assert_eq!(metric(&after, "clusterd_events_current_seq"), Some(seq_before + 1.0));
    // Requests are labelled by route pattern, not by raw path.
    let by_id = |status: u16| format!(r#"clusterd_http_requests_total{{route="/api/v1/cluster/nodes/{{id}}",method="GET",status="{status}"}}"#);
    assert_eq!(metric(&after, &by_id(200)), Some(2.0), "{after}");
    assert_eq!(metric(&after, &by_id(404)), Some(1.0), "{after}");
    assert_eq!(
        metric(&after, r#"clusterd_http_requests_total{route="/api/v1/cluster/nodes",method="POST",status="201"}"#),
        Some(1.0),
        "{after}"
    );
    for raw in ["node-1", "node-4", "node-404", "/api/v1/garbage/12345"] {
        assert!(!after.contains(&format!("route=\"/api/v1/cluster/nodes/{raw}\"")), "raw path in a label");
        assert!(!after.contains(&format!("route=\"{raw}\"")), "raw path {raw} in a label:\n{after}");
    }
    assert_eq!(
        metric(&after, r#"clusterd_http_requests_total{route="/metrics",method="GET",status="200"}"#),
        Some(1.0),
        "the first scrape is counted by the second"
    );

    // Made-up methods share one label instead of growing the series.
    for method in ["FROB", "BLAH"] {
        let m = actix_web::http::Method::from_bytes(method.as_bytes()).expect("a valid token");
        api.send(TestRequest::default().method(m).uri("/api/v1/cluster/nodes")).await;
    }
    let odd = api.metrics().await;
    assert!(!odd.contains("FROB") && !odd.contains("BLAH"), "{odd}");
    assert_eq!(
        metric(&odd, r#"clusterd_http_requests_total{route="/api/v1/cluster/nodes",method="OTHER",status="405"}"#),
        Some(2.0),
        "{odd}"
    );

    // A departure moves them again.
    assert_eq!(api.delete("/api/v1/cluster/nodes/node-4").await.status, StatusCode::NO_CONTENT);
    let last = api.metrics().await;
    assert_eq!(metric(&last, clustering), Some(5.0));
    assert_eq!(metric(&last, "clusterd_cluster_nodes"), Some(3.0));
    assert_eq!(
        metric(&last, r#"clusterd_http_requests_total{route="/api/v1/cluster/nodes/{id}",method="DELETE",status="204"}"#),
        Some(1.0)
    );
}

#[actix_web::test]
async fn the_openapi_document_lists_every_route_and_swagger_ui_serves_offline() {
    let (_runtime, api) = start(quiet_config()).await;
    let doc = api.get("/api/v1/openapi.json").await.expect(200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "OpenAPI 3: {}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths is an object");

    let has = |method: &str, path: &str| {
        let item = paths.get(path).unwrap_or_else(|| panic!("{path} missing from the OpenAPI paths"));
        assert!(item.get(method).is_some(), "{} {path} missing from the OpenAPI document", method.to_uppercase());
    };
    // Built routes.
    for (method, path) in [
        ("get", "/health"),
        ("get", "/metrics"),
        ("get", "/api/v1/events"),
        ("get", "/api/v1/ws/status"),
        ("get", "/api/v1/ws/connections"),
        ("get", "/api/v1/ws/subscriptions"),
        ("delete", "/api/v1/ws/connections/{session_id}"),
        ("post", "/api/v1/cluster/nodes"),
        ("get", "/api/v1/cluster/nodes"),
        ("get", "/api/v1/cluster/nodes/{id}"),
        ("patch", "/api/v1/cluster/nodes/{id}"),
        ("delete", "/api/v1/cluster/nodes/{id}"),
        ("get", "/api/v1/cluster/status"),
        ("get", "/api/v1/cluster/health"),
        ("get", "/api/v1/cluster/health/{node_id}"),
        ("get", "/api/v1/cluster/faults"),
        ("post", "/api/v1/cluster/faults/crash"),
        ("post", "/api/v1/cluster/faults/restart"),
    ] {
        has(method, path);
    }
    // Routes of domains not built yet, documented with their 501.
    for (method, path) in [
        ("post", "/api/v1/rac/blocks/{block_id}/read"),
        ("get", "/api/v1/rac/status"),
        ("post", "/api/v1/cluster/nodes/{id}/promote"),
        ("get", "/api/v1/replication/sharding/statistics"),
    ] {
        has(method, path);
    }
    for (method, path, _) in clusterd::http::rest::not_built::ROUTES {
        has(&method.to_lowercase(), path);
        assert!(
            paths[*path][method.to_lowercase()]["responses"].get("501").is_some(),
            "{method} {path} documents its 501"
        );
    }
    // The bearer scheme is documented.
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object(), "{}", doc["components"]);

    // Swagger UI: an HTML page and its assets, compiled in.
    let ui = api.get("/swagger-ui/").await;
    assert_eq!(ui.status, StatusCode::OK, "{}", ui.text());
    assert!(ui.content_type.starts_with("text/html"), "content-type {}", ui.content_type);
    assert!(ui.text().to_lowercase().contains("swagger"), "{}", ui.text());
    let asset = api.get("/swagger-ui/swagger-ui.css").await;
    assert_eq!(asset.status, StatusCode::OK, "the stylesheet is served from the binary");
    assert!(!asset.body.is_empty());
}

#[actix_web::test]
async fn routes_of_domains_not_built_yet_answer_501_naming_the_domain() {
    let (_runtime, api) = start(quiet_config()).await;

    let d = api
        .post("/api/v1/replication/sharding/tables", json!({"table": "orders", "shard_key": "id", "strategy": "hash", "shards": 4}))
        .await
        .expect_error(501, "not_implemented");
    assert_eq!(d["domain"], "sharding");
    assert_eq!(api.get("/api/v1/rac/status").await.expect_error(501, "not_implemented")["domain"], "rac");

    // Every one of them, with its own method.
    for (method, path, domain) in clusterd::http::rest::not_built::ROUTES {
        let uri = path.replace('{', "x-").replace('}', "");
        let req = TestRequest::default()
            .method(actix_web::http::Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(&uri);
        let req = if matches!(*method, "POST" | "PUT" | "PATCH") { req.set_json(json!({})) } else { req };
        let d = api.send(req).await.expect_error(501, "not_implemented");
        assert_eq!(d["domain"], *domain, "{method} {uri}");
    }
    // And none of them changed the cluster.
    assert_eq!(api.nodes().await.0, vec!["node-1", "node-2", "node-3"]);
}

#[actix_web::test]
async fn websocket_management_shows_counters_sessions_and_in_process_subscriptions() {
    let (runtime, api) = start(quiet_config()).await;

    // No sessions yet; the counters are real.
    let status = api.get("/api/v1/ws/status").await.expect(200);
    for field in ["active_sessions", "events_published", "events_delivered", "events_dropped", "current_seq"] {
        assert!(status[field].is_number(), "{field} in {status}");
    }
    assert_eq!(status["active_sessions"], 0);
    assert_eq!(status["current_seq"], 3);
    assert_eq!(status["events_published"], 3);
    assert_eq!(status["events_delivered"], 0);
    let conns = api.get("/api/v1/ws/connections").await.expect(200);
    assert_eq!(conns["connections"], json!([]));
    assert_eq!(conns["total"], 0);
    assert_eq!(api.get("/api/v1/ws/subscriptions").await.expect(200)["subscriptions"], json!([]));

    // An in-process subscriber appears under subscriptions (not under WebSocket connections).
    let filter = only_types(&[EventType::NodeHealthChange]).with_ids(SubjectKind::Node, ["node-2"]);
    let mut sub = runtime.subscribe(filter).await.expect("subscribe");
    let subs = api.get("/api/v1/ws/subscriptions").await.expect(200);
    let rows = subs["subscriptions"].as_array().expect("subscriptions is an array");
    assert_eq!(rows.len(), 1, "{subs}");
    assert_eq!(rows[0]["id"], sub.subscription_id().to_string());
    assert_eq!(rows[0]["transport"], "in_process");
    assert_eq!(rows[0]["filter"], json!({"node_ids": ["node-2"], "event_types": ["node_health_change"]}));
    assert_eq!(api.get("/api/v1/ws/connections").await.expect(200)["connections"], json!([]));

    // It receives what it asked for, and the delivery is counted.
    api.post("/api/v1/cluster/faults/crash", json!({"target": "node-2"})).await.expect(200);
    next_node_event(&mut sub, EventType::NodeHealthChange, "node-2").await;
    let status = api.get("/api/v1/ws/status").await.expect(200);
    assert_eq!(status["events_delivered"], 1, "{status}");
    assert_eq!(status["current_seq"], 4);
    let rows = api.get("/api/v1/ws/subscriptions").await.expect(200);
    assert_eq!(rows["subscriptions"][0]["delivered"], 1);

    // Closing a "connection" that is not a WebSocket session is a 404, and leaves the subscriber.
    api.delete(&format!("/api/v1/ws/connections/{}", sub.subscription_id()))
        .await
        .expect_error(404, "session_not_found");
    let d = api.delete("/api/v1/ws/connections/999").await.expect_error(404, "session_not_found");
    assert_eq!(d["session_id"], "999");
    api.delete("/api/v1/ws/connections/not-a-number").await.expect_error(404, "session_not_found");
    assert_eq!(api.get("/api/v1/ws/subscriptions").await.expect(200)["total"], 1);

    // Dropping the subscription unsubscribes it.
    drop(sub);
    let subs = api.get("/api/v1/ws/subscriptions").await.expect(200);
    assert_eq!(subs["subscriptions"], json!([]), "{subs}");
}

#[actix_web::test]
async fn since_seq_older_than_the_retained_window_is_flagged_in_get_events() {
    // Four events are kept; bootstrap publishes three joins and two more nodes join.
    let mut config = quiet_config();
    config.events.retained = 4;
    let (_runtime, api) = start(config).await;
    api.post("/api/v1/cluster/nodes", json!({"node_id": "node-4"})).await.expect(201);
    api.post("/api/v1/cluster/nodes", json!({"node_id": "node-5"})).await.expect(201);

    let body = api.get("/api/v1/events?since_seq=0").await.expect(200);
    assert_eq!(body["replay_truncated"], true, "event 1 is gone: {body}");
    assert_eq!(body["oldest_retained_seq"], 2);
    assert_eq!(body["current_seq"], 5);
    let seqs: Vec<u64> = body["events"].as_array().unwrap().iter().map(seq).collect();
    assert_eq!(seqs, vec![2, 3, 4, 5]);

    let body = api.get("/api/v1/events?since_seq=1").await.expect(200);
    assert_eq!(body["replay_truncated"], false, "everything after 1 is retained: {body}");
    assert_eq!(body["count"], 4);
    // Without since_seq nothing was asked to be resumed, so nothing is reported truncated.
    assert_eq!(api.get("/api/v1/events").await.expect(200)["replay_truncated"], false);
}

#[actix_web::test]
async fn the_largest_since_seq_is_an_empty_answer_not_a_dead_registry() {
    // A client may resume from any u64. The largest one has nothing after it: an empty answer.
    let (_runtime, api) = start(quiet_config()).await;
    let max = u64::MAX;
    let body = api.get(&format!("/api/v1/events?since_seq={max}")).await.expect(200);
    assert_eq!(body["events"], json!([]), "{body}");
    assert_eq!(body["replay_truncated"], false, "nothing after u64::MAX was ever lost: {body}");

    // And the event registry is still there for everybody else.
    api.post("/api/v1/cluster/nodes", json!({"node_id": "node-4"})).await.expect(201);
    let joins = api.events("event_types=node_joined&node_ids=node-4").await;
    assert_eq!(joins.len(), 1);
    api.get("/api/v1/ws/status").await.expect(200);
}

#[actix_web::test]
async fn node_metadata_is_capped_the_same_way_when_a_node_joins_as_when_it_is_patched() {
    // PATCH refuses metadata over 64 KiB ("a node's metadata may hold at most 64 KiB"). A join must
    // hold to the same rule; otherwise a node can be created that no later patch can touch.
    let (_runtime, api) = start(quiet_config()).await;
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
async fn a_cluster_with_no_members_left_has_no_quorum_and_its_health_says_critical() {
    // Every node leaves. The last departure publishes quorum_lost; the health report must agree
    // with it (`critical` is the status "without a quorum").
    let (_runtime, api) = start(quiet_config()).await;
    for n in ["node-1", "node-2", "node-3"] {
        assert_eq!(api.delete(&format!("/api/v1/cluster/nodes/{n}")).await.status, StatusCode::NO_CONTENT);
    }
    assert!(api.nodes().await.0.is_empty());
    let lost = api.events("event_types=quorum_lost").await;
    assert_eq!(lost.len(), 1, "the last departures lose the quorum");

    let health = api.get("/api/v1/cluster/health").await.expect(200);
    assert_eq!(health["has_quorum"], false, "{health}");
    assert_eq!(health["status"], "critical", "no quorum, yet: {health}");
    let status = api.get("/api/v1/cluster/status").await.expect(200);
    assert_eq!(status["health"], "critical", "{status}");
}

#[actix_web::test]
async fn partitions_and_faulty_links_are_checked_shown_and_healed() {
    let mut config = quiet_config();
    config.replication.replicas = vec![clusterd::config::ReplicaConfig { id: "replica-001".into(), mode: clusterd::model::ReplicaMode::Async }];
    let (_runtime, api) = start(config).await;

    // Endpoints must be known to some domain; groups must be two or more, each endpoint in one.
    let d = api.post("/api/v1/cluster/faults/partition", json!({"groups": [["primary"], ["replica-404"]]})).await.expect_error(400, "invalid_request");
    assert_eq!(d["field"], "groups[1]", "{d}");
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

#[actix_web::test]
async fn partitions_are_refused_when_fault_injection_is_off() {
    let mut config = quiet_config();
    config.server.allow_fault_injection = false;
    let (_runtime, api) = start(config).await;
    api.post("/api/v1/cluster/faults/partition", json!({"groups": [["node-1"], ["node-2"]]})).await.expect_error(403, "fault_injection_disabled");
    api.post("/api/v1/cluster/faults/heal", json!({})).await.expect_error(403, "fault_injection_disabled");
    api.post("/api/v1/cluster/faults/link", json!({"from": "node-1", "to": "node-2", "drop_rate": 1.0})).await.expect_error(403, "fault_injection_disabled");
}
