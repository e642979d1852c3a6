//! One Raft node's state, apart from its actor shell: the `RawNode` (raft-rs) over the group's
//! durable log, and the metadata it applies. Its methods return what to do next, and the shell
//! does it: [`RaftCore::next_ready`] hands out the messages that may go at once, what it
//! applied (entries a quorum has), and the write to make durable; once that write is committed,
//! [`RaftCore::persisted`] hands out the messages that had to wait for it and what it let apply. One write is outstanding at a time,
//! and raft-rs must not move while it is (its `advance` requires it): what arrives meanwhile
//! (messages, ticks) is held and stepped once the write is durable.

use std::collections::VecDeque;
use std::sync::Arc;

use raft::eraftpb::{ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message};
use raft::{RawNode, Ready, StateRole};

use super::machine::{Applied, MetaMachine};
use super::storage::{decode, encode, stored_entry, stored_snapshot, GroupStorage, GroupStorageError};
use crate::messages::cluster::MemberChange;
use crate::model::{raft_node_id, MetaCommand};
use crate::storage::{RaftHardState, RaftSnapshot, RaftWrite, Store};

/// How many ticks make a node's timeouts (`[cluster]`), and how often it compacts its log.
#[derive(Debug, Clone, Copy)]
pub struct RaftSettings {
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    /// Applied entries between snapshots: each snapshot drops the log up to it, so the log stays
    /// about this long, and a follower further behind is sent the snapshot.
    pub snapshot_every: u64,
}

/// The default of [`RaftSettings::snapshot_every`].
pub const SNAPSHOT_EVERY: u64 = 10_000;

/// Why a node could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum RaftCoreError {
    #[error(transparent)]
    Storage(#[from] GroupStorageError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("a command could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Task(#[from] crate::exec::TaskFailed),
    #[error(transparent)]
    Store(#[from] crate::storage::StorageError),
    #[error("another membership change is not applied yet")]
    ChangeInProgress,
}

/// How close to the leader's commit index a learner's log must be for it to be promoted: near
/// enough that it catches up at once, so that counting it in the quorum stalls no commit.
const PROMOTE_WITHIN: u64 = 100;

/// What changed that the world should hear of.
#[derive(Debug, Clone, PartialEq)]
pub enum RaftEvent {
    /// This node became leader of `term`; `votes` of the `voters` granted it.
    BecameLeader { term: u64, previous_leader: u64, votes: usize, voters: usize },
    /// This node stopped hearing from `last_leader` and started an election.
    ElectionStarted { last_leader: u64 },
    /// This node follows `leader` in `term`.
    /// `previous` is the leader it followed before (0 if none).
    Following { leader: u64, term: u64, voters: usize, previous: u64 },
}

/// The start of handling one `Ready`.
#[derive(Debug)]
pub struct ReadyWork {
    /// Messages that may leave before the write is durable (a leader's appends and heartbeats).
    pub send_now: Vec<Message>,
    /// What must be durable before [`RaftCore::persisted`]; empty if nothing is.
    pub write: RaftWrite,
    pub events: Vec<RaftEvent>,
    /// Read requests (by id) and the index the state machine must reach to answer them.
    pub read_states: Vec<(u64, u64)>,
    /// Entries committed (durable on a quorum, this node included) and applied at once: their
    /// writers need not wait for this `Ready`'s own write.
    pub applied: Vec<Applied>,
    /// This node's proposals among `applied`, by tag.
    pub mine: Vec<(u64, Applied)>,
}

/// The end of handling one `Ready`, its write being durable.
#[derive(Debug, Default)]
pub struct AfterWrite {
    pub send: Vec<Message>,
    pub applied: Vec<Applied>,
    /// This node's proposals among `applied`, by the tag [`RaftCore::propose`] gave them.
    pub mine: Vec<(u64, Applied)>,
    /// Proposals held while the write was out, now in this leader's log at (index, term), by tag.
    pub placed: Vec<(u64, u64, u64)>,
    /// Proposals held while the write was out that no leader took (none is known): by tag.
    pub unplaced: Vec<u64>,
}

/// A proposal, by the tag its entry carries (in the entry's context, with this node's id): the
/// node knows its own entry by it when it applies it, wherever the leader was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    pub tag: u64,
    /// Where this node, leading, appended it; `None` if it went to the leader elsewhere, or is
    /// held until the outstanding write is durable ([`AfterWrite::placed`] tells then).
    pub at: Option<(u64, u64)>,
}

/// A node's state as its views show it.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreStatus {
    pub id: u64,
    pub role: StateRole,
    pub leader: u64,
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// Per peer, the highest index known replicated there (leader only).
    pub matched: Vec<(u64, u64)>,
}

/// What a proposal appends: a command, or a change of members.
#[derive(Debug)]
enum Proposed {
    Command(Vec<u8>),
    Members(ConfChangeV2),
}

/// What came while a write was outstanding.
#[derive(Debug)]
enum Held {
    Tick,
    Message(Message),
    SnapshotSent { peer: u64, delivered: bool },
}

pub struct RaftCore {
    id: u64,
    raw: RawNode<GroupStorage>,
    machine: MetaMachine,
    /// The `Ready` whose write is being made durable; no other is taken until it is.
    pending: Option<Ready>,
    /// A conf state to store with the next write: the bootstrap's, or one a conf change made.
    conf_to_store: Option<ConfState>,
    stored_hard_state: HardState,
    /// The last leader this node knew of (0 before any).
    leader: u64,
    /// The term this node last took office in, so that each term's election is told once.
    led_term: u64,
    role: StateRole,
    /// The leader whose loss this node last reported, so that a loss is told once.
    lost_leader: u64,
    /// The (leader, term) this node last reported following.
    followed: (u64, u64),
    /// Votes granted to this node in the election it is running (itself included).
    votes: usize,
    /// Messages and ticks that came while a write was outstanding, in the order they came, so
    /// that a long write does not look to raft-rs like time passing with no word from anyone
    /// (a leader replaying ticks first would step down for want of a quorum it had). Bounded
    /// by raft's own flow control: a peer has at most `max_inflight_msgs` appends unanswered,
    /// plus its heartbeats; ticks come one per `tick_ms`.
    held: VecDeque<Held>,
    /// Read-index requests that came to this node as leader before it committed an entry of its
    /// term, which raft-rs drops (it cannot know the commit index yet): stepped again once it
    /// has, or once it no longer leads (a follower forwards them). One per read in flight.
    early_reads: Vec<Message>,
    /// Commands proposed while a write was out, by tag: appending them then would break
    /// raft-rs's `advance` as stepping would.
    held_proposals: VecDeque<(u64, Proposed)>,
    next_tag: u64,
    snapshot_every: u64,
    /// The index of the last snapshot taken or installed.
    snapshot_index: u64,
    /// A snapshot of the machine and the compaction it allows, for the shell to commit.
    compaction: Option<RaftWrite>,
    /// A learner joined: the next snapshot is taken at once, so that its log starts past the
    /// join and the learner (whose log is empty) is sent a snapshot, members and conf state
    /// included, rather than entries from the first, which lack the bootstrap's voters.
    snapshot_due: bool,
    /// The bootstrap members, that a machine starts with.
    seed: Vec<String>,
    /// A snapshot was stored: a leader offers it at once to the followers that need one,
    /// rather than at their next heartbeat answer (raft-rs retries only then).
    offer_snapshot: bool,
}

/// Whether `write` asks nothing of the store.
pub fn is_empty(write: &RaftWrite) -> bool {
    write.snapshot.is_none()
        && write.entries.is_empty()
        && write.hard_state.is_none()
        && write.conf_state.is_none()
        && write.applied.is_none()
        && write.compact_to.is_none()
        && !write.clear
}

impl RaftCore {
    /// Opens node `id` of the group stored as `owner`, whose bootstrap voters are `voters` (used
    /// only if the store holds nothing for it; none for a node that joins later) and whose
    /// machine starts with the bootstrap members `seed` (`cluster.nodes`). Every committed entry
    /// after the latest snapshot is applied again: the metadata lives in memory.
    pub fn open(id: u64, owner: &str, voters: Vec<u64>, seed: Vec<String>, store: Arc<Store>, timing: RaftSettings) -> Result<RaftCore, RaftCoreError> {
        let snapshot = store.raft_snapshot(owner)?;
        let storage = GroupStorage::open(store, owner, voters)?;
        let conf_to_store = if storage.is_fresh()? { Some(storage.conf_state()?) } else { None };
        let config = raft::Config {
            id,
            election_tick: timing.election_tick,
            heartbeat_tick: timing.heartbeat_tick,
            applied: 0,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..raft::Config::default()
        };
        // raft-rs unwraps these reads while it builds the node; a store that cannot answer them
        // is an error here rather than a panic there.
        raft::Storage::first_index(&storage)?;
        raft::Storage::last_index(&storage)?;
        let raw = RawNode::new(&config, storage, &super::logger(owner))?;
        let stored_hard_state = raw.raft.hard_state();
        // raft-rs starts applying after the snapshot the log begins with; the machine starts there.
        let (machine, snapshot_index) = match snapshot {
            Some(s) => (
                MetaMachine::restore(&s.data, s.index, &seed).map_err(|reason| GroupStorageError::Unrestorable { owner: owner.to_string(), reason })?,
                s.index,
            ),
            None => (MetaMachine::seeded(&seed), 0),
        };
        Ok(RaftCore {
            id,
            raw,
            machine,
            pending: None,
            conf_to_store,
            stored_hard_state,
            leader: 0,
            led_term: 0,
            role: StateRole::Follower,
            lost_leader: 0,
            followed: (0, 0),
            votes: 0,
            held: VecDeque::new(),
            early_reads: Vec::new(),
            held_proposals: VecDeque::new(),
            // Tags must not repeat across restarts: an entry proposed before one may still be
            // applied after it. Starting from the clock, in nanoseconds, they do not.
            next_tag: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
            snapshot_every: timing.snapshot_every.max(1),
            snapshot_index,
            compaction: None,
            snapshot_due: false,
            seed,
            offer_snapshot: false,
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn machine(&self) -> &MetaMachine {
        &self.machine
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    pub fn tick(&mut self) {
        if self.pending.is_some() {
            self.held.push_back(Held::Tick);
        } else {
            self.raw.tick();
        }
    }

    /// A message to `peer` was lost on the way: raft-rs probes it again instead of streaming.
    pub fn report_unreachable(&mut self, peer: u64) {
        self.raw.report_unreachable(peer);
    }

    /// A snapshot this node sent to `peer` left (`delivered`), or was lost on the way: raft-rs
    /// waits in its snapshot state until told. Told it left, it waits for the peer's answer
    /// and probes again on its next heartbeat answer (a snapshot the peer dropped is sent
    /// again); told it was lost, it probes at once.
    pub fn report_snapshot(&mut self, peer: u64, delivered: bool) {
        if self.pending.is_some() {
            self.held.push_back(Held::SnapshotSent { peer, delivered });
        } else {
            self.snapshot_sent(peer, delivered);
        }
    }

    fn snapshot_sent(&mut self, peer: u64, delivered: bool) {
        let status = if delivered { raft::SnapshotStatus::Finish } else { raft::SnapshotStatus::Failure };
        self.raw.report_snapshot(peer, status);
    }

    /// Steps a message from a peer (once the outstanding write is durable, if one is).
    pub fn step(&mut self, msg: Message) -> Result<(), RaftCoreError> {
        if self.pending.is_some() {
            self.held.push_back(Held::Message(msg));
            return Ok(());
        }
        self.step_now(msg)
    }

    fn step_now(&mut self, msg: Message) -> Result<(), RaftCoreError> {
        if msg.get_msg_type() == raft::eraftpb::MessageType::MsgReadIndex && self.is_leader() && !self.raw.raft.commit_to_current_term() {
            self.early_reads.push(msg);
            return Ok(());
        }
        let candidate = self.raw.raft.state == StateRole::Candidate;
        let granted = candidate && msg.get_msg_type() == raft::eraftpb::MessageType::MsgRequestVoteResponse && !msg.reject;
        let before = if candidate { self.raw.raft.prs().tally_votes().0 } else { 0 };
        self.raw.step(msg)?;
        if candidate && self.raw.raft.state == StateRole::Leader {
            self.votes = before + usize::from(granted);
        }
        Ok(())
    }

    /// Whether a leader is known: one that this node is, or would forward proposals and reads to.
    pub fn knows_leader(&self) -> bool {
        self.raw.raft.leader_id != raft::INVALID_ID
    }

    /// Proposes `command`: appended if this node leads, forwarded to the leader if it follows one
    /// (raft-rs sends it); `None` if no leader is known. While a write is outstanding it is held,
    /// and proposed once the write is durable.
    pub fn propose(&mut self, command: &MetaCommand) -> Result<Option<Proposal>, RaftCoreError> {
        if !self.knows_leader() {
            return Ok(None);
        }
        let data = serde_json::to_vec(command)?;
        self.propose_now_or_held(Proposed::Command(data))
    }

    /// Proposes a change of members: a conf change carrying the change (raft-rs allows one at a
    /// time: refused while this node, leading, has one not applied yet), or, for metadata, a
    /// command. `None` if no leader is known.
    pub fn propose_member_change(&mut self, change: &MemberChange) -> Result<Option<Proposal>, RaftCoreError> {
        let change_type = match change {
            MemberChange::Join { .. } => ConfChangeType::AddLearnerNode,
            MemberChange::Promote { .. } => ConfChangeType::AddNode,
            MemberChange::Leave { .. } => ConfChangeType::RemoveNode,
            MemberChange::Metadata { node_id, metadata } => {
                return self.propose(&MetaCommand::SetNodeMetadata { node_id: node_id.clone(), metadata: metadata.clone() });
            }
        };
        if !self.knows_leader() {
            return Ok(None);
        }
        if self.is_leader() && self.raw.raft.has_pending_conf() {
            return Err(RaftCoreError::ChangeInProgress);
        }
        let single = ConfChangeSingle { change_type, node_id: raft_node_id(change.node_id()), ..ConfChangeSingle::default() };
        let cc = ConfChangeV2 { changes: vec![single].into(), context: serde_json::to_vec(change)?.into(), ..ConfChangeV2::default() };
        self.propose_now_or_held(Proposed::Members(cc))
    }

    fn propose_now_or_held(&mut self, proposed: Proposed) -> Result<Option<Proposal>, RaftCoreError> {
        self.next_tag += 1;
        let tag = self.next_tag;
        if self.pending.is_some() {
            self.held_proposals.push_back((tag, proposed));
            return Ok(Some(Proposal { tag, at: None }));
        }
        let at = self.append(tag, proposed)?;
        Ok(Some(Proposal { tag, at }))
    }

    /// Proposes now: where it went if this node leads.
    fn append(&mut self, tag: u64, proposed: Proposed) -> Result<Option<(u64, u64)>, RaftCoreError> {
        let mut context = self.id.to_be_bytes().to_vec();
        context.extend_from_slice(&tag.to_be_bytes());
        let last = self.raw.raft.raft_log.last_index();
        match proposed {
            Proposed::Command(data) => self.raw.propose(context, data)?,
            Proposed::Members(cc) => self.raw.propose_conf_change(context, cc)?,
        }
        // A leader with a conf change pending appends an empty entry instead (raft-rs): the
        // entry at the new index is then not this proposal, and nothing of it is placed.
        Ok((self.is_leader() && self.raw.raft.raft_log.last_index() > last).then(|| (self.raw.raft.raft_log.last_index(), self.raw.raft.term)))
    }

    /// A learner this node, leading, should promote now: one whose log is within
    /// [`PROMOTE_WITHIN`] of the commit index, with no other change of members pending.
    pub fn learner_to_promote(&self) -> Option<String> {
        let raft = &self.raw.raft;
        let held = self.held_proposals.iter().any(|(_, p)| matches!(p, Proposed::Members(_)));
        if raft.state != StateRole::Leader || raft.has_pending_conf() || held {
            return None;
        }
        let committed = raft.raft_log.committed;
        let learners = raft.prs().conf().learners().clone();
        learners.into_iter().find_map(|id| {
            let caught_up = raft.prs().get(id).is_some_and(|p| p.matched + PROMOTE_WITHIN >= committed && p.matched > 0);
            let name = self.machine.members().find(|m| raft_node_id(&m.node_id) == id).map(|m| m.node_id.clone());
            name.filter(|_| caught_up)
        })
    }

    /// The tag of an entry this node proposed.
    fn tag_of(&self, e: &Entry) -> Option<u64> {
        let context: &[u8] = e.context.as_ref();
        let (node, tag) = context.split_at_checked(8)?;
        (u64::from_be_bytes(node.try_into().ok()?) == self.id).then_some(u64::from_be_bytes(tag.try_into().ok()?))
    }

    /// Hands leadership to `to` (leader only): the leader brings it up to date, then tells it to
    /// campaign at once. Whether it took office shows in later `Ready`s.
    pub fn transfer_leader(&mut self, to: u64) -> Result<bool, RaftCoreError> {
        if !self.is_leader() {
            return Ok(false);
        }
        let mut msg = Message::default();
        msg.set_msg_type(raft::eraftpb::MessageType::MsgTransferLeader);
        msg.from = to;
        self.step(msg)?;
        Ok(true)
    }

    /// Asks for a read index for request `id` (of the leader, which may be elsewhere: raft-rs
    /// forwards it); it comes back in a later [`ReadyWork::read_states`] once the leader
    /// confirmed it still leads. False if no leader is known.
    pub fn read_index(&mut self, id: u64) -> Result<bool, RaftCoreError> {
        if !self.knows_leader() {
            return Ok(false);
        }
        let mut msg = Message::default();
        msg.set_msg_type(raft::eraftpb::MessageType::MsgReadIndex);
        msg.from = self.id;
        msg.set_entries(vec![Entry { data: id.to_be_bytes().to_vec().into(), ..Entry::default() }].into());
        self.step(msg)?;
        Ok(true)
    }

    /// Starts handling a `Ready`, if one is due and the last one's write is durable.
    pub fn next_ready(&mut self) -> Result<Option<ReadyWork>, RaftCoreError> {
        if self.pending.is_some() || !self.raw.has_ready() {
            return Ok(None);
        }
        let mut rd = self.raw.ready();
        let owner = self.raw.store().owner().to_string();
        let mut events = Vec::new();
        if let Some(ss) = rd.ss() {
            let term = self.raw.raft.term;
            // Several steps between two `Ready`s can take a follower straight to leader: a lost
            // leader is told whichever state shows first.
            let lost = self.role == StateRole::Follower && ss.raft_state != StateRole::Follower;
            if lost && self.leader != 0 && self.leader != self.id && self.leader != self.lost_leader {
                events.push(RaftEvent::ElectionStarted { last_leader: self.leader });
                self.lost_leader = self.leader;
            }
            match ss.raft_state {
                StateRole::Leader if ss.leader_id == self.id && term != self.led_term => {
                    let voters = self.raw.raft.prs().conf().voters().ids().len();
                    // A single voter elects itself without a message.
                    let votes = if voters == 1 { 1 } else { self.votes };
                    events.push(RaftEvent::BecameLeader { term, previous_leader: self.leader, votes, voters });
                    self.led_term = term;
                }
                StateRole::Follower if ss.leader_id != 0 && (ss.leader_id, term) != self.followed => {
                    let voters = self.raw.raft.prs().conf().voters().ids().len();
                    events.push(RaftEvent::Following { leader: ss.leader_id, term, voters, previous: self.leader });
                    self.followed = (ss.leader_id, term);
                    // A leader lost before and followed again in a new term can be lost again.
                    self.lost_leader = 0;
                }
                _ => {}
            }
            self.role = ss.raft_state;
            if ss.leader_id != 0 {
                self.leader = ss.leader_id;
            }
        }
        let read_states = rd
            .read_states()
            .iter()
            .filter_map(|r| Some((u64::from_be_bytes(r.request_ctx.as_slice().try_into().ok()?), r.index)))
            .collect();
        let send_now = rd.take_messages();
        // Committed entries are applied before the write (as raft-rs's examples do), unless a
        // snapshot comes first: the machine is restored from it once it is durable.
        let mut mine = Vec::new();
        let applied = match rd.snapshot().get_metadata().index {
            0 => self.apply(rd.take_committed_entries(), &owner, &mut mine)?,
            _ => Vec::new(),
        };
        let snapshot = if rd.snapshot().get_metadata().index > 0 { Some(stored_snapshot(rd.snapshot(), &owner)?) } else { None };
        let entries = rd.entries().iter().map(|e| stored_entry(e, &owner)).collect::<Result<Vec<_>, _>>()?;
        let conf_state = match self.conf_to_store.take() {
            Some(cs) => Some(encode(&cs, &owner)?),
            None => None,
        };
        // A new commit index alone is not worth an fsync (etcd's MustSync): a node that loses it
        // learns it again from the leader. It is stored with the next write that must be.
        let hs = self.raw.raft.hard_state();
        let must_sync = snapshot.is_some()
            || !entries.is_empty()
            || conf_state.is_some()
            || hs.term != self.stored_hard_state.term
            || hs.vote != self.stored_hard_state.vote;
        let hard_state = (must_sync && hs != self.stored_hard_state).then_some(RaftHardState { term: hs.term, vote: hs.vote, commit: hs.commit });
        if hard_state.is_some() {
            self.stored_hard_state = hs;
        }
        let write = RaftWrite { snapshot, entries, hard_state, conf_state, ..RaftWrite::default() };
        self.pending = Some(rd);
        Ok(Some(ReadyWork { send_now, write, events, read_states, applied, mine }))
    }

    /// The write of the last [`RaftCore::next_ready`] is durable: what may go now, and what was
    /// applied. Nothing if no `Ready` was pending.
    pub fn persisted(&mut self) -> Result<AfterWrite, RaftCoreError> {
        let Some(mut rd) = self.pending.take() else {
            return Ok(AfterWrite::default());
        };
        let owner = self.raw.store().owner().to_string();
        let installed = rd.snapshot().get_metadata().index;
        if installed > 0 {
            self.raw.store().reload()?;
        }
        self.raw.store().appended(rd.entries());
        if installed > 0 {
            self.machine = MetaMachine::restore(&rd.snapshot().data, installed, &self.seed)
                .map_err(|reason| GroupStorageError::Unrestorable { owner: owner.clone(), reason })?;
            self.snapshot_index = installed;
        }
        let mut send = rd.take_persisted_messages();
        let mut mine = Vec::new();
        let mut applied = if installed > 0 { vec![self.machine.restored(installed)] } else { Vec::new() };
        applied.extend(self.apply(rd.take_committed_entries(), &owner, &mut mine)?);
        let mut light = self.raw.advance(rd);
        send.extend(light.take_messages());
        applied.extend(self.apply(light.take_committed_entries(), &owner, &mut mine)?);
        self.raw.advance_apply();
        while let Some(held) = self.held.pop_front() {
            match held {
                Held::Tick => {
                    self.raw.tick();
                }
                Held::SnapshotSent { peer, delivered } => self.snapshot_sent(peer, delivered),
                Held::Message(msg) => {
                    if let Err(error) = self.step_now(msg) {
                        // raft-rs refuses some messages (from a peer no longer in the group, say); they change nothing.
                        tracing::debug!(node = self.id, %error, "raft message refused");
                    }
                }
            }
        }
        if !self.early_reads.is_empty() && (!self.is_leader() || self.raw.raft.commit_to_current_term()) {
            for msg in std::mem::take(&mut self.early_reads) {
                if let Err(error) = self.step_now(msg) {
                    tracing::debug!(node = self.id, %error, "read index refused");
                }
            }
        }
        let (mut placed, mut unplaced) = (Vec::new(), Vec::new());
        while let Some((tag, proposed)) = self.held_proposals.pop_front() {
            if !self.knows_leader() {
                unplaced.push(tag);
            } else if let Some((index, term)) = self.append(tag, proposed)? {
                placed.push((tag, index, term));
            }
        }
        self.plan_snapshot(&owner)?;
        self.offer_stored_snapshot();
        Ok(AfterWrite { send, applied, mine, placed, unplaced })
    }

    /// Once `snapshot_every` entries were applied since the last snapshot, takes one of the
    /// machine at the applied index: stored, it replaces the log up to there.
    fn plan_snapshot(&mut self, owner: &str) -> Result<(), RaftCoreError> {
        let applied = self.machine.applied();
        let due = self.snapshot_due || applied >= self.snapshot_index + self.snapshot_every;
        if self.compaction.is_some() || !due || applied <= self.snapshot_index {
            return Ok(());
        }
        self.snapshot_due = false;
        let term = self.raw.raft.raft_log.term(applied)?;
        let conf_state = encode(&self.raw.raft.prs().conf().to_conf_state(), owner)?;
        let data = self.machine.snapshot_bytes()?;
        let snapshot = RaftSnapshot { index: applied, term, conf_state, data };
        self.compaction = Some(RaftWrite { snapshot: Some(snapshot), ..RaftWrite::default() });
        self.raw.store().compacted(applied, term);
        self.snapshot_index = applied;
        Ok(())
    }

    /// A snapshot to store and the log it compacts, if one was taken.
    pub fn take_compaction(&mut self) -> Option<RaftWrite> {
        self.compaction.take()
    }

    /// The snapshot [`RaftCore::take_compaction`] gave is durable: a leader sends it now to
    /// whoever needs it (a learner that just joined), once no write is outstanding.
    pub fn snapshot_stored(&mut self) {
        self.offer_snapshot = true;
        self.offer_stored_snapshot();
    }

    fn offer_stored_snapshot(&mut self) {
        if self.offer_snapshot && self.pending.is_none() {
            self.offer_snapshot = false;
            if self.is_leader() {
                self.raw.raft.bcast_append();
            }
        }
    }

    fn apply(&mut self, entries: Vec<Entry>, owner: &str, mine: &mut Vec<(u64, Applied)>) -> Result<Vec<Applied>, RaftCoreError> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let tag = self.tag_of(&e);
            let applied = match e.get_entry_type() {
                EntryType::EntryNormal => self.machine.apply(e.index, e.term, &e.data),
                EntryType::EntryConfChange => {
                    let cc: ConfChange = decode(&e.data, owner)?;
                    self.conf_to_store = Some(self.raw.apply_conf_change(&cc)?);
                    self.machine.skip(e.index)
                }
                EntryType::EntryConfChangeV2 => {
                    let cc: ConfChangeV2 = decode(&e.data, owner)?;
                    self.conf_to_store = Some(self.raw.apply_conf_change(&cc)?);
                    match serde_json::from_slice::<MemberChange>(&cc.context) {
                        Ok(change) => {
                            self.snapshot_due |= matches!(change, MemberChange::Join { .. });
                            self.machine.apply_member_change(e.index, &change)
                        }
                        Err(_) => self.machine.skip(e.index),
                    }
                }
            };
            if let Some(tag) = tag {
                mine.push((tag, applied.clone()));
            }
            out.push(applied);
        }
        Ok(out)
    }

    pub fn status(&self) -> CoreStatus {
        let raft = &self.raw.raft;
        let hs = raft.hard_state();
        let voters: Vec<u64> = {
            let mut v: Vec<u64> = raft.prs().conf().voters().ids().iter().collect();
            v.sort_unstable();
            v
        };
        let mut learners: Vec<u64> = raft.prs().conf().learners().iter().copied().collect();
        learners.sort_unstable();
        let matched = if raft.state == StateRole::Leader {
            let mut m: Vec<(u64, u64)> = raft.prs().iter().map(|(id, p)| (*id, p.matched)).collect();
            m.sort_unstable();
            m
        } else {
            Vec::new()
        };
        CoreStatus {
            id: self.id,
            role: raft.state,
            leader: raft.leader_id,
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
            applied: self.machine.applied(),
            last_index: raft.raft_log.last_index(),
            voters,
            learners,
            matched,
        }
    }
}
