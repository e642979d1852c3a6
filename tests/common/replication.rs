//! The replication domain as several test files drive it: its configuration, starting the app
//! once every replica is in sync, its REST requests (writes, reads where a row lives, replica
//! views, pause and resume, fault routes), waits on replicas catching up, readers of the status
//! changes the primary publishes, and pause and resume through the runtime for scenarios on a
//! real socket ([`Server`]).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use clusterd::config::Config;
use clusterd::messages::events::{EventFilter, EventPayload, EventType, PublishedEvent, SharedEvent};
use clusterd::messages::replication::{PauseReplica, ReplicaStatusChange, ReplicationEvent, ResumeReplica};
use clusterd::model::{lsn_text, ReplicaMode};
use clusterd::RuntimeHandle;
use serde_json::{json, Value};

use super::api::{self, Api, Reply};
use super::server::Server;
use super::{next_event_matching, only_types, poll_until, subscribe, within, TestConfig, TIMEOUT};

impl TestConfig {
    /// The replication scenarios' configuration: the default replicas, replication heartbeats
    /// every 50 ms and a heartbeat timeout (1 s) far from anything a loaded test machine reaches,
    /// so no replica is declared disconnected unless a test makes it so. Writes wait up to 5 s for
    /// replicas unless a test shortens it.
    pub fn replication() -> TestConfig {
        // The scenarios are written against the default replicas; say so rather than assume it.
        let c = Config::in_memory();
        let replicas: Vec<(&str, ReplicaMode)> = c.replication.replicas.iter().map(|r| (r.id.as_str(), r.mode)).collect();
        assert_eq!(replicas, vec![("replica-001", ReplicaMode::Sync), ("replica-002", ReplicaMode::Async)]);
        assert_eq!(c.replication.primary, "primary");
        assert!(c.server.allow_fault_injection, "the scenarios inject faults");
        TestConfig::memory().heartbeat_ms(50, 1000).sync_timeout_ms(5000)
    }
}

/// Starts a runtime and the app on it; returns once every configured replica has reported in
/// sync (so the scenario starts from a known state).
pub async fn start_in_sync(config: Config) -> (RuntimeHandle, Api) {
    let ids: Vec<String> = config.replication.replicas.iter().map(|r| r.id.clone()).collect();
    let (runtime, api) = api::start(config).await;
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    wait_in_sync(&runtime, &ids).await;
    (runtime, api)
}

impl Api {
    /// `POST /api/v1/replication/operations` with these ops.
    pub async fn write(&self, ops: Value) -> Reply {
        self.post("/api/v1/replication/operations", json!({ "ops": ops })).await
    }

    /// Inserts one row and returns the acknowledgement (asserting 200 and its shape).
    pub async fn insert(&self, table: &str, key: &str, value: Value) -> Value {
        let ack = self.write(json!([{"op": "insert", "table": table, "key": key, "value": value}])).await.expect(200);
        check_ack_shape(&ack);
        ack
    }

    /// `GET /api/v1/data/{table}/{key}?from=<from>`.
    pub async fn read(&self, table: &str, key: &str, from: &str) -> Reply {
        self.get(&format!("/api/v1/data/{table}/{key}?from={from}")).await
    }

    /// Reads a row that must be there now and returns its value.
    pub async fn value_at(&self, table: &str, key: &str, from: &str) -> Value {
        let row = self.read(table, key, from).await.expect(200);
        assert_eq!(row["table"], table, "{row}");
        assert_eq!(row["key"], key, "{row}");
        assert_eq!(row["from"], from, "{row}");
        row["value"].clone()
    }

    pub async fn status(&self) -> Value {
        self.get("/api/v1/replication/status").await.expect(200)
    }

    pub async fn current_lsn(&self) -> u64 {
        self.status().await["current_lsn_u64"].as_u64().expect("current_lsn_u64 is a u64")
    }

    pub async fn replica(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/replication/replicas/{id}")).await.expect(200)
    }

    pub async fn pause(&self, id: &str) -> Value {
        self.post(&format!("/api/v1/replication/replicas/{id}/pause"), json!({})).await.expect(200)
    }

    pub async fn resume(&self, id: &str) -> Value {
        self.post(&format!("/api/v1/replication/replicas/{id}/resume"), json!({})).await.expect(200)
    }

    pub async fn crash(&self, target: &str) -> Reply {
        self.post("/api/v1/cluster/faults/crash", json!({ "target": target })).await
    }

    pub async fn restart(&self, target: &str) -> Reply {
        self.post("/api/v1/cluster/faults/restart", json!({ "target": target })).await
    }

    /// Polls until a row is readable at `from` (for replicas that catch up on their own, with no
    /// event per row), and returns its value.
    pub async fn eventually_value_at(&self, table: &str, key: &str, from: &str) -> Value {
        poll_until(&format!("{table}/{key} to be readable from {from}"), move || async move {
            let r = self.read(table, key, from).await;
            (r.status == StatusCode::OK).then(|| r.json()["value"].clone())
        })
        .await
    }

    /// Polls until every replica in `ids` has flushed and replayed all the primary has; returns
    /// that lsn.
    pub async fn wait_caught_up(&self, ids: &[&str]) -> u64 {
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

/// Asserts the shape of a write's acknowledgement: `lsn` in text form matching `lsn_u64`,
/// `acknowledged_by` a list of replica ids, and `mode`.
pub fn check_ack_shape(ack: &Value) {
    let lsn = ack["lsn_u64"].as_u64().unwrap_or_else(|| panic!("lsn_u64 is a u64: {ack}"));
    assert!(lsn > 0, "a write ends past lsn 0: {ack}");
    assert_eq!(ack["lsn"], lsn_text(lsn), "lsn is lsn_u64 in X/Y form: {ack}");
    assert!(ack["acknowledged_by"].is_array(), "acknowledged_by is a list: {ack}");
    assert!(ack["mode"].is_string(), "mode is named: {ack}");
}

pub fn acked_by(ack: &Value) -> Vec<String> {
    ack["acknowledged_by"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

pub fn ids_of(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|r| r["replica_id"].as_str().unwrap().to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// What the primary publishes.

pub fn status_change(e: &PublishedEvent) -> Option<&ReplicaStatusChange> {
    match &e.payload {
        EventPayload::Replication(ReplicationEvent::ReplicaStatusChange(p)) => Some(p),
        _ => None,
    }
}

/// Whether `e` is a `replica_status_change` of `replica` to `new_status`.
pub fn is_status(e: &PublishedEvent, replica: &str, new_status: &str) -> bool {
    status_change(e).is_some_and(|p| p.replica_id == replica && p.new_status == new_status)
}

/// Waits until each of `ids` has published a `replica_status_change` to `in_sync` since the runtime
/// started (retained events are replayed with `since_seq: 0`, so one that came before this call
/// counts). Returns the first such event per replica.
pub async fn wait_in_sync(runtime: &RuntimeHandle, ids: &[&str]) -> HashMap<String, SharedEvent> {
    let filter = EventFilter { since_seq: Some(0), ..only_types(&[EventType::ReplicaStatusChange]) };
    let mut sub = subscribe(runtime, filter).await;
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

// ---------------------------------------------------------------------------------------------
// On a real socket: what a GraphQL scenario does on the side, through the runtime.

impl Server {
    pub async fn pause(&self, replica: &str) {
        within("PauseReplica", self.runtime.primary().send(PauseReplica { replica_id: replica.into() }))
            .await
            .expect("primary answers")
            .expect("replica pauses");
    }

    pub async fn resume(&self, replica: &str) {
        within("ResumeReplica", self.runtime.primary().send(ResumeReplica { replica_id: replica.into() }))
            .await
            .expect("primary answers")
            .expect("replica resumes");
    }
}
