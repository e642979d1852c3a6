//! What the primary tells about its replicas, over in-process subscriptions, REST and GraphQL
//! subscriptions: status changes (`replica_status_change`, `replicaStatusChanges`), lag and its
//! alerts (`replication_lag_alert`, `replicationLagUpdates`), `/health/replica`, and
//! `wal_position_update`, sampled and built only while someone listens.
//!
//! Each test is a scenario told in its comments. Every wait is on an event, a frame, an answer,
//! or (for state that publishes no event of its own) a short poll inside `common::TIMEOUT`.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clusterd::messages::events::{EventPayload, EventType, PublishedEvent, Severity, SharedEvent, SubjectKind};
use clusterd::messages::replication::{ReplicateOps, ReplicationEvent, ReplicationLagAlert, SetReplicationConfig, WalPositionUpdate};
use clusterd::model::{lsn_text, Op, OpKind, ReplicationMode};
use clusterd::RuntimeHandle;
use serde_json::{json, Value};

use common::replication::*;
use common::server::{Server, WsConn};
use common::*;

/// How many `wal_position_update` events the registry retains.
async fn count_positions(runtime: &RuntimeHandle) -> usize {
    retained(runtime, only_types(&[EventType::WalPositionUpdate])).await.len()
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

impl Server {
    /// Connects a `graphql-transport-ws` client and initialises it.
    async fn transport_ws(&self) -> WsConn {
        let mut ws = self.ws("/graphql/ws", "graphql-transport-ws").await;
        ws.init(json!({})).await;
        ws
    }

    /// Inserts one row through the runtime; durable on the primary when this returns.
    async fn insert(&self, table: &str, key: &str, value: Value) {
        let ops = vec![Op { op: OpKind::Insert, table: table.into(), key: key.into(), value: Some(value.into()) }];
        within("ReplicateOps", self.runtime.primary().send(ReplicateOps { ops }))
            .await
            .expect("primary answers")
            .expect("the write is accepted");
    }

    /// A `POST` to a REST route with no body; its status.
    async fn rest_post(&self, path: &str) -> u16 {
        let res = within("a REST POST", awc::Client::new().post(self.url("http", path)).send()).await.expect("REST POST");
        res.status().as_u16()
    }
}

#[actix_web::test]
async fn a_paused_replica_raises_one_lag_alert_to_its_subscriber_only_and_recovers_when_resumed() {
    const THRESHOLD: u64 = 4096;
    let config = TestConfig::replication().with(|c| c.replication.lag_alert_bytes = THRESHOLD).build();
    // semi_sync, quorum 1 (the default): with replica-002 paused every write waits for
    // replica-001, so replica-001 never falls more than one write (under the threshold) behind.
    assert_eq!(config.replication.mode, ReplicationMode::SemiSync);
    assert_eq!(config.replication.sync_quorum, 1);
    let (runtime, api) = start_in_sync(config).await;

    // Subscriber A watches replica-002's lag alerts and status changes; subscriber B watches
    // replica-001's lag alerts.
    let mut a = subscribe(
        &runtime,
        only_types(&[EventType::ReplicationLagAlert, EventType::ReplicaStatusChange])
            .with_ids(SubjectKind::Replica, ["replica-002"]),
    )
    .await;
    let mut b = subscribe(
        &runtime,
        only_types(&[EventType::ReplicationLagAlert]).with_ids(SubjectKind::Replica, ["replica-001"]),
    )
    .await;
    let b_id = b.subscription_id();
    assert_eq!(api.replica("replica-002").await["lag_bytes"], 0);

    // Pause replica-002: A hears it go from in_sync to paused.
    let view = api.pause("replica-002").await;
    assert_eq!(view["status"], "paused");
    let e = within("A's first event", a.next_event()).await.expect("A is live");
    let p = status_change(&e).unwrap_or_else(|| panic!("expected the paused status change, got {}", e.json()));
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
        assert!(e.subjects.of(SubjectKind::Replica) == vec!["replica-002".to_string()], "A only gets replica-002: {}", e.json());
        if is_status(&e, "replica-002", "catching_up") {
            break;
        }
        let alert = lag_alert(&e).unwrap_or_else(|| panic!("before catching_up, A expects only lag alerts: {}", e.json()));
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
            assert!(recovered.is_none(), "one recovered alert only: {}", e.json());
            assert_eq!(e.severity, Severity::Info, "the only alert after resume is the recovery: {}", e.json());
            assert_eq!(alert.severity, Severity::Info);
            assert!(alert.details.contains("recovered"), "{alert:?}");
            assert!(alert.lag_bytes < THRESHOLD, "{alert:?}");
            recovered = Some(alert.clone());
        } else {
            panic!("unexpected event for A while catching up: {}", e.json());
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
    let rows = subscriptions(&runtime).await;
    let row = rows.iter().find(|r| r.subscription_id == b_id).expect("B is subscribed");
    assert_eq!(row.delivered, 0, "B received an event for replica-001 it should not have");

    // And B is live: when replica-001 is the one paused, B's first event is its lag alert. In
    // semi_sync every write would wait for it (an async replica never counts toward the quorum),
    // so the writes go in async mode.
    within("SetReplicationConfig", runtime.primary().send(SetReplicationConfig { mode: ReplicationMode::Async, sync_quorum: None, sync_timeout_ms: None }))
        .await
        .expect("primary answers")
        .expect("async mode");
    api.pause("replica-001").await;
    for i in 0..8 {
        let ack = api.insert("more", &format!("m{i}"), json!({"blob": blob})).await;
        assert!(!acked_by(&ack).contains(&"replica-001".to_string()), "{ack}");
    }
    let e = within("B's first event", b.next_event()).await.expect("B is live");
    let alert = lag_alert(&e).unwrap_or_else(|| panic!("B expects a lag alert: {}", e.json()));
    assert_eq!(alert.replica_id, "replica-001");
    assert!(matches!(e.severity, Severity::Warning | Severity::Error));
}

#[actix_web::test]
async fn health_replica_answers_200_while_a_replica_streams_within_the_lag_and_503_when_none_does() {
    let (_runtime, api) = start_in_sync(TestConfig::replication().build()).await;

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

#[actix_web::test]
async fn wal_positions_are_sampled_for_subscribers_and_not_built_without_one() {
    const INTERVAL_MS: u64 = 100;
    let config = TestConfig::replication().with(|c| c.events.wal_position_interval_ms = INTERVAL_MS).build();
    let (runtime, api) = start_in_sync(config).await;
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
    let mut sub = subscribe(&runtime, only_types(&[EventType::WalPositionUpdate])).await;
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
        let p = wal_position(&e).unwrap_or_else(|| panic!("only wal_position_update: {}", e.json()));
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
    assert!(quiet.is_err(), "a sample while no position moved: {:?}", quiet.map(|e| e.map(|e| e.json().clone())));

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
// GraphQL subscriptions.

#[actix_web::test]
async fn transport_ws_replica_status_changes_for_one_replica() {
    // Mode `async`, so that writes never wait for a replica; 50 ms replication heartbeats, so that
    // lag is measured often.
    let server = Server::start(TestConfig::memory().mode(ReplicationMode::Async).heartbeat_ms(50, 3000).build());
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
    // Mode `async`, so that writes never wait for a replica; 50 ms replication heartbeats, so that
    // lag is measured often.
    let server = Server::start(TestConfig::memory().mode(ReplicationMode::Async).heartbeat_ms(50, 3000).build());
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
