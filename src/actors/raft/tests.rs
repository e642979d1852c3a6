//! Raft nodes driven by hand, without actix: a deterministic loop that ticks them, carries their
//! messages (or drops them, for a cut-off node) and commits their writes to a shared store.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use raft::eraftpb::Message;

use super::core::{is_empty, RaftCore, RaftEvent, RaftSettings, SNAPSHOT_EVERY};
use super::machine::Applied;
use crate::model::MetaCommand;
use crate::storage::Store;

const TIMING: RaftSettings = RaftSettings { election_tick: 10, heartbeat_tick: 2, snapshot_every: SNAPSHOT_EVERY };

struct Group {
    store: Arc<Store>,
    settings: RaftSettings,
    nodes: BTreeMap<u64, RaftCore>,
    voters: Vec<u64>,
    in_flight: VecDeque<Message>,
    /// Nodes whose messages, in and out, are dropped.
    cut: Vec<u64>,
    events: Vec<(u64, RaftEvent)>,
    applied: Vec<(u64, Applied)>,
}

fn owner(id: u64) -> String {
    format!("raft-node-{id}")
}

impl Group {
    fn new(store: Arc<Store>, n: u64) -> Group {
        Group::with(store, n, TIMING)
    }

    fn with(store: Arc<Store>, n: u64, settings: RaftSettings) -> Group {
        let voters: Vec<u64> = (1..=n).collect();
        let mut g = Group { store, settings, nodes: BTreeMap::new(), voters, in_flight: VecDeque::new(), cut: Vec::new(), events: Vec::new(), applied: Vec::new() };
        for id in 1..=n {
            g.start(id);
        }
        g
    }

    fn start(&mut self, id: u64) {
        let core = RaftCore::open(id, &owner(id), self.voters.clone(), Vec::new(), self.store.clone(), self.settings).expect("open");
        self.nodes.insert(id, core);
    }

    fn crash(&mut self, id: u64) {
        self.nodes.remove(&id);
    }

    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            if !self.cut.contains(&m.from) && !self.cut.contains(&m.to) {
                self.in_flight.push_back(m);
            }
        }
    }

    /// Handles every due Ready and delivers every message until the group is quiet.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            let ids: Vec<u64> = self.nodes.keys().copied().collect();
            for id in ids {
                let Some(node) = self.nodes.get_mut(&id) else { continue };
                let Some(work) = node.next_ready().expect("ready") else { continue };
                progressed = true;
                self.events.extend(work.events.into_iter().map(|e| (id, e)));
                self.applied.extend(work.applied.into_iter().map(|a| (id, a)));
                if !is_empty(&work.write) {
                    self.store.commit_raft(&owner(id), work.write).expect("commit");
                }
                let node = self.nodes.get_mut(&id).expect("node");
                let after = node.persisted().expect("persisted");
                if let Some(compaction) = node.take_compaction() {
                    self.store.commit_raft(&owner(id), compaction).expect("compaction");
                }
                self.applied.extend(after.applied.into_iter().map(|a| (id, a)));
                self.send(work.send_now);
                self.send(after.send);
            }
            while let Some(m) = self.in_flight.pop_front() {
                progressed = true;
                if let Some(node) = self.nodes.get_mut(&m.to) {
                    // A message from an older term or a stale leader is an error raft-rs reports; it changes nothing.
                    let _ = node.step(m);
                }
            }
            if !progressed {
                return;
            }
        }
        panic!("the group did not settle");
    }

    fn tick_all(&mut self) {
        for node in self.nodes.values_mut() {
            node.tick();
        }
        self.settle();
    }

    /// Ticks until a node outside `cut` leads, at most `ticks` times.
    fn elect(&mut self, ticks: usize) -> u64 {
        for _ in 0..ticks {
            self.tick_all();
            if let Some(id) = self.leader() {
                return id;
            }
        }
        panic!("no leader after {ticks} ticks");
    }

    fn leader(&self) -> Option<u64> {
        let leaders: Vec<u64> = self.nodes.iter().filter(|(id, n)| n.is_leader() && !self.cut.contains(id)).map(|(id, _)| *id).collect();
        assert!(leaders.len() <= 1, "two leaders among the connected nodes: {leaders:?}");
        leaders.first().copied()
    }

    fn put(&mut self, key: &str, value: i64) {
        let leader = self.leader().expect("a leader");
        let cmd = MetaCommand::Put { key: key.to_string(), value: value.into() };
        self.nodes.get_mut(&leader).expect("leader").propose(&cmd).expect("propose");
        self.settle();
    }

    fn value_on(&self, id: u64, key: &str) -> Option<i64> {
        self.nodes.get(&id)?.machine().get(key)?.value.as_i64()
    }
}

#[test]
fn three_nodes_elect_one_leader_and_replicate_a_write_to_all() {
    let mut g = Group::new(Arc::new(Store::memory()), 3);
    let leader = g.elect(100);
    let became: Vec<_> = g.events.iter().filter(|(id, _)| *id == leader).collect();
    let Some((_, RaftEvent::BecameLeader { term, votes, voters, .. })) = became.last() else { panic!("no event: {:?}", g.events) };
    assert!(*term >= 1);
    assert_eq!(*voters, 3);
    assert!((2..=3).contains(votes), "a majority of votes: {votes}");

    g.put("primary", 7);
    for id in 1..=3 {
        assert_eq!(g.value_on(id, "primary"), Some(7), "node {id}");
    }
    let s = g.nodes[&leader].status();
    assert_eq!(s.voters, vec![1, 2, 3]);
    assert!(s.matched.iter().all(|(_, m)| *m == s.last_index), "every peer has the leader's log: {s:?}");
}

#[test]
fn a_leader_cut_off_is_replaced_by_one_with_a_higher_term() {
    let mut g = Group::new(Arc::new(Store::memory()), 3);
    let first = g.elect(100);
    let term = g.nodes[&first].status().term;
    g.cut.push(first);
    let second = g.elect(100);
    assert_ne!(first, second);
    assert!(g.nodes[&second].status().term > term);
    g.put("k", 1);
    let others: Vec<u64> = (1..=3).filter(|id| *id != first).collect();
    for id in others {
        assert_eq!(g.value_on(id, "k"), Some(1));
    }
    assert_eq!(g.value_on(first, "k"), None, "the cut-off node saw nothing");

    // Healed, the old leader steps down and catches up.
    g.cut.clear();
    for _ in 0..30 {
        g.tick_all();
    }
    assert_eq!(g.value_on(first, "k"), Some(1));
    assert_eq!(g.leader(), Some(second));
}

#[test]
fn a_restarted_node_recovers_its_log_and_catches_up() {
    let mut g = Group::new(Arc::new(Store::memory()), 3);
    g.elect(100);
    g.put("a", 1);
    let follower = (1..=3).find(|id| Some(*id) != g.leader()).expect("a follower");
    let before = g.nodes[&follower].status();
    g.crash(follower);
    g.put("b", 2);

    g.start(follower);
    let reopened = g.nodes[&follower].status();
    assert_eq!(reopened.term, before.term, "its hard state came back");
    assert_eq!(reopened.last_index, before.last_index, "its log came back");
    for _ in 0..10 {
        g.tick_all();
    }
    assert_eq!(g.value_on(follower, "a"), Some(1), "replayed from its own log");
    assert_eq!(g.value_on(follower, "b"), Some(2), "caught up from the leader");
}

#[test]
fn a_whole_group_on_disk_comes_back_with_every_committed_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut g = Group::new(Arc::new(Store::open_dir(dir.path()).expect("store")), 3);
        g.elect(100);
        for i in 0..20 {
            g.put(&format!("k{i}"), i);
        }
    }
    let mut g = Group::new(Arc::new(Store::open_dir(dir.path()).expect("store")), 3);
    for id in 1..=3 {
        assert_eq!(g.nodes[&id].status().commit, g.nodes[&1].status().commit);
    }
    g.elect(100);
    for id in 1..=3 {
        for i in 0..20 {
            assert_eq!(g.value_on(id, &format!("k{i}")), Some(i), "node {id} key k{i}");
        }
    }
}

#[test]
fn snapshots_bound_the_log_and_bring_a_follower_back_from_behind_it() {
    let store = Arc::new(Store::memory());
    let mut g = Group::with(store.clone(), 3, RaftSettings { snapshot_every: 5, ..TIMING });
    let leader = g.elect(100);
    let behind = (1..=3).find(|id| *id != leader).expect("a follower");
    g.crash(behind);
    for i in 0..23 {
        g.put(&format!("k{i}"), i);
    }
    let first = store.raft_first_index(&owner(leader)).expect("first index");
    let last = store.raft_last_index(&owner(leader)).expect("last index");
    assert!(first > 15, "the leader's log was compacted: it starts at {first}");
    assert!(last - first < 10, "and stays short: {first}..{last}");

    // Its log ends before the leader's begins: the leader sends the snapshot, then the rest.
    g.start(behind);
    for _ in 0..20 {
        g.tick_all();
    }
    for i in 0..23 {
        assert_eq!(g.value_on(behind, &format!("k{i}")), Some(i), "k{i} on the node that was behind");
    }

    // A compacted node reopened starts from its snapshot and replays the entries after it.
    let other = (1..=3).find(|id| *id != leader && *id != behind).expect("the other follower");
    g.crash(other);
    g.start(other);
    assert!(g.nodes[&other].machine().len() >= 15, "restored from its own snapshot before any message");
    for _ in 0..10 {
        g.tick_all();
    }
    assert_eq!(g.value_on(other, "k22"), Some(22));
}

#[test]
fn a_leader_lost_a_second_time_is_reported_a_second_time() {
    let lost_reports = |g: &Group, leader: u64| {
        g.events.iter().filter(|(_, e)| matches!(e, RaftEvent::ElectionStarted { last_leader } if *last_leader == leader)).count()
    };
    let mut g = Group::new(Arc::new(Store::memory()), 3);
    let first = g.elect(100);
    g.crash(first);
    let second = g.elect(100);
    assert!(lost_reports(&g, first) >= 1, "{:?}", g.events);

    // The first leader comes back and leads again, by transfer, then is lost again: the nodes
    // that lost it before follow it in its new term, and report losing it anew.
    g.start(first);
    for _ in 0..30 {
        g.tick_all();
    }
    assert!(g.nodes.get_mut(&second).expect("leader").transfer_leader(first).expect("transfer"));
    g.settle();
    for _ in 0..30 {
        if g.leader() == Some(first) {
            break;
        }
        g.tick_all();
    }
    assert_eq!(g.leader(), Some(first), "the transfer took");
    for _ in 0..5 {
        g.tick_all();
    }
    let before = lost_reports(&g, first);
    g.crash(first);
    g.elect(100);
    assert!(lost_reports(&g, first) > before, "the second loss was reported: {:?}", g.events);
}

#[test]
fn a_leader_busy_writing_for_longer_than_an_election_timeout_keeps_its_quorum() {
    let mut g = Group::new(Arc::new(Store::memory()), 3);
    let leader = g.elect(100);
    let term = g.nodes[&leader].status().term;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();

    // A write that takes 30 ticks (three election timeouts): the followers keep answering
    // meanwhile, and their answers come between the ticks.
    let node = g.nodes.get_mut(&leader).expect("leader");
    node.propose(&MetaCommand::Put { key: "k".into(), value: 1.into() }).expect("propose");
    let work = node.next_ready().expect("ready").expect("a write");
    for _ in 0..30 {
        node.tick();
        for f in &followers {
            let mut answer = Message { from: *f, to: leader, term, ..Default::default() };
            answer.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeatResponse);
            node.step(answer).expect("step");
        }
    }
    g.store.commit_raft(&owner(leader), work.write).expect("commit");
    let node = g.nodes.get_mut(&leader).expect("leader");
    node.persisted().expect("persisted");
    assert!(node.is_leader(), "the leader heard from a quorum all along and still leads");
}
