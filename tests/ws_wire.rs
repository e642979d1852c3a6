//! The WebSocket endpoints on the wire, against the real binary and a client written to RFC 6455:
//! a message over the limit is refused from its frame header, so however much a client announces
//! and streams the server's memory stays where it was; fragmented messages are reassembled; a
//! close is answered and the connection ended at once; frames sent with the upgrade request are
//! read; an upgrade request anywhere else gets the answer a plain request would; a shutdown closes
//! open sessions with 1001 before the process exits.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::binary::{signal, start, wait_exit, Server, WAIT};
use common::raw_ws::{frame, frame_header, RawWs, ServerFrame, CLOSE, CONTINUATION, TEXT};
use serde_json::Value;

const MIB: u64 = 1 << 20;

fn server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path());
    server.wait_for_leader();
    (dir, server)
}

/// Streams `len` bytes of payload for a frame whose header was sent.
fn stream_payload(ws: &mut RawWs, len: u64) -> std::io::Result<()> {
    let chunk = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB);
        ws.send(&chunk[..n as usize])?;
        left -= n;
    }
    Ok(())
}

#[test]
fn huge_frames_are_refused_from_their_header_and_leave_memory_where_it_was() {
    let (_dir, server) = server();
    let mut events = RawWs::connect(&server.addr, "/api/v1/ws/events", None);
    events.json_of_type("subscribed");
    let before = server.rss_bytes();

    // Event stream: each message gets an error frame before its payload is sent, the payload is
    // read and dropped, and the session goes on.
    for _ in 0..100 {
        events.send(&frame_header(true, TEXT, 64 * MIB)).expect("send a header");
        assert_eq!(events.json_of_type("error")["code"], "frame_too_large");
        stream_payload(&mut events, 64 * MIB).expect("the server reads the refused payload");
    }
    events.send_text(r#"{"node_ids":["node-2"]}"#);
    assert_eq!(events.json_of_type("subscribed")["filter"]["node_ids"][0], "node-2");

    // GraphQL: a message over the limit closes the connection with 1009, from the header.
    for _ in 0..100 {
        let mut graphql = RawWs::connect(&server.addr, "/graphql/ws", Some("graphql-transport-ws"));
        graphql.send(&frame_header(true, TEXT, 64 * MIB)).expect("send a header");
        assert_eq!(graphql.next(), ServerFrame::Close(Some(1009)));
        // The server has closed: streaming may fail part way, which is the point.
        let _ = stream_payload(&mut graphql, 64 * MIB);
    }

    let after = server.rss_bytes();
    eprintln!("server RSS before {} KiB, after {} KiB", before / 1024, after / 1024);
    assert!(after < before + 8 * MIB, "RSS grew from {before} to {after} bytes");
}

#[test]
fn fragmented_messages_are_reassembled_and_limited_as_a_whole() {
    let (_dir, server) = server();
    let mut events = RawWs::connect(&server.addr, "/api/v1/ws/events", None);
    events.json_of_type("subscribed");
    let fragments = [
        frame(false, TEXT, br#"{"node_ids":"#),
        frame(true, 0x9, b"ping between fragments"),
        frame(false, CONTINUATION, br#"["node-"#),
        frame(true, CONTINUATION, br#"3"]}"#),
    ];
    events.send(&fragments.concat()).expect("send fragments");
    assert_eq!(events.json_of_type("subscribed")["filter"]["node_ids"][0], "node-3");

    // Three fragments of 30,000 bytes: each is under ws.max_frame_bytes (65,536), the message is not.
    let part = vec![b' '; 30_000];
    let fragments = [frame(false, TEXT, &part), frame(false, CONTINUATION, &part), frame(true, CONTINUATION, &part)];
    events.send(&fragments.concat()).expect("send fragments");
    assert_eq!(events.json_of_type("error")["code"], "frame_too_large");
    events.send_text(r#"{"node_ids":["node-1"]}"#);
    assert_eq!(events.json_of_type("subscribed")["filter"]["node_ids"][0], "node-1");

    let mut graphql = RawWs::connect(&server.addr, "/graphql/ws", Some("graphql-transport-ws"));
    let init = [frame(false, TEXT, br#"{"type":"conn"#), frame(true, CONTINUATION, br#"ection_init"}"#)];
    graphql.send(&init.concat()).expect("send fragments");
    assert_eq!(graphql.json()["type"], "connection_ack");
}

#[test]
fn a_close_is_answered_and_the_connection_ended_at_once() {
    let (_dir, server) = server();
    // The server used to wait for the client to close the TCP connection first (up to a second),
    // so a hundred closes one after another took a minute or more.
    let deadline = Duration::from_secs(10);
    let started = Instant::now();
    for i in 0..100 {
        let (path, protocol) =
            if i % 2 == 0 { ("/api/v1/ws/events", None) } else { ("/graphql/ws", Some("graphql-transport-ws")) };
        let mut ws = RawWs::connect(&server.addr, path, protocol);
        ws.send(&frame(true, CLOSE, &1000u16.to_be_bytes())).expect("send close");
        loop {
            match ws.next() {
                ServerFrame::Close(code) => {
                    assert_eq!(code, Some(1000), "{path}");
                    break;
                }
                ServerFrame::End => panic!("{path}: the connection ended without a close frame"),
                _ => {}
            }
        }
        assert_eq!(ws.next(), ServerFrame::End, "{path}: after the close frame, the end of the stream");
    }
    assert!(started.elapsed() < deadline, "100 closes took {:?}", started.elapsed());
}

#[test]
fn frames_sent_with_the_upgrade_request_are_read_once_it_is_answered() {
    let (_dir, server) = server();
    // The filter frame arrives with the request, before the server has answered: it is read
    // with it and must reach the session, after its first subscription.
    let filter = frame(true, TEXT, br#"{"node_ids":["node-2"]}"#);
    let mut events = RawWs::connect_with(&server.addr, "/api/v1/ws/events", None, &filter);
    assert!(events.json_of_type("subscribed")["filter"]["node_ids"].is_null());
    assert_eq!(events.json_of_type("subscribed")["filter"]["node_ids"][0], "node-2");

    let init = frame(true, TEXT, br#"{"type":"connection_init"}"#);
    let mut graphql = RawWs::connect_with(&server.addr, "/graphql/ws", Some("graphql-transport-ws"), &init);
    assert_eq!(graphql.json()["type"], "connection_ack");
}

/// Writes `request` on a new connection and reads the answer to the end of the stream: its
/// status and its body as JSON.
fn exchange(addr: &str, request: &str) -> (u16, Value) {
    let mut socket = TcpStream::connect(addr).expect("connect");
    socket.set_read_timeout(Some(WAIT)).expect("read timeout");
    socket.write_all(request.as_bytes()).expect("write the request");
    let mut answer = String::new();
    socket.read_to_string(&mut answer).expect("an answer, then the end of the stream");
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("a JSON body ({e}): {answer}")))
}

#[test]
fn upgrade_requests_that_start_no_websocket_get_the_answer_of_the_route() {
    let (_dir, server) = server();
    let upgrade = |path: &str, extra: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n",
            server.addr
        )
    };
    // A route that does not speak WebSocket answers as it always does.
    let (status, body) = exchange(&server.addr, &upgrade("/health", ""));
    assert_eq!((status, &body["status"]), (200, &Value::from("ok")));
    // No such route, a refused filter, no subprotocol offered: the error shape.
    let (status, body) = exchange(&server.addr, &upgrade("/api/v1/ws/nowhere", ""));
    assert_eq!((status, &body["error"]["code"]), (404, &Value::from("route_not_found")));
    let (status, body) = exchange(&server.addr, &upgrade("/api/v1/ws/events?min_severity=loud", ""));
    assert_eq!((status, &body["error"]["code"]), (400, &Value::from("invalid_filter")));
    let (status, body) = exchange(&server.addr, &upgrade("/graphql/ws", ""));
    assert_eq!(status, 400, "{body}");
    // A body with the upgrade keeps the connection HTTP: it cannot become a WebSocket.
    let chunked = upgrade("/api/v1/ws/events", "Transfer-Encoding: chunked\r\n") + "0\r\n\r\n";
    let (status, body) = exchange(&server.addr, &chunked);
    assert_eq!((status, &body["error"]["code"]), (400, &Value::from("not_a_websocket_request")));
    // What `curl --http2` sends to an http:// URL: answered in HTTP/1.1.
    let h2c = format!(
        "GET /health HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
         HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
        server.addr
    );
    let (status, body) = exchange(&server.addr, &h2c);
    assert_eq!((status, &body["status"]), (200, &Value::from("ok")));
}

#[actix_web::test]
async fn a_shutdown_closes_open_sessions_with_1001_before_the_process_exits() {
    let (_dir, mut server) = server();
    let mut events = RawWs::connect(&server.addr, "/api/v1/ws/events", None);
    events.json_of_type("subscribed");
    let mut graphql = RawWs::connect(&server.addr, "/graphql/ws", Some("graphql-transport-ws"));
    graphql.send_text(r#"{"type":"connection_init"}"#);
    assert_eq!(graphql.json()["type"], "connection_ack");

    signal(&server.child, "TERM");
    for (name, ws) in [("event stream", &mut events), ("graphql", &mut graphql)] {
        let code = loop {
            match ws.next() {
                ServerFrame::Close(code) => break code,
                ServerFrame::End => panic!("{name}: the connection ended without a close frame"),
                _ => {}
            }
        };
        assert_eq!(code, Some(1001), "{name}");
        assert_eq!(ws.next(), ServerFrame::End, "{name}: after the close frame, the end of the stream");
    }
    assert!(wait_exit(&mut server.child).await.success());
}
