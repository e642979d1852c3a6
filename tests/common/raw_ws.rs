//! A WebSocket client written against RFC 6455 on a blocking socket, for what library clients will
//! not do: announce a huge frame and stream it, fragment a message, watch when the server closes
//! the TCP connection.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;

use super::binary::WAIT;

pub const TEXT: u8 = 0x1;
pub const CONTINUATION: u8 = 0x0;
pub const CLOSE: u8 = 0x8;

/// A client frame: masked, with FIN as given.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = frame_header(fin, opcode, payload.len() as u64);
    let mask = [0x5a, 0x13, 0xc4, 0x7e];
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The header of a masked client frame announcing `len` payload bytes.
pub fn frame_header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match len {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out.extend_from_slice(&[0x5a, 0x13, 0xc4, 0x7e]);
    out
}

/// What the server sent.
#[derive(Debug, PartialEq)]
pub enum ServerFrame {
    Text(String),
    Close(Option<u16>),
    Ping,
    Pong,
    /// The server closed the TCP connection.
    End,
}

pub struct RawWs {
    pub socket: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Upgrades `path` on `addr`, offering `protocol` if given.
    pub fn connect(addr: &str, path: &str, protocol: Option<&str>) -> RawWs {
        Self::connect_with(addr, path, protocol, &[])
    }

    /// Upgrades `path` on `addr`, sending `first_frames` in the same write as the request, before
    /// any answer: a client may, and the server must read them once it has answered.
    pub fn connect_with(addr: &str, path: &str, protocol: Option<&str>, first_frames: &[u8]) -> RawWs {
        let mut socket = TcpStream::connect(addr).expect("connect");
        socket.set_read_timeout(Some(WAIT)).expect("read timeout");
        let protocol = protocol.map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n")).unwrap_or_default();
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n"
        )
        .into_bytes();
        request.extend_from_slice(first_frames);
        socket.write_all(&request).expect("write upgrade");
        let mut ws = RawWs { socket, buf: Vec::new() };
        let head_end = loop {
            if let Some(i) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(ws.fill(), "connection ended during the upgrade");
        };
        let head = String::from_utf8_lossy(&ws.buf[..head_end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        ws.buf.drain(..head_end);
        ws
    }

    /// Reads more bytes into the buffer: false at the end of the stream (or a reset).
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match self.socket.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("nothing from the server within {WAIT:?}")
            }
            // A reset ends the stream too.
            Err(_) => false,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.socket.write_all(bytes)
    }

    pub fn send_text(&mut self, text: &str) {
        self.send(&frame(true, TEXT, text.as_bytes())).expect("send a text frame");
    }

    /// The next frame from the server (unmasked, unfragmented: what clusterd sends).
    pub fn next(&mut self) -> ServerFrame {
        loop {
            if self.buf.len() >= 2 {
                let (len, at) = match self.buf[1] & 0x7F {
                    126 if self.buf.len() >= 4 => (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4),
                    127 if self.buf.len() >= 10 => {
                        (u64::from_be_bytes(self.buf[2..10].try_into().expect("8 bytes")) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let opcode = self.buf[0] & 0x0F;
                    let payload: Vec<u8> = self.buf.drain(..at + len).skip(at).collect();
                    return match opcode {
                        TEXT => ServerFrame::Text(String::from_utf8(payload).expect("UTF-8 text")),
                        CLOSE => ServerFrame::Close(payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]))),
                        0x9 => ServerFrame::Ping,
                        0xA => ServerFrame::Pong,
                        other => panic!("unexpected opcode {other}"),
                    };
                }
            }
            if !self.fill() {
                return ServerFrame::End;
            }
        }
    }

    /// The next JSON text frame, pings skipped; panics on anything else.
    pub fn json(&mut self) -> Value {
        loop {
            match self.next() {
                ServerFrame::Ping | ServerFrame::Pong => continue,
                ServerFrame::Text(t) => return serde_json::from_str(&t).expect("a JSON frame"),
                other => panic!("expected a JSON frame, got {other:?}"),
            }
        }
    }

    /// Skips frames until one whose `type` is `kind`.
    pub fn json_of_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.json();
            if frame["type"] == kind {
                return frame;
            }
        }
    }
}
