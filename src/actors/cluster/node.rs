//! One cluster node hosted by this process, as a supervised actor. Today it answers heartbeats
//! (so the membership actor measures its responsiveness) and models faults; Raft will give it a
//! `RawNode` to tick and step.
//!
//! Two ways down: an internal fault stops it and `actix::Supervisor` starts it again at once from
//! durable state (published as `actor_restarted`); an injected crash stops it for good: the
//! membership actor, the only holder of its address, lets go of it, so the supervisor has nobody
//! to restart it for, until an operator restarts the node as a new actor.

use actix::prelude::*;

use crate::actors::registry::EventPublisher;
use crate::messages::cluster::*;
use crate::messages::events::{Event, Severity};
use crate::messages::system::{ActorRestart, SystemEvent};
use crate::metrics::CounterFamily;

pub struct NodeActor {
    node_id: String,
    incarnation: u64,
    events: EventPublisher,
    membership: Recipient<NodeRestarted>,
    /// `/metrics`' count of actor restarts.
    restart_counts: CounterFamily,
    /// Supervised restarts after internal faults.
    restarts: u64,
    /// The reason of the fault being recovered from, between `stop` and `restarting`.
    pending_fault: Option<String>,
    /// Set by an injected crash: if the supervisor restarts the actor anyway (somebody still held
    /// an address), it stays down and answers nothing.
    crashed: bool,
}

impl NodeActor {
    pub fn new(
        node_id: String,
        incarnation: u64,
        events: EventPublisher,
        membership: Recipient<NodeRestarted>,
        restart_counts: CounterFamily,
    ) -> Self {
        NodeActor {
            node_id,
            incarnation,
            events,
            membership,
            restart_counts,
            restarts: 0,
            pending_fault: None,
            crashed: false,
        }
    }

    /// Starts the node under a supervisor on the current arbiter.
    pub fn start_supervised(self) -> Addr<NodeActor> {
        actix::Supervisor::start(|_| self)
    }
}

impl Actor for NodeActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!(node_id = %self.node_id, restarts = self.restarts, "node actor started");
    }
}

impl actix::Supervised for NodeActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        if self.crashed {
            return;
        }
        self.restarts += 1;
        let reason = self.pending_fault.take().unwrap_or_else(|| "stopped unexpectedly".into());
        tracing::warn!(node_id = %self.node_id, restarts = self.restarts, %reason, "node actor restarted by its supervisor");
        self.restart_counts.inc(&["node", &self.node_id]);
        // Before the event, so anyone who saw the event and then asks the membership sees it too.
        self.membership.do_send(NodeRestarted {
            node_id: self.node_id.clone(),
            incarnation: self.incarnation,
            restart_count: self.restarts,
        });
        self.events.publish(Event::now(
            Severity::Warning,
            format!("node:{}", self.node_id),
            SystemEvent::ActorRestarted(ActorRestart {
                actor_kind: "node".into(),
                actor_id: self.node_id.clone(),
                reason,
                restart_count: self.restarts,
            }),
        ));
    }
}

impl Handler<Heartbeat> for NodeActor {
    type Result = Result<HeartbeatAck, ClusterError>;
    fn handle(&mut self, msg: Heartbeat, _ctx: &mut Self::Context) -> Self::Result {
        if self.crashed {
            return Err(ClusterError::NodeDown { node_id: self.node_id.clone() });
        }
        Ok(HeartbeatAck { sent_at: msg.sent_at, restarts: self.restarts })
    }
}

impl Handler<Crash> for NodeActor {
    type Result = ();
    fn handle(&mut self, _: Crash, ctx: &mut Self::Context) {
        tracing::warn!(node_id = %self.node_id, "node crashed by fault injection");
        self.crashed = true;
        ctx.stop();
    }
}

impl Handler<InternalFault> for NodeActor {
    type Result = ();
    fn handle(&mut self, msg: InternalFault, ctx: &mut Self::Context) {
        tracing::warn!(node_id = %self.node_id, reason = %msg.reason, "internal fault in node actor");
        self.pending_fault = Some(msg.reason);
        ctx.stop();
    }
}

impl Handler<StopNode> for NodeActor {
    type Result = ();
    fn handle(&mut self, _: StopNode, ctx: &mut Self::Context) {
        // Like a crash for the supervisor: it must not come back.
        self.crashed = true;
        ctx.stop();
    }
}
