//! The membership actor: who is in the cluster, how each member is doing, and whether there is a
//! quorum. It keeps this process's copy of the member records (id, address, metadata, role),
//! starts one supervised [`NodeActor`] per member hosted here, probes each with heartbeats, and
//! publishes `node_health_change`, `quorum_lost` and `quorum_restored` when those facts change.
//! Members change only through Raft (`members.rs`); its side of leadership is `routing.rs`.
//!
//! `cluster.nodes` bootstraps the membership of a fresh data directory; after that the durable
//! copy, kept as the nodes apply changes, wins (like etcd's `initial-cluster`), so nodes added or
//! removed at run time stay so across restarts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::actors::cluster::leadership::Leadership;
use crate::actors::cluster::phi::PhiDetector;
use crate::actors::cluster::node::{NodeActor, NodeReports, RaftSetup};
use crate::actors::registry::EventPublisher;
use crate::messages::cluster::*;
use crate::messages::events::*;
use crate::model::{raft_node_id, ClusterHealthStatus, NodeHealth, NodeRole, ProcessLoad};
use crate::messages::runtime::StopRuntimeActor;
use crate::metrics::CounterFamily;
use crate::storage::{RecordTable, Store};

/// The durable members: node id -> JSON of the node's record (this domain's record table).
pub const CLUSTER_NODES: RecordTable = RecordTable::named("cluster_nodes");

/// Timing of the failure detector, from `[cluster]`.
#[derive(Debug, Clone)]
pub struct MembershipSettings {
    /// How often every node is probed.
    pub heartbeat_interval: Duration,
    /// Silence after which a node whose answers came on time is `unreachable` (an election
    /// timeout, so Raft will agree); answers that wander make the detector more patient.
    pub unreachable_after: Duration,
}

impl MembershipSettings {
    pub fn from_config(c: &crate::config::ClusterConfig) -> Self {
        let tick = Duration::from_millis(c.tick_ms);
        let heartbeat_interval = tick * c.heartbeat_tick.max(1) as u32;
        MembershipSettings {
            heartbeat_interval,
            unreachable_after: tick * c.election_tick.max(1) as u32,
        }
    }
}

/// phi at which a member is `unreachable`: one chance in 10^8 that its answer is only late
/// (Akka's and Cassandra's default). With answers on time it is reached after
/// `unreachable_after` of silence, an election timeout.
const PHI_UNREACHABLE: f64 = 8.0;
/// phi at which a member is `degraded` (one chance in 1,000 that it is fine): with answers on
/// time, after about three heartbeat intervals of silence.
const PHI_DEGRADED: f64 = 3.0;

/// This process's copy of the last change of members it applied (the log index).
pub(super) const MEMBERS_INDEX: &str = "membership_index";

pub(super) struct Member {
    pub(super) record: NodeRecord,
    /// `None` while crashed: the membership actor is the only holder of a node's address, and
    /// letting go of it is what keeps the supervisor from bringing a crashed node back.
    pub(super) addr: Option<Addr<NodeActor>>,
    /// The address of the process hosting the node, if another process does: its health is
    /// that process's answers to this one's pings, and no actor of it runs here.
    pub(super) hosted_at: Option<String>,
    pub(super) health: NodeHealth,
    pub(super) reason: String,
    /// How unlikely the member's silence is, from the intervals between its answers.
    pub(super) phi: PhiDetector,
    /// When the current actor started: silence is counted from here until the first answer.
    pub(super) started_at: Instant,
    pub(super) last_answer: Option<Instant>,
    pub(super) last_rtt: Option<Duration>,
    /// The hosting process's load, in the multi-process form.
    pub(super) load: Option<ProcessLoad>,
    pub(super) heartbeat_in_flight: bool,
    /// Supervised restarts in this process's life: those of earlier actors of this node (an
    /// operator restart starts a new actor) plus those the current actor reports.
    pub(super) restarts: u64,
    pub(super) restarts_of_earlier_actors: u64,
    /// Which actor of this node is current; answers from an earlier one are ignored.
    pub(super) incarnation: u64,
    pub(super) crashed_at_ms: Option<i64>,
}

pub struct MembershipActor {
    pub(super) settings: MembershipSettings,
    pub(super) store: Arc<Store>,
    pub(super) events: EventPublisher,
    /// `/metrics`' count of actor restarts, which node actors move.
    pub(super) restart_counts: CounterFamily,
    pub(super) members: BTreeMap<String, Member>,
    pub(super) had_quorum: bool,
    /// The next node actor's incarnation: process-wide, so answers from an actor of a removed
    /// node are never taken for those of a new node with the same id.
    pub(super) next_incarnation: u64,
    /// When the last probe round ran: a longer gap than two intervals means this actor itself
    /// was held up (e.g. a slow fsync), and silence in that gap is not the nodes' fault.
    pub(super) last_probe_at: Option<Instant>,
    /// Records to start with, loaded at startup.
    pub(super) initial: Vec<(NodeRecord, Option<String>)>,
    /// What each node's Raft is started with.
    pub(super) raft: RaftSetup,
    pub(super) leadership: Leadership,
    /// Leadership transfers waiting for their target to take office.
    pub(super) transfers: Vec<(String, tokio::sync::oneshot::Sender<()>)>,
    /// The log index of the last change of members applied here; earlier ones (a node applying
    /// its log again after a restart, a second node of this process) change nothing.
    pub(super) members_index: u64,
    /// Joins waiting for their node to become a voter.
    pub(super) joins: Vec<(String, tokio::sync::oneshot::Sender<()>)>,
    /// Changes of members waiting for a leader to be known.
    pub(super) leader_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Node actors of this process (`cluster.host`) that are no members yet: they wait, empty,
    /// for the group to add them, and become members when this process applies their join.
    pub(super) awaiting: BTreeMap<String, (Addr<NodeActor>, u64)>,
}

impl Member {
    /// Whether the node runs (here, or in the process hosting it, as far as this one knows):
    /// false only for a node of this process that is crashed.
    pub(super) fn is_up_or_remote(&self) -> bool {
        self.addr.is_some() || self.hosted_at.is_some()
    }
}

impl MembershipActor {
    /// Loads the durable membership, or bootstraps it from `bootstrap_nodes` on a fresh store.
    /// Blocks on the store: call it at startup, before actors run.
    pub fn load(
        settings: MembershipSettings,
        bootstrap_nodes: &[String],
        store: Arc<Store>,
        events: EventPublisher,
        raft: RaftSetup,
    ) -> Result<Self, ClusterError> {
        let storage = |e: crate::storage::StorageError| ClusterError::Storage { message: e.to_string() };
        let rows = store.list_records(CLUSTER_NODES).map_err(storage)?;
        let bootstrapped = store.get_meta("membership_bootstrapped").map_err(storage)?.is_some();
        let mut initial = Vec::new();
        if bootstrapped {
            for (id, bytes) in rows {
                match serde_json::from_slice::<NodeRecord>(&bytes) {
                    Ok(record) => initial.push((record, None)),
                    Err(e) => {
                        return Err(ClusterError::Storage {
                            message: format!("member record '{id}' is unreadable: {e}"),
                        })
                    }
                }
            }
        } else {
            for id in bootstrap_nodes {
                let record = NodeRecord {
                    node_id: id.clone(),
                    address: String::new(),
                    metadata: NodeMetadata::new(),
                    joined_at_ms: now_ms(),
                    role: NodeRole::Voter,
                };
                let bytes = serde_json::to_vec(&record)
                    .map_err(|e| ClusterError::Storage { message: e.to_string() })?;
                store.put_record(CLUSTER_NODES, id, &bytes).map_err(storage)?;
                initial.push((record, Some("bootstrap".to_string())));
            }
            store.put_meta("membership_bootstrapped", 1).map_err(storage)?;
        }
        let members_index = store.get_meta(MEMBERS_INDEX).map_err(storage)?.unwrap_or(0);
        Ok(MembershipActor {
            settings,
            store,
            restart_counts: crate::actors::actor_restarts(events.metrics()),
            events,
            members: BTreeMap::new(),
            had_quorum: true,
            next_incarnation: 0,
            last_probe_at: None,
            initial,
            raft,
            leadership: Leadership::default(),
            transfers: Vec::new(),
            members_index,
            joins: Vec::new(),
            leader_waiters: Vec::new(),
            awaiting: BTreeMap::new(),
        })
    }

    pub(super) fn publish(&self, severity: Severity, source: String, payload: ClusterEvent) {
        self.events.publish(Event::now(severity, source, payload));
    }

    /// Starts a node actor of this process; `fresh` for a node that just joined the group.
    pub(super) fn start_node(&self, node_id: &str, incarnation: u64, fresh: bool, ctx: &mut Context<Self>) -> Addr<NodeActor> {
        NodeActor::new(
            node_id.to_string(),
            incarnation,
            self.events.clone(),
            NodeReports { restarted: ctx.address().recipient(), raft: ctx.address().recipient(), members: ctx.address().recipient() },
            fresh,
            self.restart_counts.clone(),
            self.raft.clone(),
        )
        .start_supervised()
    }

    /// Where a member runs: the address of the process hosting it (`cluster.peers`, or the one
    /// its record names, for a node that joined at run time: the route to that process is
    /// registered here), or `None` if this process hosts it.
    fn hosting(&self, record: &NodeRecord) -> Option<String> {
        if let Some(at) = self.raft.elsewhere.get(&record.node_id) {
            return Some(at.clone());
        }
        if self.raft.hosts(&record.node_id) {
            return None;
        }
        if let (false, Some(links)) = (record.address.is_empty(), &self.raft.links) {
            self.raft.peers.hosted_elsewhere(raft_node_id(&record.node_id), &record.node_id, links.line(&record.address));
        }
        Some(record.address.clone())
    }

    /// A member with a freshly started node actor (`fresh`: it just joined). Its health is
    /// provisional until [`MembershipActor::first_answer`] has measured it (callers hold other
    /// messages back until then, so nobody sees the provisional value).
    pub(super) fn new_member(&mut self, record: NodeRecord, fresh: bool, ctx: &mut Context<Self>) -> Member {
        let hosted_at = self.hosting(&record);
        let (addr, incarnation) = match (hosted_at.is_some(), self.awaiting.remove(&record.node_id)) {
            (true, _) => (None, self.take_incarnation()),
            // Already running, and fed the group's snapshot by now: nothing to clear.
            (false, Some((addr, incarnation))) => (Some(addr), incarnation),
            (false, None) => {
                let incarnation = self.take_incarnation();
                (Some(self.start_node(&record.node_id, incarnation, fresh, ctx)), incarnation)
            }
        };
        let started_at = Instant::now();
        let mut phi = PhiDetector::new(self.settings.heartbeat_interval, self.settings.unreachable_after);
        phi.restart(started_at);
        Member {
            record,
            addr,
            hosted_at,
            health: NodeHealth::Unreachable,
            reason: "starting: no heartbeat answer yet".into(),
            phi,
            started_at,
            last_answer: None,
            last_rtt: None,
            load: None,
            heartbeat_in_flight: false,
            restarts: 0,
            restarts_of_earlier_actors: 0,
            incarnation,
            crashed_at_ms: None,
        }
    }

    pub(super) fn take_incarnation(&mut self) -> u64 {
        self.next_incarnation += 1;
        self.next_incarnation
    }

    /// Sends a member's current actor one heartbeat and records the answer; resolves to whether
    /// it answered within the unreachable timeout.
    pub(super) fn first_answer(&self, id: String) -> std::pin::Pin<Box<dyn ActorFuture<Self, Output = bool>>> {
        let Some((addr, incarnation)) =
            self.members.get(&id).and_then(|m| Some((m.addr.clone()?, m.incarnation)))
        else {
            return Box::pin(actix::fut::ready(false));
        };
        let sent_at = Instant::now();
        Box::pin(
            addr.send(Heartbeat { sent_at })
                .timeout(self.settings.unreachable_after)
                .into_actor(self)
                .map(move |res, act, _| {
                    let Some(m) = act.members.get_mut(&id).filter(|m| m.incarnation == incarnation) else {
                        return false;
                    };
                    match res {
                        Ok(Ok(ack)) => {
                            let now = Instant::now();
                            m.last_answer = Some(now);
                            m.last_rtt = Some(now.duration_since(ack.sent_at));
                            m.phi.heartbeat(now);
                            true
                        }
                        _ => false,
                    }
                }),
        )
    }

    /// Sets a new member's first measured health, without an event: it is where the member
    /// starts, not a change.
    pub(super) fn settle_new_member(&mut self, id: &str, answered: bool) {
        if let Some(m) = self.members.get_mut(id) {
            if let Some(at) = &m.hosted_at {
                m.reason = format!("hosted by the process at {at}: not heard from yet");
            } else if answered {
                m.health = NodeHealth::Healthy;
                m.reason = "answering heartbeats".into();
            } else {
                m.health = NodeHealth::Unreachable;
                m.reason = "no answer to its first heartbeat".into();
            }
        }
    }

    /// Over the voters: (up, all, a quorum, whether the up ones are one).
    pub(super) fn quorum(&self) -> (usize, usize, usize, bool) {
        let voters = || self.members.values().filter(|m| m.record.role == NodeRole::Voter);
        let total = voters().count();
        let up = voters().filter(|m| m.health.is_up()).count();
        let quorum_size = total / 2 + 1;
        (up, total, quorum_size, total > 0 && up >= quorum_size)
    }

    fn cluster_health(&self) -> ClusterHealthStatus {
        let (_, _, _, has_quorum) = self.quorum();
        let all_healthy = self.members.values().all(|m| m.health == NodeHealth::Healthy);
        // No members is no quorum: nothing can be decided.
        if !has_quorum {
            ClusterHealthStatus::Critical
        } else if all_healthy {
            ClusterHealthStatus::Healthy
        } else {
            ClusterHealthStatus::Degraded
        }
    }

    fn view(&self, m: &Member) -> NodeView {
        let now = Instant::now();
        let address = match (&m.hosted_at, m.record.address.is_empty()) {
            (Some(at), true) => at.clone(),
            _ => m.record.address.clone(),
        };
        NodeView {
            node_id: m.record.node_id.clone(),
            address,
            role: m.record.role,
            status: m.health,
            status_reason: m.reason.clone(),
            metadata: m.record.metadata.clone(),
            joined_at_ms: m.record.joined_at_ms,
            heartbeat_age_ms: match (m.is_up_or_remote(), m.last_answer) {
                (true, Some(t)) => Some(now.duration_since(t).as_millis() as u64),
                _ => None,
            },
            heartbeat_rtt_micros: m.last_rtt.map(|d| d.as_micros() as u64),
            phi: m.is_up_or_remote().then(|| m.phi.phi(now)),
            restarts: m.restarts,
            crashed: !m.is_up_or_remote(),
            term: None,
            commit_index: None,
            applied_index: None,
        }
    }

    pub(super) fn node_view(&self, node_id: &str) -> Result<NodeView, ClusterError> {
        self.members
            .get(node_id)
            .map(|m| self.view(m))
            .ok_or_else(|| ClusterError::NodeNotFound { node_id: node_id.to_string() })
    }

    /// Real measurements of a member, for `node_health_change`.
    fn measurements(m: &Member, now: Instant) -> BTreeMap<String, f64> {
        let mut metrics = BTreeMap::new();
        let silent_since = m.last_answer.unwrap_or(m.started_at);
        if m.is_up_or_remote() {
            metrics.insert("heartbeat_age_ms".into(), now.duration_since(silent_since).as_millis() as f64);
        }
        if let Some(rtt) = m.last_rtt {
            metrics.insert("heartbeat_rtt_micros".into(), rtt.as_micros() as f64);
        }
        metrics.insert("phi".into(), m.phi.phi(now));
        metrics.insert("heartbeat_interval_mean_ms".into(), m.phi.mean_ms());
        metrics.insert("heartbeat_interval_std_ms".into(), m.phi.std_ms());
        metrics.insert("restarts".into(), m.restarts as f64);
        for (name, value) in m.load.iter().flat_map(ProcessLoad::entries) {
            metrics.insert(name.into(), value);
        }
        metrics
    }

    /// Moves `node_id` to `new` health and publishes the change, then re-evaluates quorum.
    pub(super) fn set_health(&mut self, node_id: &str, new: NodeHealth, reason: String) {
        let now = Instant::now();
        let Some(m) = self.members.get_mut(node_id) else { return };
        m.reason = reason.clone();
        if m.health == new {
            return;
        }
        let old = m.health;
        m.health = new;
        let metrics = Self::measurements(m, now);
        let role = m.record.role;
        let (up, total, _, _) = self.quorum();
        let severity = match new {
            NodeHealth::Healthy => Severity::Info,
            NodeHealth::Degraded => Severity::Warning,
            NodeHealth::Unreachable | NodeHealth::Failed => Severity::Error,
        };
        tracing::info!(node_id, old = old.as_str(), new = new.as_str(), %reason, "node health changed");
        self.publish(
            severity,
            format!("node:{node_id}"),
            ClusterEvent::NodeHealthChange(NodeHealthChange {
                node_id: node_id.to_string(),
                old_status: old,
                new_status: new,
                role,
                reason,
                metrics,
                cluster_status: self.cluster_health(),
                healthy_nodes: up,
                total_nodes: total,
            }),
        );
        self.check_quorum();
    }

    pub(super) fn check_quorum(&mut self) {
        let (up, total, quorum_size, has_quorum) = self.quorum();
        if has_quorum == self.had_quorum {
            return;
        }
        self.had_quorum = has_quorum;
        let change = QuorumChange { healthy_nodes: up, total_nodes: total, quorum_size, has_quorum };
        if has_quorum {
            self.publish(Severity::Info, "cluster:membership".into(), ClusterEvent::QuorumRestored(change));
        } else {
            self.publish(Severity::Critical, "cluster:membership".into(), ClusterEvent::QuorumLost(change));
        }
    }

    pub(super) fn membership_event(&self, joined: bool, record: &NodeRecord, reason: &str) {
        let (_, _, _, has_quorum) = self.quorum();
        let change = NodeMembershipChange {
            node_id: record.node_id.clone(),
            node_address: record.address.clone(),
            node_role: record.role,
            reason: reason.to_string(),
            cluster_size: self.members.len(),
            has_quorum,
        };
        let source = format!("node:{}", record.node_id);
        if joined {
            self.publish(Severity::Info, source, ClusterEvent::NodeJoined(change));
        } else {
            self.publish(Severity::Warning, source, ClusterEvent::NodeLeft(change));
        }
    }

    /// Probes every live node that is not already being probed.
    fn probe(&mut self, ctx: &mut Context<Self>) {
        let sent_at = Instant::now();
        let held_up = self
            .last_probe_at
            .is_some_and(|prev| sent_at.duration_since(prev) > self.settings.heartbeat_interval * 2);
        self.last_probe_at = Some(sent_at);
        let timeout = self.settings.unreachable_after;
        let mut targets = Vec::new();
        for (id, m) in self.members.iter_mut() {
            if let (Some(at), Some(links)) = (&m.hosted_at, &self.raft.links) {
                // Another process's node: what this process last heard from that process.
                if let Some(h) = links.health(at) {
                    if let Some(heard) = h.last_heard.filter(|t| Some(*t) != m.last_answer) {
                        m.phi.heartbeat(heard);
                    }
                    m.last_answer = h.last_heard;
                    m.last_rtt = h.rtt;
                    m.load = h.load;
                }
                continue;
            }
            m.load = self.raft.own_load.as_ref().map(|l| l.figures());
            let Some(addr) = m.addr.clone() else { continue };
            if m.heartbeat_in_flight {
                continue;
            }
            m.heartbeat_in_flight = true;
            targets.push((id.clone(), addr, m.incarnation));
        }
        for (id, addr, incarnation) in targets {
            ctx.spawn(addr.send(Heartbeat { sent_at }).timeout(timeout).into_actor(self).map(
                move |res, act, _| {
                    let Some(m) = act.members.get_mut(&id) else { return };
                    if m.incarnation != incarnation {
                        return;
                    }
                    m.heartbeat_in_flight = false;
                    if let Ok(Ok(ack)) = res {
                        let now = Instant::now();
                        m.last_answer = Some(now);
                        m.last_rtt = Some(now.duration_since(ack.sent_at));
                        m.phi.heartbeat(now);
                        m.restarts = m.restarts.max(m.restarts_of_earlier_actors + ack.restarts);
                    }
                },
            ));
        }
        if held_up {
            // Answers that came in while this actor was held up are still queued behind this
            // timer tick: judge the nodes on the next round, once they are read.
            tracing::debug!("membership actor was held up; skipping one health evaluation");
            return;
        }
        self.evaluate();
    }

    /// Classifies every member by its phi: how unlikely its silence is, given the intervals
    /// between its answers so far.
    fn evaluate(&mut self) {
        let now = Instant::now();
        let mut changes = Vec::new();
        for (id, m) in &self.members {
            if !m.is_up_or_remote() {
                continue;
            }
            let silent = now.duration_since(m.last_answer.unwrap_or(m.started_at));
            let phi = m.phi.phi(now);
            let (health, reason) = if phi >= PHI_UNREACHABLE {
                (NodeHealth::Unreachable, format!("no heartbeat answer for {} ms (phi {phi:.1})", silent.as_millis()))
            } else if phi >= PHI_DEGRADED {
                (NodeHealth::Degraded, format!("heartbeat answer late by {} ms (phi {phi:.1})", silent.as_millis()))
            } else {
                (NodeHealth::Healthy, "answering heartbeats".to_string())
            };
            if health != m.health {
                changes.push((id.clone(), health, reason));
            }
        }
        for (id, health, reason) in changes {
            self.set_health(&id, health, reason);
        }
    }
}

impl Actor for MembershipActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        let mut joins = Vec::new();
        for (record, join_reason) in std::mem::take(&mut self.initial) {
            let id = record.node_id.clone();
            let member = self.new_member(record, false, ctx);
            self.members.insert(id.clone(), member);
            joins.push((id, join_reason));
        }
        for id in self.raft.hosted.clone() {
            if self.raft.waits_to_join(&id) && !self.members.contains_key(&id) {
                tracing::info!(node_id = %id, "hosted node is no member yet: it waits for the group to add it");
                let incarnation = self.take_incarnation();
                let addr = self.start_node(&id, incarnation, false, ctx);
                self.awaiting.insert(id, (addr, incarnation));
            }
        }
        // Every member's health is measured (one answered heartbeat) before anything is said
        // about it; ctx.wait holds other messages back meanwhile.
        let probes: Vec<_> = joins.iter().map(|(id, _)| self.first_answer(id.clone())).collect();
        let settle = probes.into_iter().zip(joins).fold(
            Box::pin(actix::fut::ready(())) as std::pin::Pin<Box<dyn ActorFuture<Self, Output = ()>>>,
            |chain, (probe, (id, join_reason))| {
                Box::pin(chain.then(move |(), _, _| {
                    probe.map(move |answered, act: &mut Self, _| {
                        act.settle_new_member(&id, answered);
                        if let Some(reason) = join_reason {
                            if let Some(m) = act.members.get(&id) {
                                act.membership_event(true, &m.record, &reason);
                            }
                        }
                    })
                }))
            },
        );
        ctx.wait(settle.map(|(), act, ctx| {
            act.had_quorum = act.quorum().3;
            tracing::info!(members = act.members.len(), has_quorum = act.had_quorum, "cluster membership started");
            ctx.run_interval(act.settings.heartbeat_interval, |act, ctx| act.probe(ctx));
        }));
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        for m in self.members.values_mut() {
            if let Some(addr) = m.addr.take() {
                addr.do_send(StopNode);
            }
        }
        for (addr, _) in std::mem::take(&mut self.awaiting).into_values() {
            addr.do_send(StopNode);
        }
        Running::Stop
    }
}

pub(super) type Answer<T> = AtomicResponse<MembershipActor, Result<T, ClusterError>>;

impl Handler<ListNodes> for MembershipActor {
    type Result = ResponseFuture<Vec<NodeView>>;
    fn handle(&mut self, _: ListNodes, _ctx: &mut Self::Context) -> Self::Result {
        let views: Vec<_> = self.members.values().map(|m| with_raft(self.view(m), m.addr.clone())).collect();
        Box::pin(futures_util::future::join_all(views))
    }
}

impl Handler<GetNode> for MembershipActor {
    type Result = ResponseFuture<Result<NodeView, ClusterError>>;
    fn handle(&mut self, msg: GetNode, _ctx: &mut Self::Context) -> Self::Result {
        let view = self.node_view(&msg.node_id);
        let addr = self.members.get(&msg.node_id).and_then(|m| m.addr.clone());
        Box::pin(async move { Ok(with_raft(view?, addr).await) })
    }
}

/// A node's view with its Raft term, commit and applied index, asked of its actor if it runs
/// here (a node of another process shows them in that process).
pub(super) async fn with_raft(mut view: NodeView, addr: Option<Addr<NodeActor>>) -> NodeView {
    if let Some(raft) = match addr {
        Some(a) => a.send(GetRaftNode).await.ok().flatten(),
        None => None,
    } {
        view.term = Some(raft.term);
        view.commit_index = Some(raft.commit_index);
        view.applied_index = Some(raft.applied_index);
    }
    view
}

impl Handler<GetClusterStatus> for MembershipActor {
    type Result = MessageResult<GetClusterStatus>;
    fn handle(&mut self, _: GetClusterStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.status())
    }
}

impl Handler<GetClusterHealth> for MembershipActor {
    type Result = MessageResult<GetClusterHealth>;
    fn handle(&mut self, _: GetClusterHealth, _ctx: &mut Self::Context) -> Self::Result {
        let (up, total, quorum_size, has_quorum) = self.quorum();
        MessageResult(ClusterHealthReport {
            status: self.cluster_health(),
            healthy_nodes: up,
            total_nodes: total,
            quorum_size,
            has_quorum,
            nodes: self.members.values().map(|m| self.view(m)).collect(),
        })
    }
}

impl Handler<NodeRestarted> for MembershipActor {
    type Result = ();
    fn handle(&mut self, msg: NodeRestarted, _ctx: &mut Self::Context) {
        if let Some(m) = self.members.get_mut(&msg.node_id) {
            if m.incarnation == msg.incarnation {
                m.restarts = m.restarts.max(m.restarts_of_earlier_actors + msg.restart_count);
            }
        }
    }
}

impl Handler<StopRuntimeActor> for MembershipActor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: StopRuntimeActor, _ctx: &mut Self::Context) -> Self::Result {
        // The nodes stop first, their lanes drained, so the runtime closes the store under nobody.
        let running = self.members.values().filter_map(|m| m.addr.clone()).chain(self.awaiting.values().map(|(a, _)| a.clone()));
        let stops: Vec<_> = running.map(|a| a.send(StopNode)).collect();
        Box::pin(futures_util::future::join_all(stops).into_actor(self).map(|_, _, ctx| ctx.stop()))
    }
}

impl MembershipActor {
    pub(super) fn status(&self) -> ClusterStatus {
        let (up, total, quorum_size, has_quorum) = self.quorum();
        let leader = self.leadership.leader();
        ClusterStatus {
            leader: leader.map(|(l, _)| l.to_string()),
            term: leader.map(|(_, t)| t),
            members: self.members.keys().cloned().collect(),
            healthy_nodes: up,
            total_nodes: total,
            quorum_size,
            has_quorum,
            health: self.cluster_health(),
        }
    }
}
