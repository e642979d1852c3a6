//! Where each Raft node is reached: its raft id, its name, and its actor while it runs. Each node
//! writes its own entry as it starts and stops (the cluster domain names the bootstrap voters at
//! start); every node reads it as it sends. A name, once known, stays (a crashed node's peers
//! still name it in their views).

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Recipient, WeakRecipient};
use parking_lot::RwLock;

use crate::messages::cluster::RaftPeerMessage;

#[derive(Default)]
struct Table {
    names: HashMap<u64, String>,
    /// Weak, so that the table never keeps a crashed node's actor alive.
    running: HashMap<u64, WeakRecipient<RaftPeerMessage>>,
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

    pub fn name(&self, id: u64) -> Option<String> {
        self.table.read().names.get(&id).cloned()
    }

    /// The node's name and where it takes messages, if it runs.
    pub fn route(&self, id: u64) -> Option<(String, Recipient<RaftPeerMessage>)> {
        let t = self.table.read();
        Some((t.names.get(&id)?.clone(), t.running.get(&id)?.upgrade()?))
    }
}
