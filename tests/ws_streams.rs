//! WebSocket event streams over a real socket, spoken to by a real client (awc): filters from
//! the query string and from frames, replay from `since_seq`, bad frames, auth, session limits,
//! heartbeat timeout, operator close, and a slow client that cannot make the server hold more
//! than its queue.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::rt::time::timeout;
use awc::ws::{Codec, Frame, Message};
use clusterd::config::StorageEngine;
use clusterd::messages::cluster::{AddNode, CrashNode};
use clusterd::messages::replication::GetReplicationStatus;
use clusterd::model::ReplicaStatus;
use clusterd::{Config, Runtime, RuntimeHandle};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

type Socket = actix_codec::Framed<awc::BoxedSocket, Codec>;

const WAIT: Duration = Duration::from_secs(5);

fn config() -> Config {
    let mut c = Config::default();
    c.storage.engine = StorageEngine::Memory;
    c
}

/// Starts the whole app on an ephemeral loopback port.
fn serve(config: Config) -> (RuntimeHandle, SocketAddr) {
    let runtime = Runtime::start(config).expect("runtime starts");
    let state = clusterd::http::AppState::new(runtime.clone());
    // Wired as the binary runs it (WebSocket watchdogs included).
    let (server, addrs) = clusterd::http::start_server(state, 1, "127.0.0.1:0").expect("bind loopback");
    let addr = addrs[0];
    actix_web::rt::spawn(server);
    (runtime, addr)
}

async fn connect(addr: SocketAddr, path_and_query: &str) -> Socket {
    let (_res, socket) = awc::Client::new()
        .ws(format!("ws://{addr}{path_and_query}"))
        .connect()
        .await
        .expect("WebSocket upgrade");
    socket
}

/// The next JSON text frame, answering pings on the way; panics after [`WAIT`].
async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let frame = timeout(WAIT, socket.next())
            .await
            .expect("a frame within the timeout")
            .expect("socket still open")
            .expect("a valid frame");
        match frame {
            Frame::Text(bytes) => return serde_json::from_slice(&bytes).expect("server frames are JSON"),
            Frame::Ping(p) => socket.send(Message::Pong(p)).await.expect("pong"),
            Frame::Close(reason) => panic!("closed by server: {reason:?}"),
            _ => {}
        }
    }
}

/// The next frame of type `kind`, skipping others.
async fn next_of_type(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let v = next_json(socket).await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// Reads through `welcome` and `subscribed`.
async fn handshake(socket: &mut Socket) -> (Value, Value) {
    let welcome = next_json(socket).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let subscribed = next_json(socket).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    (welcome, subscribed)
}

async fn add_node(runtime: &RuntimeHandle, id: &str) {
    runtime
        .membership()
        .send(AddNode { node_id: id.into(), address: None, metadata: Default::default() })
        .await
        .expect("membership answers")
        .expect("node added");
}

async fn send_text(socket: &mut Socket, text: &str) {
    socket.send(Message::Text(text.to_string().into())).await.expect("send frame");
}

/// The HTTP status of an upgrade the server refuses; panics if it accepts.
async fn refused_status(addr: SocketAddr, path_and_query: &str) -> u16 {
    match awc::Client::new().ws(format!("ws://{addr}{path_and_query}")).connect().await {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => status.as_u16(),
        other => panic!("expected the upgrade to be refused, got {:?}", other.map(|_| ())),
    }
}

/// Crashes and restarts node-1 (two events a round) until the registry reports dropped
/// deliveries for `session_id`. Answers whether the registry closed the session for staying
/// behind, and how many events were published.
async fn flood_until_dropped(runtime: &RuntimeHandle, session_id: u64) -> (bool, u64) {
    let membership = runtime.membership();
    let mut published = 0;
    for round in 0.. {
        assert!(round < 1000, "no delivery was dropped after {round} rounds");
        for _ in 0..100 {
            membership.send(CrashNode { node_id: "node-1".into() }).await.expect("answers").expect("crash");
            membership
                .send(clusterd::messages::cluster::RestartNode { node_id: "node-1".into() })
                .await
                .expect("answers")
                .expect("restart");
            published += 2;
        }
        let rows = runtime
            .registry()
            .send(clusterd::messages::registry::ListSubscriptions)
            .await
            .expect("registry answers");
        match rows.iter().find(|r| r.subscription_id == session_id) {
            Some(r) if r.dropped > 0 => return (false, published),
            Some(_) => {}
            None => return (true, published),
        }
    }
    unreachable!("the loop returns or panics")
}

/// Waits for the server's close frame and returns its code.
async fn close_code(socket: &mut Socket) -> u16 {
    loop {
        match timeout(WAIT, socket.next()).await.expect("close within the timeout") {
            Some(Ok(Frame::Close(Some(reason)))) => return reason.code.into(),
            Some(Ok(Frame::Close(None))) => return 1005,
            Some(Ok(Frame::Ping(p))) => {
                let _ = socket.send(Message::Pong(p)).await;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("protocol error before close: {e}"),
            None => return 1006,
        }
    }
}

#[actix_web::test]
async fn node_stream_filtered_by_id_sees_only_that_node_and_takes_new_filters() {
    let (runtime, addr) = serve(config());
    let mut ws = connect(addr, "/api/v1/ws/cluster/nodes?node_ids=node-4").await;
    let (welcome, subscribed) = handshake(&mut ws).await;
    assert_eq!(welcome["stream"], "cluster/nodes");
    assert!(welcome["session_id"].is_string());
    assert_eq!(subscribed["filter"]["node_ids"][0], "node-4");

    // node-5 joins first, then node-4: the first event frame must be node-4's.
    add_node(&runtime, "node-5").await;
    add_node(&runtime, "node-4").await;
    let event = next_of_type(&mut ws, "event").await;
    assert_eq!(event["event_type"], "node_joined");
    assert_eq!(event["payload"]["node_id"], "node-4");

    // A frame that is not JSON gets an error frame; the session and its filter stay.
    send_text(&mut ws, "{not json").await;
    let error = next_json(&mut ws).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "invalid_filter");

    // Unknown fields, event types and severities are errors too.
    for bad in [r#"{"nodes":["x"]}"#, r#"{"event_types":["no_such"]}"#, r#"{"min_severity":"loud"}"#] {
        send_text(&mut ws, bad).await;
        let error = next_json(&mut ws).await;
        assert_eq!(error["type"], "error", "{bad} -> {error}");
    }

    // A new filter takes effect: now node-6 and nothing else.
    send_text(&mut ws, r#"{"node_ids":["node-6"]}"#).await;
    let subscribed = next_of_type(&mut ws, "subscribed").await;
    assert_eq!(subscribed["filter"]["node_ids"][0], "node-6");
    add_node(&runtime, "node-7").await;
    add_node(&runtime, "node-6").await;
    let event = next_of_type(&mut ws, "event").await;
    assert_eq!(event["payload"]["node_id"], "node-6");
}

/// The next frame that answers a filter frame (`subscribed` or `error`), skipping events.
async fn next_answer(ws: &mut Socket) -> Value {
    loop {
        let frame = next_json(ws).await;
        if frame["type"] != "event" {
            return frame;
        }
    }
}

#[actix_web::test]
async fn a_client_written_against_the_seed_reads_event_frames_and_sends_null_lists() {
    let (runtime, addr) = serve(config());
    let mut ws = connect(addr, "/api/v1/ws/events").await;
    handshake(&mut ws).await;

    // What a serde client sends for a filter whose lists are `None`.
    // (Events of the unfiltered stream may come first: the answer is the next `subscribed` or
    // `error` frame.)
    send_text(&mut ws, r#"{"replica_ids": null}"#).await;
    let subscribed = next_answer(&mut ws).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(subscribed["filter"], serde_json::json!({}), "null is absent");
    let filter = r#"{"replica_ids":null,"node_ids":["node-4"],"event_types":null,"categories":null,"min_severity":null,"include_conflicts":null}"#;
    send_text(&mut ws, filter).await;
    let subscribed = next_answer(&mut ws).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(subscribed["filter"], serde_json::json!({"node_ids": ["node-4"]}));

    // The event frame is the envelope itself, with its type beside the envelope's fields.
    add_node(&runtime, "node-4").await;
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
    let (runtime, addr) = serve(config());
    add_node(&runtime, "node-4").await;
    add_node(&runtime, "node-5").await;

    let mut ws = connect(addr, "/api/v1/ws/events?since_seq=0&node_ids=node-5").await;
    let (_, subscribed) = handshake(&mut ws).await;
    assert_eq!(subscribed["replay_truncated"], false);
    let replayed = next_of_type(&mut ws, "event").await;
    assert_eq!(replayed["event_type"], "node_joined");
    assert_eq!(replayed["payload"]["node_id"], "node-5");
    let replayed_seq = replayed["seq"].as_u64().expect("seq");

    // Live from here: node-5's crash, and nothing repeated.
    runtime
        .membership()
        .send(CrashNode { node_id: "node-5".into() })
        .await
        .expect("answers")
        .expect("crashed");
    let live = next_of_type(&mut ws, "event").await;
    assert_eq!(live["event_type"], "node_health_change");
    assert_eq!(live["payload"]["new_status"], "failed");
    assert!(live["seq"].as_u64().expect("seq") > replayed_seq);
}

#[actix_web::test]
async fn streams_carry_only_their_category() {
    let (runtime, addr) = serve(config());
    // The replicas' start-up status changes are replication events: let them pass first.
    timeout(Duration::from_secs(10), async {
        loop {
            let s = runtime.primary().send(GetReplicationStatus).await.expect("primary answers");
            if s.replicas.iter().all(|r| r.status == ReplicaStatus::InSync) {
                return;
            }
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("replicas in sync");
    let mut replication = connect(addr, "/api/v1/ws/cluster/replication").await;
    handshake(&mut replication).await;
    let mut nodes = connect(addr, "/api/v1/ws/cluster/nodes").await;
    handshake(&mut nodes).await;
    add_node(&runtime, "node-4").await;
    let event = next_of_type(&mut nodes, "event").await;
    assert_eq!(event["category"], "clustering");
    // The registry has handled node-4's join (the nodes stream got it); had it admitted the
    // replication session, that session's delivered count would say so.
    let rows = runtime
        .registry()
        .send(clusterd::messages::registry::ListSubscriptions)
        .await
        .expect("registry answers");
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
    let mut c = config();
    c.ws.max_frame_bytes = 1024;
    let (runtime, addr) = serve(c);
    let mut ws = connect(addr, "/api/v1/ws/events?event_types=node_joined").await;
    handshake(&mut ws).await;

    send_text(&mut ws, &format!("{{\"node_ids\":[\"{}\"]}}", "x".repeat(4096))).await;
    let error = next_json(&mut ws).await;
    assert_eq!(error["code"], "frame_too_large", "{error}");

    ws.send(Message::Binary(vec![1, 2, 3].into())).await.expect("send binary");
    let error = next_json(&mut ws).await;
    assert_eq!(error["code"], "unsupported_frame", "{error}");

    add_node(&runtime, "node-4").await;
    let event = next_of_type(&mut ws, "event").await;
    assert_eq!(event["payload"]["node_id"], "node-4");
}

#[actix_web::test]
async fn bad_query_filter_is_refused_before_the_upgrade() {
    let (_runtime, addr) = serve(config());
    assert_eq!(refused_status(addr, "/api/v1/ws/events?min_severity=loud").await, 400);
}

#[actix_web::test]
async fn auth_token_is_required_on_upgrade_by_header_or_query() {
    let mut c = config();
    c.server.auth_token = "s3cret".into();
    let (_runtime, addr) = serve(c);
    assert_eq!(refused_status(addr, "/api/v1/ws/events").await, 401);
    assert_eq!(refused_status(addr, "/api/v1/ws/events?token=nope").await, 401);
    let mut by_query = connect(addr, "/api/v1/ws/events?token=s3cret").await;
    handshake(&mut by_query).await;
    let (_res, mut by_header) = awc::Client::new()
        .ws(format!("ws://{addr}/api/v1/ws/events"))
        .bearer_auth("s3cret")
        .connect()
        .await
        .expect("upgrade with bearer token");
    handshake(&mut by_header).await;
}

#[actix_web::test]
async fn max_sessions_refuses_the_next_session() {
    let mut c = config();
    c.ws.max_sessions = 1;
    let (_runtime, addr) = serve(c);
    let mut first = connect(addr, "/api/v1/ws/events").await;
    handshake(&mut first).await;
    assert_eq!(refused_status(addr, "/api/v1/ws/events").await, 503);
}

#[actix_web::test]
async fn a_silent_client_is_closed_after_the_timeout() {
    let mut c = config();
    c.ws.heartbeat_interval_ms = 50;
    c.ws.client_timeout_ms = 200;
    let (_runtime, addr) = serve(c);
    let mut ws = connect(addr, "/api/v1/ws/events").await;
    // Read frames but never answer pings or send anything: the server must give up on us.
    let code = loop {
        match timeout(WAIT, ws.next()).await.expect("server closes within the timeout") {
            Some(Ok(Frame::Close(Some(reason)))) => break u16::from(reason.code),
            Some(Ok(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(code, 1001);
}

#[actix_web::test]
async fn operator_closes_a_session_through_the_admin_api() {
    let (_runtime, addr) = serve(config());
    let mut ws = connect(addr, "/api/v1/ws/cluster/nodes?node_ids=node-2").await;
    let (welcome, _) = handshake(&mut ws).await;
    let session_id = welcome["session_id"].as_str().expect("session id").to_string();

    let client = awc::Client::new();
    let mut res = client.get(format!("http://{addr}/api/v1/ws/connections")).send().await.expect("list");
    let list: Value = res.json().await.expect("json");
    let row = list["connections"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["session_id"] == session_id.as_str())
        .expect("our session is listed")
        .clone();
    assert_eq!(row["stream"], "cluster/nodes");
    assert_eq!(row["filter"]["node_ids"][0], "node-2");

    let res = client
        .delete(format!("http://{addr}/api/v1/ws/connections/{session_id}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), 204);
    assert_eq!(close_code(&mut ws).await, 1000);
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_dropped_from_and_closed_with_1008() {
    let mut c = config();
    c.events.session_queue = 16;
    c.ws.client_timeout_ms = 60_000;
    let (runtime, addr) = serve(c);
    let mut ws = connect(addr, "/api/v1/ws/events?node_ids=node-1&event_types=node_health_change").await;
    let (welcome, _) = handshake(&mut ws).await;
    let session_id: u64 = welcome["session_id"].as_str().and_then(|s| s.parse().ok()).expect("id");

    // Stop reading. Crash and restart node-1 (two events per round) until the registry reports
    // dropped deliveries for this session: socket buffers fill first, then the session's queue,
    // then the registry drops.
    let (closed_early, mut published) = flood_until_dropped(&runtime, session_id).await;
    assert!(runtime.metrics().total("clusterd_events_dropped_total").unwrap_or(0) > 0);

    // Now read. Fewer events arrive than were published (what did not fit was dropped, not
    // buffered), and the stream says so: `lagged`, or a 1008 close once it stayed behind.
    let mut received = 0u64;
    let mut node_down = false;
    let verdict = loop {
        match timeout(WAIT, ws.next()).await {
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
                let membership = runtime.membership();
                if node_down {
                    let restart = clusterd::messages::cluster::RestartNode { node_id: "node-1".into() };
                    membership.send(restart).await.expect("answers").expect("restart");
                } else {
                    membership.send(CrashNode { node_id: "node-1".into() }).await.expect("answers").expect("crash");
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
    let mut c = config();
    c.events.session_queue = 16;
    c.ws.heartbeat_interval_ms = 100;
    c.ws.client_timeout_ms = 400;
    c.ws.max_sessions = 1;
    let (runtime, addr) = serve(c);
    let mut ws = connect(addr, "/api/v1/ws/events?node_ids=node-1&event_types=node_health_change").await;
    let (welcome, _) = handshake(&mut ws).await;
    let session_id: u64 = welcome["session_id"].as_str().and_then(|s| s.parse().ok()).expect("id");

    // Stop reading (and so stop answering pings), and publish until the registry drops
    // deliveries. Whether the session is merely behind (it closes itself: 1008, or on the
    // heartbeat timeout) or frozen behind a full socket (the watchdog cuts it; see the unit test
    // in src/http/ws/watchdog.rs), it must end.
    flood_until_dropped(&runtime, session_id).await;

    // The session ends and its slot is free again: a new client gets in.
    let deadline = std::time::Instant::now() + WAIT;
    while runtime.metrics().total("clusterd_ws_sessions_active").unwrap_or(0) > 0 {
        assert!(std::time::Instant::now() < deadline, "the stalled session was never cut off");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let mut next = connect(addr, "/api/v1/ws/events").await;
    handshake(&mut next).await;
    drop(ws);
}

#[actix_web::test]
async fn a_long_replay_arrives_whole_and_in_order_then_live_events_follow() {
    let mut c = config();
    c.events.session_queue = 32;
    let (runtime, addr) = serve(c);
    // 1,000 events about node-1 before the client connects: far more than one replay page and
    // than the session's queue.
    let membership = runtime.membership();
    for _ in 0..500 {
        membership.send(CrashNode { node_id: "node-1".into() }).await.expect("answers").expect("crash");
        membership
            .send(clusterd::messages::cluster::RestartNode { node_id: "node-1".into() })
            .await
            .expect("answers")
            .expect("restart");
    }
    let mut ws = connect(addr, "/api/v1/ws/events?since_seq=0&node_ids=node-1&event_types=node_health_change").await;
    let (_, subscribed) = handshake(&mut ws).await;
    assert_eq!(subscribed["replay_count"], 1000);
    // A live event while the replay is being written.
    membership.send(CrashNode { node_id: "node-1".into() }).await.expect("answers").expect("crash");

    let mut last = 0;
    for i in 0..1001 {
        let frame = next_of_type(&mut ws, "event").await;
        let seq = frame["seq"].as_u64().expect("seq");
        assert!(seq > last, "event {i}: seq {seq} after {last}");
        last = seq;
    }
    assert_eq!(runtime.metrics().total("clusterd_events_dropped_total").unwrap_or(0), 0, "the client read everything: nothing was dropped");
}
