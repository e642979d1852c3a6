//! The real `clusterd` binary: it serves on the address it logs, answers over HTTP, exits 0 on
//! SIGTERM, and after a SIGKILL starts again on the same data directory with every acknowledged
//! change in place.
//!
//! The binary is spoken to with nothing but a blocking socket; waits for a state (an exit, a row on
//! a replica) are `common::poll_until`.

mod common;

use std::io::Read;

use common::binary::{request, signal, start, wait_exit};
use common::poll_until;

#[actix_web::test]
async fn serves_answers_and_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = start(dir.path());
    let (status, body) = request(&server.addr, "GET", "/health", "");
    assert_eq!(status, 200);
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    let (status, body) = request(&server.addr, "GET", "/api/v1/cluster/status", "");
    assert_eq!(status, 200);
    assert!(body.contains("node-1"), "{body}");
    signal(&server.child, "TERM");
    let status = wait_exit(&mut server.child).await;
    assert_eq!(status.code(), Some(0), "clean shutdown exits 0");
}

#[actix_web::test]
async fn acknowledged_changes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = start(dir.path());
    let (status, _) =
        request(&server.addr, "POST", "/api/v1/cluster/nodes", r#"{"node_id":"node-4","metadata":{"rack":"r1"}}"#);
    assert_eq!(status, 201);
    let (status, _) = request(&server.addr, "DELETE", "/api/v1/cluster/nodes/node-3", "");
    assert_eq!(status, 204);
    let (_, events) = request(&server.addr, "GET", "/api/v1/events", "");
    let last_seq: u64 = serde_json::from_str::<serde_json::Value>(&events).expect("json")["current_seq"]
        .as_u64()
        .expect("current_seq");

    // No chance to flush anything: what was acknowledged must already be on disk.
    signal(&server.child, "KILL");
    wait_exit(&mut server.child).await;

    let mut server = start(dir.path());
    let (status, node) = request(&server.addr, "GET", "/api/v1/cluster/nodes/node-4", "");
    assert_eq!(status, 200, "{node}");
    let node: serde_json::Value = serde_json::from_str(&node).expect("json");
    assert_eq!(node["metadata"]["rack"], "r1");
    let (status, _) = request(&server.addr, "GET", "/api/v1/cluster/nodes/node-3", "");
    assert_eq!(status, 404, "a removal that was acknowledged stays removed");

    // Event ids are never reused in the life of the data directory.
    let (_, _) = request(&server.addr, "POST", "/api/v1/cluster/nodes", r#"{"node_id":"node-9"}"#);
    let (_, events) = request(&server.addr, "GET", "/api/v1/events?node_ids=node-9", "");
    let events: serde_json::Value = serde_json::from_str(&events).expect("json");
    let seq = events["events"][0]["seq"].as_u64().expect("node-9 joined");
    assert!(seq > last_seq, "seq {seq} after restart must be above {last_seq}");

    signal(&server.child, "TERM");
    assert_eq!(wait_exit(&mut server.child).await.code(), Some(0));
    let mut stderr = String::new();
    if let Some(mut e) = server.child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[actix_web::test]
async fn acknowledged_replicated_writes_survive_sigkill_on_primary_and_replicas() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = start(dir.path());
    // The embedded default: semi_sync with a quorum of one: each write is acknowledged once the
    // primary and at least one replica have it durably.
    let mut acked: Vec<(String, Vec<String>)> = Vec::new();
    for i in 0..20 {
        let body = format!(r#"{{"ops":[{{"op":"insert","table":"orders","key":"o{i}","value":{{"n":{i}}}}}]}}"#);
        let (status, ack) = request(&server.addr, "POST", "/api/v1/replication/operations", &body);
        assert_eq!(status, 200, "{ack}");
        let ack: serde_json::Value = serde_json::from_str(&ack).expect("json");
        let by: Vec<String> = ack["acknowledged_by"]
            .as_array()
            .expect("acknowledged_by")
            .iter()
            .map(|r| r.as_str().expect("replica id").to_string())
            .collect();
        assert!(!by.is_empty(), "semi_sync waits for a replica: {ack}");
        acked.push((format!("o{i}"), by));
    }
    signal(&server.child, "KILL");
    wait_exit(&mut server.child).await;

    let mut server = start(dir.path());
    for (key, replicas) in &acked {
        let (status, row) = request(&server.addr, "GET", &format!("/api/v1/data/orders/{key}"), "");
        assert_eq!(status, 200, "{key} on the primary: {row}");
        // Every replica that acknowledged it had flushed it: it has it once it has loaded.
        for replica in replicas {
            poll_until(&format!("{key} on {replica} after the restart"), || async {
                let (status, row) = request(&server.addr, "GET", &format!("/api/v1/data/orders/{key}?from={replica}"), "");
                assert!(status == 200 || status == 503, "{key} on {replica}: {status} {row}");
                (status == 200).then_some(())
            })
            .await;
        }
    }
    signal(&server.child, "TERM");
    assert_eq!(wait_exit(&mut server.child).await.code(), Some(0));
}

#[test]
fn a_port_in_use_is_an_error_exit_not_a_panic() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = common::clusterd_command()
        .args(["serve", "--bind", &addr, "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
