//! The replication part of the GraphQL face over a real socket: queries and mutations on
//! `POST /graphql` (the data path, the replica lifecycle, the mode, and errors carrying the REST
//! codes), and the subscriptions `replicaStatusChanges` and `replicationLagUpdates` over
//! `graphql-transport-ws`.
//!
//! Every wait is on a frame or an answer where one tells; a condition only the server can see
//! (a replica has replayed a row, the registry has a subscription) is polled, always within a
//! timeout. Nothing sleeps to let time pass.
//!
//! The configuration is `Config::default()` (primary `primary`, `replica-001` sync and
//! `replica-002` async) with storage in memory, mode `async` so that writes never wait for a
//! replica, and 50 ms replication heartbeats so that lag is measured often.

mod common;

use std::time::Duration;

use actix_web::rt::time::sleep;
use serde_json::{json, Value};

use clusterd::config::{StorageEngine};
use clusterd::model::{ReplicationMode};
use clusterd::messages::replication::{PauseReplica, ReplicateOps, ResumeReplica};
use clusterd::model::{Op, OpKind};
use clusterd::Config;

use common::graphql::*;

fn test_config() -> Config {
    let mut config = Config::default();
    config.storage.engine = StorageEngine::Memory;
    config.replication.mode = ReplicationMode::Async;
    config.replication.heartbeat_interval_ms = 50;
    config
}

impl Server {
    /// A query or mutation over `POST /graphql`; the whole GraphQL response.
    async fn query(&self, query: &str) -> Value {
        self.post(query, None).await
    }

    /// Connects a `graphql-transport-ws` client and initialises it.
    async fn transport_ws(&self) -> WsConn {
        let mut ws = self.ws("/graphql/ws", "graphql-transport-ws").await;
        ws.init(json!({})).await;
        ws
    }

    /// A `POST` to a REST route with no body; its status.
    async fn rest_post(&self, path: &str) -> u16 {
        let res = awc::Client::new()
            .post(self.url("http", path))
            .send()
            .await
            .expect("REST POST");
        res.status().as_u16()
    }

    /// Waits until `row(table, key, from)` is there, and returns it.
    async fn wait_row(&self, table: &str, key: &str, from: &str) -> Value {
        let query = format!(
            r#"{{ row(table: "{table}", key: "{key}", from: "{from}") {{ table key value from replayLsn replayLsnU64 }} }}"#
        );
        within(WAIT, "the row to be replayed", async {
            loop {
                let r = self.query(&query).await;
                assert!(r.get("errors").is_none(), "{r}");
                if !r["data"]["row"].is_null() {
                    return r["data"]["row"].clone();
                }
                // Polled: replaying publishes no event of its own.
                sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }

    async fn pause(&self, replica: &str) {
        self.runtime
            .primary()
            .send(PauseReplica {
                replica_id: replica.into(),
            })
            .await
            .expect("primary answers")
            .expect("replica pauses");
    }

    async fn resume(&self, replica: &str) {
        self.runtime
            .primary()
            .send(ResumeReplica {
                replica_id: replica.into(),
            })
            .await
            .expect("primary answers")
            .expect("replica resumes");
    }

    /// Inserts one row through the runtime; durable on the primary when this returns.
    async fn insert(&self, table: &str, key: &str, value: Value) {
        self.runtime
            .primary()
            .send(ReplicateOps {
                ops: vec![Op {
                    op: OpKind::Insert,
                    table: table.into(),
                    key: key.into(),
                    value: Some(value.into()),
                }],
            })
            .await
            .expect("primary answers")
            .expect("the write is accepted");
    }
}


#[actix_web::test]
async fn replication_queries_and_mutations_over_post() {
    let server = Server::start(test_config());

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

    let r = server
        .query("mutation { setReplicationMode(mode: SEMI_SYNC, syncQuorum: 5) { mode } }")
        .await;
    assert_eq!(error_code(&r), "invalid_request", "{r}");
    assert_eq!(
        r["errors"][0]["extensions"]["details"]["field"], "sync_quorum",
        "{r}"
    );
    let r = server
        .query("mutation { setReplicationMode(mode: SEMI_SYNC, syncQuorum: 2) { mode syncQuorum } }")
        .await;
    assert_eq!(
        r["data"]["setReplicationMode"],
        json!({"mode": "SEMI_SYNC", "syncQuorum": 2}),
        "{r}"
    );
    let r = server
        .query("mutation { setReplicationMode(mode: ASYNC) { mode syncQuorum } }")
        .await;
    assert_eq!(
        r["data"]["setReplicationMode"],
        json!({"mode": "ASYNC", "syncQuorum": 2}),
        "{r}"
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

#[actix_web::test]
async fn transport_ws_replica_status_changes_for_one_replica() {
    let server = Server::start(test_config());
    let mut ws = server.transport_ws().await;
    ws.subscribe(
        "1",
        r#"subscription { replicaStatusChanges(replicaId: "replica-002") { replicaId oldStatus newStatus reason metadata seq eventId severity timestamp timestampMs } }"#,
    )
    .await;
    server.wait_subscribed("replicaStatusChanges").await;

    // replica-001 first: its event comes earlier in seq order, so had the filter let it through
    // it would be seen before replica-002's. One paused through the runtime, one through REST.
    server.pause("replica-001").await;
    assert_eq!(
        server
            .rest_post("/api/v1/replication/replicas/replica-002/pause")
            .await,
        200
    );
    // replica-002 may still be settling from its start (starting, catching_up …): those changes
    // come too, and are about replica-002 as well.
    let mut last_seq = 0;
    let paused = loop {
        let e = ws.next_of("1", "replicaStatusChanges").await;
        assert_eq!(
            e["replicaId"], "replica-002",
            "only replica-002's changes: {e}"
        );
        let seq = e["seq"].as_u64().expect("seq");
        assert!(seq > last_seq, "in seq order: {e}");
        last_seq = seq;
        if e["newStatus"] == "PAUSED" {
            break e;
        }
    };
    assert_eq!(paused["reason"], "paused by operator", "{paused}");
    assert_eq!(paused["severity"], "WARNING");
    assert!(paused["metadata"]["wal_position"].is_string(), "{paused}");
    assert!(
        paused["eventId"]
            .as_str()
            .is_some_and(|id| id.starts_with("evt_")),
        "{paused}"
    );
    let ms = paused["timestampMs"].as_i64().expect("timestampMs");
    assert_eq!(paused["timestamp"].as_i64(), Some(ms / 1000));

    // Resumed through the runtime: it leaves `paused` (for whatever its lag makes it), and
    // replica-001's resume, first again, is not seen.
    server.resume("replica-001").await;
    server.resume("replica-002").await;
    let e = ws.next_of("1", "replicaStatusChanges").await;
    assert_eq!(e["replicaId"], "replica-002", "{e}");
    assert_eq!(e["oldStatus"], "PAUSED", "{e}");
    assert_ne!(e["newStatus"], "PAUSED", "{e}");
    assert!(e["seq"].as_u64().is_some_and(|s| s > last_seq), "{e}");

    // Completing the subscription ends it.
    ws.send(json!({ "id": "1", "type": "complete" })).await;
    loop {
        let msg = ws.json().await;
        assert_eq!(msg["id"], "1", "{msg}");
        if msg["type"] == "complete" {
            break;
        }
        assert_eq!(msg["type"], "next", "{msg}");
        assert_eq!(
            msg["payload"]["data"]["replicaStatusChanges"]["replicaId"],
            "replica-002"
        );
    }
}

#[actix_web::test]
async fn transport_ws_replication_lag_updates_at_or_above_threshold() {
    let server = Server::start(test_config());
    let mut ws = server.transport_ws().await;
    ws.subscribe(
        "lag",
        r#"subscription { replicationLagUpdates(replicaId: "replica-002", threshold: 1) { replicaId lagBytes lagSeconds thresholdBytes severity status seq eventId timestamp timestampMs } }"#,
    )
    .await;
    // The same samples, but a threshold no sample reaches: nothing may come of it.
    ws.subscribe(
        "high",
        r#"subscription { replicationLagUpdates(replicaId: "replica-002", threshold: 1099511627776) { replicaId lagBytes } }"#,
    )
    .await;
    server.wait_subscribed("replicationLagUpdates").await;

    // While nothing is written, replica-002's lag is 0 every heartbeat: below the threshold.
    // Paused, it gets nothing of the next write, and its lag is measured as the primary's
    // flushed position minus its replay position at each of its heartbeats.
    server.pause("replica-002").await;
    server.insert("orders", "o1", json!({"total": 42})).await;
    // replica-001 is measured at every heartbeat too (and may lag for a moment after the
    // write): its samples are not for this filter.
    let mut last_seq = 0;
    for _ in 0..3 {
        let e = ws.next_of("lag", "replicationLagUpdates").await;
        assert_eq!(
            e["replicaId"], "replica-002",
            "only replica-002's samples: {e}"
        );
        let lag = e["lagBytes"].as_u64().expect("lagBytes");
        assert!(lag >= 1, "only samples at or above the threshold: {e}");
        assert_eq!(e["status"], "PAUSED", "{e}");
        assert_eq!(e["severity"], "INFO", "{e}");
        assert_eq!(
            e["thresholdBytes"], 262_144,
            "the server's alert threshold: {e}"
        );
        assert!(e["lagSeconds"].as_f64().is_some_and(|s| s >= 0.0), "{e}");
        assert!(
            e["eventId"]
                .as_str()
                .is_some_and(|id| id.starts_with("evt_")),
            "{e}"
        );
        let seq = e["seq"].as_u64().expect("seq");
        assert!(seq > last_seq, "one sample per measurement, in order: {e}");
        last_seq = seq;
        let ms = e["timestampMs"].as_i64().expect("timestampMs");
        assert_eq!(e["timestamp"].as_i64(), Some(ms / 1000));
    }

    // Three samples were at or above 1 byte and far below the high threshold: completing "high"
    // now is answered with `complete` and no sample for it.
    ws.send(json!({ "id": "high", "type": "complete" })).await;
    loop {
        let msg = ws.json().await;
        if msg["id"] == "high" {
            assert_eq!(
                msg["type"], "complete",
                "nothing reaches the high threshold: {msg}"
            );
            break;
        }
        assert_eq!(msg["id"], "lag", "{msg}");
        assert_eq!(msg["type"], "next", "{msg}");
    }

    // Resumed, it catches up; the lag samples it then yields (if any are taken before it is
    // caught up) are still at or above the threshold.
    server.resume("replica-002").await;
    ws.send(json!({ "id": "lag", "type": "complete" })).await;
    loop {
        let msg = ws.json().await;
        assert_eq!(msg["id"], "lag", "{msg}");
        if msg["type"] == "complete" {
            break;
        }
        let e = &msg["payload"]["data"]["replicationLagUpdates"];
        assert!(e["lagBytes"].as_u64().is_some_and(|l| l >= 1), "{msg}");
    }
}

#[actix_web::test]
async fn slots_are_queryable_and_a_logical_slot_shows_what_was_written_after_it() {
    let server = Server::start(test_config());
    let runtime = &server.runtime;
    runtime
        .primary()
        .send(clusterd::messages::replication::CreateSlot {
            slot_name: "cdc".into(),
            slot_type: clusterd::model::SlotType::Logical,
        })
        .await
        .expect("answers")
        .expect("slot created");
    let r = server
        .query(r#"mutation { replicate(ops: [{op: INSERT, table: "t", key: "a", value: {x: 1}}]) { lsnU64 } }"#)
        .await;
    let written = r["data"]["replicate"]["lsnU64"].as_u64().unwrap_or_else(|| panic!("{r}"));

    let r = server
        .query(r#"{ slots { slotName slotType retainedBytes } slot(name: "cdc") { confirmedFlushLsnU64 } none: slot(name: "nope") { slotName } slotChanges(name: "cdc") { changes { op table key value } nextLsnU64 } }"#)
        .await;
    assert_eq!(r["data"]["slots"][0]["slotName"], "cdc", "{r}");
    assert_eq!(r["data"]["slots"][0]["slotType"], "LOGICAL");
    assert_eq!(r["data"]["slots"][0]["retainedBytes"], written);
    assert_eq!(r["data"]["slot"]["confirmedFlushLsnU64"], 0);
    assert!(r["data"]["none"].is_null());
    let changes = &r["data"]["slotChanges"];
    assert_eq!(changes["changes"][0]["op"], "INSERT");
    assert_eq!(changes["changes"][0]["key"], "a");
    assert_eq!(changes["changes"][0]["value"]["x"], 1);
    assert_eq!(changes["nextLsnU64"], written);

    let r = server.query(r#"{ slotChanges(name: "nope") { nextLsn } }"#).await;
    assert_eq!(error_code(&r), "slot_not_found", "{r}");
}
