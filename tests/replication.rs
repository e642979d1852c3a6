//! The replication data path driven from outside, over REST and GraphQL: batches written through
//! `POST /api/v1/replication/operations` (and the `replicate` mutation) and acknowledged as the
//! mode says (sync, semi_sync, async), refused whole when invalid, rows read where they live with
//! `GET /api/v1/data/{table}/{key}?from=…`, and replicas added and removed at run time.
//! (What the primary tells about its replicas is in `replication_status.rs`; WAL, slots, snapshots
//! and restarts in `replication_durability.rs`; crashes and partitions in `faults.rs`.)
//!
//! Each test is a scenario told in its comments. Every wait is on an event, an answer, or (for
//! state that publishes no event of its own, such as "this replica has replayed that row") a short
//! poll inside `common::TIMEOUT`. Nothing sleeps to synchronise.

mod common;

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use clusterd::messages::events::{EventFilter, EventPayload, EventType, SubjectKind};
use clusterd::messages::replication::{ReplicateOps, ReplicationError, ReplicationEvent};
use clusterd::model::{lsn_text, Op, OpKind, ReplicaMode, ReplicationMode};
use serde_json::{json, Value};

use common::graphql::error_code;
use common::replication::*;
use common::server::Server;
use common::*;

impl Server {
    /// Waits until `row(table, key, from)` is there, and returns it.
    async fn wait_row(&self, table: &str, key: &str, from: &str) -> Value {
        let query = format!(
            r#"{{ row(table: "{table}", key: "{key}", from: "{from}") {{ table key value from replayLsn replayLsnU64 }} }}"#
        );
        // Polled: replaying publishes no event of its own.
        poll_until("the row to be replayed", || async {
            let r = self.query(&query).await;
            assert!(r.get("errors").is_none(), "{r}");
            (!r["data"]["row"].is_null()).then(|| r["data"]["row"].clone())
        })
        .await
    }
}

impl common::api::Api {
    async fn put(&self, path: &str, body: Value) -> common::api::Reply {
        self.send(actix_web::test::TestRequest::put().uri(path).set_json(body)).await
    }
}

// ---------------------------------------------------------------------------------------------
// The modes.

#[actix_web::test]
async fn sync_mode_acknowledges_after_the_sync_replica_flushed_and_the_async_one_follows() {
    let (_runtime, api) = start_in_sync(TestConfig::replication().mode(ReplicationMode::Sync).build()).await;

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

#[actix_web::test]
async fn an_upsert_inserts_or_replaces_and_replicates_like_any_write() {
    let (_runtime, api) = start_in_sync(TestConfig::replication().mode(ReplicationMode::Sync).build()).await;
    let upsert = |value: Value| json!([{"op": "upsert", "table": "kv", "key": "k1", "value": value}]);

    // No row yet: the upsert inserts it; the sync replica has it once acknowledged.
    api.write(upsert(json!({"v": 1}))).await.expect(200);
    assert_eq!(api.read("kv", "k1", "replica-001").await.expect(200)["value"], json!({"v": 1}));
    // The row exists: the upsert replaces its value where an insert is refused.
    api.write(json!([{"op": "insert", "table": "kv", "key": "k1", "value": 0}])).await.expect_error(409, "duplicate_key");
    api.write(upsert(json!({"v": 2}))).await.expect(200);
    assert_eq!(api.read("kv", "k1", "primary").await.expect(200)["value"], json!({"v": 2}));
    assert_eq!(api.read("kv", "k1", "replica-001").await.expect(200)["value"], json!({"v": 2}));
    // Like insert and update, it needs a value.
    api.write(json!([{"op": "upsert", "table": "kv", "key": "k2"}])).await.expect_error(400, "invalid_request");
}

#[actix_web::test]
async fn semi_sync_counts_only_sync_replicas_toward_its_quorum() {
    let config = TestConfig::replication().mode(ReplicationMode::SemiSync).with(|c| c.replication.sync_quorum = 1).build();
    let (_runtime, api) = start_in_sync(config).await;

    // Both replicas streaming: the quorum of one is replica-001, the only sync replica.
    let ack = api.insert("t", "a", json!(1)).await;
    assert_eq!(ack["mode"], "semi_sync");
    assert!(acked_by(&ack).contains(&"replica-001".to_string()), "the sync replica acknowledged: {ack}");

    // With replica-001 (sync) paused, replica-002 (async) gets the write and replays it, and the
    // write still waits: an async replica is never counted toward sync_quorum, as PostgreSQL's
    // `ANY 1 (replica-001)` never counts a standby it does not name.
    api.pause("replica-001").await;
    let before = api.current_lsn().await;
    let write = Box::pin(api.write(json!([{"op": "insert", "table": "t", "key": "b", "value": 2}])));
    let async_has_it = Box::pin(poll_until("replica-002 to replay the waiting write", || async {
        let current = api.current_lsn().await;
        let replayed = api.replica("replica-002").await["replay_lsn_u64"].as_u64()?;
        (current > before && replayed >= current).then_some(())
    }));
    let write = match futures_util::future::select(write, async_has_it).await {
        futures_util::future::Either::Left((reply, _)) => {
            panic!("the async replica alone acknowledged a semi_sync write: {}", reply.text())
        }
        futures_util::future::Either::Right(((), write)) => write,
    };
    assert_eq!(api.value_at("t", "b", "replica-002").await, json!(2), "the async replica has it");

    // Once the sync replica resumes and catches up, the waiting write is acknowledged, by it.
    api.resume("replica-001").await;
    let ack = within("the write waiting for replica-001", write).await.expect(200);
    assert!(acked_by(&ack).contains(&"replica-001".to_string()), "{ack}");

    // With the sync replica paused and a short timeout, the write answers 504: durable on the
    // primary, missing the sync replica only (the async one is never waited for).
    api.put("/api/v1/replication/config", json!({"mode": "semi_sync", "sync_timeout_ms": 300})).await.expect(200);
    api.pause("replica-001").await;
    let d = api.write(json!([{"op": "insert", "table": "t", "key": "c", "value": 3}])).await.expect_error(504, "replication_timeout");
    assert_eq!(d["durable_on_primary"], true, "{d}");
    assert_eq!(d["missing"], json!(["replica-001"]), "{d}");
    assert_eq!(d["timeout_ms"], 300);
    // Durable on the primary means readable there.
    assert_eq!(api.value_at("t", "c", "primary").await, json!(3));
}

#[actix_web::test]
async fn a_sync_quorum_the_sync_replicas_cannot_reach_is_refused() {
    let (_runtime, api) = start_in_sync(TestConfig::replication().build()).await;

    // Two replicas, one of them sync: a semi_sync quorum of two could never be reached.
    let d = api
        .put("/api/v1/replication/config", json!({"mode": "semi_sync", "sync_quorum": 2}))
        .await
        .expect_error(409, "conflicts_with_state");
    assert_eq!(d["field"], "sync_quorum", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("1 sync replica"), "{d}");
    assert_eq!(api.status().await["sync_quorum"], 1, "nothing changed");

    // Removing the only sync replica would leave semi_sync's quorum of one unreachable: refused,
    // saying what to change first; the replica stays.
    let d = api.delete("/api/v1/replication/replicas/replica-001").await.expect_error(409, "sync_quorum_unreachable");
    assert_eq!(d["replica_id"], "replica-001", "{d}");
    assert_eq!(d["sync_quorum"], 1, "{d}");
    assert_eq!(d["sync_replicas"], 1, "{d}");
    api.replica("replica-001").await;

    // Adding a second sync replica makes room for it; so does a mode that counts no quorum.
    api.post("/api/v1/replication/replicas", json!({"replica_id": "replica-003", "mode": "sync"})).await.expect(201);
    api.put("/api/v1/replication/config", json!({"mode": "semi_sync", "sync_quorum": 2})).await.expect(200);
    api.delete("/api/v1/replication/replicas/replica-001").await.expect_error(409, "sync_quorum_unreachable");
    api.put("/api/v1/replication/config", json!({"mode": "sync"})).await.expect(200);
    api.delete("/api/v1/replication/replicas/replica-001").await.expect(204);
    // Back to semi_sync, a quorum of two is now out of reach again (one sync replica left).
    api.put("/api/v1/replication/config", json!({"mode": "semi_sync"})).await.expect_error(409, "conflicts_with_state");
}

#[actix_web::test]
async fn a_sync_timeout_reaches_sessions_filtered_to_the_replicas_that_missed_the_write() {
    // Two sync replicas in sync mode, both paused: a write misses both and times out.
    let config = TestConfig::replication()
        .replicas(&[("replica-001", ReplicaMode::Sync), ("replica-002", ReplicaMode::Sync)])
        .mode(ReplicationMode::Sync)
        .sync_timeout_ms(200)
        .build();
    let server = Server::start(config);
    wait_in_sync(&server.runtime, &["replica-001", "replica-002"]).await;
    let filtered = |replica: &str| format!("/api/v1/ws/cluster/replication?replica_ids={replica}&event_types=replication_error");
    let mut missed = server.upgrade(&filtered("replica-002"), None, None).await.expect("upgrade");
    let mut other = server.upgrade(&filtered("replica-009"), None, None).await.expect("upgrade");
    for ws in [&mut missed, &mut other] {
        assert_eq!(ws.json().await["type"], "welcome");
        assert_eq!(ws.json().await["type"], "subscribed");
    }
    server.pause("replica-001").await;
    server.pause("replica-002").await;
    let ops = vec![Op { op: OpKind::Insert, table: "t".into(), key: "k".into(), value: Some(json!(1).into()) }];
    let answer = within("ReplicateOps", server.runtime.primary().send(ReplicateOps { ops })).await.expect("primary answers");
    assert!(matches!(answer, Err(ReplicationError::SyncTimeout { .. })), "{answer:?}");

    // The session filtered to a replica that missed the write sees the error; its subjects and
    // payload name every replica that missed it, and no id is empty.
    let frame = missed.json().await;
    assert_eq!(frame["event_type"], "replication_error", "{frame}");
    assert_eq!(frame["subjects"]["replica_ids"], json!(["replica-001", "replica-002"]), "{frame}");
    assert_eq!(frame["payload"]["error_code"], "sync_timeout", "{frame}");
    assert_eq!(frame["payload"]["replica_id"], "replica-001", "{frame}");
    assert_eq!(frame["payload"]["replica_ids"], json!(["replica-001", "replica-002"]), "{frame}");
    // A session filtered to another replica does not: its next frame is its own filter's echo.
    other.send_text(r#"{"replica_ids":["replica-009"]}"#).await;
    assert_eq!(other.json().await["type"], "subscribed", "the error did not reach replica-009's session");
}

#[actix_web::test]
async fn async_mode_acknowledges_without_waiting_and_the_replicas_get_the_data_eventually() {
    let (_runtime, api) = start_in_sync(TestConfig::replication().mode(ReplicationMode::Async).build()).await;

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
// Batch validation and atomicity.

#[actix_web::test]
async fn invalid_batches_are_refused_whole_and_change_nothing() {
    let (runtime, api) = start_in_sync(TestConfig::replication().mode(ReplicationMode::Sync).build()).await;

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
    api.write(json!([{"op": "merge", "table": "users", "key": "u2", "value": 1}])).await.expect_error(400, "invalid_json");
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
    assert!(replication_events.is_empty(), "refused batches publish nothing: {:?}", replication_events.iter().map(|e| e.json()).collect::<Vec<_>>());

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
// Adding and removing replicas at run time.

#[actix_web::test]
async fn a_replica_added_at_run_time_catches_up_from_zero_and_can_be_removed() {
    let (runtime, api) = start_in_sync(TestConfig::replication().build()).await;
    for i in 0..10 {
        api.insert("t", &format!("k{i}"), json!(i)).await;
    }
    let mut events = subscribe(
        &runtime,
        only_types(&[EventType::ReplicaAdded, EventType::ReplicaRemoved, EventType::ReplicaStatusChange])
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
    let p = status_change(&e).unwrap_or_else(|| panic!("expected a status change, got {}", e.json()));
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
// GraphQL.

#[actix_web::test]
async fn replication_queries_and_mutations_over_post() {
    // Mode `async`, so that writes never wait for a replica; 50 ms replication heartbeats, so that
    // lag is measured often.
    let server = Server::start(TestConfig::memory().mode(ReplicationMode::Async).heartbeat_ms(50, 3000).build());

    let r = server
        .query("{ replicationStatus { primary primaryState mode syncQuorum syncTimeoutMs currentLsn currentLsnU64 health replicas { replicaId mode status } } }")
        .await;
    let status = &r["data"]["replicationStatus"];
    assert_eq!(status["primary"], "primary", "{r}");
    assert_eq!(status["primaryState"], "up");
    assert_eq!(status["mode"], "ASYNC");
    let ids: Vec<&str> = status["replicas"]
        .as_array()
        .unwrap_or_else(|| panic!("replicas: {r}"))
        .iter()
        .map(|r| r["replicaId"].as_str().expect("replicaId"))
        .collect();
    assert_eq!(ids, ["replica-001", "replica-002"]);
    assert_eq!(status["replicas"][0]["mode"], "SYNC");
    assert_eq!(status["replicas"][1]["mode"], "ASYNC");

    let r = server
        .query(r#"{ replicas { replicaId } replica(id: "replica-001") { replicaId mode status statusReason writeLsn flushLsn replayLsn lagBytes lagSeconds } missing: replica(id: "replica-404") { replicaId } }"#)
        .await;
    assert_eq!(
        r["data"]["replicas"].as_array().map(Vec::len),
        Some(2),
        "{r}"
    );
    assert_eq!(r["data"]["replica"]["replicaId"], "replica-001", "{r}");
    assert!(
        r["data"]["replica"]["writeLsn"]
            .as_str()
            .is_some_and(|l| l.contains('/')),
        "{r}"
    );
    assert_eq!(r["data"]["missing"], Value::Null, "{r}");

    // The data path: a batch is durable on the primary when `replicate` answers, and reaches a
    // replica by replay.
    let r = server
        .query(r#"mutation { replicate(ops: [{op: INSERT, table: "users", key: "u1", value: {name: "Ada", age: 36}}, {op: INSERT, table: "users", key: "u2", value: "plain"}]) { lsn lsnU64 acknowledgedBy mode } }"#)
        .await;
    let ack = &r["data"]["replicate"];
    assert!(ack["lsnU64"].as_u64().is_some_and(|l| l > 0), "{r}");
    assert!(ack["lsn"].as_str().is_some_and(|l| l.contains('/')), "{r}");
    assert_eq!(ack["mode"], "ASYNC");
    assert!(ack["acknowledgedBy"].is_array());
    let lsn = ack["lsnU64"].as_u64().expect("lsnU64");

    let r = server
        .query(r#"{ row(table: "users", key: "u1") { value from replayLsnU64 } absent: row(table: "users", key: "nobody") { value } }"#)
        .await;
    assert_eq!(
        r["data"]["row"]["value"],
        json!({"name": "Ada", "age": 36}),
        "{r}"
    );
    assert_eq!(r["data"]["row"]["from"], "primary");
    assert_eq!(r["data"]["absent"], Value::Null, "{r}");

    let row = server.wait_row("users", "u1", "replica-001").await;
    assert_eq!(row["value"], json!({"name": "Ada", "age": 36}));
    assert_eq!(row["from"], "replica-001");
    assert!(
        row["replayLsnU64"].as_u64().is_some_and(|l| l >= lsn),
        "{row}"
    );

    let r = server
        .query(r#"{ row(table: "users", key: "u1", from: "replica-404") { value } }"#)
        .await;
    assert_eq!(error_code(&r), "replica_not_found", "{r}");
    assert_eq!(
        r["errors"][0]["extensions"]["details"]["replica_id"],
        "replica-404"
    );

    // Domain errors carry the REST codes and details.
    let r = server
        .query(r#"mutation { replicate(ops: [{op: INSERT, table: "users", key: "u1", value: 1}]) { lsn } }"#)
        .await;
    assert_eq!(error_code(&r), "duplicate_key", "{r}");
    assert_eq!(r["errors"][0]["extensions"]["status"], 409, "{r}");
    assert_eq!(
        r["errors"][0]["extensions"]["details"],
        json!({"table": "users", "key": "u1"})
    );
    let r = server
        .query(r#"mutation { replicate(ops: [{op: UPDATE, table: "users", key: "u9", value: 1}]) { lsn } }"#)
        .await;
    assert_eq!(error_code(&r), "row_not_found", "{r}");
    let r = server
        .query(r#"mutation { replicate(ops: [{op: DELETE, table: "users", key: "u2", value: 1}]) { lsn } }"#)
        .await;
    assert_eq!(error_code(&r), "invalid_request", "{r}");
    assert_eq!(
        r["errors"][0]["extensions"]["details"]["field"], "ops[0].value",
        "{r}"
    );
    let r = server
        .query(r#"mutation { replicate(ops: []) { lsn } }"#)
        .await;
    assert_eq!(error_code(&r), "invalid_request", "{r}");
    let r = server
        .query(
            r#"mutation { replicate(ops: [{op: DELETE, table: "users", key: "u2"}]) { lsnU64 } }"#,
        )
        .await;
    assert!(
        r["data"]["replicate"]["lsnU64"]
            .as_u64()
            .is_some_and(|l| l > lsn),
        "{r}"
    );

    // Pause and resume.
    let r = server
        .query(r#"mutation { pauseReplica(replicaId: "replica-002") { replicaId status statusReason } }"#)
        .await;
    assert_eq!(r["data"]["pauseReplica"]["status"], "PAUSED", "{r}");
    let r = server
        .query(r#"mutation { pauseReplica(replicaId: "replica-002") { status } }"#)
        .await;
    assert_eq!(error_code(&r), "wrong_state", "{r}");
    let r = server
        .query(r#"{ replicationHealth { healthy replicas { replicaId healthy reasons status lagBytes } } }"#)
        .await;
    let health = &r["data"]["replicationHealth"];
    assert_eq!(health["healthy"], false, "{r}");
    let paused = health["replicas"]
        .as_array()
        .and_then(|rs| rs.iter().find(|h| h["replicaId"] == "replica-002"))
        .unwrap_or_else(|| panic!("replica-002's health: {r}"));
    assert_eq!(paused["healthy"], false);
    assert_eq!(paused["status"], "PAUSED");
    assert!(
        paused["reasons"]
            .as_array()
            .is_some_and(|rs| !rs.is_empty()),
        "{r}"
    );
    let r = server
        .query(r#"mutation { resumeReplica(replicaId: "replica-002") { replicaId status } }"#)
        .await;
    assert_eq!(
        r["data"]["resumeReplica"]["replicaId"], "replica-002",
        "{r}"
    );
    assert_ne!(r["data"]["resumeReplica"]["status"], "PAUSED", "{r}");
    let r = server
        .query(r#"mutation { resumeReplica(replicaId: "replica-002") { status } }"#)
        .await;
    assert_eq!(error_code(&r), "wrong_state", "{r}");
    let r = server
        .query(r#"mutation { pauseReplica(replicaId: "replica-404") { status } }"#)
        .await;
    assert_eq!(error_code(&r), "replica_not_found", "{r}");
    assert_eq!(
        r["errors"][0]["extensions"]["details"]["replica_id"],
        "replica-404"
    );

    // The mode: SYNC waits for the sync replica; paused, it never flushes, so the write times out
    // (durable on the primary all the same).
    let r = server
        .query("mutation { setReplicationMode(mode: SYNC, syncTimeoutMs: 200) { mode syncQuorum syncTimeoutMs heartbeatIntervalMs heartbeatTimeoutMs conflictStrategy sitePriority } }")
        .await;
    let settings = &r["data"]["setReplicationMode"];
    assert_eq!(settings["mode"], "SYNC", "{r}");
    assert_eq!(settings["syncTimeoutMs"], 200);
    assert_eq!(settings["heartbeatIntervalMs"], 50);
    assert_eq!(settings["conflictStrategy"], "LAST_WRITER_WINS");
    let r = server
        .query("{ replicationStatus { mode syncTimeoutMs } }")
        .await;
    assert_eq!(r["data"]["replicationStatus"]["mode"], "SYNC", "{r}");
    server.pause("replica-001").await;
    let r = server
        .query(r#"mutation { replicate(ops: [{op: INSERT, table: "users", key: "u3", value: 3}]) { lsn } }"#)
        .await;
    assert_eq!(error_code(&r), "replication_timeout", "{r}");
    let details = &r["errors"][0]["extensions"]["details"];
    assert_eq!(details["durable_on_primary"], true, "{r}");
    assert_eq!(details["timeout_ms"], 200);
    assert_eq!(details["missing"], json!(["replica-001"]));
    let r = server
        .query(r#"{ row(table: "users", key: "u3") { value } }"#)
        .await;
    assert_eq!(r["data"]["row"]["value"], 3, "durable on the primary: {r}");
    server.resume("replica-001").await;

    // A quorum larger than the sync replicas (one here) is refused.
    let r = server
        .query("mutation { setReplicationMode(mode: SEMI_SYNC, syncQuorum: 2) { mode } }")
        .await;
    // More replicas than there are: a conflict with the cluster as it is (409 over REST), as on
    // every face (issue 15).
    assert_eq!(error_code(&r), "conflicts_with_state", "{r}");
    assert_eq!(
        r["errors"][0]["extensions"]["details"]["field"], "sync_quorum",
        "{r}"
    );
    let r = server
        .query("mutation { setReplicationMode(mode: SEMI_SYNC, syncQuorum: 1) { mode syncQuorum } }")
        .await;
    assert_eq!(
        r["data"]["setReplicationMode"],
        json!({"mode": "SEMI_SYNC", "syncQuorum": 1}),
        "{r}"
    );
    let r = server
        .query("mutation { setReplicationMode(mode: ASYNC, syncQuorum: 2) { mode syncQuorum } }")
        .await;
    assert_eq!(
        r["data"]["setReplicationMode"],
        json!({"mode": "ASYNC", "syncQuorum": 2}),
        "a quorum only semi_sync counts: {r}"
    );

    // The replica lifecycle.
    let r = server
        .query(r#"mutation { addReplica(replicaId: "replica-003") { replicaId mode status } }"#)
        .await;
    assert_eq!(r["data"]["addReplica"]["replicaId"], "replica-003", "{r}");
    assert_eq!(r["data"]["addReplica"]["mode"], "ASYNC", "the default: {r}");
    let r = server
        .query(r#"mutation { addReplica(replicaId: "replica-003", mode: SYNC) { replicaId } }"#)
        .await;
    assert_eq!(error_code(&r), "replica_exists", "{r}");
    let r = server
        .query(r#"mutation { addReplica(replicaId: "bad id!") { replicaId } }"#)
        .await;
    assert_eq!(error_code(&r), "invalid_request", "{r}");
    // It catches up from the WAL: it gets what was written before it was added.
    let row = server.wait_row("users", "u1", "replica-003").await;
    assert_eq!(row["value"], json!({"name": "Ada", "age": 36}));
    let r = server
        .query(r#"mutation { removeReplica(replicaId: "replica-003") }"#)
        .await;
    assert_eq!(r["data"]["removeReplica"], true, "{r}");
    let r = server
        .query(r#"mutation { removeReplica(replicaId: "replica-003") }"#)
        .await;
    assert_eq!(error_code(&r), "replica_not_found", "{r}");
    let r = server
        .query(r#"{ replica(id: "replica-003") { replicaId } }"#)
        .await;
    assert_eq!(r["data"]["replica"], Value::Null, "{r}");

    // Lag, history, throughput.
    let r = server
        .query("{ replicationLag { replicaId status lagBytes lagSeconds writeLagMs flushLagMs replayLagMs } }")
        .await;
    let lag = r["data"]["replicationLag"]
        .as_array()
        .unwrap_or_else(|| panic!("replicationLag: {r}"));
    assert_eq!(lag.len(), 2, "{r}");
    assert!(
        lag.iter()
            .all(|l| l["lagBytes"].is_u64() && l["lagSeconds"].is_number()),
        "{r}"
    );
    let r = server
        .query(r#"{ lagHistory(replicaId: "replica-001", seconds: 600) { replicaId samples { timestamp timestampMs lagBytes lagSeconds replayLsn replayLsnU64 } } }"#)
        .await;
    let history = r["data"]["lagHistory"]
        .as_array()
        .unwrap_or_else(|| panic!("lagHistory: {r}"));
    assert_eq!(history.len(), 1, "{r}");
    assert_eq!(history[0]["replicaId"], "replica-001");
    assert!(history[0]["samples"].is_array(), "{r}");
    let r = server.query("{ lagHistory { replicaId } }").await;
    assert_eq!(
        r["data"]["lagHistory"].as_array().map(Vec::len),
        Some(2),
        "{r}"
    );
    let r = server
        .query(r#"{ lagHistory(replicaId: "replica-404") { replicaId } }"#)
        .await;
    assert_eq!(error_code(&r), "replica_not_found", "{r}");
    let r = server
        .query("{ replicationThroughput { windowSeconds primaryOpsPerSecond primaryBytesPerSecond replicas { replicaId replayedBytesPerSecond } } }")
        .await;
    let throughput = &r["data"]["replicationThroughput"];
    assert!(
        throughput["windowSeconds"]
            .as_f64()
            .is_some_and(|w| w > 0.0),
        "{r}"
    );
    assert!(
        throughput["primaryOpsPerSecond"]
            .as_f64()
            .is_some_and(|o| o > 0.0),
        "writes in the window: {r}"
    );
    assert_eq!(
        throughput["replicas"].as_array().map(Vec::len),
        Some(2),
        "{r}"
    );
}
