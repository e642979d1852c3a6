//! The membership actor's side of Raft: it tells what its nodes report of leadership
//! ([`super::leadership::Leadership`]: `leader_elected`, the failover events), and routes to the
//! leader what only the leader answers (leadership transfers), metadata writes and reads to the
//! leader or, when another process hosts it, to a node here that forwards them to it through
//! Raft, and to each node what it holds (its Raft state, its log).

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::membership::{Member, MembershipActor};
use super::node::NodeActor;
use crate::messages::cluster::*;
use crate::messages::events::Severity;
use crate::model::NodeRole;

impl Handler<GetRaftNodes> for MembershipActor {
    type Result = ResponseFuture<Vec<RaftNodeView>>;
    fn handle(&mut self, _: GetRaftNodes, _ctx: &mut Self::Context) -> Self::Result {
        let asks: Vec<_> = self
            .members
            .values()
            .map(|m| {
                let id = m.record.node_id.clone();
                let addr = m.addr.clone();
                let remote = m.hosted_at.is_some();
                let voters = self.members.values().filter(|m| m.record.role == NodeRole::Voter).map(|m| m.record.node_id.clone()).collect::<Vec<_>>();
                async move {
                    let answer = match addr {
                        Some(addr) => addr.send(GetRaftNode).await.ok().flatten(),
                        None => None,
                    };
                    match answer {
                        Some(view) => view,
                        None if remote => RaftNodeView::remote(id, voters),
                        None => RaftNodeView::down(id, voters),
                    }
                }
            })
            .collect();
        Box::pin(futures_util::future::join_all(asks))
    }
}

/// How long a promote or demote waits for the new leader.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(5);

impl Handler<PromoteNode> for MembershipActor {
    type Result = ResponseActFuture<Self, Result<ClusterStatus, ClusterError>>;
    fn handle(&mut self, msg: PromoteNode, _ctx: &mut Self::Context) -> Self::Result {
        self.transfer_to(msg.node_id)
    }
}

impl Handler<DemoteNode> for MembershipActor {
    type Result = ResponseActFuture<Self, Result<ClusterStatus, ClusterError>>;
    fn handle(&mut self, msg: DemoteNode, _ctx: &mut Self::Context) -> Self::Result {
        let node_id = msg.node_id;
        if !self.members.contains_key(&node_id) {
            return Box::pin(actix::fut::ready(Err(ClusterError::NodeNotFound { node_id })));
        }
        if self.leadership.leader().map(|(l, _)| l) != Some(node_id.as_str()) {
            return Box::pin(actix::fut::ready(Err(ClusterError::NotTheLeader { node_id })));
        }
        self.move_leadership_from(node_id)
    }
}

impl MembershipActor {
    /// Hands the leadership of `node_id`, which leads, to the running voter whose log the
    /// leader knows to be the longest.
    pub(super) fn move_leadership_from(&mut self, node_id: String) -> ResponseActFuture<Self, Result<ClusterStatus, ClusterError>> {
        let leader = match self.leader_node() {
            Ok(leader) => leader,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        // The successor: the running voter whose log the leader knows to be the longest.
        let pick = async move { leader.send(GetRaftNode).await.ok().flatten() };
        Box::pin(pick.into_actor(self).then(move |view, act, _| {
            let successor = view.and_then(|v| {
                v.progress
                    .iter()
                    .filter(|p| p.node_id != node_id && act.members.get(&p.node_id).is_some_and(|m| m.is_up_or_remote() && m.record.role == NodeRole::Voter))
                    // Of equals, the first by name: the last would favour a node that just came back.
                    .min_by_key(|p| (std::cmp::Reverse(p.matched_index), p.node_id.clone()))
                    .map(|p| p.node_id.clone())
            });
            match successor {
                Some(s) => act.transfer_to(s),
                None => Box::pin(actix::fut::ready(Err(ClusterError::NoSuccessor { node_id }))),
            }
        }))
    }
}

impl Handler<RaftObserved> for MembershipActor {
    type Result = ();
    fn handle(&mut self, seen: RaftObserved, _ctx: &mut Self::Context) {
        let events = self.leadership.observe(seen, Instant::now());
        if self.metadata_node().is_ok() {
            for tx in self.leader_waiters.drain(..) {
                let _ = tx.send(());
            }
        }
        if let Some((leader, _)) = self.leadership.leader() {
            let leader = leader.to_string();
            for (target, tx) in std::mem::take(&mut self.transfers) {
                if target == leader {
                    let _ = tx.send(());
                } else if !tx.is_closed() {
                    self.transfers.push((target, tx));
                }
            }
        }
        for event in events {
            if let ClusterEvent::FailoverCompleted(c) = &event {
                self.record_failover(c);
            }
            let (severity, source) = match &event {
                ClusterEvent::LeaderElected(e) => (Severity::Info, format!("node:{}", e.leader_id)),
                ClusterEvent::FailoverInitiated(f) => (Severity::Warning, format!("node:{}", f.failed_node)),
                _ => (Severity::Info, "cluster".to_string()),
            };
            self.publish(severity, source, event);
        }
    }
}

impl MembershipActor {
    /// Hands leadership to `target` and answers once it leads (at most `TRANSFER_TIMEOUT`).
    fn transfer_to(&mut self, target: String) -> ResponseActFuture<Self, Result<ClusterStatus, ClusterError>> {
        let checked = (|| {
            let m = self.members.get(&target).ok_or_else(|| ClusterError::NodeNotFound { node_id: target.clone() })?;
            if !m.is_up_or_remote() {
                return Err(ClusterError::NodeDown { node_id: target.clone() });
            }
            if m.record.role != NodeRole::Voter {
                return Err(ClusterError::NotVoter { node_id: target.clone() });
            }
            self.leader_node()
        })();
        let leader = match checked {
            Ok(leader) => leader,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        if self.leadership.leader().map(|(l, _)| l) == Some(target.as_str()) {
            return Box::pin(actix::fut::ready(Ok(self.status())));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.transfers.push((target.clone(), tx));
        self.leadership.transferring();
        // raft-rs gives a transfer up after an election timeout (a lost message, a target busy
        // catching up): it is asked again each time, until the target leads or time is up.
        let again_after = self.settings.unreachable_after;
        let wait = async move {
            let deadline = tokio::time::Instant::now() + TRANSFER_TIMEOUT;
            let mut rx = rx;
            leader.send(TransferLeadership { to: target.clone() }).await.map_err(|_| ClusterError::NoLeader)??;
            loop {
                let step = again_after.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                match tokio::time::timeout(step, &mut rx).await {
                    Ok(answer) => return answer.map_err(|_| ClusterError::NoLeader),
                    Err(_) if tokio::time::Instant::now() >= deadline => {
                        return Err(ClusterError::TransferTimedOut { node_id: target, seconds: TRANSFER_TIMEOUT.as_secs() });
                    }
                    // Asked again; a leader that moved on meanwhile refuses, and the move is told.
                    Err(_) => {
                        let _ = leader.send(TransferLeadership { to: target.clone() }).await;
                    }
                }
            }
        };
        Box::pin(wait.into_actor(self).map(|res, act, _| res.map(|()| act.status())))
    }

    /// Writes a completed failover to the replicated history, through its new leader if that
    /// runs here (so that each failover is recorded once, by the process of the new leader).
    fn record_failover(&self, c: &FailoverChange) {
        let Some(leader) = c.replacement_node.as_ref().and_then(|r| self.members.get(r)).and_then(|m| m.addr.clone()) else { return };
        let record = crate::model::FailoverRecord { failover: c.clone(), completed_at_ms: crate::messages::events::now_ms() };
        let id = c.failover_id.clone();
        actix::spawn(async move {
            if let Ok(Err(error)) | Err(error) = leader.send(RecordFailover { record }).await.map_err(|_| ClusterError::NoLeader) {
                tracing::warn!(failover_id = %id, %error, "failover not recorded in the history");
            }
        });
    }

    /// The actor of the node this process knows to lead, if it runs here.
    fn leader_node(&self) -> Result<Addr<NodeActor>, ClusterError> {
        let (leader, _) = self.leadership.leader().ok_or(ClusterError::NoLeader)?;
        match self.members.get(leader) {
            Some(Member { hosted_at: Some(address), .. }) => {
                Err(ClusterError::HostedElsewhere { node_id: leader.to_string(), address: address.clone() })
            }
            Some(m) => m.addr.clone().ok_or(ClusterError::NoLeader),
            None => Err(ClusterError::NoLeader),
        }
    }

    /// Where a metadata write or read goes: the leader if it runs here; a node of this process
    /// if another process hosts the leader (the node forwards it through Raft), or if no leader
    /// is known yet (the node answers that, or forwards once it knows). A leader of this process
    /// that crashed is no leader: nothing is forwarded to it while the others elect one.
    pub(super) fn metadata_node(&self) -> Result<Addr<NodeActor>, ClusterError> {
        match self.leader_node() {
            Err(ClusterError::HostedElsewhere { .. }) => {
                self.members.values().find_map(|m| m.addr.clone()).ok_or(ClusterError::NoLeader)
            }
            other => other,
        }
    }
}

/// Hands `msg` to the leader's node actor and passes its answer on.
fn to_leader<M, R>(leader: Result<Addr<NodeActor>, ClusterError>, msg: M) -> ResponseFuture<Result<R, ClusterError>>
where
    M: Message<Result = Result<R, ClusterError>> + Send + 'static,
    R: Send + 'static,
    NodeActor: Handler<M>,
{
    Box::pin(async move { leader?.send(msg).await.map_err(|_| ClusterError::NoLeader)? })
}

impl Handler<RecordFailover> for MembershipActor {
    type Result = ResponseFuture<Result<(), ClusterError>>;
    fn handle(&mut self, msg: RecordFailover, _ctx: &mut Self::Context) -> Self::Result {
        to_leader(self.metadata_node(), msg)
    }
}

impl Handler<PutKv> for MembershipActor {
    type Result = ResponseFuture<Result<KvWritten, ClusterError>>;
    fn handle(&mut self, msg: PutKv, _ctx: &mut Self::Context) -> Self::Result {
        to_leader(self.metadata_node(), msg)
    }
}

impl Handler<GetKv> for MembershipActor {
    type Result = ResponseFuture<Result<KvEntry, ClusterError>>;
    fn handle(&mut self, msg: GetKv, _ctx: &mut Self::Context) -> Self::Result {
        to_leader(self.metadata_node(), msg)
    }
}

impl Handler<GetFailoverHistory> for MembershipActor {
    type Result = ResponseFuture<Result<Vec<crate::model::FailoverRecord>, ClusterError>>;
    fn handle(&mut self, msg: GetFailoverHistory, _ctx: &mut Self::Context) -> Self::Result {
        to_leader(self.metadata_node(), msg)
    }
}

impl Handler<ReadRaftLog> for MembershipActor {
    type Result = ResponseFuture<Result<RaftLogView, ClusterError>>;
    fn handle(&mut self, msg: ReadRaftLog, _ctx: &mut Self::Context) -> Self::Result {
        let addr = match self.members.get(&msg.node_id) {
            None => Err(ClusterError::NodeNotFound { node_id: msg.node_id.clone() }),
            Some(m) => m.addr.clone().ok_or_else(|| ClusterError::NodeDown { node_id: msg.node_id.clone() }),
        };
        Box::pin(async move { addr?.send(msg).await.map_err(|_| ClusterError::Storage { message: "the node stopped".into() })? })
    }
}
