//! Fault injection on cluster nodes: a crash (the node's actor stops and stays down), an internal
//! fault (its supervisor restarts it at once), a restart of a crashed node, and what is held
//! down. The typed messages (`CrashNode`, `RestartNode`, `InjectNodeFault`, `ListFaults`) are the
//! domain's own; the generic ones of [`crate::messages::faults`] reach the same code.

use std::pin::Pin;
use std::time::Instant;

use actix::prelude::*;

use super::membership::{Answer, MembershipActor};
use crate::messages::cluster::*;
use crate::messages::errors::DomainError;
use crate::messages::events::now_ms;
use crate::messages::faults::*;
use crate::model::NodeHealth;

/// A node's view once a restart is done (or why it is not).
type NodeFuture = Pin<Box<dyn ActorFuture<MembershipActor, Output = Result<NodeView, ClusterError>>>>;

impl MembershipActor {
    /// A node hosted by another process is crashed and restarted there, not here.
    fn hosted_here(&self, id: &str) -> Result<(), ClusterError> {
        match self.members.get(id).and_then(|m| m.hosted_at.clone()) {
            Some(address) => Err(ClusterError::HostedElsewhere { node_id: id.to_string(), address }),
            None => Ok(()),
        }
    }

    fn crash_node(&mut self, id: String) -> Result<(), ClusterError> {
        self.hosted_here(&id)?;
        let m = self.members.get_mut(&id).ok_or_else(|| ClusterError::NodeNotFound { node_id: id.clone() })?;
        let addr = m.addr.take().ok_or_else(|| ClusterError::AlreadyCrashed { node_id: id.clone() })?;
        addr.do_send(Crash);
        // Dropping the last address here is what keeps the supervisor from restarting it.
        drop(addr);
        m.crashed_at_ms = Some(now_ms());
        m.heartbeat_in_flight = false;
        m.last_answer = None;
        self.set_health(&id, NodeHealth::Failed, "crashed by fault injection".into());
        Ok(())
    }

    fn fault_node(&mut self, id: String, reason: String) -> Result<(), ClusterError> {
        self.hosted_here(&id)?;
        let m = self.members.get(&id).ok_or_else(|| ClusterError::NodeNotFound { node_id: id.clone() })?;
        let addr = m.addr.as_ref().ok_or_else(|| ClusterError::NodeDown { node_id: id.clone() })?;
        addr.do_send(InternalFault { reason });
        Ok(())
    }

    /// Starts a crashed node again; it is healthy once it has answered a heartbeat, not before.
    fn restart_node(&mut self, id: String, ctx: &mut Context<Self>) -> NodeFuture {
        if let Err(e) = self.hosted_here(&id) {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        let crashed = match self.members.get(&id) {
            None => return Box::pin(actix::fut::ready(Err(ClusterError::NodeNotFound { node_id: id }))),
            Some(m) => m.addr.is_none(),
        };
        if !crashed {
            return Box::pin(actix::fut::ready(Err(ClusterError::NotCrashed { node_id: id })));
        }
        let incarnation = self.take_incarnation();
        let addr = self.start_node(&id, incarnation, false, ctx);
        if let Some(m) = self.members.get_mut(&id) {
            m.addr = Some(addr);
            m.started_at = Instant::now();
            m.last_answer = None;
            m.last_rtt = None;
            m.restarts_of_earlier_actors = m.restarts;
            m.phi.restart(m.started_at);
            m.incarnation = incarnation;
            m.heartbeat_in_flight = false;
            m.crashed_at_ms = None;
        }
        Box::pin(self.first_answer(id.clone()).map(move |answered, act, _| {
            if answered {
                act.set_health(&id, NodeHealth::Healthy, "restarted by operator; answering heartbeats".into());
            } else {
                act.set_health(&id, NodeHealth::Unreachable, "restarted by operator; no heartbeat answer".into());
            }
            act.node_view(&id)
        }))
    }

    fn applied(&self, target: String, mode: &str) -> Result<FaultApplied, DomainError> {
        let view = self.node_view(&target)?;
        Ok(FaultApplied { target, mode: mode.into(), status: view.status.as_str().into(), crashed: view.crashed })
    }
}

impl Handler<CrashNode> for MembershipActor {
    type Result = Result<(), ClusterError>;
    fn handle(&mut self, msg: CrashNode, _ctx: &mut Self::Context) -> Self::Result {
        self.crash_node(msg.node_id)
    }
}

impl Handler<RestartNode> for MembershipActor {
    type Result = Answer<NodeView>;
    fn handle(&mut self, msg: RestartNode, ctx: &mut Self::Context) -> Self::Result {
        AtomicResponse::new(self.restart_node(msg.node_id, ctx))
    }
}

impl Handler<InjectNodeFault> for MembershipActor {
    type Result = Result<(), ClusterError>;
    fn handle(&mut self, msg: InjectNodeFault, _ctx: &mut Self::Context) -> Self::Result {
        self.fault_node(msg.node_id, msg.reason)
    }
}

impl Handler<ListFaults> for MembershipActor {
    type Result = MessageResult<ListFaults>;
    fn handle(&mut self, _: ListFaults, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.injected())
    }
}

impl MembershipActor {
    fn injected(&self) -> Vec<InjectedFault> {
        self.members
            .values()
            .filter_map(|m| m.crashed_at_ms.map(|since_ms| InjectedFault { kind: "crash".into(), target: m.record.node_id.clone(), since_ms }))
            .collect()
    }
}

impl Handler<OwnsTarget> for MembershipActor {
    type Result = bool;
    fn handle(&mut self, msg: OwnsTarget, _ctx: &mut Self::Context) -> bool {
        self.members.contains_key(&msg.target)
    }
}

impl Handler<CrashTarget> for MembershipActor {
    type Result = Result<FaultApplied, DomainError>;
    fn handle(&mut self, msg: CrashTarget, _ctx: &mut Self::Context) -> Self::Result {
        match msg.mode {
            CrashMode::Crash => self.crash_node(msg.target.clone())?,
            CrashMode::InternalFault => self.fault_node(msg.target.clone(), "injected internal fault".into())?,
        }
        self.applied(msg.target, msg.mode.as_str())
    }
}

impl Handler<RestartTarget> for MembershipActor {
    type Result = AtomicResponse<Self, Result<FaultApplied, DomainError>>;
    fn handle(&mut self, msg: RestartTarget, ctx: &mut Self::Context) -> Self::Result {
        AtomicResponse::new(Box::pin(self.restart_node(msg.target, ctx).map(|view, _, _| {
            let view = view?;
            Ok(FaultApplied { target: view.node_id, mode: "restart".into(), status: view.status.as_str().into(), crashed: view.crashed })
        })))
    }
}

impl Handler<ListInjectedFaults> for MembershipActor {
    type Result = MessageResult<ListInjectedFaults>;
    fn handle(&mut self, _: ListInjectedFaults, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.injected())
    }
}
