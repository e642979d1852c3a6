//! GraphQL over WebSocket as the protocols' documents say, on a real socket: a subscribe that fails
//! before execution (parse error, unknown field, bad argument) gets an `error` message and no
//! `complete`; a second `subscribe` with an id in use closes the socket with 4409; a subscribe
//! before the connection is acknowledged closes it with 4401; the legacy `graphql-ws` protocol
//! answers a failing `start` with its own `error` message. The contract's subscriptions of domains
//! not built yet exist and answer with an error naming the domain. And, when node and the
//! `graphql-ws` npm package are there (see `tests/node/README.md`), the official client itself.

mod common;

use std::path::Path;
use std::process::Command;

use awc::ws::Frame;
use futures_util::StreamExt;
use serde_json::{json, Value};

use common::server::{Server, WsConn};
use common::*;

/// A subscription that registers and then sees nothing: no node-9 exists.
const QUIET: &str = r#"subscription { events(filter: {nodeIds: ["node-9"]}) { seq } }"#;

/// An initialised `graphql-transport-ws` connection.
async fn connected(server: &Server) -> WsConn {
    let mut ws = server.ws("/graphql/ws", "graphql-transport-ws").await;
    ws.init(json!({})).await;
    ws
}

/// The close frame's code and reason; pings answered and nothing else expected on the way.
async fn close_frame(ws: &mut WsConn) -> (u16, String) {
    within("the close frame", async {
        loop {
            match ws.0.next().await {
                Some(Ok(Frame::Close(Some(reason)))) => {
                    return (u16::from(reason.code), reason.description.unwrap_or_default())
                }
                Some(Ok(Frame::Ping(_))) | Some(Ok(Frame::Pong(_))) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
}

/// Sends a `ping` and expects the `pong` as the very next message: nothing (no `complete`, no
/// `next`) was sent in between.
async fn nothing_pending(ws: &mut WsConn) {
    ws.send(json!({ "type": "ping" })).await;
    let msg = ws.json().await;
    assert_eq!(msg, json!({ "type": "pong" }), "expected nothing before the pong");
}

#[actix_web::test]
async fn a_subscribe_that_fails_validation_gets_an_error_message_and_no_complete() {
    let server = Server::start(TestConfig::memory().build());
    let mut ws = connected(&server).await;
    let cases = [
        ("parse", "subscription { events(", "expected"),
        ("unknown_field", "subscription { noSuchField { seq } }", "noSuchField"),
        ("bad_argument", r#"subscription { nodeStatusChanges(nodeId: 5, color: "red") { nodeId } }"#, "color"),
        ("unknown_subfield", "subscription { events { noSuchSubfield } }", "noSuchSubfield"),
    ];
    for (id, query, mentioned) in cases {
        ws.subscribe(id, query).await;
        let msg = ws.json().await;
        assert_eq!(msg["type"], "error", "{id}: {msg}");
        assert_eq!(msg["id"], id, "{msg}");
        let errors = msg["payload"].as_array().unwrap_or_else(|| panic!("{id}: payload is a GraphQLError list: {msg}"));
        assert!(!errors.is_empty(), "{msg}");
        assert!(
            errors.iter().all(|e| e["message"].is_string()),
            "every error has a message: {msg}"
        );
        let text = msg["payload"].to_string();
        assert!(text.contains(mentioned), "{id}: the error names `{mentioned}`: {msg}");
        // An error ends the operation: no complete follows.
        nothing_pending(&mut ws).await;
    }
    // The connection goes on, and a failed id is free again.
    ws.subscribe("unknown_field", QUIET).await;
    server.wait_subscribed("events").await;
    nothing_pending(&mut ws).await;
}

#[actix_web::test]
async fn a_second_subscribe_with_an_id_in_use_closes_with_4409() {
    let server = Server::start(TestConfig::memory().build());
    let mut ws = connected(&server).await;
    ws.subscribe("dup", QUIET).await;
    server.wait_subscribed("events").await;
    ws.subscribe("dup", QUIET).await;
    assert_eq!(close_frame(&mut ws).await, (4409, "Subscriber for dup already exists".to_string()));

    // An id whose subscription the client completed, or that completed by itself, is free again.
    let mut ws = connected(&server).await;
    ws.subscribe("a", QUIET).await;
    ws.send(json!({ "id": "a", "type": "complete" })).await;
    ws.subscribe("a", QUIET).await;
    // A query over `subscribe` completes once answered.
    ws.subscribe("q", "{ clusterStatus { totalNodes } }").await;
    loop {
        let msg = ws.json().await;
        if msg["id"] == "q" && msg["type"] == "complete" {
            break;
        }
    }
    ws.subscribe("q", "{ clusterStatus { totalNodes } }").await;
    let msg = ws.json().await;
    assert_eq!(msg["type"], "next", "the reused id runs: {msg}");
    assert_eq!(msg["payload"]["data"]["clusterStatus"]["totalNodes"], 3, "{msg}");
}

#[actix_web::test]
async fn a_subscribe_before_the_connection_is_acknowledged_closes_with_4401() {
    let server = Server::start(TestConfig::memory().build());
    let mut ws = server.ws("/graphql/ws", "graphql-transport-ws").await;
    ws.subscribe("early", QUIET).await;
    assert_eq!(close_frame(&mut ws).await.0, 4401);
}

#[actix_web::test]
async fn legacy_graphql_ws_answers_a_failing_start_with_error() {
    let server = Server::start(TestConfig::memory().build());
    let mut ws = server.ws("/graphql/ws", "graphql-ws").await;
    // Its clients send `start` without waiting for the ack: the check waits for it.
    ws.send(json!({ "type": "connection_init", "payload": {} })).await;
    ws.send(json!({ "id": "bad", "type": "start", "payload": { "query": "subscription { noSuchField }" } })).await;
    let ack = ws.json().await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    let msg = ws.json().await;
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["id"], "bad", "{msg}");
    assert!(msg["payload"].to_string().contains("noSuchField"), "{msg}");
    // A good one still runs on the same connection, and stops with `complete` as before.
    ws.send(json!({ "id": "good", "type": "start", "payload": { "query": QUIET } })).await;
    server.wait_subscribed("events").await;
    ws.send(json!({ "id": "good", "type": "stop" })).await;
    assert_eq!(ws.json().await, json!({ "type": "complete", "id": "good" }));
}

/// The contract's subscriptions whose domains are not built yet: (field with arguments, domain).
const NOT_BUILT: &[(&str, &str)] = &[
    (r#"replicationConflicts(groupId: "g1") { conflictId groupId tableName key conflictType seq }"#, "advanced_replication"),
    (r#"shardRebalanceProgress(tableId: "orders") { planId tableName progressPercent seq }"#, "sharding"),
];

#[actix_web::test]
async fn subscriptions_of_domains_not_built_yet_answer_naming_the_domain() {
    let server = Server::start(TestConfig::memory().build());
    let mut ws = connected(&server).await;
    for (i, (field, domain)) in NOT_BUILT.iter().enumerate() {
        let id = i.to_string();
        ws.subscribe(&id, &format!("subscription {{ {field} }}")).await;
        let msg = ws.json().await;
        assert_eq!(msg["id"], id.as_str(), "{msg}");
        assert_eq!(msg["type"], "next", "{field}: an execution error, not a validation error: {msg}");
        let error = &msg["payload"]["errors"][0];
        assert_eq!(error["extensions"]["code"], "not_implemented", "{field}: {msg}");
        assert_eq!(error["extensions"]["domain"], *domain, "{field}: {msg}");
        assert_eq!(error["extensions"]["details"]["domain"], *domain, "{field}: {msg}");
        assert!(error["message"].as_str().is_some_and(|m| m.contains(domain)), "{msg}");
        ws.until_complete(&id, &[]).await;
    }
    assert_eq!(server.graphql_subscriptions().await, 0, "nothing registered");
}

/// Runs `tests/node/graphql_ws_client.mjs` (the official `graphql-ws` client) against a server;
/// skipped, saying so, when node or the npm packages are missing.
#[actix_web::test]
async fn the_official_graphql_ws_client_sees_errors_in_its_error_callback() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    let has_node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !has_node || !dir.join("node_modules/graphql-ws").is_dir() {
        eprintln!("skipped: needs node and `npm ci` in tests/node (see tests/node/README.md)");
        return;
    }
    let server = Server::start(TestConfig::memory().build());
    let url = server.url("ws", "/graphql/ws");
    let script = dir.join("graphql_ws_client.mjs");
    let run = actix_web::rt::task::spawn_blocking(move || Command::new("node").arg(script).arg(url).output());
    let output = within("the node client", run).await.expect("the node client runs").expect("node starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "node client failed:\n{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["invalid"]["callback"], "error", "{report}");
    assert!(report["invalid"]["errors"].to_string().contains("noSuchField"), "{report}");
    assert_eq!(report["not_built"]["callback"], "next", "{report}");
    assert_eq!(report["not_built"]["code"], "not_implemented", "{report}");
    assert_eq!(report["not_built"]["domain"], "rac", "{report}");
    assert_eq!(report["not_built"]["completed"], true, "{report}");
}
