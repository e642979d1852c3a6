//! The app served on a real socket, as the binary runs it (WebSocket watchdogs included): the one
//! way to start it for WebSocket and GraphQL tests, and a WebSocket client that answers pings as a
//! live client would. Every wait is bounded by [`TIMEOUT`](super::TIMEOUT).

use std::net::SocketAddr;

use awc::error::{WsClientError, WsProtocolError};
use awc::ws::{Frame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::Value;

use clusterd::{Config, Runtime, RuntimeHandle};

use super::within;

pub struct Server {
    pub runtime: RuntimeHandle,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts a runtime for `config` and serves the app on an ephemeral loopback port.
    pub fn start(config: Config) -> Server {
        let runtime = Runtime::start(config).expect("runtime starts");
        let state = clusterd::http::AppState::new(runtime.clone());
        let (server, addrs) = clusterd::http::start_server(state, 1, "127.0.0.1:0").expect("bind a free port");
        let addr = addrs[0];
        actix_web::rt::spawn(server);
        Server { runtime, addr }
    }

    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }

    /// A WebSocket upgrade on `path` (with its query), offering `protocol` if given and sending
    /// `bearer` as a bearer token if given: the connection, or the status it was refused with.
    /// An offered protocol must be the one the server chose.
    pub async fn upgrade(&self, path: &str, protocol: Option<&str>, bearer: Option<&str>) -> Result<WsConn, u16> {
        let mut req = awc::Client::new().ws(self.url("ws", path));
        if let Some(protocol) = protocol {
            req = req.protocols([protocol]);
        }
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let (res, conn) = match within("the WebSocket upgrade", req.connect()).await {
            Ok(connected) => connected,
            Err(WsClientError::InvalidResponseStatus(status)) => return Err(status.as_u16()),
            Err(e) => panic!("WebSocket upgrade on {path}: {e}"),
        };
        assert_eq!(res.status(), 101);
        if protocol.is_some() {
            let chosen = res.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
            assert_eq!(chosen, protocol, "negotiated subprotocol");
        }
        Ok(WsConn(Box::pin(conn)))
    }

    /// A WebSocket connection speaking `protocol` (not initialised yet).
    pub async fn ws(&self, path: &str, protocol: &str) -> WsConn {
        self.upgrade(path, Some(protocol), None).await.unwrap_or_else(|s| panic!("upgrade refused with {s}"))
    }
}

/// A client WebSocket as awc hands it out, without naming its codec types.
pub trait Framed: Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> {}
impl<T> Framed for T where T: Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> {}

/// A WebSocket client connection; `.0` reads and writes raw frames.
pub struct WsConn(pub std::pin::Pin<Box<dyn Framed>>);

/// What the server sent next, pings aside.
#[derive(Debug)]
pub enum Incoming {
    Json(Value),
    /// A close frame (with its code, if any), or the connection ended without one.
    Closed(Option<u16>),
}

impl WsConn {
    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    /// A text frame with exactly `text` in it (for frames that are not JSON).
    pub async fn send_text(&mut self, text: &str) {
        self.0.send(Message::Text(text.to_string().into())).await.expect("send a frame");
    }

    /// The next frame within the timeout; pings are answered on the way, as a live client would.
    pub async fn next(&mut self) -> Incoming {
        within("the next frame", async {
            loop {
                match self.0.next().await {
                    None => return Incoming::Closed(None),
                    Some(Err(e)) => panic!("websocket error: {e}"),
                    Some(Ok(Frame::Text(bytes))) => {
                        return Incoming::Json(serde_json::from_slice(&bytes).expect("a JSON frame"))
                    }
                    Some(Ok(Frame::Ping(p))) => self.0.send(Message::Pong(p)).await.expect("send a pong"),
                    Some(Ok(Frame::Pong(_))) => {}
                    Some(Ok(Frame::Close(reason))) => return Incoming::Closed(reason.map(|r| u16::from(r.code))),
                    Some(Ok(other)) => panic!("unexpected frame {other:?}"),
                }
            }
        })
        .await
    }

    pub async fn json(&mut self) -> Value {
        match self.next().await {
            Incoming::Json(v) => v,
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }

    pub async fn closed(&mut self) -> Option<u16> {
        match self.next().await {
            Incoming::Closed(code) => code,
            other => panic!("expected the connection to close, got {other:?}"),
        }
    }
}
