//! The WebSocket endpoints on the wire, against the real binary and a client written to RFC 6455:
//! a message over the limit is refused from its frame header, so however much a client announces
//! and streams the server's memory stays where it was; fragmented messages are reassembled; a
//! close is answered and the connection ended at once.

mod common;

use std::time::{Duration, Instant};

use common::binary::{start, Server};
use common::raw_ws::{frame, frame_header, RawWs, ServerFrame, CLOSE, CONTINUATION, TEXT};

const MIB: u64 = 1 << 20;

fn server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path());
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
