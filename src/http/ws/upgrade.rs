//! Starts a WebSocket session actor (event stream or GraphQL) on an upgrade request.
//!
//! The client's messages are read by our [`FrameReader`], which bounds memory by the message
//! limit, instead of actix-web-actors' reader, which buffers whatever the socket holds before it
//! looks at a frame. When the session has written its last frame, the server closes its side of
//! the connection at once, as RFC 6455 §7.1.1 asks; otherwise actix-web lingers, waiting for the
//! client to close first, and a client that waits for the server (as most do) waits up to a second.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix::{Actor, AsyncContext, StreamHandler};
use actix_web::error::PayloadError;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, Message, ProtocolError, WebsocketContext};
use futures_util::Stream;

use super::frames::FrameReader;
use super::watchdog::ConnectionSocket;

/// Answers the upgrade with `protocols` (the first the client offers that is listed), and runs
/// `actor` on the connection, refusing client messages over `limit` bytes.
pub fn start<A>(
    actor: A,
    req: &HttpRequest,
    body: web::Payload,
    limit: usize,
    protocols: &[&str],
) -> Result<HttpResponse, ws::HandshakeError>
where
    A: Actor<Context = WebsocketContext<A>> + StreamHandler<Result<Message, ProtocolError>>,
{
    let mut response = ws::handshake_with_protocols(req, protocols)?;
    let reader = FrameReader::new(body, limit);
    // The context's own reader is given nothing to read: ours reads the body.
    let frames = WebsocketContext::with_factory(futures_util::stream::pending::<Result<Bytes, PayloadError>>(), move |ctx| {
        ctx.add_stream(reader);
        actor
    });
    let socket = req.conn_data::<ConnectionSocket>().cloned();
    Ok(response.streaming(ClosingBody { frames: Box::pin(frames), socket, flushing: false }))
}

type Frames = Pin<Box<dyn Stream<Item = Result<Bytes, actix_web::Error>>>>;

/// The response body: the session's frames, then our half of the connection closed.
struct ClosingBody {
    frames: Frames,
    socket: Option<ConnectionSocket>,
    /// The session has ended; one more turn lets actix-web flush its last frame to the socket.
    flushing: bool,
}

impl Stream for ClosingBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if !self.flushing {
            match self.frames.as_mut().poll_next(cx) {
                Poll::Ready(None) => {
                    self.flushing = true;
                    // actix-web writes what it holds when the body is pending, then polls again.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                other => return other,
            }
        }
        if let Some(socket) = self.socket.take() {
            socket.close_write();
        }
        Poll::Ready(None)
    }
}
