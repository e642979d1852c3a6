//! Messages of the cluster membership domain: add, list, inspect, update and remove nodes, cluster
//! status and health, fault injection on nodes, and the events the domain publishes.
//!
//! These are the commands Raft will implement when it takes membership over: the HTTP and GraphQL
//! faces only ever speak these messages, so they do not change when it does.

use std::collections::BTreeMap;
use std::time::Instant;

use actix::prelude::*;
use async_graphql::SimpleObject;
use serde::{Deserialize, Serialize};

use crate::messages::errors::{invalid_field_details, DescribedError, ErrorKind};
use crate::messages::events::{domain_events, SubjectKind};
pub use crate::model::FailoverChange;
use crate::model::{ClusterHealthStatus, NodeHealth, NodeRole};

/// Node metadata: free-form JSON values by key, as operators attach them (`rack`, `zone`, …).
pub type NodeMetadata = BTreeMap<String, serde_json::Value>;

/// The durable record of a member: what survives a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: String,
    pub address: String,
    pub metadata: NodeMetadata,
    pub joined_at_ms: i64,
    #[serde(default = "NodeRole::voter")]
    pub role: NodeRole,
}

/// A change of the Raft group's members, proposed through the log: the three conf changes carry
/// it (JSON) as their context, so every node applies the same record; metadata is a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum MemberChange {
    /// Joins as a learner: it receives the log, and votes once promoted.
    Join { record: NodeRecord },
    /// A learner that caught up becomes a voter.
    Promote { node_id: String },
    Leave { node_id: String },
    Metadata { node_id: String, metadata: NodeMetadata },
}

impl MemberChange {
    pub fn node_id(&self) -> &str {
        match self {
            MemberChange::Join { record } => &record.node_id,
            MemberChange::Promote { node_id } | MemberChange::Leave { node_id } | MemberChange::Metadata { node_id, .. } => node_id,
        }
    }
}

/// Proposes a change of members (through this node to the leader); answers once it is applied.
#[derive(Debug, Message)]
#[rtype(result = "Result<MembersApplied, ClusterError>")]
pub struct ProposeMemberChange {
    pub change: MemberChange,
}

/// The members as a node applied them at `index` of the log (a change, or a snapshot
/// installed): what each process's membership reconciles with, once per index.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct MembersApplied {
    pub index: u64,
    pub members: Vec<NodeRecord>,
    /// What changed, for the events it causes.
    pub reason: String,
}

/// What an operator sees of a node.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
#[graphql(name = "Node", complex)]
pub struct NodeView {
    pub node_id: String,
    /// Where the node is reached; empty when hosted in this process.
    pub address: String,
    /// `voter` for every member until Raft assigns leader/follower roles.
    pub role: NodeRole,
    pub status: NodeHealth,
    /// Why the node has its status (e.g. "crashed by fault injection").
    pub status_reason: String,
    /// Free-form JSON object.
    // GraphQL serves it as its `JSON` scalar, through the face's `ComplexObject`.
    #[schema(value_type = Object)]
    #[graphql(skip)]
    pub metadata: NodeMetadata,
    pub joined_at_ms: i64,
    /// Milliseconds since the node last answered a heartbeat; `None` before its first answer
    /// and while it is down.
    pub heartbeat_age_ms: Option<u64>,
    /// Round trip of the last answered heartbeat through the node's mailbox, in microseconds.
    pub heartbeat_rtt_micros: Option<u64>,
    /// The failure detector's phi for the node now (phi accrual: -log10 of the chance that its
    /// next answer is only late); `None` while it is down.
    pub phi: Option<f64>,
    /// Supervised restarts after internal faults, in this process's life.
    pub restarts: u64,
    /// Whether a crash was injected and the node waits for a restart.
    pub crashed: bool,
    /// Raft term, commit and applied index, as the node's actor tells them: `None` while it is
    /// down or opening, and for a node another process hosts.
    pub term: Option<u64>,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("no node named '{node_id}'")]
    NodeNotFound { node_id: String },
    #[error("a node named '{node_id}' is already a member")]
    NodeExists { node_id: String },
    #[error("invalid node id '{node_id}': {reason}")]
    InvalidNodeId { node_id: String, reason: String },
    #[error("invalid field '{field}': {reason}")]
    InvalidField { field: String, reason: String },
    #[error("node '{node_id}' is already crashed")]
    AlreadyCrashed { node_id: String },
    #[error("node '{node_id}' is not crashed")]
    NotCrashed { node_id: String },
    #[error("node '{node_id}' is down")]
    NodeDown { node_id: String },
    #[error("storage failed: {message}")]
    Storage { message: String },
    #[error("no Raft leader is known to this process; retry once one is elected")]
    NoLeader,
    #[error("node '{node_id}' is not the Raft leader (it follows {leader:?}); retry")]
    NotLeader { node_id: String, leader: Option<String> },
    #[error("the write's outcome is unknown: {reason}; it may or may not have been applied")]
    OutcomeUnknown { reason: String },
    #[error("no key '{key}' in the metadata")]
    KeyNotFound { key: String },
    #[error("node '{node_id}' is not a Raft voter")]
    NotVoter { node_id: String },
    #[error("node '{node_id}' is hosted by the process at {address}; send this to that process")]
    HostedElsewhere { node_id: String, address: String },
    #[error("node '{node_id}' does not lead; only the leader can be demoted")]
    NotTheLeader { node_id: String },
    #[error("no other voter is up to take over from '{node_id}'")]
    NoSuccessor { node_id: String },
    #[error("leadership did not move to '{node_id}' within {seconds} s")]
    TransferTimedOut { node_id: String, seconds: u64 },
    #[error("'{node_id}' leads already")]
    AlreadyLeader { node_id: String },
    #[error("another membership change is not applied yet; retry once it is")]
    ChangeInProgress,
    #[error("removing '{node_id}' is refused: {reason}")]
    WouldLoseQuorum { node_id: String, reason: String },
    #[error("'{node_id}' has the same Raft id as member '{other}'; choose another name")]
    RaftIdTaken { node_id: String, other: String },
}

impl DescribedError for ClusterError {
    fn kind(&self) -> ErrorKind {
        use ClusterError::*;
        match self {
            InvalidNodeId { .. } | InvalidField { .. } => ErrorKind::Invalid,
            NodeNotFound { .. } => ErrorKind::NotFound,
            NodeExists { .. } | AlreadyCrashed { .. } | NotCrashed { .. } | NodeDown { .. } => ErrorKind::Conflict,
            Storage { .. } | NoLeader | NotLeader { .. } => ErrorKind::Unavailable,
            OutcomeUnknown { .. } | TransferTimedOut { .. } => ErrorKind::Timeout,
            KeyNotFound { .. } => ErrorKind::NotFound,
            NotVoter { .. } | NotTheLeader { .. } | NoSuccessor { .. } | HostedElsewhere { .. } | AlreadyLeader { .. } => ErrorKind::Conflict,
            ChangeInProgress | WouldLoseQuorum { .. } | RaftIdTaken { .. } => ErrorKind::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        use ClusterError::*;
        match self {
            NodeNotFound { .. } => "node_not_found",
            NodeExists { .. } => "node_exists",
            InvalidNodeId { .. } | InvalidField { .. } => "invalid_request",
            AlreadyCrashed { .. } => "already_crashed",
            NotCrashed { .. } => "not_crashed",
            NodeDown { .. } => "node_down",
            Storage { .. } => "storage_unavailable",
            NoLeader => "no_leader",
            NotLeader { .. } => "not_leader",
            OutcomeUnknown { .. } => "outcome_unknown",
            KeyNotFound { .. } => "key_not_found",
            NotVoter { .. } => "not_voter",
            NotTheLeader { .. } => "not_the_leader",
            HostedElsewhere { .. } => "hosted_elsewhere",
            NoSuccessor { .. } => "no_successor",
            TransferTimedOut { .. } => "transfer_timed_out",
            AlreadyLeader { .. } => "already_leader",
            ChangeInProgress => "membership_change_in_progress",
            WouldLoseQuorum { .. } => "would_lose_quorum",
            RaftIdTaken { .. } => "raft_id_taken",
        }
    }

    fn details(&self) -> serde_json::Value {
        use serde_json::json;
        use ClusterError::*;
        match self {
            NodeNotFound { node_id } | NodeExists { node_id } | AlreadyCrashed { node_id } | NotCrashed { node_id } | NodeDown { node_id } => {
                json!({ "node_id": node_id })
            }
            InvalidNodeId { node_id, reason } => json!({ "field": "node_id", "node_id": node_id, "reason": reason }),
            InvalidField { field, reason } => invalid_field_details(field, reason),
            Storage { .. } | NoLeader | OutcomeUnknown { .. } | ChangeInProgress => json!({}),
            WouldLoseQuorum { node_id, reason } => json!({ "node_id": node_id, "reason": reason }),
            RaftIdTaken { node_id, other } => json!({ "node_id": node_id, "other": other }),
            NotLeader { node_id, leader } => json!({ "node_id": node_id, "leader": leader }),
            KeyNotFound { key } => json!({ "key": key }),
            NotVoter { node_id } | NotTheLeader { node_id } | NoSuccessor { node_id } | AlreadyLeader { node_id } => json!({ "node_id": node_id }),
            TransferTimedOut { node_id, seconds } => json!({ "node_id": node_id, "seconds": seconds }),
            HostedElsewhere { node_id, address } => json!({ "node_id": node_id, "address": address }),
        }
    }

    fn message(&self) -> String {
        match self {
            ClusterError::InvalidField { field, reason } => format!("{field}: {reason}"),
            other => other.to_string(),
        }
    }
}

/// Adds a member through Raft: it joins as a learner, and answers once the member is a voter
/// (caught up with the leader), or still a learner after a few seconds of catching up.
#[derive(Debug, Message)]
#[rtype(result = "Result<NodeView, ClusterError>")]
pub struct AddNode {
    pub node_id: String,
    /// The address of the process hosting the node (`host:port`, as in `cluster.peers`); empty:
    /// hosted in the process that applies the join, in the one-process form.
    pub address: Option<String>,
    pub metadata: NodeMetadata,
}

/// Removes a member through Raft (refused if it leaves no quorum of live voters); answers once
/// the removal is applied.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ClusterError>")]
pub struct RemoveNode {
    pub node_id: String,
}

#[derive(Debug, Message)]
#[rtype(result = "Vec<NodeView>")]
pub struct ListNodes;

#[derive(Debug, Message)]
#[rtype(result = "Result<NodeView, ClusterError>")]
pub struct GetNode {
    pub node_id: String,
}

/// Merges `patch` into a node's metadata: a key set to `null` is removed. Answers once durable.
#[derive(Debug, Message)]
#[rtype(result = "Result<NodeView, ClusterError>")]
pub struct UpdateNodeMetadata {
    pub node_id: String,
    pub patch: NodeMetadata,
}

/// Fault injection: stops the node's actor as a crash would. It stays down until [`RestartNode`].
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ClusterError>")]
pub struct CrashNode {
    pub node_id: String,
}

/// Starts a crashed node again from its durable state.
#[derive(Debug, Message)]
#[rtype(result = "Result<NodeView, ClusterError>")]
pub struct RestartNode {
    pub node_id: String,
}

/// Fault injection: an internal fault inside the node's actor. Its supervisor restarts it at once
/// from durable state; the restart is published as `actor_restarted` and counted in `/metrics`.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ClusterError>")]
pub struct InjectNodeFault {
    pub node_id: String,
    pub reason: String,
}

#[derive(Debug, Message)]
#[rtype(result = "ClusterStatus")]
pub struct GetClusterStatus;

/// Leader, term, members and quorum.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct ClusterStatus {
    /// `None` until Raft elects leaders.
    pub leader: Option<String>,
    pub term: Option<u64>,
    pub members: Vec<String>,
    pub healthy_nodes: usize,
    pub total_nodes: usize,
    pub quorum_size: usize,
    pub has_quorum: bool,
    pub health: ClusterHealthStatus,
}

/// A stretch of one node's Raft log, as `GET /api/v1/cluster/raft/log` shows it.
#[derive(Debug, Message)]
#[rtype(result = "Result<RaftLogView, ClusterError>")]
pub struct ReadRaftLog {
    pub node_id: String,
    /// The first index wanted; the log's first if it is earlier (compacted) or absent.
    pub from: Option<u64>,
    pub limit: usize,
}

/// Entries of one node's log, and the ends of what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct RaftLogView {
    pub node_id: String,
    /// The first index held (entries before it were compacted into a snapshot).
    pub first_index: u64,
    pub last_index: u64,
    pub entries: Vec<RaftLogEntryView>,
}

/// One log entry: where it is, what kind, and what it does.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct RaftLogEntryView {
    pub index: u64,
    pub term: u64,
    /// `empty` (a new leader's), `command`, `conf_change`.
    pub kind: String,
    /// What a command does (`put region`), or the conf change's encoded size.
    pub summary: String,
    pub bytes: usize,
}

/// Most entries one read of the log answers.
pub const RAFT_LOG_MAX_LIMIT: usize = 1000;

/// Makes `node_id` the Raft leader (leadership transfer); answered once it leads.
#[derive(Debug, Message)]
#[rtype(result = "Result<ClusterStatus, ClusterError>")]
pub struct PromoteNode {
    pub node_id: String,
}

/// Moves leadership away from `node_id`, the leader, to the most up-to-date other voter;
/// answered once that one leads.
#[derive(Debug, Message)]
#[rtype(result = "Result<ClusterStatus, ClusterError>")]
pub struct DemoteNode {
    pub node_id: String,
}

/// To the leader's node actor: hand leadership to `to`.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ClusterError>")]
pub struct TransferLeadership {
    pub to: String,
}

/// Writes `key` through the Raft log; answered once the entry is applied.
#[derive(Debug, Message)]
#[rtype(result = "Result<KvWritten, ClusterError>")]
pub struct PutKv {
    pub key: String,
    pub value: serde_json::Value,
}

/// Reads `key` linearizably (read index on the leader).
#[derive(Debug, Message)]
#[rtype(result = "Result<KvEntry, ClusterError>")]
pub struct GetKv {
    pub key: String,
}

/// Where a write landed in the log.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct KvWritten {
    pub key: String,
    pub index: u64,
    pub term: u64,
}

/// A key's value and the entry that wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct KvEntry {
    pub key: String,
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
    pub index: u64,
    pub term: u64,
}

/// A Raft message from one node's actor to another's, carried by the link.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RaftPeerMessage(pub raft::eraftpb::Message);

/// Every node's Raft state, as `GET /api/v1/cluster/raft` shows it.
#[derive(Debug, Message)]
#[rtype(result = "Vec<RaftNodeView>")]
pub struct GetRaftNodes;

/// One node's Raft state.
#[derive(Debug, Message)]
#[rtype(result = "Option<RaftNodeView>")]
pub struct GetRaftNode;

/// A node's Raft state: its role and term, its log's ends, and (on the leader) each peer's.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct RaftNodeView {
    pub node_id: String,
    /// raft-rs's id of the node (derived from its name).
    pub raft_id: u64,
    /// `leader`, `candidate`, `pre_candidate`, `follower`, or `down` while crashed.
    pub role: String,
    pub leader_id: Option<String>,
    pub term: u64,
    /// The node it voted for in `term`.
    pub vote: Option<String>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub voters: Vec<String>,
    /// On the leader: each peer's highest index known replicated there.
    pub progress: Vec<RaftPeerProgress>,
}

impl RaftNodeView {
    /// A node that is down (crashed) or whose Raft did not open: nothing known but its name.
    pub fn down(node_id: String, voters: Vec<String>) -> RaftNodeView {
        RaftNodeView {
            raft_id: crate::model::raft_node_id(&node_id),
            node_id,
            role: "down".into(),
            leader_id: None,
            term: 0,
            vote: None,
            commit_index: 0,
            applied_index: 0,
            last_index: 0,
            voters,
            progress: Vec::new(),
        }
    }

    /// A node another process hosts: its state is that process's to show.
    pub fn remote(node_id: String, voters: Vec<String>) -> RaftNodeView {
        RaftNodeView { role: "remote".into(), ..RaftNodeView::down(node_id, voters) }
    }
}

/// How far a peer's log matches the leader's.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct RaftPeerProgress {
    pub node_id: String,
    pub matched_index: u64,
}

#[derive(Debug, Message)]
#[rtype(result = "ClusterHealthReport")]
pub struct GetClusterHealth;

/// Overall health and every node.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
#[graphql(name = "ClusterHealth")]
pub struct ClusterHealthReport {
    pub status: ClusterHealthStatus,
    pub healthy_nodes: usize,
    pub total_nodes: usize,
    pub quorum_size: usize,
    pub has_quorum: bool,
    pub nodes: Vec<NodeView>,
}

/// What fault injection holds in place now.
#[derive(Debug, Message)]
#[rtype(result = "Vec<crate::messages::faults::InjectedFault>")]
pub struct ListFaults;


// Messages between the membership actor and its node actors.

/// A liveness probe; the answer's round trip is the node's measured responsiveness.
#[derive(Debug, Message)]
#[rtype(result = "Result<HeartbeatAck, ClusterError>")]
pub struct Heartbeat {
    pub sent_at: Instant,
}

#[derive(Debug, Clone, Copy)]
pub struct HeartbeatAck {
    pub sent_at: Instant,
    /// Supervised restarts of this node actor so far.
    pub restarts: u64,
}

/// Tells a node actor to stop as a crash would; it stays down.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Crash;

/// Tells a node actor that an internal fault happened; it stops and its supervisor restarts it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct InternalFault {
    pub reason: String,
}

/// A node actor tells the membership actor that its supervisor restarted it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct NodeRestarted {
    pub node_id: String,
    /// Which actor of the node this is (the membership actor counts operator restarts).
    pub incarnation: u64,
    /// Supervised restarts of this actor so far.
    pub restart_count: u64,
}

/// Stops a node actor for good (the node left the cluster, or the runtime shuts down); answered
/// once the work its lane holds is done.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopNode;

// The events of the domain.

domain_events! {
    /// What the membership publishes.
    pub enum ClusterEvent {
        NodeJoined(NodeMembershipChange) => |p, s| s.add(SubjectKind::Node, &p.node_id),
        NodeLeft(NodeMembershipChange) => |p, s| s.add(SubjectKind::Node, &p.node_id),
        NodeHealthChange(NodeHealthChange) => |p, s| s.add(SubjectKind::Node, &p.node_id),
        QuorumLost(QuorumChange) => |_, _| {},
        QuorumRestored(QuorumChange) => |_, _| {},
        LeaderElected(LeaderElection) => |p, s| s.add(SubjectKind::Node, &p.leader_id),
        FailoverInitiated(FailoverChange) => |p, s| {
            s.add(SubjectKind::Node, &p.failed_node);
        },
        FailoverCompleted(FailoverChange) => |p, s| {
            s.add(SubjectKind::Node, &p.failed_node);
            if let Some(r) = &p.replacement_node {
                s.add(SubjectKind::Node, r);
            }
        },
    }
}

/// A manual failover, started (replication scope) or done (raft scope).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, SimpleObject)]
pub struct FailoverStarted {
    pub failover_id: String,
    /// `raft` or `replication`.
    pub scope: String,
    pub failed_node: String,
    pub replacement_node: Option<String>,
    /// The Raft term after it (raft scope).
    pub term: Option<u64>,
}

/// Records a completed failover in the replicated history (to a node, which proposes it).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ClusterError>")]
pub struct RecordFailover {
    pub record: crate::model::FailoverRecord,
}

/// The failover history as the state machine holds it, read linearizably.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<crate::model::FailoverRecord>, ClusterError>")]
pub struct GetFailoverHistory;


/// What a node's Raft saw that the membership tells the world (leadership and failover).
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub enum RaftObserved {
    /// `node_id` lost its leader `last_leader` and started an election.
    ElectionStarted { node_id: String, last_leader: String },
    /// `election.leader_id` won `election.term`.
    Elected(LeaderElection),
    /// `node_id` follows `leader_id` in `term`; it last heard from the leader it followed
    /// before at `previous_heard` (if it ever did).
    Following { node_id: String, leader_id: String, term: u64, voters: usize, previous_heard: Option<std::time::Instant> },
}

/// `leader_elected`: published by the node that won, when it takes office.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderElection {
    pub leader_id: String,
    /// The leader this node knew before, if any.
    pub previous_leader: Option<String>,
    pub term: u64,
    /// Votes granted to the winner, its own included; `None` when this process learnt of the
    /// election from a node that follows the winner (the votes are counted by the winner only).
    pub votes_received: Option<usize>,
    pub total_voters: usize,
}

/// `node_joined` / `node_left`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeMembershipChange {
    pub node_id: String,
    pub node_address: String,
    pub node_role: NodeRole,
    pub reason: String,
    pub cluster_size: usize,
    pub has_quorum: bool,
}

/// `node_health_change`. `metrics` holds real measurements taken when the change was seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeHealthChange {
    pub node_id: String,
    pub old_status: NodeHealth,
    pub new_status: NodeHealth,
    pub role: NodeRole,
    pub reason: String,
    pub metrics: BTreeMap<String, f64>,
    /// Overall health after this change, so a dashboard needs no second request.
    pub cluster_status: ClusterHealthStatus,
    pub healthy_nodes: usize,
    pub total_nodes: usize,
}

/// `quorum_lost` / `quorum_restored`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuorumChange {
    pub healthy_nodes: usize,
    pub total_nodes: usize,
    pub quorum_size: usize,
    pub has_quorum: bool,
}
