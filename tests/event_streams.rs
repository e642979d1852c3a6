//! The live transports over a real socket, spoken to by a real client (awc): the WebSocket event
//! streams (filters from the query string and from frames, replay from `since_seq`, bad frames,
//! auth, session limits, heartbeat timeout, operator close, a slow client that cannot make the
//! server hold more than its queue) and GraphQL subscriptions over `graphql-transport-ws` and the
//! legacy `graphql-ws` (auth in `connection_init`, the init timeout, the frame size limit,
//! `ws.max_sessions` shared with the event streams, the cap on subscriptions per connection, and a
//! client that stops reading).
//!
//! Every wait is on a frame where one tells; a condition only the server can see (the registry,
//! the session gauge) is polled, always within `common::TIMEOUT`. Nothing sleeps to let time pass.
//! (Lost events and a subscription the registry ends are tested on the GraphQL subscription stream
//! itself, in `src/http/graphql/streams.rs`, where they can be caused deterministically.)

mod common;

use std::time::Duration;

use awc::ws::{Frame, Message};
use clusterd::http::graphql::MAX_SUBSCRIPTIONS_PER_CONNECTION;
use clusterd::messages::cluster::NodeMetadata;
use clusterd::messages::registry::{SubscriptionRow, Transport};
use clusterd::model::ReplicaStatus;
use clusterd::messages::replication::GetReplicationStatus;
use clusterd::RuntimeHandle;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use common::graphql::error_code;
use common::server::{Incoming, Server, WsConn};
use common::*;

impl Server {
    /// An event-stream WebSocket session on `path` (with its query).
    async fn connect(&self, path: &str) -> WsConn {
        self.upgrade(path, None, None).await.unwrap_or_else(|s| panic!("upgrade on {path} refused with {s}"))
    }

    /// The HTTP status of an upgrade the server refuses; panics if it accepts.
    async fn refused_status(&self, path: &str) -> u16 {
        match self.upgrade(path, None, None).await {
            Err(status) => status,
            Ok(_) => panic!("expected the upgrade on {path} to be refused"),
        }
    }

    /// A GraphQL upgrade on `path` that is expected to be refused: its status and error body.
    async fn refused_upgrade(&self, path: &str) -> (u16, Value) {
        // A plain request with the upgrade headers, so that the refusal's body can be read.
        let request = awc::Client::new()
            .get(self.url("http", path))
            .insert_header(("upgrade", "websocket"))
            .insert_header(("connection", "upgrade"))
            .insert_header(("sec-websocket-version", "13"))
            .insert_header(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="))
            .insert_header(("sec-websocket-protocol", "graphql-transport-ws"))
            .send();
        let mut res = within("the refused upgrade", request).await.expect("upgrade request");
        let body = within("the refusal's body", res.json::<Value>()).await.expect("an error body");
        (res.status().as_u16(), body)
    }

    /// Waits until the registry lists `n` GraphQL subscriptions.
    async fn wait_graphql_subscriptions(&self, n: usize) {
        // Polled: only the registry knows (graphql-transport-ws does not acknowledge a subscribe).
        poll_until("the GraphQL subscriptions to register", || async {
            (self.graphql_subscriptions().await == n).then_some(())
        })
        .await
    }

    /// Waits until no WebSocket session (event stream or GraphQL) is counted any more.
    async fn wait_no_sessions(&self) {
        // Polled: the session gives its place back when its actor is dropped, which no frame the
        // client sees is ordered after.
        poll_until("every WebSocket session to end", || async {
            (self.runtime.metrics().total("clusterd_ws_sessions_active").unwrap_or(0) == 0).then_some(())
        })
        .await
    }
}

/// The next frame of type `kind`, skipping others.
async fn next_of_type(socket: &mut WsConn, kind: &str) -> Value {
    loop {
        let v = socket.json().await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// Reads through `welcome` and `subscribed`.
async fn handshake(socket: &mut WsConn) -> (Value, Value) {
    let welcome = socket.json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let subscribed = socket.json().await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    (welcome, subscribed)
}

/// The next frame that answers a filter frame (`subscribed` or `error`), skipping events.
async fn next_answer(ws: &mut WsConn) -> Value {
    loop {
        let frame = ws.json().await;
        if frame["type"] != "event" {
            return frame;
        }
    }
}

/// Waits for the server's close frame, reading past anything else, and returns its code.
async fn close_code(socket: &mut WsConn) -> Option<u16> {
    loop {
        if let Incoming::Closed(code) = socket.next().await {
            return code;
        }
    }
}

/// Crashes and restarts node-1 (two events a round) until the registry reports dropped
/// deliveries for the subscription `is_ours` picks. Answers whether the registry let that
/// subscription go for staying behind, and how many events were published.
async fn flood_until_dropped(runtime: &RuntimeHandle, is_ours: impl Fn(&SubscriptionRow) -> bool) -> (bool, u64) {
    let mut published = 0;
    for round in 0.. {
        assert!(round < 1000, "no delivery was dropped after {round} rounds");
        for _ in 0..100 {
            crash_node(runtime, "node-1").await;
            restart_node(runtime, "node-1").await;
            published += 2;
        }
        match subscriptions(runtime).await.iter().find(|r| is_ours(r)) {
            Some(r) if r.dropped > 0 => return (false, published),
            Some(_) => {}
            None => return (true, published),
        }
    }
    unreachable!("the loop returns or panics")
}

// ---------------------------------------------------------------------------------------------
// WebSocket event streams.

#[actix_web::test]
async fn node_stream_filtered_by_id_sees_only_that_node_and_takes_new_filters() {
    let server = Server::start(TestConfig::memory().build());
    let runtime = &server.runtime;
    let mut ws = server.connect("/api/v1/ws/cluster/nodes?node_ids=node-4").await;
    let (welcome, subscribed) = handshake(&mut ws).await;
    assert_eq!(welcome["stream"], "cluster/nodes");
    assert!(welcome["session_id"].is_string());
    assert_eq!(subscribed["filter"]["node_ids"][0], "node-4");

    // node-5 joins first, then node-4: the first event frames must be node-4's (its join as a
    // learner, then as a voter).
    add_node(runtime, "node-5", NodeMetadata::new()).await;
    add_node(runtime, "node-4", NodeMetadata::new()).await;
    for role in ["learner", "voter"] {
        let event = next_of_type(&mut ws, "event").await;
        assert_eq!(event["event_type"], "node_joined");
        assert_eq!(event["payload"]["node_id"], "node-4");
        assert_eq!(event["payload"]["node_role"], role);
    }

    // A frame that is not JSON gets an error frame; the session and its filter stay.
    ws.send_text("{not json").await;
    let error = ws.json().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "invalid_filter");

    // Unknown fields, event types and severities are errors too.
    for bad in [r#"{"nodes":["x"]}"#, r#"{"event_types":["no_such"]}"#, r#"{"min_severity":"loud"}"#] {
        ws.send_text(bad).await;
        let error = ws.json().await;
        assert_eq!(error["type"], "error", "{bad} -> {error}");
    }

    // A new filter takes effect: now node-6 and nothing else.
    ws.send_text(r#"{"node_ids":["node-6"]}"#).await;
    let subscribed = next_of_type(&mut ws, "subscribed").await;
    assert_eq!(subscribed["filter"]["node_ids"][0], "node-6");
    add_node(runtime, "node-7", NodeMetadata::new()).await;
    add_node(runtime, "node-6", NodeMetadata::new()).await;
    let event = next_of_type(&mut ws, "event").await;
    assert_eq!(event["payload"]["node_id"], "node-6");
}

#[actix_web::test]
async fn a_client_written_against_the_seed_reads_event_frames_and_sends_null_lists() {
    let server = Server::start(TestConfig::memory().build());
    let runtime = &server.runtime;
    let mut ws = server.connect("/api/v1/ws/events").await;
    handshake(&mut ws).await;

    // What a serde client sends for a filter whose lists are `None`.
    // (Events of the unfiltered stream may come first: the answer is the next `subscribed` or
    // `error` frame.)
    ws.send_text(r#"{"replica_ids": null}"#).await;
    let subscribed = next_answer(&mut ws).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(subscribed["filter"], serde_json::json!({}), "null is absent");
    let filter = r#"{"replica_ids":null,"node_ids":["node-4"],"event_types":null,"categories":null,"min_severity":null,"include_conflicts":null}"#;
    ws.send_text(filter).await;
    let subscribed = next_answer(&mut ws).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(subscribed["filter"], serde_json::json!({"node_ids": ["node-4"]}));

    // The event frame is the envelope itself, with its type beside the envelope's fields.
    add_node(runtime, "node-4", NodeMetadata::new()).await;
    let frame = next_of_type(&mut ws, "event").await;
    assert_eq!(frame["event_type"], "node_joined", "{frame}");
    assert_eq!(frame["category"], "clustering");
    assert_eq!(frame["payload"]["event_type"], "node_joined");
    assert_eq!(frame["payload"]["node_id"], "node-4");
    assert!(frame["event_id"].as_str().is_some_and(|id| id.starts_with("evt_")), "{frame}");
    assert!(frame.get("event").is_none(), "no nested envelope: {frame}");
}

#[actix_web::test]
async fn since_seq_replays_retained_events_then_goes_live_without_gap_or_duplicate() {
    let server = Server::start(TestConfig::memory().build());
    let runtime = &server.runtime;
    add_node(runtime, "node-4", NodeMetadata::new()).await;
    add_node(runtime, "node-5", NodeMetadata::new()).await;

    let mut ws = server.connect("/api/v1/ws/events?since_seq=0&node_ids=node-5").await;
    let (_, subscribed) = handshake(&mut ws).await;
    assert_eq!(subscribed["replay_truncated"], false);
    let mut replayed_seq = 0;
    for role in ["learner", "voter"] {
        let replayed = next_of_type(&mut ws, "event").await;
        assert_eq!(replayed["event_type"], "node_joined");
        assert_eq!(replayed["payload"]["node_id"], "node-5");
        assert_eq!(replayed["payload"]["node_role"], role);
        replayed_seq = replayed["seq"].as_u64().expect("seq");
    }

    // Live from here: node-5's crash, and nothing repeated.
    crash_node(runtime, "node-5").await;
    let live = next_of_type(&mut ws, "event").await;
    assert_eq!(live["event_type"], "node_health_change");
    assert_eq!(live["payload"]["new_status"], "failed");
    assert!(live["seq"].as_u64().expect("seq") > replayed_seq);
}

#[actix_web::test]
async fn streams_carry_only_their_category() {
    let server = Server::start(TestConfig::memory().build());
    let runtime = &server.runtime;
    // The replicas' start-up status changes are replication events: let them pass first.
    poll_until("replicas in sync", || async {
        let s = runtime.primary().send(GetReplicationStatus).await.expect("primary answers");
        s.replicas.iter().all(|r| r.status == ReplicaStatus::InSync).then_some(())
    })
    .await;
    // Filtered to node-4, so that only a clustering event about it could reach it (the
    // replication stream's own events name replicas).
    let mut replication = server.connect("/api/v1/ws/cluster/replication?node_ids=node-4").await;
    handshake(&mut replication).await;
    let mut nodes = server.connect("/api/v1/ws/cluster/nodes").await;
    handshake(&mut nodes).await;
    add_node(runtime, "node-4", NodeMetadata::new()).await;
    let event = next_of_type(&mut nodes, "event").await;
    assert_eq!(event["category"], "clustering");
    // The registry has handled node-4's join (the nodes stream got it); had it admitted the
    // replication session, that session's delivered count would say so.
    let rows = subscriptions(runtime).await;
    let replication_row = rows
        .iter()
        .find(|r| r.info.stream == "cluster/replication")
        .expect("the replication session is subscribed");
    assert_eq!(replication_row.delivered, 0, "a clustering event reached the replication stream");
    let nodes_row = rows.iter().find(|r| r.info.stream == "cluster/nodes").expect("nodes session");
    assert!(nodes_row.delivered >= 1);
}

#[actix_web::test]
async fn bad_frames_get_error_frames_and_the_session_keeps_working() {
    let server = Server::start(TestConfig::memory().max_frame_bytes(1024).build());
    let runtime = &server.runtime;
    let mut ws = server.connect("/api/v1/ws/events?event_types=node_joined").await;
    handshake(&mut ws).await;

    ws.send_text(&format!("{{\"node_ids\":[\"{}\"]}}", "x".repeat(4096))).await;
    let error = ws.json().await;
    assert_eq!(error["code"], "frame_too_large", "{error}");

    ws.0.send(Message::Binary(vec![1, 2, 3].into())).await.expect("send binary");
    let error = ws.json().await;
    assert_eq!(error["code"], "unsupported_frame", "{error}");

    add_node(runtime, "node-4", NodeMetadata::new()).await;
    let event = next_of_type(&mut ws, "event").await;
    assert_eq!(event["payload"]["node_id"], "node-4");
}

#[actix_web::test]
async fn bad_query_filter_is_refused_before_the_upgrade() {
    let server = Server::start(TestConfig::memory().build());
    assert_eq!(server.refused_status("/api/v1/ws/events?min_severity=loud").await, 400);
}

#[actix_web::test]
async fn auth_token_is_required_on_upgrade_by_header_or_query() {
    let server = Server::start(TestConfig::memory().token("s3cret").build());
    assert_eq!(server.refused_status("/api/v1/ws/events").await, 401);
    assert_eq!(server.refused_status("/api/v1/ws/events?token=nope").await, 401);
    let mut by_query = server.connect("/api/v1/ws/events?token=s3cret").await;
    handshake(&mut by_query).await;
    let mut by_header = server
        .upgrade("/api/v1/ws/events", None, Some("s3cret"))
        .await
        .unwrap_or_else(|s| panic!("upgrade with bearer token refused with {s}"));
    handshake(&mut by_header).await;
}

#[actix_web::test]
async fn max_sessions_refuses_the_next_session() {
    let server = Server::start(TestConfig::memory().max_ws_sessions(1).build());
    let mut first = server.connect("/api/v1/ws/events").await;
    handshake(&mut first).await;
    assert_eq!(server.refused_status("/api/v1/ws/events").await, 503);
}

#[actix_web::test]
async fn a_silent_client_is_closed_after_the_timeout() {
    let server = Server::start(TestConfig::memory().ws_heartbeat_ms(50, 200).build());
    let mut ws = server.connect("/api/v1/ws/events").await;
    // Read frames but never answer pings or send anything: the server must give up on us.
    let code = loop {
        match within("the server to close the silent client", ws.0.next()).await {
            Some(Ok(Frame::Close(Some(reason)))) => break u16::from(reason.code),
            Some(Ok(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(code, 1001);
}

#[actix_web::test]
async fn operator_closes_a_session_through_the_admin_api() {
    let server = Server::start(TestConfig::memory().build());
    let mut ws = server.connect("/api/v1/ws/cluster/nodes?node_ids=node-2").await;
    let (welcome, _) = handshake(&mut ws).await;
    let session_id = welcome["session_id"].as_str().expect("session id").to_string();

    let client = awc::Client::new();
    let mut res = within("the list", client.get(server.url("http", "/api/v1/ws/connections")).send()).await.expect("list");
    let list: Value = within("the list's body", res.json()).await.expect("json");
    let row = list["connections"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["session_id"] == session_id.as_str())
        .expect("our session is listed")
        .clone();
    assert_eq!(row["stream"], "cluster/nodes");
    assert_eq!(row["filter"]["node_ids"][0], "node-2");

    let delete = client.delete(server.url("http", &format!("/api/v1/ws/connections/{session_id}"))).send();
    let res = within("the delete", delete).await.expect("delete");
    assert_eq!(res.status(), 204);
    assert_eq!(close_code(&mut ws).await, Some(1000));
}

/// `/ws/connections`, `/ws/status` and the session gauge, as one tuple.
async fn session_counts(server: &Server) -> (usize, i64, i64, Vec<Value>) {
    let client = awc::Client::new();
    let mut res = within("the list", client.get(server.url("http", "/api/v1/ws/connections")).send()).await.expect("list");
    let list: Value = within("the list's body", res.json()).await.expect("json");
    let mut res = within("the status", client.get(server.url("http", "/api/v1/ws/status")).send()).await.expect("status");
    let status: Value = within("the status body", res.json()).await.expect("json");
    let rows = list["connections"].as_array().cloned().unwrap_or_default();
    assert_eq!(list["total"].as_u64(), Some(rows.len() as u64));
    let gauge = server.runtime.metrics().total("clusterd_ws_sessions_active").unwrap_or(-1);
    (rows.len(), status["active_sessions"].as_i64().unwrap_or(-1), gauge, rows)
}

#[actix_web::test]
async fn every_face_counts_the_same_sessions_graphql_connections_included() {
    let server = Server::start(TestConfig::memory().build());
    let mut events = server.connect("/api/v1/ws/cluster/nodes?node_ids=node-2").await;
    let (welcome, _) = handshake(&mut events).await;
    let mut graphql = server.ws("/graphql/ws", "graphql-transport-ws").await;
    graphql.init(json!({})).await;
    graphql.subscribe("1", r#"subscription { events(filter: {nodeIds: ["node-9"]}) { seq } }"#).await;
    server.wait_graphql_subscriptions(1).await;

    let (listed, status, gauge, rows) = session_counts(&server).await;
    assert_eq!((listed, status, gauge), (2, 2, 2), "{rows:?}");
    let graphql_row = rows.iter().find(|r| r["transport"] == "graphql").expect("the GraphQL connection is listed");
    assert_eq!(graphql_row["subscriptions"].as_array().map(Vec::len), Some(1), "{graphql_row}");
    let events_row = rows.iter().find(|r| r["transport"] == "websocket").expect("the event session is listed");
    assert_eq!(events_row["session_id"], welcome["session_id"]);
    assert_eq!(events_row["filter"]["node_ids"][0], "node-2");

    // Either kind closes through the same route.
    let client = awc::Client::new();
    let id = graphql_row["session_id"].as_str().expect("id");
    let res = within("the delete", client.delete(server.url("http", &format!("/api/v1/ws/connections/{id}"))).send())
        .await
        .expect("delete");
    assert_eq!(res.status(), 204);
    assert_eq!(graphql.closed().await, Some(1000));
    poll_until("the closed connection to leave every count", || async {
        let (listed, status, gauge, _) = session_counts(&server).await;
        ((listed, status, gauge) == (1, 1, 1)).then_some(())
    })
    .await;
    drop(events);
    server.wait_no_sessions().await;
    let (listed, status, _, _) = session_counts(&server).await;
    assert_eq!((listed, status), (0, 0));
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_dropped_from_and_closed_with_1008() {
    let server = Server::start(TestConfig::memory().session_queue(16).with(|c| c.ws.client_timeout_ms = 60_000).build());
    let runtime = &server.runtime;
    let mut ws = server.connect("/api/v1/ws/events?node_ids=node-1&event_types=node_health_change").await;
    let (welcome, _) = handshake(&mut ws).await;
    let session_id: u64 = welcome["session_id"].as_str().and_then(|s| s.parse().ok()).expect("id");

    // Stop reading. Crash and restart node-1 (two events per round) until the registry reports
    // dropped deliveries for this session: socket buffers fill first, then the session's queue,
    // then the registry drops.
    let (closed_early, mut published) = flood_until_dropped(runtime, |r| r.info.session_id == Some(session_id)).await;
    assert!(runtime.metrics().total("clusterd_events_dropped_total").unwrap_or(0) > 0);

    // Now read. Fewer events arrive than were published (what did not fit was dropped, not
    // buffered), and the stream says so: `lagged`, or a 1008 close once it stayed behind.
    let mut received = 0u64;
    let mut node_down = false;
    // How long the socket may stay quiet before we take it that everything buffered was read.
    const QUIET: Duration = Duration::from_secs(5);
    let verdict = loop {
        match tokio::time::timeout(QUIET, ws.0.next()).await {
            Ok(Some(Ok(Frame::Text(t)))) => {
                let v: Value = serde_json::from_slice(&t).expect("json");
                match v["type"].as_str() {
                    Some("event") => received += 1,
                    Some("lagged") => {
                        assert!(v["missed"].as_u64().expect("missed") > 0);
                        assert!(v["resume_from_seq"].as_u64().is_some());
                        break "lagged";
                    }
                    other => panic!("unexpected frame {other:?}"),
                }
            }
            Ok(Some(Ok(Frame::Close(Some(reason))))) => {
                assert_eq!(u16::from(reason.code), 1008);
                break "closed";
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("unexpected end: {other:?}"),
            // Everything buffered was read and the session is alive: one more event makes the
            // registry deliver the pending `lagged` first.
            Err(_) => {
                assert!(!closed_early, "closed session sent no close frame");
                if node_down {
                    restart_node(runtime, "node-1").await;
                } else {
                    crash_node(runtime, "node-1").await;
                }
                node_down = !node_down;
                published += 1;
            }
        }
    };
    // Every event published was admitted by this session's filter; fewer arrived.
    assert!(received < published, "{verdict}: all {published} events were buffered for a client that did not read");
}

#[actix_web::test]
async fn a_client_that_stops_reading_ends_and_frees_its_slot() {
    let server = Server::start(TestConfig::memory().session_queue(16).ws_heartbeat_ms(100, 400).max_ws_sessions(1).build());
    let mut ws = server.connect("/api/v1/ws/events?node_ids=node-1&event_types=node_health_change").await;
    let (welcome, _) = handshake(&mut ws).await;
    let session_id: u64 = welcome["session_id"].as_str().and_then(|s| s.parse().ok()).expect("id");

    // Stop reading (and so stop answering pings), and publish until the registry drops
    // deliveries. Whether the session is merely behind (it closes itself: 1008, or on the
    // heartbeat timeout) or frozen behind a full socket (the watchdog cuts it; see the unit test
    // in src/http/ws/watchdog.rs), it must end.
    flood_until_dropped(&server.runtime, |r| r.info.session_id == Some(session_id)).await;

    // The session ends and its slot is free again: a new client gets in.
    server.wait_no_sessions().await;
    let mut next = server.connect("/api/v1/ws/events").await;
    handshake(&mut next).await;
    drop(ws);
}

#[actix_web::test]
async fn a_long_replay_arrives_whole_and_in_order_then_live_events_follow() {
    let server = Server::start(TestConfig::memory().session_queue(32).build());
    let runtime = &server.runtime;
    // 1,000 events about node-1 before the client connects: far more than one replay page and
    // than the session's queue.
    for _ in 0..500 {
        crash_node(runtime, "node-1").await;
        restart_node(runtime, "node-1").await;
    }
    let mut ws = server.connect("/api/v1/ws/events?since_seq=0&node_ids=node-1&event_types=node_health_change").await;
    let (_, subscribed) = handshake(&mut ws).await;
    assert_eq!(subscribed["replay_count"], 1000);
    // A live event while the replay is being written.
    crash_node(runtime, "node-1").await;

    let mut last = 0;
    for i in 0..1001 {
        let frame = next_of_type(&mut ws, "event").await;
        let seq = frame["seq"].as_u64().expect("seq");
        assert!(seq > last, "event {i}: seq {seq} after {last}");
        last = seq;
    }
    assert_eq!(runtime.metrics().total("clusterd_events_dropped_total").unwrap_or(0), 0, "the client read everything: nothing was dropped");
}

/// The `event_type` of every event frame up to and including replica-002's change to `paused`,
/// in order.
async fn event_types_until_paused(ws: &mut WsConn) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let frame = next_of_type(ws, "event").await;
        seen.push(frame["event_type"].as_str().expect("event_type").to_string());
        if frame["event_type"] == "replica_status_change"
            && frame["payload"]["replica_id"] == "replica-002"
            && frame["payload"]["new_status"] == "paused"
        {
            return seen;
        }
    }
}

#[actix_web::test]
async fn lag_samples_reach_only_sessions_that_name_them_live_and_in_replay() {
    // Replication heartbeats every 50 ms: a lag sample per replica each time, while anyone asks.
    let server = Server::start(TestConfig::replication().build());
    let mut everything = server.connect("/api/v1/ws/events").await;
    handshake(&mut everything).await;
    let mut replication = server.connect("/api/v1/ws/cluster/replication").await;
    handshake(&mut replication).await;
    let mut samples = server.connect("/api/v1/ws/events?event_types=replication_lag_sample").await;
    handshake(&mut samples).await;

    // The session naming the sample kind gets samples, one per replica and heartbeat.
    let mut sample = Value::Null;
    for _ in 0..4 {
        sample = next_of_type(&mut samples, "event").await;
        assert_eq!(sample["event_type"], "replication_lag_sample", "{sample}");
        assert!(sample["subjects"]["replica_ids"][0].as_str().is_some_and(|id| id.starts_with("replica-")), "{sample}");
    }
    // Those samples were published after the other sessions subscribed and before replica-002
    // pauses: had those sessions admitted samples, they would get them before the pause.
    server.pause("replica-002").await;
    for ws in [&mut everything, &mut replication] {
        let seen = event_types_until_paused(ws).await;
        assert!(!seen.iter().any(|t| t == "replication_lag_sample"), "a session that named no sample got samples: {seen:?}");
    }

    // Replay follows the same rule: from the start, samples only for the session that names them.
    let mut replay_all = server.connect("/api/v1/ws/events?since_seq=0").await;
    handshake(&mut replay_all).await;
    let replayed = event_types_until_paused(&mut replay_all).await;
    assert!(!replayed.iter().any(|t| t == "replication_lag_sample"), "replay without naming samples: {replayed:?}");
    let mut replay_samples = server.connect("/api/v1/ws/events?since_seq=0&event_types=replication_lag_sample").await;
    handshake(&mut replay_samples).await;
    let first = next_of_type(&mut replay_samples, "event").await;
    assert_eq!(first["event_type"], "replication_lag_sample", "{first}");
    assert!(first["seq"].as_u64() < sample["seq"].as_u64(), "replayed from the start: {first} before {sample}");
}

// ---------------------------------------------------------------------------------------------
// GraphQL subscriptions.

#[actix_web::test]
async fn legacy_graphql_ws_events_for_an_added_node() {
    let server = Server::start(TestConfig::memory().build());
    let mut ws = server.ws("/graphql/ws", "graphql-ws").await;
    ws.init(json!({})).await;
    // Resuming from the current seq makes the subscription see node-4's join even if it
    // registers after the mutation below.
    let since = registry_status(&server.runtime).await.current_seq;
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
        if e["eventType"] == "node_joined" && e["payload"]["node_role"] == "voter" {
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
    let server = Server::start(TestConfig::memory().token("s3cret").build());

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
        .upgrade("/graphql/ws", Some("graphql-transport-ws"), Some("s3cret"))
        .await
        .unwrap_or_else(|s| panic!("upgrade refused with {s}"));
    ws.init(json!({})).await;
    // ... and a wrong one is refused before the upgrade.
    let refused = server
        .upgrade("/graphql/ws", Some("graphql-transport-ws"), Some("wrong"))
        .await;
    assert_eq!(refused.err(), Some(401), "wrong bearer on the upgrade");

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
    crash_node(&server.runtime, "node-3").await;
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
    let anonymous = awc::Client::new().post(server.url("http", "/graphql")).send_json(&json!({ "query": "{ nodes { nodeId } }" }));
    let res = within("POST /graphql", anonymous).await.expect("POST /graphql");
    assert_eq!(res.status(), 401);
    let r = server.post("{ nodes { nodeId } }", Some("s3cret")).await;
    assert_eq!(r["data"]["nodes"].as_array().map(Vec::len), Some(3), "{r}");
}

#[actix_web::test]
async fn a_connection_that_never_initialises_is_closed() {
    let server = Server::start(TestConfig::memory().ws_heartbeat_ms(100, 300).build());
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let mut ws = server.ws("/graphql/ws", protocol).await;
        // `next` answers the server's pings, so only the missing connection_init can end it.
        assert_eq!(ws.closed().await, Some(4408), "{protocol}");
    }
}

#[actix_web::test]
async fn oversized_frames_close_the_connection_and_nothing_else() {
    let server = Server::start(TestConfig::memory().max_frame_bytes(1024).build());
    let mut ws = server.ws("/graphql/ws", "graphql-transport-ws").await;
    ws.init(json!({})).await;
    let big = json!({ "id": "x", "type": "subscribe", "payload": { "query": "x".repeat(4096) } });
    ws.send(big).await;
    assert_eq!(ws.closed().await, Some(1009));

    // Garbage in a frame of allowed size is a protocol error, not a crash.
    let mut ws = server.ws("/graphql/ws", "graphql-transport-ws").await;
    ws.send_text("{not json").await;
    assert_eq!(ws.closed().await, Some(4400));

    let r = server.post("{ clusterStatus { totalNodes } }", None).await;
    assert_eq!(r["data"]["clusterStatus"]["totalNodes"], 3, "{r}");
}

#[actix_web::test]
async fn graphql_connections_count_against_max_sessions() {
    let server = Server::start(TestConfig::memory().max_ws_sessions(1).build());

    // An event-stream session takes the one place (it is counted before the 101 answers) ...
    let mut events = server.upgrade("/api/v1/ws/events", None, None).await.expect("the first session gets in");
    // ... so a GraphQL connection is refused, on either path, with the REST error shape.
    for path in ["/graphql/ws", "/graphql"] {
        let (status, body) = server.refused_upgrade(path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["error"]["code"], "too_many_sessions", "{path}: {body}");
    }
    let refused = server.upgrade("/graphql/ws", Some("graphql-transport-ws"), None).await;
    assert_eq!(refused.err(), Some(503), "a GraphQL client sees 503");

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
    assert_eq!(server.refused_status("/api/v1/ws/events").await, 503);

    // Closing the GraphQL connection gives the place back.
    ws.0.send(Message::Close(None)).await.expect("send close");
    // The server answers the close (echoing its empty code).
    ws.closed().await;
    server.wait_no_sessions().await;
    server.upgrade("/api/v1/ws/events", None, None).await.expect("the place is free again");
}

#[actix_web::test]
async fn subscriptions_per_connection_are_capped() {
    let server = Server::start(TestConfig::memory().build());
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
    crash_node(&server.runtime, "node-2").await;
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
    let server = Server::start(TestConfig::memory().session_queue(16).ws_heartbeat_ms(100, 400).max_ws_sessions(1).build());
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
    flood_until_dropped(&server.runtime, |r| r.info.transport == Transport::GraphQl).await;
    server.wait_no_sessions().await;
    let mut next = server.ws("/graphql/ws", "graphql-transport-ws").await;
    next.init(json!({})).await;
    drop(ws);
}
