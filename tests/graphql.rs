//! The GraphQL face over a real socket: queries and mutations on `POST /graphql`, subscriptions
//! over `graphql-transport-ws` and the legacy `graphql-ws` protocol, auth in `connection_init`,
//! the init timeout, the frame size limit, `ws.max_sessions` shared with the event streams, the
//! cap on subscriptions per connection, and a client that stops reading.
//!
//! Every wait is on a frame where one tells; a condition only the server can see (the registry,
//! the session gauge) is polled, always within a timeout. Nothing sleeps to let time pass.
//! (Lost events and a subscription the registry ends are tested on the subscription stream
//! itself, in `src/http/graphql/streams.rs`, where they can be caused deterministically.)

mod common;

use std::time::Duration;

use actix_web::rt::time::sleep;
use awc::ws::Message;
use futures_util::SinkExt;
use serde_json::{json, Value};

use clusterd::config::StorageEngine;
use clusterd::http::graphql::MAX_SUBSCRIPTIONS_PER_CONNECTION;
use clusterd::messages::cluster::{CrashNode, RestartNode};
use clusterd::messages::registry::{GetRegistryStatus, ListSubscriptions, Transport};
use clusterd::Config;

use common::graphql::*;

fn test_config() -> Config {
    let mut config = Config::default();
    config.storage.engine = StorageEngine::Memory;
    config
}

impl Server {
    /// Waits until the registry lists `n` GraphQL subscriptions.
    async fn wait_graphql_subscriptions(&self, n: usize) {
        within(WAIT, "the GraphQL subscriptions to register", async {
            // Polled: only the registry knows (graphql-transport-ws does not acknowledge a
            // subscribe).
            while self.graphql_subscriptions().await != n {
                sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }

    /// Waits until no WebSocket session (event stream or GraphQL) is counted any more.
    async fn wait_no_sessions(&self) {
        within(WAIT, "every WebSocket session to end", async {
            // Polled: the session gives its place back when its actor is dropped, which no frame
            // the client sees is ordered after.
            while self.runtime.metrics().total("clusterd_ws_sessions_active").unwrap_or(0) > 0 {
                sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }

    /// An event-stream WebSocket session (`/api/v1/ws/events`), or the status it was refused with.
    async fn event_stream(&self) -> Result<WsConn, u16> {
        match awc::Client::new()
            .ws(self.url("ws", "/api/v1/ws/events"))
            .connect()
            .await
        {
            Ok((_, conn)) => Ok(WsConn(Box::pin(conn))),
            Err(awc::error::WsClientError::InvalidResponseStatus(status)) => Err(status.as_u16()),
            Err(e) => panic!("event stream upgrade: {e}"),
        }
    }

    /// A GraphQL upgrade on `path` that is expected to be refused: its status and error body.
    async fn refused_upgrade(&self, path: &str) -> (u16, Value) {
        // A plain request with the upgrade headers, so that the refusal's body can be read.
        let mut res = awc::Client::new()
            .get(self.url("http", path))
            .insert_header(("upgrade", "websocket"))
            .insert_header(("connection", "upgrade"))
            .insert_header(("sec-websocket-version", "13"))
            .insert_header(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="))
            .insert_header(("sec-websocket-protocol", "graphql-transport-ws"))
            .send()
            .await
            .expect("upgrade request");
        let body = res.json::<Value>().await.expect("an error body");
        (res.status().as_u16(), body)
    }

    async fn graphql_subscriptions(&self) -> usize {
        let rows = self
            .runtime
            .registry()
            .send(ListSubscriptions)
            .await
            .expect("registry answers");
        rows.iter()
            .filter(|r| r.info.transport == Transport::GraphQl)
            .count()
    }

    async fn current_seq(&self) -> u64 {
        self.runtime
            .registry()
            .send(GetRegistryStatus)
            .await
            .expect("registry answers")
            .current_seq
    }

    async fn crash(&self, node: &str) {
        self.runtime
            .membership()
            .send(CrashNode {
                node_id: node.into(),
            })
            .await
            .expect("membership answers")
            .expect("node crashes");
    }
}

#[actix_web::test]
async fn queries_and_mutations_over_post() {
    let server = Server::start(test_config());

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

    // The join was published and retained.
    let r = server
        .post(
            r#"{ events(filter: {nodeIds: ["node-4"], eventTypes: ["node_joined"]}) { eventId seq category eventType severity source timestamp timestampMs subjects payload } }"#,
            None,
        )
        .await;
    let events = r["data"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("events: {r}"));
    assert_eq!(events.len(), 1, "{r}");
    let e = &events[0];
    assert_eq!(e["eventType"], "node_joined");
    assert_eq!(e["category"], "CLUSTERING");
    assert_eq!(e["subjects"], json!({"node_ids": ["node-4"]}));
    assert_eq!(e["payload"]["node_id"], "node-4");
    assert_eq!(e["payload"]["event_type"], "node_joined");
    assert!(e["eventId"]
        .as_str()
        .is_some_and(|id| id.starts_with("evt_")));
    let seq = e["seq"].as_u64().expect("seq");

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
async fn graphiql_introspection_and_depth_limit() {
    let server = Server::start(test_config());

    let mut res = awc::Client::new()
        .get(server.url("http", "/graphql"))
        .send()
        .await
        .expect("GET /graphql");
    assert_eq!(res.status(), 200);
    let page = String::from_utf8(res.body().await.expect("page").to_vec()).expect("utf-8 page");
    assert!(
        page.contains("graphiql") && page.contains("/graphql/ws"),
        "GraphiQL page"
    );

    // The subscription endpoint answers plain requests with the error shape.
    let mut res = awc::Client::new()
        .get(server.url("http", "/graphql/ws"))
        .send()
        .await
        .expect("GET /graphql/ws");
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("an error body");
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");

    // The introspection query GraphiQL sends fits the depth and complexity limits.
    let r = server.post(INTROSPECTION, None).await;
    assert!(r.get("errors").is_none(), "{r}");
    let types = r["data"]["__schema"]["types"].as_array().expect("types");
    for name in [
        "Node",
        "ClusterEvent",
        "NodeStatusEvent",
        "ClusterHealthEvent",
        "EventFilter",
        "JSON",
    ] {
        assert!(
            types.iter().any(|t| t["name"] == name),
            "type {name} in the schema"
        );
    }
    assert_eq!(
        r["data"]["__schema"]["subscriptionType"]["name"],
        "Subscription"
    );

    let deep = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
        "ofType { ".repeat(20),
        "}".repeat(20)
    );
    let r = server.post(&deep, None).await;
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("deep")),
        "{r}"
    );
}

#[actix_web::test]
async fn transport_ws_node_status_changes_for_one_node() {
    let server = Server::start(test_config());
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
    server.crash("node-3").await;
    server.crash("node-2").await;
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
async fn legacy_graphql_ws_events_for_an_added_node() {
    let server = Server::start(test_config());
    let mut ws = server.ws("/graphql/ws", "graphql-ws").await;
    ws.init(json!({})).await;
    // Resuming from the current seq makes the subscription see node-4's join even if it
    // registers after the mutation below.
    let since = server.current_seq().await;
    let query = format!(
        r#"subscription {{ events(filter: {{nodeIds: ["node-4"], sinceSeq: {since}}}) {{ eventId seq category eventType severity source timestamp timestampMs subjects payload }} }}"#
    );
    ws.send(json!({ "id": "a", "type": "start", "payload": { "query": query } }))
        .await;

    let r = server
        .post(r#"mutation { addNode(nodeId: "node-4") { nodeId } }"#, None)
        .await;
    assert_eq!(r["data"]["addNode"]["nodeId"], "node-4", "{r}");
    loop {
        let msg = ws.json().await;
        assert_eq!(msg["type"], "data", "{msg}");
        assert_eq!(msg["id"], "a");
        let e = &msg["payload"]["data"]["events"];
        assert_eq!(
            e["subjects"]["node_ids"],
            json!(["node-4"]),
            "only node-4's events: {msg}"
        );
        assert!(e["seq"].as_u64().is_some_and(|s| s > since));
        if e["eventType"] == "node_joined" {
            assert_eq!(e["payload"]["node_id"], "node-4");
            assert_eq!(e["source"], "node:node-4");
            break;
        }
    }
    ws.send(json!({ "id": "a", "type": "stop" })).await;
    let msg = ws.json().await;
    assert_eq!(msg, json!({ "type": "complete", "id": "a" }));
}

#[actix_web::test]
async fn connection_init_token_is_checked() {
    let mut config = test_config();
    config.server.auth_token = "s3cret".into();
    let server = Server::start(config);

    // Wrong token in connection_init: refused with 4403.
    let mut ws = server.ws("/graphql/ws", "graphql-transport-ws").await;
    ws.send(json!({ "type": "connection_init", "payload": { "authorization": "Bearer wrong" } }))
        .await;
    assert_eq!(ws.closed().await, Some(4403));

    // No token at all: refused too.
    let mut ws = server.ws("/graphql/ws", "graphql-transport-ws").await;
    ws.send(json!({ "type": "connection_init" })).await;
    assert_eq!(ws.closed().await, Some(4403));

    // Legacy protocol: connection_error, then the connection closes.
    let mut ws = server.ws("/graphql/ws", "graphql-ws").await;
    ws.send(json!({ "type": "connection_init", "payload": { "token": "nope" } }))
        .await;
    let msg = ws.json().await;
    assert_eq!(msg["type"], "connection_error", "{msg}");
    assert_eq!(ws.closed().await, Some(4403));

    // Every accepted form of the right token.
    for payload in [
        json!({ "authorization": "Bearer s3cret" }),
        json!({ "Authorization": "Bearer s3cret" }),
        json!({ "token": "s3cret" }),
    ] {
        let mut ws = server.ws("/graphql/ws", "graphql-transport-ws").await;
        ws.init(payload).await;
    }

    // A token on the upgrade request makes connection_init need none.
    let mut ws = server
        .ws("/graphql/ws?token=s3cret", "graphql-transport-ws")
        .await;
    ws.init(json!({})).await;
    let mut ws = server
        .ws_with("/graphql/ws", "graphql-transport-ws", Some("s3cret"))
        .await
        .expect("upgrade");
    ws.init(json!({})).await;
    // ... and a wrong one is refused before the upgrade.
    let refused = server
        .ws_with("/graphql/ws", "graphql-transport-ws", Some("wrong"))
        .await;
    assert!(
        matches!(refused, Err(awc::error::WsClientError::InvalidResponseStatus(s)) if s == 401),
        "wrong bearer on the upgrade"
    );

    // An authenticated subscription works end to end, here through an upgrade on /graphql.
    let mut ws = server
        .ws("/graphql?token=s3cret", "graphql-transport-ws")
        .await;
    ws.init(json!({})).await;
    ws.send(json!({
        "id": "h", "type": "subscribe",
        "payload": { "query": "subscription { clusterHealthChanges { eventType nodeId oldStatus newStatus clusterStatus healthyNodes totalNodes hasQuorum seq eventId severity timestamp } }" }
    }))
    .await;
    server.wait_subscribed("clusterHealthChanges").await;
    server.crash("node-3").await;
    loop {
        let msg = ws.json().await;
        assert_eq!(msg["type"], "next", "{msg}");
        let e = &msg["payload"]["data"]["clusterHealthChanges"];
        if e["nodeId"] == "node-3" && e["newStatus"] == "FAILED" {
            assert_eq!(e["eventType"], "node_health_change");
            assert_eq!(e["clusterStatus"], "DEGRADED");
            assert_eq!(e["healthyNodes"], 2);
            assert_eq!(e["totalNodes"], 3);
            assert_eq!(e["hasQuorum"], true);
            break;
        }
    }

    // POST /graphql needs the bearer token.
    let res = awc::Client::new()
        .post(server.url("http", "/graphql"))
        .send_json(&json!({ "query": "{ nodes { nodeId } }" }))
        .await
        .expect("POST /graphql");
    assert_eq!(res.status(), 401);
    let r = server.post("{ nodes { nodeId } }", Some("s3cret")).await;
    assert_eq!(r["data"]["nodes"].as_array().map(Vec::len), Some(3), "{r}");
}

#[actix_web::test]
async fn a_connection_that_never_initialises_is_closed() {
    let mut config = test_config();
    config.ws.heartbeat_interval_ms = 100;
    config.ws.client_timeout_ms = 300;
    let server = Server::start(config);
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let mut ws = server.ws("/graphql/ws", protocol).await;
        // `next` answers the server's pings, so only the missing connection_init can end it.
        assert_eq!(ws.closed().await, Some(4408), "{protocol}");
    }
}

#[actix_web::test]
async fn oversized_frames_close_the_connection_and_nothing_else() {
    let mut config = test_config();
    config.ws.max_frame_bytes = 1024;
    let server = Server::start(config);
    let mut ws = server.ws("/graphql/ws", "graphql-transport-ws").await;
    ws.init(json!({})).await;
    let big = json!({ "id": "x", "type": "subscribe", "payload": { "query": "x".repeat(4096) } });
    ws.send(big).await;
    assert_eq!(ws.closed().await, Some(1009));

    // Garbage in a frame of allowed size is a protocol error, not a crash.
    let mut ws = server.ws("/graphql/ws", "graphql-transport-ws").await;
    ws.0.send(Message::Text("{not json".into()))
        .await
        .expect("send");
    assert_eq!(ws.closed().await, Some(4400));

    let r = server.post("{ clusterStatus { totalNodes } }", None).await;
    assert_eq!(r["data"]["clusterStatus"]["totalNodes"], 3, "{r}");
}

/// The introspection query GraphiQL sends (graphql-js `getIntrospectionQuery`).
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description
    args { ...InputValue }
    type { ...TypeRef }
    isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue {
  name description
  type { ...TypeRef }
  defaultValue
}
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}
"#;

#[actix_web::test]
async fn graphql_connections_count_against_max_sessions() {
    let mut config = test_config();
    config.ws.max_sessions = 1;
    let server = Server::start(config);

    // An event-stream session takes the one place (it is counted before the 101 answers) ...
    let mut events = server
        .event_stream()
        .await
        .expect("the first session gets in");
    // ... so a GraphQL connection is refused, on either path, with the REST error shape.
    for path in ["/graphql/ws", "/graphql"] {
        let (status, body) = server.refused_upgrade(path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["error"]["code"], "too_many_sessions", "{path}: {body}");
    }
    let refused = server
        .ws_with("/graphql/ws", "graphql-transport-ws", None)
        .await;
    assert!(
        matches!(refused, Err(awc::error::WsClientError::InvalidResponseStatus(s)) if s == 503),
        "a GraphQL client sees 503"
    );

    // Once it is gone, a GraphQL connection takes the place, and an event stream is refused.
    events
        .0
        .send(Message::Close(None))
        .await
        .expect("send close");
    drop(events);
    server.wait_no_sessions().await;
    let mut ws = server.ws("/graphql/ws", "graphql-transport-ws").await;
    ws.init(json!({})).await;
    assert_eq!(server.event_stream().await.err(), Some(503));

    // Closing the GraphQL connection gives the place back.
    ws.0.send(Message::Close(None)).await.expect("send close");
    // The server answers the close (echoing its empty code).
    ws.closed().await;
    server.wait_no_sessions().await;
    server
        .event_stream()
        .await
        .expect("the place is free again");
}

#[actix_web::test]
async fn subscriptions_per_connection_are_capped() {
    let server = Server::start(test_config());
    let mut ws = server.ws("/graphql/ws", "graphql-transport-ws").await;
    ws.init(json!({})).await;
    // Subscriptions that see nothing: no node-9 exists.
    let quiet = r#"subscription { events(filter: {nodeIds: ["node-9"]}) { seq } }"#;
    for i in 0..MAX_SUBSCRIPTIONS_PER_CONNECTION {
        ws.subscribe(&i.to_string(), quiet).await;
    }
    // A subscription takes its place before it registers: once all are registered, all places
    // are taken.
    server
        .wait_graphql_subscriptions(MAX_SUBSCRIPTIONS_PER_CONNECTION)
        .await;

    // One more is an error for that subscription only.
    ws.subscribe("extra", quiet).await;
    let msg = ws.json().await;
    assert_eq!(msg["id"], "extra", "{msg}");
    assert_eq!(msg["type"], "next", "{msg}");
    assert_eq!(
        error_code(&msg["payload"]),
        "too_many_subscriptions",
        "{msg}"
    );
    assert_eq!(
        msg["payload"]["errors"][0]["extensions"]["details"]["limit"],
        MAX_SUBSCRIPTIONS_PER_CONNECTION,
        "{msg}"
    );
    ws.until_complete("extra", &[]).await;
    assert_eq!(
        server.graphql_subscriptions().await,
        MAX_SUBSCRIPTIONS_PER_CONNECTION
    );

    // The connection stays usable, and completing one subscription frees a place.
    ws.send(json!({ "id": "0", "type": "complete" })).await;
    ws.until_complete("0", &[]).await;
    ws.subscribe(
        "status",
        r#"subscription { nodeStatusChanges(nodeId: "node-2") { nodeId newStatus } }"#,
    )
    .await;
    server.wait_subscribed("nodeStatusChanges").await;
    server.crash("node-2").await;
    let msg = ws.json().await;
    assert_eq!(msg["id"], "status", "{msg}");
    assert_eq!(msg["type"], "next", "{msg}");
    assert_eq!(
        msg["payload"]["data"]["nodeStatusChanges"]["nodeId"], "node-2",
        "{msg}"
    );
}

#[actix_web::test]
async fn a_graphql_client_that_stops_reading_ends_and_frees_its_place() {
    let mut config = test_config();
    config.events.session_queue = 16;
    config.ws.heartbeat_interval_ms = 100;
    config.ws.client_timeout_ms = 400;
    config.ws.max_sessions = 1;
    let server = Server::start(config);
    let mut ws = server.ws("/graphql/ws", "graphql-transport-ws").await;
    ws.init(json!({})).await;
    ws.subscribe(
        "s",
        r#"subscription { nodeStatusChanges(nodeId: "node-1") { nodeId newStatus reason } }"#,
    )
    .await;
    server.wait_subscribed("nodeStatusChanges").await;

    // Stop reading (and so stop answering pings), and publish until the registry drops
    // deliveries or lets the subscription go. Whether the session is merely behind (it closes
    // on the heartbeat timeout) or frozen behind a full socket (the watchdog cuts it), it must
    // end and give its place back.
    loop {
        for _ in 0..100 {
            let membership = server.runtime.membership();
            membership
                .send(CrashNode {
                    node_id: "node-1".into(),
                })
                .await
                .expect("answers")
                .expect("crash");
            membership
                .send(RestartNode {
                    node_id: "node-1".into(),
                })
                .await
                .expect("answers")
                .expect("restart");
        }
        let rows = server
            .runtime
            .registry()
            .send(ListSubscriptions)
            .await
            .expect("registry answers");
        match rows.iter().find(|r| r.info.transport == Transport::GraphQl) {
            Some(r) if r.dropped == 0 => continue,
            _ => break,
        }
    }
    server.wait_no_sessions().await;
    let mut next = server.ws("/graphql/ws", "graphql-transport-ws").await;
    next.init(json!({})).await;
    drop(ws);
}

/// Statuses, severities, roles, modes and health are GraphQL enums (the contract's
/// `severity: WARNING`, `newStatus: CATCHING_UP`), in queries and typed events alike.
#[actix_web::test]
async fn closed_sets_of_values_are_enums() {
    let server = Server::start(test_config());
    let fields = "fields { name type { kind name ofType { kind name } } }";
    let types = [
        "Replica",
        "ReplicationStatus",
        "Node",
        "ClusterStatus",
        "ClusterEvent",
        "ReplicaStatusEvent",
        "ClusterHealthEvent",
    ];
    let query = types
        .iter()
        .map(|t| format!(r#"{t}: __type(name: "{t}") {{ {fields} }}"#))
        .collect::<Vec<_>>()
        .join(" ");
    let r = server
        .post(
            &format!(
                r#"{{ {query} statuses: __type(name: "ReplicaStatus") {{ kind enumValues {{ name }} }} severities: __type(name: "Severity") {{ kind enumValues {{ name }} }} }}"#
            ),
            None,
        )
        .await;
    assert!(r.get("errors").is_none(), "{r}");
    // The named type of a field, non-null or not, as (kind, name).
    let field_type = |ty: &str, field: &str| -> (String, String) {
        let fields = r["data"][ty]["fields"]
            .as_array()
            .unwrap_or_else(|| panic!("fields of {ty}: {r}"));
        let f = fields
            .iter()
            .find(|f| f["name"] == field)
            .unwrap_or_else(|| panic!("{ty}.{field}: {r}"));
        let t = if f["type"]["kind"] == "NON_NULL" { &f["type"]["ofType"] } else { &f["type"] };
        (t["kind"].as_str().unwrap_or_default().to_string(), t["name"].as_str().unwrap_or_default().to_string())
    };
    for (ty, field, enum_name) in [
        ("Replica", "status", "ReplicaStatus"),
        ("Replica", "mode", "ReplicaMode"),
        ("ReplicationStatus", "mode", "ReplicationMode"),
        ("ReplicationStatus", "health", "ClusterHealthStatus"),
        ("Node", "status", "NodeHealth"),
        ("Node", "role", "NodeRole"),
        ("ClusterStatus", "health", "ClusterHealthStatus"),
        ("ClusterEvent", "severity", "Severity"),
        ("ClusterEvent", "category", "Category"),
        ("ReplicaStatusEvent", "newStatus", "ReplicaStatus"),
        ("ReplicaStatusEvent", "severity", "Severity"),
        ("ClusterHealthEvent", "newStatus", "NodeHealth"),
    ] {
        assert_eq!(
            field_type(ty, field),
            ("ENUM".to_string(), enum_name.to_string()),
            "{ty}.{field}"
        );
    }
    let names = |ty: &str| -> Vec<String> {
        assert_eq!(r["data"][ty]["kind"], "ENUM", "{r}");
        r["data"][ty]["enumValues"]
            .as_array()
            .unwrap_or_else(|| panic!("{ty}: {r}"))
            .iter()
            .filter_map(|v| v["name"].as_str().map(str::to_string))
            .collect()
    };
    assert!(names("statuses").contains(&"CATCHING_UP".to_string()), "{r}");
    assert_eq!(names("severities"), ["INFO", "WARNING", "ERROR", "CRITICAL"], "{r}");

    // And a value reads as the enum's name.
    let r = server.post("{ nodes { role status } clusterStatus { health } }", None).await;
    assert_eq!(r["data"]["nodes"][0]["role"], "VOTER", "{r}");
    assert_eq!(r["data"]["clusterStatus"]["health"], "HEALTHY", "{r}");
}

#[actix_web::test]
async fn null_lists_in_a_filter_are_absent() {
    let server = Server::start(test_config());
    // The bootstrap members' joins are retained; `null` lists narrow nothing.
    let r = server
        .post(
            r#"{ events(filter: {replicaIds: null, nodeIds: ["node-1"], eventTypes: null, categories: null, includeConflicts: null}) { eventType subjects } }"#,
            None,
        )
        .await;
    let events = r["data"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("events: {r}"));
    assert!(
        events.iter().any(|e| e["eventType"] == "node_joined"),
        "{r}"
    );
    for e in events {
        assert_eq!(e["subjects"]["node_ids"], json!(["node-1"]), "{r}");
    }
}
