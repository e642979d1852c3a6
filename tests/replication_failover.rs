//! Replication failover, driven through REST as an operator would: the primary crashes while
//! clients write, a replica is promoted once the primary has been silent for the heartbeat
//! timeout, writes go on against it, and the old primary, restarted, rejoins as its replica. A
//! switchover asked for through `POST /api/v1/cluster/failover`. And `lost_writes` told honestly
//! when the mode let writes be acknowledged that no replica held.
//!
//! Every wait is on an event or an answer, or a short poll inside `common::TIMEOUT`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use clusterd::messages::cluster::{ClusterEvent, GetFailoverHistory, GetKv};
use clusterd::messages::events::{EventPayload, EventType, PublishedEvent};
use clusterd::messages::replication::{ReadFrom, ReadRow};
use clusterd::model::{FailoverChange, ReplicaMode, ReplicationMode};
use serde_json::json;

use common::api::{self, Api};
use common::replication::wait_in_sync;
use common::*;

/// Sync mode, a sync and an async replica, heartbeats every 50 ms, the primary failed over
/// after 400 ms of silence; durable in `dir`.
fn config(dir: &std::path::Path, mode: ReplicationMode) -> clusterd::Config {
    TestConfig::memory()
        .disk(dir)
        .mode(mode)
        .heartbeat_ms(50, 400)
        .sync_timeout_ms(5000)
        .replicas(&[("replica-001", ReplicaMode::Sync), ("replica-002", ReplicaMode::Async)])
        .build()
}

fn failover(e: &PublishedEvent) -> Option<&FailoverChange> {
    match &e.payload {
        EventPayload::Cluster(ClusterEvent::FailoverInitiated(c) | ClusterEvent::FailoverCompleted(c)) if c.scope == "replication" => Some(c),
        _ => None,
    }
}

async fn start(config: clusterd::Config) -> (clusterd::RuntimeHandle, Api) {
    let (runtime, api) = api::start(config).await;
    wait_in_sync(&runtime, &["replica-001", "replica-002"]).await;
    (runtime, api)
}

/// Waits for a Raft leader: a switchover records the new primary in the Raft metadata first.
async fn raft_leader(api: &Api) {
    api.raft_leader().await;
}

/// Writes `key` until acknowledged (a refusal while there is no primary is retried).
async fn write_until_acked(api: &Api, key: &str, value: u64) {
    poll_until(&format!("{key} to be acknowledged"), || async {
        let r = api.write(json!([{"op": "upsert", "table": "t", "key": key, "value": value}])).await;
        (r.status == 200).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn a_crashed_sync_primary_fails_over_to_its_sync_replica_and_rejoins_as_its_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, api) = start(config(dir.path(), ReplicationMode::Sync)).await;
    let mut events = subscribe(&runtime, only_types(&[EventType::FailoverInitiated, EventType::FailoverCompleted])).await;

    // Clients write until the crash refuses them; every acknowledged write is remembered.
    let mut acked = BTreeMap::new();
    for i in 0..50u64 {
        let key = format!("before-{i}");
        if api.write(json!([{"op": "insert", "table": "t", "key": key, "value": i}])).await.status == 200 {
            acked.insert(key, i);
        }
        if i == 40 {
            api.crash("primary").await.expect(200);
        }
    }
    assert_eq!(acked.len(), 41, "writes before the crash are acknowledged, none after it");
    let refused = api.write(json!([{"op": "insert", "table": "t", "key": "refused", "value": 0}])).await;
    assert_eq!(refused.status, 503, "{}", refused.text());

    // The primary silent for the heartbeat timeout: the sync replica is promoted.
    let initiated = next_event_matching(&mut events, |e| failover(e).is_some(), TIMEOUT).await;
    let initiated = failover(&initiated).expect("a failover").clone();
    assert!(initiated.replacement_node.is_none() && !initiated.success, "initiated first: {initiated:?}");
    assert_eq!((initiated.failed_node.as_str(), initiated.failover_type.as_str()), ("primary", "automatic"));
    let completed = next_event_matching(&mut events, |e| failover(e).is_some_and(|c| c.failover_id == initiated.failover_id && c.replacement_node.is_some()), TIMEOUT).await;
    let completed = failover(&completed).expect("a failover").clone();
    assert!(completed.success, "{completed:?}");
    assert_eq!(completed.replacement_node.as_deref(), Some("replica-001"));
    assert_eq!(completed.lost_writes, 0, "sync mode loses nothing acknowledged");
    assert!(completed.duration_seconds >= 0.4, "timed from the crash: {completed:?}");

    // Writes go to the new primary; everything acknowledged reads back from it.
    write_until_acked(&api, "after", 1).await;
    for (key, value) in &acked {
        assert_eq!(api.value_at("t", key, "primary").await, json!(value), "{key}");
    }
    let status = api.status().await;
    assert_eq!(status["primary"], "replica-001", "{status}");
    assert_eq!(api.replica("replica-001").await["status"], "promoted");
    let old = api.replica("primary").await;
    assert_eq!(old["status"], "failed", "{old}");
    let faults = api.get("/api/v1/cluster/faults").await.expect(200);
    assert!(faults.to_string().contains("\"primary\""), "the old primary waits for a restart: {faults}");

    // The cluster's metadata names it, and the history holds the failover.
    let kv = runtime.membership().send(GetKv { key: "replication.primary".into() }).await.expect("answers").expect("recorded");
    assert_eq!(kv.value["primary"], "replica-001");
    poll_until("the failover in the history", || async {
        let history = runtime.membership().send(GetFailoverHistory).await.ok()?.ok()?;
        history.iter().any(|r| r.failover.failover_id == completed.failover_id && r.failover.lost_writes == 0).then_some(())
    })
    .await;

    // The old primary, restarted, rejoins as a replica of the new one and gets what it missed.
    // (`from=primary` names the current primary: the old one is read by message.)
    api.restart("primary").await.expect(200);
    assert_eq!(old_primary_value(&runtime, "after").await, Some(json!(1)));
    assert_eq!(api.eventually_value_at("t", "after", "replica-002").await, json!(1), "re-pointed");
    poll_until("the old primary to stream from the new one", || async {
        let r = api.get("/api/v1/replication/replicas/primary").await;
        (r.status == 200 && r.json()["status"] == "in_sync").then_some(())
    })
    .await;
    write_until_acked(&api, "later", 2).await;
    assert_eq!(old_primary_value(&runtime, "later").await, Some(json!(2)));
    // The sync role passed to replica-002 when the promotion left no sync replica running.
    let ack = api.write(json!([{"op": "insert", "table": "t", "key": "last", "value": 3}])).await.expect(200);
    assert!(ack["acknowledged_by"].to_string().contains("replica-002"), "{ack}");
    assert_eq!(api.replica("replica-002").await["mode"], "sync");
    assert_eq!(api.replica("primary").await["mode"], "async");

    // A restart of the whole process keeps the new primary and every acknowledged write.
    runtime.shutdown().await;
    drop(api);
    let (runtime, api) = api::start(config(dir.path(), ReplicationMode::Sync)).await;
    wait_in_sync(&runtime, &["primary", "replica-002"]).await;
    assert_eq!(api.status().await["primary"], "replica-001");
    for (key, value) in acked.iter().map(|(k, v)| (k.clone(), json!(v))).chain([("after".to_string(), json!(1)), ("last".to_string(), json!(3))]) {
        assert_eq!(api.value_at("t", &key, "primary").await, value, "{key}");
    }
    runtime.shutdown().await;
}

#[actix_web::test]
async fn a_switchover_promotes_the_named_replica_once_it_holds_everything_and_the_old_primary_follows_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, api) = start(config(dir.path(), ReplicationMode::Sync)).await;
    let mut events = subscribe(&runtime, only_types(&[EventType::FailoverCompleted])).await;
    raft_leader(&api).await;
    for i in 0..20u64 {
        api.insert("t", &format!("k{i}"), json!(i)).await;
    }

    // Bad requests change nothing.
    api.post("/api/v1/cluster/failover", json!({"scope": "replication", "target_node": "nobody"})).await.expect_error(404, "replica_not_found");
    api.post("/api/v1/cluster/failover", json!({"scope": "replication", "target_node": "primary"})).await.expect(409);
    assert_eq!(api.status().await["primary"], "primary");

    // The async replica, named: it is promoted once it has all the primary made durable.
    let started = api.post("/api/v1/cluster/failover", json!({"scope": "replication", "target_node": "replica-002"})).await.expect(202);
    assert_eq!(started["scope"], "replication");
    assert_eq!(started["replacement_node"], "replica-002");
    let done = next_event_matching(&mut events, |e| failover(e).is_some(), TIMEOUT).await;
    let done = failover(&done).expect("a failover").clone();
    assert_eq!(done.failover_id, started["failover_id"]);
    assert!(done.success && done.failover_type == "manual" && done.lost_writes == 0, "{done:?}");

    // The old primary follows the new one at once; writes go on.
    assert_eq!(api.status().await["primary"], "replica-002");
    write_until_acked(&api, "after", 7).await;
    assert_eq!(api.eventually_value_at("t", "after", "primary").await, json!(7));
    assert_eq!(api.eventually_value_at("t", "k19", "primary").await, json!(19));
    wait_in_sync(&runtime, &["primary", "replica-001"]).await;
    runtime.shutdown().await;
}

#[actix_web::test]
async fn an_async_failover_reports_the_acknowledged_writes_its_replacement_lacks_and_the_old_primary_drops_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, api) = start(config(dir.path(), ReplicationMode::Async)).await;
    let mut events = subscribe(&runtime, only_types(&[EventType::FailoverCompleted])).await;
    api.insert("t", "kept", json!(1)).await;
    api.wait_caught_up(&["replica-001", "replica-002"]).await;

    // Nothing is shipped to paused replicas, and async acknowledges on the primary's fsync.
    api.pause("replica-001").await;
    api.pause("replica-002").await;
    for i in 0..5u64 {
        api.insert("t", &format!("lost-{i}"), json!(i)).await;
    }
    api.crash("primary").await.expect(200);

    let done = next_event_matching(&mut events, |e| failover(e).is_some(), TIMEOUT).await;
    let done = failover(&done).expect("a failover").clone();
    assert!(done.success, "{done:?}");
    assert_eq!(done.lost_writes, 5, "the five writes no replica had: {done:?}");
    assert_eq!(done.replacement_node.as_deref(), Some("replica-001"), "equal positions: the sync replica");
    assert_eq!(api.value_at("t", "kept", "primary").await, json!(1));
    api.read("t", "lost-0", "primary").await.expect(404);

    // The old primary applied writes the new history lacks: it is reseeded, and drops them.
    api.restart("primary").await.expect(200);
    write_until_acked(&api, "after", 9).await;
    assert_eq!(old_primary_value(&runtime, "after").await, Some(json!(9)));
    assert_eq!(read_old_primary(&runtime, "lost-0").await, Some(None), "dropped");
    runtime.shutdown().await;
}

/// Row `t/key` on the old primary, now replica `primary`: `None` while it cannot answer,
/// `Some(None)` if it has no such row.
async fn read_old_primary(runtime: &clusterd::RuntimeHandle, key: &str) -> Option<Option<serde_json::Value>> {
    let from = ReadFrom::Replica("primary".into());
    let row = runtime.primary().send(ReadRow { table: "t".into(), key: key.into(), from }).await.ok()?.ok()?;
    Some(row.map(|r| r.value))
}

/// Waits until the old primary has row `t/key`, and returns its value.
async fn old_primary_value(runtime: &clusterd::RuntimeHandle, key: &str) -> Option<serde_json::Value> {
    poll_until(&format!("t/{key} on the old primary"), || async { read_old_primary(runtime, key).await.flatten() }).await.into()
}

#[actix_web::test]
async fn a_switchover_to_a_replica_that_cannot_catch_up_fails_and_the_primary_comes_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, api) = start(config(dir.path(), ReplicationMode::Sync)).await;
    let mut events = subscribe(&runtime, only_types(&[EventType::FailoverCompleted])).await;
    raft_leader(&api).await;
    // Nothing is shipped to a paused replica: it stays behind what the primary has.
    api.pause("replica-002").await;
    api.insert("t", "k", json!(1)).await;
    api.post("/api/v1/cluster/failover", json!({"scope": "replication", "target_node": "replica-002"})).await.expect(202);
    let done = next_event_matching(&mut events, |e| failover(e).is_some(), Duration::from_secs(15)).await;
    let done = failover(&done).expect("a failover").clone();
    assert!(!done.success && done.replacement_node.is_none(), "{done:?}");
    assert!(done.error_message.as_deref().is_some_and(|m| m.contains("did not catch up")), "{done:?}");
    // The primary is back, with everything, and takes writes.
    write_until_acked(&api, "after", 2).await;
    assert_eq!(api.status().await["primary"], "primary");
    assert_eq!(api.value_at("t", "k", "primary").await, json!(1));
    runtime.shutdown().await;
}
