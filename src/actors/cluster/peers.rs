//! Where each Raft node is reached: its raft id, its name, and its actor while it runs here, or
//! the line to the process that hosts it. Each node writes its own entry as it starts and stops
//! (the cluster domain names the bootstrap voters and the nodes hosted elsewhere at start); every
//! node reads it as it sends, and so do connections from peer processes as they deliver. A name,
//! once known, stays (a crashed node's peers still name it in their views).

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Recipient, WeakRecipient};
use parking_lot::RwLock;

use crate::actors::net::peer::PeerSender;
use crate::actors::net::Destination;
use crate::messages::cluster::RaftPeerMessage;

#[derive(Default)]
struct Table {
    names: HashMap<u64, String>,
    /// Weak, so that the table never keeps a crashed node's actor alive.
    running: HashMap<u64, WeakRecipient<RaftPeerMessage>>,
    /// Nodes hosted by other processes, by the line to their process.
    elsewhere: HashMap<u64, PeerSender>,
}

/// How a message reaches a node.
#[derive(Clone)]
pub enum Route {
    /// Its actor, in this process.
    Here(Recipient<RaftPeerMessage>),
    /// The line to the process hosting it.
    Elsewhere(PeerSender),
}

impl Destination<RaftPeerMessage> for Route {
    fn deliver(&self, msg: RaftPeerMessage) {
        match self {
            Route::Here(r) => r.deliver(msg),
            Route::Elsewhere(line) => line.deliver(msg),
        }
    }
}

/// The table, cheap to clone.
#[derive(Clone, Default)]
pub struct RaftPeers {
    table: Arc<RwLock<Table>>,
}

impl RaftPeers {
    /// Node `name` (raft id `id`) runs and takes messages at `to`.
    pub fn running(&self, id: u64, name: &str, to: WeakRecipient<RaftPeerMessage>) {
        let mut t = self.table.write();
        t.names.insert(id, name.to_string());
        t.running.insert(id, to);
    }

    /// Node `id` is down (crashed or removed): messages to it are lost, as on a dead host.
    pub fn stopped(&self, id: u64) {
        self.table.write().running.remove(&id);
    }

    /// Names node `id` without it running (a voter not started yet).
    pub fn known(&self, id: u64, name: &str) {
        self.table.write().names.insert(id, name.to_string());
    }

    /// Node `name` (raft id `id`) is hosted by the process `line` leads to.
    pub fn hosted_elsewhere(&self, id: u64, name: &str, line: PeerSender) {
        let mut t = self.table.write();
        t.names.insert(id, name.to_string());
        t.elsewhere.insert(id, line);
    }

    pub fn name(&self, id: u64) -> Option<String> {
        self.table.read().names.get(&id).cloned()
    }

    /// The node's name and how to reach it, if it runs here or is hosted elsewhere.
    pub fn route(&self, id: u64) -> Option<(String, Route)> {
        let t = self.table.read();
        let name = t.names.get(&id)?.clone();
        if let Some(line) = t.elsewhere.get(&id) {
            return Some((name, Route::Elsewhere(line.clone())));
        }
        Some((name, Route::Here(t.running.get(&id)?.upgrade()?)))
    }

    /// The node's actor, if it runs in this process: where a peer process's messages go.
    pub fn here(&self, id: u64) -> Option<Recipient<RaftPeerMessage>> {
        self.table.read().running.get(&id)?.upgrade()
    }
}
