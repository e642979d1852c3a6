//! The replication domain driven from outside: batches written through
//! `POST /api/v1/replication/operations`, rows read where they live with
//! `GET /api/v1/data/{table}/{key}?from=…`, replicas added, paused, crashed and restarted over REST,
//! and what the primary publishes (`replica_status_change`, `replication_lag_alert`,
//! `replication_error`, `replica_added` / `replica_removed`, `wal_position_update`) watched through
//! in-process subscriptions.
//!
//! Each test is a scenario told in its comments. Every wait is on an event, an answer, or (for
//! state that publishes no event of its own, such as "this replica has replayed that row") a short
//! poll inside `common::TIMEOUT`. Nothing sleeps to synchronise.
//!
//! The configuration is `Config::default()` (primary `primary`, `replica-001` sync and
//! `replica-002` async, semi_sync with a quorum of one) with storage in memory, or on disk in a
//! temporary directory for the durability scenario, and short replication heartbeats.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use clusterd::config::{Config, StorageEngine};
use clusterd::model::{ReplicaMode, ReplicationMode};
use clusterd::messages::events::{EventFilter, EventPayload, EventType, PublishedEvent, Severity, SharedEvent, SubjectKind};
use clusterd::messages::replication::{ReplicaStatusChange, ReplicationEvent, ReplicationLagAlert, WalPositionUpdate};
use clusterd::messages::registry::ListSubscriptions;
use clusterd::model::lsn_text;
use clusterd::{Runtime, RuntimeHandle};
use serde_json::{json, Value};

use common::api::{Api, Reply};
use common::*;

// ---------------------------------------------------------------------------------------------
// Domain helpers on the shared client (tests/common/api.rs).

impl Api {
    /// `POST /api/v1/replication/operations` with these ops.
    async fn write(&self, ops: Value) -> Reply {
        self.post("/api/v1/replication/operations", json!({ "ops": ops })).await
    }

    /// Inserts one row and returns the acknowledgement (asserting 200 and its shape).
    async fn insert(&self, table: &str, key: &str, value: Value) -> Value {
        let ack = self.write(json!([{"op": "insert", "table": table, "key": key, "value": value}])).await.expect(200);
        check_ack_shape(&ack);
        ack
    }

    /// `GET /api/v1/data/{table}/{key}?from=<from>`.
    async fn read(&self, table: &str, key: &str, from: &str) -> Reply {
        self.get(&format!("/api/v1/data/{table}/{key}?from={from}")).await
    }

    /// Reads a row that must be there now and returns its value.
    async fn value_at(&self, table: &str, key: &str, from: &str) -> Value {
        let row = self.read(table, key, from).await.expect(200);
        assert_eq!(row["table"], table, "{row}");
        assert_eq!(row["key"], key, "{row}");
        assert_eq!(row["from"], from, "{row}");
        row["value"].clone()
    }

    async fn status(&self) -> Value {
        self.get("/api/v1/replication/status").await.expect(200)
    }

    async fn current_lsn(&self) -> u64 {
        self.status().await["current_lsn_u64"].as_u64().expect("current_lsn_u64 is a u64")
    }

    async fn replica(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/replication/replicas/{id}")).await.expect(200)
    }

    async fn pause(&self, id: &str) -> Value {
        self.post(&format!("/api/v1/replication/replicas/{id}/pause"), json!({})).await.expect(200)
    }

    async fn resume(&self, id: &str) -> Value {
        self.post(&format!("/api/v1/replication/replicas/{id}/resume"), json!({})).await.expect(200)
    }

    async fn crash(&self, target: &str) -> Reply {
        self.post("/api/v1/cluster/faults/crash", json!({ "target": target })).await
    }

    async fn restart(&self, target: &str) -> Reply {
        self.post("/api/v1/cluster/faults/restart", json!({ "target": target })).await
    }

    /// Polls until a row is readable at `from` (for replicas that catch up on their own, with no
    /// event per row), and returns its value.
    async fn eventually_value_at(&self, table: &str, key: &str, from: &str) -> Value {
        poll_until(&format!("{table}/{key} to be readable from {from}"), move || async move {
            let r = self.read(table, key, from).await;
            (r.status == StatusCode::OK).then(|| r.json()["value"].clone())
        })
        .await
    }

    /// Polls until every replica in `ids` has flushed and replayed all the primary has; returns
    /// that lsn.
    async fn wait_caught_up(&self, ids: &[&str]) -> u64 {
        poll_until(&format!("{ids:?} to replay everything the primary has"), move || async move {
            let s = self.status().await;
            let current = s["current_lsn_u64"].as_u64()?;
            let replicas = s["replicas"].as_array()?;
            let all = ids.iter().all(|id| {
                replicas.iter().any(|r| {
                    r["replica_id"] == *id
                        && r["flush_lsn_u64"] == current
                        && r["replay_lsn_u64"] == current
                        && r["lag_bytes"] == 0
                })
            });
            all.then_some(current)
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// Configurations, start-up and event helpers.

/// `Config::default()` in memory, with replication heartbeats every 50 ms and a heartbeat timeout
/// (1 s) far from anything a loaded test machine reaches, so no replica is declared disconnected
/// unless a test makes it so. Writes wait up to 5 s for replicas unless a test shortens it.
fn repl_config() -> Config {
    let mut c = Config::default();
    c.storage.engine = StorageEngine::Memory;
    c.storage.data_dir = String::new();
    c.replication.heartbeat_interval_ms = 50;
    c.replication.heartbeat_timeout_ms = 1000;
    c.replication.sync_timeout_ms = 5000;
    // The scenarios are written against the default replicas; say so rather than assume it.
    let replicas: Vec<(&str, ReplicaMode)> = c.replication.replicas.iter().map(|r| (r.id.as_str(), r.mode)).collect();
    assert_eq!(replicas, vec![("replica-001", ReplicaMode::Sync), ("replica-002", ReplicaMode::Async)]);
    assert_eq!(c.replication.primary, "primary");
    assert!(c.server.allow_fault_injection, "the scenarios inject faults");
    c.validate().expect("the test configuration is valid");
    c
}

/// Like [`repl_config`], durable in `dir`.
fn repl_disk_config(dir: &std::path::Path) -> Config {
    let mut c = repl_config();
    c.storage.engine = StorageEngine::Disk;
    c.storage.data_dir = dir.to_string_lossy().into_owned();
    c.validate().expect("the test configuration is valid");
    c
}

/// Starts a runtime and the app on it; returns once every configured replica has reported in
/// sync (so the scenario starts from a known state).
async fn start(config: Config) -> (RuntimeHandle, Api) {
    let ids: Vec<String> = config.replication.replicas.iter().map(|r| r.id.clone()).collect();
    let runtime = Runtime::start(config).expect("runtime starts");
    let app = test::init_service(clusterd::http::app(clusterd::http::AppState::new(runtime.clone()))).await;
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    wait_in_sync(&runtime, &ids).await;
    (runtime, Api::new(app, TestRequest::to_request))
}

fn status_change(e: &PublishedEvent) -> Option<&ReplicaStatusChange> {
    match &e.payload {
        EventPayload::Replication(ReplicationEvent::ReplicaStatusChange(p)) => Some(p),
        _ => None,
    }
}

fn lag_alert(e: &PublishedEvent) -> Option<&ReplicationLagAlert> {
    match &e.payload {
        EventPayload::Replication(ReplicationEvent::ReplicationLagAlert(p)) => Some(p),
        _ => None,
    }
}

fn wal_position(e: &PublishedEvent) -> Option<&WalPositionUpdate> {
    match &e.payload {
        EventPayload::Replication(ReplicationEvent::WalPositionUpdate(p)) => Some(p),
        _ => None,
    }
}

/// Whether `e` is a `replica_status_change` of `replica` to `new_status`.
fn is_status(e: &PublishedEvent, replica: &str, new_status: &str) -> bool {
    status_change(e).is_some_and(|p| p.replica_id == replica && p.new_status == new_status)
}

/// A filter for these event types only (never "everything": a filter without event types would
/// also ask for the high-rate `wal_position_update`).
fn types_filter(types: &[EventType]) -> EventFilter {
    EventFilter { event_types: types.to_vec(), ..EventFilter::default() }
}

/// Waits until each of `ids` has published a `replica_status_change` to `in_sync` since the runtime
/// started (retained events are replayed with `since_seq: 0`, so one that came before this call
/// counts). Returns the first such event per replica.
async fn wait_in_sync(runtime: &RuntimeHandle, ids: &[&str]) -> HashMap<String, SharedEvent> {
    let filter = EventFilter { since_seq: Some(0), ..types_filter(&[EventType::ReplicaStatusChange]) };
    let mut sub = within("subscribe", runtime.subscribe(filter)).await.expect("registry answers");
    let mut found: HashMap<String, SharedEvent> = HashMap::new();
    while found.len() < ids.len() {
        let e = next_event_matching(
            &mut sub,
            |e| {
                status_change(e)
                    .is_some_and(|p| p.new_status == "in_sync" && ids.contains(&p.replica_id.as_str()))
            },
            TIMEOUT,
        )
        .await;
        let id = status_change(&e).unwrap().replica_id.clone();
        found.entry(id).or_insert(e);
    }
    found
}

/// Subscribes live (no replay) to `filter`.
async fn subscribe(runtime: &RuntimeHandle, filter: EventFilter) -> clusterd::runtime::EventSubscription {
    within("subscribe", runtime.subscribe(filter)).await.expect("registry answers")
}

/// Asserts the shape of a write's acknowledgement: `lsn` in text form matching `lsn_u64`,
/// `acknowledged_by` a list of replica ids, and `mode`.
fn check_ack_shape(ack: &Value) {
    let lsn = ack["lsn_u64"].as_u64().unwrap_or_else(|| panic!("lsn_u64 is a u64: {ack}"));
    assert!(lsn > 0, "a write ends past lsn 0: {ack}");
    assert_eq!(ack["lsn"], lsn_text(lsn), "lsn is lsn_u64 in X/Y form: {ack}");
    assert!(ack["acknowledged_by"].is_array(), "acknowledged_by is a list: {ack}");
    assert!(ack["mode"].is_string(), "mode is named: {ack}");
}

fn acked_by(ack: &Value) -> Vec<String> {
    ack["acknowledged_by"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

/// How many `wal_position_update` events the registry retains.
async fn count_positions(runtime: &RuntimeHandle) -> usize {
    retained(runtime, types_filter(&[EventType::WalPositionUpdate])).await.len()
}

fn ids_of(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|r| r["replica_id"].as_str().unwrap().to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Sync mode.

#[actix_web::test]
async fn sync_mode_acknowledges_after_the_sync_replica_flushed_and_the_async_one_follows() {
    let mut config = repl_config();
    config.replication.mode = ReplicationMode::Sync;
    let (_runtime, api) = start(config).await;

    // A write in sync mode answers only once every sync replica (replica-001) has flushed it.
    let ack = api.insert("orders", "o-1", json!({"item": "book", "qty": 2})).await;
    assert_eq!(ack["mode"], "sync");
    assert!(acked_by(&ack).contains(&"replica-001".to_string()), "the sync replica acknowledged: {ack}");

    // The replica makes a record durable and applies it in one step before it reports, so the
    // row is readable from replica-001 as soon as the write is acknowledged: no waiting.
    assert_eq!(api.value_at("orders", "o-1", "primary").await, json!({"item": "book", "qty": 2}));
    let row = api.read("orders", "o-1", "replica-001").await.expect(200);
    assert_eq!(row["value"], json!({"item": "book", "qty": 2}));
    assert!(row["replay_lsn_u64"].as_u64().unwrap() >= ack["lsn_u64"].as_u64().unwrap(), "{row}");
    assert_eq!(row["replay_lsn"], lsn_text(row["replay_lsn_u64"].as_u64().unwrap()));

    // The async replica gets it too, in its own time.
    assert_eq!(api.eventually_value_at("orders", "o-1", "replica-002").await, json!({"item": "book", "qty": 2}));

    // The async replica never holds a sync write back: with replica-002 paused (nothing is shipped
    // to it), a write is still acknowledged, by replica-001 alone.
    api.pause("replica-002").await;
    let ack2 = api.insert("orders", "o-2", json!({"item": "pen"})).await;
    assert_eq!(acked_by(&ack2), vec!["replica-001"], "{ack2}");
    assert!(ack2["lsn_u64"].as_u64() > ack["lsn_u64"].as_u64(), "lsns grow: {ack} then {ack2}");
    assert_eq!(api.read("orders", "o-2", "replica-001").await.expect(200)["value"], json!({"item": "pen"}));
    // replica-002 does not have it while paused…
    api.read("orders", "o-2", "replica-002").await.expect_error(404, "row_not_found");
    // …and once resumed it catches up with everything.
    api.resume("replica-002").await;
    assert_eq!(api.eventually_value_at("orders", "o-2", "replica-002").await, json!({"item": "pen"}));
    assert_eq!(api.value_at("orders", "o-1", "replica-002").await, json!({"item": "book", "qty": 2}));

    // Reads from a replica that does not exist are 404 replica_not_found, not "no such row".
    let d = api.read("orders", "o-1", "replica-404").await.expect_error(404, "replica_not_found");
    assert_eq!(d["replica_id"], "replica-404");
    // And a row that is nowhere is 404 row_not_found, wherever it is asked for.
    for from in ["primary", "replica-001", "replica-002"] {
        api.read("orders", "o-404", from).await.expect_error(404, "row_not_found");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. semi_sync (quorum 1) and async.

#[actix_web::test]
async fn semi_sync_with_a_quorum_of_one_waits_for_any_one_replica_and_times_out_with_none() {
    let mut config = repl_config();
    config.replication.mode = ReplicationMode::SemiSync;
    config.replication.sync_quorum = 1;
    config.replication.sync_timeout_ms = 300;
    let (_runtime, api) = start(config).await;

    // Both replicas streaming: a write is acknowledged by at least one of them.
    let ack = api.insert("t", "a", json!(1)).await;
    assert_eq!(ack["mode"], "semi_sync");
    assert!(!acked_by(&ack).is_empty(), "semi_sync with quorum 1 answers after one replica flushed: {ack}");

    // With replica-002 paused, replica-001 alone makes the quorum.
    api.pause("replica-002").await;
    let ack = api.insert("t", "b", json!(2)).await;
    assert_eq!(acked_by(&ack), vec!["replica-001"], "{ack}");

    // With both paused nobody can flush it: after sync_timeout_ms the write answers 504, saying it
    // is durable on the primary and which replicas are missing.
    api.pause("replica-001").await;
    let d = api.write(json!([{"op": "insert", "table": "t", "key": "c", "value": 3}])).await.expect_error(504, "replication_timeout");
    assert_eq!(d["durable_on_primary"], true, "{d}");
    assert_eq!(d["acknowledged_by"], json!([]), "{d}");
    let mut missing: Vec<String> = serde_json::from_value(d["missing"].clone()).unwrap();
    missing.sort();
    assert_eq!(missing, vec!["replica-001", "replica-002"], "{d}");
    assert_eq!(d["timeout_ms"], 300);
    // Durable on the primary means readable there.
    assert_eq!(api.value_at("t", "c", "primary").await, json!(3));

    // Any replica counts for the quorum, not only the sync one: resuming replica-002 (async) is
    // enough for the next write.
    api.resume("replica-002").await;
    let ack = api.insert("t", "d", json!(4)).await;
    assert_eq!(acked_by(&ack), vec!["replica-002"], "{ack}");
    assert_eq!(api.value_at("t", "c", "replica-002").await, json!(3), "it caught up with the timed-out write too");
}

#[actix_web::test]
async fn async_mode_acknowledges_without_waiting_and_the_replicas_get_the_data_eventually() {
    let mut config = repl_config();
    config.replication.mode = ReplicationMode::Async;
    let (_runtime, api) = start(config).await;

    // Both replicas paused: nothing is shipped to anyone. An async write is acknowledged anyway,
    // at once (the sync timeout of 5 s is never waited for), by nobody.
    api.pause("replica-001").await;
    api.pause("replica-002").await;
    let started = Instant::now();
    let mut acks = Vec::new();
    for i in 0..5 {
        let ack = api.insert("t", &format!("k{i}"), json!({"n": i})).await;
        assert_eq!(ack["mode"], "async");
        assert_eq!(acked_by(&ack), Vec::<String>::new(), "no replica can have it: {ack}");
        acks.push(ack);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "async writes never wait for the sync timeout");
    for i in 0..5 {
        api.read("t", &format!("k{i}"), "replica-001").await.expect_error(404, "row_not_found");
    }

    // Resumed, both catch up and hold every row.
    api.resume("replica-001").await;
    api.resume("replica-002").await;
    let lsn = api.wait_caught_up(&["replica-001", "replica-002"]).await;
    assert_eq!(lsn, acks.last().unwrap()["lsn_u64"].as_u64().unwrap());
    for i in 0..5 {
        for from in ["replica-001", "replica-002"] {
            assert_eq!(api.value_at("t", &format!("k{i}"), from).await, json!({"n": i}));
        }
    }
    // With both replicas streaming, a later async write reaches them without anyone asking.
    api.insert("t", "later", json!("x")).await;
    for from in ["replica-001", "replica-002"] {
        assert_eq!(api.eventually_value_at("t", "later", from).await, json!("x"));
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Batch validation and atomicity.

#[actix_web::test]
async fn invalid_batches_are_refused_whole_and_change_nothing() {
    let mut config = repl_config();
    config.replication.mode = ReplicationMode::Sync;
    let (runtime, api) = start(config).await;

    api.insert("users", "u1", json!({"name": "Ada"})).await;
    let lsn_before = api.current_lsn().await;
    let seq_before = registry_status(&runtime).await.current_seq;

    // Insert of a key that exists: 409 duplicate_key, naming it.
    let d = api
        .write(json!([{"op": "insert", "table": "users", "key": "u1", "value": {"name": "Bob"}}]))
        .await
        .expect_error(409, "duplicate_key");
    assert_eq!(d["table"], "users");
    assert_eq!(d["key"], "u1");
    // Update and delete of a row that does not exist: 404 row_not_found.
    for op in ["update", "delete"] {
        let body = if op == "update" {
            json!([{"op": op, "table": "users", "key": "u404", "value": 1}])
        } else {
            json!([{"op": op, "table": "users", "key": "u404"}])
        };
        let d = api.write(body).await.expect_error(404, "row_not_found");
        assert_eq!(d["key"], "u404", "{op}: {d}");
    }
    // Malformed operations: 400 naming the field.
    for (body, field) in [
        (json!([{"op": "delete", "table": "users", "key": "u1", "value": 1}]), "ops[0].value"),
        (json!([{"op": "insert", "table": "users", "key": "u2"}]), "ops[0].value"),
        (json!([{"op": "update", "table": "users", "key": "u1"}]), "ops[0].value"),
        (json!([]), "ops"),
        (json!([{"op": "insert", "table": "", "key": "u2", "value": 1}]), "ops[0].table"),
        (json!([{"op": "insert", "table": "users", "key": "", "value": 1}]), "ops[0].key"),
        (json!([{"op": "insert", "table": "users", "key": "u2", "value": 1}, {"op": "insert", "table": "x".repeat(257), "key": "k", "value": 1}]), "ops[1].table"),
    ] {
        let d = api.write(body.clone()).await.expect_error(400, "invalid_request");
        assert_eq!(d["field"], field, "{body}: {d}");
    }
    // Bodies that are not a batch at all: 400 invalid_json (unknown fields named).
    let d = api
        .write(json!([{"op": "insert", "table": "users", "key": "u2", "value": 1, "ttl": 5}]))
        .await
        .expect_error(400, "invalid_json");
    assert_eq!(d["field"], "ttl", "{d}");
    let d = api
        .post("/api/v1/replication/operations", json!({"ops": [{"op": "insert", "table": "users", "key": "u2", "value": 1}], "sync": true}))
        .await
        .expect_error(400, "invalid_json");
    assert_eq!(d["field"], "sync", "{d}");
    api.write(json!([{"op": "upsert", "table": "users", "key": "u2", "value": 1}])).await.expect_error(400, "invalid_json");
    api.post("/api/v1/replication/operations", json!({})).await.expect_error(400, "invalid_json");

    // A batch is atomic: its first op is fine, its second is not; nothing of the first is written.
    api.write(json!([
        {"op": "insert", "table": "users", "key": "u2", "value": {"name": "Cy"}},
        {"op": "insert", "table": "users", "key": "u1", "value": {"name": "again"}},
    ]))
    .await
    .expect_error(409, "duplicate_key");
    api.write(json!([
        {"op": "update", "table": "users", "key": "u1", "value": {"name": "changed"}},
        {"op": "delete", "table": "users", "key": "u404"},
    ]))
    .await
    .expect_error(404, "row_not_found");
    // Within a batch, later ops see earlier ones: a key inserted twice in one batch is a duplicate.
    api.write(json!([
        {"op": "insert", "table": "users", "key": "u3", "value": 1},
        {"op": "insert", "table": "users", "key": "u3", "value": 2},
    ]))
    .await
    .expect_error(409, "duplicate_key");

    // None of it changed anything: same lsn, no row u2 or u3, u1 as it was, and no replication
    // event was published for any of it.
    assert_eq!(api.current_lsn().await, lsn_before, "a refused batch writes no WAL");
    api.read("users", "u2", "primary").await.expect_error(404, "row_not_found");
    api.read("users", "u3", "primary").await.expect_error(404, "row_not_found");
    assert_eq!(api.value_at("users", "u1", "primary").await, json!({"name": "Ada"}));
    let replication_events = retained(
        &runtime,
        EventFilter {
            since_seq: Some(seq_before),
            event_types: vec![EventType::ReplicationError, EventType::ReplicationLagAlert],
            ..EventFilter::default()
        },
    )
    .await;
    assert!(replication_events.is_empty(), "refused batches publish nothing: {:?}", replication_events.iter().map(|e| &e.json).collect::<Vec<_>>());

    // A valid batch whose ops build on each other is applied whole, in order, on the primary and
    // on the sync replica (which has it when the write is acknowledged).
    let ack = api
        .write(json!([
            {"op": "insert", "table": "users", "key": "u4", "value": {"v": 1}},
            {"op": "update", "table": "users", "key": "u4", "value": {"v": 2}},
            {"op": "insert", "table": "users", "key": "u5", "value": {"v": 5}},
            {"op": "delete", "table": "users", "key": "u5"},
            {"op": "delete", "table": "users", "key": "u1"},
            {"op": "insert", "table": "users", "key": "u1", "value": {"name": "Ada II"}},
        ]))
        .await
        .expect(200);
    check_ack_shape(&ack);
    assert!(ack["lsn_u64"].as_u64().unwrap() > lsn_before);
    for from in ["primary", "replica-001"] {
        assert_eq!(api.value_at("users", "u4", from).await, json!({"v": 2}), "{from}");
        assert_eq!(api.value_at("users", "u1", from).await, json!({"name": "Ada II"}), "{from}");
        api.read("users", "u5", from).await.expect_error(404, "row_not_found");
        // Nothing of the refused batches reached the replica either.
        api.read("users", "u2", from).await.expect_error(404, "row_not_found");
        api.read("users", "u3", from).await.expect_error(404, "row_not_found");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Sync timeout with the sync replica down, then its recovery.

#[actix_web::test]
async fn a_crashed_sync_replica_makes_sync_writes_time_out_and_catches_up_when_restarted() {
    let mut config = repl_config();
    config.replication.mode = ReplicationMode::Sync;
    config.replication.sync_timeout_ms = 300;
    let (runtime, api) = start(config).await;
    let mut events = subscribe(
        &runtime,
        types_filter(&[EventType::ReplicaStatusChange, EventType::ReplicationError]),
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
            assert_eq!(p.error_code, "sync_timeout", "{}", e.json);
            assert_eq!(p.replica_id, "replica-001", "{}", e.json);
            assert_eq!(p.failed_operation, "replicate_operations", "{}", e.json);
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

// ---------------------------------------------------------------------------------------------
// 5. Pause, lag alert, resume: the alert goes only to the subscriber that asked for that replica.

#[actix_web::test]
async fn a_paused_replica_raises_one_lag_alert_to_its_subscriber_only_and_recovers_when_resumed() {
    const THRESHOLD: u64 = 4096;
    let mut config = repl_config();
    config.replication.lag_alert_bytes = THRESHOLD;
    // semi_sync, quorum 1 (the default): with replica-002 paused every write waits for
    // replica-001, so replica-001 never falls more than one write (under the threshold) behind.
    assert_eq!(config.replication.mode, ReplicationMode::SemiSync);
    assert_eq!(config.replication.sync_quorum, 1);
    let (runtime, api) = start(config).await;

    // Subscriber A watches replica-002's lag alerts and status changes; subscriber B watches
    // replica-001's lag alerts.
    let mut a = subscribe(
        &runtime,
        types_filter(&[EventType::ReplicationLagAlert, EventType::ReplicaStatusChange])
            .with_ids(SubjectKind::Replica, ["replica-002"]),
    )
    .await;
    let mut b = subscribe(
        &runtime,
        types_filter(&[EventType::ReplicationLagAlert]).with_ids(SubjectKind::Replica, ["replica-001"]),
    )
    .await;
    let b_id = b.subscription_id();
    assert_eq!(api.replica("replica-002").await["lag_bytes"], 0);

    // Pause replica-002: A hears it go from in_sync to paused.
    let view = api.pause("replica-002").await;
    assert_eq!(view["status"], "paused");
    let e = within("A's first event", a.next_event()).await.expect("A is live");
    let p = status_change(&e).unwrap_or_else(|| panic!("expected the paused status change, got {}", e.json));
    assert_eq!((p.replica_id.as_str(), p.old_status.as_str(), p.new_status.as_str()), ("replica-002", "in_sync", "paused"));
    api.post("/api/v1/replication/replicas/replica-002/pause", json!({})).await.expect_error(409, "wrong_state");
    api.post("/api/v1/replication/replicas/replica-001/resume", json!({})).await.expect_error(409, "wrong_state");
    api.post("/api/v1/replication/replicas/replica-404/pause", json!({})).await.expect_error(404, "replica_not_found");

    // Write 20 rows of about 1 kB each, one at a time: over 20 kB that replica-002 does not get.
    let blob = "x".repeat(1000);
    let mut last_ack = Value::Null;
    for i in 0..20 {
        last_ack = api.insert("big", &format!("r{i:02}"), json!({"i": i, "blob": blob})).await;
        assert_eq!(acked_by(&last_ack), vec!["replica-001"], "only replica-001 can acknowledge: {last_ack}");
    }
    let written = last_ack["lsn_u64"].as_u64().unwrap();

    // replica-002's lag grew to everything written since it was paused.
    let view = api.replica("replica-002").await;
    assert_eq!(view["status"], "paused", "{view}");
    let lag = view["lag_bytes"].as_u64().unwrap();
    assert!(lag > 4 * THRESHOLD, "lag_bytes grew past the threshold: {view}");
    assert_eq!(lag, written - view["replay_lsn_u64"].as_u64().unwrap(), "{view}");
    api.read("big", "r00", "replica-002").await.expect_error(404, "row_not_found");

    // Resume: replica-002 goes to catching_up. Everything A received before that is the one
    // lag alert raised when the lag crossed the threshold (edge-triggered: not one per write).
    let view = api.resume("replica-002").await;
    assert_ne!(view["status"], "paused", "{view}");
    let mut raised = Vec::new();
    loop {
        let e = within("A's events up to catching_up", a.next_event()).await.expect("A is live");
        assert!(e.subjects.of(SubjectKind::Replica) == vec!["replica-002".to_string()], "A only gets replica-002: {}", e.json);
        if is_status(&e, "replica-002", "catching_up") {
            break;
        }
        let alert = lag_alert(&e).unwrap_or_else(|| panic!("before catching_up, A expects only lag alerts: {}", e.json));
        raised.push((e.severity, alert.clone()));
    }
    assert_eq!(raised.len(), 1, "exactly one lag alert while paused: {raised:?}");
    let (severity, alert) = &raised[0];
    assert!(matches!(severity, Severity::Warning | Severity::Error), "{alert:?}");
    assert_eq!(alert.severity, *severity, "payload and envelope agree");
    assert_eq!(alert.replica_id, "replica-002");
    assert_eq!(alert.threshold_bytes, THRESHOLD);
    assert!(alert.lag_bytes > THRESHOLD, "{alert:?}");
    if alert.lag_bytes <= 4 * THRESHOLD {
        assert_eq!(*severity, Severity::Warning, "warning up to 4x the threshold: {alert:?}");
    }

    // Then replica-002 catches up: A hears in_sync and one recovered alert (severity info), and
    // no further raised alert.
    let (mut in_sync, mut recovered) = (false, None);
    while !(in_sync && recovered.is_some()) {
        let e = within("A's events up to recovery", a.next_event()).await.expect("A is live");
        if is_status(&e, "replica-002", "in_sync") {
            in_sync = true;
        } else if let Some(alert) = lag_alert(&e) {
            assert!(recovered.is_none(), "one recovered alert only: {}", e.json);
            assert_eq!(e.severity, Severity::Info, "the only alert after resume is the recovery: {}", e.json);
            assert_eq!(alert.severity, Severity::Info);
            assert!(alert.details.contains("recovered"), "{alert:?}");
            assert!(alert.lag_bytes < THRESHOLD, "{alert:?}");
            recovered = Some(alert.clone());
        } else {
            panic!("unexpected event for A while catching up: {}", e.json);
        }
    }
    let caught_up = api.wait_caught_up(&["replica-002"]).await;
    assert_eq!(caught_up, written);
    assert_eq!(api.replica("replica-002").await["lag_bytes"], 0);
    for i in 0..20 {
        let v = api.value_at("big", &format!("r{i:02}"), "replica-002").await;
        assert_eq!(v["i"], i);
    }

    // B got nothing: replica-001 never lagged past the threshold. The registry has handled every
    // event published before the ones A just received, so its delivered count for B is final
    // for that period.
    let rows = within("ListSubscriptions", runtime.registry().send(ListSubscriptions)).await.expect("registry");
    let row = rows.iter().find(|r| r.subscription_id == b_id).expect("B is subscribed");
    assert_eq!(row.delivered, 0, "B received an event for replica-001 it should not have");

    // And B is live: when replica-001 is the one paused, B's first event is its lag alert.
    api.pause("replica-001").await;
    for i in 0..8 {
        let ack = api.insert("more", &format!("m{i}"), json!({"blob": blob})).await;
        assert_eq!(acked_by(&ack), vec!["replica-002"], "{ack}");
    }
    let e = within("B's first event", b.next_event()).await.expect("B is live");
    let alert = lag_alert(&e).unwrap_or_else(|| panic!("B expects a lag alert: {}", e.json));
    assert_eq!(alert.replica_id, "replica-001");
    assert!(matches!(e.severity, Severity::Warning | Severity::Error));
}

// ---------------------------------------------------------------------------------------------
// 6. The primary crashes and restarts.

#[actix_web::test]
async fn a_crashed_primary_refuses_writes_and_comes_back_with_its_rows() {
    let (runtime, api) = start(repl_config()).await;
    let mut errors = subscribe(&runtime, types_filter(&[EventType::ReplicationError])).await;

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
        EventPayload::Replication(ReplicationEvent::ReplicationError(p)) => assert_eq!(p.error_code, "primary_down", "{}", e.json),
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

// ---------------------------------------------------------------------------------------------
// 7. Durability across a restart of the whole runtime.

#[actix_web::test]
async fn rows_positions_and_replicas_survive_a_restart_on_disk() {
    const N: usize = 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = repl_disk_config(dir.path());
    config.replication.mode = ReplicationMode::Sync;

    // First life: a replica added at run time, N rows (one updated, one deleted), every replica
    // caught up.
    let old_lsn = {
        let (runtime, api) = start(config.clone()).await;
        api.post("/api/v1/replication/replicas", json!({"replica_id": "replica-003", "mode": "async"})).await.expect(201);
        for i in 0..N {
            let ack = api.insert("kv", &format!("k{i:02}"), json!({"i": i})).await;
            assert!(acked_by(&ack).contains(&"replica-001".to_string()));
        }
        api.write(json!([{"op": "update", "table": "kv", "key": "k00", "value": {"i": "updated"}}])).await.expect(200);
        api.write(json!([{"op": "delete", "table": "kv", "key": "k01"}])).await.expect(200);
        let lsn = api.wait_caught_up(&["replica-001", "replica-002", "replica-003"]).await;
        runtime.shutdown().await;
        lsn
    };

    // Second life on the same directory. Heartbeats every millisecond: a replica's restart
    // announcement waits for its kept tail to be applied (a sync replica always keeps one, the
    // last commit's, which the primary confirmed only after the replica stored it), and a
    // heartbeat must not send it early (it did: the first change was then catching_up).
    config.replication.heartbeat_interval_ms = 1;
    let runtime = Runtime::start(config.clone()).expect("runtime starts again");
    let app = test::init_service(clusterd::http::app(clusterd::http::AppState::new(runtime.clone()))).await;
    let api = Api::new(app, TestRequest::to_request);
    // Every replica comes back in sync straight away: its first status change goes from starting
    // to in_sync at the old position, so it resumed from its own flushed position (one that
    // restarted from zero would go through catching_up at 0/0 first).
    let first = wait_in_sync(&runtime, &["replica-001", "replica-002", "replica-003"]).await;
    let changes = retained(&runtime, EventFilter { since_seq: Some(0), ..types_filter(&[EventType::ReplicaStatusChange]) }).await;
    for id in ["replica-001", "replica-002", "replica-003"] {
        let firsts: Vec<&ReplicaStatusChange> =
            changes.iter().filter_map(|e| status_change(e)).filter(|p| p.replica_id == id).collect();
        let p = firsts.first().unwrap_or_else(|| panic!("{id} published a status change"));
        assert_eq!((p.old_status.as_str(), p.new_status.as_str()), ("starting", "in_sync"), "{id}: {p:?}");
        assert_eq!(p.metadata.get("wal_position"), Some(&lsn_text(old_lsn)), "{id}: {p:?}");
        assert!(first.contains_key(id));
    }
    // Restarting is not adding: no replica_added in the second life.
    let added = retained(&runtime, EventFilter { since_seq: Some(0), ..types_filter(&[EventType::ReplicaAdded]) }).await;
    assert!(added.is_empty(), "replicas restored from disk are not announced as added: {:?}", added.iter().map(|e| &e.json).collect::<Vec<_>>());

    // The primary's position is where it was, and each replica has flushed exactly that.
    let s = api.status().await;
    assert_eq!(s["current_lsn_u64"], old_lsn, "{s}");
    assert_eq!(ids_of(&s["replicas"]), vec!["replica-001", "replica-002", "replica-003"], "the added replica survived");
    for r in s["replicas"].as_array().unwrap() {
        assert_eq!(r["flush_lsn_u64"], old_lsn, "{r}");
    }
    assert_eq!(api.replica("replica-003").await["mode"], "async");

    // Every row is where it was, with the update and the delete.
    for from in ["primary", "replica-001", "replica-002", "replica-003"] {
        assert_eq!(api.value_at("kv", "k00", from).await, json!({"i": "updated"}), "{from}");
        api.read("kv", "k01", from).await.expect_error(404, "row_not_found");
        for i in 2..N {
            assert_eq!(api.value_at("kv", &format!("k{i:02}"), from).await, json!({"i": i}), "{from}");
        }
    }

    // A new write continues the log past the old end, and reaches the sync replica.
    let ack = api.insert("kv", "new", json!("after restart")).await;
    assert!(ack["lsn_u64"].as_u64().unwrap() > old_lsn, "{ack} after {old_lsn}");
    assert!(acked_by(&ack).contains(&"replica-001".to_string()), "{ack}");
    assert_eq!(api.value_at("kv", "new", "replica-001").await, json!("after restart"));
    runtime.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 8. Adding and removing replicas at run time.

#[actix_web::test]
async fn a_replica_added_at_run_time_catches_up_from_zero_and_can_be_removed() {
    let (runtime, api) = start(repl_config()).await;
    for i in 0..10 {
        api.insert("t", &format!("k{i}"), json!(i)).await;
    }
    let mut events = subscribe(
        &runtime,
        types_filter(&[EventType::ReplicaAdded, EventType::ReplicaRemoved, EventType::ReplicaStatusChange])
            .with_ids(SubjectKind::Replica, ["replica-003"]),
    )
    .await;

    // Added over REST: 201 with its view, and replica_added.
    let view = api
        .post("/api/v1/replication/replicas", json!({"replica_id": "replica-003", "mode": "async"}))
        .await
        .expect(201);
    assert_eq!(view["replica_id"], "replica-003", "{view}");
    assert_eq!(view["mode"], "async", "{view}");
    let e = within("replica_added", events.next_event()).await.expect("live");
    match &e.payload {
        EventPayload::Replication(ReplicationEvent::ReplicaAdded(p)) => {
            assert_eq!(p.replica_id, "replica-003");
            assert_eq!(p.mode, "async");
        }
        other => panic!("expected replica_added first, got {other:?}"),
    }

    // It starts empty and catches up from zero: catching_up at 0/0, then in_sync once it has
    // replayed everything.
    let e = within("catching_up", events.next_event()).await.expect("live");
    let p = status_change(&e).unwrap_or_else(|| panic!("expected a status change, got {}", e.json));
    assert_eq!((p.old_status.as_str(), p.new_status.as_str()), ("starting", "catching_up"), "{p:?}");
    assert_eq!(p.metadata.get("wal_position").map(String::as_str), Some("0/0"), "{p:?}");
    next_event_matching(&mut events, |e| is_status(e, "replica-003", "in_sync"), TIMEOUT).await;
    for i in 0..10 {
        assert_eq!(api.value_at("t", &format!("k{i}"), "replica-003").await, json!(i));
    }
    let r = api.replica("replica-003").await;
    assert_eq!(r["flush_lsn_u64"], api.current_lsn().await, "{r}");
    let list = api.get("/api/v1/replication/replicas").await.expect(200);
    assert_eq!(list["total"], 3);
    assert_eq!(ids_of(&list["replicas"]), vec!["replica-001", "replica-002", "replica-003"]);

    // Ids that are taken or invalid, and bodies that make no sense.
    for id in ["replica-003", "replica-001"] {
        let d = api.post("/api/v1/replication/replicas", json!({"replica_id": id})).await.expect_error(409, "replica_exists");
        assert_eq!(d["replica_id"], id);
    }
    for id in ["bad id", "", "a/b", "primary"] {
        let d = api.post("/api/v1/replication/replicas", json!({"replica_id": id})).await.expect_error(400, "invalid_request");
        assert_eq!(d["field"], "replica_id", "{id:?}: {d}");
    }
    api.post("/api/v1/replication/replicas", json!({"replica_id": "r".repeat(65)})).await.expect_error(400, "invalid_request");
    api.post("/api/v1/replication/replicas", json!({"replica_id": "replica-004", "mode": "semi"})).await.expect_error(400, "invalid_json");
    api.post("/api/v1/replication/replicas", json!({"replica_id": "replica-004", "weight": 2})).await.expect_error(400, "invalid_json");
    // A snapshot nobody took: refused (400 or 404, as the snapshot routes decide), adding nothing.
    let r = api
        .post("/api/v1/replication/replicas", json!({"replica_id": "replica-004", "from_snapshot": "snap_nope"}))
        .await;
    assert!(matches!(r.status.as_u16(), 400 | 404), "from an unknown snapshot: {} {}", r.status, r.text());
    assert_eq!(api.get("/api/v1/replication/replicas").await.expect(200)["total"], 3, "none of those added anything");

    // Removed: 204 with no body, replica_removed, then it is gone everywhere.
    let r = api.delete("/api/v1/replication/replicas/replica-003").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    let e = next_event_matching(&mut events, |e| e.event_type == EventType::ReplicaRemoved, TIMEOUT).await;
    match &e.payload {
        EventPayload::Replication(ReplicationEvent::ReplicaRemoved(p)) => assert_eq!((p.replica_id.as_str(), p.mode.as_str()), ("replica-003", "async")),
        other => panic!("expected replica_removed, got {other:?}"),
    }
    let d = api.get("/api/v1/replication/replicas/replica-003").await.expect_error(404, "replica_not_found");
    assert_eq!(d["replica_id"], "replica-003");
    api.delete("/api/v1/replication/replicas/replica-003").await.expect_error(404, "replica_not_found");
    api.read("t", "k0", "replica-003").await.expect_error(404, "replica_not_found");
    let list = api.get("/api/v1/replication/replicas").await.expect(200);
    assert_eq!(ids_of(&list["replicas"]), vec!["replica-001", "replica-002"]);
    // Writes go on without it.
    let ack = api.insert("t", "after", json!("a")).await;
    assert!(!acked_by(&ack).contains(&"replica-003".to_string()));
}

// ---------------------------------------------------------------------------------------------
// 9. /health/replica.

#[actix_web::test]
async fn health_replica_answers_200_while_a_replica_streams_within_the_lag_and_503_when_none_does() {
    let (_runtime, api) = start(repl_config()).await;

    // Both streaming, nothing behind.
    for q in ["?lag=16kB", "", "?lag=0", "?lag=1MB", "?lag=4096"] {
        let body = api.get(&format!("/health/replica{q}")).await.expect(200);
        let mut ids = ids_of(&body["replicas"]);
        ids.sort();
        assert_eq!(ids, vec!["replica-001", "replica-002"], "{q}: {body}");
    }
    // A lag that is not a size, or a parameter it does not take: 400.
    let d = api.get("/health/replica?lag=bogus").await.expect_error(400, "invalid_request");
    assert_eq!(d["field"], "lag", "{d}");
    api.get("/health/replica?lag=-1").await.expect_error(400, "invalid_request");
    api.get("/health/replica?lagg=1kB").await.expect_error(400, "invalid_request");

    // One paused: the other still counts.
    api.pause("replica-002").await;
    let body = api.get("/health/replica?lag=16kB").await.expect(200);
    assert_eq!(ids_of(&body["replicas"]), vec!["replica-001"], "{body}");

    // The other crashed too: nobody streams, 503.
    api.crash("replica-001").await.expect(200);
    api.get("/health/replica?lag=16kB").await.expect_error(503, "no_replica_within_lag");
    api.get("/health/replica").await.expect_error(503, "no_replica_within_lag");

    // Resumed, replica-002 streams again: 200.
    api.resume("replica-002").await;
    let body = api.get("/health/replica?lag=16kB").await.expect(200);
    assert_eq!(ids_of(&body["replicas"]), vec!["replica-002"], "{body}");
}

// ---------------------------------------------------------------------------------------------
// 10. wal_position_update: sampled, and only built when someone listens.

#[actix_web::test]
async fn wal_positions_are_sampled_for_subscribers_and_not_built_without_one() {
    const INTERVAL_MS: u64 = 100;
    let mut config = repl_config();
    config.events.wal_position_interval_ms = INTERVAL_MS;
    let (runtime, api) = start(config).await;
    let replicas = ["replica-001", "replica-002"];

    // Nobody wants wal_position_update: many writes and reports later, none was built.
    assert!(!runtime.interest().wants(EventType::WalPositionUpdate));
    for i in 0..30 {
        api.insert("t", &format!("quiet{i}"), json!(i)).await;
    }
    api.wait_caught_up(&replicas).await;
    let body = api.get("/api/v1/events?event_types=wal_position_update").await.expect(200);
    assert_eq!(body["count"], 0, "no wal_position_update without a subscriber: {body}");

    // A subscriber asks for them: while writes keep positions moving for five intervals, each
    // replica's positions arrive at most once per interval.
    let mut sub = subscribe(&runtime, types_filter(&[EventType::WalPositionUpdate])).await;
    assert!(runtime.interest().wants(EventType::WalPositionUpdate));
    let started = Instant::now();
    let mut writes = 0;
    while started.elapsed() < Duration::from_millis(5 * INTERVAL_MS) {
        api.insert("t", &format!("busy{writes}"), json!(writes)).await;
        writes += 1;
    }
    let final_lsn = api.wait_caught_up(&replicas).await;
    // Read until each replica's reported position reaches the end of the log (the last sample
    // after the writes stop: positions moved since the previous one).
    let mut seen: HashMap<String, Vec<SharedEvent>> = HashMap::new();
    let at_end = |v: &Vec<SharedEvent>| {
        v.last().and_then(|e| wal_position(e)).is_some_and(|p| p.replay_lsn == lsn_text(final_lsn))
    };
    while !replicas.iter().all(|id| seen.get(*id).is_some_and(at_end)) {
        let e = within("wal_position_update", sub.next_event()).await.expect("live");
        let p = wal_position(&e).unwrap_or_else(|| panic!("only wal_position_update: {}", e.json));
        assert_eq!(e.source, format!("replica:{}", p.replica_id));
        seen.entry(p.replica_id.clone()).or_default().push(e.clone());
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    for id in replicas {
        let events = &seen[id];
        assert!(events.len() >= 2, "{id}: positions moved for several intervals: {} events", events.len());
        assert!(
            (events.len() as u64) <= elapsed_ms / INTERVAL_MS + 2,
            "{id}: at most one per {INTERVAL_MS} ms: {} events in {elapsed_ms} ms",
            events.len()
        );
        assert!(events.len() < writes, "{id}: sampled, not one per write ({writes} writes)");
        for pair in events.windows(2) {
            let (a, b) = (wal_position(&pair[0]).unwrap(), wal_position(&pair[1]).unwrap());
            let gap = pair[1].timestamp_ms - pair[0].timestamp_ms;
            // Sampling runs on a monotonic clock, timestamps on the wall clock: allow a few ms.
            assert!(gap + 5 >= INTERVAL_MS as i64, "{id}: two samples {gap} ms apart: {a:?} then {b:?}");
            assert_ne!(
                (&a.write_lsn, &a.flush_lsn, &a.replay_lsn),
                (&b.write_lsn, &b.flush_lsn, &b.replay_lsn),
                "{id}: a sample only when the position moved"
            );
        }
        let last = wal_position(events.last().unwrap()).unwrap();
        assert_eq!(last.flush_lsn, lsn_text(final_lsn));
        assert_eq!(last.bytes_behind, 0, "{last:?}");
    }

    // Positions at rest publish nothing more: replicas keep reporting every 50 ms, but the
    // position does not move. (A bounded observation window: absence cannot be awaited.)
    let quiet = tokio::time::timeout(Duration::from_millis(4 * INTERVAL_MS), sub.next_event()).await;
    assert!(quiet.is_err(), "a sample while no position moved: {:?}", quiet.map(|e| e.map(|e| e.json.clone())));

    // The subscriber leaves: from then on none is built again.
    drop(sub);
    registry_status(&runtime).await; // the registry has handled the unsubscribe
    assert!(!runtime.interest().wants(EventType::WalPositionUpdate));
    let before = count_positions(&runtime).await;
    for i in 0..30 {
        api.insert("t", &format!("after{i}"), json!(i)).await;
    }
    api.wait_caught_up(&replicas).await;
    assert_eq!(count_positions(&runtime).await, before, "no wal_position_update after the last subscriber left");
}

// ---------------------------------------------------------------------------------------------
// Crash combinations.

#[actix_web::test]
async fn a_write_waiting_for_replicas_when_the_primary_crashes_is_answered_at_once() {
    let mut config = repl_config();
    config.replication.mode = ReplicationMode::Sync;
    // Long enough that an answer before it cannot be the timeout.
    config.replication.sync_timeout_ms = 5000;
    let (_runtime, api) = start(config).await;
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
    let (runtime, api) = start(repl_config()).await;
    let mut events = subscribe(
        &runtime,
        types_filter(&[EventType::ReplicaStatusChange]).with_ids(SubjectKind::Replica, ["replica-002"]),
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
    assert_eq!((p.old_status.as_str(), p.new_status.as_str()), ("starting", "paused"), "{}", e.json);
    assert_eq!(api.replica("replica-002").await["status"], "paused");
    api.read("t", "x", "replica-002").await.expect_error(404, "row_not_found");

    // Resumed, it catches up.
    api.resume("replica-002").await;
    assert_eq!(api.eventually_value_at("t", "x", "replica-002").await, json!(1));
}

#[actix_web::test]
async fn a_replica_cut_off_by_a_partition_turns_disconnected_and_streams_again_once_healed() {
    // Heartbeats every 50 ms; silence for 300 ms means disconnected.
    let mut config = repl_config();
    config.replication.heartbeat_timeout_ms = 300;
    let (runtime, api) = start(config).await;
    let mut events = subscribe(
        &runtime,
        types_filter(&[EventType::ReplicaStatusChange]).with_ids(SubjectKind::Replica, ["replica-002"]),
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
    assert!(change.reason.starts_with("no heartbeat for "), "{}", e.json);
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
    assert_ne!(status_change(&e).unwrap().new_status, "disconnected", "{}", e.json);
    next_event_matching(&mut events, |e| is_status(e, "replica-002", "in_sync"), TIMEOUT).await;
    assert_eq!(api.value_at("t", "during", "replica-002").await, json!(1));
    api.wait_caught_up(&["replica-001", "replica-002"]).await;
}
