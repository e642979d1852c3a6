//! An instance's side of the interconnect, apart from its actor: heartbeats to every peer,
//! their round trips, what it sent each peer, and whether each answers. Measured, never
//! assumed: a peer is `up` only while its answers come back.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::stats::RecentSamples;
use crate::messages::rac::PeerLinkView;

/// How often an instance pings each peer.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
/// Round trips kept for the p99.
const RECENT: usize = 256;
/// Pings outstanding per peer: older ones count as unanswered.
const OUTSTANDING: usize = 16;

/// Cache Fusion messages sent, per (from, to) instance pair: counted by every instance's and
/// master's actor as it sends (atomics, as metrics are), read by the interconnect view.
/// By sender, then receiver: both looked up by `&str`, so that counting a message allocates
/// nothing.
#[derive(Debug, Default)]
pub struct PairCounts {
    counts: BTreeMap<String, BTreeMap<String, AtomicU64>>,
}

impl PairCounts {
    pub fn new(instances: &[String]) -> PairCounts {
        let counts = instances.iter().map(|a| (a.clone(), instances.iter().filter(|b| *b != a).map(|b| (b.clone(), AtomicU64::new(0))).collect())).collect();
        PairCounts { counts }
    }

    fn counter(&self, from: &str, to: &str) -> Option<&AtomicU64> {
        self.counts.get(from)?.get(to)
    }

    pub fn sent(&self, from: &str, to: &str) {
        if let Some(c) = self.counter(from, to) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, from: &str, to: &str) -> u64 {
        self.counter(from, to).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

#[derive(Debug)]
struct Peer {
    heartbeats_sent: u64,
    heartbeats_answered: u64,
    last_heard: Option<Instant>,
    /// Since when its silence counts: the start, or its or this instance's rejoining.
    watched_since: Instant,
    /// Pings not answered yet: (seq, sent at).
    outstanding: VecDeque<(u64, Instant)>,
    rtts: RecentSamples,
}

impl Peer {
    fn new(now: Instant) -> Self {
        Peer { heartbeats_sent: 0, heartbeats_answered: 0, last_heard: None, watched_since: now, outstanding: VecDeque::new(), rtts: RecentSamples::new(RECENT) }
    }

    fn silent(&self, now: Instant) -> Duration {
        now.duration_since(self.last_heard.map_or(self.watched_since, |h| h.max(self.watched_since)))
    }
}

/// The links of one instance to its peers.
#[derive(Debug)]
pub struct Interconnect {
    me: String,
    peers: BTreeMap<String, Peer>,
    next_seq: u64,
}

impl Interconnect {
    pub fn new(me: &str, instances: &[String]) -> Interconnect {
        let now = Instant::now();
        let peers = instances.iter().filter(|i| *i != me).map(|i| (i.clone(), Peer::new(now))).collect();
        Interconnect { me: me.to_string(), peers, next_seq: 0 }
    }

    /// The pings to send now: (peer, seq).
    pub fn heartbeat(&mut self, now: Instant) -> Vec<(String, u64)> {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.peers
            .iter_mut()
            .map(|(name, p)| {
                p.heartbeats_sent += 1;
                if p.outstanding.len() == OUTSTANDING {
                    p.outstanding.pop_front();
                }
                p.outstanding.push_back((seq, now));
                (name.clone(), seq)
            })
            .collect()
    }

    /// `peer` answered ping `seq`.
    pub fn pong(&mut self, peer: &str, seq: u64, now: Instant) {
        let Some(p) = self.peers.get_mut(peer) else { return };
        let Some(pos) = p.outstanding.iter().position(|(s, _)| *s == seq) else { return };
        let (_, sent) = p.outstanding.remove(pos).unwrap_or((seq, now));
        let rtt = now.duration_since(sent).as_micros() as u64;
        p.heartbeats_answered += 1;
        p.last_heard = Some(now);
        p.rtts.push(rtt);
    }

    /// The peers silent for more than three heartbeat intervals at `now`: suspected failed.
    pub fn unreachable(&self, now: Instant) -> Vec<String> {
        self.peers.iter().filter(|(_, p)| p.silent(now) > HEARTBEAT_EVERY * 3).map(|(n, _)| n.clone()).collect()
    }

    /// `peer` rejoined: its silence counts from `now`.
    pub fn rejoined(&mut self, peer: &str, now: Instant) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.outstanding.clear();
            p.watched_since = now;
        }
    }

    /// This instance rejoined: every peer's silence counts from `now`.
    pub fn rejoined_all(&mut self, now: Instant) {
        for p in self.peers.values_mut() {
            p.outstanding.clear();
            p.watched_since = now;
        }
    }

    /// Each peer's link as measured at `now`; `counts` gives the messages sent.
    pub fn view(&self, now: Instant, counts: &PairCounts) -> Vec<PeerLinkView> {
        self.peers
            .iter()
            .map(|(name, p)| {
                let silent = p.silent(now);
                PeerLinkView {
                    instance_id: self.me.clone(),
                    peer: name.clone(),
                    status: if silent > HEARTBEAT_EVERY * 3 { "unreachable" } else { "up" }.into(),
                    messages_sent: counts.get(&self.me, name),
                    heartbeats_sent: p.heartbeats_sent,
                    heartbeats_answered: p.heartbeats_answered,
                    last_heard_ms: p.last_heard.map(|t| now.duration_since(t).as_millis() as u64),
                    rtt_micros_avg: p.rtts.mean(),
                    rtt_micros_p99: p.rtts.p99(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_pings_give_round_trips_and_a_silent_peer_turns_unreachable() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut ic = Interconnect::new("a", &names);
        let t0 = Instant::now();
        let pings = ic.heartbeat(t0);
        assert_eq!(pings.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), vec!["b", "c"]);
        ic.pong("b", pings[0].1, t0 + Duration::from_micros(300));
        ic.pong("b", pings[0].1, t0 + Duration::from_micros(900)); // a repeat counts once
        let counts = PairCounts::new(&names);
        counts.sent("a", "c");
        let later = t0 + HEARTBEAT_EVERY * 4;
        let view = ic.view(t0 + Duration::from_millis(1), &counts);
        assert_eq!((view[0].rtt_micros_avg, view[0].heartbeats_answered, view[0].status.as_str()), (300.0, 1, "up"));
        assert_eq!((view[1].messages_sent, view[1].heartbeats_answered), (1, 0));
        let view = ic.view(later, &counts);
        assert!(view.iter().all(|v| v.status == "unreachable"), "{view:?}");
        assert_eq!(ic.unreachable(later), vec!["b".to_string(), "c".to_string()]);
        assert!(ic.unreachable(t0 + Duration::from_millis(1)).is_empty());
        // Rejoined (the peer, or this instance): silence counts from then.
        ic.rejoined("b", later);
        assert_eq!(ic.unreachable(later + Duration::from_millis(1)), vec!["c".to_string()]);
        ic.rejoined_all(later);
        assert!(ic.unreachable(later + Duration::from_millis(1)).is_empty());
        assert_eq!(ic.view(later, &counts)[0].heartbeats_answered, 1, "what was heard stays counted");
    }
}
