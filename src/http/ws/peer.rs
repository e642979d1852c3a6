//! `GET /api/v1/cluster/peer`: where another `clusterd` process of the cluster connects (a
//! WebSocket, behind the server's token like every `/api` route) to deliver its Raft messages to
//! the nodes hosted here. Each binary frame is a batch ([`decode_batch`]); each message goes to
//! its node's actor, or nowhere if the node does not run here (Raft resends). A frame that is no
//! batch closes the connection with a protocol error; nothing in one reaches a node half-read.

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{CloseCode, CloseReason, Message, ProtocolError, WebsocketContext};

use super::upgrade::{self, ConnectionLimits};
use crate::actors::cluster::RaftPeers;
use crate::actors::net::peer::{decode_batch, MAX_FRAME_BYTES, PEER_PATH};
use crate::http::error::ApiError;
use crate::messages::cluster::RaftPeerMessage;
use crate::http::metrics::{HttpMetrics, OpenConnection};
use crate::runtime::RuntimeHandle;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(PEER_PATH, web::get().to(open));
}

async fn open(req: HttpRequest, runtime: web::Data<RuntimeHandle>, metrics: web::Data<HttpMetrics>) -> Result<HttpResponse, ApiError> {
    let peers = runtime.raft_peers().clone();
    let from = req.peer_addr().map(|a| a.to_string()).unwrap_or_else(|| "unknown".into());
    let limits = ConnectionLimits { max_message_bytes: MAX_FRAME_BYTES, ..ConnectionLimits::from_config(runtime.config()) };
    tracing::info!(peer = %from, "peer process connected");
    upgrade::start(PeerSession { peers, runtime: runtime.get_ref().clone(), _open: OpenConnection::new(metrics.connections_gauge()), from, delivered: 0, undeliverable: 0 }, &req, limits, &[]).map_err(|e| {
        ApiError::new(actix_web::http::StatusCode::BAD_REQUEST, "not_a_websocket_request", format!("this route speaks WebSocket only: {e}"))
    })
}

struct PeerSession {
    peers: RaftPeers,
    runtime: RuntimeHandle,
    /// Counted among the open connections for as long as it lives.
    _open: OpenConnection,
    from: String,
    delivered: u64,
    /// Messages for nodes that do not run here (crashed, or not hosted by this process).
    undeliverable: u64,
}

impl Actor for PeerSession {
    type Context = WebsocketContext<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        tracing::info!(peer = %self.from, delivered = self.delivered, undeliverable = self.undeliverable, "peer process disconnected");
    }
}

impl PeerSession {
    fn refuse(&self, ctx: &mut WebsocketContext<Self>, reason: String) {
        tracing::warn!(peer = %self.from, %reason, "peer connection refused a frame");
        ctx.close(Some(CloseReason { code: CloseCode::Protocol, description: Some(reason) }));
        ctx.stop();
    }
}

impl StreamHandler<Result<Message, ProtocolError>> for PeerSession {
    fn handle(&mut self, msg: Result<Message, ProtocolError>, ctx: &mut Self::Context) {
        match msg {
            Ok(Message::Binary(bytes)) => match decode_batch(&bytes) {
                Ok(batch) => {
                    for m in batch {
                        // The receiving actor's mailbox is not bounded here: the sender's line
                        // is, and Raft bounds what it has in flight per peer.
                        match self.peers.here(m.to) {
                            Some(node) => {
                                node.do_send(RaftPeerMessage(m));
                                self.delivered += 1;
                            }
                            None => self.undeliverable += 1,
                        }
                    }
                }
                Err(e) => self.refuse(ctx, e.to_string()),
            },
            // The answer carries this process's load after the ping's own bytes.
            Ok(Message::Ping(bytes)) => ctx.pong(&[&bytes[..], &self.runtime.load().figures().to_bytes()].concat()),
            Ok(Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(Message::Pong(_)) | Ok(Message::Nop) => {}
            Ok(Message::Text(_)) | Ok(Message::Continuation(_)) => self.refuse(ctx, "peer frames are binary batches".into()),
            Err(e) => self.refuse(ctx, e.to_string()),
        }
    }
}
