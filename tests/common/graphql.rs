//! A GraphQL client over a real socket, shared by the GraphQL tests: the server started as the
//! binary runs it (WebSocket watchdogs included), `POST /graphql`, and WebSocket connections
//! speaking `graphql-transport-ws` or the legacy `graphql-ws`, answering pings as a live client
//! would. Every wait is bounded by [`WAIT`].

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use actix_web::rt::time::{sleep, timeout};
use awc::error::WsProtocolError;
use awc::ws::{Frame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};

use clusterd::messages::registry::{ListSubscriptions, Transport};
use clusterd::{Config, Runtime, RuntimeHandle};

/// How long any one expected thing may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Server {
    pub runtime: RuntimeHandle,
    pub addr: SocketAddr,
}

impl Server {
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

    /// A query or mutation over `POST /graphql`, with a bearer token if given; the whole GraphQL
    /// response.
    pub async fn post(&self, query: &str, token: Option<&str>) -> Value {
        let mut req = awc::Client::new().post(self.url("http", "/graphql"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let mut res = req.send_json(&json!({ "query": query })).await.expect("POST /graphql");
        assert_eq!(res.status(), 200, "POST /graphql status");
        res.json::<Value>().limit(16 << 20).await.expect("a JSON answer")
    }

    /// Connects a subscription client speaking `protocol` (not initialised yet).
    pub async fn ws(&self, path: &str, protocol: &str) -> WsConn {
        self.ws_with(path, protocol, None).await.expect("upgrade accepted")
    }

    pub async fn ws_with(&self, path: &str, protocol: &str, bearer: Option<&str>) -> Result<WsConn, awc::error::WsClientError> {
        let mut req = awc::Client::new().ws(self.url("ws", path)).protocols([protocol]);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let (res, conn) = req.connect().await?;
        assert_eq!(res.status(), 101);
        let chosen = res.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(chosen.as_deref(), Some(protocol), "negotiated subprotocol");
        Ok(WsConn(Box::pin(conn)))
    }

    /// Waits until the registry lists a GraphQL subscription for `field`: the subscription is
    /// live, so events published from now on reach it.
    pub async fn wait_subscribed(&self, field: &str) {
        let registry = self.runtime.registry().clone();
        let field = field.to_string();
        within(WAIT, "the GraphQL subscription to register", async move {
            loop {
                let rows = registry.send(ListSubscriptions).await.expect("registry answers");
                if let Some(row) = rows.iter().find(|r| r.info.transport == Transport::GraphQl && r.info.stream == field) {
                    assert!(row.info.peer.starts_with("127.0.0.1:"), "peer recorded: {}", row.info.peer);
                    return;
                }
                // Polling a condition, bounded by `within`: the registration happens on a server
                // worker, and the registry is the only place that can tell when it is done.
                sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }
}

pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    timeout(limit, fut).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A client WebSocket as awc hands it out, without naming its codec types.
pub trait Framed: Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> {}
impl<T> Framed for T where T: Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> {}

/// A WebSocket client connection.
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
        self.0.send(Message::Text(v.to_string().into())).await.expect("send a frame");
    }

    /// The next frame within [`WAIT`]; pings are answered on the way, as a live client would.
    pub async fn next(&mut self) -> Incoming {
        within(WAIT, "the next frame", async {
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

    /// `connection_init` with `payload`, expecting `connection_ack`.
    pub async fn init(&mut self, payload: Value) {
        self.send(json!({ "type": "connection_init", "payload": payload })).await;
        let ack = self.json().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }

    /// A `graphql-transport-ws` subscribe.
    pub async fn subscribe(&mut self, id: &str, query: &str) {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query } })).await;
    }

    /// The next frame, which must be a `next` of subscription `id` without errors; its `field`.
    pub async fn next_of(&mut self, id: &str, field: &str) -> Value {
        let msg = self.json().await;
        assert_eq!(msg["type"], "next", "{msg}");
        assert_eq!(msg["id"], id, "{msg}");
        assert!(msg["payload"].get("errors").is_none(), "{msg}");
        msg["payload"]["data"][field].clone()
    }

    /// Reads until the `complete` of `id`, taking the `next`s and `complete`s of `also` on the way.
    pub async fn until_complete(&mut self, id: &str, also: &[&str]) {
        loop {
            let msg = self.json().await;
            let msg_id = msg["id"].as_str().unwrap_or_default();
            if msg_id == id && msg["type"] == "complete" {
                return;
            }
            assert!(
                also.contains(&msg_id) && (msg["type"] == "next" || msg["type"] == "complete"),
                "while waiting for the end of {id}: {msg}"
            );
        }
    }
}

/// The `extensions.code` of a GraphQL response's first error.
pub fn error_code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"].as_str().unwrap_or_else(|| panic!("no error code in {response}"))
}
