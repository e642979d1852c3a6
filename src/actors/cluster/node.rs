//! One cluster node hosted by this process, as a supervised actor: it answers heartbeats (so the
//! membership actor measures its responsiveness), models faults, and runs the node's Raft
//! ([`RaftCore`]): it ticks it, steps what peers send, and handles each `Ready` (messages that
//! may go at once go; the write is committed on the node's own lane; then the messages that
//! waited for it go and committed entries are applied).
//!
//! Two ways down: an internal fault stops it and `actix::Supervisor` starts it again at once from
//! durable state (published as `actor_restarted`); an injected crash stops it for good: the
//! membership actor, the only holder of its address, lets go of it, so the supervisor has nobody
//! to restart it for, until an operator restarts the node as a new actor. Either way its Raft
//! comes back from what its store holds, as after a power cut.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::actors::cluster::peers::RaftPeers;
use crate::actors::net::{Link, Sent};
use crate::actors::raft::core::{is_empty, Proposal, RaftCore, RaftCoreError, RaftEvent, RaftSettings};
use crate::actors::raft::machine::Applied;
use crate::actors::registry::EventPublisher;
use crate::exec::Lane;
use crate::messages::cluster::*;
use crate::messages::events::{Event, Severity};
use crate::messages::system::{ActorRestart, SystemEvent};
use crate::metrics::CounterFamily;
use crate::model::{raft_node_id, FailoverRecord, MetaCommand};
use crate::storage::Store;

/// What every node's Raft needs, shared by the membership actor with the nodes it starts.
#[derive(Clone)]
pub struct RaftSetup {
    pub store: Arc<Store>,
    pub link: Link,
    pub peers: RaftPeers,
    /// Node id -> address of the process hosting it, for the nodes not hosted here.
    pub elsewhere: std::collections::BTreeMap<String, String>,
    /// The lines to those processes, whose health stands for their nodes'.
    pub links: Option<crate::actors::net::peer::PeerLinks>,
    /// This process's load, told with its nodes' health in the multi-process form.
    pub own_load: Option<Arc<crate::process::LoadSampler>>,
    pub timing: RaftSettings,
    pub tick: Duration,
    /// The group's voters at bootstrap (`cluster.nodes`): the members every node's machine
    /// starts with.
    pub seed: Vec<String>,
    /// The nodes this process hosts (`cluster.host`).
    pub hosted: std::collections::BTreeSet<String>,
}

impl RaftSetup {
    /// Whether node `id` runs in this process: every node in the one-process form, those of
    /// `cluster.host` in the multi-process form.
    pub fn hosts(&self, id: &str) -> bool {
        self.links.is_none() || self.hosted.contains(id)
    }

    /// Whether node `id` is one of `cluster.host` in the multi-process form: while it is no
    /// member, it runs here empty, waiting to be added.
    pub fn waits_to_join(&self, id: &str) -> bool {
        self.links.is_some() && self.hosted.contains(id)
    }
}

/// What a node tells the membership actor that started it.
#[derive(Clone)]
pub struct NodeReports {
    pub restarted: Recipient<NodeRestarted>,
    /// Leadership changes: the membership tells them once, in order, for all nodes.
    pub raft: Recipient<RaftObserved>,
    /// The members, each time this node applies a change of them.
    pub members: Recipient<MembersApplied>,
}

pub struct NodeActor {
    node_id: String,
    raft_id: u64,
    incarnation: u64,
    events: EventPublisher,
    reports: NodeReports,
    /// A node that just joined the group: whatever its store holds of an earlier member of that
    /// name is cleared before it opens.
    fresh: bool,
    /// `/metrics`' count of actor restarts.
    restart_counts: CounterFamily,
    /// Supervised restarts after internal faults.
    restarts: u64,
    /// The reason of the fault being recovered from, between `stop` and `restarting`.
    pending_fault: Option<String>,
    /// Set by an injected crash: if the supervisor restarts the actor anyway (somebody still held
    /// an address), it stays down and answers nothing.
    crashed: bool,
    setup: RaftSetup,
    /// `None` until opened from the store (and if that failed).
    raft: Option<RaftCore>,
    /// Where the node's Raft writes are committed, in order, off the arbiter.
    lane: Lane,
    /// A `Ready`'s write is being committed; the next waits for it.
    writing: bool,
    /// Metadata writes waiting for their entry to be applied, by the tag the Raft core gave
    /// them. One per request in flight; those whose caller gave up (`KV_TIMEOUT`) are swept.
    waiting_writes: HashMap<u64, Waiter>,
    /// The writes this node appended as leader, by index -> tag: if another entry is applied at
    /// that index, theirs was lost to a change of leader.
    placed: BTreeMap<u64, u64>,
    /// Reads waiting for the leader to confirm its read index, by request id.
    waiting_reads: HashMap<u64, Read>,
    /// Reads whose index is known, waiting for the machine to apply up to it.
    readable: Vec<(u64, Read)>,
    next_read: u64,
    /// When each peer last sent this node a message: how long a lost leader was silent.
    last_heard: HashMap<u64, std::time::Instant>,
}

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, ClusterError>>;

/// A proposal waiting for its entry to apply: a key's write, or a change of members.
enum Waiter {
    Kv(String, Reply<KvWritten>),
    Members(Reply<MembersApplied>),
}

impl Waiter {
    fn is_closed(&self) -> bool {
        match self {
            Waiter::Kv(_, reply) => reply.is_closed(),
            Waiter::Members(reply) => reply.is_closed(),
        }
    }

    fn fail(self, error: ClusterError) {
        match self {
            Waiter::Kv(_, reply) => {
                let _ = reply.send(Err(error));
            }
            Waiter::Members(reply) => {
                let _ = reply.send(Err(error));
            }
        }
    }

    /// Answers with what its entry did.
    fn answer(self, applied: &Applied) {
        match (self, applied) {
            (Waiter::Kv(key, reply), Applied::Put { index, term, .. }) => {
                let _ = reply.send(Ok(KvWritten { key, index: *index, term: *term }));
            }
            (Waiter::Members(reply), Applied::Members { index, members, reason }) => {
                let _ = reply.send(Ok(MembersApplied { index: *index, members: members.clone(), reason: reason.clone() }));
            }
            (Waiter::Members(reply), a) => {
                // raft-rs turns a conf change proposed while another is pending into an empty
                // entry; a change of a node that left meanwhile changes nothing either.
                let reason = format!("entry {} changed no member: another change came first; retry", a.index());
                let _ = reply.send(Err(ClusterError::OutcomeUnknown { reason }));
            }
            (w, a) => w.fail(ClusterError::OutcomeUnknown { reason: format!("entry {} did not apply as a write", a.index()) }),
        }
    }
}

/// How long a metadata write or read waits before answering that its outcome is unknown.
const KV_TIMEOUT: Duration = Duration::from_secs(5);

impl NodeActor {
    pub fn new(
        node_id: String,
        incarnation: u64,
        events: EventPublisher,
        reports: NodeReports,
        fresh: bool,
        restart_counts: CounterFamily,
        setup: RaftSetup,
    ) -> Self {
        let raft_id = raft_node_id(&node_id);
        let lane = Lane::start(&format!("raft-{node_id}"));
        NodeActor {
            node_id,
            raft_id,
            incarnation,
            events,
            reports,
            fresh,
            restart_counts,
            restarts: 0,
            pending_fault: None,
            crashed: false,
            setup,
            raft: None,
            lane,
            writing: false,
            waiting_writes: HashMap::new(),
            placed: BTreeMap::new(),
            waiting_reads: HashMap::new(),
            readable: Vec::new(),
            next_read: 0,
            last_heard: HashMap::new(),
        }
    }

    /// Starts the node under a supervisor on the current arbiter.
    pub fn start_supervised(self) -> Addr<NodeActor> {
        actix::Supervisor::start(|_| self)
    }

    /// Opens the node's Raft from its store, on its lane (after any write still in flight from
    /// before a restart), then starts ticking it.
    fn open_raft(&mut self, ctx: &mut Context<Self>) {
        let setup = self.setup.clone();
        let (id, owner) = (self.raft_id, self.node_id.clone());
        let voters = match setup.seed.contains(&owner) {
            true => setup.seed.iter().map(|n| raft_node_id(n)).collect(),
            false => Vec::new(),
        };
        let fresh = std::mem::take(&mut self.fresh);
        let open = self.lane.run(move || {
            if fresh {
                setup.store.commit_raft(&owner, crate::storage::RaftWrite { clear: true, ..Default::default() })?;
            }
            RaftCore::open(id, &owner, voters, setup.seed, setup.store, setup.timing)
        });
        // Spawned, not waited for: the node answers heartbeats meanwhile; Raft messages that come
        // before it opens are lost, as on a host still booting, and their senders retry.
        ctx.spawn(actix::fut::wrap_future::<_, Self>(open).map(|res, act, ctx| match res {
            Ok(core) => {
                act.raft = Some(core);
                act.setup.peers.running(act.raft_id, &act.node_id, ctx.address().downgrade().recipient());
                ctx.run_interval(act.setup.tick, |act, ctx| {
                    act.sweep();
                    act.guarded("tick", ctx, |raft| raft.tick());
                    act.promote_learner(ctx);
                    act.drive(ctx);
                });
            }
            Err(error) => {
                tracing::error!(node_id = %act.node_id, %error, "the node's raft did not open; it takes no part in consensus");
            }
        }));
    }

    /// Runs `f` on the node's Raft. raft-rs panics on what it takes for a broken invariant; a
    /// panic here would take the whole process down (actix does not supervise it), so the node
    /// fails instead and its supervisor reopens it from its store.
    fn guarded<T>(&mut self, what: &str, ctx: &mut Context<Self>, f: impl FnOnce(&mut RaftCore) -> T) -> Option<T> {
        let raft = self.raft.as_mut()?;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(raft))) {
            Ok(v) => Some(v),
            Err(_) => {
                self.raft = None;
                self.fail(format!("raft-rs panicked in {what}"), ctx);
                None
            }
        }
    }

    /// Handles every `Ready` that is due, one write in flight at a time.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        while !self.writing {
            let work = match self.guarded("ready", ctx, |raft| raft.next_ready()) {
                None | Some(Ok(None)) => return,
                Some(Ok(Some(work))) => work,
                Some(Err(error)) => return self.fail(format!("raft ready: {error}"), ctx),
            };
            self.publish(work.events);
            self.send(work.send_now);
            self.answer_writes(&work.mine, &work.applied);
            for (id, index) in work.read_states {
                if let Some(read) = self.waiting_reads.remove(&id) {
                    self.readable.push((index, read));
                }
            }
            self.answer_reads();
            if is_empty(&work.write) {
                self.after_write(ctx);
                continue;
            }
            self.writing = true;
            let (store, owner, write) = (self.setup.store.clone(), self.node_id.clone(), work.write);
            let commit = self.lane.run(move || store.commit_raft(&owner, write).map_err(crate::actors::raft::core::RaftCoreError::from));
            ctx.spawn(actix::fut::wrap_future::<_, Self>(commit).map(|res, act, ctx| {
                act.writing = false;
                match res {
                    Ok(()) => {
                        act.after_write(ctx);
                        act.drive(ctx);
                    }
                    Err(error) => act.fail(format!("raft write: {error}"), ctx),
                }
            }));
        }
    }

    fn after_write(&mut self, ctx: &mut Context<Self>) {
        match self.guarded("advance", ctx, |raft| raft.persisted()) {
            None => {}
            Some(Ok(after)) => {
                self.send(after.send);
                self.placed.extend(after.placed.iter().map(|&(tag, index, _)| (index, tag)));
                for tag in after.unplaced {
                    if let Some(waiter) = self.waiting_writes.remove(&tag) {
                        waiter.fail(ClusterError::NoLeader);
                    }
                }
                self.answer_writes(&after.mine, &after.applied);
                self.answer_reads();
                if let Some(compaction) = self.raft.as_mut().and_then(|r| r.take_compaction()) {
                    self.compact(compaction, ctx);
                }
            }
            Some(Err(error)) => self.fail(format!("raft apply: {error}"), ctx),
        }
    }

    /// Stores a snapshot and drops the log up to it, on the lane after the writes before it. A
    /// failure costs only log length: the next snapshot compacts further.
    fn compact(&mut self, write: crate::storage::RaftWrite, ctx: &mut Context<Self>) {
        let (store, owner) = (self.setup.store.clone(), self.node_id.clone());
        let commit = self.lane.run(move || store.commit_raft(&owner, write).map_err(crate::actors::raft::core::RaftCoreError::from));
        ctx.spawn(actix::fut::wrap_future::<_, Self>(commit).map(|res, act, ctx| match res {
            Ok(()) => {
                act.guarded("snapshot stored", ctx, |raft| raft.snapshot_stored());
                act.drive(ctx);
            }
            Err(error) => tracing::warn!(node_id = %act.node_id, %error, "raft log compaction failed"),
        }));
    }

    /// Answers the writes whose entries were applied (`mine`, by tag), and as lost those this
    /// node appended at an index where another entry was applied; tells the membership of
    /// every change of members.
    fn answer_writes(&mut self, mine: &[(u64, Applied)], applied: &[Applied]) {
        for a in applied {
            if let Applied::Members { index, members, reason } = a {
                for m in members {
                    self.setup.peers.known(raft_node_id(&m.node_id), &m.node_id);
                }
                // `do_send`: one per change of members, a handful in a cluster's life.
                self.reports.members.do_send(MembersApplied { index: *index, members: members.clone(), reason: reason.clone() });
            }
        }
        for (tag, a) in mine {
            if let Some(waiter) = self.waiting_writes.remove(tag) {
                waiter.answer(a);
            }
        }
        for a in applied {
            let index = a.index();
            let Some(tag) = self.placed.remove(&index) else { continue };
            if let Some(waiter) = self.waiting_writes.remove(&tag) {
                waiter.fail(ClusterError::OutcomeUnknown { reason: format!("entry {index} was replaced by another leader's") });
            }
        }
    }

    /// Leading, proposes to make a voter of a learner that caught up. Not waited for: the
    /// promotion is told when it applies, and a lost one is proposed again on a later tick.
    fn promote_learner(&mut self, ctx: &mut Context<Self>) {
        let Some(Some(node_id)) = self.guarded("promote", ctx, |raft| raft.learner_to_promote()) else { return };
        tracing::info!(node_id = %self.node_id, learner = %node_id, "learner caught up; proposing its promotion");
        let change = MemberChange::Promote { node_id };
        if let Some(Err(error)) = self.guarded("promote", ctx, |raft| raft.propose_member_change(&change)) {
            tracing::debug!(node_id = %self.node_id, %error, "promotion not proposed");
        }
    }

    /// Forgets the requests whose callers stopped waiting (`KV_TIMEOUT`): a write forwarded to
    /// a leader that lost it, a read the leader never confirmed.
    fn sweep(&mut self) {
        self.waiting_writes.retain(|_, waiter| !waiter.is_closed());
        self.waiting_reads.retain(|_, read| !read.is_closed());
        self.readable.retain(|(_, read)| !read.is_closed());
        if self.waiting_writes.is_empty() {
            self.placed.clear();
        }
    }

    /// Answers the reads whose index the machine has reached.
    fn answer_reads(&mut self) {
        let Some(raft) = self.raft.as_ref() else { return };
        let applied = raft.machine().applied();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.readable).into_iter().partition(|(i, _)| *i <= applied);
        self.readable = later;
        for (_, read) in due {
            read.answer(raft.machine());
        }
    }

    /// Asks the leader for a read index; `read` is answered once the machine reaches it.
    fn read<T: Send + 'static>(&mut self, read: impl FnOnce(Reply<T>) -> Read, ctx: &mut Context<Self>) -> ResponseFuture<Result<T, ClusterError>> {
        self.next_read += 1;
        let id = self.next_read;
        match self.guarded("read index", ctx, |raft| raft.read_index(id)) {
            Some(Ok(true)) => {}
            Some(Ok(false)) => return Box::pin(std::future::ready(Err(ClusterError::NoLeader))),
            Some(Err(e)) => return Box::pin(std::future::ready(Err(ClusterError::Storage { message: e.to_string() }))),
            None => return Box::pin(std::future::ready(Err(ClusterError::NodeDown { node_id: self.node_id.clone() }))),
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiting_reads.insert(id, read(tx));
        self.drive(ctx);
        awaited(rx)
    }

    fn not_leader(&self) -> ClusterError {
        let leader = self.raft.as_ref().map(|r| r.status().leader).filter(|l| *l != 0);
        ClusterError::NotLeader { node_id: self.node_id.clone(), leader: leader.and_then(|l| self.setup.peers.name(l)) }
    }

    fn send(&mut self, msgs: Vec<raft::eraftpb::Message>) {
        for msg in msgs {
            let to = msg.to;
            let snapshot = msg.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot;
            let sent = match self.setup.peers.route(to) {
                Some((name, recipient)) => self.setup.link.deliver(&self.node_id, &name, &recipient, RaftPeerMessage(msg)),
                None => Sent::Dropped,
            };
            let Some(raft) = self.raft.as_mut() else { continue };
            if sent == Sent::Dropped {
                raft.report_unreachable(to);
            }
            if snapshot {
                raft.report_snapshot(to, sent != Sent::Dropped);
            }
        }
    }

    /// Tells the membership what changed in leadership. `do_send`: at most a few per election.
    fn publish(&self, events: Vec<RaftEvent>) {
        let name = |id: u64| self.setup.peers.name(id).unwrap_or_else(|| id.to_string());
        for event in events {
            let seen = match event {
                RaftEvent::BecameLeader { term, previous_leader, votes, voters } => {
                    tracing::info!(node_id = %self.node_id, term, votes, voters, "elected leader");
                    RaftObserved::Elected(LeaderElection {
                        leader_id: self.node_id.clone(),
                        previous_leader: (previous_leader != 0).then(|| name(previous_leader)),
                        term,
                        votes_received: Some(votes),
                        total_voters: voters,
                    })
                }
                RaftEvent::ElectionStarted { last_leader } => {
                    RaftObserved::ElectionStarted { node_id: self.node_id.clone(), last_leader: name(last_leader) }
                }
                RaftEvent::Following { leader, term, voters, previous } => RaftObserved::Following {
                    node_id: self.node_id.clone(),
                    leader_id: name(leader),
                    term,
                    voters,
                    previous_heard: self.last_heard.get(&previous).copied(),
                }
            };
            self.reports.raft.do_send(seen);
        }
    }

    /// The node's durable state could not be written or read back: it stops, and its
    /// supervisor starts it again from what the store holds.
    fn fail(&mut self, reason: String, ctx: &mut Context<Self>) {
        tracing::error!(node_id = %self.node_id, %reason, "node failed");
        self.pending_fault = Some(reason);
        ctx.stop();
    }

    fn view(&self) -> Option<RaftNodeView> {
        let s = self.raft.as_ref()?.status();
        let name = |id: u64| self.setup.peers.name(id).unwrap_or_else(|| id.to_string());
        let role = match s.role {
            raft::StateRole::Leader => "leader",
            raft::StateRole::Candidate => "candidate",
            raft::StateRole::PreCandidate => "pre_candidate",
            raft::StateRole::Follower => "follower",
        };
        Some(RaftNodeView {
            node_id: self.node_id.clone(),
            raft_id: self.raft_id,
            role: role.to_string(),
            leader_id: (s.leader != 0).then(|| name(s.leader)),
            term: s.term,
            vote: (s.vote != 0).then(|| name(s.vote)),
            commit_index: s.commit,
            applied_index: s.applied,
            last_index: s.last_index,
            voters: s.voters.iter().map(|id| name(*id)).collect(),
            progress: s.matched.iter().map(|(id, m)| RaftPeerProgress { node_id: name(*id), matched_index: *m }).collect(),
        })
    }
}

impl Actor for NodeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::debug!(node_id = %self.node_id, restarts = self.restarts, "node actor started");
        if !self.crashed {
            self.open_raft(ctx);
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // What was not durable is gone, as on a host that lost power; it reopens from the store.
        self.raft = None;
        self.writing = false;
        // Their senders dropped, the waiting requests answer that the outcome is unknown.
        self.waiting_writes.clear();
        self.placed.clear();
        self.waiting_reads.clear();
        self.readable.clear();
        self.setup.peers.stopped(self.raft_id);
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
        self.reports.restarted.do_send(NodeRestarted {
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

impl Handler<RaftPeerMessage> for NodeActor {
    type Result = ();
    fn handle(&mut self, msg: RaftPeerMessage, ctx: &mut Self::Context) {
        self.last_heard.insert(msg.0.from, std::time::Instant::now());
        if let Some(Err(error)) = self.guarded("step", ctx, |raft| raft.step(msg.0)) {
            // A message raft-rs refuses (from a removed peer, say) changes nothing.
            tracing::debug!(node_id = %self.node_id, %error, "raft message refused");
        }
        self.drive(ctx);
    }
}

/// Waits for a reply from the node's own bookkeeping, at most [`KV_TIMEOUT`].
fn awaited<T: Send + 'static>(rx: tokio::sync::oneshot::Receiver<Result<T, ClusterError>>) -> ResponseFuture<Result<T, ClusterError>> {
    Box::pin(async move {
        match tokio::time::timeout(KV_TIMEOUT, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(ClusterError::OutcomeUnknown { reason: "the node stopped before it was applied".into() }),
            Err(_) => Err(ClusterError::OutcomeUnknown { reason: format!("no answer within {} s", KV_TIMEOUT.as_secs()) }),
        }
    })
}

impl Handler<PutKv> for NodeActor {
    type Result = ResponseFuture<Result<KvWritten, ClusterError>>;
    fn handle(&mut self, msg: PutKv, ctx: &mut Self::Context) -> Self::Result {
        let command = MetaCommand::Put { key: msg.key.clone(), value: msg.value };
        let proposed = self.guarded("propose", ctx, |raft| raft.propose(&command));
        let (tx, rx) = tokio::sync::oneshot::channel();
        match proposed {
            Some(Ok(Some(Proposal { tag, at }))) => {
                if let Some((index, _)) = at {
                    self.placed.insert(index, tag);
                }
                self.waiting_writes.insert(tag, Waiter::Kv(msg.key, tx));
            }
            Some(Ok(None)) => return Box::pin(std::future::ready(Err(ClusterError::NoLeader))),
            Some(Err(e)) => return Box::pin(std::future::ready(Err(ClusterError::Storage { message: e.to_string() }))),
            None => return Box::pin(std::future::ready(Err(ClusterError::NodeDown { node_id: self.node_id.clone() }))),
        }
        self.drive(ctx);
        awaited(rx)
    }
}

impl Handler<ProposeMemberChange> for NodeActor {
    type Result = ResponseFuture<Result<MembersApplied, ClusterError>>;
    fn handle(&mut self, msg: ProposeMemberChange, ctx: &mut Self::Context) -> Self::Result {
        let proposed = self.guarded("propose", ctx, |raft| raft.propose_member_change(&msg.change));
        let (tx, rx) = tokio::sync::oneshot::channel();
        match proposed {
            Some(Ok(Some(Proposal { tag, at }))) => {
                if let Some((index, _)) = at {
                    self.placed.insert(index, tag);
                }
                self.waiting_writes.insert(tag, Waiter::Members(tx));
            }
            Some(Ok(None)) => return Box::pin(std::future::ready(Err(ClusterError::NoLeader))),
            Some(Err(RaftCoreError::ChangeInProgress)) => return Box::pin(std::future::ready(Err(ClusterError::ChangeInProgress))),
            Some(Err(e)) => return Box::pin(std::future::ready(Err(ClusterError::Storage { message: e.to_string() }))),
            None => return Box::pin(std::future::ready(Err(ClusterError::NodeDown { node_id: self.node_id.clone() }))),
        }
        self.drive(ctx);
        awaited(rx)
    }
}

impl Handler<GetKv> for NodeActor {
    type Result = ResponseFuture<Result<KvEntry, ClusterError>>;
    fn handle(&mut self, msg: GetKv, ctx: &mut Self::Context) -> Self::Result {
        self.read(|reply| Read::Key(msg.key, reply), ctx)
    }
}

impl Handler<GetFailoverHistory> for NodeActor {
    type Result = ResponseFuture<Result<Vec<FailoverRecord>, ClusterError>>;
    fn handle(&mut self, _: GetFailoverHistory, ctx: &mut Self::Context) -> Self::Result {
        self.read(Read::Failovers, ctx)
    }
}

impl Handler<RecordFailover> for NodeActor {
    type Result = Result<(), ClusterError>;
    fn handle(&mut self, msg: RecordFailover, ctx: &mut Self::Context) -> Self::Result {
        // Not waited for: the history is told, and a record lost with its leader is a failover
        // the next leader's history misses, not a wrong one.
        let command = MetaCommand::RecordFailover { record: msg.record };
        match self.guarded("propose", ctx, |raft| raft.propose(&command)) {
            Some(Ok(Some(_))) => {
                self.drive(ctx);
                Ok(())
            }
            Some(Ok(None)) => Err(ClusterError::NoLeader),
            Some(Err(e)) => Err(ClusterError::Storage { message: e.to_string() }),
            None => Err(ClusterError::NodeDown { node_id: self.node_id.clone() }),
        }
    }
}

/// A linearizable read waiting for its index: what it reads, and where the answer goes.
enum Read {
    Key(String, Reply<KvEntry>),
    Failovers(Reply<Vec<FailoverRecord>>),
}

impl Read {
    fn is_closed(&self) -> bool {
        match self {
            Read::Key(_, reply) => reply.is_closed(),
            Read::Failovers(reply) => reply.is_closed(),
        }
    }

    fn answer(self, machine: &crate::actors::raft::machine::MetaMachine) {
        match self {
            Read::Key(key, reply) => {
                let answer = match machine.get(&key) {
                    Some(v) => Ok(KvEntry { key, value: v.value.clone(), index: v.index, term: v.term }),
                    None => Err(ClusterError::KeyNotFound { key }),
                };
                let _ = reply.send(answer);
            }
            Read::Failovers(reply) => {
                let _ = reply.send(Ok(machine.failovers().to_vec()));
            }
        }
    }
}

impl Handler<TransferLeadership> for NodeActor {
    type Result = Result<(), ClusterError>;
    fn handle(&mut self, msg: TransferLeadership, ctx: &mut Self::Context) -> Self::Result {
        let to = raft_node_id(&msg.to);
        match self.guarded("transfer", ctx, |raft| raft.transfer_leader(to)) {
            Some(Ok(true)) => {
                self.drive(ctx);
                Ok(())
            }
            Some(Ok(false)) => Err(self.not_leader()),
            Some(Err(e)) => Err(ClusterError::Storage { message: e.to_string() }),
            None => Err(ClusterError::NodeDown { node_id: self.node_id.clone() }),
        }
    }
}

impl Handler<ReadRaftLog> for NodeActor {
    type Result = ResponseFuture<Result<RaftLogView, ClusterError>>;
    fn handle(&mut self, msg: ReadRaftLog, _ctx: &mut Self::Context) -> Self::Result {
        let (store, owner) = (self.setup.store.clone(), self.node_id.clone());
        let read = self.lane.run(move || {
            crate::actors::raft::storage::read_log(&store, &owner, msg.from, msg.limit).map_err(crate::actors::raft::core::RaftCoreError::from)
        });
        let node_id = self.node_id.clone();
        Box::pin(async move {
            let s = read.await.map_err(|e| ClusterError::Storage { message: e.to_string() })?;
            Ok(RaftLogView {
                node_id,
                first_index: s.first_index,
                last_index: s.last_index,
                entries: s.entries.iter().map(|(e, bytes)| entry_view(e, *bytes)).collect(),
            })
        })
    }
}

fn entry_view(e: &raft::eraftpb::Entry, bytes: usize) -> RaftLogEntryView {
    let (kind, summary) = match e.get_entry_type() {
        raft::eraftpb::EntryType::EntryNormal if e.data.is_empty() => ("empty", "a new leader's first entry".to_string()),
        raft::eraftpb::EntryType::EntryNormal => match serde_json::from_slice::<MetaCommand>(&e.data) {
            Ok(MetaCommand::Put { key, .. }) => ("command", format!("put {key}")),
            Ok(MetaCommand::RecordFailover { record }) => ("command", format!("record {}", record.failover.failover_id)),
            Ok(MetaCommand::SetNodeMetadata { node_id, .. }) => ("command", format!("metadata of {node_id}")),
            Err(_) => ("command", "unreadable".to_string()),
        },
        raft::eraftpb::EntryType::EntryConfChangeV2 => {
            let change = protobuf::Message::parse_from_bytes(&e.data)
                .ok()
                .and_then(|cc: raft::eraftpb::ConfChangeV2| serde_json::from_slice::<MemberChange>(&cc.context).ok());
            let summary = match change {
                Some(MemberChange::Join { record }) => format!("{} joins as a learner", record.node_id),
                Some(MemberChange::Promote { node_id }) => format!("{node_id} becomes a voter"),
                Some(MemberChange::Leave { node_id }) => format!("{node_id} leaves"),
                _ => format!("{} bytes", e.data.len()),
            };
            ("conf_change", summary)
        }
        _ => ("conf_change", format!("{} bytes", e.data.len())),
    };
    RaftLogEntryView { index: e.index, term: e.term, kind: kind.into(), summary, bytes }
}

impl Handler<GetRaftNode> for NodeActor {
    type Result = Option<RaftNodeView>;
    fn handle(&mut self, _: GetRaftNode, _ctx: &mut Self::Context) -> Self::Result {
        self.view()
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
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: StopNode, _ctx: &mut Self::Context) -> Self::Result {
        // Like a crash for the supervisor: it must not come back. It answers once what its lane
        // holds (a Raft write, an open) is done, so a store closed after it is closed under nobody.
        self.crashed = true;
        let drained = self.lane.run(|| Ok::<(), crate::exec::TaskFailed>(()));
        Box::pin(actix::fut::wrap_future::<_, Self>(drained).map(|_, _, ctx: &mut Context<Self>| ctx.stop()))
    }
}
