//! Reads a client's WebSocket messages off its connection with memory bounded by the message
//! limit (RFC 6455 framing, server side).
//!
//! A frame is judged by its header: one that would take its message past the limit is refused
//! before its payload is read, and its payload (and the rest of its message) is discarded as it
//! streams in, never buffered. Fragmented messages are reassembled, the limit applying to the
//! whole message. A refused message is reported as [`ProtocolError::Overflow`] and the stream goes
//! on; any other error breaks the framing, so the stream ends after reporting it.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use actix_web::web::{Buf, Bytes, BytesMut};
use actix_web_actors::ws::{CloseCode, CloseReason, Message, ProtocolError};
use bytestring::ByteString;
use futures_util::Stream;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Control frames carry at most this much (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A frame header, as read from the first 2 to 14 bytes of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    payload_len: u64,
    header_len: usize,
}

impl Header {
    fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }

    /// Reads a header from the start of `buf`: `None` until all of it is there.
    fn parse(buf: &[u8]) -> Result<Option<Header>, ProtocolError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        if b0 & 0x70 != 0 {
            return Err(invalid("reserved bits set without an extension that defines them"));
        }
        let opcode = b0 & 0x0F;
        if !matches!(opcode, OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
            return Err(ProtocolError::InvalidOpcode(opcode));
        }
        if b1 & 0x80 == 0 {
            return Err(ProtocolError::UnmaskedFrame);
        }
        let (payload_len, len_bytes) = match b1 & 0x7F {
            126 => (buf.get(2..4).map(|b| u64::from(u16::from_be_bytes([b[0], b[1]]))), 2),
            127 => (
                buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes),
                8,
            ),
            short => (Some(u64::from(short)), 0),
        };
        let Some(payload_len) = payload_len else { return Ok(None) };
        let mask_at = 2 + len_bytes;
        let Some(mask) = buf.get(mask_at..mask_at + 4).and_then(|m| <[u8; 4]>::try_from(m).ok()) else {
            return Ok(None);
        };
        let header = Header { fin: b0 & 0x80 != 0, opcode, mask, payload_len, header_len: mask_at + 4 };
        if header.is_control() && (!header.fin || payload_len > MAX_CONTROL_PAYLOAD) {
            return Err(invalid("a control frame must be one frame of at most 125 bytes"));
        }
        Ok(Some(header))
    }
}

fn invalid(why: &str) -> ProtocolError {
    ProtocolError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string()))
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// A message whose frames are still coming.
enum Partial {
    /// Text or binary, and the payload so far.
    Assembling { text: bool, payload: BytesMut },
    /// Refused for its size: its remaining frames are discarded.
    Refused,
}

/// The client's messages, read from a stream of the connection's raw bytes.
pub struct FrameReader<S> {
    body: S,
    buf: BytesMut,
    limit: usize,
    /// Payload bytes of a refused frame still to come, discarded as they arrive.
    skipping: u64,
    partial: Option<Partial>,
    /// The body ended or the framing broke: nothing more is read.
    ended: bool,
}

impl<S> FrameReader<S> {
    /// Reads `body`, refusing any message over `limit` bytes.
    pub fn new(body: S, limit: usize) -> Self {
        FrameReader { body, buf: BytesMut::new(), limit, skipping: 0, partial: None, ended: false }
    }

    /// The next message, error or refusal that the buffered bytes hold; `None` if more are needed.
    fn next_from_buffer(&mut self) -> Result<Option<Message>, ProtocolError> {
        loop {
            if self.skipping > 0 {
                let n = self.skipping.min(self.buf.len() as u64);
                self.buf.advance(n as usize);
                self.skipping -= n;
                if self.skipping > 0 {
                    return Ok(None);
                }
            }
            let Some(header) = Header::parse(&self.buf)? else { return Ok(None) };
            if !header.is_control() {
                match (header.opcode, &self.partial) {
                    (OP_CONTINUATION, None) => return Err(invalid("a continuation frame with no message to continue")),
                    (OP_TEXT | OP_BINARY, Some(_)) => return Err(invalid("a new message inside a fragmented one")),
                    _ => {}
                }
                let so_far = match &self.partial {
                    Some(Partial::Assembling { payload, .. }) => payload.len() as u64,
                    Some(Partial::Refused) => {
                        self.discard_frame(&header);
                        if header.fin {
                            self.partial = None;
                        }
                        continue;
                    }
                    None => 0,
                };
                if so_far.saturating_add(header.payload_len) > self.limit as u64 {
                    self.discard_frame(&header);
                    self.partial = (!header.fin).then_some(Partial::Refused);
                    return Err(ProtocolError::Overflow);
                }
            }
            // The frame is within the limit: wait for all of it.
            let frame_len = header.header_len + header.payload_len as usize;
            if self.buf.len() < frame_len {
                self.buf.reserve(frame_len - self.buf.len());
                return Ok(None);
            }
            self.buf.advance(header.header_len);
            let mut payload = self.buf.split_to(header.payload_len as usize);
            unmask(&mut payload, header.mask);
            if let Some(message) = self.take_frame(header, payload)? {
                return Ok(Some(message));
            }
        }
    }

    /// Drops a refused frame's header and as much of its payload as is here; the rest is skipped
    /// as it arrives.
    fn discard_frame(&mut self, header: &Header) {
        self.buf.advance(header.header_len);
        self.skipping = header.payload_len;
    }

    /// A whole frame within the limit: the message it completes, if any.
    fn take_frame(&mut self, header: Header, payload: BytesMut) -> Result<Option<Message>, ProtocolError> {
        let message = match header.opcode {
            OP_PING => return Ok(Some(Message::Ping(payload.freeze()))),
            OP_PONG => return Ok(Some(Message::Pong(payload.freeze()))),
            OP_CLOSE => return close_message(&payload).map(Some),
            OP_TEXT | OP_BINARY if header.fin => (header.opcode == OP_TEXT, payload),
            OP_TEXT | OP_BINARY => {
                self.partial = Some(Partial::Assembling { text: header.opcode == OP_TEXT, payload });
                return Ok(None);
            }
            _ => {
                let Some(Partial::Assembling { payload: so_far, .. }) = &mut self.partial else {
                    return Err(invalid("a continuation frame with no message to continue"));
                };
                so_far.extend_from_slice(&payload);
                if !header.fin {
                    return Ok(None);
                }
                match self.partial.take() {
                    Some(Partial::Assembling { text, payload }) => (text, payload),
                    _ => return Err(invalid("a continuation frame with no message to continue")),
                }
            }
        };
        match message {
            (true, payload) => ByteString::try_from(payload.freeze())
                .map(|text| Some(Message::Text(text)))
                .map_err(|_| invalid("a text message that is not UTF-8")),
            (false, payload) => Ok(Some(Message::Binary(payload.freeze()))),
        }
    }
}

/// A close frame's payload: nothing, or a code and a UTF-8 reason.
fn close_message(payload: &[u8]) -> Result<Message, ProtocolError> {
    match payload {
        [] => Ok(Message::Close(None)),
        [_] => Err(invalid("a close frame with a one-byte payload")),
        [hi, lo, reason @ ..] => {
            let description = match reason {
                [] => None,
                _ => Some(
                    std::str::from_utf8(reason)
                        .map_err(|_| invalid("a close reason that is not UTF-8"))?
                        .to_string(),
                ),
            };
            Ok(Message::Close(Some(CloseReason { code: CloseCode::from(u16::from_be_bytes([*hi, *lo])), description })))
        }
    }
}

impl<S> Stream for FrameReader<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Message, ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            match this.next_from_buffer() {
                Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                Err(ProtocolError::Overflow) => return Poll::Ready(Some(Err(ProtocolError::Overflow))),
                Err(e) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(None) => {}
            }
            // More bytes are needed; the body is read only now, so a client that sends faster
            // than its messages are handled is held back by TCP, not by our memory.
            if this.buf.is_empty() {
                // Between messages an idle connection keeps no buffer (an empty one may still
                // hold the allocation its last message was split from).
                this.buf = BytesMut::new();
            }
            match Pin::new(&mut this.body).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) if this.skipping >= chunk.len() as u64 && this.buf.is_empty() => {
                    this.skipping -= chunk.len() as u64;
                }
                Poll::Ready(Some(Ok(chunk))) => this.buf.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(e))) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(ProtocolError::Io(std::io::Error::other(e.to_string())))));
                }
                Poll::Ready(None) => this.ended = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// A client frame: FIN as given, masked with a fixed key.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn body(chunks: Vec<Vec<u8>>) -> impl Stream<Item = Result<Bytes, PayloadError>> + Unpin {
        futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))))
    }

    /// Reads everything `chunks` hold, fed as separate body chunks.
    async fn read(chunks: Vec<Vec<u8>>, limit: usize) -> Vec<Result<Message, String>> {
        FrameReader::new(body(chunks), limit).map(|r| r.map_err(|e| e.to_string())).collect().await
    }

    fn text(s: &str) -> Result<Message, String> {
        Ok(Message::Text(s.into()))
    }

    #[actix_rt::test]
    async fn whole_frames_split_anywhere_are_read() {
        let bytes: Vec<u8> = [frame(true, OP_TEXT, b"hello"), frame(true, OP_PING, b"p")].concat();
        let chunks = bytes.iter().map(|b| vec![*b]).collect();
        assert_eq!(read(chunks, 64).await, vec![text("hello"), Ok(Message::Ping(Bytes::from_static(b"p")))]);
    }

    #[actix_rt::test]
    async fn fragments_are_reassembled_with_control_frames_between_them() {
        let bytes = [
            frame(false, OP_TEXT, b"{\"node"),
            frame(true, OP_PING, b""),
            frame(false, OP_CONTINUATION, b"_ids\":"),
            frame(true, OP_CONTINUATION, b"[]}"),
        ]
        .concat();
        assert_eq!(read(vec![bytes], 64).await, vec![Ok(Message::Ping(Bytes::new())), text("{\"node_ids\":[]}")]);
    }

    #[actix_rt::test]
    async fn the_limit_applies_to_the_whole_message_and_the_stream_goes_on() {
        let bytes = [
            frame(false, OP_TEXT, &[b'a'; 40]),
            frame(false, OP_CONTINUATION, &[b'b'; 40]),
            frame(true, OP_CONTINUATION, &[b'c'; 40]),
            frame(true, OP_TEXT, b"after"),
        ]
        .concat();
        assert_eq!(read(vec![bytes], 64).await, vec![Err(ProtocolError::Overflow.to_string()), text("after")]);
    }

    #[actix_rt::test]
    async fn an_oversized_frame_is_refused_from_its_header_and_its_payload_is_not_kept() {
        let size = 64 << 20;
        let mut header = frame(true, OP_TEXT, b"");
        header[1] = 0x80 | 127;
        header.splice(2..2, (size as u64).to_be_bytes());
        let chunk = vec![0u8; 1 << 20];
        let mut chunks = vec![header];
        chunks.extend(std::iter::repeat_n(chunk, size >> 20));
        chunks.push(frame(true, OP_TEXT, b"after"));
        let mut reader = FrameReader::new(body(chunks), 1024);
        assert!(matches!(reader.next().await, Some(Err(ProtocolError::Overflow))));
        assert!(reader.buf.capacity() < 2 << 20, "the refused payload was buffered");
        assert!(matches!(reader.next().await, Some(Ok(Message::Text(t))) if t == "after"));
    }

    #[actix_rt::test]
    async fn broken_framing_ends_the_stream() {
        let unmasked = vec![0x81, 0x02, b'h', b'i'];
        assert_eq!(read(vec![unmasked, frame(true, OP_TEXT, b"x")], 64).await.len(), 1);
        let orphan = frame(true, OP_CONTINUATION, b"x");
        assert_eq!(read(vec![orphan, frame(true, OP_TEXT, b"x")], 64).await.len(), 1);
        let nested = [frame(false, OP_TEXT, b"a"), frame(true, OP_TEXT, b"b")].concat();
        assert_eq!(read(vec![nested], 64).await.len(), 1);
        let long_ping = frame(true, OP_PING, &[0; 126]);
        assert_eq!(read(vec![long_ping], 1024).await.len(), 1);
        let not_utf8 = frame(true, OP_TEXT, &[0xff, 0xfe]);
        assert!(read(vec![not_utf8], 64).await[0].is_err());
    }

    #[actix_rt::test]
    async fn close_frames_carry_their_code_and_reason() {
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let read = read(vec![frame(true, OP_CLOSE, &payload), frame(true, OP_CLOSE, b"")], 64).await;
        assert_eq!(
            read,
            vec![
                Ok(Message::Close(Some(CloseReason { code: CloseCode::Normal, description: Some("bye".into()) }))),
                Ok(Message::Close(None)),
            ]
        );
    }
}
