//! Who leads the Raft group, as the nodes hosted here report it, and the failovers of its
//! leader: a plain state the membership actor feeds with [`RaftObserved`] and publishes what it
//! returns. One place sees every report of this process's nodes, so each election and failover
//! is told once per process and in order: `failover_initiated`, `leader_elected`,
//! `failover_completed`, whether a node here ran the election or learnt its winner.

use std::time::Instant;

use crate::messages::cluster::{ClusterEvent, FailoverChange, LeaderElection, RaftObserved};

#[derive(Debug)]
struct OpenFailover {
    id: String,
    failed_node: String,
    started: Instant,
    manual: bool,
}

#[derive(Debug, Default)]
pub struct Leadership {
    leader: Option<String>,
    term: u64,
    /// The highest term whose election was published.
    announced_term: u64,
    failover: Option<OpenFailover>,
    /// An operator asked for leadership to move (promote, demote): the next change is manual.
    transferring: bool,
}

impl Leadership {
    /// The leader and its term, once one is known.
    pub fn leader(&self) -> Option<(&str, u64)> {
        self.leader.as_deref().map(|l| (l, self.term))
    }

    /// An operator asked for leadership to move; the election it causes is a manual failover.
    pub fn transferring(&mut self) {
        self.transferring = true;
    }

    pub fn observe(&mut self, seen: RaftObserved, now: Instant) -> Vec<ClusterEvent> {
        let mut out = Vec::new();
        match seen {
            RaftObserved::ElectionStarted { last_leader, .. } => {
                if self.failover.is_none() && self.leader.as_deref() == Some(last_leader.as_str()) {
                    out.push(self.open_failover(last_leader, now));
                }
            }
            RaftObserved::Elected(election) => {
                if election.term > self.announced_term {
                    self.announced_term = election.term;
                    self.transferring = false;
                    self.follow(&election.leader_id, election.term);
                    let winner = election.leader_id.clone();
                    out.push(ClusterEvent::LeaderElected(election));
                    if let Some(f) = self.failover.take() {
                        let took = now.duration_since(f.started).as_secs_f64();
                        out.push(ClusterEvent::FailoverCompleted(change(&f.id, &f.failed_node, Some(winner), took, true, f.manual)));
                    }
                }
            }
            RaftObserved::Following { leader_id, term, voters, previous_heard, .. } => {
                // A leader elected in another process is learnt from a node that follows it. If
                // it replaced a leader known here and no node here started an election, the
                // failover is told all at once, timed from the last word of the lost leader.
                if term > self.announced_term {
                    let previous_leader = self.leader.clone().filter(|l| *l != leader_id);
                    if let (None, Some(lost)) = (&self.failover, &previous_leader) {
                        out.push(self.open_failover(lost.clone(), previous_heard.unwrap_or(now)));
                    }
                    let election = LeaderElection { leader_id, previous_leader, term, votes_received: None, total_voters: voters };
                    out.extend(self.observe(RaftObserved::Elected(election), now));
                } else {
                    self.follow(&leader_id, term);
                }
            }
        }
        out
    }

    fn open_failover(&mut self, failed_node: String, started: Instant) -> ClusterEvent {
        // Named by the lost leader's term: one failover per term, the same id in every process.
        let id = format!("failover-t{}", self.term);
        let manual = self.transferring;
        let initiated = ClusterEvent::FailoverInitiated(change(&id, &failed_node, None, 0.0, false, manual));
        self.failover = Some(OpenFailover { id, failed_node, started, manual });
        initiated
    }

    fn follow(&mut self, leader: &str, term: u64) {
        if term >= self.term {
            self.term = term;
            self.leader = Some(leader.to_string());
        }
    }
}

fn change(id: &str, failed: &str, replacement: Option<String>, took: f64, success: bool, manual: bool) -> FailoverChange {
    FailoverChange {
        failover_id: id.to_string(),
        scope: "raft".into(),
        failed_node: failed.to_string(),
        replacement_node: replacement,
        failover_type: if manual { "manual" } else { "automatic" }.into(),
        duration_seconds: took,
        success,
        error_message: None,
        lost_writes: 0,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn elected(leader: &str, term: u64, previous: Option<&str>) -> RaftObserved {
        RaftObserved::Elected(LeaderElection {
            leader_id: leader.into(),
            previous_leader: previous.map(Into::into),
            term,
            votes_received: Some(2),
            total_voters: 3,
        })
    }

    fn types(events: &[ClusterEvent]) -> Vec<&'static str> {
        events
            .iter()
            .map(|e| match e {
                ClusterEvent::LeaderElected(_) => "leader_elected",
                ClusterEvent::FailoverInitiated(_) => "failover_initiated",
                ClusterEvent::FailoverCompleted(_) => "failover_completed",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn a_lost_leader_is_a_failover_told_once_and_in_order_with_its_duration() {
        let t0 = Instant::now();
        let mut l = Leadership::default();
        assert_eq!(types(&l.observe(elected("node-1", 1, None), t0)), ["leader_elected"], "the first election is no failover");
        assert_eq!(l.leader(), Some(("node-1", 1)));

        let start = |n: &str| RaftObserved::ElectionStarted { node_id: n.into(), last_leader: "node-1".into() };
        assert_eq!(types(&l.observe(start("node-2"), t0)), ["failover_initiated"]);
        assert!(l.observe(start("node-3"), t0).is_empty(), "a second candidate opens no second failover");

        let done = l.observe(elected("node-3", 3, Some("node-1")), t0 + Duration::from_millis(700));
        assert_eq!(types(&done), ["leader_elected", "failover_completed"]);
        let ClusterEvent::FailoverCompleted(c) = &done[1] else { unreachable!() };
        assert_eq!((c.failed_node.as_str(), c.replacement_node.as_deref()), ("node-1", Some("node-3")));
        assert!((c.duration_seconds - 0.7).abs() < 1e-9 && c.success && c.lost_writes == 0);
        assert_eq!(l.leader(), Some(("node-3", 3)));

        assert!(l.observe(elected("node-3", 3, None), t0).is_empty(), "a term is announced once");
        assert!(l.observe(start("node-2"), t0).is_empty(), "node-1 is no longer the leader to lose");
    }

    #[test]
    fn a_leader_elected_in_another_process_is_told_from_a_follower_here() {
        let t0 = Instant::now();
        let mut l = Leadership::default();
        let follow = |leader: &str, term| RaftObserved::Following { node_id: "node-2".into(), leader_id: leader.into(), term, voters: 3, previous_heard: None };
        let first = l.observe(follow("node-1", 1), t0);
        assert_eq!(types(&first), ["leader_elected"]);
        let ClusterEvent::LeaderElected(e) = &first[0] else { unreachable!() };
        assert_eq!((e.leader_id.as_str(), e.term, e.votes_received, e.total_voters), ("node-1", 1, None, 3));
        assert!(l.observe(follow("node-1", 1), t0).is_empty(), "told once");

        l.observe(RaftObserved::ElectionStarted { node_id: "node-2".into(), last_leader: "node-1".into() }, t0);
        let done = l.observe(follow("node-3", 2), t0 + Duration::from_millis(600));
        assert_eq!(types(&done), ["leader_elected", "failover_completed"]);
        let ClusterEvent::LeaderElected(e) = &done[0] else { unreachable!() };
        assert_eq!(e.previous_leader.as_deref(), Some("node-1"));

        // No node here started an election (another process's won first): the failover is told
        // when the new leader is learnt, timed from the lost leader's last message here.
        let heard = t0 + Duration::from_secs(5);
        let learnt = RaftObserved::Following {
            node_id: "node-2".into(),
            leader_id: "node-1".into(),
            term: 3,
            voters: 3,
            previous_heard: Some(heard),
        };
        let told = l.observe(learnt, heard + Duration::from_millis(900));
        assert_eq!(types(&told), ["failover_initiated", "leader_elected", "failover_completed"]);
        let ClusterEvent::FailoverCompleted(c) = &told[2] else { unreachable!() };
        assert_eq!((c.failed_node.as_str(), c.replacement_node.as_deref()), ("node-3", Some("node-1")));
        assert!((c.duration_seconds - 0.9).abs() < 1e-9);
    }

    #[test]
    fn a_follower_report_moves_the_leader_only_forward() {
        let mut l = Leadership::default();
        l.observe(RaftObserved::Following { node_id: "node-2".into(), leader_id: "node-1".into(), term: 4, voters: 3, previous_heard: None }, Instant::now());
        l.observe(RaftObserved::Following { node_id: "node-3".into(), leader_id: "node-2".into(), term: 3, voters: 3, previous_heard: None }, Instant::now());
        assert_eq!(l.leader(), Some(("node-1", 4)));
    }
}
