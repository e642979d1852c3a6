//! The subscription transport: a WebSocket session actor that drives async-graphql's protocol
//! state machine ([`async_graphql::http::WebSocket`], both `graphql-transport-ws` and the legacy
//! `graphql-ws`) and adds what it lacks:
//!
//! - auth: the token may come with the upgrade (`Authorization: Bearer`, `?token=`) or in the
//!   `connection_init` payload; a wrong or missing one is refused (4403 on `graphql-transport-ws`,
//!   `connection_error` then close on `graphql-ws`);
//! - an init timeout: a connection that has not been acknowledged within `ws.client_timeout_ms`
//!   is closed with 4408, the code `graphql-transport-ws` defines for it;
//! - server pings every `ws.heartbeat_interval_ms`, and closing a client silent past
//!   `ws.client_timeout_ms`;
//! - a message larger than `ws.max_frame_bytes` closes the connection with 1009, refused from its
//!   header (see [`FrameReader`](crate::http::ws::frames::FrameReader));
//! - every connection counts against `ws.max_sessions`, like the event-stream sessions (refused
//!   with 503 `too_many_sessions` past it), and has the same [watchdog] for a client that stops
//!   reading;
//! - at most [`MAX_SUBSCRIPTIONS_PER_CONNECTION`] subscriptions per connection;
//! - the protocol rules the state machine does not keep (an `error` message for an operation that
//!   fails validation, 4409 for an id in use, 4401 before the ack), in [`super::protocol`].
//!
//! [watchdog]: crate::http::ws::watchdog
//! [`MAX_SUBSCRIPTIONS_PER_CONNECTION`]: super::MAX_SUBSCRIPTIONS_PER_CONNECTION
//!
//! async-graphql-actix-web's own `GraphQLSubscription` has none of these knobs, hence this actor.

use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, ActorState, AsyncContext, Handler, StreamHandler, WrapFuture,
};
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use actix_web_actors::ws::{
    CloseCode, CloseReason, Message, ProtocolError, WebsocketContext,
};
use async_graphql::http::{
    WebSocket, WebSocketProtocols as Protocols, WsMessage, ALL_WEBSOCKET_PROTOCOLS,
};
use async_graphql::Data;
use futures_channel::mpsc;

use super::protocol::{Inbound, Operations};
use super::{ClusterSchema, ConnectionInfo};
use crate::http::auth::{bearer, query_token, request_authorized, token_matches};
use crate::http::error::ApiError;
use crate::http::ws::sessions::{SessionSlot, SessionTable};
use crate::http::ws::too_many_sessions;
use crate::http::ws::upgrade::ConnectionLimits;
use crate::messages::registry::Transport;
use crate::messages::sessions::CloseSession;
use crate::runtime::RuntimeHandle;

/// Client messages waiting for the protocol state machine. It reads every ready message at once,
/// so this only fills when a client floods; then the connection is closed rather than buffered.
/// (futures' channel allocates per message, not a block of slots up front as tokio's does: an
/// idle connection keeps no room for messages it is not sent.)
const INBOUND_QUEUE: usize = 256;

/// Longest close reason we send: a close frame's payload is at most 125 bytes, two of them the code.
const MAX_CLOSE_REASON: usize = 123;

/// `graphql-transport-ws` close codes.
const CLOSE_FORBIDDEN: u16 = 4403;
const CLOSE_INIT_TIMEOUT: u16 = 4408;
const CLOSE_BAD_MESSAGE: u16 = 4400;

/// Where a connection is in the `connection_init` handshake; shared with the init callback,
/// which runs inside the protocol state machine.
struct InitState(AtomicU8);

impl InitState {
    const PENDING: u8 = 0;
    const ACCEPTED: u8 = 1;
    const REFUSED: u8 = 2;

    fn new() -> Self {
        InitState(AtomicU8::new(Self::PENDING))
    }
    fn get(&self) -> u8 {
        self.0.load(Ordering::Acquire)
    }
    fn set(&self, v: u8) {
        self.0.store(v, Ordering::Release)
    }
}

/// Whether a request asks to be upgraded to WebSocket.
pub fn is_websocket_upgrade(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("websocket"))
}

/// The first protocol the client offers that we speak, as the handshake will answer it.
fn negotiate(req: &HttpRequest) -> Option<Protocols> {
    req.headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())?
        .split(',')
        .find_map(|p| Protocols::from_str(p.trim()).ok())
}

/// Whether a `connection_init` payload carries the token: `{"authorization": "Bearer X"}`,
/// `{"Authorization": "Bearer X"}` or `{"token": "X"}`.
fn init_payload_authorized(payload: &serde_json::Value, expected: &str) -> bool {
    let header = ["authorization", "Authorization"]
        .iter()
        .filter_map(|k| payload.get(*k).and_then(|v| v.as_str()))
        .filter_map(bearer)
        .any(|t| token_matches(t, expected));
    let plain = payload
        .get("token")
        .and_then(|v| v.as_str())
        .is_some_and(|t| token_matches(t, expected));
    header || plain
}

/// `GET /graphql/ws` (and upgrades on `GET /graphql`): starts a subscription session.
///
/// With a token configured, an upgrade that presents a token (header or `?token=`) must present
/// the right one (401 otherwise); one that presents none must authenticate in `connection_init`.
pub async fn subscriptions(
    req: HttpRequest,
    schema: web::Data<ClusterSchema>,
    runtime: web::Data<RuntimeHandle>,
    sessions: web::Data<SessionTable>,
) -> Result<HttpResponse, actix_web::Error> {
    if !is_websocket_upgrade(&req) {
        return Err(ApiError::invalid(
            "upgrade",
            "GraphQL subscriptions need a WebSocket upgrade; queries and mutations go to POST /graphql",
        )
        .into());
    }
    let protocol = negotiate(&req).ok_or_else(|| {
        ApiError::invalid(
            "sec-websocket-protocol",
            "offer the graphql-transport-ws or graphql-ws subprotocol",
        )
    })?;
    let config = runtime.config();
    let expected = config.server.auth_token.clone();
    let presented = req.headers().contains_key(header::AUTHORIZATION)
        || query_token(req.query_string()).is_some();
    let upgrade_authorized = request_authorized(&expected, req.headers(), req.query_string(), true);
    if presented && !upgrade_authorized {
        return Err(ApiError::unauthorized().into());
    }
    let peer = req
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into());
    // A subscription connection holds a socket and subscriptions just like an event-stream
    // session, so both share the one `ws.max_sessions` budget.
    let slot = sessions
        .into_inner()
        .try_open(config.ws.max_sessions, Transport::GraphQl, "graphql", peer.clone())
        .ok_or_else(|| too_many_sessions(config.ws.max_sessions))?;
    let session = GraphQlSession {
        schema: schema.get_ref().clone(),
        protocol,
        operations: Operations::new(schema.get_ref().clone(), protocol, INBOUND_QUEUE),
        info: ConnectionInfo::new(slot.session_id(), peer),
        expected_token: expected,
        upgrade_authorized,
        init: Arc::new(InitState::new()),
        heartbeat_interval: Duration::from_millis(config.ws.heartbeat_interval_ms),
        client_timeout: Duration::from_millis(config.ws.client_timeout_ms),
        max_frame_bytes: config.ws.max_frame_bytes,
        inbound: None,
        last_heard: Instant::now(),
        shutdown: runtime.shutdown_signal(),
        slot,
    };
    let limits = ConnectionLimits::from_config(config);
    Ok(crate::http::ws::upgrade::start(session, &req, limits, &ALL_WEBSOCKET_PROTOCOLS)?)
}

/// One subscription connection.
struct GraphQlSession {
    schema: ClusterSchema,
    protocol: Protocols,
    /// The protocol rules kept on top of the state machine.
    operations: Operations,
    info: ConnectionInfo,
    /// Empty: no auth.
    expected_token: String,
    /// The upgrade request carried the right token, so `connection_init` needs none.
    upgrade_authorized: bool,
    init: Arc<InitState>,
    heartbeat_interval: Duration,
    client_timeout: Duration,
    max_frame_bytes: usize,
    /// Client messages to the protocol state machine; `None` before `started`.
    inbound: Option<mpsc::Sender<Bytes>>,
    last_heard: Instant,
    /// True once the server shuts down: the connection then closes with 1001.
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// The connection's row in the session table, and its place in `ws.max_sessions`.
    slot: SessionSlot,
}

impl GraphQlSession {
    /// Sends a close frame and stops: the context writes the frame, then ends the connection.
    fn close(&self, ctx: &mut WebsocketContext<Self>, code: u16, reason: &str) {
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        ctx.close(Some(CloseReason {
            code: CloseCode::from(code),
            description: Some(reason[..end].to_string()),
        }));
        ctx.stop();
    }

    /// A client message: checked against the protocol rules, then (if it goes on) to the state
    /// machine.
    fn forward(&mut self, message: Bytes, ctx: &mut WebsocketContext<Self>) {
        match self.operations.inbound(message) {
            Inbound::Forward(message) => self.pass(message, ctx),
            Inbound::Answer(text) => ctx.text(text),
            Inbound::Close(code, reason) => self.close(ctx, code, &reason),
            Inbound::Held => {}
        }
    }

    fn pass(&mut self, message: Bytes, ctx: &mut WebsocketContext<Self>) {
        let Some(inbound) = &mut self.inbound else { return };
        match inbound.try_send(message) {
            Ok(()) => {}
            Err(e) if e.is_full() => {
                tracing::warn!(peer = %self.info.peer, "graphql client floods the connection; closing");
                self.close(ctx, 1008, "too many messages in flight");
            }
            // The protocol state machine has ended; its end closes the connection.
            Err(_) => {}
        }
    }
}

impl Actor for GraphQlSession {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.slot.attach(ctx.address().recipient());
        let (tx, messages) = mpsc::channel::<Bytes>(INBOUND_QUEUE);
        self.inbound = Some(tx);

        let expected = self.expected_token.clone();
        let pre_authorized = self.upgrade_authorized || expected.is_empty();
        let init = self.init.clone();
        let on_init = move |payload: serde_json::Value| async move {
            if pre_authorized || init_payload_authorized(&payload, &expected) {
                init.set(InitState::ACCEPTED);
                Ok(Data::default())
            } else {
                init.set(InitState::REFUSED);
                Err(async_graphql::Error::new(
                    "Forbidden: missing or wrong token",
                ))
            }
        };
        let mut connection_data = Data::default();
        connection_data.insert(self.info.clone());
        let protocol = WebSocket::new(self.schema.clone(), messages, self.protocol)
            .connection_data(connection_data)
            .on_connection_init(on_init);
        ctx.add_stream(protocol);

        // The protocol has no init timeout of its own: without this a client could hold a
        // connection open forever without ever authenticating.
        ctx.run_later(self.client_timeout, |act, ctx| {
            if act.init.get() != InitState::ACCEPTED {
                tracing::debug!(peer = %act.info.peer, "graphql connection_init timed out");
                act.close(ctx, CLOSE_INIT_TIMEOUT, "Connection initialisation timeout");
            }
        });
        ctx.run_interval(self.heartbeat_interval, |act, ctx| {
            if act.last_heard.elapsed() > act.client_timeout {
                tracing::debug!(peer = %act.info.peer, "graphql client silent past the timeout");
                act.close(ctx, 1001, "client timed out");
            } else {
                ctx.ping(b"");
            }
        });
        let mut shutdown = self.shutdown.clone();
        ctx.spawn(
            async move {
                // An error means the runtime is gone altogether: close as well.
                let _ = shutdown.wait_for(|down| *down).await;
            }
            .into_actor(self)
            .map(|_, act, ctx| act.close(ctx, 1001, "server shutting down")),
        );
        tracing::debug!(peer = %self.info.peer, protocol = self.protocol.sec_websocket_protocol(),
            "graphql subscription connection opened");
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!(peer = %self.info.peer, "graphql subscription connection closed");
    }
}

impl Handler<CloseSession> for GraphQlSession {
    type Result = ();
    fn handle(&mut self, msg: CloseSession, ctx: &mut Self::Context) {
        self.close(ctx, 1000, &msg.reason);
    }
}

/// What the client sends.
impl StreamHandler<Result<Message, ProtocolError>> for GraphQlSession {
    fn handle(&mut self, msg: Result<Message, ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        let msg = match msg {
            Ok(msg) => msg,
            Err(ProtocolError::Overflow) => {
                let reason = format!("frame larger than {} bytes", self.max_frame_bytes);
                return self.close(ctx, 1009, &reason);
            }
            Err(e) => {
                tracing::debug!(peer = %self.info.peer, error = %e, "graphql websocket protocol error");
                return self.close(ctx, 1002, &e.to_string());
            }
        };
        match msg {
            Message::Text(text) => self.forward(text.into_bytes(), ctx),
            Message::Binary(bytes) => self.forward(bytes, ctx),
            Message::Ping(bytes) => ctx.pong(&bytes),
            // The frame reader reassembles fragments and sends no Nop.
            Message::Pong(_) | Message::Continuation(_) | Message::Nop => {}
            Message::Close(reason) => {
                ctx.close(reason);
                ctx.stop();
            }
        }
    }
}

/// What the protocol state machine answers.
impl StreamHandler<WsMessage> for GraphQlSession {
    fn handle(&mut self, msg: WsMessage, ctx: &mut Self::Context) {
        match msg {
            WsMessage::Text(text) => {
                let held = self.operations.outbound(&text);
                ctx.text(text);
                for message in held {
                    if ctx.state() != ActorState::Running {
                        break;
                    }
                    self.forward(message, ctx);
                }
            }
            WsMessage::Close(code, reason) => {
                // The state machine closes with 1002 both for a refused connection_init and for
                // a message it cannot parse; graphql-transport-ws has its own codes for both.
                let code = match (code, self.protocol) {
                    (1002, _) if self.init.get() == InitState::REFUSED => CLOSE_FORBIDDEN,
                    (1002, Protocols::GraphQLWS) => CLOSE_BAD_MESSAGE,
                    (code, _) => code,
                };
                self.close(ctx, code, &reason);
            }
        }
    }

    /// The state machine ended: the client terminated, or (legacy protocol) it refused
    /// `connection_init` after sending `connection_error`. Either way the connection is done.
    fn finished(&mut self, ctx: &mut Self::Context) {
        if self.init.get() == InitState::REFUSED {
            self.close(ctx, CLOSE_FORBIDDEN, "Forbidden");
        } else {
            self.close(ctx, 1000, "");
        }
    }
}
