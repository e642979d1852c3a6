//! Cluster membership: the membership actor (members, health, quorum) and one supervised node
//! actor per member, and the faults injected into nodes.

mod faults;
pub mod leadership;
mod members;
pub mod membership;
pub mod node;
pub mod peers;
pub mod phi;
mod routing;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use actix::prelude::*;

pub use membership::{MembershipActor, MembershipSettings};
pub use node::{NodeActor, RaftSetup};
pub use peers::RaftPeers;

use crate::actors::net::peer::PeerLinks;
use crate::actors::domain::{self, Domain, DomainContext, DomainStartError, FaultTargets};
use crate::actors::raft::core::{RaftSettings, SNAPSHOT_EVERY};
use crate::model::raft_node_id;

/// The cluster domain, started.
pub struct Cluster {
    pub membership: Addr<MembershipActor>,
    /// Where each Raft node is reached: what peer processes' connections deliver through.
    pub peers: RaftPeers,
    /// The lines to the processes hosting the nodes not hosted here (none in one process).
    links: Option<PeerLinks>,
    faults: FaultTargets,
}

/// Loads the durable membership (seeded from `cluster.nodes` on a fresh store) and starts it;
/// `cluster.nodes` are also the Raft group's voters at bootstrap. The nodes of `cluster.host`
/// run here; the others are reached through the processes `cluster.peers` names.
pub fn start(ctx: &DomainContext) -> Result<Box<dyn Domain>, DomainStartError> {
    let c = &ctx.config.cluster;
    let peers = RaftPeers::default();
    for name in &c.nodes {
        peers.known(raft_node_id(name), name);
    }
    let settings = MembershipSettings::from_config(c);
    let links = (!c.peers.is_empty()).then(|| PeerLinks::new(ctx.config.server.auth_token.clone(), settings.heartbeat_interval));
    if let Some(links) = &links {
        for (name, address) in &c.peers {
            peers.hosted_elsewhere(raft_node_id(name), name, links.line(address));
        }
    }
    let raft = RaftSetup {
        store: ctx.store.clone(),
        link: ctx.link.clone(),
        peers: peers.clone(),
        elsewhere: c.peers.clone(),
        links: links.clone(),
        own_load: links.is_some().then(|| ctx.load.clone()),
        timing: RaftSettings { election_tick: c.election_tick, heartbeat_tick: c.heartbeat_tick, snapshot_every: SNAPSHOT_EVERY },
        tick: std::time::Duration::from_millis(c.tick_ms),
        seed: c.nodes.clone(),
        hosted: c.hosted().iter().cloned().collect(),
    };
    let membership = MembershipActor::load(
        settings,
        &ctx.config.cluster.nodes,
        ctx.store.clone(),
        ctx.publisher(),
        raft,
    )
    .map_err(|e| DomainStartError { domain: "cluster", reason: e.to_string() })?
    .start();
    let faults = FaultTargets::of(&membership);
    Ok(Box::new(Cluster { membership, peers, links, faults }))
}

impl Domain for Cluster {
    fn name(&self) -> &'static str {
        "cluster"
    }
    fn faults(&self) -> &FaultTargets {
        &self.faults
    }
    fn stop(&self) -> Pin<Box<dyn Future<Output = ()>>> {
        let stopped = domain::stop(&self.membership);
        let links = self.links.clone();
        Box::pin(async move {
            stopped.await;
            if let Some(links) = links {
                links.stop();
            }
        })
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn metadata(&self) -> Option<domain::ClusterMetadata> {
        Some(domain::ClusterMetadata { put: self.membership.clone().recipient(), record_failover: self.membership.clone().recipient() })
    }
}

impl From<crate::storage::StorageError> for crate::messages::cluster::ClusterError {
    fn from(e: crate::storage::StorageError) -> Self {
        crate::messages::cluster::ClusterError::Storage { message: e.to_string() }
    }
}
