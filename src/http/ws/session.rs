//! One WebSocket event-stream session: an actix-web-actors actor, parameterised by the stream it
//! serves (`events`, `cluster/replication`, `cluster/nodes`, `cluster/rac`, `cluster/sharding`).
//!
//! It subscribes to the registry with its filter, writes `welcome`, `subscribed`, replayed and live
//! `event` frames, `lagged` notices and `error` frames, takes a new filter from any text frame,
//! pings the client and closes it when it falls silent past the timeout.
//!
//! Memory stays bounded for a slow client: the session's mailbox is the registry's per-subscriber
//! queue (`events.session_queue`); when the client stops reading, its connection stops polling
//! the session, its mailbox fills, and the registry drops (and counts) what does not fit, then closes
//! the session with 1008 if it stays behind. A client that neither reads nor answers pings is cut
//! off by the [`watchdog`](super::watchdog), which watches the connection, not the session.
//!
//! A replay is written a page at a time, each page only after the socket took the previous one,
//! so replaying the whole retained window never piles frames up in memory; live events that
//! arrive meanwhile wait (up to `events.session_queue` of them) and follow the replay.

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws;
use serde_json::json;

use std::collections::VecDeque;

use crate::actors::registry::CompiledFilter;
use crate::http::metrics::HttpMetrics;
use crate::http::ws::sessions::SessionSlot;
use crate::messages::sessions::CloseSession;
use crate::messages::events::{Category, EventFilter, SharedEvent};
use crate::messages::registry::{
    CloseCode, Delivery, Subscribe, SubscribeAck, SubscriberInfo, Transport, Unsubscribe, UpdateFilter,
};
use crate::runtime::RuntimeHandle;

/// The event streams a client can connect to, and the categories each carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Events,
    Replication,
    Nodes,
    Rac,
    Sharding,
}

impl StreamKind {
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Events => "events",
            StreamKind::Replication => "cluster/replication",
            StreamKind::Nodes => "cluster/nodes",
            StreamKind::Rac => "cluster/rac",
            StreamKind::Sharding => "cluster/sharding",
        }
    }

    pub fn categories(self) -> Vec<Category> {
        match self {
            StreamKind::Events => Vec::new(),
            StreamKind::Replication => vec![Category::Replication],
            StreamKind::Nodes => vec![Category::Clustering],
            StreamKind::Rac => vec![Category::Rac],
            StreamKind::Sharding => vec![Category::Sharding],
        }
    }
}

/// Timing and size limits of a session, from `[ws]` and `[events]`.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub heartbeat_interval: Duration,
    pub client_timeout: Duration,
    pub max_frame_bytes: usize,
    pub queue: usize,
}

impl SessionLimits {
    pub fn from_config(c: &crate::config::Config) -> Self {
        SessionLimits {
            heartbeat_interval: Duration::from_millis(c.ws.heartbeat_interval_ms),
            client_timeout: Duration::from_millis(c.ws.client_timeout_ms),
            max_frame_bytes: c.ws.max_frame_bytes,
            queue: c.events.session_queue,
        }
    }
}

/// Events written per page of a replay.
const REPLAY_PAGE: usize = 64;

pub struct WsSession {
    runtime: RuntimeHandle,
    metrics: std::sync::Arc<HttpMetrics>,
    stream: StreamKind,
    peer: String,
    limits: SessionLimits,
    /// The filter given at connect time, until the first subscription takes it.
    /// (Boxed: the session keeps its room for life, and a filter is a few hundred bytes.)
    initial_filter: Option<Box<EventFilter>>,
    /// The filter in force, compiled: deliveries queued under a previous filter are checked
    /// against it, so a filter change takes effect at once.
    compiled: CompiledFilter,
    subscription_id: Option<u64>,
    /// Seq of the last event written, so a replay and live delivery never repeat an event.
    last_seq: u64,
    last_heard: Instant,
    welcomed: bool,
    /// Replayed events not written yet.
    replay: VecDeque<SharedEvent>,
    /// Live events that arrived during a replay, bounded by `events.session_queue`.
    held_live: VecDeque<SharedEvent>,
    /// Live events dropped because `held_live` was full, and the first of their seqs.
    held_missed: u64,
    held_first_missed: Option<u64>,
    /// The session's row in the session table, and its place in `ws.max_sessions`.
    slot: SessionSlot,
}

impl WsSession {
    pub fn new(
        runtime: RuntimeHandle,
        metrics: std::sync::Arc<HttpMetrics>,
        stream: StreamKind,
        peer: String,
        filter: EventFilter,
        slot: SessionSlot,
    ) -> Self {
        let limits = SessionLimits::from_config(runtime.config());
        WsSession {
            runtime,
            metrics,
            stream,
            peer,
            limits,
            compiled: CompiledFilter::compile(&filter, &stream.categories()),
            initial_filter: Some(Box::new(filter)),
            subscription_id: None,
            last_seq: 0,
            last_heard: Instant::now(),
            welcomed: false,
            replay: VecDeque::new(),
            held_live: VecDeque::new(),
            held_missed: 0,
            held_first_missed: None,
            slot,
        }
    }

    /// Writes the next page of the replay; schedules the one after on a timer, which fires only
    /// once the connection polls the session again, i.e. after the socket took this page.
    fn write_replay_page(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        for _ in 0..REPLAY_PAGE {
            let Some(e) = self.replay.pop_front() else { break };
            if e.seq > self.last_seq {
                self.last_seq = e.seq;
                ctx.text(e.ws_frame().clone());
            }
        }
        if !self.replay.is_empty() {
            ctx.run_later(Duration::ZERO, |act, ctx| act.write_replay_page(ctx));
            return;
        }
        // Replay done: what arrived meanwhile follows, in order, then word of what did not fit.
        while let Some(e) = self.held_live.pop_front() {
            self.write_live(&e, ctx);
        }
        if self.held_missed > 0 {
            let resume_from_seq = self.held_first_missed.unwrap_or(self.last_seq).saturating_sub(1);
            Self::send_json(
                ctx,
                json!({ "type": "lagged", "missed": self.held_missed, "resume_from_seq": resume_from_seq }),
            );
            self.held_missed = 0;
            self.held_first_missed = None;
        }
    }

    fn replaying(&self) -> bool {
        !self.replay.is_empty()
    }

    fn write_live(&mut self, e: &SharedEvent, ctx: &mut ws::WebsocketContext<Self>) {
        if e.seq > self.last_seq && self.compiled.admits_event(e) {
            self.last_seq = e.seq;
            ctx.text(e.ws_frame().clone());
        }
    }

    fn send_json(ctx: &mut ws::WebsocketContext<Self>, value: serde_json::Value) {
        ctx.text(value.to_string());
    }

    fn error_frame(&self, ctx: &mut ws::WebsocketContext<Self>, code: &str, message: String) {
        self.metrics.ws_bad_frame();
        Self::send_json(ctx, json!({ "type": "error", "code": code, "message": message }));
    }

    /// Writes what a subscription ack promises: `welcome` the first time, `subscribed` with the
    /// filter in force, then the replay.
    fn on_ack(&mut self, ack: SubscribeAck, filter: &EventFilter, ctx: &mut ws::WebsocketContext<Self>) {
        self.subscription_id = Some(ack.subscription_id);
        if !self.welcomed {
            self.welcomed = true;
            Self::send_json(
                ctx,
                json!({
                    "type": "welcome",
                    "session_id": self.slot.session_id().to_string(),
                    "stream": self.stream.name(),
                    "server_version": crate::VERSION,
                    "current_seq": ack.current_seq,
                }),
            );
        }
        Self::send_json(
            ctx,
            json!({
                "type": "subscribed",
                "session_id": self.slot.session_id().to_string(),
                "stream": self.stream.name(),
                "filter": filter,
                "replay_count": ack.replay.len(),
                "replay_truncated": ack.replay_truncated,
                "oldest_retained_seq": ack.oldest_retained_seq,
                "current_seq": ack.current_seq,
            }),
        );
        self.compiled = CompiledFilter::compile(filter, &self.stream.categories());
        // A new filter without since_seq goes on from where the session is: queued deliveries the
        // new filter admits are still written (checked against `compiled`), none is repeated.
        // With since_seq, the session rewinds to what the client asked for.
        if let Some(since) = filter.since_seq {
            self.last_seq = since;
            self.replay = ack.replay.into();
            self.held_live.clear();
            self.write_replay_page(ctx);
        } else if self.replaying() {
            // A replay under the previous filter is moot now; what was held back meanwhile is
            // written if the new filter admits it.
            self.replay.clear();
            self.write_replay_page(ctx);
        }
    }

    fn subscribe(&mut self, filter: EventFilter, ctx: &mut ws::WebsocketContext<Self>) {
        let registry = self.runtime.registry().clone();
        let request = Subscribe {
            filter: filter.clone(),
            stream: self.stream.categories(),
            sink: Box::new(ctx.address().recipient::<Delivery>()),
            info: SubscriberInfo {
                transport: Transport::WebSocket,
                stream: self.stream.name().to_string(),
                peer: self.peer.clone(),
                connected_at_ms: crate::messages::events::now_ms(),
                session_id: Some(self.slot.session_id()),
            },
        };
        // ctx.wait: no delivery is handled before the ack, so the replay is written first.
        ctx.wait(registry.send(request).into_actor(self).map(move |res, act, ctx| match res {
            Ok(ack) => act.on_ack(ack, &filter, ctx),
            Err(e) => {
                tracing::warn!(error = %e, "event registry did not answer; closing session");
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Error,
                    description: Some("event registry unavailable".into()),
                }));
                ctx.stop();
            }
        }));
    }

    fn update_filter(&mut self, filter: EventFilter, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(subscription_id) = self.subscription_id else {
            return self.subscribe(filter, ctx);
        };
        let request = UpdateFilter { subscription_id, filter: filter.clone() };
        ctx.wait(self.runtime.registry().send(request).into_actor(self).map(
            move |res, act, ctx| match res {
                Ok(Ok(ack)) => act.on_ack(ack, &filter, ctx),
                // The registry let go of this session (it stayed behind or was closed); its
                // Close delivery is on the way.
                Ok(Err(e)) => act.error_frame(ctx, "subscription_gone", e.to_string()),
                Err(e) => act.error_frame(ctx, "registry_unavailable", e.to_string()),
            },
        ));
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        match EventFilter::from_json(text) {
            Ok(filter) => self.update_filter(filter, ctx),
            Err(e) => self.error_frame(ctx, "invalid_filter", e.to_string()),
        }
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The session's mailbox is its event queue: the registry's try_send fails past this.
        ctx.set_mailbox_capacity(self.limits.queue);
        self.slot.attach(ctx.address().recipient());
        ctx.run_interval(self.limits.heartbeat_interval, |act, ctx| {
            if act.last_heard.elapsed() > act.limits.client_timeout {
                tracing::info!(peer = %act.peer, "WebSocket client silent past the timeout; closing");
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Away,
                    description: Some("client timed out".into()),
                }));
                ctx.stop();
                return;
            }
            ctx.ping(b"");
        });
        let filter = self.initial_filter.take().map(|f| *f).unwrap_or_default();
        self.subscribe(filter, ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if let Some(subscription_id) = self.subscription_id.take() {
            self.runtime.registry().do_send(Unsubscribe { subscription_id });
        }
    }
}

impl Handler<CloseSession> for WsSession {
    type Result = ();
    fn handle(&mut self, msg: CloseSession, ctx: &mut Self::Context) {
        ctx.close(Some(ws::CloseReason { code: ws::CloseCode::Normal, description: Some(msg.reason) }));
        ctx.stop();
    }
}

impl Handler<Delivery> for WsSession {
    type Result = ();
    fn handle(&mut self, msg: Delivery, ctx: &mut Self::Context) {
        match msg {
            Delivery::Event(e) if self.replaying() => {
                if self.held_live.len() < self.limits.queue {
                    self.held_live.push_back(e);
                } else {
                    self.held_missed += 1;
                    self.held_first_missed.get_or_insert(e.seq);
                }
            }
            Delivery::Event(e) => self.write_live(&e, ctx),
            Delivery::Lagged { missed, resume_from_seq } => Self::send_json(
                ctx,
                json!({ "type": "lagged", "missed": missed, "resume_from_seq": resume_from_seq }),
            ),
            Delivery::Close { code, reason } => {
                // The registry has already forgotten this subscription.
                self.subscription_id = None;
                let code = match code {
                    CloseCode::StayedBehind => ws::CloseCode::Policy,
                    CloseCode::ClosedByOperator => ws::CloseCode::Normal,
                    CloseCode::Shutdown => ws::CloseCode::Away,
                };
                ctx.close(Some(ws::CloseReason { code, description: Some(reason.into()) }));
                ctx.stop();
            }
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match msg {
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_)) => {}
            Ok(ws::Message::Text(text)) => self.on_text(&text, ctx),
            Ok(ws::Message::Binary(_)) => self.error_frame(
                ctx,
                "unsupported_frame",
                "binary frames are not understood; send a filter as a JSON text frame".into(),
            ),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            // The frame reader reassembles fragments and sends no Nop.
            Ok(ws::Message::Continuation(_) | ws::Message::Nop) => {}
            Err(ws::ProtocolError::Overflow) => {
                self.metrics.ws_bad_frame();
                let limit = self.limits.max_frame_bytes;
                self.error_frame(ctx, "frame_too_large", format!("a message over the limit of {limit} bytes was refused"));
            }
            Err(e) => {
                // The framing broke (unmasked, bad opcode, not UTF-8...): the stream cannot be
                // resynchronised, so the session ends.
                tracing::info!(peer = %self.peer, error = %e, "WebSocket protocol error; closing");
                self.metrics.ws_bad_frame();
                ctx.close(Some(ws::CloseReason { code: ws::CloseCode::Protocol, description: Some(e.to_string()) }));
                ctx.stop();
            }
        }
    }
}
