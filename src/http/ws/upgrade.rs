//! Starts a WebSocket session actor (event stream or GraphQL) on an upgrade request, and runs its
//! connection once the handshake is answered.
//!
//! The handler answers `101` with a [`Handoff`]; the server (see `http::server`) writes the answer
//! and gives the handoff the TCP connection, freed of the HTTP layer. From then on one task runs
//! the connection: it polls the session for its outgoing frames and writes each to the socket
//! before it polls again, so a client that stops reading holds its session still (the
//! [`watchdog`](super::watchdog) cuts it if it stays silent). The client's messages are read by our
//! [`FrameReader`], which bounds memory by the message limit, through a reader that holds no buffer
//! between reads, so an idle connection costs the session and the task, little more. When the
//! session has written its last frame the server closes its side at once, as RFC 6455 §7.1.1 asks.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix::{Actor, AsyncContext, StreamHandler};
use actix_web::error::PayloadError;
use actix_web::rt::net::TcpStream;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, Message, ProtocolError, WebsocketContext};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::frames::FrameReader;
use super::watchdog::{self, Liveness};

/// Most bytes read from a socket at a time. The buffer is on the stack: bytes are copied out as
/// the frame reader needs them, so an idle connection holds no read buffer.
const READ_CHUNK: usize = 8 * 1024;

/// Marks a request the server received as an upgrade, with its connection ready to be handed
/// over: only such a request can become a WebSocket.
pub struct UpgradeRequest;

/// How to run a connection once its `101` is written: carried by the answer to the server.
pub struct Handoff(Box<dyn FnOnce(TcpStream, Bytes)>);

impl Handoff {
    /// Runs the connection; `first_bytes` are what the client sent after its request.
    pub fn run(self, io: TcpStream, first_bytes: Bytes) {
        (self.0)(io, first_bytes)
    }
}

/// The limits of one connection, from `[ws]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Client messages over this are refused (`ws.max_frame_bytes`).
    pub max_message_bytes: usize,
    /// A client silent this long while a write waits is cut: `ws.client_timeout_ms` plus one
    /// `ws.heartbeat_interval_ms`, past the time the session itself would have closed it.
    pub silence_limit: Duration,
}

impl ConnectionLimits {
    pub fn from_config(c: &crate::config::Config) -> Self {
        ConnectionLimits {
            max_message_bytes: c.ws.max_frame_bytes,
            silence_limit: Duration::from_millis(c.ws.client_timeout_ms.saturating_add(c.ws.heartbeat_interval_ms)),
        }
    }
}

/// Answers the upgrade with `protocols` (the first the client offers that is listed); once the
/// answer is written, `actor` runs on the connection.
pub fn start<A>(
    actor: A,
    req: &HttpRequest,
    limits: ConnectionLimits,
    protocols: &[&str],
) -> Result<HttpResponse, ws::HandshakeError>
where
    A: Actor<Context = WebsocketContext<A>> + StreamHandler<Result<Message, ProtocolError>>,
{
    // An upgrade header the HTTP layer did not take as one (a chunked body, another protocol
    // listed with it) leaves the connection speaking HTTP: it cannot carry a WebSocket.
    if req.extensions().get::<UpgradeRequest>().is_none() {
        return Err(ws::HandshakeError::NoWebsocketUpgrade);
    }
    let mut response = ws::handshake_with_protocols(req, protocols)?.finish();
    response
        .extensions_mut()
        .insert(Handoff(Box::new(move |io, first_bytes| run(actor, io, first_bytes, limits))));
    Ok(response)
}

/// Starts the session on the connection, on a task of the current worker.
fn run<A>(actor: A, io: TcpStream, first_bytes: Bytes, limits: ConnectionLimits)
where
    A: Actor<Context = WebsocketContext<A>> + StreamHandler<Result<Message, ProtocolError>>,
{
    // A session writes many small frames unasked (events, a peer's Raft messages): Nagle's
    // algorithm would hold each behind the ACK of the last, which the client may delay 40 ms.
    if let Err(e) = io.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set on a WebSocket connection");
    }
    let (read, write) = io.into_split();
    let liveness = Rc::new(Liveness::new());
    let reader = SocketReader { first_bytes: Some(first_bytes), read, liveness: liveness.clone() };
    let messages = FrameReader::new(reader, limits.max_message_bytes);
    // The context's own reader is given nothing to read: ours reads the socket.
    let frames = WebsocketContext::with_factory(futures_util::stream::pending::<Result<Bytes, PayloadError>>(), move |ctx| {
        ctx.add_stream(messages);
        actor
    });
    actix_web::rt::spawn(write_frames(frames, write, liveness, limits.silence_limit));
}

/// The connection's task: each frame the session writes goes to the socket before the session is
/// polled again; after the last one, our half of the connection is closed.
///
/// Not an `async fn`: its arguments would be stored in the task twice (as arguments, and as the
/// locals they are moved into), the session among them; an `async` block uses them in place.
/// `Unpin`, so the session is polled where it lies rather than pinned into another copy.
#[allow(clippy::manual_async_fn)] // on purpose, as said above
fn write_frames<S>(
    mut frames: S,
    mut socket: OwnedWriteHalf,
    liveness: Rc<Liveness>,
    silence_limit: Duration,
) -> impl Future<Output = ()>
where
    S: Stream<Item = Result<Bytes, actix_web::Error>> + Unpin,
{
    async move {
        while let Some(frame) = frames.next().await {
            let written = match frame {
                Ok(bytes) => watchdog::write_all(&mut socket, &bytes, &liveness, silence_limit).await,
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            if let Err(e) = written {
                // Dropping the session's stream stops the session.
                tracing::info!(error = %e, "WebSocket connection cut");
                return;
            }
        }
        if let Err(e) = socket.shutdown().await {
            tracing::debug!(error = %e, "closing the write half of a WebSocket connection failed");
        }
    }
}

/// The client's bytes: first those read with its request, then the socket's.
struct SocketReader {
    first_bytes: Option<Bytes>,
    read: OwnedReadHalf,
    liveness: Rc<Liveness>,
}

impl Stream for SocketReader {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(first) = this.first_bytes.take().filter(|b| !b.is_empty()) {
            this.liveness.heard();
            return Poll::Ready(Some(Ok(first)));
        }
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = ReadBuf::uninit(&mut chunk);
        match Pin::new(&mut this.read).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(None),
            Poll::Ready(Ok(())) => {
                this.liveness.heard();
                Poll::Ready(Some(Ok(Bytes::copy_from_slice(buf.filled()))))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(PayloadError::Io(e)))),
            Poll::Pending => Poll::Pending,
        }
    }
}
