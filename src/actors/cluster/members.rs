//! Changes of members, through Raft: the node routes propose them (a join as a learner, which the
//! leader promotes to voter once it has caught up; a removal, refused when the voters left would
//! have no live quorum; metadata), and every process's membership takes the members its nodes
//! applied ([`MembersApplied`]), once per log index: it keeps its durable copy, starts or stops
//! the node actors it hosts, and publishes `node_joined` (as a learner, then as a voter) and
//! `node_left`.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::prelude::*;

use super::membership::{MembershipActor, CLUSTER_NODES, MEMBERS_INDEX};
use crate::messages::cluster::*;
use crate::messages::events::now_ms;
use crate::model::{raft_node_id, validate_id, NodeRole};

/// How long a join waits for its node to catch up and become a voter before it answers with
/// the node still a learner (it is promoted when it has caught up, answer or not).
const JOIN_WAIT: Duration = Duration::from_secs(5);

/// How many election timeouts a change of members waits for a leader to be elected before it
/// answers that there is none (raft-rs randomizes a timeout up to twice the configured one).
const LEADER_WAIT_TIMEOUTS: u32 = 3;

/// The most a member's record may take: metadata is for labels, not data.
const MAX_RECORD_BYTES: usize = 64 * 1024;

fn check_record_size(record: &NodeRecord) -> Result<(), ClusterError> {
    let bytes = serde_json::to_vec(record).map_err(|e| ClusterError::Storage { message: e.to_string() })?;
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(ClusterError::InvalidField {
            field: "metadata".into(),
            reason: format!("a node's metadata may hold at most {} KiB", MAX_RECORD_BYTES / 1024),
        });
    }
    Ok(())
}

/// What one applied change of members does to this process's copy.
#[derive(Debug, Default, PartialEq)]
pub(super) struct MembersPlan {
    pub joined: Vec<NodeRecord>,
    pub promoted: Vec<NodeRecord>,
    pub updated: Vec<NodeRecord>,
    pub left: Vec<String>,
}

/// Compares this process's members with those applied: the records of the bootstrap members
/// (which the log knows only by name) keep the address and join time kept here.
pub(super) fn plan(current: &BTreeMap<String, NodeRecord>, applied: &[NodeRecord]) -> MembersPlan {
    let mut plan = MembersPlan::default();
    for record in applied {
        match current.get(&record.node_id) {
            None => plan.joined.push(record.clone()),
            Some(here) => {
                let mut merged = record.clone();
                if merged.joined_at_ms == 0 {
                    merged.joined_at_ms = here.joined_at_ms;
                }
                if merged.address.is_empty() {
                    merged.address = here.address.clone();
                }
                if here.role == NodeRole::Learner && merged.role == NodeRole::Voter {
                    plan.promoted.push(merged);
                } else if &merged != here {
                    plan.updated.push(merged);
                }
            }
        }
    }
    plan.left = current.keys().filter(|id| !applied.iter().any(|r| &r.node_id == *id)).cloned().collect();
    plan
}

impl Handler<MembersApplied> for MembershipActor {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, msg: MembersApplied, _ctx: &mut Self::Context) -> Self::Result {
        if msg.index <= self.members_index {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        let current = self.members.iter().map(|(id, m)| (id.clone(), m.record.clone())).collect();
        let plan = plan(&current, &msg.members);
        let (index, reason) = (msg.index, msg.reason);
        let mut puts = Vec::new();
        for record in plan.joined.iter().chain(&plan.promoted).chain(&plan.updated) {
            match serde_json::to_vec(record) {
                Ok(bytes) => puts.push((record.node_id.clone(), bytes)),
                Err(error) => tracing::error!(node_id = %record.node_id, %error, "member record not encodable"),
            }
        }
        let deletes = plan.left.clone();
        let store = self.store.clone();
        // Durable first (this process's copy and how far it got), then applied, with other
        // messages held back so that changes apply in log order.
        let write = crate::exec::blocking(move || {
            for (id, bytes) in &puts {
                store.put_record(CLUSTER_NODES, id, bytes)?;
            }
            for id in &deletes {
                store.delete_record(CLUSTER_NODES, id)?;
            }
            store.put_meta(MEMBERS_INDEX, index)
        });
        AtomicResponse::new(Box::pin(write.into_actor(self).then(move |res, act, ctx| {
            if let Err(error) = res {
                // Not applied here; the next change (or a restart's replay) brings it again.
                tracing::error!(%error, index, "change of members not stored");
                return Box::pin(actix::fut::ready(())) as std::pin::Pin<Box<dyn ActorFuture<Self, Output = ()>>>;
            }
            act.members_index = index;
            act.apply_plan(plan, &reason, ctx)
        })))
    }
}

impl MembershipActor {
    fn apply_plan(&mut self, plan: MembersPlan, reason: &str, ctx: &mut Context<Self>) -> std::pin::Pin<Box<dyn ActorFuture<Self, Output = ()>>> {
        for id in &plan.left {
            if let Some(mut m) = self.members.remove(id) {
                if let Some(addr) = m.addr.take() {
                    addr.do_send(StopNode);
                }
                self.membership_event(false, &m.record, reason);
            }
            // A node `cluster.host` names goes back to waiting, empty, to be added again.
            if self.raft.waits_to_join(id) && !self.awaiting.contains_key(id) {
                let incarnation = self.take_incarnation();
                let addr = self.start_node(id, incarnation, true, ctx);
                self.awaiting.insert(id.clone(), (addr, incarnation));
            }
        }
        for record in plan.updated {
            if let Some(m) = self.members.get_mut(&record.node_id) {
                m.record = record;
            }
        }
        for record in plan.promoted {
            let id = record.node_id.clone();
            if let Some(m) = self.members.get_mut(&id) {
                m.record = record;
                let record = m.record.clone();
                self.membership_event(true, &record, reason);
            }
            let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.joins).into_iter().partition(|(j, _)| *j == id);
            self.joins = waiting;
            for (_, tx) in done {
                let _ = tx.send(());
            }
        }
        // A joined node is measured (one heartbeat answered) before its join is told.
        let mut settle: std::pin::Pin<Box<dyn ActorFuture<Self, Output = ()>>> = Box::pin(actix::fut::ready(()));
        for record in plan.joined {
            let id = record.node_id.clone();
            let member = self.new_member(record, true, ctx);
            self.members.insert(id.clone(), member);
            let probe = self.first_answer(id.clone());
            let reason = reason.to_string();
            settle = Box::pin(settle.then(move |(), _, _| {
                probe.map(move |answered, act: &mut Self, _| {
                    act.settle_new_member(&id, answered);
                    if let Some(m) = act.members.get(&id) {
                        act.membership_event(true, &m.record, &reason);
                    }
                })
            }));
        }
        Box::pin(settle.map(|(), act, _| act.check_quorum()))
    }

    /// Proposes `change` through a node of this process (to the leader, wherever it is), then
    /// waits until this process applied it. A change asked for while the group elects its
    /// leader (right after start, or after the leader crashed) waits for the election, up to
    /// [`LEADER_WAIT_TIMEOUTS`].
    fn propose(&mut self, change: MemberChange, ctx: &mut Context<Self>) -> ResponseActFuture<Self, Result<MembersApplied, ClusterError>> {
        let me = ctx.address();
        let leader_wait = self.settings.unreachable_after * LEADER_WAIT_TIMEOUTS;
        // No leader known, or the one known crashed here: the group is electing one.
        let elected = match self.metadata_node() {
            Ok(_) => None,
            Err(_) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                // Those that gave up go: one per change asked for while there is no leader.
                self.leader_waiters.retain(|w| !w.is_closed());
                self.leader_waiters.push(tx);
                Some(rx)
            }
        };
        let elected = async move {
            if let Some(rx) = elected {
                let _ = tokio::time::timeout(leader_wait, rx).await;
            }
        };
        let retry_every = self.raft.tick;
        Box::pin(elected.into_actor(self).then(move |(), act, _| {
            let node = act.metadata_node();
            async move {
                let node = node?;
                // One change at a time (raft-rs): one asked for while another applies (a join's
                // promotion, say) is proposed again once it has, within the same wait.
                let deadline = tokio::time::Instant::now() + leader_wait;
                let applied = loop {
                    match node.send(ProposeMemberChange { change: change.clone() }).await.map_err(|_| ClusterError::NoLeader)? {
                        Err(ClusterError::ChangeInProgress) if tokio::time::Instant::now() < deadline => tokio::time::sleep(retry_every).await,
                        other => break other?,
                    }
                };
                // Through the mailbox, as the node's own report goes: applied once, in order.
                let _ = me.send(applied.clone()).await;
                Ok(applied)
            }
            .into_actor(act)
        }))
    }

    /// A member's view with its Raft figures.
    fn raft_view(&self, id: &str) -> ResponseActFuture<Self, Result<NodeView, ClusterError>> {
        let view = self.node_view(id);
        let addr = self.members.get(id).and_then(|m| m.addr.clone());
        Box::pin(async move { Ok(super::membership::with_raft(view?, addr).await) }.into_actor(self))
    }

    /// Why removing `id` now would cost the group its quorum, if it would.
    fn removal_refused(&self, id: &str) -> Option<String> {
        let m = self.members.get(id)?;
        if m.record.role != NodeRole::Voter {
            return None;
        }
        let left: Vec<_> = self.members.values().filter(|o| o.record.role == NodeRole::Voter && o.record.node_id != id).collect();
        if left.is_empty() {
            return Some("it is the group's only voter".into());
        }
        let up = left.iter().filter(|o| o.health.is_up()).count();
        let quorum = left.len() / 2 + 1;
        (up < quorum).then(|| format!("{up} of the {} voters left would be up, and a quorum of them is {quorum}", left.len()))
    }
}

impl Handler<AddNode> for MembershipActor {
    type Result = ResponseActFuture<Self, Result<NodeView, ClusterError>>;
    fn handle(&mut self, msg: AddNode, ctx: &mut Self::Context) -> Self::Result {
        let checked = (|| {
            validate_id(&msg.node_id).map_err(|reason| ClusterError::InvalidNodeId { node_id: msg.node_id.clone(), reason })?;
            if self.members.contains_key(&msg.node_id) {
                return Err(ClusterError::NodeExists { node_id: msg.node_id.clone() });
            }
            let raft_id = raft_node_id(&msg.node_id);
            if let Some(other) = self.members.keys().find(|o| raft_node_id(o) == raft_id) {
                return Err(ClusterError::RaftIdTaken { node_id: msg.node_id.clone(), other: other.clone() });
            }
            let address = msg.address.clone().unwrap_or_default();
            if address.chars().count() > 256 {
                return Err(ClusterError::InvalidField { field: "address".into(), reason: "at most 256 characters".into() });
            }
            if !self.raft.hosts(&msg.node_id) {
                crate::config::check_peer_address(&address).map_err(|reason| ClusterError::InvalidField {
                    field: "address".into(),
                    reason: format!("{reason}: a node this process does not host is reached at its process's address"),
                })?;
            }
            let record = NodeRecord { node_id: msg.node_id.clone(), address, metadata: msg.metadata.clone(), joined_at_ms: now_ms(), role: NodeRole::Learner };
            check_record_size(&record)?;
            Ok(record)
        })();
        let record = match checked {
            Ok(r) => r,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let id = record.node_id.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.joins.push((id.clone(), tx));
        // A node of this process runs, empty, before the group adds it, as one of another
        // process would: the leader's first message finds it.
        if self.raft.hosts(&id) && !self.awaiting.contains_key(&id) {
            let incarnation = self.take_incarnation();
            let addr = self.start_node(&id, incarnation, true, ctx);
            self.awaiting.insert(id.clone(), (addr, incarnation));
        }
        Box::pin(self.propose(MemberChange::Join { record }, ctx).then(move |res, act, _| {
            let wait: std::pin::Pin<Box<dyn ActorFuture<Self, Output = Result<NodeView, ClusterError>>>> = match res {
                Err(e) => {
                    act.joins.retain(|(j, _)| *j != id);
                    // Not added (as far as this process knows): a node started for the join stops;
                    // one of `cluster.host` goes on waiting.
                    if !act.raft.waits_to_join(&id) {
                        if let Some((addr, _)) = act.awaiting.remove(&id) {
                            addr.do_send(StopNode);
                        }
                    }
                    Box::pin(actix::fut::ready(Err(e)))
                }
                Ok(_) => Box::pin(
                    async move {
                        let _ = tokio::time::timeout(JOIN_WAIT, rx).await;
                    }
                    .into_actor(act)
                    .then(move |(), act, _| {
                        act.joins.retain(|(j, tx)| *j != id || !tx.is_closed());
                        act.raft_view(&id)
                    }),
                ),
            };
            wait
        }))
    }
}

impl Handler<RemoveNode> for MembershipActor {
    type Result = ResponseActFuture<Self, Result<(), ClusterError>>;
    fn handle(&mut self, msg: RemoveNode, ctx: &mut Self::Context) -> Self::Result {
        let id = msg.node_id;
        if !self.members.contains_key(&id) {
            return Box::pin(actix::fut::ready(Err(ClusterError::NodeNotFound { node_id: id })));
        }
        if let Some(reason) = self.removal_refused(&id) {
            return Box::pin(actix::fut::ready(Err(ClusterError::WouldLoseQuorum { node_id: id, reason })));
        }
        let change = MemberChange::Leave { node_id: id.clone() };
        // A leader removed would go on leading a group it is not in (raft-rs): it hands
        // leadership over first.
        if self.leadership.leader().map(|(l, _)| l) == Some(id.as_str()) {
            return Box::pin(self.move_leadership_from(id).then(move |moved, act, ctx| {
                let next: ResponseActFuture<Self, Result<(), ClusterError>> = match moved {
                    Ok(_) => Box::pin(act.propose(change, ctx).map(|res, _, _| res.map(|_| ()))),
                    Err(e) => Box::pin(actix::fut::ready(Err(e))),
                };
                next
            }));
        }
        Box::pin(self.propose(change, ctx).map(|res, _, _| res.map(|_| ())))
    }
}

impl Handler<UpdateNodeMetadata> for MembershipActor {
    type Result = ResponseActFuture<Self, Result<NodeView, ClusterError>>;
    fn handle(&mut self, msg: UpdateNodeMetadata, ctx: &mut Self::Context) -> Self::Result {
        let Some(m) = self.members.get(&msg.node_id) else {
            return Box::pin(actix::fut::ready(Err(ClusterError::NodeNotFound { node_id: msg.node_id })));
        };
        let mut record = m.record.clone();
        for (k, v) in msg.patch {
            if v.is_null() {
                record.metadata.remove(&k);
            } else {
                record.metadata.insert(k, v);
            }
        }
        if let Err(e) = check_record_size(&record) {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        let id = msg.node_id;
        let change = MemberChange::Metadata { node_id: id.clone(), metadata: record.metadata };
        Box::pin(self.propose(change, ctx).then(move |res, act, _| {
            let view: ResponseActFuture<Self, Result<NodeView, ClusterError>> = match res {
                Ok(_) => act.raft_view(&id),
                Err(e) => Box::pin(actix::fut::ready(Err(e))),
            };
            view
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, role: NodeRole) -> NodeRecord {
        NodeRecord { node_id: id.into(), address: String::new(), metadata: Default::default(), joined_at_ms: 0, role }
    }

    fn here(records: &[NodeRecord]) -> BTreeMap<String, NodeRecord> {
        records.iter().map(|r| (r.node_id.clone(), NodeRecord { joined_at_ms: 7, address: "a:1".into(), ..r.clone() })).collect()
    }

    #[test]
    fn a_plan_tells_joins_promotions_updates_and_departures_and_keeps_what_only_this_process_knows() {
        let current = here(&[record("n1", NodeRole::Voter), record("n2", NodeRole::Voter), record("n4", NodeRole::Learner)]);
        let mut n1 = record("n1", NodeRole::Voter);
        n1.metadata.insert("rack".into(), serde_json::json!("r1"));
        let applied = vec![n1, record("n4", NodeRole::Voter), record("n5", NodeRole::Learner)];
        let p = plan(&current, &applied);
        assert_eq!(p.joined.iter().map(|r| r.node_id.as_str()).collect::<Vec<_>>(), ["n5"]);
        assert_eq!(p.promoted.iter().map(|r| r.node_id.as_str()).collect::<Vec<_>>(), ["n4"]);
        assert_eq!(p.updated.len(), 1);
        assert_eq!((p.updated[0].joined_at_ms, p.updated[0].address.as_str()), (7, "a:1"), "the bootstrap's record keeps its join time and address");
        assert_eq!(p.left, ["n2"]);
        assert_eq!(plan(&current, &current.values().cloned().collect::<Vec<_>>()), MembersPlan::default(), "the same members change nothing");
    }
}
